/** `bench`: this package's own workloads, timed in this process, with a progress display. */
import { closeSync, fdatasyncSync, openSync, writeSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'

import type { WriterStats } from '../appender'
import { WalReader, WalWriter } from '../wal'
import { parse } from './args'

export const BENCH_USAGE = `Usage: selene-persist bench [--quick] [--dir DIR]

Time this package's workloads on this machine, in this process, against a plain Node fs
loop (writeSync + fdatasyncSync) as the baseline for durable appends:
  W1 one durable append at a time (128 B and 1 KiB), awaiting append and with the
     blocking appendDurableSync: ops/s, p50, p99
  W2 64 concurrent writers each awaiting its own durable append: ops/s, longest stall
  W3 bulk ingest of 128 B records in batches of 1000, durable at the end: records/s, MB/s, peak RSS
  W4 full replay of W3's data, as entry objects and as batch views: records/s
  W5 open (scan and verify) of W3's data after a clean close
Prints a markdown table, then the writer's own stats() of each workload's last run (groups,
fdatasyncs, group sizes, commit latencies). The figures are medians of 3 runs; machines are
noisy, so compare ratios, not absolutes.

  --quick     smaller workloads (seconds, not minutes)
  --dir DIR   where to write (default: a temp directory, removed afterwards)
`

interface Row {
  workload: string
  result: string
  ratio: string
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0
const perSecond = (count: number, ms: number): number => (count / ms) * 1000
const fmt = (n: number): string => Math.round(n).toLocaleString('en-US')
const quantile = (sorted: number[], q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0

function status(text: string): void {
  if (process.stderr.isTTY) process.stderr.write(`\r\x1b[K${text}`)
}

async function timed(run: () => Promise<void>): Promise<number> {
  const t0 = performance.now()
  await run()
  return performance.now() - t0
}

/** Durable single appends through fs.writeSync + fdatasyncSync: the baseline for W1. */
function nodeFsLoop(path: string, count: number, size: number): number {
  const fd = openSync(path, 'w')
  const record = Buffer.alloc(size, 7)
  const t0 = performance.now()
  for (let i = 0; i < count; i++) {
    writeSync(fd, record)
    fdatasyncSync(fd)
  }
  const ms = performance.now() - t0
  closeSync(fd)
  return perSecond(count, ms)
}

interface Single {
  rate: number
  p50: number
  p99: number
  stats: WriterStats
}

/** Durable single appends, each awaited, or each a blocking `appendDurableSync`. */
async function singleAppends(path: string, count: number, size: number, blocking: boolean): Promise<Single> {
  const writer = await WalWriter.open(path)
  const record = Buffer.alloc(size, 7)
  const latencies: number[] = []
  const ms = await timed(async () => {
    for (let i = 0; i < count; i++) {
      const t0 = performance.now()
      if (blocking) writer.appendDurableSync(record)
      else await writer.append(record)
      latencies.push(performance.now() - t0)
    }
  })
  const stats = writer.stats()
  await writer.close()
  latencies.sort((a, b) => a - b)
  return { rate: perSecond(count, ms), p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99), stats }
}

async function concurrentAppends(path: string, writers: number, each: number): Promise<{ rate: number; stall: number; stats: WriterStats }> {
  const writer = await WalWriter.open(path)
  const record = Buffer.alloc(128, 7)
  const delay = monitorEventLoopDelay({ resolution: 1 })
  delay.enable()
  const ms = await timed(async () => {
    await Promise.all(
      Array.from({ length: writers }, async () => {
        for (let i = 0; i < each; i++) await writer.append(record)
      }),
    )
  })
  delay.disable()
  const stats = writer.stats()
  await writer.close()
  return { rate: perSecond(writers * each, ms), stall: delay.max / 1e6, stats }
}

async function bulkIngest(path: string, count: number): Promise<{ rate: number; mbps: number; rss: number; stats: WriterStats }> {
  const writer = await WalWriter.open(path, { sync: 'manual' })
  const record = Buffer.alloc(128, 7)
  const batch = Array.from({ length: 1000 }, () => record)
  const ms = await timed(async () => {
    for (let i = 0; i < count; i += 1000) await writer.appendBatch(batch)
    await writer.flush()
  })
  const stats = writer.stats()
  await writer.close()
  return { rate: perSecond(count, ms), mbps: (count * 128) / 1e6 / (ms / 1000), rss: process.resourceUsage().maxRSS / 1024, stats }
}

/** Replay every entry as an object; returns records/s. */
async function replay(path: string): Promise<number> {
  let count = 0
  const ms = await timed(async () => {
    for await (const entry of (await WalReader.open(path)).entries()) count += entry.payload.length > 0 ? 1 : 0
  })
  return perSecond(count, ms)
}

/** Replay every payload through batch views, with no object per entry; returns records/s. */
async function replayBatches(path: string): Promise<number> {
  let count = 0
  const ms = await timed(async () => {
    for await (const batch of (await WalReader.open(path)).batches()) {
      for (let i = 0; i < batch.length; i++) count += batch.payload(i).length > 0 ? 1 : 0
    }
  })
  return perSecond(count, ms)
}

export async function benchCommand(argv: string[]): Promise<number> {
  const { values, help } = parse(argv, { quick: { type: 'boolean' }, dir: { type: 'string' } }, 0, 0)
  if (help) return process.stdout.write(BENCH_USAGE), 0
  const quick = values.quick === true
  const dir = typeof values.dir === 'string' ? values.dir : await mkdtemp(join(tmpdir(), 'selene-persist-bench-'))
  const n = { single: quick ? 200 : 2000, writers: 64, each: quick ? 20 : 200, bulk: quick ? 100_000 : 1_000_000 }
  const runs = 3
  const rows: Row[] = []
  /** The writer's stats() of each workload's last run. */
  const stats: Array<[string, WriterStats]> = []
  try {
    /** Median W1 rate at 128 B, the base of W2's ratio. */
    let singleRate = 0
    for (const size of [128, 1024]) {
      const awaited: Single[] = []
      const blocking: Single[] = []
      const base: number[] = []
      for (let run = 0; run < runs; run++) {
        status(`W1 ${size} B, run ${run + 1}/${runs}`)
        awaited.push(await singleAppends(join(dir, `w1-${size}-${run}.log`), n.single, size, false))
        blocking.push(await singleAppends(join(dir, `w1-sync-${size}-${run}.log`), n.single, size, true))
        base.push(nodeFsLoop(join(dir, `w1-fs-${size}-${run}.bin`), n.single, size))
      }
      if (size === 128) singleRate = median(awaited.map((r) => r.rate))
      const row = (workload: string, results: Single[]): Row => {
        const rate = median(results.map((r) => r.rate))
        return {
          workload,
          result: `${fmt(rate)} ops/s, p50 ${median(results.map((r) => r.p50)).toFixed(3)} ms, p99 ${median(results.map((r) => r.p99)).toFixed(3)} ms`,
          ratio: `${(rate / median(base)).toFixed(2)}x node fs (${fmt(median(base))} ops/s)`,
        }
      }
      rows.push(row(`W1 durable append, ${size} B`, awaited), row(`W1 blocking appendDurableSync, ${size} B`, blocking))
      stats.push([`W1 durable append, ${size} B`, (awaited.at(-1) as Single).stats], [`W1 blocking, ${size} B`, (blocking.at(-1) as Single).stats])
    }
    const w2: { rate: number; stall: number; stats: WriterStats }[] = []
    for (let run = 0; run < runs; run++) {
      status(`W2 ${n.writers} concurrent writers, run ${run + 1}/${runs}`)
      w2.push(await concurrentAppends(join(dir, `w2-${run}.log`), n.writers, n.each))
    }
    rows.push({
      workload: `W2 ${n.writers} concurrent durable writers`,
      result: `${fmt(median(w2.map((r) => r.rate)))} ops/s, longest stall ${median(w2.map((r) => r.stall)).toFixed(1)} ms`,
      ratio: `${(median(w2.map((r) => r.rate)) / singleRate).toFixed(1)}x W1 (group commit)`,
    })
    stats.push([`W2 ${n.writers} concurrent writers`, (w2.at(-1) as { stats: WriterStats }).stats])
    const w3: { rate: number; mbps: number; rss: number; stats: WriterStats }[] = []
    const w4: number[] = []
    const w4b: number[] = []
    const w5: number[] = []
    for (let run = 0; run < runs; run++) {
      const path = join(dir, `w3-${run}.log`)
      status(`W3 bulk ingest of ${fmt(n.bulk)} records, run ${run + 1}/${runs}`)
      w3.push(await bulkIngest(path, n.bulk))
      status(`W4 replay, run ${run + 1}/${runs}`)
      w4.push(await replay(path))
      w4b.push(await replayBatches(path))
      status(`W5 open, run ${run + 1}/${runs}`)
      w5.push(await timed(async () => (await WalWriter.open(path)).close()))
    }
    rows.push({
      workload: `W3 bulk ingest, ${fmt(n.bulk)} x 128 B`,
      // The process's peak RSS as the first run ends: later runs follow a replay of a million
      // entry objects, whose peak the counter keeps.
      result: `${fmt(median(w3.map((r) => r.rate)))} records/s, ${median(w3.map((r) => r.mbps)).toFixed(1)} MB/s, peak RSS ${fmt(w3[0]?.rss ?? 0)} MiB`,
      ratio: '',
    })
    rows.push({ workload: 'W4 full replay of W3, entries()', result: `${fmt(median(w4))} records/s`, ratio: '' })
    rows.push({
      workload: 'W4 full replay of W3, batches()',
      result: `${fmt(median(w4b))} records/s`,
      ratio: `${(median(w4b) / median(w4)).toFixed(1)}x entries()`,
    })
    rows.push({ workload: 'W5 open of W3 after clean close', result: `${median(w5).toFixed(1)} ms`, ratio: '' })
    stats.push(['W3 bulk ingest', (w3.at(-1) as { stats: WriterStats }).stats])
  } finally {
    status('')
    if (typeof values.dir !== 'string') await rm(dir, { recursive: true, force: true })
  }
  console.log(`| workload | result (median of ${runs}) | ratio |\n|---|---|---|`)
  for (const row of rows) console.log(`| ${row.workload} | ${row.result} | ${row.ratio} |`)
  console.log('\nWhat each writer reported (stats(), last run):\n')
  console.log('| workload | entries | groups | fdatasyncs | group size p50 / p99 / max | commit latency p50 / p99 ms |\n|---|---|---|---|---|---|')
  for (const [workload, s] of stats) {
    const q = s.groupSize
    console.log(`| ${workload} | ${fmt(s.entries)} | ${fmt(s.groups)} | ${fmt(s.fdatasyncs)} | ${q.p50} / ${q.p99} / ${q.max} | ${s.commitLatencyMs.p50.toFixed(3)} / ${s.commitLatencyMs.p99.toFixed(3)} |`)
  }
  return 0
}
