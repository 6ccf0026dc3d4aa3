/**
 * Restore: a new store built from a node's latest remote snapshot (at or before the point asked
 * for) and its shipments after it; the engine writes the frames with their own sequences,
 * timestamps, origins and principals, refuses a hole, and renames the store into place last.
 */
import * as native from '../../native'

import { PersistError, invalid, ownError } from '../errors'
import { type Hlc, checkInteger, checkObject, checkPath } from '../options'
import type { StoredMsg } from '@nats-io/jetstream'

import { InOrder } from './order'
import { Protocol, type Remote, type RemoteOptions, type RemoteSnapshot, asBuffer, checkNode, lastMessage, messagesOn, nodeSnapshots, openRemote, rangeOf, receivedRange, remoteError, remoteOptions, snapshots } from './remote'

/** Options of {@link restore}. */
export interface RestoreOptions extends RemoteOptions {
  /** The node whose log is restored. */
  nodeId: number
  /** The new store directory (must not exist). */
  dir: string
  /** The last sequence to restore (default: everything shipped). */
  toSequence?: number
  /** The latest entry timestamp to restore, as a Date or milliseconds since the epoch. */
  toTime?: Date | number
  /** Told after each shipment written: the last sequence restored, and the stream's last for the node. */
  onProgress?: (restored: number, end: number) => void
}

/** What a restore built. */
export interface Restored {
  /** The sequence of the snapshot it started from (0: none). */
  snapshotSeq: number
  /** The last sequence the new store holds. */
  lastSequence: number
}

const SUBSECONDS = 2 ** 32

/** `ms` since the epoch as an HLC, rounded down to the millisecond's last tick. */
function hlcOf(ms: number): Hlc {
  const seconds = Math.floor(ms / 1000)
  return { seconds, subseconds: Math.min(SUBSECONDS - 1, Math.floor(((ms - seconds * 1000 + 1) / 1000) * SUBSECONDS) - 1) }
}

const before = (a: Hlc, b: Hlc): boolean => a.seconds < b.seconds || (a.seconds === b.seconds && a.subseconds <= b.subseconds)

/**
 * Build a new store at `options.dir` holding node `options.nodeId`'s log as shipped to
 * `options.stream`: its latest snapshot at or before the point asked for, and the shipments
 * after it, up to `toSequence` and `toTime`. Rejects with `REMOTE_INCOMPLETE` when the stream
 * no longer holds every entry after the snapshot (age or size limits), leaving nothing at `dir`.
 */
export async function restore(options: RestoreOptions): Promise<Restored> {
  const checked = remoteOptions(options, ['nodeId', 'dir', 'toSequence', 'toTime', 'onProgress'])
  const given = checkObject('options', options)
  const node = checkNode(given.nodeId)
  const dir = checkPath(given.dir)
  const toSequence = given.toSequence === undefined ? undefined : checkInteger('toSequence', given.toSequence, 0, Number.MAX_SAFE_INTEGER)
  let toHlc: Hlc | undefined
  if (given.toTime !== undefined) {
    const ms = given.toTime instanceof Date ? given.toTime.getTime() : given.toTime
    if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) throw invalid('toTime must be a Date or milliseconds since the epoch')
    toHlc = hlcOf(ms)
  }
  if (given.onProgress !== undefined && typeof given.onProgress !== 'function') throw invalid('onProgress must be a function')
  const onProgress = (given.onProgress as RestoreOptions['onProgress']) ?? (() => undefined)
  const remote = await openRemote(checked, null)
  let building: native.NativeRestore | null = null
  try {
    const snapshot = await chooseSnapshot(remote, node, toSequence, toHlc)
    building = await native.NativeRestore.begin(dir, snapshot, toSequence ?? null, toHlc ? [toHlc.seconds, toHlc.subseconds] : null)
    const from = building.snapshotSeq
    const subject = Protocol.dataSubject(remote.prefix, node)
    const end = await lastMessage(remote, subject)
    let last = from
    if (end && !(toSequence !== undefined && toSequence <= from)) {
      const order = new InOrder<StoredMsg>(from, `stream ${remote.stream}`)
      const endLast = rangeOf(end)?.last ?? 0
      // A shipment held for a hole at the end may wait for a retry stored since the look, so
      // the read goes on while one is held; one that never comes was not acknowledged, and the
      // log ends before.
      let done = false
      for await (const message of messagesOn(remote, subject, (seq) => !done && (seq <= end.seq || order.held.length > 0))) {
        const range = rangeOf(message)
        if (!range || range.node !== node) throw new PersistError('REMOTE_FENCED', `stream message ${message.seq} on ${subject} is not a shipment of node ${node}`)
        for (const ready of order.offer({ ...range, item: message })) {
          const data = asBuffer(ready.item.data)
          // Placed by its headers: they must say what its frames are, as replicas require.
          if (receivedRange(remote.prefix, ready.item, await native.decodeShipment(data)) === null) {
            throw new PersistError('REMOTE_FENCED', `stream message ${ready.item.seq} on ${subject} is not a shipment of node ${node} as its headers say`)
          }
          const pushed = await building.push(data)
          last = pushed.last
          done = pushed.done
          onProgress(last, Math.max(last, endLast))
          if (done) break
        }
      }
    }
    if (toSequence !== undefined && last < toSequence) {
      throw new PersistError('REMOTE_INCOMPLETE', `node ${node}'s log in stream ${remote.stream} ends at ${last}, before ${toSequence}`)
    }
    const lastSequence = await building.finish()
    return { snapshotSeq: from, lastSequence }
  } catch (error) {
    building?.close()
    if (ownError(error)?.code === 'SEQUENCE_GAP') {
      throw new PersistError('REMOTE_INCOMPLETE', `stream ${remote.stream} no longer holds every entry of node ${node} after its snapshot: ${(error as Error).message}`, { cause: error })
    }
    throw remoteError(error, 'restore')
  } finally {
    await remote.close()
  }
}

/** The bytes of the newest snapshot of `node` at or before the limits, or `null` for none. */
async function chooseSnapshot(remote: Remote, node: number, toSequence: number | undefined, toHlc: Hlc | undefined): Promise<Buffer | null> {
  let best: RemoteSnapshot | null = null
  for (const found of await nodeSnapshots(remote, node)) {
    const { sequence, metadata: meta } = found
    if (toSequence !== undefined && sequence > toSequence) continue
    if (toHlc) {
      // A snapshot whose checkpoint time is unknown cannot be placed before a time.
      if (meta.hlcSeconds === undefined) continue
      if (!before({ seconds: Number(meta.hlcSeconds), subseconds: Number(meta.hlcSubseconds) }, toHlc)) continue
    }
    if (!best || sequence > best.sequence) best = found
  }
  if (!best) return null
  const bytes = await (await snapshots(remote)).getBlob(best.name)
  return bytes ? asBuffer(bytes) : null
}
