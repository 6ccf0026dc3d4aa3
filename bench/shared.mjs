// Sharing a store between processes (issue 28's "Measure"), real processes, one run side by side:
// - throughput: 4 processes x 16 concurrent writers on one store opened `shared` ('always',
//   128 B), against (a) 64 concurrent writers in one process on a store of its own and (b)
//   better-sqlite3, 4 processes each inserting as fast as it can (WAL, synchronous=FULL, a
//   busy_timeout). Interleaved round by round (ours, each peer, ours again; our figure of a
//   round is the mean of its two runs); raw figures are medians over the rounds, each ratio the
//   median of the per-round ratios. Latency p50/p99 of the shared store in its owner and in
//   its clients (pooled).
// - failover: 4 processes append to a shared store; the owner is killed (SIGKILL, by pid) and
//   each client times the kill to its first acknowledged append from the new owner.
// Every process opens the store itself, says it is ready, and starts when told; the windows are
// aligned on the system clock (`wall()`: comparable across processes of one host, unlike
// process.hrtime).
// Run (after `npm run build`): node bench/shared.mjs [--rounds 5] [--seconds 3] [--failover-rounds 30]
//   [--skip-throughput] [--skip-failover]
//   node bench/shared.mjs --once [--cpu-prof DIR]: one run of the shared case alone (to profile it; with
//   --cpu-prof, a CPU profile of each of its processes in DIR)
import { execFileSync, fork } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const self = fileURLToPath(import.meta.url)
/**
 * The system clock in ms with sub-ms precision, comparable between processes of one host and
 * with the entries' timestamps: the monotonic clock from the instant Date.now() last stepped a
 * millisecond, found when `anchor()` is called (a process's time origin drifts from the system
 * clock by some ms a minute).
 */
let base = 0
function anchor() {
  const start = Date.now()
  let now
  while ((now = Date.now()) === start);
  base = now - performance.now()
}
anchor()
const wall = () => base + performance.now()
const PAYLOAD = 128
const PROCESSES = 4
const WRITERS = 16

// ---------------------------------------------------------------------------------------------
// The child processes: one workload each, driven by the parent's messages.

/** A message from the parent, awaited. */
function next(type) {
  return new Promise((resolve) => {
    const on = (message) => {
      if (message.type !== type) return
      process.off('message', on)
      resolve(message)
    }
    process.on('message', on)
  })
}

const until = (at) => new Promise((resolve) => setTimeout(resolve, Math.max(0, at - wall())))

async function child(spec) {
  // A parent gone (killed, interrupted) takes its children with it.
  const orphaned = () => process.exit(1)
  process.on('disconnect', orphaned)
  if (spec.kind === 'sqlite') return sqliteChild(spec, orphaned)
  const { Store } = await import('../index.js')
  const shared = spec.kind === 'shared' ? (spec.producer ? { producer: spec.producer } : true) : undefined
  const store = await Store.open(spec.dir, { sync: 'always', ...(shared ? { shared } : {}) })
  process.send({ type: 'ready', role: store.role ?? 'alone' })
  const { at } = await next('start')
  const result = spec.failover ? await failoverWriters(store, spec, at) : await timedWriters(store, spec, at)
  const { entries, groups, fdatasyncs, groupSize } = store.stats()
  process.send({ type: 'result', role: store.role ?? 'alone', ...result, stats: { entries, groups, fdatasyncs, groupSize } })
  await next('close')
  await store.close()
  process.off('disconnect', orphaned)
  process.disconnect()
}

/** This process's CPU time (every thread's, user and system) since `since`, and `appends`. */
const cpuOf = (since, appends) => {
  const { user, system } = process.cpuUsage(since)
  return { cpuUs: user + system, appends }
}

/** `spec.writers` writers, each awaiting its own append; counts and times the appends that end in the window. */
async function timedWriters(store, spec, at) {
  const from = at + spec.warmMs
  const to = from + spec.ms
  const latencies = []
  let n = 0
  await until(at)
  const cpu = process.cpuUsage()
  await Promise.all(
    Array.from({ length: spec.writers }, async () => {
      for (;;) {
        const t = wall()
        await store.append(Buffer.alloc(PAYLOAD, n++ % 251))
        const done = wall()
        if (done >= to) return
        if (done >= from) latencies.push(done - t)
      }
    }),
  )
  return { count: latencies.length, latencies: Float64Array.from(latencies), ...cpuOf(cpu, n) }
}

