import { readFile, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

import test from 'ava'

import { PersistError, SnapshotBuilder, SnapshotReader, Store, WalWriter } from 'selene-persist'

import { Model, encode, eventFor, restore } from './fixtures/app.mjs'
import { runUntilKilled } from './fixtures/kill.mjs'
import { readAll, tempDir } from './helpers.mjs'

const fixture = (name) => new URL(`./fixtures/${name}`, import.meta.url).pathname

async function appendEvents(store, model, from, to) {
  for (let n = from; n <= to; n++) {
    const event = eventFor(n)
    await store.append(encode(event))
    model.apply(event)
  }
}

test('an app appends, checkpoints, appends more, and recovers the same state', async (t) => {
  const dir = await tempDir(t)
  let store = await Store.open(dir)
  t.deepEqual(store.recovery, { snapshotSeq: 0, finishedRotation: false, cappedConsumers: [] })
  t.is(store.snapshot, null)
  const model = new Model()
  await appendEvents(store, model, 1, 120)
  const checkpoint = await store.checkpoint(model.sections())
  t.is(checkpoint.sequence, 121, 'the watermark follows the 120 events')
  t.is(store.snapshot.sequence, 121)
  t.deepEqual(store.snapshot.sections().map((s) => s.name), ['data', 'meta'])
  await appendEvents(store, model, 121, 200)
  await store.checkpoint(new Map(Object.entries(model.sections())))
  await appendEvents(store, model, 201, 230)
  await store.close()

  store = await Store.open(dir)
  t.is(store.recovery.snapshotSeq, 202)
  const restored = await restore(store)
  t.deepEqual(restored.toJSON(), model.toJSON())
  t.deepEqual(restored.toJSON(), Model.expected(230).toJSON())
  await store.snapshot.verify()
  let batched = 0
  for await (const batch of store.replayBatches()) batched += batch.length
  t.is(batched, 230 - 200, 'replayBatches yields the same entries as replay')
  const names = (await readdir(dir)).sort()
  t.deepEqual(names, ['MANIFEST', 'MANIFEST.lock', 'snapshot.121.snap', 'snapshot.202.snap', 'wal.121.archive', 'wal.202.archive', 'wal.log', 'wal.log.seal'])
  const pruned = await store.prune({ keepSnapshots: 1, keepArchives: 1 })
  t.deepEqual(pruned.deletedSnapshots, [121])
  t.deepEqual(pruned.deletedArchives, [121])
  t.true(pruned.bytesReclaimed > 0)
  await store.close()
  store = await Store.open(dir)
  t.deepEqual((await restore(store)).toJSON(), model.toJSON(), 'recovery is identical after prune')
  await store.close()
})

test('a checkpoint holds exactly the appends called before it, even with appends in flight', async (t) => {
  const dir = await tempDir(t)
  const store = await Store.open(dir)
  const model = new Model()
  // Fire appends without awaiting; the model applies them at call time.
  const inflight = []
  for (let n = 1; n <= 300; n++) {
    const event = eventFor(n)
    inflight.push(store.append(encode(event)))
    model.apply(event)
    if (n % 100 === 0) inflight.push(store.checkpoint(() => model.sections()))
  }
  await Promise.all(inflight)
  await store.close()
  const reopened = await Store.open(dir)
  t.deepEqual((await restore(reopened)).toJSON(), Model.expected(300).toJSON())
  await reopened.close()
})

test('an async sections() function cannot lose appends made while it serialises', async (t) => {
  const dir = await tempDir(t)
  const store = await Store.open(dir)
  const model = new Model()
  await appendEvents(store, model, 1, 50)
  // sections() resolves only after appends 51-80, made once it has been called, are acknowledged.
  let called
  const serialising = new Promise((resolve) => (called = resolve))
  let release
  const released = new Promise((resolve) => (release = resolve))
  const checkpointing = store.checkpoint(() => {
    const captured = model.sections()
    called()
    return released.then(() => captured)
  })
  await serialising
  await appendEvents(store, model, 51, 80)
  release()
  await checkpointing
  await store.close()
  const reopened = await Store.open(dir)
  t.deepEqual((await restore(reopened)).toJSON(), Model.expected(80).toJSON())
  await reopened.close()
})

test('autoCheckpoint checkpoints past its threshold without blocking appends', async (t) => {
  const dir = await tempDir(t)
  const model = new Model()
  const errors = []
  const store = await Store.open(dir, {
    autoCheckpoint: { maxEntries: 40, sections: () => model.sections(), onError: (e) => errors.push(e) },
  })
  await appendEvents(store, model, 1, 200)
  await store.close()
  t.deepEqual(errors, [])
  const reopened = await Store.open(dir)
  t.true(reopened.recovery.snapshotSeq > 150, `last automatic checkpoint at ${reopened.recovery.snapshotSeq}`)
  t.deepEqual((await restore(reopened)).toJSON(), Model.expected(200).toJSON())
  await reopened.close()
})

test('bad store arguments and states are typed errors', async (t) => {
  const dir = await tempDir(t)
  for (const options of ['x', { snapshotSeq: 5 }, { autoCheckpoint: { maxEntries: 5 } }, { autoCheckpoint: { sections: () => ({}) } }, { retention: { keepSnapshots: -1 } }, { sync: 'never' }]) {
    const error = await t.throwsAsync(Store.open(dir, options), { instanceOf: PersistError })
    t.is(error.code, 'INVALID_ARGUMENT', JSON.stringify(options))
  }
  t.is((await t.throwsAsync(Store.open(42))).code, 'INVALID_ARGUMENT')
  const store = await Store.open(dir)
  t.is((await t.throwsAsync(Store.open(dir))).code, 'WRITER_LOCK_HELD')
  for (const sections of [null, 'state', [Buffer.from('x')], { a: 'not bytes' }, { a: 1 }]) {
    const error = await t.throwsAsync(store.checkpoint(sections), { instanceOf: PersistError })
    t.is(error.code, 'INVALID_ARGUMENT', JSON.stringify(sections))
  }
  t.is((await t.throwsAsync(store.checkpoint({ a: Buffer.alloc(1) }, { compress: 'yes' }))).code, 'INVALID_ARGUMENT')
  t.is((await t.throwsAsync(store.checkpoint({ ['n'.repeat(256)]: Buffer.alloc(1) }))).code, 'INVALID_ARGUMENT')
  t.is((await t.throwsAsync(store.checkpoint(() => Promise.reject(new PersistError('IO', 'app failed'))))).code, 'IO')
  t.is((await t.throwsAsync(store.prune({ keepArchives: 1.5 }))).code, 'INVALID_ARGUMENT')
  t.is((await t.throwsAsync(store.replay({ from: -3 }).next())).code, 'INVALID_ARGUMENT')
  t.is((await t.throwsAsync(store.snapshot?.read('x') ?? Promise.reject(new PersistError('SECTION_NOT_FOUND', 'none')))).code, 'SECTION_NOT_FOUND')
  // Still fully usable after all of that.
  t.is(await store.append(Buffer.from('ok')), store.lastSequence)
  await store.checkpoint({ a: Buffer.from('fine') })
  t.is((await t.throwsAsync(store.snapshot.read('missing'))).code, 'SECTION_NOT_FOUND')
  await store.close()
  t.is((await t.throwsAsync(store.append(Buffer.from('late')))).code, 'CLOSED')
  t.is((await t.throwsAsync(store.checkpoint({ a: Buffer.from('late') }))).code, 'CLOSED')
})

test('a corrupt live snapshot is refused, never silently skipped', async (t) => {
  const dir = await tempDir(t)
  const store = await Store.open(dir)
  await store.append(Buffer.from('e1'))
  const { snapshotPath } = await store.checkpoint({ state: Buffer.alloc(5000, 7) })
  await store.close()
  const bytes = await readFile(snapshotPath)
  bytes[bytes.length - 10] ^= 0xff
  await writeFile(snapshotPath, bytes)
  t.is((await t.throwsAsync(Store.open(dir))).code, 'BODY_HASH_MISMATCH')
})

test('low level: SnapshotBuilder and SnapshotReader', async (t) => {
  const dir = await tempDir(t)
  const built = await new SnapshotBuilder().add('a', Buffer.from('alpha')).add('b', Buffer.alloc(10_000, 1), { compress: true }).publish(dir, 9)
  t.true(built.created)
  const reader = await SnapshotReader.open(built.path)
  await reader.verify()
  t.is(reader.sequence, 9)
  t.deepEqual(await reader.read('a'), Buffer.from('alpha'))
  t.true(reader.sections()[1].compressed && reader.sections()[1].storedLen < 1000)
  const conflict = await t.throwsAsync(new SnapshotBuilder().add('a', Buffer.from('other')).publish(dir, 9))
  t.is(conflict.code, 'ARTIFACT_CONFLICT')
  t.is((await t.throwsAsync(new SnapshotBuilder().add('x', Buffer.alloc(1)).add('x', Buffer.alloc(1)).publish(dir, 10))).code, 'DUPLICATE_SECTION')
  t.is((await t.throwsAsync(SnapshotReader.open(join(dir, 'nope.snap')))).code, 'IO')

})


test('20 rounds of SIGKILL during appends, checkpoints and prunes lose nothing acknowledged', async (t) => {
  const dir = await tempDir(t)
  let acknowledged = 0
  for (let round = 0; round < 20; round++) {
    acknowledged = Math.max(acknowledged, await runUntilKilled(fixture('store-child.mjs'), [dir], 10 + Math.floor(Math.random() * 60), Math.floor(Math.random() * 30)))
    const store = await Store.open(dir)
    const model = await restore(store)
    await store.close()
    t.true(model.count >= acknowledged, `round ${round}: acknowledged ${acknowledged}, recovered ${model.count}`)
    // Exactly events 1..count, each applied once, in order: nothing else appeared.
    t.deepEqual(model.toJSON(), Model.expected(model.count).toJSON(), `round ${round}`)
  }
  t.true(acknowledged > 200)
})

test('inspect and verify are available from the API, not only the CLI', async (t) => {
  const { inspect, verify } = await import('selene-persist')
  const dir = await tempDir(t)
  const store = await Store.open(dir)
  await store.append(Buffer.from('a'))
  await store.checkpoint({ s: Buffer.from('x') })
  await store.append(Buffer.from('b'))
  await store.close()
  const shallow = await inspect(dir)
  t.is(shallow.kind, 'store')
  t.deepEqual(shallow.manifest, { liveSnapshotSeq: 2, activeWalSeq: 2, archives: [2] })
  const progress = []
  const clean = await verify(dir, { onProgress: (done, total) => progress.push([done, total]) })
  t.deepEqual(clean.problems, [])
  t.true(progress.every(([done, total]) => done <= total))
  const snapshot = join(dir, 'snapshot.2.snap')
  const bytes = await readFile(snapshot)
  bytes[bytes.length - 1] ^= 1
  await writeFile(snapshot, bytes)
  const damaged = await verify(dir)
  t.deepEqual(damaged.problems.map((p) => [p.severity, p.code]), [['error', 'BODY_HASH_MISMATCH']])
  t.is((await t.throwsAsync(verify(''))).code, 'INVALID_ARGUMENT')
  t.is((await t.throwsAsync(inspect(join(dir, 'missing')))).code, 'IO')
})
