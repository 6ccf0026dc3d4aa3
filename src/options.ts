/** Validation of caller-supplied options and arguments, and their normalised native form. */
import * as native from '../native'

import { PersistError, invalid } from './errors'

/**
 * The engine's payload cap, read from the addon once: a property of the module namespace is a
 * getter call, which a check made per `appendSync` should not pay.
 */
export const MAX_PAYLOAD_BYTES = native.MAX_PAYLOAD_BYTES

/** When appended entries are made durable. */
export type SyncPolicy = 'always' | 'manual' | { everyN: number } | { intervalMs: number }

/** Payload compression: zstd at or above `threshold` bytes (default 4096); `false` disables. */
export type CompressionOption = false | { threshold?: number; level?: number }

/** A hybrid-logical-clock timestamp: Unix seconds plus a 1/2^32-second fraction. */
export interface Hlc {
  seconds: number
  subseconds: number
}

/** Where an entry came from. */
export type Origin = { kind: 'local' } | { kind: 'replicated'; sourceNodeId: number; sourceSeq: number }

/** Optional metadata of one append. */
export interface AppendMeta {
  /** Who wrote it (at most 4096 bytes). */
  principal?: Uint8Array
  /** Local (default) or replicated from another node. */
  origin?: Origin
  /** Timestamp; the writer's monotonic clock supplies one when absent. */
  hlc?: Hlc
}

/** What `prune` keeps. The live snapshot and the active WAL are never deleted. */
export interface RetentionPolicy {
  /** Snapshots to keep, the live one included (default 2). */
  keepSnapshots?: number
  /** Archived WAL prefixes to keep (default 4). */
  keepArchives?: number
  /** Byte budget for snapshots and archives; the oldest go first. */
  maxBytes?: number
  /** Delete snapshots and archives older than this many milliseconds. */
  maxAgeMs?: number
}

/** Named snapshot sections: a Record or a Map of name to bytes. */
export type Sections = Record<string, Uint8Array> | ReadonlyMap<string, Uint8Array>

export const U32_MAX = 0xffff_ffff

/** A value as it appears in an error message; never throws (BigInt, Symbol, cycles). */
export function describe(value: unknown): string {
  if (typeof value === 'bigint') return `${value}n`
  if (typeof value === 'symbol' || typeof value === 'function') return String(value)
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return Object.prototype.toString.call(value)
  }
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null
}

export function checkInteger(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw invalid(`${name} must be an integer from ${min} to ${max}, got ${describe(value)}`)
  }
  return value
}

/**
 * Bytes given by a caller, checked at the call: a Buffer, a Uint8Array or any other typed
 * array or DataView (its bytes are taken). A view of a detached buffer is refused (it would
 * read as empty); one over a SharedArrayBuffer is copied now, so another thread's writes
 * after the call cannot change what is stored.
 */
export function checkBytes(name: string, value: unknown): Uint8Array {
  if (!ArrayBuffer.isView(value)) throw invalid(`${name} must be a Uint8Array, Buffer or other ArrayBuffer view`)
  const bytes = value instanceof Uint8Array ? value : new Uint8Array(value.buffer, value.byteOffset, value.byteLength)
  // A detached buffer's views report length 0; only a new view over it tells.
  if (bytes.length === 0 && isDetached(bytes.buffer)) throw invalid(`${name} is a view of a detached ArrayBuffer (transferred or structuredClone'd away)`)
  return bytes.buffer instanceof SharedArrayBuffer ? bytes.slice() : bytes
}

function isDetached(buffer: ArrayBufferLike): boolean {
  try {
    new Uint8Array(buffer, 0, 0)
    return false
  } catch {
    return true
  }
}

/**
 * Whether `value` is a payload that needs nothing of {@link checkPayload}: the fast path of a
 * bulk call whose caller copies the payload at the call (`appendSync`, `appendBatch`), so one
 * over a SharedArrayBuffer stores what it held then without a copy of its own. (Reading
 * `.buffer` to tell costs 40 ns a call, as much as the copy of 128 B.)
 */
export function isPlainPayload(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array && value.length > 0 && value.length <= MAX_PAYLOAD_BYTES
}

