// Peer benchmarks: the workloads of src/bench/workloads.ts (the CLI's `bench` runs them too) on
// this package and on each peer's driver in drivers/: a hand-written JS framed log, better-sqlite3
// (WAL, synchronous=FULL), classic-level (sync: true), lmdb (awaiting flushed) and plain Node fs
// (writeSync + fdatasyncSync), on the same payloads, each case in a fresh child process; raw Rust
// loops give W1's and W3's limits.
// Usage (from the repository root): npm run bench [-- --quick] [-- --peers=a,b]
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { sizes, w1, w2, w3, w4, w5, w5Kill } from '../src/bench/workloads.js'

const quick = process.argv.includes('--quick')
// W2_WARM=0 runs W2 cold: its timed 25,600 appends take 100-300 ms, and the JIT's first
// optimised code would otherwise land inside the clock. W1 needs no warm-up: 1000 untimed
// appends changed its figures by nothing measurable.
const N = { ...sizes(quick), ...(quick ? {} : { warm: Number(process.env.W2_WARM ?? 200) }) }
const ALL_PEERS = ['selene-persist', 'js-log', 'better-sqlite3', 'classic-level', 'lmdb', 'node-fs']
/** `--peers a,b` runs only those (selene-persist always): for profiling one comparison. */
const only = process.argv.find((a) => a.startsWith('--peers='))?.slice('--peers='.length).split(',')
const PEERS = only ? ALL_PEERS.filter((p) => p === 'selene-persist' || only.includes(p)) : ALL_PEERS
/** Peers with a blocking durable put; classic-level has none, and lmdb's putSync returns before the flush. */
const BLOCKING = new Set(['selene-persist', 'better-sqlite3', 'node-fs'])

/** Every case a child process runs: its name, then the workload it runs on a peer's driver. */
const CASES = {
  'w1-128': (open, dir) => w1(open, dir, N, 128, 'await'),
  'w1-1024': (open, dir) => w1(open, dir, N, 1024, 'await'),
  'w1now-128': (open, dir) => w1(open, dir, N, 128, 'blocking'),
  'w1now-1024': (open, dir) => w1(open, dir, N, 1024, 'blocking'),
  'w1rt-128': (open, dir) => w1(open, dir, N, 128, 'round-trip'),
  w2: (open, dir) => w2(open, dir, N),
  w3: (open, dir) => w3(open, dir, N),
  // Every record made inside the clock, which adds the same ~0.5 us per record to every peer.
  'w3-fresh': (open, dir) => w3(open, dir, N, true),
  w4: (open, dir) => w4(open, dir, N),
  w5: (open, dir) => w5(open, dir),
  'w5-kill': (open, dir) => w5Kill(open, dir, N),
  // selene-persist only: W5's open with the seal removed, a full verified rescan.
  'w5-rescan': async (open, dir) => {
    const db = await open(dir, { durable: false })
    await db.close()
    return { ms: await db.rescan() }
  },
}

const self = fileURLToPath(import.meta.url)
if (process.argv[2] === '--case') {
  const [peer, name, dir] = process.argv.slice(3)
  const { open } = await import(`./drivers/${peer}.mjs`)
  console.log(JSON.stringify(await CASES[name](open, dir)))
  process.exit(0)
}

function child(peer, workload, dir) {
  // The previous case's dirty pages are written back first, not during this one.
  execFileSync('sync')
  const out = execFileSync(process.execPath, [self, '--case', peer, workload, dir, ...(quick ? ['--quick'] : [])], { encoding: 'utf8' })
  return JSON.parse(out.trim().split('\n').pop())
}

/** Each figure is the median of this many runs (the machine is shared and noisy). */
const RUNS = quick ? 1 : 3

/** Run `once` RUNS times; every figure of the result is its median over the runs. */
function median(once) {
  const runs = Array.from({ length: RUNS }, (_, i) => once(i))
  const middle = (values) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)]
  return Object.fromEntries(Object.keys(runs[0]).map((key) => [key, middle(runs.map((r) => r[key]))]))
}

/** Kill a child after it appended and synced more records; then time the recovering open. */
function afterKill(peer, dir) {
  try {
    child(peer, 'w5-kill', dir)
    throw new Error(`${peer}: the w5-kill child was not killed`)
  } catch (error) {
    if (error.signal !== 'SIGKILL') throw error
  }
  return child(peer, 'w5', dir)
}

