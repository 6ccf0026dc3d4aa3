// Peer benchmarks: this package against better-sqlite3 (WAL, synchronous=FULL), classic-level
// (sync: true), lmdb (awaiting flushed) and plain Node fs (writeSync + fdatasyncSync), on the
// same payloads, each case in a fresh child process; raw Rust loops give W1's and W3's limits.
// Usage (from the repository root): npm run bench [-- --quick]
import { execFileSync } from 'node:child_process'
import { closeSync, fdatasync, fdatasyncSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, writeSync, writev } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { crc32 } from 'node:zlib'

const quick = process.argv.includes('--quick')
// W2's writers first run `warm` untimed appends each (W2_WARM=0 runs it cold): its timed 25,600
// appends take 100-300 ms, and the JIT's first optimised code would otherwise land inside the
// clock. W1 needs none: 1000 untimed appends changed its figures by nothing measurable.
const N = { single: quick ? 300 : 2000, writers: 64, warm: quick ? 0 : Number(process.env.W2_WARM ?? 200), each: quick ? 20 : 400, bulk: quick ? 100_000 : 1_000_000 }
const ALL_PEERS = ['selene-persist', 'js-log', 'better-sqlite3', 'classic-level', 'lmdb', 'node-fs']
/** `--peers a,b` runs only those (selene-persist always): for profiling one comparison. */
const only = process.argv.find((a) => a.startsWith('--peers='))?.slice('--peers='.length).split(',')
const PEERS = only ? ALL_PEERS.filter((p) => p === 'selene-persist' || only.includes(p)) : ALL_PEERS
/** Peers with a blocking durable put; classic-level has none, and lmdb's putSync returns before the flush. */
const BLOCKING = new Set(['selene-persist', 'better-sqlite3', 'node-fs'])
const record = (size, i) => Buffer.alloc(size, i % 251)
const key = (i) => i.toString(16).padStart(12, '0')
const now = () => performance.now()

