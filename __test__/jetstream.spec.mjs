// Shipping, replication and restore through a real nats-server process (2.10 or newer, on
// 127.0.0.1, `sync_interval: always`); the cluster cases are in jetstream-cluster.spec.mjs.
import { execFile, spawn } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import test from 'ava'
import { connect } from '@nats-io/transport-node'
import { jetstream, jetstreamManager } from '@nats-io/jetstream'
import { Objm } from '@nats-io/obj'

import { PersistError, Store, WalReader } from 'selene-persist'
import { replicate, restore, ship } from 'selene-persist/jetstream'

import { runUntilKilled } from './fixtures/kill.mjs'
import { contents, tempDir } from './helpers.mjs'
import { natsServer, natsServerMissing, startNats } from './nats.mjs'

const run = natsServer ? test.serial : test.skip
// Never skipped silently: nats.mjs takes nats-server 2.10+ from PATH or installs 2.15.1 into .tools/.
if (!natsServer) test('nats-server 2.10 or newer is on PATH or installed into .tools/ with pip', (t) => t.fail(natsServerMissing))

let single
test.before(async () => {
  if (natsServer) single = await startNats(1)
})
test.after.always(() => single?.stop())

/** Messages stored on `subject` of `stream`. */
async function stored(urls, stream, subject) {
  const nc = await connect({ servers: urls })
  try {
    const info = await (await jetstreamManager(nc)).streams.info(stream, { subjects_filter: subject })
    return info.state.subjects?.[subject] ?? 0
  } finally {
    await nc.close()
  }
}

run('ship, then restore into a new directory: identical entries, snapshot sections and sequences', async (t) => {
  const dir = await tempDir(t)
  const store = await Store.open(join(dir, 'origin'))
  const shipper = await ship(store, { servers: single.urls, stream: 'ONE', nodeId: 1 })
  for (let i = 0; i < 60; i++) await store.append(Buffer.from(`before ${i}`), { principal: Buffer.from(i % 2 ? 'alice' : 'bob') })
  await store.checkpoint({ state: Buffer.from('sixty'), index: Buffer.from('i'.repeat(10_000)) })
  await Promise.all(Array.from({ length: 500 }, (_, i) => store.append(Buffer.from(`after ${i} ${'x'.repeat(i)}`))))
  await shipper.shipped(store.lastSequence)
  t.is(shipper.lag.entries, 0)
  await store.append(Buffer.from('one more'))
  await shipper.shipped(store.lastSequence)
  await shipper.close()
  // close() leaves the cursor at what the stream acknowledged.
  t.deepEqual((await store.consumers()).map((c) => [c.name, c.position]), [['jetstream-ONE-1', store.lastSequence]])
  await store.close()

  const origin = await contents(join(dir, 'origin'))
  const restored = await restore({ servers: single.urls, stream: 'ONE', nodeId: 1, dir: join(dir, 'restored') })
  t.deepEqual(restored, { snapshotSeq: 61, lastSequence: 562 })
  t.deepEqual(await contents(join(dir, 'restored')), origin)

  // To a sequence before the snapshot: the log from the start, cut there.
  const early = await restore({ servers: single.urls, stream: 'ONE', nodeId: 1, dir: join(dir, 'to-30'), toSequence: 30 })
  t.deepEqual(early, { snapshotSeq: 0, lastSequence: 30 })
  const to30 = (await contents(join(dir, 'to-30'))).entries
  t.deepEqual(to30.map((e) => [e.sequence, e.payload, e.principal]), Array.from({ length: 30 }, (_, i) => [i + 1, `before ${i}`, i % 2 ? 'alice' : 'bob']))
  // A restore never replaces a directory.
  const exists = await restore({ servers: single.urls, stream: 'ONE', nodeId: 1, dir: join(dir, 'origin') }).catch((e) => e)
  t.true(exists instanceof PersistError)
  t.is(exists.code, 'INVALID_ARGUMENT')
})

