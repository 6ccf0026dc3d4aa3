// Auditing a stream against the local log, through a real nats-server process (on 127.0.0.1):
// a stream that loses acknowledged shipments (a purge, a limit that drops old messages) or
// holds a damaged one is REMOTE_INCOMPLETE with the ranges, though `shipped()` never noticed.
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import test from 'ava'
import { connect, headers } from '@nats-io/transport-node'
import { jetstream, jetstreamManager } from '@nats-io/jetstream'
import { Objm } from '@nats-io/obj'

import { PersistError, Store } from 'selene-persist'
import { AuditError, audit, restore, ship } from 'selene-persist/jetstream'

import { tempDir } from './helpers.mjs'
import { natsServer, startNats } from './nats.mjs'

const run = natsServer ? test.serial : test.skip
if (!natsServer) test('nats-server 2.10 or newer is installed (.ci/run installs it)', (t) => t.fail())

let single
test.before(async () => {
  if (natsServer) single = await startNats(1)
})
test.after.always(() => single?.stop())

/** A JetStream manager on the test server, closed with the test. */
async function manager(t) {
  const nc = await connect({ servers: single.urls })
  t.teardown(() => nc.close())
  return { nc, jsm: await jetstreamManager(nc) }
}

/** Ship what `store` holds as node `nodeId` with a shipper of its own: one shipment when at most 10,000 entries wait. */
async function shipOnce(store, options) {
  const shipper = await ship(store, { servers: single.urls, window: 1, ...options })
  await shipper.shipped(store.lastSequence)
  await shipper.close()
}

const CLI = fileURLToPath(new URL('../cli.js', import.meta.url))
/** Run the CLI: its exit code, stdout and stderr. */
function cli(...args) {
  return new Promise((resolve) => execFile(process.execPath, [CLI, ...args], (error, stdout, stderr) => resolve({ code: error ? error.code : 0, stdout, stderr })))
}

/** The audit's rejection, which must be an AuditError. */
async function refused(t, auditing) {
  const error = await auditing.then(
    () => null,
    (e) => e,
  )
  t.true(error instanceof AuditError, String(error))
  t.true(error instanceof PersistError)
  t.is(error.code, 'REMOTE_INCOMPLETE')
  return error
}

run('an intact stream passes, checked from the newest snapshot in the bucket to the last sequence shipped', async (t) => {
  const dir = await tempDir(t)
  const store = await Store.open(dir)
  for (let i = 0; i < 30; i++) await store.append(Buffer.from(`before ${i}`))
  const { sequence } = await store.checkpoint({ state: Buffer.from('thirty') })
  for (let i = 0; i < 200; i++) await store.append(Buffer.from(`after ${i} ${'x'.repeat(i)}`))
  // Started after the checkpoint: the stream holds the entries after it, the bucket the snapshot.
  const shipper = await ship(store, { servers: single.urls, stream: 'AUDIT', nodeId: 1 })
  await shipper.shipped(store.lastSequence)
  const bucket = await new Objm(jetstream((await manager(t)).nc)).create('AUDIT-snapshots', { replicas: 1 })
  for (let round = 0; (await bucket.info(`1.${sequence}`)) === null; round++) {
    t.true(round < 200, 'the snapshot is uploaded')
    await new Promise((r) => setTimeout(r, 50))
  }
  const audited = await shipper.audit()
  t.deepEqual(audited, { ok: true, checked: { first: sequence + 1, last: store.lastSequence }, snapshotSeq: sequence, shipments: audited.shipments })
  t.true(audited.shipments >= 1)
  await shipper.close()

  // Standalone, from the store's directory while it is open here: the cursor says how far.
  const remote = { servers: single.urls, stream: 'AUDIT', nodeId: 1, dir }
  t.deepEqual(await audit(remote), audited)
  const cli0 = await cli('audit', dir, '--server', single.urls[0], '--stream', 'AUDIT', '--node', '1', '--json')
  t.is(cli0.code, 0, cli0.stderr)
  t.deepEqual(JSON.parse(cli0.stdout), audited)
  const text = await cli('audit', dir, '--server', single.urls[0], '--stream', 'AUDIT', '--node', '1')
  t.is(text.code, 0, text.stderr)
  t.regex(text.stdout, new RegExp(`holds node 1's entries ${sequence + 1} to ${store.lastSequence} intact`))

  // A store that never shipped as this node, and bad options.
  const never = await audit({ ...remote, nodeId: 2 }).catch((e) => e)
  t.is(never.code, 'INVALID_ARGUMENT')
  t.is((await audit({ ...remote, stream: 'a.b' }).catch((e) => e)).code, 'INVALID_ARGUMENT')
  const usage = await cli('audit', dir, '--stream', 'AUDIT', '--node', '1')
  t.is(usage.code, 2)
  t.regex(usage.stderr, /--server is required/)
  const help = await cli('audit', '--help')
  t.is(help.code, 0)
  t.regex(help.stdout, /^Usage: selene-persist audit <dir>/)
  await store.close()
})

