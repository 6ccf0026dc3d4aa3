// Regression tests for the ten defects of issue 12, each named by its item, and the class
// behind it. Each failed on the code before the fix.
import { execFile, execFileSync, spawn } from 'node:child_process'
import { copyFile, readFile, readdir, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'

import test from 'ava'

import { Appender, PersistError, Store, WalReader, WalWriter, inspect, verify } from 'selene-persist'

import { probeAppender, readAll, smallDisk, tempDir } from './helpers.mjs'

const cli = new URL('../cli.js', import.meta.url).pathname

async function run(...args) {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [cli, ...args], { maxBuffer: 64 << 20, timeout: 60_000 })
    return { code: 0, stdout, stderr }
  } catch (error) {
    return { code: error.code, stdout: error.stdout, stderr: error.stderr }
  }
}


const hundred = (i) => Buffer.alloc(100, i % 251)

// 1. A reader must never take bytes a live writer has not finished (or may still cut) for damage.

test('1. a reader that cached the zero tail reads on when the writer appends', async (t) => {
  const path = join(await tempDir(t), 'wal.log')
  const writer = await WalWriter.open(path, { sync: 'always' })
  await writer.appendBatch(Array.from({ length: 1024 }, (_, i) => hundred(i)))
  const batches = (await WalReader.open(path)).batches()
  let seen = (await batches.next()).value.length
  await writer.append(hundred(1024))
  await writer.append(hundred(1025))
  for await (const batch of batches) seen += batch.length
  t.is(seen, 1026)
  await writer.close()
})