/** Open a peer's store in `dir`: a uniform put / flush / scan / close surface. */
async function open(peer, dir, { durable }) {
  switch (peer) {
    case 'selene-persist': {
      const { WalWriter, WalReader } = await import('selene-persist')
      const path = join(dir, 'wal.log')
      const w = await WalWriter.open(path, { sync: durable ? 'always' : 'manual', compression: false })
      return {
        put: (i, v) => w.append(v),
        putNow: (i, v) => w.appendDurableSync(v),
        // Issue 16's W3: one `appendSync` per record (what an ingest loop calls), durable at the end.
        putMany: async (start, vs) => {
          for (const v of vs) w.appendSync(v)
        },
        flush: () => w.flush(),
        close: () => w.close(),
        scan: async () => {
          let n = 0
          // Each entry's sequence and payload touched, as an app applying the log does.
          for await (const b of (await WalReader.open(path)).batches()) for (let i = 0; i < b.length; i++) n += b.sequence(i) > 0 && b.payload(i).length > 0 ? 1 : 0
          return n
        },
        reopen: async () => (await WalWriter.open(path)).close(),
        // The same open with the seal gone: a full verified rescan of every frame.
        rescan: async () => {
          rmSync(`${path}.seal`)
          const t0 = now()
          await (await WalWriter.open(path)).close()
          return now() - t0
        },
      }
    }
    case 'better-sqlite3': {
      const Database = (await import('better-sqlite3')).default
      const path = join(dir, 'db.sqlite')
      const db = new Database(path)
      db.pragma('journal_mode = WAL')
      db.pragma(`synchronous = ${durable ? 'FULL' : 'OFF'}`)
      db.exec('CREATE TABLE IF NOT EXISTS log (k INTEGER PRIMARY KEY, v BLOB)')
      const insert = db.prepare('INSERT INTO log (v) VALUES (?)')
      const many = db.transaction((vs) => vs.forEach((v) => insert.run(v)))
      return {
        put: async (i, v) => insert.run(v),
        putNow: (i, v) => insert.run(v),
        putMany: async (start, vs) => many(vs),
        flush: async () => {
          db.pragma('synchronous = FULL')
          db.pragma('wal_checkpoint(FULL)')
        },
        close: async () => db.close(),
        scan: async () => {
          let n = 0
          for (const row of db.prepare('SELECT v FROM log').iterate()) n += row.v.length > 0 ? 1 : 0
          return n
        },
        reopen: async () => new Database(path).close(),
      }
    }
    case 'classic-level': {
      const { ClassicLevel } = await import('classic-level')
      const path = join(dir, 'level')
      const db = new ClassicLevel(path, { valueEncoding: 'buffer' })
      await db.open()
      return {
        put: (i, v) => db.put(key(i), v, { sync: durable }),
        putMany: (start, vs, last) => db.batch(vs.map((v, j) => ({ type: 'put', key: key(start + j), value: v })), { sync: durable || last }),
        flush: async () => db.put('flush', Buffer.alloc(1), { sync: true }),
        close: () => db.close(),
        scan: async () => {
          let n = 0
          for await (const v of db.values()) n += v.length > 0 ? 1 : 0
          return n
        },
        reopen: async () => {
          const again = new ClassicLevel(path)
          await again.open()
          await again.close()
        },
      }
    }
    case 'lmdb': {
      const { open: openLmdb } = await import('lmdb')
      const path = join(dir, 'lmdb')
      const db = openLmdb({ path, encoding: 'binary', mapSize: 4 << 30 })
      return {
        put: async (i, v) => {
          await db.put(key(i), v)
          if (durable) await db.flushed
        },
        putMany: async (start, vs) => {
          let last
          vs.forEach((v, j) => (last = db.put(key(start + j), v)))
          await last
        },
        flush: async () => db.flushed,
        close: () => db.close(),
        scan: async () => {
          let n = 0
          for (const { value } of db.getRange()) n += value.length > 0 ? 1 : 0
          return n
        },
        reopen: async () => openLmdb({ path, encoding: 'binary' }).close(),
      }
    }
    case 'js-log': {
      // What a Node user writes in an afternoon instead of installing anything (issue 16):
      // records `[u32 length][u32 crc32][payload]` packed into a 1 MiB Buffer, written with
      // writeSync per MiB; the durable variant groups concurrent appends (one writev and one
      // fdatasync per group, then the whole group resolves); replay reads 1 MiB chunks, checks
      // each crc32 with zlib.crc32 and takes a subarray of each payload.
      const path = join(dir, 'log.bin')
      const fd = openSync(path, 'a')
      const CHUNK = 1 << 20
      let buffer = Buffer.allocUnsafe(CHUNK)
      let used = 0
      const frame = (v) => {
        const header = Buffer.allocUnsafe(8)
        header.writeUInt32LE(v.length, 0)
        header.writeUInt32LE(crc32(v), 4)
        return header
      }
      const pack = (v) => {
        if (used + 8 + v.length > CHUNK) {
          writeSync(fd, buffer, 0, used)
          used = 0
          if (8 + v.length > CHUNK) buffer = Buffer.allocUnsafe(8 + v.length)
        }
        buffer.writeUInt32LE(v.length, used)
        buffer.writeUInt32LE(crc32(v), used + 4)
        v.copy(buffer, used + 8)
        used += 8 + v.length
      }
      const writeOut = () => {
        if (used > 0) writeSync(fd, buffer, 0, used)
        used = 0
      }
      // Group commit: appends queue while a group is written and synced on the thread pool.
      let queue = []
      let busy = false
      const commit = async () => {
        busy = true
        while (queue.length > 0) {
          const group = queue
          queue = []
          const bufs = group.flatMap(({ v }) => [frame(v), v])
          await new Promise((resolve, reject) => writev(fd, bufs, (e) => (e ? reject(e) : resolve())))
          await new Promise((resolve, reject) => fdatasync(fd, (e) => (e ? reject(e) : resolve())))
          for (const w of group) w.resolve()
        }
        busy = false
      }
      const put = (i, v) =>
        new Promise((resolve) => {
          queue.push({ v, resolve })
          if (!busy) void commit()
        })
      return {
        put,
        putMany: async (start, vs) => vs.forEach(pack),
        flush: async () => {
          writeOut()
          fdatasyncSync(fd)
        },
        close: async () => closeSync(fd),
        scan: async () => scan(),
        // Learning the tail after a crash: every record read and checked (no seal to trust).
        reopen: async () => void scan(),
      }
      function scan() {
        const rfd = openSync(path, 'r')
        const chunk = Buffer.allocUnsafe(CHUNK)
        let carry = Buffer.alloc(0)
        let n = 0
        for (;;) {
          const got = readSync(rfd, chunk, 0, CHUNK, null)
          if (got === 0) break
          const data = carry.length > 0 ? Buffer.concat([carry, chunk.subarray(0, got)]) : chunk.subarray(0, got)
          let at = 0
          while (at + 8 <= data.length) {
            const len = data.readUInt32LE(at)
            if (at + 8 + len > data.length) break
            const payload = data.subarray(at + 8, at + 8 + len)
            if (crc32(payload) !== data.readUInt32LE(at + 4)) throw new Error(`crc mismatch at record ${n}`)
            n += payload.length > 0 ? 1 : 0
            at += 8 + len
          }
          carry = Buffer.from(data.subarray(at))
        }
        closeSync(rfd)
        return n
      }
    }
    case 'node-fs': {
      const path = join(dir, 'log.bin')
      const fd = openSync(path, 'a')
      const putNow = (i, v) => {
        writeSync(fd, v)
        if (durable) fdatasyncSync(fd)
      }
      return {
        put: async (i, v) => putNow(i, v),
        putNow,
        putMany: async (start, vs) => writeSync(fd, Buffer.concat(vs)),
        flush: async () => fdatasyncSync(fd),
        close: async () => closeSync(fd),
        scan: async () => {
          const data = readFileSync(path)
          let n = 0
          for (let at = 0; at < data.length; at += 128) n += data.subarray(at, at + 128).length > 0 ? 1 : 0
          return n
        },
        reopen: async () => closeSync(openSync(path, 'r')),
      }
    }
  }
  throw new Error(`unknown peer ${peer}`)
}