/** An entry's payload: bytes, at most the engine's cap (checked here so nothing is copied first). */
export function checkPayload(name: string, value: unknown): Uint8Array {
  const bytes = checkBytes(name, value)
  if (bytes.length > MAX_PAYLOAD_BYTES) {
    throw new PersistError('PAYLOAD_TOO_LARGE', `${name} of ${bytes.length} bytes exceeds the cap of ${MAX_PAYLOAD_BYTES}`)
  }
  return bytes
}

export function checkPath(path: unknown): string {
  if (typeof path !== 'string' || path.length === 0 || path.includes('\0')) {
    throw invalid('path must be a non-empty string without NUL bytes')
  }
  return path
}

/**
 * `value` as an options object (`{}` when absent); with `known`, a key not among them is
 * refused, naming the known key it is most likely a typo of.
 */
export function checkObject(name: string, value: unknown, known?: readonly string[]): Record<string, unknown> {
  if (value === undefined) return {}
  if (!isObject(value)) throw invalid(`${name} must be an object`)
  const unknown = known && Object.keys(value).find((key) => !known.includes(key))
  if (unknown !== undefined) {
    const near = closest(unknown, known ?? [])
    const hint = near === undefined ? `the known ones are ${known?.map((k) => `\`${k}\``).join(', ')}` : `did you mean \`${near}\`?`
    throw invalid(`unknown key \`${unknown}\` in ${name}; ${hint}`)
  }
  return value
}

/** The `{ compress? }` options of a snapshot section or checkpoint: the flag, if given. */
export function compressOption(options: unknown): boolean | undefined {
  const { compress } = checkObject('options', options, ['compress'])
  if (compress !== undefined && typeof compress !== 'boolean') throw invalid('options.compress must be a boolean')
  return compress
}

/** The engine's defaults (each defined once there); the facade writes none of its own. */
export const DEFAULTS: native.NativeDefaults = native.defaults()

/**
 * Native writer options from `sync`, `compression`, `snapshotSeq` and `preallocate`, each
 * checked; what the caller left out is left out, and the engine's default applies.
 */
export function nativeOptions(options: Record<string, unknown>): native.NativeOpenOptions {
  const { sync, compression, snapshotSeq, preallocate } = options
  const out: native.NativeOpenOptions = {}
  if (snapshotSeq !== undefined) out.snapshotSeq = checkInteger('snapshotSeq', snapshotSeq, 0, Number.MAX_SAFE_INTEGER)
  if (preallocate !== undefined) out.preallocate = preallocate === false ? 0 : checkInteger('preallocate', preallocate, 4096, 2 ** 40)
  if (sync === 'always' || sync === 'manual') {
    out.syncMode = sync
  } else if (isObject(sync) && ('everyN' in sync) !== ('intervalMs' in sync)) {
    const { everyN, intervalMs } = checkObject('sync', sync, ['everyN', 'intervalMs'])
    if (everyN !== undefined) {
      out.syncMode = 'everyN'
      out.everyN = checkInteger('sync.everyN', everyN, 1, U32_MAX)
    } else {
      out.syncMode = 'interval'
      out.intervalMs = checkInteger('sync.intervalMs', intervalMs, 1, U32_MAX)
    }
  } else if (sync !== undefined) {
    throw invalid(`sync must be 'always', 'manual', { everyN } or { intervalMs }, got ${describe(sync)}`)
  }
  if (compression === false) {
    out.compressionDisabled = true
  } else if (compression !== undefined) {
    if (!isObject(compression)) throw invalid('compression must be false or { threshold?, level? }')
    checkObject('compression', compression, ['threshold', 'level'])
    if (compression.threshold !== undefined) out.compressionThreshold = checkInteger('compression.threshold', compression.threshold, 0, U32_MAX)
    if (compression.level !== undefined) out.compressionLevel = checkInteger('compression.level', compression.level, 1, 22)
  }
  return out
}

