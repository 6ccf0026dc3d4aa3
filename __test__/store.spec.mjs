import { spawn, execFileSync } from 'node:child_process'
import { appendFile, copyFile, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises'
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { join } from 'node:path'

import test from 'ava'

import { PersistError, SnapshotBuilder, SnapshotReader, Store, WalReader, WalWriter, inspect, verify } from 'selene-persist'

import { Model, encode, eventFor, recovered, restore } from './fixtures/app.mjs'
import { runUntilKilled } from './fixtures/kill.mjs'
import { checkpointedStore, fixture, followed, hundred, runCli, smallDisk, tempDir } from './helpers.mjs'

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
  t.deepEqual(await recovered(dir), Model.expected(300).toJSON())
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
  t.deepEqual(await recovered(dir), Model.expected(80).toJSON())
})

test('autoCheckpoint checkpoints past its threshold without blocking appends', async (t) => {
  const dir = await tempDir(t)
  const model = new Model()
  const errors = []
  // Each automatic checkpoint's sections wait for a release of ours, so the test decides when
  // one ends, not the machine's speed.
  const started = []
  const store = await Store.open(dir, {
    autoCheckpoint: {
      maxEntries: 40,
      sections: () => {
        const captured = model.sections()
        return new Promise((release) => started.push({ at: model.count, release: () => release(captured) }))
      },
      onError: (e) => errors.push(e),
    },
  })
  const committed = () => new Promise((resolve) => {
    const listener = (message) => message.path === dir && (unsubscribe('selene-persist:checkpoint', listener), resolve(message))
    subscribe('selene-persist:checkpoint', listener)
  })
  await appendEvents(store, model, 1, 40)
  t.is(started.length, 0, 'not before the threshold')
  // The 41st append finds 40 entries past the (empty) snapshot: a checkpoint of the state after 40.
  await appendEvents(store, model, 41, 41)
  t.deepEqual(started.map((c) => c.at), [40])
  // While it runs, appends go on, and no second one starts.
  await appendEvents(store, model, 42, 100)
  t.is(started.length, 1)
  const first = committed()
  started[0].release()
  // Its watermark takes the sequence after the 40 entries.
  t.is((await first).checkpoint.sequence, 41)
  // Past the threshold already (60 entries since): the next append once the first has settled
  // starts the next, a few appends at most (the settling is a few promise turns).
  let n = 100
  while (started.length < 2 && n < 140) await appendEvents(store, model, n + 1, ++n)
  t.is(started.length, 2, 'a second checkpoint started')
  t.true(started[1].at > 100 && started[1].at <= n, `the state after ${started[1].at}`)
  const second = committed()
  started[1].release()
  const last = (await second).checkpoint.sequence
  await store.close()
  t.deepEqual(errors, [])
  const reopened = await Store.open(dir)
  t.is(reopened.recovery.snapshotSeq, last, 'the last automatic checkpoint is the live snapshot')
  t.deepEqual((await restore(reopened)).toJSON(), Model.expected(n).toJSON())
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

// Issue 12, item 1: a reader must never take bytes a live writer has not finished (or may still
// cut) for damage.
test('Store.replay whose loop body awaits appends reads on', async (t) => {
  const store = await Store.open(await tempDir(t))
  await store.appendBatch(Array.from({ length: 1024 }, (_, i) => hundred(i)))
  let seen = 0
  for await (const entry of store.replay()) {
    seen++
    t.is(entry.sequence, seen)
    if (seen <= 2) await store.append(hundred(2000 + seen))
  }
  t.is(seen, 1026)
  await store.close()
})

// Issue 12, item 3: close() always releases the file, the lock and the committer thread, whatever
// failed before.
test('on a full disk: a failed append and a failed checkpoint, then close, then the store reopens whole', async (t) => {
  const disk = await smallDisk(t, '1m')
  if (!disk) return t.pass()
  const store = await Store.open(disk, { preallocate: false, compression: false, compressSnapshots: false })
  const acknowledged = []
  for (let i = 0; ; i++) {
    try {
      await store.append(Buffer.alloc(20_000, i))
      acknowledged.push(i)
    } catch (error) {
      t.is(error.code, 'DISK_FULL')
      break
    }
  }
  // A snapshot larger than the space left.
  t.is((await t.throwsAsync(store.checkpoint({ state: Buffer.alloc(400_000, 1) }))).code, 'DISK_FULL')
  await store.close().catch(() => undefined)
  const reopened = await Store.open(disk)
  const replayed = []
  for await (const entry of reopened.replay()) replayed.push(entry.payload[0])
  t.deepEqual(replayed, acknowledged.map((i) => i % 256))
  await reopened.close()
})

// Issue 12, item 5: a file is checked against what the MANIFEST says it is.
test('an older snapshot copied over the live one is STORE_INCONSISTENT, not a silent rollback', async (t) => {
  const dir = await tempDir(t)
  const store = await Store.open(dir)
  const checkpoints = []
  for (let n = 1; n <= 3; n++) {
    await store.append(Buffer.from(`event ${n}`))
    checkpoints.push(await store.checkpoint({ state: Buffer.from(`after ${n}`) }))
  }
  await store.close()
  await copyFile(checkpoints[0].snapshotPath, checkpoints[2].snapshotPath)
  t.is((await t.throwsAsync(Store.open(dir))).code, 'STORE_INCONSISTENT')
})

// Issue 12, item 6: every path the engine opens is checked to be a regular file before it is read.
test('FIFOs named as store files are NOT_A_FILE and never hang (API and CLI)', async (t) => {
  const dir = await tempDir(t)
  const fifo = join(dir, 'wal.log')
  execFileSync('mkfifo', [fifo])
  t.is((await t.throwsAsync(WalReader.open(fifo))).code, 'NOT_A_FILE')
  t.is((await t.throwsAsync(WalWriter.open(fifo))).code, 'NOT_A_FILE')
  t.is((await t.throwsAsync(inspect(fifo))).code, 'NOT_A_FILE')
  t.not((await runCli('verify', fifo)).code, 0)
  const store = await tempDir(t)
  execFileSync('mkfifo', [join(store, 'MANIFEST')])
  t.is((await t.throwsAsync(Store.open(store))).code, 'NOT_A_FILE')
  const report = await verify(store)
  t.true(report.problems.some((p) => p.code === 'NOT_A_FILE'))
})

// Issue 12, item 7: no file the engine writes is opened through a symlink.
test('a symlinked seal or lock changes nothing outside the store', async (t) => {
  const outside = await tempDir(t)
  const victim = join(outside, 'victim')
  await writeFile(victim, 'must not change')
  const dir = await tempDir(t)
  await symlink(victim, join(dir, 'wal.log.seal'))
  const writer = await WalWriter.open(join(dir, 'wal.log'))
  await writer.appendBatch(Array.from({ length: 20_000 }, (_, i) => hundred(i)))
  await writer.close()
  t.is(await readFile(victim, 'utf8'), 'must not change')
  const store = await tempDir(t)
  await symlink(join(outside, 'planted'), join(store, 'MANIFEST.lock'))
  t.is((await t.throwsAsync(Store.open(store))).code, 'UNSAFE_LINK')
  t.deepEqual(await readdir(outside), ['victim'])
})

// Issue 17: a full disk is not a restart.
test('a full disk: DISK_FULL, nothing acknowledged lost, and the same store goes on once space is freed', async (t) => {
  // Freed, the filler must hold the snapshot and the archive (a copy of the WAL written so far).
  const disk = await smallDisk(t, '4m')
  if (!disk) return t.pass()
  const dir = join(disk, 'store')
  const filler = join(disk, 'filler')
  await writeFile(filler, Buffer.alloc(2600 << 10, 1))
  const store = await Store.open(dir, { compression: false, compressSnapshots: false, preallocate: false })
  const acknowledged = []
  let failure
  for (let i = 0; !failure; i++) {
    await store.append(Buffer.alloc(16 << 10, i % 256)).then(
      () => acknowledged.push(i % 256),
      (error) => (failure = error),
    )
  }
  t.is(failure.code, 'DISK_FULL')
  t.is(store.poisoned, null, 'a full disk does not poison the writer')
  // A checkpoint that does not fit fails, and leaves the store on its old epoch.
  const before = store.snapshotSeq
  t.is((await t.throwsAsync(store.checkpoint({ state: Buffer.alloc(600 << 10, 2) }))).code, 'DISK_FULL')
  t.is(store.snapshotSeq, before)
  // Space freed: the same store appends and checkpoints, no reopen.
  await rm(filler)
  await store.append(Buffer.alloc(16 << 10, 255))
  acknowledged.push(255)
  const checkpoint = await store.checkpoint({ state: Buffer.alloc(600 << 10, 3) })
  t.true(checkpoint.sequence > before)
  await store.append(Buffer.from('after'))
  await store.close()
  const reopened = await Store.open(dir)
  t.deepEqual(await reopened.snapshot.read('state'), Buffer.alloc(600 << 10, 3))
  const replayed = []
  for await (const entry of reopened.replay()) replayed.push(entry.payload)
  t.deepEqual(replayed, [Buffer.from('after')])
  // Every acknowledged entry is in the archives, in order.
  const all = []
  for await (const entry of reopened.follow({ from: 1 })) {
    all.push(entry.payload.length === 16 << 10 ? entry.payload[0] : -1)
    if (all.length === acknowledged.length + 1) break
  }
  t.deepEqual(all, [...acknowledged, -1])
  await reopened.close()
})

// Issue 17 (when things go wrong).
test('the bytes a repair cuts are kept beside the WAL, named by tailRepair and listed by inspect', async (t) => {
  const dir = await tempDir(t)
  const store = await Store.open(dir)
  for (let i = 0; i < 3; i++) await store.append(Buffer.from(`entry ${i}`))
  await store.close()
  const garbage = Buffer.from('half a frame that never finished')
  await appendFile(join(dir, 'wal.log'), garbage)
  const reopened = await Store.open(dir)
  const repair = reopened.tailRepair
  t.is(repair.savedBytes, garbage.length)
  t.is(repair.savedPath, join(dir, `wal.log.torn.${repair.offset}`))
  t.deepEqual(await readFile(repair.savedPath), garbage)
  t.deepEqual((await inspect(dir)).tornFiles, [[`wal.log.torn.${repair.offset}`, garbage.length]])
  await reopened.close()
})

/** Every entry the store at `dir` holds from 1 to `upTo`, as [sequence, payload hex]. */
const upTo = async (dir, sequence) => (await followed(dir)).filter(([seq]) => seq <= sequence)

// Issue 17 (when things go wrong).
test('an online backup during appends and checkpoints opens as a store holding exactly the entries up to its sequence', async (t) => {
  const dir = await tempDir(t)
  const dest = join(await tempDir(t), 'copy')
  const store = await Store.open(dir, { sync: 'manual' })
  let stop = false
  // The writer resolves `mark` once the log reaches `mark.sequence`.
  let mark = null
  const reached = (sequence) => new Promise((resolve) => (mark = { sequence, resolve }))
  const writing = (async () => {
    for (let n = 0; !stop; n++) {
      await store.append(Buffer.alloc(100 + (n % 50), n % 256))
      if (n % 300 === 299) await store.checkpoint({ n: Buffer.from(String(n)) })
      if (mark && store.lastSequence >= mark.sequence) mark.resolve()
    }
  })()
  // Past two checkpoints before the backup, and well on after it.
  await reached(700)
  const sequence = await store.backup(dest)
  await reached(sequence + 200)
  stop = true
  await writing
  t.true(store.lastSequence > sequence, 'appends went on past the backup')
  await store.close()
  t.deepEqual(await upTo(dest, sequence), await upTo(dir, sequence))
  t.is((await t.throwsAsync(Store.open(dir).then((s) => s.backup(dest).finally(() => s.close())))).code, 'INVALID_ARGUMENT', 'an existing destination is refused')
})

// Issue 17 (when things go wrong).
test('kill -9 of the backing-up process: each destination is a complete backup or absent', async (t) => {
  const dir = await tempDir(t)
  const out = await tempDir(t)
  const script = fixture('backup-child.mjs')
  const done = new Map()
  for (let round = 0; round < 6; round++) {
    await new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [script, dir, join(out, `r${round}`)], { stdio: ['ignore', 'pipe', 'inherit'] })
      let starts = 0
      child.stdout.on('data', (chunk) => {
        for (const line of chunk.toString().split('\n')) {
          const [word, i, sequence] = line.split(' ')
          if (word === 'done') done.set(`r${round}-${i}`, Number(sequence))
          if (word === 'start' && ++starts === 2 + (round % 3)) setTimeout(() => child.kill('SIGKILL'), round * 7)
        }
      })
      child.on('exit', (code, signal) => (signal === 'SIGKILL' ? resolve() : reject(new Error(`exited ${code}`))))
    })
  }
  const names = (await readdir(out)).filter((n) => !n.endsWith('.backup.tmp'))
  t.true(names.length >= 6)
  for (const name of names) {
    // A finished backup's sequence is known; one the kill interrupted after its rename is complete too.
    const store = await Store.open(join(out, name))
    const sequence = done.get(name) ?? store.lastSequence
    await store.close()
    t.deepEqual(await upTo(join(out, name), sequence), await upTo(dir, sequence), name)
  }
})

test('inspect and verify are available from the API, not only the CLI', async (t) => {
  const { inspect, verify } = await import('selene-persist')
  const dir = await checkpointedStore(t)
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
