/**
 * What shipping, replication, restore and audit share: the wire protocol in one table
 * (`Protocol`), the receive rule of shipments (`receivedRange`), the connection, the stream, the
 * snapshot bucket, and NATS failures as typed errors.
 *
 * Subjects, under a prefix (default `selene.<stream>`): a node's shipments go to
 * `<prefix>.<node>`, its shippers' claims to `<prefix>.<node>.claim.<slot>`. The stream holds
 * `<prefix>.>`; replicas read `<prefix>.*` (shipments only). Snapshots go to the Object Store
 * bucket `<stream>-snapshots` as `<node>.<sequence>`.
 */
import * as native from '../../native'

import { type NatsConnection, connect, headers } from '@nats-io/transport-node'
import { JetStreamApiCodes, type JetStreamClient, type JetStreamManager, JetStreamApiError, type MsgRequest, type StoredMsg, jetstream, jetstreamManager } from '@nats-io/jetstream'
import { type ObjectStore, Objm } from '@nats-io/obj'

import { PersistError, invalid, ownError } from '../errors'
import { checkInteger, checkObject, isObject } from '../options'

/** Where the log goes: an open connection (yours to close) or the servers to connect to. */
export interface RemoteOptions {
  /** An open NATS connection; it stays open when the shipper, replica or restore is done. */
  connection?: NatsConnection
  /** Server URLs to connect to (on loopback in tests), when no `connection` is given. */
  servers?: string | string[]
  /** The JetStream stream: 1 to 32 of `A-Z a-z 0-9 _ -`. */
  stream: string
  /** The subject prefix (default `selene.<stream>`). */
  subject?: string
}

/** An open remote: the connection and JetStream handles, subjects, and how to let go. */
export interface Remote {
  nc: NatsConnection
  js: JetStreamClient
  jsm: JetStreamManager
  stream: string
  prefix: string
  /** Replicas of the stream and the snapshot bucket when they are created here. */
  replicas: number
  /** Close the connection if this remote opened it. */
  close(): Promise<void>
}

const STREAM_NAME = /^[A-Za-z0-9_-]{1,32}$/
const SUBJECT = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/

/** A node id: an integer from 0 to 2^53 - 1, as origins carry it. */
export function checkNode(node: unknown): number {
  return checkInteger('nodeId', node, 0, Number.MAX_SAFE_INTEGER)
}

/** The checked options shared by every remote operation; a key neither these nor `own` is refused. */
export function remoteOptions(options: unknown, own: readonly string[]): RemoteOptions & { prefix: string } {
  const given = checkObject('options', options, ['connection', 'servers', 'stream', 'subject', ...own])
  if (typeof given.stream !== 'string' || !STREAM_NAME.test(given.stream)) throw invalid('stream must be 1 to 32 of A-Z, a-z, 0-9, _ and -')
  if (given.connection === undefined && given.servers === undefined) throw invalid('give a connection or servers')
  if (given.connection !== undefined && (!isObject(given.connection) || typeof given.connection.publish !== 'function')) throw invalid('connection must be a NATS connection')
  const servers = given.servers
  if (servers !== undefined && typeof servers !== 'string' && !(Array.isArray(servers) && servers.every((s) => typeof s === 'string'))) {
    throw invalid('servers must be a URL or an array of URLs')
  }
  const prefix = given.subject ?? `selene.${given.stream}`
  if (typeof prefix !== 'string' || !SUBJECT.test(prefix)) throw invalid('subject must be dot-separated tokens of A-Z, a-z, 0-9, _ and -')
  return { ...(given as unknown as RemoteOptions), prefix }
}

