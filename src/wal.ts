/** The WAL writer and reader. */
import * as native from '../native'

import { EntryBatch, type WalEntry } from './batch'
import { Outbox, type Submitter } from './outbox'
import { PersistError, call, invalid, nativeError, translate } from './errors'
import {
  type AppendMeta,
  type CompressionOption,
  type RetentionPolicy,
  type Sections,
  type SyncPolicy,
  checkInteger,
  checkObject,
  checkPath,
  checkPayload,
  isObject,
  nativeMeta,
  nativeOptions,
  nativePolicy,
  nativeSections,
} from './options'

/** Options of {@link WalWriter.open}. */
export interface WalWriterOptions {
  /** Durability policy; default `'always'` (durable when `append` resolves). */
  sync?: SyncPolicy
  /** zstd compression of payloads at or above `threshold` bytes (default 4096); `false` disables. */
  compression?: CompressionOption
  /** Snapshot sequence recorded in a new file's header; the first entry gets `snapshotSeq + 1`. */
  snapshotSeq?: number
  /** Bound on payload bytes queued to the committer at once (default 64 MiB); see {@link Appender}. */
  maxQueueBytes?: number
  /**
   * Grow the active WAL this many bytes of written zeros at a time ahead of the writes
   * (default 1 MiB), so an fdatasync flushes data without a file-size or extent change;
   * `false` grows it write by write. The unused zero tail is cut at close and read as the end
   * of the log after a crash.
   */
  preallocate?: number | false
}

/** A torn tail cut when a writer opened. */
export interface TailRepair {
  reason: 'short-frame' | 'corrupt-final-frame'
  /** Offset of the first byte cut (the end of the last valid entry). */
  offset: number
  /** How many bytes were cut. */
  discardedBytes: number
}

/** What a rotation or checkpoint did. */
export interface Checkpoint {
  /** The sequence the new snapshot covers. */
  sequence: number
  snapshotPath: string
  snapshotBytes: number
  /** The sealed WAL prefix. */
  archivePath: string
}

/** What a prune did. */
export interface PruneResult {
  deletedSnapshots: number[]
  deletedArchives: number[]
  deletedTempFiles: string[]
  retainedSnapshots: number[]
  retainedArchives: number[]
  bytesReclaimed: number
}

/** The native handles that own a committer thread. */
interface NativeAppender extends Submitter {
  listen(callback: (settled: Float64Array, failures: string[]) => void): void
  commitSync(payload?: Uint8Array | null, meta?: native.NativeMeta | null): number | null
  takeSettled(): native.NativeSettled
  flush(): Promise<void>
  close(): Promise<void>
  state(): native.NativeWriterState
  tailRepair(): native.NativeTailRepair | null
}

/** Default bound on the bytes queued to the committer and not yet committed: 64 MiB. */
export const DEFAULT_MAX_QUEUE_BYTES = 64 << 20

interface Waiting {
  bytes: number
  start: () => void
}

/** An append request handed to the committer, waiting for its outcome. */
interface Pending {
  bytes: number
  resolve: (first: number) => void
  reject: (error: PersistError) => void
}

/** `appendSync` hands its entries to the committer in batches of this many, or this many bytes. */
const SYNC_BATCH_ENTRIES = 1024
const SYNC_BATCH_BYTES = 1 << 20

/** Period of the timer that holds the event loop open while appends are pending (it never fires in practice). */
const KEEP_ALIVE_MS = 2 ** 30

/**
 * What WalWriter and Store share: appends queued to a committer thread that groups concurrent
 * appends into one write and one fdatasync. No fsync ever runs on the JS thread, except in
 * the blocking calls (`appendDurableSync`, `flushSync`), which say so.
 *
 * The appends made in one tick are copied into one buffer and handed over in one native call
 * at the end of the tick; the committer answers a whole group with one callback. So N
 * concurrent appends cost one hand-off each way, not N.
 *
 * Backpressure: at most `maxQueueBytes` of payload are queued to the committer at once. Calls
 * beyond that wait, in call order and without copying their buffers, until earlier appends
 * commit; so sequences still follow call order and memory stays bounded however fast appends
 * are fired.
 */
