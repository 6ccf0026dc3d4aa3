/**
 * Replication: a JetStream stream's shipments, from any number of source nodes, appended into a
 * local store with origin `{ kind: 'replicated', sourceNodeId, sourceSeq }`, live, exactly once.
 *
 * Exactly once: the replica keeps, durably, how far it has applied each source node
 * (`replica.<name>` in the store directory, written after the entries it covers are
 * fdatasynced), together with its own last sequence then (the anchor). On start it reads its
 * log on from the anchor, where a crash may have left entries applied but not yet recorded,
 * and takes their origins into account. A shipment's entries at or below a node's position
 * are skipped (a shipper that restarted may resend them); shipments stored out of order are
 * held until the hole fills (`order.ts`), and the recorded stream position stays before the
 * first one held, so a restart reads it again; entries gone from the stream are
 * `REMOTE_INCOMPLETE`.
 */
import * as native from '../../native'

import { EntryBatch } from '../batch'
import { asyncDispose } from '../dispose'
import { PersistError, call, invalid, receiver } from '../errors'
import { checkInteger, checkObject } from '../options'
import type { Store } from '../store'
import type { JsMsg } from '@nats-io/jetstream'
import { InOrder } from './order'
import { Protocol, type Remote, type RemoteOptions, asBuffer, checkNode, openRemote, receivedRange, remoteError, remoteOptions } from './remote'

/** Options of {@link replicate}. */
export interface ReplicateOptions extends RemoteOptions {
  /** The store the entries are appended to. */
  into: Store
  /** Only these source nodes (default: every node in the stream). */
  nodes?: number[]
  /** The name its positions are kept under in the store (default: the stream's name). */
  name?: string
  /** Told of a shipment skipped as foreign (default: ignored). */
  onError?: (error: PersistError) => void
}

/** Follows a stream into a store until closed (see the module documentation). */
export class Replicator {
  /** Settles when the replicator stops: resolves after `close()`, rejects with what stopped it. */
  readonly done: Promise<void>
  readonly #store: Store
  readonly #remote: Remote
  readonly #name: string
  readonly #only: Set<number> | null
  readonly #onError: (error: PersistError) => void
  readonly #positions: Map<number, number>
  readonly #orders = new Map<number, InOrder<{ received: native.NativeReceived; seq: number }>>()
  #streamSeq: number
  #closing = false
  #stop: () => void = () => undefined
  #waiters: Array<{ node: number; sequence: number; resolve: () => void; reject: (e: PersistError) => void }> = []
  #stopped: PersistError | null = null
  #atEnd = false
  #atEndWaiters: Array<{ resolve: () => void; reject: (e: PersistError) => void }> = []

  private constructor(store: Store, remote: Remote, name: string, only: Set<number> | null, onError: (e: PersistError) => void, positions: Map<number, number>, streamSeq: number) {
    this.#store = store
    this.#remote = remote
    this.#name = name
    this.#only = only
    this.#onError = onError
    this.#positions = positions
    this.#streamSeq = streamSeq
    this.done = this.#run()
    this.done.catch(() => undefined)
  }

  /** @internal */
  static async start(options: ReplicateOptions): Promise<Replicator> {
    const checked = remoteOptions(options, ['into', 'nodes', 'name', 'onError'])
    const given = checkObject('options', options)
    const store = given.into as Store
    if (typeof store !== 'object' || store === null || typeof (store as { nextChange?: unknown }).nextChange !== 'function') throw invalid('into must be an open Store')
    const name = given.name ?? checked.stream
    if (typeof name !== 'string') throw invalid('name must be a string')
    let only: Set<number> | null = null
    if (given.nodes !== undefined) {
      if (!Array.isArray(given.nodes)) throw invalid('nodes must be an array of node ids')
      only = new Set(given.nodes.map(checkNode))
    }
    if (given.onError !== undefined && typeof given.onError !== 'function') throw invalid('onError must be a function')
    const { positions, streamSeq } = await recover(store, name)
    const remote = await openRemote(checked, null)
    return new Replicator(store, remote, name, only, (given.onError as ReplicateOptions['onError']) ?? (() => undefined), positions, streamSeq)
  }