test('1. Store.replay whose loop body awaits appends reads on', async (t) => {
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

test('1. a reader still iterating when the writer closes ends cleanly', async (t) => {
  const path = join(await tempDir(t), 'wal.log')
  const writer = await WalWriter.open(path, { sync: 'always' })
  await writer.appendBatch(Array.from({ length: 3000 }, (_, i) => hundred(i)))
  const batches = (await WalReader.open(path)).batches()
  let seen = (await batches.next()).value.length
  await writer.append(hundred(3000))
  await writer.close()
  for await (const batch of batches) seen += batch.length
  t.is(seen, 3001)
})

test('1. CLI verify, inspect and dump beside a writer appending in another process report no damage', async (t) => {
  const path = join(await tempDir(t), 'wal.log')
  const child = spawn(process.execPath, [new URL('./fixtures/append-child.mjs', import.meta.url).pathname, path, '8'], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => child.kill('SIGKILL'))
  await new Promise((resolve) => child.stdout.once('data', resolve))
  for (let round = 0; round < 4; round++) {
    const verified = await run('verify', path)
    t.is(verified.code, 0, verified.stdout)
    t.notRegex(verified.stdout, /CORRUPTION|TORN_TAIL/)
    t.is((await run('inspect', path)).code, 0)
    const dumped = await run('dump', path, '--format', 'json')
    t.is(dumped.code, 0, dumped.stderr)
    t.notRegex(dumped.stderr, /torn tail/)
  }
})

// 2. Every queue on a hot path is O(1) per operation (time is measured in bench/waiting.mjs).

test('2. a flood of waiting appends drains in call order, each payload as it was at the call', async (t) => {
  const path = join(await tempDir(t), 'wal.log')
  const writer = await WalWriter.open(path, { sync: 'manual', maxQueueBytes: 1 << 16 })
  const buffer = Buffer.alloc(300)
  const pending = []
  for (let i = 0; i < 50_000; i++) {
    buffer.writeUInt32LE(i)
    // One buffer reused for every call: each call must have taken its own copy.
    pending.push(writer.append(buffer))
  }
  t.true(writer.waitingCalls > 40_000)
  const sequences = await Promise.all(pending)
  t.deepEqual(sequences.slice(0, 3), [1, 2, 3])
  t.is(sequences.at(-1), 50_000)
  await writer.close()
  const entries = await readAll(path)
  t.is(entries.length, 50_000)
  t.true(entries.every((e, i) => e.payload.readUInt32LE() === i))
})

// 3. close() always releases the file, the lock and the committer thread, whatever failed before.

test('3. close after a failed appendSync batch still closes the native writer, then reports the failure', async (t) => {
  const closes = []
  const { probe, settle } = probeAppender(
    'manual',
    (data, lengths, requests) => {
      const settled = new Float64Array(requests.length)
      for (let i = 0; i < requests.length; i += 2) settled.set([requests[i], -1], i)
      setImmediate(() => settle(settled, Array(requests.length / 2).fill('[selene:IO] write wal.log: Input/output error')))
    },
    { close: async () => closes.push('closed') },
  )
  probe.appendSync(Buffer.from('a'))
  await t.throwsAsync(probe.flush())
  t.is((await t.throwsAsync(probe.close())).code, 'IO')
  t.deepEqual(closes, ['closed'], 'the native writer was closed all the same')
})

test('3. on a full disk: a failed appendSync batch, then close releases the lock and the file reopens', async (t) => {
  const disk = await smallDisk(t, '1m')
  if (!disk) return t.pass()
  const path = join(disk, 'wal.log')
  const writer = await WalWriter.open(path, { sync: 'manual', preallocate: false, compression: false })
  for (let i = 0; i < 40; i++) writer.appendSync(Buffer.alloc(64 << 10, i))
  t.is((await t.throwsAsync(writer.flush())).code, 'DISK_FULL')
  t.is((await t.throwsAsync(writer.close())).code, 'DISK_FULL')
  const reopened = await WalWriter.open(path, { sync: 'manual' })
  const kept = reopened.lastSequence
  t.true(kept < 40)
  await reopened.close()
  const entries = await readAll(path)
  t.is(entries.length, kept)
  t.true(entries.every((e, i) => e.payload.equals(Buffer.alloc(64 << 10, i))))
})

test('3. on a full disk: a failed append and a failed checkpoint, then close, then the store reopens whole', async (t) => {
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

// 4. Every byte argument is checked at the call; a buffer that changes afterwards cannot crash,
// hang or store something else.

/** Bytes in an ArrayBuffer of their own (small Buffers share Node's pool, which never detaches). */
const own = (text) => new Uint8Array(Buffer.from(text))

function detached(text) {
  const view = own(text)
  structuredClone(view.buffer, { transfer: [view.buffer] })
  return view
}

test('4. a detached buffer is INVALID_ARGUMENT everywhere, and the writer still closes', async (t) => {
  const path = join(await tempDir(t), 'wal.log')
  const writer = await WalWriter.open(path, { sync: 'manual' })
  const error = await t.throwsAsync(writer.append(detached('x')))
  t.true(error instanceof PersistError)
  t.is(error.code, 'INVALID_ARGUMENT')
  t.is(t.throws(() => writer.appendSync(detached('x'))).code, 'INVALID_ARGUMENT')
  t.is(t.throws(() => writer.appendDurableSync(detached('x'))).code, 'INVALID_ARGUMENT')
  t.is((await t.throwsAsync(writer.appendBatch([Buffer.from('ok'), detached('x')]))).code, 'INVALID_ARGUMENT')
  t.is((await t.throwsAsync(writer.append(Buffer.from('x'), { principal: detached('p') }))).code, 'INVALID_ARGUMENT')
  await writer.close()
  t.deepEqual(await readAll(path), [], 'nothing was stored, not even an empty entry')
})

test('4. buffers transferred, changed or shared after the call store what they held at the call', async (t) => {
  const path = join(await tempDir(t), 'wal.log')
  const writer = await WalWriter.open(path, { sync: 'manual', maxQueueBytes: 16 })
  const sync = own('sync entry')
  writer.appendSync(sync)
  structuredClone(sync.buffer, { transfer: [sync.buffer] })
  const sharedSync = new Uint8Array(new SharedArrayBuffer(11))
  sharedSync.set(Buffer.from('shared sync'))
  writer.appendSync(sharedSync)
  sharedSync.fill(0)
  const waiting = Buffer.from('this call waits for room in the queue')
  const first = writer.append(Buffer.alloc(64))
  const second = writer.append(waiting)
  t.true(writer.waitingCalls > 0)
  waiting.fill(0)
  const shared = new Uint8Array(new SharedArrayBuffer(6))
  shared.set(Buffer.from('shared'))
  const third = writer.append(shared)
  shared.fill(0)
  const floats = new Float64Array([1.5])
  const fourth = writer.append(floats)
  const sharedBatch = new Uint8Array(new SharedArrayBuffer(12))
  sharedBatch.set(Buffer.from('shared batch'))
  const fifth = writer.appendBatch([sharedBatch])
  sharedBatch.fill(0)
  await Promise.all([first, second, third, fourth, fifth])
  await writer.flush()
  await writer.close()
  const payloads = (await readAll(path)).map((e) => e.payload)
  t.deepEqual(payloads, [
    Buffer.from('sync entry'),
    Buffer.from('shared sync'),
    Buffer.alloc(64),
    Buffer.from('this call waits for room in the queue'),
    Buffer.from('shared'),
    Buffer.from(floats.buffer),
    Buffer.from('shared batch'),
  ])
})

// 5. A file is checked against what the MANIFEST says it is.

test('5. an older snapshot copied over the live one is STORE_INCONSISTENT, not a silent rollback', async (t) => {
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

// 6. Every path the engine opens is checked to be a regular file before it is read.

test('6. FIFOs named as store files are NOT_A_FILE and never hang (API and CLI)', async (t) => {
  const dir = await tempDir(t)
  const fifo = join(dir, 'wal.log')
  execFileSync('mkfifo', [fifo])
  t.is((await t.throwsAsync(WalReader.open(fifo))).code, 'NOT_A_FILE')
  t.is((await t.throwsAsync(WalWriter.open(fifo))).code, 'NOT_A_FILE')
  t.is((await t.throwsAsync(inspect(fifo))).code, 'NOT_A_FILE')
  t.not((await run('verify', fifo)).code, 0)
  const store = await tempDir(t)
  execFileSync('mkfifo', [join(store, 'MANIFEST')])
  t.is((await t.throwsAsync(Store.open(store))).code, 'NOT_A_FILE')
  const report = await verify(store)
  t.true(report.problems.some((p) => p.code === 'NOT_A_FILE'))
})

// 7. No file the engine writes is opened through a symlink.

test('7. a symlinked seal or lock changes nothing outside the store', async (t) => {
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

// 9. Text output escapes what it takes from files.

test('9. inspect prints escape sequences from files as text, never raw', async (t) => {
  const dir = await tempDir(t)
  const store = await Store.open(dir)
  await store.append(Buffer.from('x'), { principal: Buffer.from('\x1b[2Jmallory') })
  await store.checkpoint({ '\x1b[2J\x1b]0;owned\x07': Buffer.from('s'), '\u009b31m': Buffer.from('c1') })
  await store.append(Buffer.from('y'), { principal: Buffer.from('\x1b[2Jmallory') })
  await store.close()
  const inspected = await run('inspect', dir)
  t.is(inspected.code, 0)
  t.notRegex(inspected.stdout, /[\x1b\x07\u009b]/)
  t.regex(inspected.stdout, /\\u\{1b\}\[2J/)
  const dumped = await run('dump', dir)
  t.notRegex(dumped.stdout, /[\x1b\x07\u009b]/)
})

// 10. A method called with a wrong `this` is INVALID_ARGUMENT.

test('10. methods and getters called on a foreign object are INVALID_ARGUMENT', async (t) => {
  const foreign = {}
  t.is((await t.throwsAsync(WalWriter.prototype.append.call(foreign, Buffer.from('x')))).code, 'INVALID_ARGUMENT')
  t.is((await t.throwsAsync(Appender.prototype.flush.call(foreign))).code, 'INVALID_ARGUMENT')
  t.is((await t.throwsAsync(Appender.prototype.close.call(foreign))).code, 'INVALID_ARGUMENT')
  t.is((await t.throwsAsync(Store.prototype.checkpoint.call(foreign, {}))).code, 'INVALID_ARGUMENT')
  t.is(t.throws(() => WalWriter.prototype.appendSync.call(foreign, Buffer.from('x'))).code, 'INVALID_ARGUMENT')
  t.is(t.throws(() => Appender.prototype.appendDurableSync.call(foreign, Buffer.from('x'))).code, 'INVALID_ARGUMENT')
  const getter = Object.getOwnPropertyDescriptor(Appender.prototype, 'lastSequence').get
  t.is(t.throws(() => getter.call(foreign)).code, 'INVALID_ARGUMENT')
  t.is(t.throws(() => Object.getOwnPropertyDescriptor(Store.prototype, 'snapshot').get.call(foreign)).code, 'INVALID_ARGUMENT')
  t.is((await t.throwsAsync(Store.prototype.append.call(foreign, Buffer.from('x')))).code, 'INVALID_ARGUMENT')
  t.is((await t.throwsAsync(Store.prototype.close.call(foreign))).code, 'INVALID_ARGUMENT')
  t.is(t.throws(() => Store.prototype.appendSync.call(foreign, Buffer.from('x'))).code, 'INVALID_ARGUMENT')
})
