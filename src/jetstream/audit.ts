/**
 * Audit: does the stream still hold what it acknowledged? A PubAck proves the stream stored a
 * shipment then, not that it holds it now: a purge, a limit that drops old messages, or files
 * lost or damaged on the servers (Jepsen found JetStream 2.12.1 losing acknowledged writes
 * when files on a minority of nodes were truncated) take entries away, and a shipper never
 * notices, since it only publishes. A restore would fail then, long after the loss.
 *
 * An audit reads a node's shipments from the stream one message at a time (each one request,
 * so it always settles; one shipment in memory at a time), and for each:
 * - decodes it with the engine (every frame's checksums) and checks it is this node's;
 * - compares its frames byte for byte with the local log's frames at the same sequences,
 *   while the local log still holds them (past its retention there is nothing to compare);
 * and then checks that the shipments that pass cover, without a hole, every sequence from the
 * node's newest snapshot in the bucket (what a restore starts from) up to what the shipper
 * has acknowledged as shipped. Anything else is `REMOTE_INCOMPLETE` as an {@link AuditError},
 * with the missing and the corrupt ranges. Run it periodically, after any incident of the
 * NATS servers (a node lost or restored, a disk replaced), and before relying on the stream
 * for a restore.
 */
import * as native from '../../native'

import { PersistError, ownError, translate } from '../errors'
import { checkObject, checkPath } from '../options'

import { Protocol, type Remote, type RemoteOptions, SHIPMENT_HEADER_LEN, asBuffer, checkNode, lastMessage, messagesOn, nodeSnapshots, openRemote, rangeOf, receivedRange, remoteError, remoteOptions } from './remote'

/** Options of {@link audit}. */
export interface AuditOptions extends RemoteOptions {
  /** The node whose shipments are audited. */
  nodeId: number
  /** The node's store directory: its shipper's cursor says how far the stream must reach, its log what the entries must be. */
  dir: string
}

/** Sequences `first` to `last`, both included. */
export type SequenceRange = [first: number, last: number]

/** An intact audit. */
export interface Audited {
  ok: true
  /** The sequences checked: from just after the snapshot to the last one shipped (empty when `last < first`). */
  checked: { first: number; last: number }
  /** The node's newest snapshot in the bucket (0: none): a restore starts from it. */
  snapshotSeq: number
  /** The node's shipments read from the stream. */
  shipments: number
}

/**
 * `REMOTE_INCOMPLETE` from an audit: the stream no longer holds every entry it acknowledged.
 * `missing`: the sequences no intact shipment holds; `corrupt`: those of shipments that fail
 * their checksums, belong to another node, or differ from the local log (also in `missing`
 * when no other shipment holds them intact). Both sorted, merged.
 */
export class AuditError extends PersistError {
  readonly missing: SequenceRange[]
  readonly corrupt: SequenceRange[]

  constructor(message: string, missing: SequenceRange[], corrupt: SequenceRange[]) {
    super('REMOTE_INCOMPLETE', message)
    this.missing = missing
    this.corrupt = corrupt
  }
}

/**
 * Audit node `options.nodeId`'s shipments in `options.stream` against its store at
 * `options.dir` (see the module documentation), up to the position of its shipper's cursor
 * there (`jetstream-<stream>-<node>`). Reads the store without opening it, so its writer may
 * be running (and shipping) in another process. Rejects with an {@link AuditError} on a loss,
 * `INVALID_ARGUMENT` if the store has no such cursor, `REMOTE_UNAVAILABLE` if the servers
 * cannot be reached.
 */
export async function audit(options: AuditOptions): Promise<Audited> {
  const checked = remoteOptions(options, ['nodeId', 'dir'])
  const given = checkObject('options', options)
  const node = checkNode(given.nodeId)
  const dir = checkPath(given.dir)
  const cursor = `jetstream-${checked.stream}-${node}`
  let consumers: native.NativeConsumer[]
  try {
    consumers = await new native.NativeConsumers(dir).list(0)
  } catch (error) {
    throw translate(error)
  }
  const shipped = consumers.find((c) => c.name === cursor)?.position
  if (shipped === undefined) throw new PersistError('INVALID_ARGUMENT', `${dir} has no cursor ${cursor}: it never shipped to stream ${checked.stream} as node ${node}`)
  const remote = await openRemote(checked, null)
  try {
    return await auditNode(remote, node, dir, shipped)
  } finally {
    await remote.close()
  }
}

/**
 * Audit `node`'s shipments in `remote` against the store at `dir`, up to `shipped`: the
 * sequence the stream acknowledged. Shared by {@link audit} and `Shipper.audit()`.
 */