/** One case in this (child) process; returns its figures. */
async function runCase(peer, workload, dir) {
  if (workload.startsWith('w1')) {
    // w1-SIZE awaits each durable put; w1now-SIZE calls the peer's blocking durable put;
    // w1rt-SIZE awaits each put with no fdatasync at all: the hand-off to the committer and
    // the reply back, with neither thread ever idle long enough to go cold.
    const [kind, size] = workload.split('-')
    const db = await open(peer, dir, { durable: kind !== 'w1rt' })
    const latencies = []
    const t0 = now()
    for (let i = 0; i < N.single; i++) {
      const t = now()
      if (kind === 'w1now') db.putNow(i, record(Number(size), i))
      else await db.put(i, record(Number(size), i))
      latencies.push(now() - t)
    }
    const ms = now() - t0
    await db.close()
    latencies.sort((a, b) => a - b)
    return { ops: (N.single / ms) * 1000, p50: latencies[Math.floor(latencies.length / 2)], p99: latencies[Math.floor(latencies.length * 0.99)] }
  }
  if (workload === 'w2') {
    const db = await open(peer, dir, { durable: true })
    let next = 0
    const writers = (each) =>
      Promise.all(Array.from({ length: N.writers }, async () => {
        for (let j = 0; j < each; j++) {
          const i = next++
          await db.put(i, record(128, i))
        }
      }))
    await writers(N.warm)
    const delay = monitorEventLoopDelay({ resolution: 1 })
    delay.enable()
    const t0 = now()
    await writers(N.each)
    const ms = now() - t0
    delay.disable()
    await db.close()
    return { ops: ((N.writers * N.each) / ms) * 1000, stall: delay.max / 1e6 }
  }
  if (workload === 'w3' || workload === 'w3-fresh') {
    // W3 takes its batches from a pool made before the clock starts (as LevelDB's db_bench
    // does), so it times the store and not Buffer.alloc; w3-fresh makes every record inside
    // the clock, which adds the same ~0.5 us per record to every peer.
    const fresh = workload === 'w3-fresh'
    const pool = fresh ? [] : Array.from({ length: 16 }, (_, b) => Array.from({ length: 1000 }, (_, j) => record(128, b * 1000 + j)))
    const db = await open(peer, dir, { durable: false })
    const t0 = now()
    for (let i = 0; i < N.bulk; i += 1000) {
      const vs = fresh ? Array.from({ length: 1000 }, (_, j) => record(128, i + j)) : pool[(i / 1000) % pool.length]
      await db.putMany(i, vs, i + 1000 >= N.bulk)
    }
    const loopMs = now() - t0
    await db.flush()
    const ms = now() - t0
    const rss = process.resourceUsage().maxRSS / 1024
    const t1 = now()
    await db.close()
    const closeMs = now() - t1
    const files = readdirSync(dir, { recursive: true }).map((name) => statSync(join(dir, name))).filter((s) => s.isFile())
    const bytes = files.reduce((sum, s) => sum + s.size, 0)
    // The loop and the durable flush after it, apart: what the CPU costs and what the disk does.
    return { ops: (N.bulk / ms) * 1000, mbps: (N.bulk * 128) / 1e6 / (ms / 1000), rss, closeMs, loopMs, flushMs: ms - loopMs, bytes }
  }
  if (workload === 'w5-kill') {
    // Append more, make it durable, then die without closing.
    const db = await open(peer, dir, { durable: false })
    await db.putMany(N.bulk, Array.from({ length: 1000 }, (_, j) => record(128, j)), true)
    await db.flush()
    process.kill(process.pid, 'SIGKILL')
  }
  if (workload === 'w5-rescan') {
    const db = await open(peer, dir, { durable: false })
    await db.close()
    return { ms: await db.rescan() }
  }
  if (workload === 'w4' || workload === 'w5') {
    const db = await open(peer, dir, { durable: false })
    if (workload === 'w4') {
      const t0 = now()
      const n = await db.scan()
      const ms = now() - t0
      await db.close()
      if (n < N.bulk) throw new Error(`${peer} replayed ${n} of ${N.bulk}`)
      return { ops: (n / ms) * 1000 }
    }
    await db.close()
    const t0 = now()
    await db.reopen()
    return { ms: now() - t0 }
  }
  throw new Error(`unknown workload ${workload}`)
}

const self = fileURLToPath(import.meta.url)
if (process.argv[2] === '--case') {
  const [peer, workload, dir] = process.argv.slice(3)
  console.log(JSON.stringify(await runCase(peer, workload, dir)))
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
