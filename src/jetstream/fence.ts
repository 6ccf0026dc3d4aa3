/**
 * Fencing: one shipper per node id, ever. A shipper first verifies that the node's last
 * shipped frame is byte for byte the store's own frame at that sequence (else the stream holds
 * another log under this node id: `REMOTE_FENCED`), then claims the node with a conditional
 * publish to each of its claim slots `<prefix>.<node>.claim.<slot>`, and every shipment it
 * publishes expects one slot's claim to still be the last there. A second shipper's claim
 * therefore fails, or, once it holds every slot, every later publish of the first fails; it
 * verifies the node's last shipment again only then: two shippers never interleave.
 */
import { hostname } from 'node:os'

import * as native from '../../native'

import { PersistError, ownError } from '../errors'
import { Protocol, type Remote, SHIPMENT_HEADER_LEN, asBuffer, lastMessage, rangeOf, remoteError } from './remote'

/** The node, and the store whose log ships under it. */
export interface Node {
  remote: Remote
  nodeId: number
  /** The store directory. */
  path: string
  /** The shipper's durable cursor: entries up to it were shipped by this store. */
  cursor: () => number
}

/** A node claimed: what every shipment of the session expects, and where the stream stands. */
export interface Claim {
  /** The conditions of the next shipment's publish: one claim slot's sequence after another. */
  expect: () => { lastSubjectSequence: number; lastSubjectSequenceSubject: string }
  /** The `after` of the node's last shipment in the stream: it holds every entry up to there. */
  held: number
}

/** Verify that the node's shipments in the stream are this store's log, then claim the node. */
export async function claimNode(node: Node): Promise<Claim> {
  const { remote, nodeId } = node
  const data = Protocol.dataSubject(remote.prefix, nodeId)
  const slots = Array.from({ length: Protocol.claimSlots }, (_, slot) => Protocol.claimSubject(remote.prefix, nodeId, slot))
  const lastClaims = await Promise.all(slots.map((subject) => lastMessage(remote, subject)))
  const before = await lastMessage(remote, data)
  if (before) await verify(node, before.data)
  const body = JSON.stringify({ node: nodeId, host: hostname(), pid: process.pid, after: before ? (rangeOf(before)?.after ?? 0) : 0 })
  let claims: number[]
  try {
    claims = await Promise.all(slots.map(async (subject, slot) => (await remote.js.publish(subject, body, { expect: { lastSubjectSequence: lastClaims[slot]?.seq ?? 0 } })).seq))
  } catch (error) {
    throw remoteError(error, `claiming node ${nodeId}`)
  }
  // A shipment of the previous shipper may have landed between the look and the claim.
  const after = await lastMessage(remote, data)
  if (after && after.seq !== before?.seq) await verify(node, after.data)
  let sent = 0
  const expect = (): ReturnType<Claim['expect']> => {
    const slot = sent++ % Protocol.claimSlots
    return { lastSubjectSequence: claims[slot] ?? 0, lastSubjectSequenceSubject: slots[slot] ?? '' }
  }
  return { expect, held: after ? (rangeOf(after)?.after ?? 0) : 0 }
}

/** Refuse unless the last frame of `shipment` is this store's own frame at that sequence. */
async function verify(node: Node, shipment: Uint8Array): Promise<void> {
  const { remote, nodeId } = node
  const received = await native.decodeShipment(asBuffer(shipment))
  const fenced = (why: string): PersistError => new PersistError('REMOTE_FENCED', `node ${nodeId} in stream ${remote.stream}: ${why}; another store ships (or shipped) under this node id`)
  if (received.node !== nodeId) throw fenced(`a shipment of node ${received.node} is on this node's subject`)
  const last = received.last
  const local = await frameAt(node.path, nodeId, last)
  if (!local) {
    // Pruned here after this store shipped it: its own cursor vouches for it.
    if (last <= node.cursor()) return
    throw fenced(`the stream holds sequence ${last}, which this store does not have`)
  }
  const frame = local.data.subarray(SHIPMENT_HEADER_LEN)
  if (Buffer.compare(asBuffer(shipment).subarray(shipment.length - frame.length), frame) !== 0) {
    throw fenced(`the stream's entry ${last} differs from this store's`)
  }
}

/** The store's frame at `sequence`, as a one-frame shipment of node `nodeId`; `null` once retention removed it. */
export async function frameAt(path: string, nodeId: number, sequence: number): Promise<native.NativeShipment | null> {
  try {
    const follower = await native.NativeFollower.open(path, sequence, true)
    try {
      const frame = await follower.nextShipment(nodeId, 1, 1)
      return frame?.first === sequence ? frame : null
    } finally {
      follower.close()
    }
  } catch (error) {
    if (ownError(error)?.code === 'CONSUMER_BEHIND_RETENTION') return null
    throw error
  }
}
