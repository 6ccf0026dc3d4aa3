// Durable consumers: a position never past the durable end of the log, acks that never move it
// backwards across handles, a closed store that does nothing, and a damaged position file that
// is named and kept safe instead of halting every other consumer.
import { copyFile, readFile, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

import test from 'ava'

import { Store } from 'selene-persist'

import { tempDir } from './helpers.mjs'

/** A store in a fresh directory holding `count` entries. */
async function storeWith(t, count, options = {}) {
  const dir = await tempDir(t)
  const store = await Store.open(dir, options)
  for (let i = 1; i <= count; i++) await store.append(Buffer.from(`entry ${i}`))
  return { dir, store }
}

/** The last sequence the seal of `dir`'s active WAL records as fdatasynced (0: no seal). */
async function sealedSequence(dir) {
  const seal = await readFile(join(dir, 'wal.log.seal')).catch(() => null)
  return seal === null ? 0 : Number(seal.readBigUInt64LE(32))
}

test('an ack past the last appended sequence, or a start past the end, is INVALID_ARGUMENT', async (t) => {
  const { dir, store } = await storeWith(t, 10)
  const relay = await store.consumer('relay')
  t.is((await t.throwsAsync(relay.ack(1000))).code, 'INVALID_ARGUMENT')
  t.is((await t.throwsAsync(relay.ack(11))).code, 'INVALID_ARGUMENT')
  t.is(relay.position, 0)
  t.is(await relay.ack(10), 10)
  t.is((await t.throwsAsync(store.consumer('far', { from: 100000 }))).code, 'INVALID_ARGUMENT')
  t.false((await readdir(dir)).includes('consumer.far'), 'nothing registered')
  t.is((await store.consumer('next', { from: 11 })).position, 10, 'from the next sequence is fine')
  t.deepEqual((await store.consumers()).map((c) => [c.name, c.position]), [['next', 10], ['relay', 10]])
  await store.close()
})

for (const sync of ['manual', { everyN: 1000 }, { intervalMs: 3_600_000 }]) {
  test(`under ${JSON.stringify(sync)}, an ack makes the entries it acknowledges durable first`, async (t) => {
    const { dir, store } = await storeWith(t, 5, { sync })
    const relay = await store.consumer('relay')
    t.is(await sealedSequence(dir), 0, 'nothing fdatasynced yet')
    t.is(await relay.ack(3), 3)
    t.true((await sealedSequence(dir)) >= 3, 'the acknowledged entries are durable before the position')
    await store.close()
  })
}

test('a position past the end after a power loss is capped at open and reported, and new entries reach the consumer', async (t) => {
  // What a power loss leaves: a position published for entries the log no longer holds.
  const { dir: before, store: lost } = await storeWith(t, 20)
  await (await lost.consumer('relay')).ack(20)
  await lost.close()
  const { dir, store: short } = await storeWith(t, 10)
  await short.close()
  await copyFile(join(before, 'consumer.relay'), join(dir, 'consumer.relay'))

  const store = await Store.open(dir)
  t.deepEqual(store.recovery.cappedConsumers, [{ name: 'relay', position: 20, cappedTo: 10 }])
  t.deepEqual((await store.consumers()).map((c) => [c.name, c.position, c.lagEntries]), [['relay', 10, 0]])
  for (let i = 11; i <= 15; i++) await store.append(Buffer.from(`entry ${i}`))
  const relay = await store.consumer('relay')
  t.is(relay.position, 10)
  const seen = []
  for await (const entry of relay.entries()) {
    seen.push(entry.sequence)
    if (entry.sequence === 15) break
  }
  t.deepEqual(seen, [11, 12, 13, 14, 15])
  await store.close()
  const reopened = await Store.open(dir)
  t.deepEqual(reopened.recovery.cappedConsumers, [], 'capped once, durably')
  await reopened.close()
})

test('two handles of one consumer acking at once never move its position backwards (150 rounds)', async (t) => {
  const { store } = await storeWith(t, 0)
  await store.appendBatch(Array.from({ length: 300 }, (_, i) => Buffer.from(`entry ${i + 1}`)))
  const a = await store.consumer('relay')
  const b = await store.consumer('relay')
  for (let round = 0; round < 150; round++) {
    // Both move it up from where it is; the higher must stay, whichever lands last.
    const high = 2 * round + 2
    await Promise.all([a.ack(high), b.ack(high - 1)])
    const [info] = await store.consumers()
    if (info.position !== high) t.fail(`round ${round}: position ${info.position}, not ${high}`)
  }
  t.is((await store.consumers())[0].position, 300)
  t.is(await b.ack(3), 300, 'a lower ack resolves with the position kept')
  await store.close()
})

test('a closed store registers, acknowledges, lists, removes and follows nothing: CLOSED', async (t) => {
  const { dir, store } = await storeWith(t, 3)
  const relay = await store.consumer('relay')
  await relay.ack(1)
  await store.close()
  t.is((await t.throwsAsync(store.consumer('late'))).code, 'CLOSED')
  t.is((await t.throwsAsync(relay.ack(3))).code, 'CLOSED')
  t.is((await t.throwsAsync(store.consumers())).code, 'CLOSED')
  t.is((await t.throwsAsync(store.removeConsumer('relay'))).code, 'CLOSED')
  t.is((await t.throwsAsync(store.follow().next())).code, 'CLOSED')
  t.is((await t.throwsAsync(store.prune())).code, 'CLOSED')
  t.deepEqual((await readdir(dir)).filter((name) => name.startsWith('consumer.')), ['consumer.relay'])
  const reopened = await Store.open(dir)
  t.deepEqual((await reopened.consumers()).map((c) => [c.name, c.position]), [['relay', 1]])
  await reopened.close()
})

test('a damaged consumer file is listed as damaged, named, and retention keeps what it might need without failing', async (t) => {
  const { dir, store } = await storeWith(t, 0, { retention: { keepSnapshots: 1, keepArchives: 1 } })
  const good = await store.consumer('good')
  await store.consumer('long')
  await store.consumer('foreign')
  for (let round = 0; round < 3; round++) {
    await store.append(Buffer.from(`entry ${round}`))
    await store.checkpoint({ s: Buffer.from(String(round)) })
  }
  await good.ack(store.lastSequence)
  await writeFile(join(dir, 'consumer.long'), Buffer.alloc(40, 7))
  await writeFile(join(dir, 'consumer.foreign'), Buffer.from('SPWL' + 'x'.repeat(20)))

  const listed = await store.consumers()
  t.deepEqual(
    listed.map((c) => [c.name, c.position, c.damaged?.code]),
    [
      ['foreign', 0, 'STORE_INCONSISTENT'],
      ['good', store.lastSequence, undefined],
      ['long', 0, 'STORE_INCONSISTENT'],
    ],
  )
  const long = listed.find((c) => c.name === 'long')
  t.regex(long.damaged.message, /consumer\.long/)
  t.regex(long.damaged.message, /longer/)
  t.notRegex(long.damaged.message, /truncated/)
  t.regex(listed.find((c) => c.name === 'foreign').damaged.message, /consumer\.foreign.*MAGIC_MISMATCH/)

  const kept = await store.prune()
  t.deepEqual(kept.deletedArchives, [], 'a damaged consumer may need every archive')
  t.is(kept.retainedArchives.length, 3)
  const refused = await t.throwsAsync(store.consumer('long'))
  t.is(refused.code, 'STORE_INCONSISTENT')
  t.regex(refused.message, /consumer\.long/)
  t.true(await store.removeConsumer('long'))
  t.true(await store.removeConsumer('foreign'))
  t.deepEqual((await store.prune()).retainedArchives.length, 1, 'once forgotten, retention applies again')
  await store.close()
})