/**
 * Writers appending until told the owner was killed, then until `spec.after` appends were
 * acknowledged since (or `spec.patienceMs` passed): the wall time and sequence of every
 * acknowledgement after the kill, and the failures by message.
 */
async function failoverWriters(store, spec, at) {
  const acks = []
  const errors = {}
  let killedAt = Infinity
  let since = 0
  let stop = false
  let finish
  const done = new Promise((resolve) => (finish = () => ((stop = true), resolve())))
  next('killed').then((message) => {
    killedAt = message.at
    setTimeout(finish, spec.patienceMs).unref()
  })
  await until(at)
  const writers = Array.from({ length: spec.writers }, async () => {
    while (!stop) {
      try {
        const seq = await store.append(Buffer.alloc(PAYLOAD, 7))
        const t = wall()
        acks.push(t, seq)
        if (t > killedAt && ++since >= spec.after) finish()
      } catch (error) {
        const key = `${error.code}: ${error.message}`.replace(/\d+/g, 'N').slice(0, 200)
        errors[key] = (errors[key] ?? 0) + 1
      }
    }
  })
  await done
  await Promise.all(writers)
  const after = []
  for (let i = 0; i < acks.length; i += 2) if (acks[i] > killedAt) after.push(acks[i], acks[i + 1])
  return { acks: Float64Array.from(after), errors }
}

/** One better-sqlite3 connection inserting in autocommit as fast as it can; same window. */
async function sqliteChild(spec, orphaned) {
  const { default: Database } = await import('better-sqlite3')
  const db = new Database(join(spec.dir, 'db.sqlite'), { timeout: 30_000 })
  db.pragma('synchronous = FULL')
  const insert = db.prepare('INSERT INTO log (v) VALUES (?)')
  process.send({ type: 'ready', role: 'sqlite' })
  const { at } = await next('start')
  const from = at + spec.warmMs
  const to = from + spec.ms
  const latencies = []
  await until(at)
  const cpu = process.cpuUsage()
  let n = 0
  for (; ; n++) {
    const t = wall()
    insert.run(Buffer.alloc(PAYLOAD, n % 251))
    const done = wall()
    if (done >= to) break
    if (done >= from) latencies.push(done - t)
  }
  process.send({ type: 'result', role: 'sqlite', count: latencies.length, latencies: Float64Array.from(latencies), ...cpuOf(cpu, n + 1) })
  await next('close')
  db.close()
  process.off('disconnect', orphaned)
  process.disconnect()
}

// ---------------------------------------------------------------------------------------------
// The parent.

function flag(name, fallback) {
  const i = process.argv.indexOf(`--${name}`)
  return i < 0 ? fallback : process.argv[i + 1]
}

/** Children started together on one workload; `run` drives them once all are ready. */
async function group(specs, run, execArgv = []) {
  const children = specs.map((spec) => fork(self, ['--child', JSON.stringify(spec)], { serialization: 'advanced', execArgv }))
  const inbox = children.map(() => [])
  const waiting = children.map(() => [])
  const exited = children.map((c) => new Promise((resolve) => c.once('exit', (code, signal) => resolve({ code, signal }))))
  const failed = Promise.all(
    children.map((c, i) =>
      exited[i].then(({ code, signal }) => {
        if (code !== 0 && !c.expectedExit) throw new Error(`child ${i} (${JSON.stringify(specs[i].kind)}) exited ${code ?? signal}`)
      }),
    ),
  )
  failed.catch(() => {}) // raced by every receive; reported there
  children.forEach((c, i) =>
    c.on('message', (message) => {
      const w = waiting[i].findIndex((x) => x.type === message.type)
      if (w >= 0) waiting[i].splice(w, 1)[0].resolve(message)
      else inbox[i].push(message)
    }),
  )
  /** The next message of `type` from child `i`. */
  const receive = (i, type) => {
    const k = inbox[i].findIndex((m) => m.type === type)
    if (k >= 0) return Promise.resolve(inbox[i].splice(k, 1)[0])
    return Promise.race([new Promise((resolve) => waiting[i].push({ type, resolve })), failed.then(() => Promise.reject(new Error(`child ${i} exited before sending ${type}`)))])
  }
  try {
    const ready = await Promise.all(children.map((_, i) => receive(i, 'ready')))
    const out = await run({ children, ready, receive, exited })
    return out
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) process.kill(c.pid, 'SIGKILL')
    await Promise.allSettled(exited)
  }
}

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
const median = (xs) => quantile([...xs].sort((a, b) => a - b), 0.5)
const sortedOf = (arrays) => Float64Array.from(arrays.flatMap((a) => [...a])).sort()

