// Following a live log, measured (issue 14). Prints a markdown table; medians of --runs runs.
//
//   node bench/follow.mjs [--runs 3] [--rate 10000] [--seconds 3] [--backlog 1000000]
//
// - lag: commit-to-delivery at a steady --rate of 128 B appends ('always'), for an in-process
//   follower (store.follow) and one in another process (follow(dir)); p50 and p99 of
//   (time the follower got the entry - time its append resolved). The stamp travels in the
//   payload; both processes read the same monotonic clock (performance.timeOrigin + now()).
// - catch-up: a follower over a --backlog of 128 B entries (no writer running), entries/s, as
//   a ratio to replayBatches over the same data.
// - a stopped follower: RSS before and after --backlog entries are appended while it does not
//   read, then once it has read them all.
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'

import { Store, follow } from '../index.js'

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    rate: { type: 'string', default: '10000' },
    seconds: { type: 'string', default: '3' },
    backlog: { type: 'string', default: '1000000' },
    child: { type: 'string' },
  },
})
const now = () => performance.timeOrigin + performance.now()
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const quantile = (xs, q) => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
}
const stamped = () => Buffer.alloc(128)

/** Append at a steady `rate` for `seconds`, each payload stamped with the time of its append call. */
async function steadyWriter(store, rate, seconds) {
  const total = rate * seconds
  const start = now()
  const pending = []
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / rate
    const wait = due - now()
    if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait))
    const payload = stamped()
    payload.writeDoubleLE(now(), 0)
    pending.push(store.append(payload))
    if (pending.length > 256) await pending.shift()
  }
  await Promise.all(pending)
  return total
}

// The cross-process follower: prints the lag of each entry it gets (ms), until it has `count`.
if (values.child !== undefined) {
  const [dir, count] = values.child.split(',')
  const lags = []
  process.stdout.write('ready\n')
  for await (const entry of follow(dir, { pollMs: 500 })) {
    lags.push(now() - entry.payload.readDoubleLE(0))
    if (lags.length === Number(count)) break
  }
  // Exit once the (large, piped) write is flushed.
  process.stdout.write(JSON.stringify(lags), () => process.exit(0))
}

async function lagInProcess(rate, seconds) {
  const dir = mkdtempSync(join(tmpdir(), 'selene-follow-'))
  const store = await Store.open(dir)
  const lags = []
  const total = rate * seconds
  const following = (async () => {
    for await (const entry of store.follow()) {
      lags.push(now() - entry.payload.readDoubleLE(0))
      if (lags.length === total) return
    }
  })()
  await steadyWriter(store, rate, seconds)
  await following
  await store.close()
  rmSync(dir, { recursive: true, force: true })
  return lags
}

async function lagCrossProcess(rate, seconds) {
  const dir = mkdtempSync(join(tmpdir(), 'selene-follow-'))
  const store = await Store.open(dir)
  const total = rate * seconds
  const child = spawn(process.execPath, [new URL(import.meta.url).pathname, '--child', `${dir},${total}`], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (chunk) => (out += chunk))
  await new Promise((resolve) => {
    const check = () => (out.startsWith('ready') ? resolve() : setTimeout(check, 10))
    check()
  })
  await steadyWriter(store, rate, seconds)
  await new Promise((resolve) => child.on('exit', resolve))
  await store.close()
  rmSync(dir, { recursive: true, force: true })
  return JSON.parse(out.slice('ready\n'.length))
}

async function backlogStore(count) {
  const dir = mkdtempSync(join(tmpdir(), 'selene-follow-'))
  const store = await Store.open(dir, { sync: 'manual' })
  const payload = Buffer.alloc(128, 7)
  for (let i = 0; i < count; i++) store.appendSync(payload)
  await store.flush()
  return { dir, store }
}

async function catchUp(count) {
  const { dir, store } = await backlogStore(count)
  let start = now()
  let seen = 0
  for await (const batch of store.followBatches()) {
    for (let i = 0; i < batch.length; i++) seen += batch.payload(i).length > 0 ? 1 : 0
    if (seen === count) break
  }
  const followRate = count / ((now() - start) / 1000)
  start = now()
  seen = 0
  for await (const batch of store.replayBatches()) for (let i = 0; i < batch.length; i++) seen += batch.payload(i).length > 0 ? 1 : 0
  const replayRate = count / ((now() - start) / 1000)
  await store.close()
  rmSync(dir, { recursive: true, force: true })
  return { followRate, replayRate }
}

async function stoppedFollower(count) {
  const dir = mkdtempSync(join(tmpdir(), 'selene-follow-'))
  const store = await Store.open(dir, { sync: 'manual' })
  const batches = store.followBatches()
  const first = batches.next()
  await store.append(Buffer.alloc(128))
  await first
  globalThis.gc?.()
  const before = process.memoryUsage().rss
  const payload = Buffer.alloc(128, 7)
  for (let i = 0; i < count; i++) store.appendSync(payload)
  await store.flush()
  globalThis.gc?.()
  const pending = process.memoryUsage().rss
  let seen = 0
  for await (const batch of batches) {
    seen += batch.length
    if (seen === count) break
  }
  globalThis.gc?.()
  const after = process.memoryUsage().rss
  await store.close()
  rmSync(dir, { recursive: true, force: true })
  return { before, pending, after }
}

const runs = Number(values.runs)
const rate = Number(values.rate)
const seconds = Number(values.seconds)
const backlog = Number(values.backlog)
const mib = (n) => `${(n / 2 ** 20).toFixed(0)} MiB`
const ms = (n) => `${n.toFixed(2)} ms`

const inProcess = []
const crossProcess = []
const catchUps = []
for (let r = 0; r < runs; r++) {
  inProcess.push(await lagInProcess(rate, seconds))
  crossProcess.push(await lagCrossProcess(rate, seconds))
  catchUps.push(await catchUp(backlog))
}
const memory = await stoppedFollower(backlog)
const p = (runsLags, q) => median(runsLags.map((lags) => quantile(lags, q)))
console.log(`| measure (${runs} runs, medians) | figure |`)
console.log('|---|---|')
console.log(`| lag (append call to delivery, the group's fdatasync included), in-process follower, ${rate}/s of 128 B ('always') | p50 ${ms(p(inProcess, 0.5))}, p99 ${ms(p(inProcess, 0.99))} |`)
console.log(`| lag, follower in another process (fs.watch + 500 ms poll) | p50 ${ms(p(crossProcess, 0.5))}, p99 ${ms(p(crossProcess, 0.99))} |`)
const followRate = median(catchUps.map((c) => c.followRate))
const replayRate = median(catchUps.map((c) => c.replayRate))
console.log(`| catch-up over ${backlog.toLocaleString('en')} entries of 128 B | ${Math.round(followRate).toLocaleString('en')} entries/s = ${(followRate / replayRate).toFixed(2)}x replayBatches (${Math.round(replayRate).toLocaleString('en')}/s) |`)
console.log(`| RSS of a follower that stopped reading | ${mib(memory.before)} before, ${mib(memory.pending)} with ${backlog.toLocaleString('en')} entries pending, ${mib(memory.after)} after reading them all |`)
