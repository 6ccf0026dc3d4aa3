// Following a live log: in-process and from another process, through checkpoints, prunes,
// kill -9 of the writer, and durable consumers that retention respects.
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'

import test from 'ava'

import { Store, follow } from 'selene-persist'

import { fixture, followed, sized, tempDir } from './helpers.mjs'

// The addon's consumers of a store directory: acknowledgements from a process that is not the writer.
const native = createRequire(import.meta.url)('../native.js')

const writerScript = fixture('follow-writer.mjs')
const consumerScript = fixture('consumer-child.mjs')

test('an in-process follower sees every entry once, in order, through checkpoints and prunes', async (t) => {
  const store = await Store.open(await tempDir(t), { retention: { keepSnapshots: 1, keepArchives: 1 } })
  const seen = []
  const following = (async () => {
    for await (const entry of store.follow()) seen.push([entry.sequence, entry.payload])
  })()
  const expected = []
  for (let round = 0; round < 6; round++) {
    const pending = []
    for (let i = 0; i < 200; i++) {
      const payload = sized(`e${round}-${i}`, i)
      pending.push(store.append(payload).then((seq) => expected.push([seq, payload])))
    }
    await Promise.all(pending)
    await store.checkpoint({ round: Buffer.from(String(round)) })
    await store.prune()
  }
  await store.close()
  await following
  expected.sort((a, b) => a[0] - b[0])
  t.is(seen.length, expected.length)
  t.deepEqual(
    seen.map(([s]) => s),
    expected.map(([s]) => s),
  )
  t.true(seen.every(([, p], i) => p.equals(expected[i][1])))
})

test('a follower in another process sees every entry once, in order, while the writer runs at full speed', async (t) => {
  const dir = await tempDir(t)
  // A plain follower has no claim on retention and would race the writer's prunes: this one
  // acknowledges as a durable consumer, so the prunes behind it wait for it however slow it is.
  await (await Store.open(dir)).close()
  const consumers = new native.NativeConsumers(dir)
  await consumers.register('follower', 0)
  const total = 1200
  const child = spawn(process.execPath, [writerScript, dir, String(total)], { stdio: ['ignore', 'ignore', 'inherit'] })
  const done = new Promise((resolve) => child.on('exit', resolve))
  const seen = []
  for await (const entry of follow(dir, { pollMs: 50, durable: true })) {
    seen.push([entry.sequence, entry.payload.toString('hex')])
    if (seen.length % 100 === 0) await consumers.ack('follower', entry.sequence)
    if (seen.length === total) break
  }
  t.is(await done, 0)
  t.true(seen.every(([s], i) => i === 0 || s > seen[i - 1][0]), 'in sequence order')
  const ids = seen.map(([, hex]) => Buffer.from(hex, 'hex').toString().split(' ')[0].split('-')[1]).map(Number)
  t.deepEqual([...ids].sort((a, b) => a - b), Array.from({ length: total }, (_, i) => i), 'each entry once')
  // What the store still holds after its prunes is exactly what the follower saw there.
  const kept = await followed(dir, (await Store.open(dir).then(async (s) => [s.snapshotSeq, await s.close()]))[0] + 1)
  t.deepEqual(seen.filter(([s]) => s >= (kept[0]?.[0] ?? Infinity)), kept)
})

test('30 rounds of kill -9 of the writer: a durable follower in another process never errs, never yields what recovery lacks', async (t) => {
  const dir = await tempDir(t)
  await (await Store.open(dir)).close()
  const abort = new AbortController()
  const seen = []
  // Resolved at each entry the follower yields.
  let progressed = () => undefined
  const following = (async () => {
    for await (const entry of follow(dir, { durable: true, pollMs: 20, signal: abort.signal })) {
      seen.push([entry.sequence, entry.payload.toString('hex')])
      progressed()
    }
  })()
  for (let round = 0; round < 30; round++) {
    await new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [writerScript, dir, '-', 'keep'], { stdio: ['ignore', 'pipe', 'inherit'] })
      let acks = 0
      child.stdout.on('data', (chunk) => {
        acks += chunk.toString().split('\n').filter((l) => l.startsWith('ack')).length
        if (acks >= 20 + ((round * 37) % 60)) child.kill('SIGKILL')
      })
      child.on('exit', (code, signal) => (signal === 'SIGKILL' ? resolve() : reject(new Error(`writer exited ${code}`))))
    })
  }
  // Recovery by a new writer, then let the follower catch up with everything durable.
  const all = await followed(dir, 1)
  const last = all.at(-1)[0]
  // A follower error fails the test at once; no progress for a minute fails it with where it is.
  let done = false
  const ended = following.then(() => (done ? undefined : Promise.reject(new Error('the follower ended early'))))
  while ((seen.at(-1)?.[0] ?? 0) < last) {
    let stalled
    const progress = new Promise((resolve) => (progressed = resolve))
    const stuck = new Promise((resolve) => (stalled = setTimeout(resolve, 60_000, 'stuck')))
    const woke = await Promise.race([progress, stuck, ended])
    clearTimeout(stalled)
    if (woke === 'stuck') {
      t.fail(`the follower is stuck at ${seen.at(-1)?.[0]} of ${last}`)
      break
    }
  }
  done = true
  abort.abort()
  await Promise.all([following, ended])
  t.true(all.length > 30 * 20)
  t.deepEqual(seen, all, 'exactly the entries that survived, once each, in order')
})

