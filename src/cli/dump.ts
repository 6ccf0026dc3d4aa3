/** `dump`: the entries of a WAL or archive file, with their headers. */

import * as native from '../../native'
import { type EntryBatch, batchesOf } from '../batch'
import { call } from '../errors'
import { UsageError, integer, parse, printable } from './args'
import { print } from './output'

export const DUMP_USAGE = `Usage: selene-persist dump <file|dir> [--from N] [--to N] [--format json|hex|text]

Print the entries of a WAL or archive file (a store directory means its wal.log), with
their headers, checkpoint watermarks included.

  --from N     first sequence (default: the first)
  --to N       last sequence (default: the last)
  --format F   json: one JSON object per line, for jq (default)
               text: one readable line per entry
               hex:  headers and a hex dump of each payload

A reader that closes the pipe (| head) ends dump quietly with exit code 0. Exit code 1 when
the file cannot be read, 2 for a wrong command line.
`

function isText(payload: Buffer): boolean {
  const text = payload.toString('utf8')
  return Buffer.from(text, 'utf8').equals(payload) && !/[\x00-\x08\x0e-\x1f\x7f]/.test(text)
}

function timestamp(seconds: number, subseconds: number): string {
  const ms = seconds * 1000 + Math.floor((subseconds / 2 ** 32) * 1000)
  return Number.isFinite(ms) && ms < 8.64e15 ? new Date(ms).toISOString() : `${seconds}s+${subseconds}`
}

function origin(b: EntryBatch, i: number): string {
  const o = b.origin(i)
  return o.kind === 'local' ? 'local' : `replicated from node ${o.sourceNodeId} seq ${o.sourceSeq}`
}

function json(b: EntryBatch, i: number): string {
  const payload = b.payload(i)
  const principal = b.principal(i)
  const hlc = b.hlc(i)
  const text = isText(payload)
  return JSON.stringify({
    sequence: b.sequence(i),
    offset: b.offset(i),
    hlc: { ...hlc, iso: timestamp(hlc.seconds, hlc.subseconds) },
    origin: b.origin(i),
    principal: principal ? principal.toString('base64') : null,
    watermark: b.watermark(i),
    compressed: b.compressed(i),
    storedLength: b.storedLength(i),
    length: payload.length,
    encoding: text ? 'utf8' : 'base64',
    payload: payload.toString(text ? 'utf8' : 'base64'),
  })
}

function header(b: EntryBatch, i: number): string {
  const p = b.principal(i)
  const principal = p ? ` principal=${isText(p) ? p.toString() : p.toString('hex')}` : ''
  const kind = b.watermark(i) ? ' checkpoint-watermark' : ''
  const stored = b.compressed(i) ? ` (zstd, stored ${b.storedLength(i)} B)` : ''
  const hlc = b.hlc(i)
  return printable(`#${b.sequence(i)} @${b.offset(i)} ${timestamp(hlc.seconds, hlc.subseconds)} ${origin(b, i)}${principal}${kind} ${b.payload(i).length} B${stored}`)
}

function text(b: EntryBatch, i: number): string {
  const payload = b.payload(i)
  const preview = isText(payload) ? printable(JSON.stringify(payload.toString().slice(0, 120))) : `0x${payload.subarray(0, 48).toString('hex')}`
  return `${header(b, i)}${payload.length > 0 ? `: ${preview}` : ''}`
}

function hex(b: EntryBatch, i: number): string {
  const payload = b.payload(i)
  const lines = [header(b, i)]
  for (let at = 0; at < payload.length; at += 16) {
    const row = payload.subarray(at, at + 16)
    const ascii = [...row].map((c) => (c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : '.')).join('')
    lines.push(`  ${at.toString(16).padStart(8, '0')}  ${row.toString('hex').replace(/(..)/g, '$1 ').padEnd(48)} ${ascii}`)
  }
  return lines.join('\n')
}

/** The ways `dump` and `tail` print an entry. */
export const FORMATS = { json, text, hex } as const

export async function dumpCommand(argv: string[]): Promise<number> {
  const { positionals, values, help } = parse(argv, { from: { type: 'string' }, to: { type: 'string' }, format: { type: 'string' } }, 1, 1)
  if (help) return process.stdout.write(DUMP_USAGE), 0
  const format = (values.format ?? 'json') as string
  if (!(format in FORMATS)) throw new UsageError(`--format must be json, hex or text, got ${format}`)
  const show = FORMATS[format as keyof typeof FORMATS]
  const from = integer('from', values.from) ?? 0
  const to = integer('to', values.to) ?? Number.MAX_SAFE_INTEGER
  const path = positionals[0] ?? ''
  // A store directory is read through its active WAL.
  const reader = await call(() => native.NativeReader.open(path))
  let torn: native.NativeTailRepair | null = null
  const source = {
    nextChunk: (maxEntries: number, maxBytes: number) => reader.nextChunk(from, maxEntries, maxBytes, true),
    takeChunk: () => reader.takeChunk(),
    close: () => {
      torn = reader.tornTail()
      reader.close()
    },
  }
  for await (const batch of batchesOf(source)) {
    const lines = []
    let end = false
    for (let i = 0; i < batch.length && !end; i++) {
      if (batch.sequence(i) > to) end = true
      else lines.push(`${show(batch, i)}\n`)
    }
    // A reader gone (| head) is a normal end: quiet, exit code 0.
    if (!(await print(lines.join(''))) || end) return 0
  }
  const tail = torn as native.NativeTailRepair | null
  if (tail) process.stderr.write(`torn tail: ${tail.discardedBytes} bytes at offset ${tail.offset} (${tail.reason}); the next writer open cuts them\n`)
  return 0
}