export async function auditNode(remote: Remote, node: number, dir: string, shipped: number): Promise<Audited> {
  const local = new LocalLog(dir, node)
  try {
    const snapshotSeq = Math.max(0, ...(await nodeSnapshots(remote, node)).map((s) => s.sequence))
    const subject = Protocol.dataSubject(remote.prefix, node)
    // Every shipment acknowledged up to `shipped` was stored before this one.
    const end = await lastMessage(remote, subject)
    const intact = new RangeSet()
    const corrupt = new RangeSet()
    let shipments = 0
    for await (const message of messagesOn(remote, subject, (seq) => end !== null && seq <= end.seq)) {
      if (message.seq > (end?.seq ?? 0)) break
      shipments++
      const said = rangeOf(message)
      const data = asBuffer(message.data)
      const received = await native.decodeShipment(data).catch(() => null)
      if (!received) {
        // Damaged: its headers still say where it belongs (if they are whole); the hole shows anyway.
        if (said) corrupt.add(said.first, said.last)
        continue
      }
      // Receivers place a shipment by its headers: they must say what its frames are.
      const placed = received.node === node && receivedRange(remote.prefix, message, received) !== null
      const sound = placed && (await local.matches(received.first, received.last, data))
      ;(sound ? intact : corrupt).add(received.first, received.last)
    }
    const first = snapshotSeq + 1
    const missing = intact.gaps(first, shipped)
    const result: Audited = { ok: true, checked: { first, last: shipped }, snapshotSeq, shipments }
    if (missing.length === 0 && corrupt.ranges.length === 0) return result
    const text = (ranges: SequenceRange[]): string => ranges.map(([a, b]) => (a === b ? `${a}` : `${a} to ${b}`)).join(', ')
    const problems = [missing.length > 0 ? `entries ${text(missing)} are missing` : '', corrupt.ranges.length > 0 ? `shipments of entries ${text(corrupt.ranges)} are damaged or not this store's` : '']
    throw new AuditError(
      `stream ${remote.stream} no longer holds intact every entry of node ${node} it acknowledged (snapshot ${snapshotSeq}, shipped up to ${shipped}): ${problems.filter((p) => p !== '').join('; ')}`,
      missing,
      corrupt.ranges,
    )
  } catch (error) {
    throw remoteError(error, `auditing node ${node} in stream ${remote.stream}`)
  } finally {
    local.close()
  }
}

/** Disjoint sequence ranges, sorted and merged (a node's shipments mostly continue each other: few ranges). */
class RangeSet {
  readonly ranges: SequenceRange[] = []

  add(first: number, last: number): void {
    let lo = first
    let hi = last
    const kept: SequenceRange[] = []
    for (const [a, b] of this.ranges) {
      if (b + 1 < lo || a > hi + 1) kept.push([a, b])
      else [lo, hi] = [Math.min(a, lo), Math.max(b, hi)]
    }
    kept.push([lo, hi])
    kept.sort((x, y) => x[0] - y[0])
    this.ranges.splice(0, this.ranges.length, ...kept)
  }

  /** The sequences from `first` to `last` outside every range. */
  gaps(first: number, last: number): SequenceRange[] {
    const gaps: SequenceRange[] = []
    let next = first
    for (const [a, b] of this.ranges) {
      if (b < next) continue
      if (a > last) break
      if (a > next) gaps.push([next, a - 1])
      next = b + 1
    }
    if (next <= last) gaps.push([next, last])
    return gaps
  }
}

/** The local log read alongside the stream: one follower, reopened only when shipments overlap or skip. */
class LocalLog {
  readonly #dir: string
  readonly #node: number
  #follower: native.NativeFollower | null = null

  constructor(dir: string, node: number) {
    this.#dir = dir
    this.#node = node
  }

  /** Whether `shipment`'s frames are the local log's frames `first` to `last`; true where the local log no longer (or not yet) holds them. */
  async matches(first: number, last: number, shipment: Buffer): Promise<boolean> {
    if (this.#follower?.nextSequence() !== first) {
      this.close()
      try {
        this.#follower = await native.NativeFollower.open(this.#dir, first, true)
      } catch (error) {
        // Pruned here: nothing left to compare with.
        if (ownError(error)?.code === 'CONSUMER_BEHIND_RETENTION') return true
        throw error
      }
    }
    // The same frames take the same bytes: reading at most that many bounds a mismatch too.
    const own = await (this.#follower as native.NativeFollower).nextShipment(this.#node, last - first + 1, shipment.length)
    if (!own) return true
    return Buffer.compare(own.data.subarray(SHIPMENT_HEADER_LEN), shipment.subarray(SHIPMENT_HEADER_LEN)) === 0
  }

  close(): void {
    this.#follower?.close()
    this.#follower = null
  }
}