run('a point-in-time restore ends at the last entry stamped at or before toTime', async (t) => {
  const dir = await tempDir(t)
  const store = await Store.open(join(dir, 'origin'))
  for (let i = 0; i < 50; i++) await store.append(Buffer.from(`at ${i}`), { hlc: { seconds: 1_000 + i, subseconds: 5 } })
  const shipper = await ship(store, { servers: single.urls, stream: 'TIME', nodeId: 4 })
  await shipper.shipped(50)
  await shipper.close()
  await store.close()
  const restored = await restore({ servers: single.urls, stream: 'TIME', nodeId: 4, dir: join(dir, 'r'), toTime: new Date(1_020_000) })
  t.is(restored.lastSequence, 21)
  const { entries } = await contents(join(dir, 'r'))
  t.deepEqual(entries.map((e) => e.payload), Array.from({ length: 21 }, (_, i) => `at ${i}`))
})

run('a second shipper for the same node id is refused and writes nothing', async (t) => {
  const dir = await tempDir(t)
  const first = await Store.open(join(dir, 'a'))
  for (let i = 0; i < 20; i++) await first.append(Buffer.from(`a ${i}`))
  const shipper = await ship(first, { servers: single.urls, stream: 'FENCE', nodeId: 7 })
  await shipper.shipped(20)
  const before = await stored(single.urls, 'FENCE', 'selene.FENCE.7')

  // Another store under the same node id: its log is not the one the stream holds.
  const other = await Store.open(join(dir, 'b'))
  for (let i = 0; i < 30; i++) await other.append(Buffer.from(`b ${i}`))
  const refused = await ship(other, { servers: single.urls, stream: 'FENCE', nodeId: 7 }).catch((e) => e)
  t.true(refused instanceof PersistError)
  t.is(refused.code, 'REMOTE_FENCED')
  // The same store twice in one process.
  const twice = await ship(first, { servers: single.urls, stream: 'FENCE', nodeId: 7 }).catch((e) => e)
  t.is(twice.code, 'REMOTE_FENCED')
  t.is(await stored(single.urls, 'FENCE', 'selene.FENCE.7'), before)

  // The first goes on shipping; closed and restarted, it resumes after what the stream holds.
  await first.append(Buffer.from('a 20'))
  await shipper.shipped(21)
  await shipper.close()
  const again = await ship(first, { servers: single.urls, stream: 'FENCE', nodeId: 7 })
  t.is(again.shippedSequence, 21)
  await first.append(Buffer.from('a 21'))
  await again.shipped(22)
  await again.close()
  t.is(await stored(single.urls, 'FENCE', 'selene.FENCE.7'), before + 2)
  await first.close()
  await other.close()
})

run('a replica of two source nodes holds every entry of both, once, in each source order, and resumes', async (t) => {
  const dir = await tempDir(t)
  const sources = await Promise.all([1, 2].map((n) => Store.open(join(dir, `source-${n}`))))
  const shippers = await Promise.all(sources.map((s, i) => ship(s, { servers: single.urls, stream: 'REPL', nodeId: i + 1 })))
  const replica = await Store.open(join(dir, 'replica'))
  let replicator = await replicate({ servers: single.urls, stream: 'REPL', into: replica })
  const watermarks = new Set()
  const appendSome = async (count) => {
    for (let i = 0; i < count; i++) {
      await Promise.all(sources.map((s, n) => s.append(Buffer.from(`node ${n + 1} entry ${s.lastSequence + 1}`))))
    }
    // A checkpoint's watermark takes a sequence on one source: the replica skips it.
    watermarks.add((await sources[0].checkpoint({ s: Buffer.from('x') })).sequence)
  }
  await appendSome(150)
  await Promise.all(sources.map((s, i) => replicator.applied(i + 1, s.lastSequence)))
  await replicator.close()
  // Resumes where it stopped; a shipper that restarts resends nothing the replica applies twice.
  await shippers[1].close()
  shippers[1] = await ship(sources[1], { servers: single.urls, stream: 'REPL', nodeId: 2 })
  await appendSome(50)
  replicator = await replicate({ servers: single.urls, stream: 'REPL', into: replica })
  await Promise.all(sources.map((s, i) => replicator.applied(i + 1, s.lastSequence)))
  await replicator.close()
  await Promise.all(shippers.map((s) => s.close()))

  const seen = { 1: [], 2: [] }
  for await (const e of replica.replay()) {
    t.is(e.origin.kind, 'replicated')
    seen[e.origin.sourceNodeId].push(e.origin.sourceSeq)
    t.is(e.payload.toString(), `node ${e.origin.sourceNodeId} entry ${e.origin.sourceSeq}`)
  }
  for (const n of [1, 2]) {
    const last = sources[n - 1].lastSequence
    const expected = Array.from({ length: last }, (_, i) => i + 1).filter((s) => n === 2 || !watermarks.has(s))
    t.deepEqual(seen[n], expected, `node ${n}: every entry, once, in order`)
  }
  t.is(seen[1].length, 200)
  t.is(seen[2].length, 200)
  await replica.close()
  await Promise.all(sources.map((s) => s.close()))
})

