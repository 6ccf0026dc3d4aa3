/**
 * Admission and settlement: the requests bound for one committer, in order of arrival. A
 * request is admitted (a ticket, a copy into the tick's outbox) while `maxQueueBytes` has
 * room; beyond that it waits in a FIFO holding its own copy of its payloads, until earlier
 * requests commit. Ordered operations (flushes, checkpoint watermarks, close) wait in the same
 * FIFO, so sequences follow arrival order. The committer's outcomes settle each request by
 * ticket and release its room.
 *
 * A request is payloads and two callbacks, not a Promise of the caller's: `Appender`'s
 * methods are one source of requests; any other (a client of a shared store over a socket)
 * hands them in the same way.
 */
import type * as native from '../../native'

import { type PersistError, nativeError, translate } from '../errors'
import { Fifo } from '../fifo'
import { Outbox, type Packed, type Payloads, Slab, pack } from '../outbox'

/** An append request: its room in the queue and who to tell its first sequence (called synchronously once settled). */
export interface Request {
  bytes: number
  resolve: (first: number) => void
  reject: (error: PersistError) => void
}

/**
 * A request waiting for room in the queue or for the requests before it: an append (its
 * payloads copied, so the caller's buffer may change or be transferred meanwhile), or an
 * ordered operation to start.
 */
type Waiting =
  | { readonly request: Request; readonly payloads: Payloads; readonly meta: native.NativeMeta | undefined }
  | { readonly request: null; readonly start: () => void }

/** What admission uses of the committer: the native appender of a writer or store. */
export type Committer = Pick<native.NativeAppender, 'submit' | 'queuedBytes' | 'waitForRoom'>

/** A request of at least this many payload bytes is handed to the addon alone, its payloads uncopied by the outbox. */
const DIRECT_BYTES = 1 << 20

/** Period of the timer that holds the event loop open while requests are pending (it never fires in practice). */
const KEEP_ALIVE_MS = 2 ** 30

/** The queue of one committer's requests: see the module documentation. */
export class Admission {
  readonly #committer: Committer
  readonly #maxQueueBytes: number
  #queuedBytes = 0
  readonly #waiting = new Fifo<Waiting>()
  /** Where the payloads of waiting requests are copied. */
  readonly #slab = new Slab()
  /** Requests admitted this tick, not yet handed to the committer. */
  readonly #outbox = new Outbox()
  /** Requests handed over (or in the outbox), by ticket. */
  readonly #pending = new Map<number, Request>()
  #nextTicket = 1
  /** Ref'd while requests are pending: the addon's callback alone does not keep Node running. */
  readonly #keepAlive: ReturnType<typeof setInterval>
  #closing = false

  constructor(committer: Committer, maxQueueBytes: number) {
    this.#committer = committer
    this.#maxQueueBytes = maxQueueBytes
    this.#keepAlive = setInterval(() => undefined, KEEP_ALIVE_MS)
    this.#keepAlive.unref()
  }

  /** Payload bytes admitted and not yet settled (at most `maxQueueBytes`, or one larger request). */
  get queuedBytes(): number {
    return this.#queuedBytes
  }

  /** Requests and operations waiting for room or for the ones before them. */
  get waiting(): number {
    return this.#waiting.length
  }

  /** Requests admitted and not yet settled. */
  get pending(): number {
    return this.#pending.size
  }

  /**
   * Run `run` (which hands an operation to the committer) once every request before it has
   * been handed over. It takes no room in the queue.
   */
  ordered<T>(run: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const start = (): void => {
        this.send()
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

  /**
   * Queue `payloads` as one request (all commit together) whose outcome goes to `request`. A
   * list of buffers is admitted for the end of the tick, or, when it has to wait, keeps
   * `own()`: payloads of its own (by default a copy). `Packed` payloads (a batch of
   * `appendSync` entries) are handed over at once; their caller holds the event loop, so they
   * block until the committer has room instead of waiting.
   */
  enqueue(payloads: Payloads, meta: native.NativeMeta | undefined, request: Request, own = (): Payloads => pack(payloads as readonly Uint8Array[], this.#slab)): void {
    // Requests that waited may fit now, though no reply has reached this thread (a loop of
    // appendSync holds it): they go first, in order.
    this.admitWaiting()
    // An appendSync batch cannot wait for the event loop its caller holds, and piling batches
    // up here would let a loop hold any amount of memory: it blocks until the committer has
    // room (behind the requests already waiting), so memory stays within the queue bound.
    if (!Array.isArray(payloads)) {
      while (!(this.#waiting.length === 0 && this.#fits(request.bytes))) {
        this.send()
        const next = this.#waiting.length > 0 ? this.#waitingBytes() : request.bytes
        if (!this.#committer.waitForRoom(Math.max(0, this.#maxQueueBytes - next))) break
        this.admitWaiting()
      }
    }
    if (this.#waiting.length === 0 && this.#fits(request.bytes)) this.#start(request, payloads, meta)
    else this.#waiting.push({ request, payloads: own(), meta })
  }

  /** Start the waiting requests that fit now, oldest first. */
  admitWaiting(): void {
    while (this.#waiting.length > 0 && this.#fits(this.#waitingBytes())) this.#startWaiting()
  }

  /** Start every waiting request and operation, whatever room there is, and hand them over. */
  drain(): void {
    while (this.#waiting.length > 0) this.#startWaiting()
    this.send()
  }

  /** Hand the outbox to the committer. */
  send(): void {
    if (this.#outbox.empty) return
    try {
      this.#outbox.sendTo(this.#committer)
    } catch (error) {
      const failure = translate(error)
      for (const ticket of this.#outbox.tickets()) this.#finish(ticket)?.reject(failure)
      this.#outbox.clear()
    }
  }

  /**
   * Settle requests by the committer's outcomes: `settled` holds (ticket, first sequence or
   * -1) pairs, `failures` the errors in order. Returns how many failed.
   */
  settle(settled: Float64Array, failures: string[]): number {
    let failed = 0
    for (let i = 0; i + 1 < settled.length; i += 2) {
      const first = settled[i + 1] ?? -1
      const message = first < 0 ? failures[failed++] : undefined
      const request = this.#finish(settled[i] ?? 0)
      if (message === undefined) request?.resolve(first)
      else request?.reject(nativeError(message))
    }
    return failed
  }

  /** No more requests come: from now on, the keep-alive timer goes once nothing is pending. */
  closing(): void {
    this.#closing = true
  }

  /** Closed: drop the keep-alive timer now if nothing is pending, else once the last request settles. */
  close(): void {
    if (this.#pending.size === 0) this.#release()
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
    if (this.#outbox.empty) queueMicrotask(() => this.send())
    this.#outbox.add(ticket, list, request.bytes, meta)
  }

  /** Hand one request to the committer now, after what the outbox holds, in one call that copies its payloads. */
  #submitAlone(ticket: number, data: readonly Uint8Array[], lengths: Uint32Array, metas: native.NativeMeta[] | null, chained: boolean): void {
    this.send()
    try {
      this.#committer.submit(data as Uint8Array[], lengths, Float64Array.of(ticket, lengths.length), metas, chained)
    } catch (error) {
      this.#finish(ticket)?.reject(translate(error))
    }
  }

  /** Start the oldest waiting request or operation. */
  #startWaiting(): void {
    const waiting = this.#waiting.shift()
    if (waiting === undefined) return
    if (waiting.request === null) waiting.start()
    else this.#start(waiting.request, waiting.payloads, waiting.meta)
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
    const live = this.#committer.queuedBytes() + this.#outbox.bytes
    return live === 0 || live + bytes <= this.#maxQueueBytes
  }
}
