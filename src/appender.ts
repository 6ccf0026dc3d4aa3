/**
 * What WalWriter and Store share: appends queued to a committer thread, in call order. The
 * queue itself (admission, backpressure, settlement) is `append/admission.ts`, the waking of
 * in-process followers `append/wakeup.ts`; this class checks the calls and keeps the rules of
 * `appendSync`, the blocking calls and close.
 */
import * as native from '../native'

import { Admission, type Request } from './append/admission'
import { SyncBatch } from './append/sync-batch'
import { Wakeup } from './append/wakeup'
import { type EntryBatch, type WalEntry, deferred, entriesOf } from './batch'
import { asyncDispose } from './dispose'
import { ioSince, publish } from './diagnostics'
import { PersistError, call, guarded, invalid, receiver, translate } from './errors'
import { type FollowOptions, followBatchesOf } from './follow'
import { type AppendMeta, checkPayload, isPlainPayload, nativeMeta } from './options'
import type { Payloads } from './outbox'


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

/**
 * What WalWriter and Store share: appends queued to a committer thread that groups concurrent
 * appends into one write and one fdatasync. No fsync ever runs on the JS thread, except in
 * the blocking calls (`appendDurableSync`, `flushSync`), which say so.
 *
 * The appends made in one tick are copied into one buffer and handed over in one native call
 * at the end of the tick; the committer answers a whole group with one callback. So N
 * concurrent appends cost one hand-off each way, not N. An append of 1 MiB or more is handed
 * over at once instead, the addon copying the caller's buffers in the call, and the engine
 * writes from that one copy (`bench/probes/large-batch.mjs`). Every payload is copied before the
 * call returns, so buffers may be reused, changed or transferred at once.
 *
 * Backpressure: at most `maxQueueBytes` of payload are queued to the committer at once. Calls
 * beyond that wait in call order, each holding a copy of its payload and about 0.5 KiB besides
 * (its Promise included; `bench/probes/waiting.mjs`), until earlier appends commit; so sequences still
 * follow call order, and what the committer holds stays bounded. `appendSync`, whose caller
 * holds the event loop, blocks for room instead, so a loop of it holds no more than the bound.
 */
export abstract class Appender {
  readonly #native: native.NativeAppender
  /** The queue to the committer: admission, backpressure, settlement. */
  readonly #admission: Admission
  /** What wakes in-process followers. */
  readonly #wakeup: Wakeup
  /**
   * Whether followers wake on every change of the log, not only on this handle's calls (a
   * shared store: other processes' commits too, told by the owner; `{ intervalMs }`: the
   * background fdatasync), and whether the addon was asked to tell of them yet: at the first
   * follower, so a handle that only appends pays no call per commit. Nothing polls.
   */
  readonly #watchAll: boolean
  #watching = false
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
  #poisonNoticed = false
  /** The torn tail cut when this was opened, or `null` if the WAL was clean. */
  readonly tailRepair: TailRepair | null

  /** `everyCommit`: the log has commits this handle did not ask for (a store shared by processes), which its followers must hear of. */
  protected constructor(handle: native.NativeAppender, maxQueueBytes: number, sync: native.NativeSyncSemantics, target: string, everyCommit = false) {
    this.#native = handle
    this.#target = target
    this.#wakeup = new Wakeup()
    // Under `{ intervalMs }` the fdatasync runs on the committer's timer, answering no call of
    // this handle's: a durable follower hears of it as of another process's commit.
    this.#watchAll = everyCommit || sync.syncsInBackground
    this.#ackBeforeSync = sync.acksBeforeSync
    this.tailRepair = (handle.tailRepair() as TailRepair | null) ?? null
    const repair = this.tailRepair
    if (repair) publish('tailRepair', () => ({ path: target, repair }))
    this.#admission = new Admission(handle, maxQueueBytes)
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
    return this.#admission.ordered(run)
  }

  /** Queue one request (all of `payloads` commit together) in call order; resolves with its first sequence. */
  #request(payloads: readonly Uint8Array[], bytes: number, meta: native.NativeMeta | undefined): Promise<number> {
    return new Promise<number>((resolve, reject) => this.#enqueue(payloads, meta, { bytes, resolve, reject }))
  }

  /** {@link Admission.enqueue}, after the `appendSync` entries gathered so far; refused once closing or after a failed batch. */
  #enqueue(payloads: Payloads, meta: native.NativeMeta | undefined, request: Request, own?: () => Payloads): void {
    this.#sendUnsent()
    const failure = this.#refusal()
    if (failure) return request.reject(failure)
    this.#admission.enqueue(payloads, meta, request, own)
  }

  /** Why a new append is refused: an `appendSync` batch failed, or the writer is closing. */
  #refusal(): PersistError | null {
    return this.#syncFailure ?? (this.#closing ? new PersistError('CLOSED', 'the writer is closed') : null)
  }

  /** The addon's outcomes of a group: settle its requests, tell the channels, admit what waited, wake the followers. */
  #settle(settled: Float64Array, failures: string[]): void {
    const failed = this.#admission.settle(settled, failures)
    publish('commit', () => {
      const state = this.#native.state()
      const io = ioSince(this.#ioReported, state)
      this.#ioReported = state
      return { path: this.#target, requests: settled.length / 2, failed, lastSequence: state.lastSequence, ...io }
    })
    if (failed > 0) this.#noticePoison()
    this.#admission.admitWaiting()
    this.changed()
  }

  /** Wake the followers: the log may have grown, or become durable further. */
  protected changed(): void {
    receiver(this, Appender).#wakeup.changed()
  }

  /** What wakes a follower, watching every change of the log first if followers should. */
  #followerWakeup(): Wakeup {
    if (this.#watchAll && !this.#watching && !this.#closing) {
      this.#native.watch(() => this.changed())
      this.#watching = true
    }
    return this.#wakeup
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
    return deferred(() => followBatchesOf(this.#target, options, () => receiver(this, Appender).#followerWakeup().waker()))
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
    return call(() => receiver(this, Appender).#followerWakeup().next())
  }

  /** {@link Appender.followBatches}, one entry at a time. */
  follow(options: FollowOptions = {}): AsyncGenerator<WalEntry, void, undefined> {
    return entriesOf(() => receiver(this, Appender).followBatches(options))
  }

  /** Payload bytes queued to the committer and not yet committed (at most `maxQueueBytes`, or one larger append). */
  get queuedBytes(): number {
    return guarded(() => this.#admission.queuedBytes)
  }

  /** Calls waiting for room in the queue. */
  get waitingCalls(): number {
    return guarded(() => this.#admission.waiting)
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
    this.#admission.drain()
    // An entry must not be acknowledged behind a lost appendSync batch: settle those first.
    if (payload !== null && this.#syncInFlight.size > 0) this.#commitSync(null, undefined)
    let sequence: number | null
    try {
      sequence = this.#native.commitSync(payload, meta ?? null)
    } finally {
      // Every request whose outcome can be in the mailbox is pending until settled.
      if (this.#admission.pending > 0) {
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
    this.#admission.closing()
    try {
      await this.#admission.ordered(() => this.#native.close())
      await this.#syncSettled()
    } finally {
      this.#admission.close()
      // Followers read what was committed, then end.
      this.changed()
      this.#wakeup.end()
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
        queuedBytes: this.#admission.queuedBytes,
        waitingCalls: this.#admission.waiting,
        msSinceFdatasync: s.sinceFdatasyncMs ?? null,
        tailRepairs: s.tailRepairs,
      }
    })
  }

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