run('bad options are typed errors', async (t) => {
  const dir = await tempDir(t)
  const store = await Store.open(dir)
  for (const options of [{}, { servers: single.urls, stream: 'a.b', nodeId: 1 }, { servers: single.urls, stream: 'OK', nodeId: -1 }]) {
    const error = await ship(store, options).catch((e) => e)
    t.is(error.code, 'INVALID_ARGUMENT', JSON.stringify(options))
  }
  const unreachable = await ship(store, { servers: 'nats://127.0.0.1:1', stream: 'OK', nodeId: 1 }).catch((e) => e)
  t.is(unreachable.code, 'REMOTE_UNAVAILABLE')
  const incomplete = await restore({ servers: single.urls, stream: 'ONE', nodeId: 1, dir: join(dir, 'x'), toSequence: 10_000 }).catch((e) => e)
  t.is(incomplete.code, 'REMOTE_INCOMPLETE')
  await store.close()
})

/**
 * Node 5's shipments of a 10-shipment log, re-published into a new stream as a pipelined
 * shipper may have left them: in another order, some missing. `after` is what such a shipper
 * would have sent (the last sequence stored without a hole before each), unless `lost` names
 * shipments the stream dropped after storing them (its limits), which later ones vouch for.
 */
let reorderOrigin = null
async function reordered(t, order, { lost = [] } = {}) {
  if (!reorderOrigin) {
    const dir = await tempDir(t)
    const store = await Store.open(join(dir, 'origin'))
    // Seven entries committed before each shipper starts: one shipment each.
    for (let k = 0; k < 10; k++) {
      for (let i = 0; i < 7; i++) await store.append(Buffer.from(`shipment ${k} entry ${i}`))
      const shipper = await ship(store, { servers: single.urls, stream: 'ORDER', nodeId: 5, window: 1 })
      await shipper.shipped(store.lastSequence)
      await shipper.close()
    }
    await store.close()
    const nc = await connect({ servers: single.urls })
    const jsm = await jetstreamManager(nc)
    const shipments = []
    for (let seq = 1; ; seq++) {
      const m = await jsm.streams.getMessage('ORDER', { seq }).catch(() => null)
      if (!m) break
      if (m.subject === 'selene.ORDER.5') shipments.push(m)
    }
    await nc.close()
    t.is(shipments.length, 10)
    reorderOrigin = { dir: join(dir, 'origin'), shipments, entries: (await contents(join(dir, 'origin'))).entries }
  }
  const { shipments } = reorderOrigin
  const stream = `ORDER-${order.join('')}-${lost.join('')}`
  const nc = await connect({ servers: single.urls })
  const jsm = await jetstreamManager(nc)
  await jsm.streams.add({ name: stream, subjects: [`selene.${stream}.>`], storage: 'file' })
  const js = (await import('@nats-io/jetstream')).jetstream(nc)
  const held = new Set()
  const lastOf = (k) => Number(shipments[k].header.get('Selene-Last'))
  const stored = []
  for (const k of order) {
    let after = 0
    for (let j = 0; j < shipments.length && (held.has(j) || lost.includes(j)); j++) after = lastOf(j)
    const h = (await import('@nats-io/transport-node')).headers()
    for (const name of ['Selene-Node', 'Selene-First', 'Selene-Last']) h.set(name, shipments[k].header.get(name))
    // A shipper resending a shipment resumed before it: `after` is below its first sequence.
    h.set('Selene-After', String(Math.min(after, Number(shipments[k].header.get('Selene-First')) - 1)))
    stored.push([k, (await js.publish(`selene.${stream}.5`, shipments[k].data, { headers: h })).seq])
    held.add(k)
  }
  for (const [k, seq] of stored) if (lost.includes(k)) await jsm.streams.deleteMessage(stream, seq)
  await nc.close()
  return stream
}

