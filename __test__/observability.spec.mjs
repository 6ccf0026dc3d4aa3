// stats() and the diagnostics_channel events: what a writer reports of itself.
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { appendFile, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

import test from 'ava'

import { Store, WalWriter } from 'selene-persist'

import { tempDir } from './helpers.mjs'

/** Messages published on `name` while `run` runs. */
async function heard(name, run) {
  const messages = []
  const listener = (message) => messages.push(message)
  subscribe(name, listener)
  try {
    await run()
  } finally {
    unsubscribe(name, listener)
  }
  return messages
}

test.serial('stats() counts entries, bytes, groups, fdatasyncs and their distributions', async (t) => {
  const dir = await tempDir(t)
  const writer = await WalWriter.open(join(dir, 'wal.log'), { sync: 'always' })
  const fresh = writer.stats()
  t.like(fresh, { entries: 0, bytes: 0, groups: 0, queuedBytes: 0, waitingCalls: 0, tailRepairs: 0, groupSize: { p50: 0, p99: 0, max: 0 } })
  // 64 concurrent awaited appends of 100 bytes: grouped, each group one fdatasync.
  await Promise.all(Array.from({ length: 64 }, () => writer.append(Buffer.alloc(100, 1))))
  writer.appendDurableSync(Buffer.alloc(50, 2))
  const s = writer.stats()
  t.is(s.entries, 65)
  t.is(s.bytes, 64 * 100 + 50)
  t.true(s.groups >= 2 && s.groups <= 65, `groups ${s.groups}`)
  t.true(s.fdatasyncs >= s.groups, `${s.fdatasyncs} fdatasyncs for ${s.groups} groups`)
  t.true(s.groupSize.max >= s.groupSize.p99 && s.groupSize.p99 >= s.groupSize.p50 && s.groupSize.p50 >= 1)
  t.true(s.commitLatencyMs.max >= s.commitLatencyMs.p50 && s.commitLatencyMs.p50 > 0)
  t.true(s.msSinceFdatasync !== null && s.msSinceFdatasync >= 0)
  t.is(s.queuedBytes, 0)
  await writer.close()
})

test.serial('a writer opened over a torn tail reports it: stats().tailRepairs and the tail-repair channel', async (t) => {
  const dir = await tempDir(t)
  const path = join(dir, 'wal.log')
  const writer = await WalWriter.open(path)
  await writer.append(Buffer.from('kept'))
  await writer.close()
  await appendFile(path, Buffer.from([1, 2, 3, 4, 5, 6, 7]))
  let reopened
  const messages = await heard('selene-persist:tail-repair', async () => (reopened = await WalWriter.open(path)))
  t.is(reopened.stats().tailRepairs, 1)
  t.is(messages.length, 1)
  t.is(messages[0].path, path)
  t.like(messages[0].repair, { reason: 'short-frame', discardedBytes: 7 })
  await reopened.close()
})

test.serial('commit, checkpoint and prune are published on their channels', async (t) => {
  const dir = await tempDir(t)
  const store = await Store.open(dir)
  const commits = await heard('selene-persist:commit', async () => {
    await Promise.all(Array.from({ length: 10 }, (_, i) => store.append(Buffer.from(`e${i}`))))
  })
  t.true(commits.length >= 1)
  t.is(commits.reduce((n, m) => n + m.requests, 0), 10)
  t.true(commits.every((m) => m.path === dir && m.failed === 0))
  t.is(commits.at(-1).lastSequence, 10)
  const checkpoints = await heard('selene-persist:checkpoint', () => store.checkpoint({ s: Buffer.from('x') }))
  t.is(checkpoints.length, 1)
  t.is(checkpoints[0].checkpoint.sequence, 11)
  await store.checkpoint({ s: Buffer.from('y') })
  const prunes = await heard('selene-persist:prune', () => store.prune({ keepSnapshots: 1, keepArchives: 0 }))
  t.is(prunes.length, 1)
  t.is(prunes[0].path, dir)
  t.deepEqual(prunes[0].result.deletedSnapshots, [11])
  // Nobody listening: nothing is built or published, and appends go on.
  await store.append(Buffer.from('quiet'))
  // Appended entries: checkpoint watermarks take sequences but are not counted.
  t.is(store.stats().entries, 11)
  await store.close()
})

test.serial('commit events carry the bytes written and the time in writes and fdatasyncs, for spans', async (t) => {
  const dir = await tempDir(t)
  const writer = await WalWriter.open(join(dir, 'wal.log'), { sync: 'always' })
  const commits = await heard('selene-persist:commit', async () => {
    for (let i = 0; i < 5; i++) await writer.append(Buffer.alloc(100, i))
    await Promise.all(Array.from({ length: 20 }, () => writer.append(Buffer.alloc(10))))
  })
  const sum = (field) => commits.reduce((n, m) => n + m[field], 0)
  t.is(sum('bytes'), writer.committedOffset - 24, 'every frame byte after the file header, once')
  t.is(sum('fdatasyncs'), writer.stats().fdatasyncs)
  // One event per delivery of replies: under load one group's replies may come in several, the
  // later ones with no I/O of their own (docs/api.md); every byte and fdatasync is told once.
  t.true(commits.every((m) => m.writeMs >= 0 && m.fdatasyncMs >= 0 && m.bytes >= 0 && m.requests > 0))
  t.true(commits.filter((m) => m.bytes > 0).length >= 5, 'the five awaited appends are five groups, each with its bytes')
  t.true(sum('fdatasyncMs') > 0, 'fdatasyncs take time')
  await writer.close()
})

test.serial('the engine warns on the warning channel: a seal that names no frame of its WAL is ignored, and said so', async (t) => {
  const dir = await tempDir(t)
  const path = join(dir, 'wal.log')
  const writer = await WalWriter.open(path)
  await writer.append(Buffer.from('kept'))
  await writer.close()
  // A planted seal: well formed, but claiming a prefix far longer than the file.
  const seal = await readFile(`${path}.seal`)
  const other = await WalWriter.open(join(dir, 'other.log'))
  for (let i = 0; i < 50; i++) await other.append(Buffer.alloc(200, i))
  await other.close()
  await writeFile(`${path}.seal`, await readFile(join(dir, 'other.log.seal')))
  t.is(seal.length, 64)
  const warned = new Promise((resolve) => {
    const listener = (message) => {
      if (message.path !== `${path}.seal`) return
      unsubscribe('selene-persist:warning', listener)
      resolve(message)
    }
    subscribe('selene-persist:warning', listener)
  })
  const reopened = await WalWriter.open(path)
  t.deepEqual(await warned, { kind: 'seal-ignored', path: `${path}.seal`, detail: 'the seal was ignored (it names a prefix longer than the file); the whole file was scanned' })
  t.is(reopened.lastSequence, 1, 'nothing lost')
  await reopened.close()
})