run('a purge of the shipped messages: shipped() goes on resolving, the audit reports the purged range', async (t) => {
  const dir = await tempDir(t)
  const store = await Store.open(dir)
  const shipper = await ship(store, { servers: single.urls, stream: 'PURGED', nodeId: 3 })
  for (let i = 0; i < 40; i++) await store.append(Buffer.from(`purged ${i}`))
  await shipper.shipped(40)
  const { jsm } = await manager(t)
  const purged = await jsm.streams.purge('PURGED', { filter: 'selene.PURGED.3' })
  t.true(purged.purged >= 1)
  // The shipper does not notice: new entries ship and are acknowledged.
  for (let i = 0; i < 10; i++) await store.append(Buffer.from(`later ${i}`))
  await shipper.shipped(50)
  t.is(shipper.shippedSequence, 50)
  const error = await refused(t, shipper.audit())
  t.deepEqual(error.missing, [[1, 40]])
  t.deepEqual(error.corrupt, [])
  t.regex(error.message, /entries 1 to 40 are missing/)
  await shipper.close()
  t.deepEqual((await refused(t, audit({ servers: single.urls, stream: 'PURGED', nodeId: 3, dir }))).missing, [[1, 40]])
  // What a restore would have found only when needed.
  t.is((await restore({ servers: single.urls, stream: 'PURGED', nodeId: 3, dir: join(dir, 'restored') }).catch((e) => e)).code, 'REMOTE_INCOMPLETE')

  const remote = ['--server', single.urls[0], '--stream', 'PURGED', '--node', '3']
  const json = await cli('audit', dir, ...remote, '--json')
  t.is(json.code, 1)
  t.like(JSON.parse(json.stdout), { ok: false, code: 'REMOTE_INCOMPLETE', missing: [[1, 40]], corrupt: [] })
  t.regex(json.stderr, /\[REMOTE_INCOMPLETE\]/)
  const text = await cli('audit', dir, ...remote)
  t.is(text.code, 1)
  t.is(text.stdout, 'missing: 1-40\ncorrupt: none\n')
  await store.close()
})

run('auditEveryMs: the shipper audits on its own and tells onError of a loss, and ships on', async (t) => {
  const dir = await tempDir(t)
  const store = await Store.open(dir)
  const errors = []
  let lost
  const reported = new Promise((resolve) => (lost = resolve))
  // An audit begun before the purge checks up to what was shipped then: wait for one that checks all 20.
  const onError = (error) => (errors.push(error), error.missing?.[0]?.[1] === 20 && lost(error))
  const shipper = await ship(store, { servers: single.urls, stream: 'AUDITED', nodeId: 6, auditEveryMs: 20, onError })
  t.teardown(() => shipper.close())
  for (let i = 0; i < 20; i++) await store.append(Buffer.from(`audited ${i}`))
  await shipper.shipped(20)
  t.deepEqual(errors, [])
  await (await manager(t)).jsm.streams.purge('AUDITED', { filter: 'selene.AUDITED.6' })
  const error = await reported
  t.true(error instanceof AuditError)
  t.is(error.code, 'REMOTE_INCOMPLETE')
  t.deepEqual(error.missing, [[1, 20]])
  // Every loss it reported lies inside the purged range, and nothing is called corrupt: an audit
  // reading while the purge ran may see any part of it gone (say [[3, 3]]), but never more.
  const inPurged = (e) => e.missing.every(([first, last]) => first >= 1 && first <= last && last <= 20)
  for (const e of errors) t.true(e instanceof AuditError && e.missing.length > 0 && inPurged(e) && e.corrupt.length === 0, e.message)
  await store.append(Buffer.from('after the loss'))
  await shipper.shipped(21)
  await shipper.close()
  t.is((await ship(store, { servers: single.urls, stream: 'AUDITED', nodeId: 6, auditEveryMs: 0 }).catch((e) => e)).code, 'INVALID_ARGUMENT')
  await store.close()
})

