import { createRequire } from 'node:module'
import { join } from 'node:path'

import test from 'ava'

import { PersistError, Store, WalWriter } from 'selene-persist'

import { Model, encode, eventFor, recovered } from './fixtures/app.mjs'
import { readAll, tempDir } from './helpers.mjs'

test('a flood of appends is held to maxQueueBytes and keeps call order', async (t) => {
  const path = join(await tempDir(t), 'wal.log')
  const bound = 64 << 10
  const writer = await WalWriter.open(path, { maxQueueBytes: bound })
  const payload = (i) => Buffer.alloc(4096, i % 251)
  let peak = 0
  let maxWaiting = 0
  const pending = []
  for (let i = 0; i < 2000; i++) {
    pending.push(writer.append(payload(i)))
    peak = Math.max(peak, writer.queuedBytes)
    maxWaiting = Math.max(maxWaiting, writer.waitingCalls)
  }
  t.true(peak <= bound, `queued ${peak} bytes past the bound of ${bound}`)
  t.true(maxWaiting > 1000, 'most calls waited for room')
  t.deepEqual(await Promise.all(pending), Array.from({ length: 2000 }, (_, i) => i + 1))
  t.is(writer.queuedBytes, 0)
  await writer.close()
  const entries = await readAll(path)
  t.is(entries.length, 2000)
  t.true(entries.every((e, i) => e.payload.equals(payload(i))))
})

test('a loop of appendSync blocks for room instead of piling entries up, behind the calls already waiting', async (t) => {
  const path = join(await tempDir(t), 'wal.log')
  const bound = 64 << 10
  const writer = await WalWriter.open(path, { sync: 'manual', maxQueueBytes: bound })
  // Calls waiting for room when the loop starts go first.
  const early = Array.from({ length: 50 }, (_, i) => writer.append(Buffer.alloc(4096, i)))
  t.true(writer.waitingCalls > 0)
  const payload = (i) => Buffer.alloc(1000, i % 251)
  let peak = 0
  for (let i = 0; i < 20_000; i++) {
    writer.appendSync(payload(i))
    peak = Math.max(peak, writer.waitingCalls)
  }
  // Each batch went to the committer once it had room: none is held here.
  t.is(writer.waitingCalls, 0)
  t.true(peak <= 50, `${peak} calls waited`)
  t.deepEqual(await Promise.all(early), Array.from({ length: 50 }, (_, i) => i + 1))
  await writer.close()
  const entries = await readAll(path)
  t.is(entries.length, 20_050)
  t.true(entries.slice(50).every((e, i) => e.payload.equals(payload(i))))
})

test('one append larger than the bound still goes through, alone', async (t) => {
  const writer = await WalWriter.open(join(await tempDir(t), 'wal.log'), { maxQueueBytes: 1024 })
  const results = await Promise.all([writer.append(Buffer.alloc(10_000)), writer.append(Buffer.alloc(10)), writer.append(Buffer.alloc(5000))])
  t.deepEqual(results, [1, 2, 3])
  await writer.close()
})

test('a checkpoint called while appends wait keeps its place in the order', async (t) => {
  const dir = await tempDir(t)
  const store = await Store.open(dir, { maxQueueBytes: 4096 })
  const model = new Model()
  const pending = []
  for (let n = 1; n <= 400; n++) {
    const event = eventFor(n)
    pending.push(store.append(encode(event)))
    model.apply(event)
    if (n === 150 || n === 300) {
      t.true(store.waitingCalls > 0, 'appends are waiting when the checkpoint is called')
      pending.push(store.checkpoint(model.sections()))
    }
  }
  await Promise.all(pending)
  await store.close()
  t.deepEqual(await recovered(dir), Model.expected(400).toJSON())
})

// Issue 12, item 2: every queue on a hot path is O(1) per operation (time is measured in
// bench/probes/waiting.mjs).
test('a flood of waiting appends drains in call order, each payload as it was at the call', async (t) => {
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

test('maxQueueBytes must be a positive integer', async (t) => {
  const dir = await tempDir(t)
  for (const maxQueueBytes of [0, -1, 1.5, '1', 10n]) {
    const error = await t.throwsAsync(WalWriter.open(join(dir, 'w.log'), { maxQueueBytes }), { instanceOf: PersistError })
    t.is(error.code, 'INVALID_ARGUMENT')
    t.is((await t.throwsAsync(Store.open(join(dir, 's'), { maxQueueBytes }))).code, 'INVALID_ARGUMENT')
  }
})

test('admission takes requests from a source other than the writer: payloads and two callbacks, bounded, settled in order', async (t) => {
  // The seam a shared store's socket server will use: requests handed in without an Appender.
  const require = createRequire(import.meta.url)
  const native = require('../native.js')
  const { Admission } = require('../src/append/admission.js')
  const path = join(await tempDir(t), 'wal.log')
  const handle = await native.NativeAppender.openWriter(path, {})
  const bound = 4096
  const admission = new Admission(handle, bound)
  handle.listen((settled, failures) => {
    admission.settle(settled, failures)
    admission.admitWaiting()
  })
  const payload = (i) => Buffer.alloc(1000, i)
  const firsts = Array.from({ length: 20 }, (_, i) => new Promise((resolve, reject) => admission.enqueue([payload(i)], undefined, { bytes: 1000, resolve, reject })))
  t.true(admission.queuedBytes <= bound)
  t.true(admission.waiting > 0, 'requests past the bound wait')
  t.deepEqual(await Promise.all(firsts), Array.from({ length: 20 }, (_, i) => i + 1))
  t.is(admission.queuedBytes, 0)
  t.is(admission.pending, 0)
  admission.closing()
  await admission.ordered(() => handle.close())
  admission.close()
  const entries = await readAll(path)
  t.true(entries.length === 20 && entries.every((e, i) => e.payload.equals(payload(i))))
})
