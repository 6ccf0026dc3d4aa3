// Peer benchmarks: the workloads of src/bench/workloads.ts (the CLI's `bench` runs them too) on
// this package and on each peer's driver in drivers/: a hand-written JS framed log (js-log, and
// js-group, the same log with a strong group commit, for W1 and W2), better-sqlite3 (WAL,
// synchronous=FULL), classic-level (sync: true), lmdb (awaiting flushed) and plain Node fs
// (writeSync + fdatasyncSync), on the same payloads, each case in a fresh child process, and
// the references issue 29 names: the W3 floor (drivers/w3-floor.mjs), the group-commit limit
// (a raw Rust pwrite + fdatasync loop) and the memory of a 4 x 200 MiB appendBatch.
// Every workload runs interleaved, round by round: W1 and W2 in ROUNDS rounds (ours, each peer,
// ours again), the rest in 3; each ratio is the median of its per-round ratios.
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
const ALL_PEERS = ['selene-persist', 'js-log', 'js-group', 'better-sqlite3', 'classic-level', 'lmdb', 'node-fs']
const OURS = 'selene-persist'
/** Peers that run only W1 and W2 (js-group's bulk path and replay are js-log's). */
const DURABLE_ONLY = new Set(['js-group'])
/** `--peers a,b` runs only those (selene-persist always): for profiling one comparison. */
const only = process.argv.find((a) => a.startsWith('--peers='))?.slice('--peers='.length).split(',')
const PEERS = only ? ALL_PEERS.filter((p) => p === OURS || only.includes(p)) : ALL_PEERS
const BULK = PEERS.filter((p) => !DURABLE_ONLY.has(p))
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

/** Each bulk figure is the median of this many runs (the machine is shared and noisy), */
const RUNS = quick ? 1 : 3
/** and each W1 and W2 figure of this many rounds (fdatasync moves 2-3x from minute to minute). */
const ROUNDS = quick ? 1 : Math.max(5, Number(process.env.ROUNDS ?? 5))

const middle = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]
/** Every figure of `runs` (objects of numbers) replaced by its median over them. */
const medianOf = (runs) => Object.fromEntries(Object.keys(runs[0]).map((key) => [key, middle(runs.map((r) => r[key]))]))
/** Run `once` RUNS times; every figure of the result is its median over the runs. */
const median = (once) => medianOf(Array.from({ length: RUNS }, (_, i) => once(i)))
const mean = (a, b) => Object.fromEntries(Object.keys(a).map((key) => [key, (a[key] + b[key]) / 2]))

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
const progress = (text) => process.stderr.isTTY && process.stderr.write(`\r\x1b[K${text}`)
const cargoExample = (name, ...args) =>
  JSON.parse(execFileSync('cargo', ['run', '--quiet', '--release', '--example', name, '-p', 'selene-persist-engine', '--', ...args], { cwd: join(self, '..', '..'), encoding: 'utf8' }).trim())