const fmt = (n) => Math.round(n).toLocaleString('en-US')
const results = {}
const root = mkdtempSync(join(tmpdir(), 'selene-persist-peers-'))
try {
  for (const peer of PEERS) {
    results[peer] = {}
    const round = peer === 'selene-persist' ? ['w1rt-128'] : []
    for (const workload of ['w1-128', 'w1-1024', ...(BLOCKING.has(peer) ? ['w1now-128', 'w1now-1024'] : []), ...round, 'w2']) {
      if (process.stderr.isTTY) process.stderr.write(`\r\x1b[K${peer} ${workload}`)
      results[peer][workload] = median(() => child(peer, workload, mkdtempSync(join(root, `${peer}-${workload}-`))))
    }
    if (process.stderr.isTTY) process.stderr.write(`\r\x1b[K${peer} w3..w5`)
    // W4 and W5 read the data of W3's first run.
    const dirs = Array.from({ length: RUNS }, () => mkdtempSync(join(root, `${peer}-bulk-`)))
    const dropped = (dir, figures) => (rmSync(dir, { recursive: true, force: true }), figures)
    results[peer].w3 = median((i) => (i === 0 ? child(peer, 'w3', dirs[i]) : dropped(dirs[i], child(peer, 'w3', dirs[i]))))
    results[peer].w3fresh = median(() => {
      const fresh = mkdtempSync(join(root, `${peer}-fresh-`))
      return dropped(fresh, child(peer, 'w3-fresh', fresh))
    })
    const [dir] = dirs
    results[peer].w4 = median(() => child(peer, 'w4', dir))
    results[peer].w5 = median(() => child(peer, 'w5', dir))
    if (peer === 'selene-persist') results[peer].rescan = median(() => child(peer, 'w5-rescan', dir))
    results[peer].w5kill = median(() => afterKill(peer, dir))
  }
  if (process.stderr.isTTY) process.stderr.write('\r\x1b[K')
  const rawDir = mkdtempSync(join(root, 'raw-'))
  const cargo = ['run', '--quiet', '--release', '--example', 'fdatasync_loop', '-p', 'selene-persist-engine', '--', rawDir, String(N.single), '128']
  const raw = median(() => JSON.parse(execFileSync('cargo', cargo, { cwd: join(self, '..', '..'), encoding: 'utf8' }).trim()))

  const ours = results['selene-persist']
  // W3's floor: as many bytes as selene-persist's W3 left on disk, written and synced from a raw Rust loop.
  const w3Bytes = ours.w3.bytes
  const floorOf = (bytes) => {
    const args = ['run', '--quiet', '--release', '--example', 'write_floor', '-p', 'selene-persist-engine', '--', rawDir, String(bytes)]
    return median(() => (execFileSync('sync'), JSON.parse(execFileSync('cargo', args, { cwd: join(self, '..', '..'), encoding: 'utf8' }).trim())))
  }
  const fastest = (f) => Math.min(f.writeback, f.burst)
  const floor = floorOf(w3Bytes)
  // The same floor for the JS log's own bytes: what no writer of its frames can beat.
  const jsLog = results['js-log']
  const jsFloor = jsLog ? floorOf(jsLog.w3.bytes) : undefined
  // Databases: what an app would otherwise use. Plain Node fs is the raw floor, shown apart.
  const peers = ['better-sqlite3', 'classic-level', 'lmdb'].filter((p) => results[p])
  const best = (metric, higher = true) => {
    const values = peers.map((p) => [p, metric(results[p])]).filter(([, value]) => value !== undefined)
    return values.length === 0 ? ['none', undefined] : values.reduce((a, b) => ((higher ? b[1] > a[1] : b[1] < a[1]) ? b : a))
  }
  const times = (ourValue, theirs, higher) => (theirs === undefined || theirs === 0 ? 'n/a' : `${(higher ? ourValue / theirs : theirs / ourValue).toFixed(2)}x`)
  const lines = [
    `| workload | ${PEERS.join(' | ')} | vs JS log | vs best database | vs Node fs |`,
    `|---|${PEERS.map(() => '---').join('|')}|---|---|---|`,
  ]
  const row = (name, metric, show, higher = true) => {
    const [peer, theirs] = best(metric, higher)
    const of = (p) => (results[p] ? metric(results[p]) : undefined)
    lines.push(`| ${name} | ${PEERS.map((p) => (metric(results[p]) === undefined ? 'n/a' : show(results[p]))).join(' | ')} | ${times(metric(ours), of('js-log'), higher)} | ${times(metric(ours), theirs, higher)} (${peer}) | ${times(metric(ours), of('node-fs'), higher)} |`)
  }
  row('W1 durable append 128 B, ops/s (p50 ms)', (r) => r['w1-128'].ops, (r) => `${fmt(r['w1-128'].ops)} (${r['w1-128'].p50.toFixed(3)})`)
  row('W1 durable append 1 KiB, ops/s (p50 ms)', (r) => r['w1-1024'].ops, (r) => `${fmt(r['w1-1024'].ops)} (${r['w1-1024'].p50.toFixed(3)})`)
  const now1 = (size) => (r) => r[`w1now-${size}`]?.ops
  const showNow = (size) => (r) => `${fmt(r[`w1now-${size}`].ops)} (${r[`w1now-${size}`].p50.toFixed(3)})`
  row('W1 blocking durable append 128 B, ops/s (p50 ms)', now1(128), showNow(128))
  row('W1 blocking durable append 1 KiB, ops/s (p50 ms)', now1(1024), showNow(1024))
  row('W2 64 concurrent durable writers, ops/s (longest stall ms)', (r) => r.w2.ops, (r) => `${fmt(r.w2.ops)} (${r.w2.stall.toFixed(1)})`)
  row(`W3 bulk ingest ${fmt(N.bulk)} x 128 B, records/s (peak RSS MiB)`, (r) => r.w3.ops, (r) => `${fmt(r.w3.ops)} (${fmt(r.w3.rss)})`)
  row('W3 peak RSS, MiB', (r) => r.w3.rss, (r) => fmt(r.w3.rss), false)
  row('W3 with a fresh Buffer made per record inside the clock, records/s', (r) => r.w3fresh.ops, (r) => fmt(r.w3fresh.ops))
  row('W4 full replay, records/s', (r) => r.w4.ops, (r) => fmt(r.w4.ops))
  row('W5 open after clean close, ms', (r) => r.w5.ms, (r) => r.w5.ms.toFixed(1), false)
  row('W5 open after kill -9, ms', (r) => r.w5kill.ms, (r) => r.w5kill.ms.toFixed(1), false)
  lines.push('')
  lines.push(`W3 split into the ingest loop and the durable flush after it, ms: ${PEERS.map((p) => `${p} ${fmt(results[p].w3.loopMs)} + ${fmt(results[p].w3.flushMs)}`).join(', ')}.`)
  lines.push('')
  const w3Ms = (N.bulk / ours.w3.ops) * 1000
  lines.push(`W3 floor (raw Rust loop writing W3's ${fmt(w3Bytes / 1e6)} MB in 1 MiB writes, then one fdatasync): ${fmt(floor.writeback)} ms starting each MiB's writeback as it goes, ${fmt(floor.burst)} ms in one burst; selene-persist's W3 took ${fmt(w3Ms)} ms, ${(w3Ms / fastest(floor)).toFixed(2)}x the faster floor.`)
  if (jsLog && jsFloor) {
    const jsMs = (N.bulk / jsLog.w3.ops) * 1000
    lines.push('')
    lines.push(`W3 ceiling: a writer that spent no CPU at all and synced once at the end, as W3's flush does, would still take the floor, so against the JS log's ${fmt(jsMs)} ms no writer of selene-persist's ${fmt(w3Bytes / 1e6)} MB can be more than ${(jsMs / fastest(floor)).toFixed(2)}x faster, and no writer of the JS log's own ${fmt(jsLog.w3.bytes / 1e6)} MB (floor ${fmt(fastest(jsFloor))} ms) more than ${(jsMs / fastest(jsFloor)).toFixed(2)}x.`)
  }
  lines.push('')
  lines.push(`W1 awaited \`append\` against the blocking \`appendDurableSync\` in this run: ${(ours['w1-128'].ops / ours['w1now-128'].ops).toFixed(2)}x (128 B), ${(ours['w1-1024'].ops / ours['w1now-1024'].ops).toFixed(2)}x (1 KiB).`)
  lines.push('')
  const us = (ops) => 1e6 / ops
  const added = us(ours['w1-128'].ops) - us(ours['w1now-128'].ops)
  lines.push(`W1 round trip: an awaited \`append\` costs ${fmt(added)} us a call more than the blocking call (${fmt(us(ours['w1now-128'].ops))} us); 0.8x allows ${fmt(us(ours['w1now-128'].ops) / 4)} us. The same awaited call with no fdatasync in it (under 'manual', so neither thread ever waits on the disk) takes ${fmt(us(ours['w1rt-128'].ops))} us end to end.`)
  lines.push('')
  lines.push(`W1 physical limit (raw Rust fdatasync loop, 128 B): ${fmt(raw.appending)} ops/s appending, ${fmt(raw.preallocated)} ops/s preallocated with zeros, ${fmt(raw.fallocated)} ops/s fallocated; selene-persist W1 128 B is ${(ours['w1-128'].ops / raw.preallocated).toFixed(2)}x the preallocated loop awaiting \`append\` and ${(ours['w1now-128'].ops / raw.preallocated).toFixed(2)}x with the blocking \`appendDurableSync\` (${(ours['w1-128'].ops / raw.appending).toFixed(2)}x and ${(ours['w1now-128'].ops / raw.appending).toFixed(2)}x the appending loop).`)
  lines.push('')
  lines.push(`W5 against a full rescan: selene-persist opening W3's data with its seal removed (every frame and payload re-read and checksummed) takes ${ours.rescan.ms.toFixed(1)} ms, so the open after a clean close is ${(ours.rescan.ms / ours.w5.ms).toFixed(0)}x faster and the open after kill -9 ${(ours.rescan.ms / ours.w5kill.ms).toFixed(0)}x.`)
  console.log(lines.join('\n'))
} finally {
  rmSync(root, { recursive: true, force: true })
}
