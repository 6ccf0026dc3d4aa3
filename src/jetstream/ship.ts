/**
 * Shipping: a store's committed log, followed from a durable consumer cursor and published to a
 * JetStream stream, one shipment (the engine's own frames, up to 1 MiB) per message, several
 * in flight.
 *
 * Exactly-once into the stream, and no gap, rest on five rules:
 * - only fdatasynced entries are shipped, so a crash of the origin never takes back an entry
 *   the stream holds;
 * - each message's `Nats-Msg-Id` is `<node>:<first>-<last>`, so a retried publish is absorbed;
 *   a restart may cut other boundaries, and receivers skip sequences they already have;
 * - with several publishes in flight, a failed one may be stored after later ones (or not at
 *   all, until retried): each shipment names `after`, the last sequence acknowledged without
 *   a hole when it was sent, and receivers put shipments back in order with it (`order.ts`);
 * - the cursor (`jetstream-<stream>-<node>`, a durable consumer of the store) advances only
 *   over acknowledged shipments without a hole, and a restart resumes after the larger of the
 *   cursor and the `after` of the node's last shipment in the stream;
 * - fencing (`fence.ts`): a shipper ships only after verifying that the node's last shipment
 *   is its own log and claiming the node, and every publish expects its claim to still hold,
 *   so two shippers never interleave.
 *
 * Beside the shipments, the live snapshot goes to the bucket (`upload.ts`).
 */
import * as native from '../../native'

import { PersistError, call, invalid, receiver } from '../errors'
import { checkInteger, checkObject } from '../options'
import type { Store } from '../store'
import type { Consumer } from '../consumer'
import { asyncDispose } from '../dispose'
import { type Audited, auditNode } from './audit'
import { type Claim, claimNode } from './fence'
import { Protocol, type Remote, type RemoteOptions, backoffMs, checkNode, openRemote, remoteError, remoteOptions, shipmentHeaders } from './remote'
import { SnapshotUploads } from './upload'

/** Options of {@link ship}. */
export interface ShipOptions extends RemoteOptions {
  /** This store's node id (0 to 2^53 - 1): one shipper per node id, ever. */
  nodeId: number
  /** Shipments (up to 1 MiB each) published and not yet acknowledged, at most (1 to 8, default 8). */
  window?: number
  /** Replicas of the stream and the snapshot bucket, when `ship` creates them (default 1). */
  replicas?: number
  /** Told of each transient failure; shipping retries with backoff (default: ignored). */
  onError?: (error: PersistError) => void
  /**
   * Audit the stream every this many milliseconds (see `audit()`; default: never). A loss goes
   * to `onError` as an `AuditError`, and shipping goes on. Each audit reads every shipment of
   * the node in the stream: choose the period by the stream's size.
   */
  auditEveryMs?: number
}

/** How far the stream is behind the store. */
export interface ShipLag {
  /** Entries (sequences) committed locally and not yet acknowledged by the stream. */
  entries: number
  /** Bytes of the shipments published and not yet acknowledged (up to `window` of them). */
  bytes: number
  /** Milliseconds since the stream last held every committed entry (0 when it does). */
  ms: number
}

/** The shippers running in this process, by store, stream, prefix and node. */
const ACTIVE = new Set<string>()
/** One shipment's bytes at most: a whole number of frames within the server's max_payload. */
const SHIPMENT_BYTES = 1 << 20
const HEADROOM = 16 << 10
const MAX_FRAMES = 10_000
const IDLE_POLL_MS = 1000
/** Shipments in flight by default: 8 MiB at most, enough to keep a slow-syncing stream busy. */
const WINDOW = 8

/** A published shipment awaiting its acknowledgement. */
interface InFlight {
  last: number
  bytes: number
  watermarks: number[]
  acked: boolean
  ack: Promise<void>
}