/** Restore and replicate `stream` (node 5): the sequences each ends with, or the error code. */
async function receive(t, stream) {
  const dir = await tempDir(t)
  const restored = await restore({ servers: single.urls, stream, nodeId: 5, dir: join(dir, 'restored') }).then(
    async () => (await contents(join(dir, 'restored'))).entries,
    (e) => e.code,
  )
  const replica = await Store.open(join(dir, 'replica'))
  const replicator = await replicate({ servers: single.urls, stream, into: replica })
  const stopped = replicator.done.then(
    () => null,
    (e) => e.code,
  )
  // The replicator takes what it can; a hole that never fills leaves the rest held.
  const settle = async () => {
    for (let quiet = 0; quiet < 5; ) {
      const before = replica.lastSequence
      await new Promise((r) => setTimeout(r, 100))
      quiet = replica.lastSequence === before ? quiet + 1 : 0
    }
  }
  await Promise.race([stopped, settle()])
  await replicator.close()
  const failed = await stopped
  const replicated = []
  for await (const e of replica.replay()) replicated.push([e.origin.sourceSeq, e.payload.toString()])
  await replica.close()
  const expected = reorderOrigin.entries
  return {
    restored: typeof restored === 'string' ? restored : (t.deepEqual(restored, expected.slice(0, restored.length)), restored.length),
    replicated: failed && failed !== 'CLOSED' ? failed : (t.deepEqual(replicated, expected.slice(0, replicated.length).map((e) => [e.sequence, e.payload])), replicated.length),
  }
}