  /** The last sequence applied of each source node. */
  get positions(): ReadonlyMap<number, number> {
    return new Map(receiver(this, Replicator).#positions)
  }

  /** Resolves once every entry of `node` up to `sequence` is applied (and durable). */
  applied(node: number, sequence: number): Promise<void> {
    return call(() => {
      const [n, s] = [checkNode(node), checkInteger('sequence', sequence, 0, Number.MAX_SAFE_INTEGER)]
      if ((this.#positions.get(n) ?? 0) >= s) return undefined
      if (this.#stopped) throw this.#stopped
      return new Promise<void>((resolve, reject) => this.#waiters.push({ node: n, sequence: s, resolve, reject }))
    })
  }

  /**
   * Resolves the next time every message the stream holds has been read and applied (at once
   * when that is so now); shipments held for a hole (see `order.ts`) wait on.
   */
  caughtUp(): Promise<void> {
    return call(() => {
      if (this.#atEnd) return undefined
      if (this.#stopped) throw this.#stopped
      return new Promise<void>((resolve, reject) => this.#atEndWaiters.push({ resolve, reject }))
    })
  }

  #reachedEnd(): void {
    this.#atEnd = true
    for (const w of this.#atEndWaiters) w.resolve()
    this.#atEndWaiters = []
  }

  /** Stop after the shipment being applied; release the connection. */
  async close(): Promise<void> {
    const self = receiver(this, Replicator)
    self.#closing = true
    self.#stop()
    await self.done.catch(() => undefined)
  }
  /** `close()`, for `await using`. */
  [asyncDispose](): Promise<void> {
    return this.close()
  }


  async #run(): Promise<void> {
    try {
      const consumer = await this.#remote.js.consumers.get(this.#remote.stream, {
        filter_subjects: [Protocol.shipmentSubjects(this.#remote.prefix)],
        ...(this.#streamSeq > 0 ? { deliver_policy: 'by_start_sequence' as never, opt_start_seq: this.#streamSeq + 1 } : {}),
      })
      const messages = await consumer.consume()
      this.#stop = () => void messages.stop()
      if (this.#closing) messages.stop()
      if ((await consumer.info(true)).num_pending === 0) this.#reachedEnd()
      for await (const message of messages) {
        this.#atEnd = false
        await this.#apply(message)
        if (message.info.pending === 0) this.#reachedEnd()
        if (this.#closing) break
      }
      this.#end(new PersistError('CLOSED', 'the replicator is closed'))
    } catch (error) {
      const failure = remoteError(error, `replicating stream ${this.#remote.stream}`)
      this.#end(failure)
      throw failure
    } finally {
      await this.#remote.close()
    }
  }

  async #apply(message: JsMsg): Promise<void> {
    const received = await native.decodeShipment(asBuffer(message.data))
    const node = received.node
    const range = receivedRange(this.#remote.prefix, message, received)
    if (!range) {
      this.#onError(new PersistError('REMOTE_FENCED', `stream message ${message.seq} on ${message.subject} is not a shipment of node ${node} as its headers say: skipped`))
    } else if (this.#only === null || this.#only.has(node)) {
      let order = this.#orders.get(node)
      if (!order) {
        order = new InOrder(this.#positions.get(node) ?? null, `stream ${this.#remote.stream}`)
        this.#orders.set(node, order)
      }
      for (const ready of order.offer({ ...range, item: { received, seq: message.seq } })) await this.#append(ready.item.received)
    }
    // A restart reads on from the first message still held for a hole.
    const held = Math.min(...[...this.#orders.values()].flatMap((o) => o.held.map((h) => h.item.seq)))
    this.#streamSeq = Number.isFinite(held) ? held - 1 : message.seq
    await native.writeReplicaPositions(this.#store.path, this.#name, {
      anchor: this.#store.lastSequence,
      streamSeq: this.#streamSeq,
      nodes: [...this.#positions.keys()],
      sequences: [...this.#positions.values()],
    })
    this.#waiters = this.#waiters.filter((w) => ((this.#positions.get(w.node) ?? 0) >= w.sequence ? (w.resolve(), false) : true))
  }

  /** Append a shipment's entries past the node's position, durably, and move the position. */
  async #append(received: native.NativeReceived): Promise<void> {
    const node = received.node
    const have = this.#positions.get(node) ?? 0
    const batch = new EntryBatch(received.chunk)
    const appends: Array<Promise<number>> = []
    for (let i = 0; i < batch.length; i++) {
      const sequence = batch.sequence(i)
      if (sequence <= have || batch.watermark(i)) continue
      const principal = batch.principal(i)
      appends.push(this.#store.append(batch.payload(i), { origin: { kind: 'replicated', sourceNodeId: node, sourceSeq: sequence }, hlc: batch.hlc(i), ...(principal ? { principal } : {}) }))
    }
    await Promise.all(appends)
    await this.#store.flush()
    this.#positions.set(node, Math.max(have, received.last))
  }

  #end(reason: PersistError): void {
    if (this.#stopped) return
    this.#stopped = reason
    for (const w of [...this.#waiters, ...this.#atEndWaiters]) w.reject(reason)
    this.#waiters = []
    this.#atEndWaiters = []
  }
}

/** The recorded positions, brought up to date with what the log holds after their anchor. */
async function recover(store: Store, name: string): Promise<{ positions: Map<number, number>; streamSeq: number }> {
  const recorded = await native.readReplicaPositions(store.path, name)
  const positions = new Map<number, number>()
  recorded?.nodes.forEach((node, i) => positions.set(node, recorded.sequences[i] ?? 0))
  const follower = await native.NativeFollower.open(store.path, recorded ? recorded.anchor + 1 : null, false)
  try {
    for (;;) {
      const chunk = await follower.nextChunk(1024, 4 << 20)
      if (chunk.count === 0) break
      const batch = new EntryBatch(chunk)
      for (let i = 0; i < batch.length; i++) {
        const origin = batch.origin(i)
        if (origin.kind === 'replicated') positions.set(origin.sourceNodeId, Math.max(positions.get(origin.sourceNodeId) ?? 0, origin.sourceSeq))
      }
    }
  } finally {
    follower.close()
  }
  return { positions, streamSeq: recorded?.streamSeq ?? 0 }
}

/**
 * Follow the JetStream stream `options.stream` and append every shipped entry into
 * `options.into` with a replicated origin, exactly once, in each source node's order, until
 * `close()`. Resumes where it left off, after any crash.
 */
export async function replicate(options: ReplicateOptions): Promise<Replicator> {
  try {
    return await Replicator.start(options)
  } catch (error) {
    throw remoteError(error, 'replicate')
  }
}