/** Start every child together; gather results; close the clients before the owner (no takeover). */
async function timed({ children, ready, receive, exited }, windowMs) {
  const at = wall() + 100
  for (const c of children) c.send({ type: 'start', at })
  const results = await Promise.all(children.map((_, i) => receive(i, 'result')))
  const order = children.map((_, i) => i).sort((i, j) => (ready[i].role === 'owner') - (ready[j].role === 'owner'))
  for (const i of order) {
    children[i].send({ type: 'close' })
    await exited[i]
  }
  const count = results.reduce((sum, r) => sum + r.count, 0)
  const by = (pick) => sortedOf(results.filter((_, i) => pick(ready[i].role)).map((r) => r.latencies))
  const figures = (sorted) => (sorted.length ? { p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99) } : undefined)
  const appends = results.reduce((sum, r) => sum + r.appends, 0)
  const cpu = (pick) => results.filter((_, i) => pick(ready[i].role)).reduce((sum, r) => sum + r.cpuUs, 0) / appends
  const committer = results.find((_, i) => ready[i].role !== 'client')?.stats
  return { rate: count / (windowMs / 1000), committer, cpu: cpu(() => true), ownerCpu: cpu((r) => r === 'owner'), all: figures(by(() => true)), owner: figures(by((r) => r === 'owner')), client: figures(by((r) => r === 'client')) }
}