/** Ships a store's log to a JetStream stream until closed (see the module documentation). */
export class Shipper {
  /** This store's node id. */
  readonly nodeId: number
  /** Settles when the shipper stops: resolves after `close()`, rejects with what stopped it. */
  readonly done: Promise<void>
  readonly #store: Store
  readonly #remote: Remote
  readonly #onError: (error: PersistError) => void
  readonly #consumer: Consumer
  #shipped: number
  #inFlightBytes = 0
  #caughtUpAt = Date.now()
  #closing = false
  #stopped: PersistError | null = null
  #wake: () => void = () => undefined
  #waiters: Array<{ sequence: number; resolve: () => void; reject: (e: PersistError) => void }> = []
  #acking: Promise<unknown> | null = null
  readonly #uploads: SnapshotUploads
  #auditTimer: ReturnType<typeof setTimeout> | null = null
  #auditing: Promise<void> | null = null
  readonly #window: number
  /** Settled by the first session's claim: whether this shipper may ship at all. */
  #firstClaimSettle: { resolve: () => void; reject: (e: PersistError) => void } | null = null
  readonly #firstClaim = new Promise<void>((resolve, reject) => (this.#firstClaimSettle = { resolve, reject }))

  private constructor(store: Store, remote: Remote, consumer: Consumer, nodeId: number, window: number, onError: (error: PersistError) => void) {
    this.#store = store
    this.#window = window
    this.#remote = remote
    this.#consumer = consumer
    this.nodeId = nodeId
    this.#onError = onError
    this.#shipped = consumer.position
    this.#uploads = new SnapshotUploads(remote, store, nodeId, () => this.#shipped, onError)
    this.done = this.#run()
    this.done.catch(() => undefined)
  }

  /** @internal */
  static async start(store: Store, options: ShipOptions): Promise<Shipper> {
    const checked = remoteOptions(options, ['nodeId', 'window', 'replicas', 'onError', 'auditEveryMs'])
    const given = checkObject('options', options)
    const nodeId = checkNode(given.nodeId)
    const replicas = given.replicas === undefined ? 1 : checkInteger('replicas', given.replicas, 1, 5)
    const window = given.window === undefined ? WINDOW : checkInteger('window', given.window, 1, Protocol.claimSlots / 2)
    if (given.onError !== undefined && typeof given.onError !== 'function') throw invalid('onError must be a function')
    const auditEveryMs = given.auditEveryMs === undefined ? null : checkInteger('auditEveryMs', given.auditEveryMs, 1, 2 ** 31 - 1)
    // Two shippers of one store (only this process can hold it) would take turns fencing each other.
    const key = `${store.path}\0${checked.stream}\0${checked.prefix}\0${nodeId}`
    if (ACTIVE.has(key)) throw new PersistError('REMOTE_FENCED', `node ${nodeId} of this store is already shipping to stream ${checked.stream}`)
    const consumer = await store.consumer(`jetstream-${checked.stream}-${nodeId}`)
    ACTIVE.add(key)
    let remote: Remote
    try {
      remote = await openRemote(checked, { replicas })
    } catch (error) {
      ACTIVE.delete(key)
      throw error
    }
    const shipper = new Shipper(store, remote, consumer, nodeId, window, (given.onError as ShipOptions['onError']) ?? (() => undefined))
    void shipper.done.finally(() => ACTIVE.delete(key)).catch(() => undefined)
    // The first session's claim decides whether this shipper may ship at all.
    await shipper.#firstClaim
    if (auditEveryMs !== null) shipper.#scheduleAudit(auditEveryMs)
    return shipper
  }

  /** The last sequence the stream has acknowledged. */
  get shippedSequence(): number {
    return receiver(this, Shipper).#shipped
  }