export abstract class Appender {
  readonly #native: NativeAppender
  readonly #maxQueueBytes: number
  #queuedBytes = 0
  readonly #waiting: Waiting[] = []
  /** Requests admitted this tick, not yet handed to the committer. */
  readonly #outbox = new Outbox()
  /** Requests handed over (or in the outbox), by ticket. */
  readonly #pending = new Map<number, Pending>()
  #nextTicket = 1
  /** Ref'd while requests are pending: the addon's callback alone does not keep Node running. */
  readonly #keepAlive: ReturnType<typeof setInterval>
  /** Whether the policy acknowledges before fdatasync, so `appendSync` may be used. */
  readonly #ackBeforeSync: boolean
  /** `appendSync` entries not yet handed to the committer. */
  #unsent: Uint8Array[] = []
  #unsentBytes = 0
  /** The failure of an `appendSync` batch: every later call fails with it. */
  #syncFailure: PersistError | null = null
  /** `appendSync` batches handed to the committer and not yet settled. */
  readonly #syncInFlight = new Set<Promise<void>>()
  #closing = false
  /** The torn tail cut when this was opened, or `null` if the WAL was clean. */
  readonly tailRepair: TailRepair | null

  protected constructor(handle: NativeAppender, maxQueueBytes: number, syncMode: string) {
    this.#native = handle
    this.#maxQueueBytes = maxQueueBytes
    this.#ackBeforeSync = syncMode !== 'always'
    this.tailRepair = (handle.tailRepair() as TailRepair | null) ?? null
    this.#keepAlive = setInterval(() => undefined, KEEP_ALIVE_MS)
    this.#keepAlive.unref()
    handle.listen((settled, failures) => this.#settle(settled, failures))
  }

  /**
   * Run `run` (which hands an operation to the committer) once everything called before it
   * has been handed over. Operations that must keep their place in the sequence order
   * (checkpoint watermarks, flushes, close) go through here; they take no room in the queue.
   */
  protected admit<T>(run: () => Promise<T>): Promise<T> {
    this.#sendUnsent()
    const failure = this.#syncFailure
    if (failure) return Promise.reject(failure)
    return new Promise<T>((resolve, reject) => {
      const start = (): void => {
        this.#send()
        try {
          run().then(resolve, reject)
        } catch (error) {
          reject(error)
        }
      }
      if (this.#waiting.length === 0) start()
      else this.#waiting.push({ bytes: 0, start })
    })
  }

  /** Queue one request (all of `payloads` commit together) in call order; resolves with its first sequence. */
  #request(payloads: readonly Uint8Array[], bytes: number, meta: native.NativeMeta | undefined): Promise<number> {
    return new Promise<number>((resolve, reject) => this.#enqueue(payloads, meta, { bytes, resolve, reject }))
  }

  /** {@link Appender.#request} with its outcome going to `outcome`, which is called synchronously when settled. */
  #enqueue(payloads: readonly Uint8Array[], meta: native.NativeMeta | undefined, outcome: Pending): void {
    const { bytes } = outcome
    this.#sendUnsent()
    const failure = this.#refusal()
    if (failure) return outcome.reject(failure)
    const start = (): void => {
      const ticket = this.#nextTicket++
      this.#queuedBytes += bytes
      if (this.#pending.size === 0) this.#keepAlive.ref()
      this.#pending.set(ticket, outcome)
      if (this.#outbox.empty) queueMicrotask(() => this.#send())
      this.#outbox.add(ticket, payloads, bytes, meta)
    }
    if (this.#waiting.length === 0 && this.#fits(bytes)) start()
    else this.#waiting.push({ bytes, start })
  }

  /** Why a new append is refused: an `appendSync` batch failed, or the writer is closing. */
  #refusal(): PersistError | null {
    return this.#syncFailure ?? (this.#closing ? new PersistError('CLOSED', 'the writer is closed') : null)
  }

  /** Hand the outbox to the committer. */
  #send(): void {
    if (this.#outbox.empty) return
    try {
      this.#outbox.sendTo(this.#native)
    } catch (error) {
      const failure = translate(error)
      for (const ticket of this.#outbox.tickets()) this.#finish(ticket)?.reject(failure)
      this.#outbox.clear()
    }
  }

  /** The addon's callback: `settled` holds (ticket, first sequence or -1) pairs, `failures` the errors in order. */
  #settle(settled: Float64Array, failures: string[]): void {
    let failed = 0
    for (let i = 0; i + 1 < settled.length; i += 2) {
      const first = settled[i + 1] ?? -1
      const message = first < 0 ? failures[failed++] : undefined
      const request = this.#finish(settled[i] ?? 0)
      if (message === undefined) request?.resolve(first)
      else request?.reject(nativeError(message))
    }
    this.#admitWaiting()
  }

  /** Forget the request `ticket`, releasing its room in the queue. */
  #finish(ticket: number): Pending | undefined {
    const request = this.#pending.get(ticket)
    if (request === undefined) return undefined
    this.#pending.delete(ticket)
    this.#queuedBytes -= request.bytes
    if (this.#pending.size === 0) this.#release()
    return request
  }

  /** Nothing is pending: stop holding the event loop, and drop the timer once closed. */
  #release(): void {
    this.#keepAlive.unref()
    if (this.#closing) clearInterval(this.#keepAlive)
  }

  #fits(bytes: number): boolean {
    return this.#queuedBytes === 0 || this.#queuedBytes + bytes <= this.#maxQueueBytes
  }

  #admitWaiting(): void {
    while (this.#waiting.length > 0 && this.#fits(this.#waiting[0]?.bytes ?? 0)) this.#waiting.shift()?.start()
  }

  /** Payload bytes queued to the committer and not yet committed (at most `maxQueueBytes`, or one larger append). */
  get queuedBytes(): number {
    return this.#queuedBytes
  }

  /** Calls waiting for room in the queue. */
  get waitingCalls(): number {
    return this.#waiting.length
  }

  /**
   * Append one entry. Resolves with its sequence once it is as durable as the sync policy
   * promises. Sequences follow call order. The payload is copied before this returns (unless
   * the call has to wait for room in the queue: then do not modify it until it settles).
   */
  append(payload: Uint8Array, meta?: AppendMeta): Promise<number> {
    try {
      const bytes = checkPayload('payload', payload)
      return this.#request([bytes], bytes.length, nativeMeta(meta))
    } catch (error) {
      return Promise.reject(translate(error))
    }
  }

  /**
   * Append one entry without a Promise: the fast path for bulk ingest under a policy that
   * acknowledges before fdatasync (`everyN`, `intervalMs`, `manual`; refused under `'always'`).
   * Entries are handed to the committer 1024 at a time (and at the end of the current tick),
   * keeping their place in call order. `await flush()` makes them durable and reports any
   * failure; if a batch of them fails, every later call fails with that error until reopened,
   * so no entry after a lost one is ever acknowledged. The buffer is not copied until sent, so
   * do not modify it afterwards.
   */
  appendSync(payload: Uint8Array): void {
    if (this.#syncFailure) throw this.#syncFailure
    if (!this.#ackBeforeSync) throw invalid("appendSync needs a sync policy other than 'always': it returns before the entry is durable; appendDurableSync blocks until it is")
    if (this.#closing) throw new PersistError('CLOSED', 'the writer is closed')
    const bytes = checkPayload('payload', payload)
    if (this.#unsent.length === 0) queueMicrotask(() => this.#sendUnsent())
    this.#unsent.push(bytes)
    this.#unsentBytes += bytes.length
    if (this.#unsent.length >= SYNC_BATCH_ENTRIES || this.#unsentBytes >= SYNC_BATCH_BYTES) this.#sendUnsent()
  }

  /** Queue the `appendSync` entries gathered so far as one request. */
  #sendUnsent(): void {
    if (this.#unsent.length === 0) return
    const batch = this.#unsent
    const bytes = this.#unsentBytes
    this.#unsent = []
    this.#unsentBytes = 0
    let settled = (): void => undefined
    const sent = new Promise<void>((resolve) => (settled = resolve))
    this.#syncInFlight.add(sent)
    const done = (): void => {
      this.#syncInFlight.delete(sent)
      settled()
    }
    // The failure is recorded as soon as it is known, so a blocking call that drains it refuses at once.
    this.#enqueue(batch, undefined, {
      bytes,
      resolve: done,
      reject: (cause) => {
        this.#syncFailure ??= new PersistError(cause.code, `an appendSync batch failed, so later calls are refused: ${cause.message}`, { cause })
        done()
      },
    })
  }

  /**
   * Append one entry and return its sequence once it is durable, whatever the sync policy:
   * the write and the fdatasync run on the calling thread, which blocks meanwhile (as
   * better-sqlite3's calls do). It comes after every earlier call in sequence order and waits
   * for them to commit, settling their Promises before it returns. For process exit handlers,
   * CLI tools and worker threads; in a server, `append` keeps the event loop free.
   */
  appendDurableSync(payload: Uint8Array, meta?: AppendMeta): number {
    try {
      const bytes = checkPayload('payload', payload)
      // The addon returns a sequence whenever it is given a payload.
      return this.#commitSync(bytes, nativeMeta(meta)) as number
    } catch (error) {
      throw translate(error)
    }
  }

  /**
   * Make every entry appended so far durable before returning: blocks the calling thread for
   * the commit and the fdatasync. Throws if an `appendSync` batch failed.
   */
  flushSync(): void {
    try {
      this.#commitSync(null, undefined)
    } catch (error) {
      throw translate(error)
    }
  }

  /**
   * Hand every earlier call to the committer (waiting ones too: this blocks until all of them
   * commit anyway), then commit `payload` durably on this thread and settle what it waited for.
   */
  #commitSync(payload: Uint8Array | null, meta: native.NativeMeta | undefined): number | null {
    this.#sendUnsent()
    const refused = this.#refusal()
    if (refused) throw refused
    while (this.#waiting.length > 0) this.#waiting.shift()?.start()
    this.#send()
    // An entry must not be acknowledged behind a lost appendSync batch: settle those first.
    if (payload !== null && this.#syncInFlight.size > 0) this.#commitSync(null, undefined)
    let sequence: number | null
    try {
      sequence = this.#native.commitSync(payload, meta ?? null)
    } finally {
      // Every request whose outcome can be in the mailbox is pending until settled.
      if (this.#pending.size > 0) {
        const { settled, failures } = this.#native.takeSettled()
        this.#settle(settled, failures)
      }
    }
    if (payload === null && this.#syncFailure) throw this.#syncFailure
    return sequence
  }

  /** Wait for the `appendSync` batches sent so far; throw if any failed. */
  async #syncSettled(): Promise<void> {
    await Promise.all([...this.#syncInFlight])
    if (this.#syncFailure) throw this.#syncFailure
  }

  /** Append many entries as one commit; resolves with the first sequence (they are contiguous). */
  appendBatch(payloads: readonly Uint8Array[]): Promise<number> {
    try {
      if (!Array.isArray(payloads) || payloads.length === 0) throw invalid('payloads must be a non-empty array')
      let bytes = 0
      for (let i = 0; i < payloads.length; i++) {
        const payload: unknown = payloads[i]
        // The name is built only for the error, not for every element.
        bytes += (payload instanceof Uint8Array && payload.length <= native.MAX_PAYLOAD_BYTES ? payload : checkPayload(`payloads[${i}]`, payload)).length
      }
      return this.#request(payloads, bytes, undefined)
    } catch (error) {
      return Promise.reject(translate(error))
    }
  }

  /** Make every entry appended so far durable. */
  flush(): Promise<void> {
    return call(async () => {
      await this.admit(() => this.#native.flush())
      await this.#syncSettled()
    })
  }

  /**
   * Commit everything queued, make it durable (except under `'manual'`, where unflushed
   * entries may be lost on power failure), and release the lock.
   */
  close(): Promise<void> {
    return call(async () => {
      this.#sendUnsent()
      this.#closing = true
      try {
        await this.admit(() => this.#native.close())
        await this.#syncSettled()
      } finally {
        if (this.#pending.size === 0) this.#release()
      }
    })
  }

  /** Sequence of the last committed entry (the snapshot sequence when there is none). */
  get lastSequence(): number {
    return this.#native.state().lastSequence
  }

  /** File offset just past the last committed entry: the active WAL's size. */
  get committedOffset(): number {
    return this.#native.state().committedOffset
  }

  /** The snapshot sequence recorded in the active WAL's header. */
  get snapshotSeq(): number {
    return this.#native.state().snapshotSeq
  }

  /** Committed entries not yet fdatasynced. */
  get entriesSinceFsync(): number {
    return this.#native.state().entriesSinceFsync
  }

  /** Why writes are refused until reopened, or `null`. */
  get poisoned(): string | null {
    return this.#native.state().poisoned ?? null
  }

  /** Whether `close()` has been called. */
  get closed(): boolean {
    return this.#native.state().closed
  }
}

/** The single writer of one WAL file. */
export class WalWriter extends Appender {
  readonly #native: native.NativeWriter

  private constructor(handle: native.NativeWriter, maxQueueBytes: number, syncMode: string) {
    super(handle, maxQueueBytes, syncMode)
    this.#native = handle
  }

  /** Open (creating if absent) the WAL file at `path`, scan it and cut any torn tail. */
  static async open(path: string, options?: WalWriterOptions): Promise<WalWriter> {
    return call(async () => {
      const given = checkObject('options', options)
      const normalised = nativeOptions(given)
      const maxQueueBytes = queueBound(given)
      return new WalWriter(await native.NativeWriter.open(checkPath(path), normalised), maxQueueBytes, normalised.syncMode)
    })
  }

  /**
   * Low level: snapshot `sections` at the last sequence `sequence` and rotate through the
   * MANIFEST in the WAL's directory (snapshot, archive, MANIFEST commit, fresh WAL). The WAL
   * must be named `wal.log`. Most users want {@link Store.checkpoint}.
   */
  rotateWithManifest(sequence: number, sections: Sections, options: { compress?: boolean } = {}): Promise<Checkpoint> {
    return call(() =>
      this.#native.rotateWithManifest(
        checkInteger('sequence', sequence, 1, Number.MAX_SAFE_INTEGER),
        nativeSections(sections, options.compress ?? true),
        1,
      ),
    )
  }

  /** Low level: apply a retention policy to the WAL's directory. */
  prune(policy?: RetentionPolicy): Promise<PruneResult> {
    return call(() => this.#native.prune(nativePolicy(policy)))
  }
}

/** The `maxQueueBytes` option, checked. */
export function queueBound(options: Record<string, unknown>): number {
  return checkInteger('maxQueueBytes', options.maxQueueBytes ?? DEFAULT_MAX_QUEUE_BYTES, 1, Number.MAX_SAFE_INTEGER)
}

const BATCH_ENTRIES = 1024
const BATCH_BYTES = 4 << 20

/** A native source of chunks: a WAL reader or a store's replay. */
export interface ChunkSource {
  nextChunk(maxEntries: number, maxBytes: number): Promise<native.NativeChunk>
  close(): void
}

/** Yield every batch of a native chunk source, then release it. */
export async function* batchesOf(source: ChunkSource): AsyncGenerator<EntryBatch, void, undefined> {
  try {
    for (;;) {
      const chunk = await call(() => source.nextChunk(BATCH_ENTRIES, BATCH_BYTES))
      if (chunk.count === 0) return
      yield new EntryBatch(chunk)
    }
  } finally {
    source.close()
  }
}

/** Yield every entry of a stream of batches. */
export async function* entriesOf(batches: AsyncIterable<EntryBatch>): AsyncGenerator<WalEntry, void, undefined> {
  for await (const batch of batches) {
    for (let i = 0; i < batch.length; i++) yield batch.entry(i)
  }
}

/** Options of {@link WalReader.entries} and {@link Store.replay}. */
export interface EntriesOptions {
  /** First sequence to yield (default: the first there is). */
  from?: number
}

export function fromOption(options: unknown): number {
  if (!isObject(options)) throw invalid('options must be an object')
  return checkInteger('from', options.from ?? 0, 0, Number.MAX_SAFE_INTEGER)
}

/**
 * Reads a WAL file, verifying every checksum. Safe beside a live writer: it reads what was in
 * the file when iteration started, ends cleanly at a torn tail, and throws
 * `MID_LOG_CORRUPTION` where damage hides valid entries and `SEALED_CORRUPTION` where it lies
 * inside the prefix the seal records as durable.
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
  entries(options: EntriesOptions = {}): AsyncGenerator<WalEntry, void, undefined> {
    return entriesOf(this.batches(options))
  }

  /**
   * The entries in batches of up to 1024, each read in one native call: the fastest way to
   * replay, with no object per entry unless you ask for one (see {@link EntryBatch}).
   */
  async *batches(options: EntriesOptions = {}): AsyncGenerator<EntryBatch, void, undefined> {
    const from = fromOption(options)
    const reader = await call(() => native.NativeReader.open(this.path))
    yield* batchesOf({
      nextChunk: (maxEntries, maxBytes) => reader.nextChunk(from, maxEntries, maxBytes, false),
      close: () => reader.close(),
    })
  }
}
