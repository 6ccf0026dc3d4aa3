/**
 * `ship`, `replicate`, `restore` and `audit`: the JetStream integration from the command line. The
 * `selene-persist/jetstream` module (and the optional @nats-io packages it needs) is loaded
 * only when one of these commands runs.
 */
import { statSync } from 'node:fs'

import type * as Jetstream from '../../jetstream'
import { PersistError } from '../errors'
import { Store } from '../store'
import { ProgressBar, UsageError, integer, parse } from './args'

const CONNECTION = `  --server URL      a NATS server; repeat it, or separate URLs with commas, for a cluster
  --stream NAME     the JetStream stream
  --subject PREFIX  the subjects' prefix (default selene.<stream>)
  --json            print JSON lines on stdout instead of text`

export const SHIP_USAGE = `Usage: selene-persist ship <dir> --server URL --stream NAME --node ID [options]

Ship the store in <dir> to the stream NAME as node ID: every committed entry, from the
shipper's durable cursor (jetstream-NAME-ID) on, and each live snapshot to the Object Store
bucket NAME-snapshots. Runs until Ctrl-C or SIGTERM, then waits for the shipments in flight
and exits 0; with --once it exits once the stream holds every entry committed at the start.
The store must not be open in another process (its writer holds the lock): an application
ships from its own process with ship() from selene-persist/jetstream.

${CONNECTION}
  --node ID         this store's node id: one shipper per node id, ever
  --once            exit once caught up
  --window N        shipments in flight (default 8)
  --replicas N      replicas of the stream and bucket when this creates them (default 1)

Exit code 1 with REMOTE_FENCED if another store ships under this node id.
`

export const REPLICATE_USAGE = `Usage: selene-persist replicate <dir> --server URL --stream NAME [--node ID]... [options]

Append every shipment of the stream NAME (of every node, or only of each --node ID) into the
store in <dir> (created if missing), each entry once, with a replicated origin. Resumes where
it stopped. Runs until Ctrl-C or SIGTERM (exit 0); with --once it exits once it has applied
everything the stream held.

${CONNECTION}
  --node ID         only this source node (repeatable)
  --once            exit once caught up
`

export const RESTORE_USAGE = `Usage: selene-persist restore <dir> --server URL --stream NAME --node ID [options]

Build a new store in <dir> (which must not exist) from node ID's latest snapshot in the bucket
NAME-snapshots and its shipments after it. Exit code 0 with the last sequence restored; 1 with
REMOTE_INCOMPLETE if the stream no longer holds every entry after the snapshot (nothing is
then left at <dir>).

${CONNECTION}
  --node ID         the node whose log is restored
  --to-sequence N   end at sequence N
  --to-time T       end at the last entry stamped at or before T (ISO 8601, or ms since 1970)
`

export const AUDIT_USAGE = `Usage: selene-persist audit <dir> --server URL --stream NAME --node ID [options]

Check that the stream NAME still holds every entry of node ID that it acknowledged: each
shipment decodes (every checksum) and equals the store's own frames while <dir> still holds
them, and together they cover, without a hole, every sequence from the node's newest snapshot
in the bucket NAME-snapshots to the position of the shipper's cursor (jetstream-NAME-ID) in
<dir>. Reads <dir> without opening it: its writer may be running. Run it periodically, and
after any incident of the NATS servers.

${CONNECTION}
  --node ID         the node audited

Exit code 0 when intact; 1 with REMOTE_INCOMPLETE and the missing and corrupt ranges (on
stdout) when the stream lost or damaged what it acknowledged.
`

const CONNECTION_OPTIONS = {
  server: { type: 'string', multiple: true },
  stream: { type: 'string' },
  subject: { type: 'string' },
  json: { type: 'boolean' },
} as const

/** The loaded `selene-persist/jetstream` (`OPTIONAL_DEPENDENCY_MISSING` when its NATS packages are missing). */
function jetstream(): typeof Jetstream {
  return require('../../jetstream') as typeof Jetstream
}

/** The connection options every command takes. */
function connection(values: Record<string, unknown>): { servers: string[]; stream: string; subject?: string } {
  const servers = ((values.server as string[] | undefined) ?? []).flatMap((s) => s.split(',')).filter((s) => s !== '')
  if (servers.length === 0) throw new UsageError('--server is required')
  if (typeof values.stream !== 'string') throw new UsageError('--stream is required')
  return { servers, stream: values.stream, ...(typeof values.subject === 'string' ? { subject: values.subject } : {}) }
}

