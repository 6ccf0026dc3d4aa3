// Issue 26 item 11: large appends are copied once (by the addon, at the call) and written from
// that copy. What a caller sees must not change: every byte is stored as given, in call order,
// and a buffer changed right after the call returns changes nothing stored. (The memory this
// saves is measured by bench/probes/large-batch.mjs, not asserted here.)
import { randomFillSync } from 'node:crypto'
import { join } from 'node:path'

import test from 'ava'
import { Store, WalWriter } from 'selene-persist'

import { own, readAll, smallDisk, tempDir } from './helpers.mjs'

const MIB = 1 << 20

/** `size` random bytes (incompressible), or `size` bytes of one value (compressible). */
const random = (size) => randomFillSync(Buffer.allocUnsafe(size))
const filled = (size, value) => Buffer.alloc(size, value)

for (const compression of [undefined, false]) {
  test(`large and small appends of one tick are stored as given, in call order (compression ${compression ?? 'default'})`, async (t) => {
    const path = join(await tempDir(t), 'wal.log')
    const writer = await WalWriter.open(path, { sync: 'always', compression })
    // Large payloads (random and compressible, some past the size written from the caller's
    // copy), small ones around them, and a batch mixing both, all within one tick.
    const calls = [
      [Buffer.from('before')],
      [random(3 * MIB), filled(2 * MIB, 7), Buffer.from('small inside'), random(MIB + 1)],
      [Buffer.from('between')],
      [random(5 * MIB)],
      [filled(MIB - 1, 9)],
      [Buffer.from('after')],
    ]
    const expected = calls.flat().map((p) => Buffer.from(p))
    const firsts = await Promise.all(calls.map((payloads) => (payloads.length === 1 ? writer.append(payloads[0]) : writer.appendBatch(payloads))))
    t.deepEqual(firsts, [1, 2, 6, 7, 8, 9])
    t.is(writer.lastSequence, expected.length)
    await writer.close()
    const stored = await readAll(path)
    t.is(stored.length, expected.length)
    for (const [i, entry] of stored.entries()) {
      t.is(entry.sequence, i + 1)
      t.true(entry.payload.equals(expected[i]), `entry ${i + 1} (${expected[i].length} bytes) is stored as given`)
    }
    // The writer's committed offset is the file's: the frames around the large payloads line up.
    const reopened = await WalWriter.open(path)
    t.is(reopened.tailRepair, null)
    t.is(reopened.lastSequence, expected.length)
    await reopened.close()
  })
}

test('large payloads changed right after the call are stored as they were at the call, sent at once or waiting for room', async (t) => {
  const dir = await tempDir(t)
  const store = await Store.open(dir, { sync: 'always', maxQueueBytes: 8 * MIB })
  const payloads = [random(4 * MIB), random(2 * MIB)]
  const atCall = payloads.map((p) => Buffer.from(p))
  const appended = store.appendBatch(payloads)
  t.is(store.waitingCalls, 0)
  const single = random(3 * MIB)
  const singleAtCall = Buffer.from(single)
  const appendedSingle = store.append(single)
  t.is(store.waitingCalls, 1, 'the second call waits for room, holding its own copy')
  // Changed before the committer can have written them.
  for (const p of [...payloads, single]) p.fill(0xee)
  t.is(await appended, 1)
  t.is(await appendedSingle, 3)
  const stored = []
  for await (const entry of store.replay()) stored.push(entry.payload)
  await store.close()
  t.is(stored.length, 3)
  t.true(stored[0].equals(atCall[0]))
  t.true(stored[1].equals(atCall[1]))
  t.true(stored[2].equals(singleAtCall))
})

// Issue 12, item 4: every byte argument is checked at the call; a buffer that changes afterwards
// cannot crash, hang or store something else.
test('buffers transferred, changed or shared after the call store what they held at the call', async (t) => {
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

test('a large batch whose write fails midway leaves nothing of it, and the writer goes on', async (t) => {
  const disk = await smallDisk(t, '8m')
  if (!disk) return t.pass()
  const path = join(disk, 'wal.log')
  const writer = await WalWriter.open(path, { sync: 'always', preallocate: false, compression: false })
  const first = random(3 * MIB)
  t.is(await writer.append(first), 1)
  // Frame bytes, then a payload written from the addon's copy, then the next: the disk fills
  // inside the second payload.
  const failed = await t.throwsAsync(writer.appendBatch([Buffer.from('head'), random(3 * MIB), Buffer.from('mid'), random(3 * MIB)]))
  t.is(failed.code, 'DISK_FULL')
  t.is(writer.lastSequence, 1)
  t.is(await writer.append(Buffer.from('after')), 2)
  await writer.close()
  const stored = await readAll(path)
  t.is(stored.length, 2)
  t.true(stored[0].payload.equals(first))
  t.is(stored[1].payload.toString(), 'after')
})