test('50 rounds of kill -9 of a consumer: it resumes right after its last ack, and retention keeps what it needs', async (t) => {
  const dir = await tempDir(t)
  let acked = 0
  let seenMax = 0
  const marks = new Set()
  for (let round = 0; round < 50; round++) {
    const before = acked
    const { position, saw } = await new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [consumerScript, dir], { stdio: ['ignore', 'pipe', 'inherit'] })
      const out = { position: null, saw: [] }
      let buffered = ''
      child.stdout.on('data', (chunk) => {
        buffered += chunk.toString()
        const lines = buffered.split('\n')
        buffered = lines.pop()
        for (const line of lines) {
          const [word, value] = line.split(' ')
          if (word === 'position') out.position = Number(value)
          if (word === 'saw') out.saw.push(Number(value))
          if (word === 'ack') acked = Math.max(acked, Number(value))
          if (word === 'mark') marks.add(Number(value))
        }
        if (out.saw.length >= 4 + (round % 9)) child.kill('SIGKILL')
      })
      child.on('exit', (code, signal) => (signal === 'SIGKILL' ? resolve(out) : reject(new Error(`consumer exited ${code}`))))
    })
    // An ack may have become durable just before the kill, unprinted: never below the last printed.
    t.true(position >= before && position <= Math.max(before, seenMax), `round ${round}: resumes at its last durable ack (${position}, printed ${before})`)
    // Right after the position, in order; the only sequences skipped are checkpoint watermarks.
    t.true(saw.every((s, i) => s > (i === 0 ? position : saw[i - 1])), `round ${round}: in order`)
    for (let s = position + 1; s <= saw.at(-1); s++) t.true(saw.includes(s) || marks.has(s), `round ${round}: sequence ${s} delivered`)
    seenMax = Math.max(seenMax, saw.at(-1))
  }
  t.true(seenMax > 50)
})

test('a byte budget that forces out an archive a consumer needs says so, and the consumer gets CONSUMER_BEHIND_RETENTION', async (t) => {
  const store = await Store.open(await tempDir(t))
  const relay = await store.consumer('relay')
  t.is(relay.position, 0)
  for (let round = 0; round < 4; round++) {
    for (let i = 0; i < 20; i++) await store.append(Buffer.alloc(2000, round))
    await store.checkpoint({ s: Buffer.from('x') })
  }
  const counted = await store.prune({ keepArchives: 0 })
  t.deepEqual(counted.deletedArchives, [], 'counts never delete what a consumer needs')
  t.deepEqual(counted.consumersBehind, [])
  const forced = await store.prune({ keepArchives: 0, maxBytes: 1 })
  t.true(forced.deletedArchives.length > 0)
  t.deepEqual(forced.consumersBehind, ['relay'])
  const error = await t.throwsAsync(relay.entries().next())
  t.is(error.code, 'CONSUMER_BEHIND_RETENTION')
  t.deepEqual((await store.consumers()).map((c) => c.name), ['relay'])
  t.true(await store.removeConsumer('relay'))
  t.deepEqual(await store.consumers(), [])
  t.is((await t.throwsAsync(store.consumer('no/slashes'))).code, 'INVALID_ARGUMENT')
  await store.close()
})

