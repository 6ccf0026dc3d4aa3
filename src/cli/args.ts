/** Argument parsing for the CLI: node's parseArgs, with usage errors as their own type. */
import { parseArgs } from 'node:util'

import { closest } from '../options'

/** A wrong command line: exit code 2, printed with the command's usage unless `withUsage` is false. */
export class UsageError extends Error {
  /** Whether the command's usage follows the message (not after a mistyped name: one line says it all). */
  readonly withUsage: boolean

  constructor(message: string, withUsage = true) {
    super(message)
    this.name = 'UsageError'
    this.withUsage = withUsage
  }
}

/** A one-line usage error for a `kind` (option, command) that is not one of `known`: "did you mean" the closest, or `otherwise`. */
export function unknownName(kind: string, given: string, known: readonly string[], otherwise: string): UsageError {
  const near = closest(given, known)
  return new UsageError(`unknown ${kind} '${printable(given)}'${near === undefined ? ` (${otherwise})` : `; did you mean '${near}'?`}`, false)
}

type Options = NonNullable<Parameters<typeof parseArgs>[0]>['options']

/** Parse `argv` against `options`, expecting between `min` and `max` positionals. */
export function parse(argv: string[], options: Options, min: number, max: number) {
  let parsed
  try {
    parsed = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true })
  } catch (error) {
    const unknown = (error as NodeJS.ErrnoException).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? /'([^']*)'/.exec((error as Error).message)?.[1] : undefined
    if (unknown !== undefined) {
      const known = [...Object.keys(options ?? {}), 'help'].map((name) => `--${name}`)
      throw unknownName('option', unknown, known, `the options: ${known.join(', ')}`)
    }
    throw new UsageError(error instanceof Error ? error.message : String(error))
  }
  const { positionals, values } = parsed
  if (!values.help && (positionals.length < min || positionals.length > max)) {
    throw new UsageError(`expected ${min === max ? min : `${min} to ${max}`} argument${max === 1 ? '' : 's'}, got ${positionals.length}`)
  }
  return { positionals, values: values as Record<string, string | boolean | undefined>, help: values.help === true }
}

/** A non-negative integer option, or `undefined`. */
export function integer(name: string, value: string | boolean | undefined): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (typeof value !== 'string' || !Number.isSafeInteger(n) || n < 0) throw new UsageError(`--${name} takes a whole number, got ${String(value)}`)
  return n
}

/** Human-readable bytes. */
export function bytes(n: number): string {
  if (n < 1024) return `${n} B`
  const units = ['KiB', 'MiB', 'GiB', 'TiB']
  let value = n / 1024
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${value.toFixed(1)} ${units[unit]}`
}

/** A progress bar on stderr, drawn only when stderr is a terminal. */
export class ProgressBar {
  readonly #label: string
  readonly #unit: (n: number) => string
  readonly #tty = process.stderr.isTTY === true
  #drawn = false

  /** `unit` shows the amounts (default: bytes). */
  constructor(label: string, unit: (n: number) => string = bytes) {
    this.#label = label
    this.#unit = unit
  }

  update(done: number, total: number): void {
    if (!this.#tty || total <= 0) return
    const width = 30
    const filled = Math.min(width, Math.round((done / total) * width))
    const percent = Math.min(100, Math.floor((done / total) * 100))
    process.stderr.write(`\r${this.#label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${percent}% ${this.#unit(done)} / ${this.#unit(total)}`)
    this.#drawn = true
  }

  /** A line of status instead of a bar (a command that runs until stopped). */
  status(text: string): void {
    if (!this.#tty) return
    process.stderr.write(`\r\x1b[K${this.#label} ${text}`)
    this.#drawn = true
  }

  done(): void {
    if (this.#drawn) process.stderr.write('\r\x1b[K')
  }
}

/** Run `task`, drawing its progress on a terminal as `label` (nothing on a pipe). */
export async function withBar<T>(label: string, task: (onProgress: (done: number, total: number) => void) => Promise<T>): Promise<T> {
  const bar = new ProgressBar(label)
  try {
    return await task((done, total) => bar.update(done, total))
  } finally {
    bar.done()
  }
}

/** C0 and C1 controls, DEL, line and paragraph separators, and bidirectional overrides. */
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g

/**
 * `text` safe to print on a terminal: names and messages taken from files (section names,
 * principals, paths) may hold escape sequences that would rewrite the screen, so every
 * control character is shown as `\u{..}` instead. JSON output needs none of this.
 */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => `\\u{${(c.codePointAt(0) ?? 0).toString(16)}}`)
}