for (const [name, order, lost, restored, replicated] of [
  ['in order', [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [], 70, 70],
  ['the first two swapped', [1, 0, 2, 3, 4, 5, 6, 7, 8, 9], [], 70, 70],
  ['one stored after the three that follow it', [0, 2, 3, 4, 1, 5, 6, 7, 8, 9], [], 70, 70],
  ['two holes filled late, resent ones in between', [0, 3, 2, 1, 3, 5, 4, 6, 9, 8, 7, 9], [], 70, 70],
  ['one never stored: the log ends before it', [0, 1, 2, 4, 5, 6, 7, 8, 9], [], 21, 21],
  ['the last one never stored', [0, 1, 2, 3, 4, 5, 6, 7, 8], [], 63, 63],
  ['one dropped by the stream after later ones vouched for it', [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [3], 'REMOTE_INCOMPLETE', 'REMOTE_INCOMPLETE'],
]) {
  run(`shipments out of order: ${name}`, async (t) => {
    const stream = await reordered(t, order, { lost })
    t.deepEqual(await receive(t, stream), { restored, replicated })
  })
}

run('a replica killed -9 at random moments (20 rounds) ends with every entry of two sources, once, in order', async (t) => {
  const dir = await tempDir(t)
  const child = fileURLToPath(new URL('./fixtures/replicate-child.mjs', import.meta.url))
  const sources = await Promise.all([1, 2].map((n) => Store.open(join(dir, `source-${n}`))))
  const shippers = await Promise.all(sources.map((s, i) => ship(s, { servers: single.urls, stream: 'KILLREPL', nodeId: i + 1 })))
  // The sources append all along, in batches, while the replica is killed and restarted: it
  // is mostly busy applying, so the kills land between an entry's append and its position.
  let appending = true
  const feed = Promise.all(
    sources.map(async (s, n) => {
      while (appending) {
        await Promise.all(Array.from({ length: 200 }, () => s.append(Buffer.from(`node ${n + 1} payload`))))
        await new Promise((r) => setTimeout(r, 3))
      }
    }),
  )
  let acknowledged = 0
  for (let round = 0; round < 20; round++) {
    const acked = await runUntilKilled(child, [join(dir, 'replica'), single.urls.join(','), 'KILLREPL'], 1 + (round % 5) * 3, Math.floor(Math.random() * 60))
    t.true(acked >= acknowledged, `round ${round}: the replica went back`)
    acknowledged = acked
  }
  appending = false
  await feed
  await Promise.all(shippers.map((s, i) => s.shipped(sources[i].lastSequence)))
  const replica = await Store.open(join(dir, 'replica'))
  const replicator = await replicate({ servers: single.urls, stream: 'KILLREPL', into: replica })
  await Promise.all(sources.map((s, i) => replicator.applied(i + 1, s.lastSequence)))
  await replicator.close()
  await replica.close()
  // The log itself, not replay (which would hide an entry appended twice).
  const seen = { 1: [], 2: [] }
  for await (const e of (await WalReader.open(join(dir, 'replica', 'wal.log'))).entries()) seen[e.origin.sourceNodeId].push(e.origin.sourceSeq)
  for (const n of [1, 2]) t.deepEqual(seen[n], Array.from({ length: sources[n - 1].lastSequence }, (_, i) => i + 1), `node ${n}: every entry once, in order`)
  t.true(acknowledged > 0)
  await Promise.all(shippers.map((s) => s.close()))
  await Promise.all(sources.map((s) => s.close()))
})

const CLI = fileURLToPath(new URL('../cli.js', import.meta.url))
/** Run the CLI: its exit code, stdout and stderr. */
function cli(...args) {
  return new Promise((resolve) => execFile(process.execPath, [CLI, ...args], (error, stdout, stderr) => resolve({ code: error ? error.code : 0, stdout, stderr })))
}
const lastLine = (text) => JSON.parse(text.trim().split('\n').at(-1))

run('the CLI ships, replicates and restores, with --json, --help and exit codes', async (t) => {
  const dir = await tempDir(t)
  const origin = join(dir, 'origin')
  const store = await Store.open(origin)
  for (let i = 0; i < 300; i++) await store.append(Buffer.from(`cli ${i}`), { principal: Buffer.from('cli') })
  await store.checkpoint({ state: Buffer.from('at 300') })
  for (let i = 300; i < 400; i++) await store.append(Buffer.from(`cli ${i}`))
  await store.close()
  const remote = ['--server', single.urls.join(','), '--stream', 'CLI']

  const shipped = await cli('ship', origin, ...remote, '--node', '8', '--once', '--json')
  t.is(shipped.code, 0, shipped.stderr)
  t.like(lastLine(shipped.stdout), { event: 'done', shipped: 401, lastSequence: 401 })
  // Another store under node 8 is refused: exit 1, the code on stderr.
  const other = join(dir, 'other')
  const foreign = await Store.open(other)
  await foreign.append(Buffer.from('not the same log'))
  await foreign.close()
  const fenced = await cli('ship', other, ...remote, '--node', '8', '--once')
  t.is(fenced.code, 1)
  t.regex(fenced.stderr, /\[REMOTE_FENCED\]/)

  const replicated = await cli('replicate', join(dir, 'replica'), ...remote, '--once', '--json')
  t.is(replicated.code, 0, replicated.stderr)
  // The shipper started after the checkpoint: the stream holds the entries after it (302 to
  // 401), the snapshot bucket what came before.
  t.like(lastLine(replicated.stdout), { event: 'done', positions: { 8: 401 }, lastSequence: 100 })

  const restored = await cli('restore', join(dir, 'restored'), ...remote, '--node', '8', '--json')
  t.is(restored.code, 0, restored.stderr)
  t.deepEqual(lastLine(restored.stdout), { dir: join(dir, 'restored'), snapshotSeq: 301, lastSequence: 401 })
  t.deepEqual(await contents(join(dir, 'restored')), await contents(origin))
  const partial = await cli('restore', join(dir, 'partial'), ...remote, '--node', '8', '--to-sequence', '350')
  t.is(partial.code, 0, partial.stderr)
  t.regex(partial.stdout, /snapshot 301, entries up to sequence 350/)
  // Before the snapshot, and past the end: not in the stream.
  for (const to of ['20', '5000']) {
    const missing = await cli('restore', join(dir, `to-${to}`), ...remote, '--node', '8', '--to-sequence', to)
    t.is(missing.code, 1)
    t.regex(missing.stderr, /\[REMOTE_INCOMPLETE\]/)
  }

  for (const command of ['ship', 'replicate', 'restore']) {
    const help = await cli(command, '--help')
    t.is(help.code, 0)
    t.regex(help.stdout, new RegExp(`^Usage: selene-persist ${command} <dir>`))
    const usage = await cli(command, dir, '--stream', 'CLI')
    t.is(usage.code, 2)
    t.regex(usage.stderr, /--server is required/)
  }
  t.is((await cli('ship', join(dir, 'nothing-here'), ...remote, '--node', '8')).code, 1)
})

run('the CLI ships until SIGTERM, then exits 0 with its cursor recorded', async (t) => {
  const dir = await tempDir(t)
  const store = await Store.open(dir)
  for (let i = 0; i < 50; i++) await store.append(Buffer.from(`term ${i}`))
  await store.close()
  const child = spawn(process.execPath, [CLI, 'ship', dir, '--server', single.urls[0], '--stream', 'TERM', '--node', '2', '--json'])
  let out = ''
  child.stdout.on('data', (chunk) => {
    out += chunk
    // The first progress line comes after a second: by then the 50 entries are shipped.
    if (out.includes('"progress"') && !child.killed) child.kill('SIGTERM')
  })
  const code = await new Promise((resolve) => child.on('exit', resolve))
  t.is(code, 0)
  t.like(lastLine(out), { event: 'done', shipped: 50 })
  const reopened = await Store.open(dir)
  t.deepEqual((await reopened.consumers()).map((c) => [c.name, c.position]), [['jetstream-TERM-2', 50]])
  await reopened.close()
})

run('a backup of a replica carries its positions: replicating into the copy appends nothing twice', async (t) => {
  const dir = await tempDir(t)
  const sources = await Promise.all([1, 2].map((n) => Store.open(join(dir, `source-${n}`))))
  const shippers = await Promise.all(sources.map((s, i) => ship(s, { servers: single.urls, stream: 'BACKREPL', nodeId: i + 1 })))
  for (let i = 0; i < 30; i++) await Promise.all(sources.map((s) => s.append(Buffer.from(`entry ${i}`))))
  const replica = await Store.open(join(dir, 'replica'))
  const replicator = await replicate({ servers: single.urls, stream: 'BACKREPL', into: replica })
  await Promise.all([1, 2].map((n) => replicator.applied(n, 30)))
  // Node 1's entries end up only in the replica's snapshot; node 2 goes on after it.
  await replica.checkpoint({ state: Buffer.from('x') })
  await replica.prune({ keepSnapshots: 1, keepArchives: 0 })
  for (let i = 30; i < 40; i++) await sources[1].append(Buffer.from(`entry ${i}`))
  await replicator.applied(2, 40)
  await replicator.close()
  const copy = join(dir, 'copy')
  await replica.backup(copy)
  await replica.close()

  const restored = await Store.open(copy)
  const again = await replicate({ servers: single.urls, stream: 'BACKREPL', into: restored })
  await again.caughtUp()
  t.deepEqual(Object.fromEntries(again.positions), { 1: 30, 2: 40 })
  await again.close()
  await restored.close()
  // The copy's log after its snapshot: node 2's last ten entries, and nothing replicated twice.
  const logged = []
  for await (const e of (await WalReader.open(join(copy, 'wal.log'))).entries()) logged.push([e.origin.sourceNodeId, e.origin.sourceSeq])
  t.deepEqual(logged, Array.from({ length: 10 }, (_, i) => [2, 31 + i]))
  await Promise.all(shippers.map((s) => s.close()))
  await Promise.all(sources.map((s) => s.close()))
})

run('a store checkpointed before its first shipper: the snapshot goes with its time, and a restore to a time starts from it', async (t) => {
  const dir = await tempDir(t)
  const store = await Store.open(join(dir, 'origin'))
  for (let i = 0; i < 20; i++) await store.append(Buffer.from(`before ${i}`))
  const checkpoint = await store.checkpoint({ state: Buffer.from('twenty') })
  await new Promise((r) => setTimeout(r, 20))
  const between = Date.now()
  await new Promise((r) => setTimeout(r, 20))
  for (let i = 0; i < 10; i++) await store.append(Buffer.from(`after ${i}`))
  // The shipper starts after the live snapshot: the watermark at 21 is never shipped.
  const shipper = await ship(store, { servers: single.urls, stream: 'LATE', nodeId: 6 })
  await shipper.shipped(store.lastSequence)
  await shipper.close()
  await store.close()
  const restored = await restore({ servers: single.urls, stream: 'LATE', nodeId: 6, dir: join(dir, 'r'), toTime: between })
  t.deepEqual(restored, { snapshotSeq: checkpoint.sequence, lastSequence: checkpoint.sequence })
  const { sections, entries } = await contents(join(dir, 'r'))
  t.deepEqual(sections, { state: 'twenty' })
  t.deepEqual(entries, [])
})

run('a Shipper and a Replicator dispose with Symbol.asyncDispose, and close twice without complaint', async (t) => {
  const dir = await tempDir(t)
  const store = await Store.open(join(dir, 'origin'))
  const shipper = await ship(store, { servers: single.urls, stream: 'DISPOSE', nodeId: 3 })
  await store.append(Buffer.from('one'))
  await shipper.shipped(store.lastSequence)
  await Promise.all([shipper[Symbol.asyncDispose](), shipper.close()])
  await t.notThrowsAsync(shipper.close())
  await store.close()
  const copy = await Store.open(join(dir, 'copy'))
  const replicator = await replicate({ servers: single.urls, stream: 'DISPOSE', into: copy })
  await replicator.caughtUp()
  await replicator[Symbol.asyncDispose]()
  await t.notThrowsAsync(replicator.close())
  t.is(copy.lastSequence, 1)
  await copy.close()
})

run('a failed snapshot upload is retried with nothing left to ship, and once more at close', async (t) => {
  // The outer bound: without a retry, the upload's metadata never comes.
  t.timeout(60_000)
  const nc = await connect({ servers: single.urls })
  t.teardown(() => nc.close())
  const jsm = await jetstreamManager(nc)
  for (const [stream, node, end] of [
    ['UPRETRY', 7, 'retried'],
    ['UPCLOSE', 8, 'at close'],
  ]) {
    // A stream in the place of the snapshot bucket's makes every upload fail until it is gone.
    const blocker = `OBJ_${stream}-snapshots`
    await jsm.streams.add({ name: blocker, subjects: [`blocker.${stream}`] })
    const dir = await tempDir(t)
    const store = await Store.open(dir)
    for (let i = 0; i < 5; i++) await store.append(Buffer.from(`entry ${i}`))
    const { sequence } = await store.checkpoint({ state: Buffer.from(end) })
    let failed
    const uploadFailed = new Promise((resolve) => (failed = resolve))
    const shipper = await ship(store, { servers: single.urls, stream, nodeId: node, onError: (e) => /snapshot/.test(e.message) && failed(e) })
    await shipper.shipped(store.lastSequence)
    t.regex((await uploadFailed).code, /^REMOTE_/)
    // An upload's last step publishes the object's metadata: heard here as it is stored.
    const metadata = nc.subscribe(`$O.${stream}-snapshots.M.>`, { max: 1 })
    await nc.flush()
    await jsm.streams.delete(blocker)
    // Nothing more is shipped: only the retry (or the close) can upload it now.
    if (end === 'retried') {
      for await (const message of metadata) t.is(message.json().name, `${node}.${sequence}`, `${stream}: the snapshot was uploaded by a retry`)
      t.truthy(await new Objm(jetstream(nc)).open(`${stream}-snapshots`).then((bucket) => bucket.info(`${node}.${sequence}`)))
    } else metadata.unsubscribe()
    await shipper.close()
    await store.close()
    const restored = await restore({ servers: single.urls, stream, nodeId: node, dir: join(dir, 'restored') })
    t.is(restored.snapshotSeq, sequence, `${stream}: restore starts from the snapshot uploaded ${end}`)
    t.deepEqual((await contents(join(dir, 'restored'))).sections, { state: end })
  }
})