function required(name: string, value: unknown): number {
  const n = integer(name, value as string | undefined)
  if (n === undefined) throw new UsageError(`--${name} is required`)
  return n
}

/** Output: JSON lines, or text on stdout and a status line on a terminal's stderr. */
class Output {
  readonly #json: boolean
  readonly #bar: ProgressBar

  constructor(command: string, json: boolean) {
    this.#json = json
    this.#bar = new ProgressBar(command, String)
  }

  /** A progress report: a JSON line, or the status line. */
  progress(event: Record<string, unknown>, text: string): void {
    if (this.#json) console.log(JSON.stringify({ event: 'progress', ...event }))
    else this.#bar.status(text)
  }

  /** A failure that is retried. */
  retry(error: PersistError): void {
    if (this.#json) console.log(JSON.stringify({ event: 'retry', code: error.code, message: error.message }))
    else process.stderr.write(`${error.message} [${error.code}], retrying\n`)
  }

  /** The last line. */
  done(event: Record<string, unknown>, text: string): void {
    this.#bar.done()
    console.log(this.#json ? JSON.stringify({ event: 'done', ...event }) : text)
  }
}

/** Resolves on the first SIGINT or SIGTERM; `release` stops listening. */
function stopSignal(): { stopped: Promise<void>; release: () => void } {
  let stop: () => void = () => undefined
  const stopped = new Promise<void>((resolve) => (stop = resolve))
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, stop)
  return { stopped, release: () => ['SIGINT', 'SIGTERM'].forEach((s) => process.off(s, stop)) }
}

/** Report progress every `ms` until `until` settles; returns what it settled with. */
async function reporting<T>(until: Promise<T>, ms: number, report: () => void): Promise<T> {
  const timer = setInterval(report, ms)
  try {
    return await until
  } finally {
    clearInterval(timer)
  }
}

export async function shipCommand(argv: string[]): Promise<number> {
  const options = { ...CONNECTION_OPTIONS, node: { type: 'string' }, once: { type: 'boolean' }, window: { type: 'string' }, replicas: { type: 'string' } } as const
  const { positionals, values, help } = parse(argv, options, 1, 1)
  if (help) return process.stdout.write(SHIP_USAGE), 0
  const remote = connection(values)
  const nodeId = required('node', values.node)
  const window = integer('window', values.window)
  const replicas = integer('replicas', values.replicas)
  const { ship } = jetstream()
  const out = new Output('ship', values.json === true)
  const dir = positionals[0] ?? ''
  // Opening would create the directory: shipping a store that is not there is a mistyped path.
  if (statSync(dir, { throwIfNoEntry: false })?.isDirectory() !== true) throw new PersistError('INVALID_ARGUMENT', `${dir} is not a store directory`)
  const store = await Store.open(dir)
  const signal = stopSignal()
  try {
    const shipper = await ship(store, { ...remote, nodeId, onError: (e) => out.retry(e), ...(window === undefined ? {} : { window }), ...(replicas === undefined ? {} : { replicas }) })
    const report = (): void => {
      const lag = shipper.lag
      out.progress({ shipped: shipper.shippedSequence, lag }, `shipped up to ${shipper.shippedSequence}, ${lag.entries} entries behind (${lag.ms} ms)`)
    }
    const caughtUp = values.once === true ? shipper.shipped(store.lastSequence) : new Promise<void>(() => undefined)
    await reporting(Promise.race([caughtUp, signal.stopped, shipper.done]), values.json === true ? 1000 : 250, report)
    await shipper.close()
    out.done({ shipped: shipper.shippedSequence, lastSequence: store.lastSequence }, `shipped ${dir} to stream ${remote.stream} as node ${nodeId}: every entry up to sequence ${shipper.shippedSequence}`)
    return 0
  } finally {
    signal.release()
    await store.close()
  }
}

export async function replicateCommand(argv: string[]): Promise<number> {
  const options = { ...CONNECTION_OPTIONS, node: { type: 'string', multiple: true }, once: { type: 'boolean' } } as const
  const { positionals, values, help } = parse(argv, options, 1, 1)
  if (help) return process.stdout.write(REPLICATE_USAGE), 0
  const remote = connection(values)
  const nodes = (values.node as unknown as string[] | undefined)?.map((n) => required('node', n))
  const { replicate } = jetstream()
  const out = new Output('replicate', values.json === true)
  const dir = positionals[0] ?? ''
  const store = await Store.open(dir)
  const signal = stopSignal()
  try {
    const replicator = await replicate({ ...remote, into: store, onError: (e) => out.retry(e), ...(nodes ? { nodes } : {}) })
    const positions = (): Record<string, number> => Object.fromEntries(replicator.positions)
    const text = (): string => [...replicator.positions].map(([node, seq]) => `node ${node} up to ${seq}`).join(', ') || 'nothing yet'
    const caughtUp = values.once === true ? replicator.caughtUp() : new Promise<void>(() => undefined)
    await reporting(Promise.race([caughtUp, signal.stopped, replicator.done]), values.json === true ? 1000 : 250, () => out.progress({ positions: positions() }, `applied ${text()}`))
    await replicator.close()
    out.done({ positions: positions(), lastSequence: store.lastSequence }, `replicated stream ${remote.stream} into ${dir}: ${text()}`)
    return 0
  } finally {
    signal.release()
    await store.close()
  }
}

/** `--to-time`: ISO 8601 or milliseconds since the epoch. */
function time(value: unknown): number | undefined {
  if (value === undefined) return undefined
  const text = String(value)
  const ms = /^\d+$/.test(text) ? Number(text) : Date.parse(text)
  if (!Number.isFinite(ms)) throw new UsageError(`--to-time takes an ISO 8601 time or milliseconds since 1970, got ${text}`)
  return ms
}

export async function restoreCommand(argv: string[]): Promise<number> {
  const options = { ...CONNECTION_OPTIONS, node: { type: 'string' }, 'to-sequence': { type: 'string' }, 'to-time': { type: 'string' } } as const
  const { positionals, values, help } = parse(argv, options, 1, 1)
  if (help) return process.stdout.write(RESTORE_USAGE), 0
  const remote = connection(values)
  const nodeId = required('node', values.node)
  const toSequence = integer('to-sequence', values['to-sequence'])
  const toTime = time(values['to-time'])
  const { restore } = jetstream()
  const bar = new ProgressBar('restore', (n) => `#${n}`)
  const dir = positionals[0] ?? ''
  const restored = await restore({
    ...remote,
    nodeId,
    dir,
    onProgress: (done, end) => bar.update(done, end),
    ...(toSequence === undefined ? {} : { toSequence }),
    ...(toTime === undefined ? {} : { toTime }),
  })
  bar.done()
  const { snapshotSeq, lastSequence } = restored
  console.log(values.json ? JSON.stringify({ dir, snapshotSeq, lastSequence }) : `restored node ${nodeId} of stream ${remote.stream} into ${dir}: snapshot ${snapshotSeq}, entries up to sequence ${lastSequence}`)
  return 0
}

export async function auditCommand(argv: string[]): Promise<number> {
  const options = { ...CONNECTION_OPTIONS, node: { type: 'string' } } as const
  const { positionals, values, help } = parse(argv, options, 1, 1)
  if (help) return process.stdout.write(AUDIT_USAGE), 0
  const remote = connection(values)
  const nodeId = required('node', values.node)
  const { audit, AuditError } = jetstream()
  const json = values.json === true
  try {
    const { checked, snapshotSeq, shipments } = await audit({ ...remote, nodeId, dir: positionals[0] ?? '' })
    console.log(
      json
        ? JSON.stringify({ ok: true, checked, snapshotSeq, shipments })
        : `stream ${remote.stream} holds node ${nodeId}'s entries ${checked.first} to ${checked.last} intact (snapshot ${snapshotSeq}, ${shipments} shipments)`,
    )
    return 0
  } catch (error) {
    if (!(error instanceof AuditError)) throw error
    const { code, message, missing, corrupt } = error
    const text = (ranges: Jetstream.SequenceRange[]): string => ranges.map(([a, b]) => `${a}-${b}`).join(' ')
    console.log(json ? JSON.stringify({ ok: false, code, message, missing, corrupt }) : [`missing: ${text(missing) || 'none'}`, `corrupt: ${text(corrupt) || 'none'}`].join('\n'))
    throw error
  }
}
