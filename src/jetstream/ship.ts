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
 * - fencing: a shipper first verifies that the node's last shipped frame is byte for byte the
 *   store's own frame at that sequence (else the stream holds another log under this node id:
 *   `REMOTE_FENCED`), then claims the node with a conditional publish to each of its claim
 *   slots `<prefix>.<node>.claim.<slot>`, and every shipment it publishes expects one slot's
 *   claim to still be the last there. A second shipper's claim therefore fails, or, once it
 *   holds every slot, every later publish of the first fails; it verifies the node's last
 *   shipment again only then: two shippers never interleave.
 */
import { hostname } from 'node:os'

import type { ObjectStore } from '@nats-io/obj'

import * as native from '../../native'

import { PersistError, call, invalid, ownError, receiver } from '../errors'
import { checkInteger, checkObject } from '../options'
import type { Store } from '../store'
import type { Consumer } from '../consumer'
import { asyncDispose } from '../appender'
import { type Audited, auditNode } from './audit'
import {
  Protocol,
  type Remote,
  type RemoteOptions,
  asBuffer,
  checkNode,
  lastMessage,
  openRemote,
  rangeOf,
  remoteError,
  remoteOptions,
  shipmentHeaders,
  SHIPMENT_HEADER_LEN,
  snapshots,
} from './remote'

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
  /** Bytes of the shipment published and not yet acknowledged. */
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
const BACKOFF_MS = [100, 200, 500, 1000, 2000, 5000]
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
  /** The live snapshot last uploaded (or found uploaded). */
  #uploaded = 0
  /** The HLCs (seconds, subseconds) of the checkpoint watermarks shipped, by sequence, until uploaded past. */
  readonly #watermarks = new Map<number, [number, number]>()
  #bucket: ObjectStore | null = null
  #uploading: Promise<void> | null = null
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
          await this.#sleep(BACKOFF_MS[Math.min(attempt++, BACKOFF_MS.length - 1)] ?? 5000)
        }
      }
      // An acknowledgement that finishes may start one for a later sequence: wait for the last.
      while (this.#acking || this.#uploading || this.#auditing) await (this.#acking ?? this.#uploading ?? this.#auditing)
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
    const { claims, start } = await this.#claim()
    this.#firstClaimSettle?.resolve()
    this.#firstClaimSettle = null
    this.#uploadSnapshot()
    const follower = await native.NativeFollower.open(this.#store.path, start, true)
    const maxBytes = Math.min(SHIPMENT_BYTES, (this.#remote.nc.info?.max_payload ?? SHIPMENT_BYTES + HEADROOM) - HEADROOM)
    const subject = Protocol.dataSubject(this.#remote.prefix, this.nodeId)
    let sent = 0
    const expect = (): { lastSubjectSequence: number; lastSubjectSequenceSubject: string } => {
      const slot = sent++ % Protocol.claimSlots
      return { lastSubjectSequence: claims[slot] ?? 0, lastSubjectSequenceSubject: Protocol.claimSubject(this.#remote.prefix, this.nodeId, slot) }
    }
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
   * Verify that the node's shipments in the stream are this store's log, claim the node, and
   * say where to resume: after the larger of the cursor and the `after` of the node's last
   * shipment (the stream holds every entry up to there; past it, a shipment may be missing).
   */
  async #claim(): Promise<{ claims: number[]; start: number }> {
    const { js, prefix } = this.#remote
    const data = Protocol.dataSubject(prefix, this.nodeId)
    const slots = Array.from({ length: Protocol.claimSlots }, (_, slot) => Protocol.claimSubject(prefix, this.nodeId, slot))
    const lastClaims = await Promise.all(slots.map((subject) => lastMessage(this.#remote, subject)))
    const before = await lastMessage(this.#remote, data)
    if (before) await this.#verify(before.data)
    const body = JSON.stringify({ node: this.nodeId, host: hostname(), pid: process.pid, after: before ? (rangeOf(before)?.after ?? 0) : 0 })
    let claims: number[]
    try {
      claims = await Promise.all(slots.map(async (subject, slot) => (await js.publish(subject, body, { expect: { lastSubjectSequence: lastClaims[slot]?.seq ?? 0 } })).seq))
    } catch (error) {
      throw remoteError(error, `claiming node ${this.nodeId}`)
    }
    // A shipment of the previous shipper may have landed between the look and the claim.
    const after = await lastMessage(this.#remote, data)
    if (after && after.seq !== before?.seq) await this.#verify(after.data)
    const held = after ? (rangeOf(after)?.after ?? 0) : 0
    if (held > this.#shipped) {
      this.#shipped = held
      this.#scheduleAck()
    }
    return { claims, start: this.#shipped + 1 }
  }

  /** Refuse unless the last frame of `shipment` is this store's own frame at that sequence. */
  async #verify(shipment: Uint8Array): Promise<void> {
    const received = await native.decodeShipment(asBuffer(shipment))
    const fenced = (why: string): PersistError => new PersistError('REMOTE_FENCED', `node ${this.nodeId} in stream ${this.#remote.stream}: ${why}; another store ships (or shipped) under this node id`)
    if (received.node !== this.nodeId) throw fenced(`a shipment of node ${received.node} is on this node's subject`)
    const last = received.last
    const local = await this.#frameAt(last)
    if (!local) {
      // Pruned here after this store shipped it: its own cursor vouches for it.
      if (last <= this.#consumer.position) return
      throw fenced(`the stream holds sequence ${last}, which this store does not have`)
    }
    const frame = local.data.subarray(SHIPMENT_HEADER_LEN)
    if (Buffer.compare(asBuffer(shipment).subarray(shipment.length - frame.length), frame) !== 0) {
      throw fenced(`the stream's entry ${last} differs from this store's`)
    }
  }

  /** This store's frame at `sequence`, as a one-frame shipment; `null` once retention removed it. */
  async #frameAt(sequence: number): Promise<native.NativeShipment | null> {
    try {
      const follower = await native.NativeFollower.open(this.#store.path, sequence, true)
      try {
        const frame = await follower.nextShipment(this.nodeId, 1, 1)
        return frame?.first === sequence ? frame : null
      } finally {
        follower.close()
      }
    } catch (error) {
      if (ownError(error)?.code === 'CONSUMER_BEHIND_RETENTION') return null
      throw error
    }
  }

  /**
   * The HLC (seconds, subseconds) of the checkpoint watermark at `sequence`, read from the log
   * while it still holds it: a shipper that starts after the live snapshot never ships that
   * watermark, and one that restarts forgets those it shipped. `undefined` once pruned.
   */
  async #watermarkAt(sequence: number): Promise<[number, number] | undefined> {
    const [at, seconds, subseconds] = (await this.#frameAt(sequence))?.watermarks ?? []
    return at === sequence && seconds !== undefined && subseconds !== undefined ? [seconds, subseconds] : undefined
  }

  /** The stream acknowledged a shipment up to `last`, with these watermarks (sequence, HLC). */
  #advance(last: number, watermarks: number[]): void {
    this.#shipped = Math.max(this.#shipped, last)
    for (let i = 0; i + 2 < watermarks.length; i += 3) {
      this.#watermarks.set(watermarks[i] ?? 0, [watermarks[i + 1] ?? 0, watermarks[i + 2] ?? 0])
    }
    if (this.#shipped >= this.#store.lastSequence) this.#caughtUpAt = Date.now()
    this.#waiters = this.#waiters.filter((w) => (w.sequence <= this.#shipped ? (w.resolve(), false) : true))
    this.#scheduleAck()
    this.#uploadSnapshot()
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

  /**
   * Upload the store's live snapshot once the stream holds the entries up to it. Only a live
   * snapshot goes: its checkpoint committed, unlike a snapshot file left by a checkpoint that
   * died before its MANIFEST commit. A checkpoint superseded before the shipper reached it is
   * skipped for the newer one. One upload runs at a time, beside the shipments: entries never
   * wait for it. A failure is reported and retried after the next shipment.
   */
  #uploadSnapshot(): void {
    const live = this.#store.closed ? 0 : this.#store.snapshotSeq
    if (this.#uploading || live <= this.#uploaded || live > this.#shipped) return
    this.#uploading = this.#upload(live).finally(() => {
      this.#uploading = null
      // A newer checkpoint may have gone live meanwhile; a failure waits for the next shipment.
      if (this.#uploaded >= live) this.#uploadSnapshot()
    })
  }

  async #upload(live: number): Promise<void> {
    try {
      this.#bucket ??= await snapshots(this.#remote)
      const name = Protocol.snapshotName(this.nodeId, live)
      if ((await this.#bucket.info(name)) === null) {
        const bytes = await native.readSnapshotFile(this.#store.path, live)
        // Pruned since the look: a newer checkpoint is live, and goes next time.
        if (bytes === null) return
        const metadata: Record<string, string> = { node: String(this.nodeId), sequence: String(live) }
        const hlc = this.#watermarks.get(live) ?? (await this.#watermarkAt(live))
        if (hlc) Object.assign(metadata, { hlcSeconds: String(hlc[0]), hlcSubseconds: String(hlc[1]) })
        await this.#bucket.putBlob({ name, metadata }, bytes)
      }
      this.#uploaded = live
      for (const sequence of this.#watermarks.keys()) if (sequence <= live) this.#watermarks.delete(sequence)
    } catch (error) {
      this.#onError(remoteError(error, `uploading node ${this.nodeId}'s snapshot ${live}`))
    }
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
