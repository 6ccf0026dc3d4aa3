// The runtime smoke round: every kind of call a user makes, once, under whichever runtime runs
// this file (Node, Bun or Deno; __test__/runtimes.spec.mjs runs it under each). Usage:
// `<runtime> smoke.mjs <empty dir>`. Prints one JSON line `{ runtime, passed, failed }` and
// exits 1 if any check failed. Each check asserts what it got; none waits on a timer.
import { strict as assert } from 'node:assert'
import { copyFile, open as openFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'

import { PersistError, Store, WalReader, WalWriter, backup, follow, salvage } from 'selene-persist'

const text = (entry) => entry.payload.toString()
const bytes = (s) => Buffer.from(s)

/** The first `count` entries of `source` (an async iterator), then stop it. */
async function take(source, count) {
  const got = []
  for await (const entry of source) {
    got.push(entry)
    if (got.length === count) break
  }
  return got
}

async function readAll(path) {
  const reader = await WalReader.open(path)
  const got = []
  for await (const entry of reader.entries()) got.push(entry)
  return got
}

/** The worker's side: open the store it is given, append, say so, and wait to be terminated. */
async function workerMain() {
  const store = await Store.open(workerData)
  await store.append(bytes('from the worker'))
  parentPort.postMessage('appended')
}

function checks(dir) {
  const storeDir = join(dir, 'store')
  let store
  let checkpointSeq
  return {
    async 'typed errors'() {
      const error = await WalWriter.open('').catch((e) => e)
      assert.ok(error instanceof PersistError, String(error))
      assert.equal(error.code, 'INVALID_ARGUMENT')
    },
    async 'open, append, appendBatch'() {
      store = await Store.open(storeDir)
      assert.equal(await store.append(bytes('one')), 1)
      assert.equal(await store.appendBatch([bytes('two'), bytes('three')]), 2)
    },
    async 'follow in-process'() {
      const followed = take(store.follow({ from: 2 }), 3)
      assert.equal(await store.append(bytes('four')), 4)
      assert.deepEqual((await followed).map(text), ['two', 'three', 'four'])
    },
    async 'follow(dir)'() {
      const abort = new AbortController()
      const followed = take(follow(storeDir, { from: 1, signal: abort.signal }), 5)
      assert.equal(await store.append(bytes('five')), 5)
      assert.deepEqual((await followed).map(text), ['one', 'two', 'three', 'four', 'five'])
      abort.abort()
    },
    async consumers() {
      const consumer = await store.consumer('smoke', { from: 1 })
      const got = await take(consumer.entries(), 2)
      assert.equal(await consumer.ack(got[1].sequence), 2)
      const [info] = await store.consumers()
      assert.deepEqual([info.name, info.position, info.lagEntries], ['smoke', 2, 3])
    },
    async checkpoint() {
      const checkpoint = await store.checkpoint({ state: bytes('after five') })
      checkpointSeq = checkpoint.sequence
      assert.equal((await store.snapshot.read('state')).toString(), 'after five')
      assert.equal(await store.append(bytes('six')), checkpointSeq + 1)
    },
    async 'replay after reopen'() {
      await store.close()
      store = await Store.open(storeDir)
      assert.equal(store.recovery.snapshotSeq, checkpointSeq)
      const replayed = []
      for await (const entry of store.replay()) replayed.push(text(entry))
      assert.deepEqual(replayed, ['six'])
    },
    async backup() {
      const copy = join(dir, 'backup')
      assert.equal(await store.backup(copy), checkpointSeq + 1)
      await store.close()
      assert.equal(await backup(storeDir, join(dir, 'backup-offline')), checkpointSeq + 1)
      const restored = await Store.open(copy)
      assert.equal(restored.recovery.snapshotSeq, checkpointSeq)
      await restored.close()
    },
    async 'appendSync, appendDurableSync, flush'() {
      const wal = await WalWriter.open(join(dir, 'sync.wal'), { sync: 'manual' })
      for (let i = 1; i <= 100; i++) wal.appendSync(bytes(`sync-${i}`))
      assert.equal(wal.appendDurableSync(bytes('durable')), 101)
      await wal.flush()
      await wal.close()
      const entries = await readAll(join(dir, 'sync.wal'))
      assert.deepEqual([entries.length, text(entries[99]), text(entries[100])], [101, 'sync-100', 'durable'])
    },
    async salvage() {
      const damaged = join(dir, 'damaged.wal')
      await copyFile(join(dir, 'sync.wal'), damaged)
      const file = await openFile(damaged, 'r+')
      const { size } = await stat(damaged)
      await file.write(Buffer.from([0xff, 0xff, 0xff, 0xff]), 0, 4, Math.floor(size / 2))
      await file.close()
      const report = await salvage(damaged, join(dir, 'salvaged.wal'))
      assert.ok(report.skipped.length > 0, JSON.stringify(report))
      const salvaged = await readAll(join(dir, 'salvaged.wal'))
      assert.equal(salvaged.length, report.framesRecovered)
      assert.ok(salvaged.length > 90 && salvaged.length < 101, String(salvaged.length))
    },
    async 'worker threads: a terminated worker releases its store'() {
      const workerDir = join(dir, 'worker')
      const worker = new Worker(new URL(import.meta.url), { workerData: workerDir })
      const failed = new Promise((_, reject) => worker.once('error', reject))
      await Promise.race([new Promise((resolve) => worker.once('message', resolve)), failed])
      await worker.terminate()
      const reopened = await Store.open(workerDir)
      const replayed = []
      for await (const entry of reopened.replay()) replayed.push(text(entry))
      await reopened.close()
      assert.deepEqual(replayed, ['from the worker'])
    },
  }
}

async function main(dir) {
  const runtime = globalThis.Deno ? 'deno' : process.versions.bun ? 'bun' : 'node'
  const passed = []
  const failed = []
  for (const [name, check] of Object.entries(checks(dir))) {
    try {
      await check()
      passed.push(name)
    } catch (error) {
      failed.push({ name, error: `${error?.code ?? ''} ${error?.stack ?? error}` })
    }
  }
  console.log(JSON.stringify({ runtime, passed, failed }))
  process.exitCode = failed.length === 0 ? 0 : 1
}

if (isMainThread) await main(process.argv[2])
else await workerMain()