export function nativeMeta(meta: unknown): native.NativeMeta | undefined {
  if (meta === undefined) return undefined
  const { principal, origin, hlc } = checkObject('meta', meta, ['principal', 'origin', 'hlc'])
  const out: native.NativeMeta = {}
  if (principal !== undefined) out.principal = checkBytes('meta.principal', principal)
  if (origin !== undefined) {
    if (!isObject(origin) || (origin.kind !== 'local' && origin.kind !== 'replicated')) {
      throw invalid("meta.origin must be { kind: 'local' } or { kind: 'replicated', sourceNodeId, sourceSeq }")
    }
    if (origin.kind === 'replicated') {
      out.sourceNodeId = checkInteger('origin.sourceNodeId', origin.sourceNodeId, 0, Number.MAX_SAFE_INTEGER)
      out.sourceSeq = checkInteger('origin.sourceSeq', origin.sourceSeq, 0, Number.MAX_SAFE_INTEGER)
    }
  }
  if (hlc !== undefined) {
    if (!isObject(hlc)) throw invalid('meta.hlc must be { seconds, subseconds }')
    out.hlcSeconds = checkInteger('hlc.seconds', hlc.seconds, 0, Number.MAX_SAFE_INTEGER)
    out.hlcSubseconds = checkInteger('hlc.subseconds', hlc.subseconds ?? 0, 0, U32_MAX)
  }
  return out
}

export function nativePolicy(policy: unknown, defaults: RetentionPolicy = {}): native.NativePolicy {
  const given = { ...defaults, ...checkObject('policy', policy, ['keepSnapshots', 'keepArchives', 'maxBytes', 'maxAgeMs']) }
  const out: native.NativePolicy = {}
  if (given.keepSnapshots !== undefined) out.keepSnapshots = checkInteger('keepSnapshots', given.keepSnapshots, 0, U32_MAX)
  if (given.keepArchives !== undefined) out.keepArchives = checkInteger('keepArchives', given.keepArchives, 0, U32_MAX)
  if (given.maxBytes !== undefined) out.maxBytes = checkInteger('maxBytes', given.maxBytes, 0, Number.MAX_SAFE_INTEGER)
  if (given.maxAgeMs !== undefined) out.maxAgeMs = checkInteger('maxAgeMs', given.maxAgeMs, 0, Number.MAX_SAFE_INTEGER)
  return out
}

export function nativeSections(sections: unknown, compress: boolean): native.NativeSection[] {
  let pairs: [unknown, unknown][]
  if (sections instanceof Map) pairs = [...sections.entries()]
  else if (isObject(sections) && !Array.isArray(sections)) pairs = Object.entries(sections)
  else throw invalid('sections must be a Record or Map of name to Uint8Array')
  return pairs.map(([name, data]) => {
    if (typeof name !== 'string') throw invalid('section names must be strings')
    return { name, data: checkBytes(`sections[${describe(name)}]`, data), compress }
  })
}

/** The edit distance between `a` and `b`: insertions, deletions, substitutions, and swaps of adjacent characters. */
export function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)))
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1)
    }
  }
  return d[a.length][b.length]
}

/**
 * The candidate `name` is most likely a typo of (leading dashes aside): the nearest within a
 * third of its length (at least one edit), else the one it abbreviates.
 */
export function closest(name: string, candidates: readonly string[]): string | undefined {
  const bare = (text: string): string => text.replace(/^-+/, '')
  let best: string | undefined
  let bestDistance = Math.max(1, Math.floor(bare(name).length / 3)) + 1
  for (const candidate of candidates) {
    const d = distance(bare(name), bare(candidate))
    if (d < bestDistance) [best, bestDistance] = [candidate, d]
  }
  return best ?? (bare(name).length >= 2 ? candidates.find((c) => bare(c).startsWith(bare(name))) : undefined)
}

/** The `shared` option of `Store.open` (docs/sharing.md): `true`, or with `producer`: stamp this handle's appends as that idempotent producer (an integer id, stable across the process's restarts), so an append in flight when the owner dies is sent again to the next owner instead of failing with `OWNER_LOST`. */
export type SharedOption = boolean | { producer?: number }

/** What this process is to a shared store: its owner, or a client of the owner. */
export type SharedRole = 'owner' | 'client'

/** The checked option: `null` when the store is not shared, else the producer id (or `null`). */
export function checkShared(shared: unknown): { producer: number | null } | null {
  if (shared === undefined || shared === false) return null
  if (shared === true) return { producer: null }
  if (!isObject(shared)) throw invalid('shared must be true, false or { producer }')
  const { producer } = checkObject('shared', shared, ['producer'])
  return { producer: producer === undefined ? null : checkInteger('shared.producer', producer, 0, Number.MAX_SAFE_INTEGER) }
}
