/**
 * selene-persist: a durable, append-only write-ahead log with a Rust core.
 *
 * This facade adds typed options, typed errors, Promises and async iterators over the native
 * addon; every byte-level rule lives in the Rust engine.
 */
import * as native from './native'

/** Every error code this package raises. Codes are stable across releases. */
export type ErrorCode =
  | 'WRITER_LOCK_HELD'
  | 'PAYLOAD_TOO_LARGE'
  | 'PRINCIPAL_TOO_LARGE'
  | 'MID_LOG_CORRUPTION'
  | 'CHECKSUM_MISMATCH'
  | 'MAGIC_MISMATCH'
  | 'UNSUPPORTED_VERSION'
  | 'UNSUPPORTED_FRAME'
  | 'TRUNCATED_HEADER'
  | 'RESERVED_NON_ZERO'
  | 'NON_MONOTONIC_SEQUENCE'
  | 'SEQUENCE_GAP'
  | 'SEQUENCE_EXHAUSTED'
  | 'DECOMPRESSION_FAILED'
  | 'CLOSED'
  | 'POISONED'
  | 'INVALID_ARGUMENT'
  | 'IO'
  | 'INTERNAL'

/** The one error class this package throws; switch on `code`. */
export class PersistError extends Error {
  /** Stable machine-readable code. */
  readonly code: ErrorCode

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'PersistError'
    this.code = code
  }
}

const NATIVE_ERROR = /^\[selene:([A-Z_]+)\] ([\s\S]*)$/

/** Turn whatever the addon threw into a PersistError (unknown failures become INTERNAL). */
function translate(error: unknown): PersistError {
  if (error instanceof PersistError) return error
  const message = error instanceof Error ? error.message : String(error)
  const match = NATIVE_ERROR.exec(message)
  if (match) return new PersistError(match[1] as ErrorCode, match[2] ?? '', { cause: error })
  // napi-rs argument conversion failures: the caller passed a wrong type.
  const code = /convert|expect|invalid/i.test(message) ? 'INVALID_ARGUMENT' : 'INTERNAL'
  return new PersistError(code, message, { cause: error })
}

async function call<T>(run: () => Promise<T> | T): Promise<T> {
  try {
    return await run()
  } catch (error) {
    throw translate(error)
  }
}

function invalid(message: string): PersistError {
  return new PersistError('INVALID_ARGUMENT', message)
}

/** When appended entries are made durable. */
export type SyncPolicy = 'always' | 'manual' | { everyN: number } | { intervalMs: number }

/** Options of {@link WalWriter.open}. */
export interface WalWriterOptions {
  /** Durability policy; default `'always'` (durable when `append` resolves). */
  sync?: SyncPolicy
  /** zstd compression of payloads at or above `threshold` bytes (default 4096); `false` disables. */
  compression?: false | { threshold?: number; level?: number }
  /** Snapshot sequence recorded in a new file's header; the first entry gets `snapshotSeq + 1`. */
  snapshotSeq?: number
}

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

/** A torn tail cut when the writer opened. */
export interface TailRepair {
  reason: 'short-frame' | 'corrupt-final-frame' | 'zero-tail'
  /** Offset of the first byte cut (the end of the last valid entry). */
  offset: number
  /** How many bytes were cut. */
  discardedBytes: number
}

/** One entry read back. */
export interface WalEntry {
  sequence: number
  hlc: Hlc
  origin: Origin
  principal: Buffer | null
  payload: Buffer
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null
}

function checkInteger(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw invalid(`${name} must be an integer from ${min} to ${max}, got ${String(value)}`)
  }
  return value
}

function checkBytes(name: string, value: unknown): Uint8Array {
  if (!(value instanceof Uint8Array)) throw invalid(`${name} must be a Uint8Array or Buffer`)
  return value
}

const U32_MAX = 0xffff_ffff

function nativeOptions(options: unknown): native.NativeOpenOptions {
  if (options === undefined) options = {}
  if (!isObject(options)) throw invalid('options must be an object')
  const { sync = 'always', compression = {}, snapshotSeq = 0 } = options as WalWriterOptions
  const out: native.NativeOpenOptions = {
    syncMode: 'always',
    compressionLevel: 1,
    snapshotSeq: checkInteger('snapshotSeq', snapshotSeq, 0, Number.MAX_SAFE_INTEGER),
  }
  if (sync === 'always' || sync === 'manual') {
    out.syncMode = sync
  } else if (isObject(sync) && 'everyN' in sync) {
    out.syncMode = 'everyN'
    out.everyN = checkInteger('sync.everyN', sync.everyN, 1, U32_MAX)
  } else if (isObject(sync) && 'intervalMs' in sync) {
    out.syncMode = 'interval'
    out.intervalMs = checkInteger('sync.intervalMs', sync.intervalMs, 1, U32_MAX)
  } else {
    throw invalid(`sync must be 'always', 'manual', { everyN } or { intervalMs }, got ${JSON.stringify(sync)}`)
  }
  if (compression !== false) {
    if (!isObject(compression)) throw invalid('compression must be false or { threshold?, level? }')
    out.compressionThreshold = checkInteger('compression.threshold', compression.threshold ?? 4096, 0, U32_MAX)
    out.compressionLevel = checkInteger('compression.level', compression.level ?? 1, 1, 22)
  }
  return out
}

