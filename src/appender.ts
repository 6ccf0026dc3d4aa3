/** What WalWriter and Store share: appends queued to a committer thread, in call order. */
import * as native from '../native'

import { type EntryBatch, type WalEntry, deferred, entriesOf } from './batch'
import { ioSince, publish } from './diagnostics'
import { PersistError, call, guarded, invalid, nativeError, receiver, translate } from './errors'
import { Fifo } from './fifo'
import { type FollowOptions, type Waker, followBatchesOf } from './follow'
import { type AppendMeta, checkPayload, isPlainPayload, nativeMeta } from './options'
import { Outbox, type Packed, type Payloads, Slab, pack } from './outbox'

/**
 * `Symbol.asyncDispose`, for `await using`: native in Node 20+, Bun and Deno; Node 18.18+
 * defines it as `Symbol.for('nodejs.asyncDispose')`, which older runtimes get here too, so a
 * handle disposes the same way wherever it runs.
 */
export const asyncDispose: typeof Symbol.asyncDispose = (Symbol.asyncDispose ?? Symbol.for('nodejs.asyncDispose')) as typeof Symbol.asyncDispose

/** A torn tail cut when a writer opened. */
export interface TailRepair {
  reason: 'short-frame' | 'corrupt-final-frame'
  /** Offset of the first byte cut (the end of the last valid entry). */
  offset: number
  /** How many bytes were cut. */
  discardedBytes: number
  /** How many of them (the first, up to 16 MiB) were kept, before the cut, in `savedPath`. */
  savedBytes: number
  /** `<wal>.torn.<offset>`, holding the bytes cut (for forensics; `prune` removes old ones), or `null`. */
  savedPath: string | null
}

/** The median, 99th percentile and largest value of a distribution. */
export interface Quantiles {
  p50: number
  p99: number
  max: number
}

/** What a writer (or store) has done since it opened: see {@link Appender.stats}. */
export interface WriterStats {
  /** Entries appended and committed (checkpoint watermarks not counted). */
  entries: number
  /** Payload bytes committed (before compression). */
  bytes: number
  /** Groups committed: one write each, however many calls they answered. */
  groups: number
  /** fdatasyncs of the WAL. */
  fdatasyncs: number
  /** Entries per group. */
  groupSize: Quantiles
  /** Milliseconds from a call's hand-over to the committer to its answer. */
  commitLatencyMs: Quantiles
  /** As {@link Appender.queuedBytes}. */
  queuedBytes: number
  /** Calls waiting for room in the queue. */
  waitingCalls: number
  /** Milliseconds since the last fdatasync (`null`: none since open). */
  msSinceFdatasync: number | null
  /** Torn tails cut when the WAL was opened. */
  tailRepairs: number
}

/** An append request: its room in the queue and who to tell its first sequence. */
interface Request {
  bytes: number
  resolve: (first: number) => void
  reject: (error: PersistError) => void
}

/**
 * A call waiting for room in the queue or for the calls before it: an append (its payloads
 * copied at the call, so the caller's buffer may change or be transferred meanwhile), or an
 * ordered operation to start (a flush, a checkpoint watermark, close).
 */
type Waiting =
  | { readonly request: Request; readonly payloads: Payloads; readonly meta: native.NativeMeta | undefined }
  | { readonly request: null; readonly start: () => void }

/** A request of at least this many payload bytes is handed to the addon alone, its payloads uncopied by the outbox. */
const DIRECT_BYTES = 1 << 20

/** `appendSync` hands its entries to the committer in batches of this many, or this many bytes. */
const SYNC_BATCH_ENTRIES = 1024
const SYNC_BATCH_BYTES = 1 << 20

/** Period of the timer that holds the event loop open while appends are pending (it never fires in practice). */
const KEEP_ALIVE_MS = 2 ** 30

/**
 * Under `{ intervalMs }` the background fdatasync has no callback into JS, so a durable
 * follower also looks again this often.
 */
const INTERVAL_FOLLOW_MS = 100

/**
 * `appendSync` entries not yet handed to the committer, copied at the call into one buffer, so
 * a caller may reuse, change or transfer its buffer as soon as the call returns.
 */