test('a follower ends on close after the entries committed before it, and on abort', async (t) => {
  const store = await Store.open(await tempDir(t))
  for (let i = 0; i < 5; i++) await store.append(Buffer.from(`e${i}`))
  const abort = new AbortController()
  const aborted = []
  let allFive
  const five = new Promise((resolve) => (allFive = resolve))
  const stopping = (async () => {
    for await (const entry of store.follow({ signal: abort.signal })) {
      aborted.push(entry.sequence)
      if (aborted.length === 5) allFive()
    }
  })()
  const closing = (async () => {
    const all = []
    for await (const entry of store.follow()) all.push(entry.sequence)
    return all
  })()
  await five
  abort.abort()
  await stopping
  t.deepEqual(aborted, [1, 2, 3, 4, 5])
  const last = store.append(Buffer.from('last'))
  await store.close()
  await last
  t.deepEqual(await closing, [1, 2, 3, 4, 5, 6])
})

test('a WalWriter is followed in-process, and a single WAL file from another process', async (t) => {
  const { join } = await import('node:path')
  const { WalWriter } = await import('selene-persist')
  const path = join(await tempDir(t), 'app.wal')
  const writer = await WalWriter.open(path, { sync: 'manual' })
  const inProcess = (async () => {
    const got = []
    for await (const entry of writer.follow({ durable: true })) got.push(entry.payload.toString())
    return got
  })()
  const abort = new AbortController()
  const crossProcess = (async () => {
    const got = []
    for await (const entry of follow(path, { pollMs: 20, signal: abort.signal })) {
      got.push(entry.payload.toString())
      if (got.length === 3) abort.abort()
    }
    return got
  })()
  for (const word of ['a', 'b', 'c']) await writer.append(Buffer.from(word))
  await writer.flush()
  t.deepEqual(await crossProcess, ['a', 'b', 'c'])
  await writer.close()
  t.deepEqual(await inProcess, ['a', 'b', 'c'], 'durable: each once flushed; the end at close')
})

test('consumers report their lag in entries and bytes', async (t) => {
  const store = await Store.open(await tempDir(t))
  const relay = await store.consumer('relay')
  for (let i = 0; i < 10; i++) await store.append(Buffer.alloc(100, i))
  await store.checkpoint({ s: Buffer.from('x') })
  await store.append(Buffer.from('after'))
  const [behind] = await store.consumers()
  t.is(behind.lagEntries, 12)
  t.true(behind.lagBytes > 1000)
  await relay.ack(store.lastSequence)
  const [caughtUp] = await store.consumers()
  t.deepEqual([caughtUp.lagEntries, caughtUp.lagBytes], [0, 0])
  await store.close()
})

test('a follower from another process waits for its log to appear: a store not yet made, an empty directory, a WAL file; abort ends the wait', async (t) => {
  const { join } = await import('node:path')
  const { WalWriter } = await import('selene-persist')
  const base = await tempDir(t)
  const cases = [
    ['a store directory not yet made', join(base, 'later'), (path) => Store.open(path)],
    ['an empty directory', base, (path) => Store.open(path)],
    ['a WAL file not yet made', join(base, 'app.wal'), (path) => WalWriter.open(path)],
  ]
  for (const [label, path, open] of cases) {
    const abort = new AbortController()
    const entries = follow(path, { pollMs: 20, signal: abort.signal })
    // The generator runs up to its wait before next() returns: the log is still absent here.
    const first = entries.next()
    const writer = await open(path)
    for (const word of ['a', 'b']) await writer.append(Buffer.from(word))
    t.is((await first).value?.payload.toString(), 'a', label)
    t.is((await entries.next()).value?.payload.toString(), 'b', label)
    abort.abort()
    t.true((await entries.next()).done, label)
    await writer.close()
  }
  const abort = new AbortController()
  const waiting = follow(join(base, 'never'), { pollMs: 20, signal: abort.signal }).next()
  abort.abort()
  t.true((await waiting).done, 'aborted while waiting: the end, no error')
})

test('under { intervalMs } a durable follower is woken by the background fdatasync itself', async (t) => {
  const dir = await tempDir(t)
  // A long interval: the entry turns durable at the first background sync, which no call of
  // this process asks for; the follower hears of it from the committer.
  const store = await Store.open(dir, { sync: { intervalMs: 200 } })
  const seen = (async () => {
    for await (const entry of store.follow({ durable: true })) return entry.payload.toString()
  })()
  await store.append(Buffer.from('x'))
  t.is(await seen, 'x')
  t.is(store.entriesSinceFsync, 0)
  await store.close()
})