function nativeMeta(meta: unknown): native.NativeMeta | undefined {
  if (meta === undefined) return undefined
  if (!isObject(meta)) throw invalid('meta must be an object')
  const { principal, origin, hlc } = meta as AppendMeta
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

function checkPath(path: unknown): string {
  if (typeof path !== 'string' || path.length === 0 || path.includes('\0')) {
    throw invalid('path must be a non-empty string without NUL bytes')
  }
  return path
}

/**
 * The single writer of one WAL file. Appends go to a committer thread that groups concurrent
 * appends into one write and one fdatasync; no fsync ever runs on the JS thread.
 */
export class WalWriter {
  readonly #native: native.NativeWriter
  /** The torn tail cut when this writer opened, or `null` if the file was clean. */
  readonly tailRepair: TailRepair | null

  private constructor(writer: native.NativeWriter) {
    this.#native = writer
    this.tailRepair = (writer.tailRepair() as TailRepair | null) ?? null
  }

  /** Open (creating if absent) the WAL file at `path`, scan it and cut any torn tail. */
  static async open(path: string, options?: WalWriterOptions): Promise<WalWriter> {
    return call(async () => new WalWriter(await native.NativeWriter.open(checkPath(path), nativeOptions(options))))
  }

  /**
   * Append one entry. Resolves with its sequence once it is as durable as the sync policy
   * promises. Sequences follow call order.
   */
  append(payload: Uint8Array, meta?: AppendMeta): Promise<number> {
    return call(() => this.#native.append(checkBytes('payload', payload), nativeMeta(meta)))
  }

  /** Append many entries as one commit; resolves with the first sequence (they are contiguous). */
  appendBatch(payloads: readonly Uint8Array[]): Promise<number> {
    return call(() => {
      if (!Array.isArray(payloads) || payloads.length === 0) throw invalid('payloads must be a non-empty array')
      return this.#native.appendBatch(payloads.map((p, i) => checkBytes(`payloads[${i}]`, p)))
    })
  }

  /** Make every entry appended so far durable. */
  flush(): Promise<void> {
    return call(() => this.#native.flush())
  }

  /**
   * Commit everything queued, make it durable (except under `'manual'`, where unflushed
   * entries may be lost on power failure), and release the file lock.
   */
  close(): Promise<void> {
    return call(() => this.#native.close())
  }

  /** Sequence of the last committed entry (`snapshotSeq` when there is none). */
  get lastSequence(): number {
    return this.#native.state().lastSequence
  }

  /** File offset just past the last committed entry. */
  get committedOffset(): number {
    return this.#native.state().committedOffset
  }

  /** The snapshot sequence recorded in the file header. */
  get snapshotSeq(): number {
    return this.#native.state().snapshotSeq
  }

  /** Committed entries not yet fdatasynced. */
  get entriesSinceFsync(): number {
    return this.#native.state().entriesSinceFsync
  }

  /** Why the writer refuses writes until reopened, or `null`. */
  get poisoned(): string | null {
    return this.#native.state().poisoned ?? null
  }

  /** Whether `close()` has been called. */
  get closed(): boolean {
    return this.#native.state().closed
  }
}

/** Options of {@link WalReader.entries}. */
export interface EntriesOptions {
  /** First sequence to yield (default: the first in the file). */
  from?: number
}

const BATCH_ENTRIES = 1024
const BATCH_BYTES = 4 << 20

function toEntry(raw: native.NativeEntry): WalEntry {
  return {
    sequence: raw.sequence,
    hlc: { seconds: raw.hlcSeconds, subseconds: raw.hlcSubseconds },
    origin:
      raw.sourceNodeId === undefined || raw.sourceNodeId === null
        ? { kind: 'local' }
        : { kind: 'replicated', sourceNodeId: raw.sourceNodeId, sourceSeq: raw.sourceSeq ?? 0 },
    principal: raw.principal ?? null,
    payload: raw.payload,
  }
}

/**
 * Reads a WAL file, verifying every checksum. Safe beside a live writer: it reads what was in
 * the file when iteration started, ends cleanly at a torn tail, and throws
 * `MID_LOG_CORRUPTION` where damage hides valid entries.
 */
export class WalReader {
  /** The file's path. */
  readonly path: string
  /** The snapshot sequence recorded in the file header. */
  readonly snapshotSeq: number

  private constructor(path: string, snapshotSeq: number) {
    this.path = path
    this.snapshotSeq = snapshotSeq
  }

  /** Open the WAL at `path` and check its header. */
  static async open(path: string): Promise<WalReader> {
    return call(async () => {
      const reader = await native.NativeReader.open(checkPath(path))
      const snapshotSeq = reader.snapshotSeq() ?? 0
      reader.close()
      return new WalReader(path, snapshotSeq)
    })
  }

  /** The entries in sequence order, each iteration reading the file afresh. */
  async *entries(options: EntriesOptions = {}): AsyncGenerator<WalEntry, void, undefined> {
    if (!isObject(options)) throw invalid('options must be an object')
    const from = checkInteger('from', options.from ?? 0, 0, Number.MAX_SAFE_INTEGER)
    const reader = await call(() => native.NativeReader.open(this.path))
    try {
      for (;;) {
        const batch = await call(() => reader.nextBatch(from, BATCH_ENTRIES, BATCH_BYTES))
        if (batch.length === 0) return
        for (const raw of batch) yield toEntry(raw)
      }
    } finally {
      reader.close()
    }
  }
}