class SyncBatch {
  #data = new Uint8Array(64 << 10)
  #lengths = new Uint32Array(SYNC_BATCH_ENTRIES)
  #count = 0
  #bytes = 0

  get count(): number {
    return this.#count
  }

  get full(): boolean {
    return this.#count >= SYNC_BATCH_ENTRIES || this.#bytes >= SYNC_BATCH_BYTES
  }

  add(payload: Uint8Array): void {
    if (this.#bytes + payload.length > this.#data.length) {
      const bigger = new Uint8Array(Math.max(this.#bytes + payload.length, this.#data.length * 2))
      bigger.set(this.#data.subarray(0, this.#bytes))
      this.#data = bigger
    }
    this.#data.set(payload, this.#bytes)
    this.#bytes += payload.length
    this.#lengths[this.#count++] = payload.length
  }

  /** The entries gathered, as views valid until the next `add` unless {@link SyncBatch.release}d; the batch is emptied. */
  take(): Packed {
    const taken = { data: this.#data.subarray(0, this.#bytes), lengths: this.#lengths.subarray(0, this.#count) }
    this.#count = 0
    this.#bytes = 0
    return taken
  }

  /** Give the buffers behind the last `take` to its holder (a batch that must wait keeps them, uncopied); later entries go to new ones. */
  release(): void {
    this.#data = new Uint8Array(this.#data.length)
    this.#lengths = new Uint32Array(SYNC_BATCH_ENTRIES)
  }
}

/**
 * What WalWriter and Store share: appends queued to a committer thread that groups concurrent
 * appends into one write and one fdatasync. No fsync ever runs on the JS thread, except in
 * the blocking calls (`appendDurableSync`, `flushSync`), which say so.
 *
 * The appends made in one tick are copied into one buffer and handed over in one native call
 * at the end of the tick; the committer answers a whole group with one callback. So N
 * concurrent appends cost one hand-off each way, not N. An append of 1 MiB or more is handed
 * over at once instead, the addon copying the caller's buffers in the call, and the engine
 * writes from that one copy (`bench/large-batch.mjs`). Every payload is copied before the
 * call returns, so buffers may be reused, changed or transferred at once.
 *
 * Backpressure: at most `maxQueueBytes` of payload are queued to the committer at once. Calls
 * beyond that wait in call order, each holding a copy of its payload and about 0.5 KiB besides
 * (its Promise included; `bench/waiting.mjs`), until earlier appends commit; so sequences still
 * follow call order, and what the committer holds stays bounded. `appendSync`, whose caller
 * holds the event loop, blocks for room instead, so a loop of it holds no more than the bound.
 */
export abstract class Appender {
  readonly #native: native.NativeAppender
  readonly #maxQueueBytes: number
  #queuedBytes = 0
  readonly #waiting = new Fifo<Waiting>()
  /** Where the payloads of waiting calls are copied. */
  readonly #slab = new Slab()
  /** Requests admitted this tick, not yet handed to the committer. */
  readonly #outbox = new Outbox()
  /** Requests handed over (or in the outbox), by ticket. */
  readonly #pending = new Map<number, Request>()
  #nextTicket = 1
  /** Ref'd while requests are pending: the addon's callback alone does not keep Node running. */
  readonly #keepAlive: ReturnType<typeof setInterval>
  /** Whether the policy acknowledges before fdatasync, so `appendSync` may be used. */
  readonly #ackBeforeSync: boolean
  readonly #unsent = new SyncBatch()
  /** The failure of an `appendSync` batch: every later call fails with it. */
  #syncFailure: PersistError | null = null
  /** `appendSync` batches handed to the committer and not yet settled. */
  readonly #syncInFlight = new Set<Promise<void>>()
  #closing = false
  /** What followers of this writer read: its WAL file or store directory. */
  readonly #target: string
  /** Whether the policy fdatasyncs on a timer (`intervalMs`): followers look again on their own. */
  readonly #syncsInBackground: boolean
  /** Resolves on the next commit, flush or checkpoint (`true`), or once closed (`false`). */
  #change!: Promise<boolean>
  #announce!: (more: boolean) => void
  #ended = false
  /** The torn tail cut when this was opened, or `null` if the WAL was clean. */
  readonly tailRepair: TailRepair | null

  protected constructor(handle: native.NativeAppender, maxQueueBytes: number, sync: native.NativeSyncSemantics, target: string) {
    this.#native = handle
    this.#maxQueueBytes = maxQueueBytes
    this.#target = target
    this.#syncsInBackground = sync.syncsInBackground
    this.#renewChange()
    this.#ackBeforeSync = sync.acksBeforeSync
    this.tailRepair = (handle.tailRepair() as TailRepair | null) ?? null
    const repair = this.tailRepair
    if (repair) publish('tailRepair', () => ({ path: target, repair }))
    this.#keepAlive = setInterval(() => undefined, KEEP_ALIVE_MS)
    this.#keepAlive.unref()
    handle.listen((settled, failures) => this.#settle(settled, failures))
  }

  /**
   * Run `run` (which hands an operation to the committer) once everything called before it
   * has been handed over. Operations that must keep their place in the sequence order
   * (checkpoint watermarks, flushes) go through here; they take no room in the queue. Refused
   * after a failed `appendSync` batch.
   */
  protected admit<T>(run: () => Promise<T>): Promise<T> {
    return call(() => this.#admit(run))
  }

  #admit<T>(run: () => Promise<T>): Promise<T> {
    this.#sendUnsent()
    const failure = this.#syncFailure
    if (failure) return Promise.reject(failure)
    return this.#ordered(run)
  }

  /** {@link Appender.admit} whatever failed before. */
  #ordered<T>(run: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const start = (): void => {
        this.#send()
        try {
          run().then(resolve, reject)
        } catch (error) {
          reject(translate(error))
        }
      }
      if (this.#waiting.length === 0) start()
      else this.#waiting.push({ request: null, start })
    })
  }

  /** Queue one request (all of `payloads` commit together) in call order; resolves with its first sequence. */
  #request(payloads: readonly Uint8Array[], bytes: number, meta: native.NativeMeta | undefined): Promise<number> {
    return new Promise<number>((resolve, reject) => this.#enqueue(payloads, meta, { bytes, resolve, reject }))
  }

  /**
   * Queue `payloads` as one request whose outcome goes to `request`, called synchronously when
   * settled. A request that has to wait keeps `own()`: payloads of its own (by default a copy).
   */
  #enqueue(payloads: Payloads, meta: native.NativeMeta | undefined, request: Request, own = (): Payloads => pack(payloads as readonly Uint8Array[], this.#slab)): void {
    this.#sendUnsent()
    const failure = this.#refusal()
    if (failure) return request.reject(failure)
    // Calls that waited may fit now, though no reply has reached this thread (a loop of
    // appendSync holds it): they go first, in order.
    this.#startFitting()
    // An appendSync batch cannot wait for the event loop its caller holds, and piling batches
    // up here would let a loop hold any amount of memory: it blocks until the committer has
    // room (behind the calls already waiting), so memory stays within the queue bound.
    if (!Array.isArray(payloads)) {
      while (!(this.#waiting.length === 0 && this.#fits(request.bytes))) {
        this.#send()
        const next = this.#waiting.length > 0 ? this.#waitingBytes() : request.bytes
        if (!this.#native.waitForRoom(Math.max(0, this.#maxQueueBytes - next))) break
        this.#startFitting()
      }
    }
    if (this.#waiting.length === 0 && this.#fits(request.bytes)) this.#start(request, payloads, meta)
    else this.#waiting.push({ request, payloads: own(), meta })
  }

  /** Start the waiting calls that fit now, oldest first. */
  #startFitting(): void {
    while (this.#waiting.length > 0 && this.#fits(this.#waitingBytes())) this.#startWaiting()
  }

  /** Give `request` a ticket and copy it into the outbox, which is sent at the end of the tick. */
  #start(request: Request, payloads: Payloads, meta: native.NativeMeta | undefined): void {
    const ticket = this.#nextTicket++
    this.#queuedBytes += request.bytes
    if (this.#pending.size === 0) this.#keepAlive.ref()
    this.#pending.set(ticket, request)
    if (!Array.isArray(payloads)) {
      // A batch of appendSync entries (packed already): handed over now, after what the outbox
      // holds, in one call that copies it once. Chained: once one batch fails in the engine,
      // every later one does, though this thread learns of the first failure only later.
      const { data, lengths } = payloads as Packed
      this.#submitAlone(ticket, [data], lengths, null, true)
      return
    }
    const list = payloads as readonly Uint8Array[]
    if (request.bytes >= DIRECT_BYTES) {
      // A large request skips the outbox's copy: the addon copies the caller's buffers once,
      // in this call, and the engine writes from that copy.
      this.#submitAlone(ticket, list, Uint32Array.from(list, (p) => p.length), meta === undefined ? null : [meta], false)
      return
    }
    if (this.#outbox.empty) queueMicrotask(() => this.#send())
    this.#outbox.add(ticket, list, request.bytes, meta)
  }

  /** Hand one request to the committer now, after what the outbox holds, in one call that copies its payloads. */
  #submitAlone(ticket: number, data: readonly Uint8Array[], lengths: Uint32Array, metas: native.NativeMeta[] | null, chained: boolean): void {
    this.#send()
    try {
      this.#native.submit(data as Uint8Array[], lengths, Float64Array.of(ticket, lengths.length), metas, chained)
    } catch (error) {
      this.#finish(ticket)?.reject(translate(error))
    }
  }

  /** Start the oldest waiting call. */
  #startWaiting(): void {
    const waiting = this.#waiting.shift()
    if (waiting === undefined) return
    if (waiting.request === null) waiting.start()
    else this.#start(waiting.request, waiting.payloads, waiting.meta)
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
    publish('commit', () => {
      const state = this.#native.state()
      const io = ioSince(this.#ioReported, state)
      this.#ioReported = state
      return { path: this.#target, requests: settled.length / 2, failed, lastSequence: state.lastSequence, ...io }
    })
    if (failed > 0) this.#noticePoison()
    this.#startFitting()
    this.changed()
  }

  #renewChange(): void {
    this.#change = new Promise<boolean>((resolve) => (this.#announce = resolve))
  }

  /** Wake the followers: the log may have grown, or become durable further. */
  protected changed(): void {
    const self = receiver(this, Appender)
    if (self.#ended) return
    const announce = self.#announce
    self.#renewChange()
    announce(true)
  }

  /** What wakes an in-process follower: the committer's callbacks (and a short timer under `{ intervalMs }`). */
  #waker(): Waker {
    const timed = this.#syncsInBackground
    return {
      arm: () => (timed ? Promise.race([this.#change, new Promise<boolean>((resolve) => setTimeout(resolve, INTERVAL_FOLLOW_MS, true))]) : this.#change),
      close: () => undefined,
    }
  }

  /**
   * Follow this log as it grows: every entry from `from` on (default: the first after the live
   * snapshot), in sequence order, exactly once, then each new one as soon as it is committed
   * (with `durable`, once it is fdatasynced, under any policy), across checkpoints and
   * rotations. Woken by the committer, it reads from disk, so a slow consumer costs no
   * memory. It ends cleanly once this writer is closed (after the entries committed before)
   * or `signal` aborts.
   */
  followBatches(options: FollowOptions = {}): AsyncGenerator<EntryBatch, void, undefined> {
    return deferred(() => followBatchesOf(this.#target, options, () => this.#waker()))
  }

  /** @internal The WAL file, or the store directory, this appender writes. */
  get path(): string {
    return receiver(this, Appender).#target
  }

  /**
   * @internal Resolves on the next change of the log (`true`), or `false` once this writer is
   * closed: what wakes a follower, for the integrations that read the log themselves.
   */
  nextChange(): Promise<boolean> {
    return call(() => this.#waker().arm())
  }

  /** {@link Appender.followBatches}, one entry at a time. */
  follow(options: FollowOptions = {}): AsyncGenerator<WalEntry, void, undefined> {
    return entriesOf(() => receiver(this, Appender).followBatches(options))
  }

  #waitingBytes(): number {
    const next = this.#waiting.peek()
    return next === undefined || next.request === null ? 0 : next.request.bytes
  }

  /** Forget the request `ticket`, releasing its room in the queue. */
  #finish(ticket: number): Request | undefined {
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
    if (this.#queuedBytes === 0 || this.#queuedBytes + bytes <= this.#maxQueueBytes) return true
    // This thread learns of commits from their replies; the committer counts them at once.
    const live = this.#native.queuedBytes() + this.#outbox.bytes
    return live === 0 || live + bytes <= this.#maxQueueBytes
  }

  /** Payload bytes queued to the committer and not yet committed (at most `maxQueueBytes`, or one larger append). */
  get queuedBytes(): number {
    return guarded(() => this.#queuedBytes)
  }

  /** Calls waiting for room in the queue. */
  get waitingCalls(): number {
    return guarded(() => this.#waiting.length)
  }

  /**
   * Append one entry. Resolves with its sequence once it is as durable as the sync policy
   * promises. Sequences follow call order. The payload is copied before this returns.
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
   * The payload is copied at once; entries are handed to the committer 1024 at a time (and at
   * the end of the current tick), keeping their place in call order; when `maxQueueBytes` are
   * queued already, the call blocks until the committer has room. `await flush()` makes them
   * durable and reports any failure; if a batch of them fails, every later call fails
   * with that error until reopened, so no entry after a lost one is ever acknowledged.
   */
  appendSync(payload: Uint8Array): void {
    // The body of `guarded`, written out: a bulk loop calls this per entry, and a closure per
    // call is garbage that grows the young heap (and the process's RSS) with the loop.
    try {
      if (this.#syncFailure) throw this.#syncFailure
      if (!this.#ackBeforeSync) throw invalid("appendSync needs a sync policy other than 'always': it returns before the entry is durable; appendDurableSync blocks until it is")
      if (this.#closing) throw new PersistError('CLOSED', 'the writer is closed')
      const bytes = isPlainPayload(payload) ? payload : checkPayload('payload', payload)
      const unsent = this.#unsent
      if (unsent.count === 0) queueMicrotask(() => this.#sendUnsent())
      unsent.add(bytes)
      if (unsent.full) this.#sendUnsent()
    } catch (error) {
      throw translate(error)
    }
  }

  /** Queue the `appendSync` entries gathered so far as one request. */
  #sendUnsent(): void {
    if (this.#unsent.count === 0) return
    const batch = this.#unsent.take()
    let settled = (): void => undefined
    const sent = new Promise<void>((resolve) => (settled = resolve))
    this.#syncInFlight.add(sent)
    const done = (): void => {
      this.#syncInFlight.delete(sent)
      settled()
    }
    // The failure is recorded as soon as it is known, so a blocking call that drains it refuses at once.
    const request = {
      bytes: batch.data.length,
      resolve: done,
      reject: (cause: PersistError) => {
        this.#syncFailure ??= new PersistError(cause.code, `an appendSync batch failed, so later calls are refused: ${cause.message}`, { cause })
        done()
      },
    }
    this.#enqueue(batch, undefined, request, () => {
      this.#unsent.release()
      return batch
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
    return guarded(() => {
      const bytes = checkPayload('payload', payload)
      // The addon returns a sequence whenever it is given a payload.
      return this.#commitSync(bytes, nativeMeta(meta)) as number
    })
  }

  /**
   * Make every entry appended so far durable before returning: blocks the calling thread for
   * the commit and the fdatasync. Throws if an `appendSync` batch failed.
   */
  flushSync(): void {
    guarded(() => this.#commitSync(null, undefined))
  }

  /**
   * Hand every earlier call to the committer (waiting ones too: this blocks until all of them
   * commit anyway), then commit `payload` durably on this thread and settle what it waited for.
   */
  #commitSync(payload: Uint8Array | null, meta: native.NativeMeta | undefined): number | null {
    this.#sendUnsent()
    const refused = this.#refusal()
    if (refused) throw refused
    while (this.#waiting.length > 0) this.#startWaiting()
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
    this.changed()
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
      const checked = new Array<Uint8Array>(payloads.length)
      let bytes = 0
      for (let i = 0; i < payloads.length; i++) {
        const payload: unknown = payloads[i]
        // The name is built only for the error, not for every element.
        const view = isPlainPayload(payload) ? payload : checkPayload(`payloads[${i}]`, payload)
        checked[i] = view
        bytes += view.length
      }
      return this.#request(checked, bytes, undefined)
    } catch (error) {
      return Promise.reject(translate(error))
    }
  }

  /** Make every entry appended so far durable. */
  flush(): Promise<void> {
    return call(async () => {
      await this.#admit(() => this.#native.flush())
      this.changed()
      await this.#syncSettled()
    })
  }

  /**
   * Commit everything queued, make it durable (except under `'manual'`, where unflushed
   * entries may be lost on power failure), and release the file, its lock and the committer
   * thread. It releases them whatever failed before (a write, an fdatasync, an `appendSync`
   * batch, a checkpoint), and then rejects with that failure. Calling it again (at once or
   * later) resolves once the first close has finished: only the first reports a failure.
   */
  close(): Promise<void> {
    return call(() => {
      if (this.#closed) return this.#closed.catch(() => undefined)
      this.#closed = this.#close()
      return this.#closed
    })
  }

  /** `close()`, for `await using writer = await WalWriter.open(path)`. */
  [asyncDispose](): Promise<void> {
    return this.close()
  }

  /** The first `close()`. */
  #closed: Promise<void> | null = null

  /** The I/O totals the last commit event reported up to. */
  #ioReported = { fdatasyncs: 0, writtenBytes: 0, writeUs: 0, fdatasyncUs: 0 }

  async #close(): Promise<void> {
    this.#sendUnsent()
    this.#closing = true
    try {
      await this.#ordered(() => this.#native.close())
      await this.#syncSettled()
    } finally {
      if (this.#pending.size === 0) this.#release()
      // Followers read what was committed, then end.
      this.changed()
      this.#ended = true
      this.#announce(false)
    }
  }

  /** Sequence of the last committed entry (the snapshot sequence when there is none). */
  get lastSequence(): number {
    return guarded(() => this.#native.state().lastSequence)
  }

  /** File offset just past the last committed entry: the active WAL's size. */
  get committedOffset(): number {
    return guarded(() => this.#native.state().committedOffset)
  }

  /** The snapshot sequence recorded in the active WAL's header. */
  get snapshotSeq(): number {
    return guarded(() => this.#native.state().snapshotSeq)
  }

  /** Committed entries not yet fdatasynced. */
  get entriesSinceFsync(): number {
    return guarded(() => this.#native.state().entriesSinceFsync)
  }

  /**
   * What this writer has done since it opened: entries, bytes and groups committed,
   * fdatasyncs, the group-size and commit-latency distributions, the queue, the time since
   * the last fdatasync, torn tails cut at open. Cheap enough to poll.
   */
  stats(): WriterStats {
    return guarded(() => {
      const s = this.#native.stats()
      const quantiles = ([p50 = 0, p99 = 0, max = 0]: number[], scale = 1): Quantiles => ({ p50: p50 * scale, p99: p99 * scale, max: max * scale })
      return {
        entries: s.entries,
        bytes: s.bytes,
        groups: s.groups,
        fdatasyncs: s.fdatasyncs,
        groupSize: quantiles(s.groupSize),
        commitLatencyMs: quantiles(s.commitLatencyUs, 1e-3),
        queuedBytes: this.#queuedBytes,
        waitingCalls: this.#waiting.length,
        msSinceFdatasync: s.sinceFdatasyncMs ?? null,
        tailRepairs: s.tailRepairs,
      }
    })
  }

  #poisonNoticed = false

  /** Tell the `poison` channel, once, that the writer now refuses writes. */
  #noticePoison(): void {
    if (this.#poisonNoticed) return
    const reason = this.#native.state().poisoned
    if (!reason) return
    this.#poisonNoticed = true
    publish('poison', () => ({ path: this.#target, reason }))
  }

  /** Why writes are refused until reopened, or `null`. */
  get poisoned(): string | null {
    return guarded(() => this.#native.state().poisoned ?? null)
  }

  /** Whether `close()` has been called. */
  get closed(): boolean {
    return guarded(() => this.#native.state().closed)
  }
}