/** Connect (or take the given connection) and make sure the stream exists. */
export async function openRemote(options: RemoteOptions & { prefix: string }, create: { replicas?: number } | null): Promise<Remote> {
  let nc = options.connection
  const own = nc === undefined
  try {
    nc ??= await connect({ servers: options.servers ?? [], maxReconnectAttempts: -1, reconnectTimeWait: 250, name: 'selene-persist' })
    const jsm = await jetstreamManager(nc)
    if (create) await ensureStream(jsm, options.stream, options.prefix, create.replicas ?? 1)
    const opened = nc
    return {
      nc: opened,
      js: jetstream(opened),
      jsm,
      stream: options.stream,
      prefix: options.prefix,
      replicas: create?.replicas ?? 1,
      close: async () => {
        if (own) await opened.drain().catch(() => opened.close())
      },
    }
  } catch (error) {
    if (own) await nc?.close().catch(() => undefined)
    throw remoteError(error, `cannot reach JetStream stream ${options.stream}`)
  }
}

async function ensureStream(jsm: JetStreamManager, stream: string, prefix: string, replicas: number): Promise<void> {
  try {
    await jsm.streams.info(stream)
  } catch (error) {
    if (!(error instanceof JetStreamApiError) || error.code !== JetStreamApiCodes.StreamNotFound) throw error
    await jsm.streams.add({ name: stream, subjects: [Protocol.streamSubjects(prefix)], num_replicas: replicas, allow_direct: true, duplicate_window: 120e9 })
  }
}

/** The wait before retry `attempt` (0, 1, ...) of a failed remote operation: 100 ms growing to 5 s. */
export function backoffMs(attempt: number): number {
  return BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)] ?? 5000
}
const BACKOFF_MS = [100, 200, 500, 1000, 2000, 5000]

/**
 * The wire protocol in one table, as nats.js keeps `JsHeaders`: subjects, object names, the
 * Msg-Id and the shipment headers. The JetStream API errors acted on are nats.js's
 * `JetStreamApiCodes`.
 */
export const Protocol = {
  /** What a stream holds: every subject under the prefix. */
  streamSubjects: (prefix: string): string => `${prefix}.>`,
  /** What replicas read: shipments only. */
  shipmentSubjects: (prefix: string): string => `${prefix}.*`,
  /** The subject of node `node`'s shipments. */
  dataSubject: (prefix: string, node: number): string => `${prefix}.${node}`,
  /**
   * A shipper claims all of a node's claim slots, and each shipment expects one slot's claim
   * to be still the last (round robin). One subject would not do: a clustered stream refuses a
   * conditional publish while another one on the same subject is in flight, which would allow
   * one shipment in flight at a time. Twice the largest window: a slot is used again only well
   * after its last shipment was acknowledged (the leader clears its mark just after the ack).
   */
  claimSlots: 16,
  /** The subject of claim slot `slot` (0 to 15) of node `node`'s shippers. */
  claimSubject: (prefix: string, node: number, slot: number): string => `${prefix}.${node}.claim.${slot}`,
  /** A shipment's `Nats-Msg-Id`: a retried publish of the same range is absorbed. */
  msgId: (node: number, first: number, last: number): string => `${node}:${first}-${last}`,
  /** A shipment message's headers: its {@link Range}. */
  headers: { node: 'Selene-Node', first: 'Selene-First', last: 'Selene-Last', after: 'Selene-After' },
  /** The Object Store bucket of a stream's snapshots, and a snapshot's name in it. */
  snapshotBucket: (stream: string): string => `${stream}-snapshots`,
  snapshotName: (node: number, sequence: number): string => `${node}.${sequence}`,
} as const

/** The snapshot bucket (created on first use, with as many replicas as the stream). */
export function snapshots(remote: Remote): Promise<ObjectStore> {
  return new Objm(remote.js).create(Protocol.snapshotBucket(remote.stream), { replicas: remote.replicas })
}

/** A snapshot of a node in the bucket: its name, sequence and metadata. */
export interface RemoteSnapshot {
  name: string
  sequence: number
  metadata: Record<string, string>
}

/** The snapshots of `node` in the stream's bucket, in no particular order. */
export async function nodeSnapshots(remote: Remote, node: number): Promise<RemoteSnapshot[]> {
  const found: RemoteSnapshot[] = []
  for (const info of await (await snapshots(remote)).list()) {
    const metadata = info.metadata ?? {}
    if (metadata.node === String(node)) found.push({ name: info.name, sequence: Number(metadata.sequence), metadata })
  }
  return found
}