async function inDir(prefix, body) {
  execFileSync('sync') // the previous case's dirty pages are written back first, not during this one
  const dir = mkdtempSync(join(tmpdir(), `selene-persist-shared-${prefix}-`))
  try {
    return await body(dir)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

async function main() {
  const rounds = Math.max(5, Number(flag('rounds', 5)))
  const seconds = Number(flag('seconds', 3))
  const failoverRounds = Number(flag('failover-rounds', 30))
  const profileDir = flag('cpu-prof', undefined)
  const ms = seconds * 1000
  const warmMs = 500
  const load = [loadavg()[0]]
  console.log(`# bench/shared.mjs, ${new Date().toISOString()}, node ${process.version}, load average ${load[0].toFixed(2)}`)

  const CASES = {
    shared: (dir) =>
      group(
        Array.from({ length: PROCESSES }, () => ({ kind: 'shared', dir, writers: WRITERS, ms, warmMs })),
        (g) => {
          const owners = g.ready.filter((r) => r.role === 'owner').length
          if (owners !== 1) throw new Error(`${owners} owners`)
          return timed(g, ms)
        },
        profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [],
      ),
    'one process': (dir) => group([{ kind: 'alone', dir, writers: PROCESSES * WRITERS, ms, warmMs }], (g) => timed(g, ms)),
    'better-sqlite3': async (dir) => {
      const { default: Database } = await import('better-sqlite3')
      const db = new Database(join(dir, 'db.sqlite'))
      db.pragma('journal_mode = WAL')
      db.exec('CREATE TABLE log (k INTEGER PRIMARY KEY, v BLOB)')
      db.close()
      return group(
        Array.from({ length: PROCESSES }, () => ({ kind: 'sqlite', dir, ms, warmMs })),
        (g) => timed(g, ms),
      )
    },
  }
  const PEERS = ['one process', 'better-sqlite3']
  if (profileDir || process.argv.includes('--once')) {
    // One run of the shared case alone (to profile it), a CPU profile of each process in profileDir if given.
    console.log(await inDir('shared', CASES.shared))
    return
  }

  if (!process.argv.includes('--skip-throughput')) {
    const perRound = []
    for (let r = 0; r < rounds; r++) {
      const round = {}
      const before = await inDir('shared', CASES.shared)
      for (const peer of PEERS) round[peer] = await inDir(peer.replace(/\W/g, ''), CASES[peer])
      const again = await inDir('shared', CASES.shared)
      round.shared = { rate: (before.rate + again.rate) / 2, runs: [before, again] }
      perRound.push(round)
      const line = [`round ${r + 1}/${rounds}: shared ${fmt(before.rate)} / ${fmt(again.rate)}`, ...PEERS.map((p) => `${p} ${fmt(round[p].rate)}`)]
      console.log(`${line.join(', ')} appends/s (load ${loadavg()[0].toFixed(2)})`)
    }
    load.push(loadavg()[0])
    const lat = (pick) => {
      const xs = perRound.flatMap(pick).filter(Boolean)
      return xs.length ? `${median(xs.map((x) => x.p50)).toFixed(2)} / ${median(xs.map((x) => x.p99)).toFixed(2)}` : ''
    }
    console.log(`\n4 processes x ${WRITERS} writers, 'always', ${PAYLOAD} B, ${seconds} s a run after ${warmMs} ms of warm-up, ${rounds} rounds (load average ${load[0].toFixed(2)} at the start, ${load[1].toFixed(2)} at the end)\n`)
    // CPU: every thread of every process of the run, per append; group: the committer's entries per fdatasync (p50).
    const extra = (runs) => `${median(runs.map((x) => x.cpu)).toFixed(1)} | ${median(runs.map((x) => x.committer.groupSize.p50))}`
    console.log('| case | appends/s (median) | latency p50 / p99 ms | CPU µs / append | group p50 | shared / it, median of rounds (range) |')
    console.log('|---|---|---|---|---|---|')
    const sharedRuns = (pick) => (round) => round.shared.runs.map(pick)
    console.log(`| shared, 4 processes x ${WRITERS} writers | ${fmt(median(perRound.map((r) => r.shared.rate)))} | owner ${lat(sharedRuns((x) => x.owner))}; clients ${lat(sharedRuns((x) => x.client))} | ${extra(perRound.flatMap((r) => r.shared.runs))} | |`)
    for (const peer of PEERS) {
      const ratios = perRound.map((r) => r.shared.rate / r[peer].rate)
      const range = `${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)}`
      const name = peer === 'one process' ? `one process, ${PROCESSES * WRITERS} writers, not shared` : `better-sqlite3, ${PROCESSES} processes, WAL, synchronous=FULL`
      const runs = perRound.map((r) => r[peer])
      const more = peer === 'one process' ? extra(runs) : `${median(runs.map((x) => x.cpu)).toFixed(1)} | 1`
      console.log(`| ${name} | ${fmt(median(runs.map((x) => x.rate)))} | ${lat((r) => [r[peer].all])} | ${more} | ${median(ratios).toFixed(2)}x (${range}) |`)
    }
  }

  if (!process.argv.includes('--skip-failover') && failoverRounds > 0) {
    const start = loadavg()[0]
    const rounds = []
    for (let r = 0; r < failoverRounds; r++) {
      const t0 = performance.now()
      anchor()
      rounds.push(await inDir('failover', (dir) => failover(dir, r)))
      rounds.at(-1).seconds = (performance.now() - t0) / 1000
      const last = rounds.at(-1)
      console.log(`failover ${r + 1}/${failoverRounds}: first ack ${last.first.toFixed(1)} ms (each client: ${last.clients.map((c) => c.toFixed(1)).join(', ')}; new owner ${last.newOwner.toFixed(1)}), stale acks ${last.stale}, errors ${JSON.stringify(last.errors)}, ${last.seconds.toFixed(1)} s (load ${loadavg()[0].toFixed(2)})`)
    }
    const firsts = Float64Array.from(rounds.map((r) => r.first)).sort()
    const all = Float64Array.from(rounds.flatMap((r) => r.clients)).sort()
    const owners = Float64Array.from(rounds.map((r) => r.newOwner)).sort()
    const q = (sorted) => `p50 ${quantile(sorted, 0.5).toFixed(1)} ms, p99 ${quantile(sorted, 0.99).toFixed(1)} ms (max ${sorted.at(-1).toFixed(1)})`
    console.log(`\nfailover, kill -9 of the owner while ${PROCESSES} processes x ${WRITERS} writers append, ${failoverRounds} rounds (load average ${start.toFixed(2)} at the start, ${loadavg()[0].toFixed(2)} at the end):`)
    console.log(`- the first acknowledged append of any client: ${q(firsts)}`)
    console.log(`- each client's first (${all.length}): ${q(all)}`)
    console.log(`- the new owner's first (${owners.length}): ${q(owners)}`)
    const failed = {}
    for (const round of rounds) for (const [code, n] of Object.entries(round.errors)) failed[code] = (failed[code] ?? 0) + n
    console.log(`- appends failed: ${JSON.stringify(failed)}, in ${rounds.filter((r) => Object.keys(r.errors).length).length} of ${rounds.length} rounds; the dead owner's answers read after the kill: ${rounds.reduce((sum, r) => sum + r.stale, 0)}`)
  }
}

/**
 * One failover round: 4 processes append (stamped as idempotent producers, so appends in flight
 * are retried rather than failed); once all are appending the owner is killed; each client
 * reports every acknowledgement after the kill with its sequence. An acknowledgement counts as
 * the new owner's when its sequence is past the last entry the dead owner made durable: the
 * last whose timestamp (the owner's wall clock at commit) is before the kill. The others are
 * the dead owner's answers, sent before it died and read after the clock started.
 */
async function failover(dir, round) {
  const specs = Array.from({ length: PROCESSES }, (_, i) => ({ kind: 'shared', dir, writers: WRITERS, failover: true, producer: round * PROCESSES + i + 1, after: 200, patienceMs: 35_000 }))
  const { killedAt, results, roles } = await group(specs, async ({ children, ready, receive, exited }) => {
    const owner = ready.findIndex((r) => r.role === 'owner')
    const at = wall() + 100
    for (const c of children) c.send({ type: 'start', at })
    await until(at + 300)
    children[owner].expectedExit = true
    const killedAt = wall()
    process.kill(children[owner].pid, 'SIGKILL')
    const clients = children.map((_, i) => i).filter((i) => i !== owner)
    for (const i of clients) children[i].send({ type: 'killed', at: killedAt })
    const results = await Promise.all(clients.map((i) => receive(i, 'result')))
    // The new owner last, so that no one takes over again.
    for (const k of clients.map((_, k) => k).sort((a, b) => (results[a].role === 'owner') - (results[b].role === 'owner'))) {
      children[clients[k]].send({ type: 'close' })
      await exited[clients[k]]
    }
    return { killedAt, results, roles: results.map((r) => r.role) }
  })
  // The last sequence the dead owner made durable: every entry before the kill.
  const { Store } = await import('../index.js')
  const store = await Store.open(dir)
  let durable = 0
  const killedTicks = BigInt(Math.floor(killedAt * 1000)) // µs
  for await (const batch of store.replayBatches()) {
    for (let i = 0; i < batch.length; i++) {
      const { seconds, subseconds } = batch.hlc(i)
      const us = BigInt(seconds) * 1_000_000n + (BigInt(subseconds) * 1_000_000n >> 32n)
      if (us < killedTicks) durable = Math.max(durable, batch.sequence(i))
    }
  }
  await store.close()
  let stale = 0
  const errors = {}
  const clients = results.map((r) => {
    for (const [code, n] of Object.entries(r.errors)) errors[code] = (errors[code] ?? 0) + n
    for (let i = 0; i < r.acks.length; i += 2) {
      if (r.acks[i + 1] > durable) return r.acks[i] - killedAt
      stale++
    }
    return Infinity
  })
  const newOwner = clients[roles.indexOf('owner')] ?? Infinity
  return { first: Math.min(...clients), clients, newOwner, stale, errors }
}

function fmt(n) {
  return Math.round(n).toLocaleString('en-US')
}

if (process.argv[2] === '--child') await child(JSON.parse(process.argv[3]))
else await main()