  /** How far the stream is behind the store. */
  get lag(): ShipLag {
    const self = receiver(this, Shipper)
    const entries = Math.max(0, self.#store.lastSequence - self.#shipped)
    return { entries, bytes: self.#inFlightBytes, ms: entries > 0 ? Date.now() - self.#caughtUpAt : 0 }
  }

  /** Resolves once the stream holds every entry up to `sequence`: "on another machine". */
  shipped(sequence: number): Promise<void> {
    return call(() => {
      const wanted = checkInteger('sequence', sequence, 0, Number.MAX_SAFE_INTEGER)
      if (wanted <= this.#shipped) return undefined
      if (this.#stopped) throw this.#stopped
      return new Promise<void>((resolve, reject) => this.#waiters.push({ sequence: wanted, resolve, reject }))
    })
  }

  /**
   * Check that the stream still holds every entry it acknowledged, from the node's newest
   * snapshot in the bucket on (see `audit()`; shipping goes on meanwhile): resolves with what
   * was checked; rejects with an `AuditError` (`REMOTE_INCOMPLETE`) naming the missing and
   * corrupt ranges. `shipped()` cannot tell: it reports acknowledgements, not what is kept.
   */
  audit(): Promise<Audited> {
    return call(() => {
      if (this.#stopped) throw this.#stopped
      return auditNode(this.#remote, this.nodeId, this.#store.path, this.#shipped)
    })
  }

  /** Stop shipping: wait for the shipments in flight, record the cursor, release the connection. */
  async close(): Promise<void> {
    const self = receiver(this, Shipper)
    self.#closing = true
    if (self.#auditTimer) clearTimeout(self.#auditTimer)
    self.#wake()
    await self.done.catch(() => undefined)
  }
  /** `close()`, for `await using`. */
  [asyncDispose](): Promise<void> {
    return this.close()
  }


  async #run(): Promise<void> {
    let attempt = 0
    try {
      while (!this.#closing) {
        try {
          await this.#session()
          attempt = 0
        } catch (error) {
          const failure = remoteError(error, `shipping node ${this.nodeId}`)
          // Fencing, and any failure of the store itself, stop the shipper; NATS failures are retried.
          if (failure.code !== 'REMOTE_UNAVAILABLE' || this.#firstClaimSettle) throw failure
          this.#onError(failure)
          await this.#sleep(backoffMs(attempt++))
        }
      }
      // A failed upload waiting for its retry is tried once more now; then wait for the last
      // acknowledgement, upload and audit (one that finishes may start one for a later sequence).
      this.#uploads.closing()
      while (this.#acking || this.#uploads.running || this.#auditing) await (this.#acking ?? this.#uploads.running ?? this.#auditing)
      this.#stop(new PersistError('CLOSED', 'the shipper is closed'))
    } catch (error) {
      const failure = error instanceof PersistError ? error : remoteError(error, `shipping node ${this.nodeId}`)
      this.#firstClaimSettle?.reject(failure)
      this.#stop(failure)
      throw failure
    } finally {
      await this.#remote.close()
    }
  }

  /**
   * One connected run: claim the node, then ship until closed or a publish fails. Up to
   * `window` shipments are in flight; the stream acknowledges them in any order, and the
   * shipper advances over the acknowledged ones without a hole only. A failed publish ends the
   * run once the others in flight have settled; the next run resumes after the last sequence
   * acknowledged without a hole, resending what may already be stored (receivers skip it).
   */
  async #session(): Promise<void> {
    const { expect, start } = await this.#claim()
    this.#firstClaimSettle?.resolve()
    this.#firstClaimSettle = null
    this.#uploads.start()
    const follower = await native.NativeFollower.open(this.#store.path, start, true)
    const maxBytes = Math.min(SHIPMENT_BYTES, (this.#remote.nc.info?.max_payload ?? SHIPMENT_BYTES + HEADROOM) - HEADROOM)
    const subject = Protocol.dataSubject(this.#remote.prefix, this.nodeId)
    const inFlight: InFlight[] = []
    let failure: unknown = null
    let settled: () => void = () => undefined
    /** Retire the acknowledged shipments at the head of the queue. */
    const retire = (): void => {
      while (inFlight[0]?.acked === true) {
        const done = inFlight.shift() as InFlight
        this.#inFlightBytes -= done.bytes
        this.#advance(done.last, done.watermarks)
      }
    }
    try {
      while (!this.#closing && failure === null) {
        const wake = new Promise<void>((resolve) => (settled = resolve))
        retire()
        if (inFlight.length < this.#window) {
          const changed = this.#store.closed ? null : this.#store.nextChange()
          const s = await follower.nextShipment(this.nodeId, MAX_FRAMES, maxBytes)
          if (s) {
            if (s.data.length > maxBytes + HEADROOM) {
              throw new PersistError('PAYLOAD_TOO_LARGE', `entry ${s.first} does not fit in one message of this server (max_payload): it cannot be shipped`)
            }
            const range = { node: this.nodeId, first: s.first, last: s.last, after: this.#shipped }
            const shipment: InFlight = { last: s.last, bytes: s.data.length, watermarks: s.watermarks, acked: false, ack: Promise.resolve() }
            shipment.ack = this.#remote.js.publish(subject, s.data, { msgID: Protocol.msgId(this.nodeId, s.first, s.last), expect: expect(), headers: shipmentHeaders(range), timeout: 10_000 }).then(
              () => {
                shipment.acked = true
                settled()
              },
              (error: unknown) => {
                failure ??= error
                settled()
              },
            )
            inFlight.push(shipment)
            this.#inFlightBytes += shipment.bytes
            continue
          }
          if (inFlight.length === 0 && this.#shipped >= this.#store.lastSequence) this.#caughtUpAt = Date.now()
          await Promise.race([wake, changed ?? wake, this.#sleep(IDLE_POLL_MS)])
        } else {
          await Promise.race([wake, this.#sleep(IDLE_POLL_MS)])
        }
      }
    } finally {
      // Whatever ends the run, the publishes in flight settle first (each has a timeout), so
      // an acknowledged shipment is never sent again by this shipper's next run for nothing.
      await Promise.all(inFlight.map((f) => f.ack))
      retire()
      this.#inFlightBytes = 0
      follower.close()
    }
    if (failure !== null) throw failure
  }

  /**
   * Claim the node (`fence.ts`) and say where to resume: after the larger of the cursor and the
   * `after` of the node's last shipment (the stream holds every entry up to there; past it, a
   * shipment may be missing).
   */
  async #claim(): Promise<{ expect: Claim['expect']; start: number }> {
    const { expect, held } = await claimNode({ remote: this.#remote, nodeId: this.nodeId, path: this.#store.path, cursor: () => this.#consumer.position })
    if (held > this.#shipped) {
      this.#shipped = held
      this.#scheduleAck()
    }
    return { expect, start: this.#shipped + 1 }
  }

  /** The stream acknowledged a shipment up to `last`, with these watermarks (sequence, HLC). */
  #advance(last: number, watermarks: number[]): void {
    this.#shipped = Math.max(this.#shipped, last)
    this.#uploads.acknowledged(watermarks)
    if (this.#shipped >= this.#store.lastSequence) this.#caughtUpAt = Date.now()
    this.#waiters = this.#waiters.filter((w) => (w.sequence <= this.#shipped ? (w.resolve(), false) : true))
    this.#scheduleAck()
    this.#uploads.start()
  }

  /** Move the durable cursor to what the stream acknowledged: one write at a time, the latest. */
  #scheduleAck(): void {
    if (this.#acking) return
    const target = this.#shipped
    if (target <= this.#consumer.position) return
    this.#acking = this.#consumer.ack(target).then(
      () => {
        this.#acking = null
        this.#scheduleAck()
      },
      (error: unknown) => {
        this.#acking = null
        this.#onError(error as PersistError)
      },
    )
  }

  /** Audit in `ms`, and again `ms` after each audit, until the shipper closes or stops. */
  #scheduleAudit(ms: number): void {
    if (this.#closing || this.#stopped) return
    this.#auditTimer = setTimeout(() => {
      if (this.#closing || this.#stopped) return
      this.#auditing = this.audit()
        .then(
          () => undefined,
          (error: unknown) => {
            if (!this.#closing && !this.#stopped) this.#onError(error as PersistError)
          },
        )
        .finally(() => {
          this.#auditing = null
          this.#scheduleAudit(ms)
        })
    }, ms)
  }

  #stop(reason: PersistError): void {
    if (this.#auditTimer) clearTimeout(this.#auditTimer)
    this.#uploads.stop()
    if (this.#stopped) return
    this.#stopped = reason
    for (const w of this.#waiters) w.reject(reason)
    this.#waiters = []
  }

  /** Wait `ms`, or until `close()`: closing wakes a sleep begun after it too. */
  #sleep(ms: number): Promise<void> {
    if (this.#closing) return Promise.resolve()
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms)
      this.#wake = () => {
        clearTimeout(timer)
        resolve()
      }
    })
  }
}

/**
 * Ship `store`'s log to the JetStream stream `options.stream` as node `options.nodeId`, from its
 * durable cursor on, until `close()`. Resolves once the node is claimed; rejects with
 * `REMOTE_FENCED` if another store ships under this node id, `REMOTE_UNAVAILABLE` if the
 * servers cannot be reached. Local appends never wait for NATS: see `lag` and `shipped()`.
 */
export async function ship(store: Store, options: ShipOptions): Promise<Shipper> {
  try {
    return await Shipper.start(store, options)
  } catch (error) {
    throw remoteError(error, 'ship')
  }
}