/** The last message on `subject`, or `null` if it has none. */
export function lastMessage(remote: Remote, subject: string): Promise<StoredMsg | null> {
  return stored(remote, { last_by_subj: subject })
}

/**
 * The messages on `subject` in stream order, from the first on, while `more(seq)` holds for
 * the stream sequence the next read starts at. Message by message, each one request, so a
 * read of the stream always settles (a timeout is an error), unlike a consumer that waits for
 * messages.
 */
export async function* messagesOn(remote: Remote, subject: string, more: (seq: number) => boolean): AsyncGenerator<StoredMsg, void, undefined> {
  for (let seq = 1; more(seq); ) {
    // The server's message-get takes `next_by_subj` (2.10+); the client's type lists it only for direct gets.
    const message = await stored(remote, { seq, next_by_subj: subject } as unknown as MsgRequest)
    if (!message) return
    seq = message.seq + 1
    yield message
  }
}

async function stored(remote: Remote, query: MsgRequest): Promise<StoredMsg | null> {
  try {
    return await remote.jsm.streams.getMessage(remote.stream, query)
  } catch (error) {
    if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.NoMessageFound) return null
    throw error
  }
}

/** A shipment's header length (the engine's `shipment` layout, from the addon): its frames follow. */
export const SHIPMENT_HEADER_LEN = native.SHIPMENT_HEADER_LEN

/** A message's bytes as a Buffer for the addon, without a copy (the addon copies once). */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

/**
 * A shipment message's range, in its headers: the node, its first and last sequence, and
 * `after`, the node's last sequence the stream held, without a hole, when it was published
 * (every entry up to `after` is stored before this message). Receivers order shipments by
 * these; the engine verifies the frames themselves.
 */
export interface Range {
  node: number
  first: number
  last: number
  after: number
}

/** Headers of a shipment message: its range. */
export function shipmentHeaders(range: Range): ReturnType<typeof headers> {
  const h = headers()
  for (const [key, name] of Object.entries(Protocol.headers)) h.set(name, String(range[key as keyof Range]))
  return h
}

/** A shipment message's range, stored or delivered; `null` when its headers do not name one. */
export function rangeOf(message: StoredMsg | { headers?: { get(k: string): string } | undefined }): Range | null {
  const h = 'header' in message ? message.header : message.headers
  const read = (name: string): number => {
    const text = h?.get(name) ?? ''
    return /^\d{1,16}$/.test(text) ? Number(text) : Number.NaN
  }
  const range = { node: read(Protocol.headers.node), first: read(Protocol.headers.first), last: read(Protocol.headers.last), after: read(Protocol.headers.after) }
  const whole = Object.values(range).every(Number.isSafeInteger) && range.after < range.first && range.first <= range.last
  return whole ? range : null
}

/**
 * The receive rule of shipments: `message`, decoded by the engine as `decoded`, is a shipment
 * of `decoded.node` only if it came on that node's subject and its headers name that node and
 * exactly the range of its frames (receivers order shipments by the headers). Its range, or
 * `null` when it is not.
 */
export function receivedRange(prefix: string, message: { subject: string; headers?: { get(k: string): string } | undefined } | StoredMsg, decoded: { node: number; first: number; last: number }): Range | null {
  const range = rangeOf(message)
  const sound = message.subject === Protocol.dataSubject(prefix, decoded.node) && range?.node === decoded.node && range.first === decoded.first && range.last === decoded.last
  return sound ? range : null
}

/** A NATS failure as a typed error: a fencing refusal is REMOTE_FENCED, anything else REMOTE_UNAVAILABLE. */
export function remoteError(error: unknown, what: string): PersistError {
  // The addon's own failures (a read of the store) keep their codes.
  const own = ownError(error)
  if (own) return own
  const detail = error instanceof Error ? error.message : String(error)
  if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamWrongLastSequence) {
    return new PersistError('REMOTE_FENCED', `${what}: another shipper claimed this node (${detail})`, { cause: error })
  }
  return new PersistError('REMOTE_UNAVAILABLE', `${what}: ${detail}`, { cause: error })
}
