// The blocking calls: appendDurableSync and flushSync commit on the calling thread.
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'

import test from 'ava'

import { PersistError, Store, WalWriter } from 'selene-persist'

import { payloadFor, probeAppender, readAll, tempDir } from './helpers.mjs'

test('appendDurableSync comes after every earlier call, settles them, and is durable under any policy', async (t) => {
  const path = join(await tempDir(t), 'wal.log')
  const writer = await WalWriter.open(path, { sync: 'manual' })
  const pending = []
  for (let seq = 1; seq <= 10; seq++) pending.push(writer.append(payloadFor(seq)))
  for (let seq = 11; seq <= 15; seq++) writer.appendSync(payloadFor(seq))
  const settled = []
  pending.forEach((p) => p.then((seq) => settled.push(seq)))
  t.is(writer.appendDurableSync(payloadFor(16)), 16)
  t.is(writer.lastSequence, 16)
  t.is(writer.entriesSinceFsync, 0, 'a manual writer fdatasynced')
  t.is(writer.queuedBytes, 0, 'the earlier appends were settled before it returned')
  await Promise.resolve()
  t.deepEqual(settled, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
  await writer.close()
  const entries = await readAll(path)
  t.deepEqual(
    entries.map((e) => e.sequence),
    Array.from({ length: 16 }, (_, i) => i + 1),
  )
  for (const e of entries) t.deepEqual(e.payload, payloadFor(e.sequence))
})

test('appendDurableSync admits calls waiting for room in the queue, in their order', async (t) => {
  const path = join(await tempDir(t), 'wal.log')
  const writer = await WalWriter.open(path, { maxQueueBytes: 1024 })
  const big = Buffer.alloc(1000, 7)
  const pending = [writer.append(big), writer.append(big), writer.append(big)]
  t.true(writer.waitingCalls > 0)
  t.is(writer.appendDurableSync(Buffer.from('last')), 4)
  t.is(writer.waitingCalls, 0)
  t.deepEqual(await Promise.all(pending), [1, 2, 3])
  await writer.close()
  t.deepEqual((await readAll(path)).map((e) => e.payload.length), [1000, 1000, 1000, 4])
})

test('the blocking calls refuse bad input and closed writers with typed errors and lose nothing', async (t) => {
  const path = join(await tempDir(t), 'wal.log')
  const writer = await WalWriter.open(path)
  t.is(writer.appendDurableSync(payloadFor(1)), 1)
  for (const bad of [undefined, 'text', 42, [1, 2]]) {
    const error = t.throws(() => writer.appendDurableSync(bad), { instanceOf: PersistError })
    t.is(error.code, 'INVALID_ARGUMENT')
  }
  const tooBig = t.throws(() => writer.appendDurableSync(Buffer.from('x'), { principal: Buffer.alloc(5000, 1) }), { instanceOf: PersistError })
  t.is(tooBig.code, 'PRINCIPAL_TOO_LARGE')
  t.is(writer.appendDurableSync(payloadFor(2), { principal: Buffer.from('alice') }), 2)
  writer.flushSync()
  await writer.close()
  t.is(t.throws(() => writer.appendDurableSync(payloadFor(3)), { instanceOf: PersistError }).code, 'CLOSED')
  t.is(t.throws(() => writer.flushSync(), { instanceOf: PersistError }).code, 'CLOSED')
  const entries = await readAll(path)
  t.deepEqual(
    entries.map((e) => [e.sequence, e.principal ? Buffer.from(e.principal).toString() : null]),
    [
      [1, null],
      [2, 'alice'],
    ],
  )
})

test('flushSync in an exit handler makes appendSync entries durable when nothing async can run', async (t) => {
  const dir = await tempDir(t)
  const script = (flush) => `
    import { WalWriter } from 'selene-persist'
    const writer = await WalWriter.open(${JSON.stringify(join(dir, `${flush}.log`))}, { sync: 'manual' })
    ${flush ? "process.on('exit', () => writer.flushSync())" : ''}
    for (let i = 0; i < 100; i++) writer.appendSync(Buffer.from('entry ' + i))
    process.exit(0)
  `
  const run = (source) => promisify(execFile)(process.execPath, ['--input-type=module', '-e', source], { timeout: 20_000 })
  await run(script(true))
  await run(script(false))
  const flushed = await readAll(join(dir, 'true.log'))
  t.is(flushed.length, 100)
  t.deepEqual(flushed[99].payload, Buffer.from('entry 99'))
  t.is((await readAll(join(dir, 'false.log'))).length, 0, 'without flushSync the entries never left JS')
})

test('a Store appends durably on the calling thread too', async (t) => {
  const dir = await tempDir(t)
  const store = await Store.open(dir, { sync: { everyN: 1000 } })
  const first = store.append(payloadFor(1))
  t.is(store.appendDurableSync(payloadFor(2)), 2)
  t.is(store.entriesSinceFsync, 0)
  t.is(await first, 1)
  await store.close()
  const again = await Store.open(dir)
  const seen = []
  for await (const entry of again.replay()) seen.push(entry.sequence)
  await again.close()
  t.deepEqual(seen, [1, 2])
})

test('appendDurableSync behind a failed appendSync batch refuses and commits nothing', (t) => {
  const failure = '[selene:IO] write wal.log: No space left on device'
  const mailbox = []
  const commits = []
  const { probe } = probeAppender(
    'manual',
    (data, lengths, requests) => {
      for (let i = 0; i < requests.length; i += 2) mailbox.push([requests[i], -1])
    },
    {
      commitSync: (payload) => {
        commits.push(payload === null ? null : Buffer.from(payload).toString())
        return payload === null ? null : 99
      },
      // The committer failed the batch before the blocking call got its turn.
      takeSettled: () => ({ settled: new Float64Array(mailbox.splice(0).flat()), failures: [failure] }),
    },
  )
  probe.appendSync(Buffer.from('lost'))
  const error = t.throws(() => probe.appendDurableSync(Buffer.from('after')), { instanceOf: PersistError })
  t.is(error.code, 'IO')
  t.regex(error.message, /appendSync batch failed/)
  t.deepEqual(commits, [null], 'only the flush that found the failure ran; the entry was never committed')
  t.is(t.throws(() => probe.appendDurableSync(Buffer.from('later'))).code, 'IO')
})
