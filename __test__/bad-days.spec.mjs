// When things go wrong (issue 17): a full disk is not a restart.
import { rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

import test from 'ava'

import { Store } from 'selene-persist'

import { smallDisk } from './helpers.mjs'

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

test('the bytes a repair cuts are kept beside the WAL, named by tailRepair and listed by inspect', async (t) => {
  const { appendFile, readFile } = await import('node:fs/promises')
  const { inspect } = await import('selene-persist')
  const { tempDir } = await import('./helpers.mjs')
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

/** Every entry a store holds from 1 to `upTo`, as [sequence, payload hex]. */
async function entries(dir, upTo) {
  const store = await Store.open(dir)
  const following = (async () => {
    const all = []
    for await (const entry of store.follow({ from: 1 })) if (entry.sequence <= upTo) all.push([entry.sequence, entry.payload.toString('hex')])
    return all
  })()
  await store.close()
  return following
}

test('an online backup during appends and checkpoints opens as a store holding exactly the entries up to its sequence', async (t) => {
  const { tempDir } = await import('./helpers.mjs')
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
  t.deepEqual(await entries(dest, sequence), await entries(dir, sequence))
  t.is((await t.throwsAsync(Store.open(dir).then((s) => s.backup(dest).finally(() => s.close())))).code, 'INVALID_ARGUMENT', 'an existing destination is refused')
})

test('kill -9 of the backing-up process: each destination is a complete backup or absent', async (t) => {
  const { spawn } = await import('node:child_process')
  const { readdir } = await import('node:fs/promises')
  const { tempDir } = await import('./helpers.mjs')
  const dir = await tempDir(t)
  const out = await tempDir(t)
  const script = new URL('./fixtures/backup-child.mjs', import.meta.url).pathname
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
    t.deepEqual(await entries(join(out, name), sequence), await entries(dir, sequence), name)
  }
})

test('salvage gets back every entry around mid-log damage a read refuses, keeping the damaged bytes', async (t) => {
  const { readFile, writeFile: write } = await import('node:fs/promises')
  const { execFile } = await import('node:child_process')
  const { promisify } = await import('node:util')
  const { WalWriter, WalReader, salvage } = await import('selene-persist')
  const { readAll, tempDir } = await import('./helpers.mjs')
  const dir = await tempDir(t)
  const path = join(dir, 'app.wal')
  const writer = await WalWriter.open(path)
  for (let n = 1; n <= 9; n++) await writer.append(Buffer.from(`entry number ${n}`))
  await writer.close()
  const offsets = []
  const reader = await WalReader.open(path)
  for await (const batch of reader.batches()) for (let i = 0; i < batch.length; i++) offsets.push(batch.offset(i))
  const bytes = await readFile(path)
  bytes[offsets[4] + 45] ^= 0xff // the payload of entry 5
  await write(path, bytes)
  // The open trusts the sealed prefix; a read finds the damage and refuses to skip past it.
  t.is((await t.throwsAsync(readAll(path))).code, 'MID_LOG_CORRUPTION')
  const out = join(dir, 'salvaged.wal')
  const report = await salvage(path, out)
  t.is(report.framesRecovered, 8)
  t.deepEqual(report.missing, [[5, 5]])
  t.deepEqual(report.skipped.map(([offset]) => offset), [offsets[4]])
  t.deepEqual(await readFile(path), bytes, 'the source is untouched')
  t.is((await readFile(report.damagedFile)).length, report.skipped[0][1])
  t.deepEqual((await readAll(out)).map((e) => e.payload.toString()), [1, 2, 3, 4, 6, 7, 8, 9].map((n) => `entry number ${n}`))
  const cli = new URL('../cli.js', import.meta.url).pathname
  const printed = await promisify(execFile)(process.execPath, [cli, 'salvage', path, join(dir, 'again.wal')])
  t.regex(printed.stdout, /8 frames, up to sequence 9\n {2}skipped \d+ damaged bytes at offset \d+\n {2}missing sequences 5\.\.5\n/)
  t.is(report.kind, 'wal')
  t.is((await t.throwsAsync(salvage(path, out))).code, 'INVALID_ARGUMENT', 'an existing destination is refused')
})