run('a stream limit that drops old shipments: the audit reports the dropped range', async (t) => {
  const dir = await tempDir(t)
  const { jsm } = await manager(t)
  // At most 3 messages a subject, the oldest dropped: node 4's shipments, not its claims
  // (a limit on the whole stream would drop the claims first, and fence the shipper).
  await jsm.streams.add({ name: 'LIMITED', subjects: ['selene.LIMITED.>'], max_msgs_per_subject: 3, discard: 'old', allow_direct: true, duplicate_window: 120e9 })
  const store = await Store.open(dir)
  // Five shipments of 7 entries: 1-7, 8-14, 15-21, 22-28, 29-35; the first two dropped.
  for (let k = 0; k < 5; k++) {
    for (let i = 0; i < 7; i++) await store.append(Buffer.from(`shipment ${k} entry ${i}`))
    await shipOnce(store, { stream: 'LIMITED', nodeId: 4 })
  }
  const info = await jsm.streams.info('LIMITED', { subjects_filter: 'selene.LIMITED.4' })
  t.is(info.state.subjects['selene.LIMITED.4'], 3)
  const error = await refused(t, audit({ servers: single.urls, stream: 'LIMITED', nodeId: 4, dir }))
  t.deepEqual(error.missing, [[1, 14]])
  t.deepEqual(error.corrupt, [])

  const json = await cli('audit', dir, '--server', single.urls[0], '--stream', 'LIMITED', '--node', '4', '--json')
  t.is(json.code, 1)
  t.like(JSON.parse(json.stdout), { ok: false, missing: [[1, 14]], corrupt: [] })
  await store.close()
})

run('a damaged shipment, and one that is not the local log, are reported as corrupt', async (t) => {
  const dir = await tempDir(t)
  const store = await Store.open(dir)
  for (let i = 0; i < 7; i++) await store.append(Buffer.from(`first ${i}`))
  await shipOnce(store, { stream: 'DAMAGED', nodeId: 5 })
  for (let i = 0; i < 7; i++) await store.append(Buffer.from(`second ${i}`))
  await shipOnce(store, { stream: 'DAMAGED', nodeId: 5 })
  t.like(await audit({ servers: single.urls, stream: 'DAMAGED', nodeId: 5, dir }), { ok: true, checked: { first: 1, last: 14 }, shipments: 2 })

  // Copies of the first shipment stored after it, as a server's damaged file might return it:
  // one byte flipped (its checksums fail), and one of another log whose checksums hold.
  const { nc, jsm } = await manager(t)
  const first = await jsm.streams.getMessage('DAMAGED', { seq: 1, next_by_subj: 'selene.DAMAGED.5' })
  t.is(first.header.get('Selene-First'), '1')
  const copy = (data) => {
    const h = headers()
    for (const name of ['Selene-Node', 'Selene-First', 'Selene-Last', 'Selene-After']) h.set(name, first.header.get(name))
    return jetstream(nc).publish('selene.DAMAGED.5', data, { headers: h })
  }
  const flipped = Buffer.from(first.data)
  flipped[flipped.length - 1] ^= 0xff
  const stored = await copy(flipped)
  const damaged = await refused(t, audit({ servers: single.urls, stream: 'DAMAGED', nodeId: 5, dir }))
  t.deepEqual(damaged.missing, [])
  t.deepEqual(damaged.corrupt, [[1, 7]])

  // Only the foreign copy: its checksums hold, its frames are not this store's.
  await jsm.streams.deleteMessage('DAMAGED', stored.seq)
  t.like(await audit({ servers: single.urls, stream: 'DAMAGED', nodeId: 5, dir }), { ok: true })
  const other = await Store.open(join(dir, 'other'))
  for (let i = 0; i < 7; i++) await other.append(Buffer.from(`not the same ${i}`))
  const foreign = await ship(other, { servers: single.urls, stream: 'FOREIGN', nodeId: 5 })
  await foreign.shipped(7)
  await foreign.close()
  await other.close()
  await copy((await jsm.streams.getMessage('FOREIGN', { last_by_subj: 'selene.FOREIGN.5' })).data)
  const differs = await refused(t, audit({ servers: single.urls, stream: 'DAMAGED', nodeId: 5, dir }))
  t.deepEqual([differs.missing, differs.corrupt], [[], [[1, 7]]])
  await store.close()
})

run('restore refuses a shipment whose headers name a range its frames are not, as replicas and audits do', async (t) => {
  const dir = await tempDir(t)
  const store = await Store.open(dir)
  for (let i = 0; i < 7; i++) await store.append(Buffer.from(`entry ${i}`))
  await shipOnce(store, { stream: 'MISLABELED', nodeId: 5 })
  await store.close()
  // A copy of shipment 1 to 7 whose headers say it holds 8 to 14: a receiver would place it there.
  const { nc, jsm } = await manager(t)
  const first = await jsm.streams.getMessage('MISLABELED', { seq: 1, next_by_subj: 'selene.MISLABELED.5' })
  const h = headers()
  for (const [name, value] of [['Selene-Node', '5'], ['Selene-First', '8'], ['Selene-Last', '14'], ['Selene-After', '7']]) h.set(name, value)
  await jetstream(nc).publish('selene.MISLABELED.5', first.data, { headers: h })
  const error = await restore({ servers: single.urls, stream: 'MISLABELED', nodeId: 5, dir: join(dir, 'restored') }).then(
    () => null,
    (e) => e,
  )
  t.true(error instanceof PersistError, String(error))
  t.is(error.code, 'REMOTE_FENCED')
})