/** W1's and W2's cases on a peer. */
const durableCases = (peer) => ['w1-128', 'w1-1024', ...(BLOCKING.has(peer) ? ['w1now-128', 'w1now-1024'] : []), ...(peer === OURS ? ['w1rt-128'] : []), 'w2']
/** What each round measured: rounds[r][peer][case]; `w3-floor` and `raw` (the Rust fdatasync loop) are references. */
const rounds = Array.from({ length: Math.max(ROUNDS, RUNS) }, () => Object.fromEntries([...PEERS, 'w3-floor', 'raw'].map((p) => [p, {}])))
const root = mkdtempSync(join(tmpdir(), 'selene-persist-peers-'))
try {
  const rawDir = mkdtempSync(join(root, 'raw-'))
  for (let r = 0; r < ROUNDS; r++) {
    const round = rounds[r]
    for (const workload of durableCases(OURS)) {
      progress(`round ${r + 1}/${ROUNDS} ${workload}`)
      const once = (peer) => child(peer, workload, mkdtempSync(join(root, `${peer}-${workload}-`)))
      // Ours, each peer, ours again: our figure of the round is the mean of the two.
      const before = once(OURS)
      for (const peer of PEERS) if (peer !== OURS && durableCases(peer).includes(workload)) round[peer][workload] = once(peer)
      // The group-commit limit (and W1's physical limit): raw pwrite + fdatasync loops.
      if (workload === 'w2') round.raw.loop = (execFileSync('sync'), cargoExample('fdatasync_loop', rawDir, String(N.single), '128'))
      round[OURS][workload] = mean(before, once(OURS))
    }
  }
  // W4 and W5 read the data of W3's first run; every other run's directory is dropped.
  const kept = Object.fromEntries(BULK.map((p) => [p, mkdtempSync(join(root, `${p}-bulk-`))]))
  const dropped = (dir, figures) => (rmSync(dir, { recursive: true, force: true }), figures)
  const fresh = (peer, name) => {
    const dir = mkdtempSync(join(root, `${peer}-${name}-`))
    return dropped(dir, child(peer, name, dir))
  }
  const bulk = (key, peers, run) => {
    for (let r = 0; r < RUNS; r++) {
      progress(`${key} run ${r + 1}/${RUNS}`)
      for (const peer of peers) rounds[r][peer][key] = run(peer, r)
    }
  }
  bulk('w3', [...BULK, 'w3-floor'], (peer, r) => (r === 0 && kept[peer] ? child(peer, 'w3', kept[peer]) : fresh(peer, 'w3')))
  bulk('w3fresh', BULK, (peer) => fresh(peer, 'w3-fresh'))
  bulk('w4', BULK, (peer) => child(peer, 'w4', kept[peer]))
  bulk('w5', BULK, (peer) => child(peer, 'w5', kept[peer]))
  bulk('rescan', [OURS], (peer) => child(peer, 'w5-rescan', kept[peer]))
  bulk('w5kill', BULK, (peer) => afterKill(peer, kept[peer]))
  // The memory a 4 x 200 MiB appendBatch adds (probes/large-batch.mjs), zstd tried and off.
  progress('appendBatch')
  const probe = join(self, '..', 'probes', 'large-batch.mjs')
  const mib = quick ? 20 : 200
  const largeBatch = (mode) => Array.from({ length: RUNS }, () => JSON.parse(execFileSync(process.execPath, [probe, '--child', mode, '--count', '4', '--mib', String(mib)], { encoding: 'utf8' })))
  const batch = { compressed: largeBatch('compressed'), off: largeBatch('off') }
  progress('')

  /** results[peer][case]: every figure's median over the rounds that measured it. */
  const results = Object.fromEntries(
    Object.keys(rounds[0]).map((p) => [p, Object.fromEntries([...new Set(rounds.flatMap((round) => Object.keys(round[p])))].map((key) => [key, medianOf(rounds.map((round) => round[p][key]).filter(Boolean))]))]),
  )
  const ours = results[OURS]
  const jsLog = results['js-log']
  const raw = results.raw.loop
  // Rust's floor for W3: as many bytes as a store's W3 left on disk, written and synced with no JS at all.
  const floorOf = (bytes) => median(() => (execFileSync('sync'), cargoExample('write_floor', rawDir, String(bytes))))
  const fastest = (f) => Math.min(f.writeback, f.burst)
  const w3Bytes = ours.w3.bytes
  const floor = floorOf(w3Bytes)
  const jsFloor = jsLog ? floorOf(jsLog.w3.bytes) : undefined

  /** The median, the range and the count of `values`. */
  const summary = (values) => (values.length === 0 ? undefined : { median: middle(values), min: Math.min(...values), max: Math.max(...values), n: values.length })
  /** `f` of every round that measured it. */
  const perRound = (f) => summary(rounds.map(f).filter((x) => x !== undefined && Number.isFinite(x)))
  /** Peer `a` against peer `b` by `metric`, round by round (`b / a` where lower is better). */
  const ratio = (metric, a, b, higher = true) =>
    perRound((round) => {
      const [x, y] = [metric(round[a]), metric(round[b])]
      return x === undefined || y === undefined ? undefined : higher ? x / y : y / x
    })
  const times = (q) => (q === undefined ? 'n/a' : `${q.median.toFixed(2)}x`)
  const spread = (q) => (q === undefined ? 'n/a' : `${q.median.toFixed(2)}x (${q.min.toFixed(2)}-${q.max.toFixed(2)}, ${q.n} rounds)`)
  // Databases: what an app would otherwise use. Plain Node fs is the raw floor, shown apart.
  const peers = ['better-sqlite3', 'classic-level', 'lmdb'].filter((p) => results[p])
  const best = (metric, higher = true) => {
    const values = peers.map((p) => [p, metric(results[p])]).filter(([, value]) => value !== undefined)
    return values.length === 0 ? ['none', undefined] : values.reduce((a, b) => ((higher ? b[1] > a[1] : b[1] < a[1]) ? b : a))
  }
  const lines = [
    `| workload | ${PEERS.join(' | ')} | vs JS log | vs strong JS group commit | vs best database | vs Node fs |`,
    `|---|${PEERS.map(() => '---').join('|')}|---|---|---|---|`,
  ]
  const row = (name, metric, show, higher = true) => {
    const [peer] = best(metric, higher)
    const vs = (p) => (results[p] ? times(ratio(metric, OURS, p, higher)) : 'n/a')
    lines.push(`| ${name} | ${PEERS.map((p) => (metric(results[p]) === undefined ? 'n/a' : show(results[p]))).join(' | ')} | ${vs('js-log')} | ${vs('js-group')} | ${vs(peer)} (${peer}) | ${vs('node-fs')} |`)
  }
  const w1 = (key) => (r) => r[key]?.ops
  const showW1 = (key) => (r) => `${fmt(r[key].ops)} (${r[key].p50.toFixed(3)})`
  row('W1 durable append 128 B, ops/s (p50 ms)', w1('w1-128'), showW1('w1-128'))
  row('W1 durable append 1 KiB, ops/s (p50 ms)', w1('w1-1024'), showW1('w1-1024'))
  row('W1 blocking durable append 128 B, ops/s (p50 ms)', w1('w1now-128'), showW1('w1now-128'))
  row('W1 blocking durable append 1 KiB, ops/s (p50 ms)', w1('w1now-1024'), showW1('w1now-1024'))
  row('W2 64 concurrent durable writers, ops/s (longest stall ms)', (r) => r.w2?.ops, (r) => `${fmt(r.w2.ops)} (${r.w2.stall.toFixed(1)})`)
  row(`W3 bulk ingest ${fmt(N.bulk)} x 128 B, records/s (peak RSS MiB)`, (r) => r.w3?.ops, (r) => `${fmt(r.w3.ops)} (${fmt(r.w3.rss)})`)
  row('W3 peak RSS, MiB', (r) => r.w3?.rss, (r) => fmt(r.w3.rss), false)
  row('W3 bytes on disk / payload bytes', (r) => r.w3 && r.w3.bytes / (N.bulk * 128), (r) => `${(r.w3.bytes / (N.bulk * 128)).toFixed(2)}x`, false)
  row('W3 with a fresh Buffer made per record inside the clock, records/s', (r) => r.w3fresh?.ops, (r) => fmt(r.w3fresh.ops))
  row('W4 full replay, records/s', (r) => r.w4?.ops, (r) => fmt(r.w4.ops))
  row('W5 open after clean close, ms', (r) => r.w5?.ms, (r) => r.w5.ms.toFixed(1), false)
  row('W5 open after kill -9, ms', (r) => r.w5kill?.ms, (r) => r.w5kill.ms.toFixed(1), false)
  lines.push('')
  lines.push(`Raw figures are medians over the rounds (W1 and W2: ${ROUNDS} rounds, ours run before and after the peers in each, its figure the mean of the two; the rest: ${RUNS}); each ratio is the median of the per-round ratios.`)
  lines.push('')
  lines.push(`W3 split into the ingest loop and the durable flush after it, ms: ${BULK.map((p) => `${p} ${fmt(results[p].w3.loopMs)} + ${fmt(results[p].w3.flushMs)}`).join(', ')}; the W3 floor ${fmt(results['w3-floor'].w3.loopMs)} + ${fmt(results['w3-floor'].w3.flushMs)}.`)
  lines.push('')
  const w3Ms = (N.bulk / ours.w3.ops) * 1000
  lines.push(`Rust's W3 floor (a raw Rust loop writing W3's ${fmt(w3Bytes / 1e6)} MB in 1 MiB writes, then one fdatasync, no JS at all): ${fmt(floor.writeback)} ms starting each MiB's writeback as it goes, ${fmt(floor.burst)} ms in one burst; selene-persist's W3 took ${fmt(w3Ms)} ms, ${(w3Ms / fastest(floor)).toFixed(2)}x the faster floor.`)
  if (jsLog && jsFloor) {
    const jsMs = (N.bulk / jsLog.w3.ops) * 1000
    lines.push('')
    lines.push(`W3 ceiling: a writer that spent no CPU at all and synced once at the end, as W3's flush does, would still take the floor, so against the JS log's ${fmt(jsMs)} ms no writer of selene-persist's ${fmt(w3Bytes / 1e6)} MB can be more than ${(jsMs / fastest(floor)).toFixed(2)}x faster, and no writer of the JS log's own ${fmt(jsLog.w3.bytes / 1e6)} MB (floor ${fmt(fastest(jsFloor))} ms) more than ${(jsMs / fastest(jsFloor)).toFixed(2)}x.`)
  }
  lines.push('')
  const us = (ops) => 1e6 / ops
  const added = us(ours['w1-128'].ops) - us(ours['w1now-128'].ops)
  lines.push(`W1 round trip: an awaited \`append\` costs ${fmt(added)} us a call more than the blocking call (${fmt(us(ours['w1now-128'].ops))} us); 0.8x allows ${fmt(us(ours['w1now-128'].ops) / 4)} us. The same awaited call with no fdatasync in it (under 'manual', so neither thread ever waits on the disk) takes ${fmt(us(ours['w1rt-128'].ops))} us end to end.`)
  lines.push('')
  lines.push(`W1 physical limit (raw Rust fdatasync loop, 128 B): ${fmt(raw.appending)} ops/s appending, ${fmt(raw.preallocated)} ops/s preallocated with zeros (p50 ${raw.p50_us.toFixed(0)} us), ${fmt(raw.fallocated)} ops/s fallocated; selene-persist W1 128 B is ${(ours['w1-128'].ops / raw.preallocated).toFixed(2)}x the preallocated loop awaiting \`append\` and ${(ours['w1now-128'].ops / raw.preallocated).toFixed(2)}x with the blocking \`appendDurableSync\` (${(ours['w1-128'].ops / raw.appending).toFixed(2)}x and ${(ours['w1now-128'].ops / raw.appending).toFixed(2)}x the appending loop).`)
  lines.push('')
  lines.push(`W5 against a full rescan: selene-persist opening W3's data with its seal removed (every frame and payload re-read and checksummed) takes ${ours.rescan.ms.toFixed(1)} ms, so the open after a clean close is ${(ours.rescan.ms / ours.w5.ms).toFixed(0)}x faster and the open after kill -9 ${(ours.rescan.ms / ours.w5kill.ms).toFixed(0)}x.`)

  // Issue 29's goals, each from this run.
  const limit = (round) => round.raw.loop && N.writers / (round.raw.loop.p50_us / 1e6)
  const payload = N.bulk * 128
  const growth = (runs) => summary(runs.map((b) => b.growth / b.bytes))
  const goals = [
    ['W3 `appendSync` vs the W3 floor', '>= 0.85x', ratio((r) => r.w3?.ops, OURS, 'w3-floor'), (x) => x >= 0.85, `${fmt(ours.w3.ops)} vs ${fmt(results['w3-floor'].w3.ops)} records/s`],
    ['W3 `appendSync` vs the JS framed log', '>= 2x', ratio((r) => r.w3?.ops, OURS, 'js-log'), (x) => x >= 2, jsLog && `${fmt(ours.w3.ops)} vs ${fmt(jsLog.w3.ops)} records/s`],
    ['W3 bytes on disk / payload bytes', '<= 1.1x', perRound((round) => round[OURS].w3 && round[OURS].w3.bytes / payload), (x) => x <= 1.1, `${fmt(ours.w3.bytes)} B for ${fmt(payload)} B; JS log ${jsLog ? (jsLog.w3.bytes / payload).toFixed(2) : 'n/a'}x`],
    ['W2 vs the group-commit limit', '>= 0.6x', perRound((round) => round[OURS].w2 && round[OURS].w2.ops / limit(round)), (x) => x >= 0.6, `${fmt(ours.w2.ops)} vs ${fmt(N.writers / (raw.p50_us / 1e6))} ops/s (${N.writers} / p50 ${raw.p50_us.toFixed(0)} us)`],
    ['W2 vs the strong JS group commit', '>= 2x', ratio((r) => r.w2?.ops, OURS, 'js-group'), (x) => x >= 2, results['js-group']?.w2 && `${fmt(ours.w2.ops)} vs ${fmt(results['js-group'].w2.ops)} ops/s`],
    ['W4 replay vs the JS framed log', '>= 4x', ratio((r) => r.w4?.ops, OURS, 'js-log'), (x) => x >= 4, jsLog && `${fmt(ours.w4.ops)} vs ${fmt(jsLog.w4.ops)} records/s`],
    ['W1 awaited `append` vs `appendDurableSync`', '>= 0.75x', perRound((round) => round[OURS]['w1-128'] && round[OURS]['w1-128'].ops / round[OURS]['w1now-128'].ops), (x) => x >= 0.75, `${fmt(ours['w1-128'].ops)} vs ${fmt(ours['w1now-128'].ops)} ops/s`],
    [`\`appendBatch\` 4 x ${mib} MiB, RSS growth / payload`, '<= 1.3x', growth(batch.compressed), (x) => x <= 1.3, `zstd tried (the default): ${fmt(middle(batch.compressed.map((b) => b.growth)) / 2 ** 20)} MiB for ${fmt(batch.compressed[0].bytes / 2 ** 20)} MiB; compression off: ${times(growth(batch.off))}`],
  ]
  lines.push('')
  lines.push('| goal (issue 29) | target | measured: median of per-round ratios (range, rounds or runs) | met | raw figures (medians) |')
  lines.push('|---|---|---|---|---|')
  for (const [name, target, q, ok, figures] of goals) lines.push(`| ${name} | ${target} | ${spread(q)} | ${q === undefined ? 'n/a' : ok(q.median) ? 'met' : 'not met'} | ${figures ?? 'n/a'} |`)
  console.log(lines.join('\n'))
} finally {
  rmSync(root, { recursive: true, force: true })
}
