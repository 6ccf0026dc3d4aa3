/**
 * `bench`: the benchmark workloads (src/bench/workloads.ts, the ones `npm run bench` runs on
 * every peer) on this package, timed in this process, with a progress display.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import type { WriterStats } from '../appender'
import { open as nodeFs } from '../bench/node-fs'
import { open as openSelene, type SeleneDriver } from '../bench/selene-persist'
import { type Ingest, type Open, sizes, w1, w2, w3, w4, w5, w6 } from '../bench/workloads'
import { parse } from './args'

export const BENCH_USAGE = `Usage: selene-persist bench [--quick] [--dir DIR]

Time this package's workloads on this machine, in this process, against a plain Node fs
loop (writeSync + fdatasyncSync) as the baseline for durable appends:
  W1 one durable append at a time (128 B and 1 KiB), awaiting append and with the
     blocking appendDurableSync: ops/s, p50, p99
  W2 64 concurrent writers each awaiting its own durable append: ops/s, longest stall
  W3 bulk ingest of 128 B records, one appendSync each, durable at the end: records/s, MB/s, peak RSS
  W4 full replay of W3's data, as entry objects and as batch views: records/s
  W5 open (scan and verify) of W3's data after a clean close
  W6 W3's records by appendBatch, 1000 a call: records/s, MB/s
Prints a markdown table, then the writer's own stats() of each workload's last run (groups,
fdatasyncs, group sizes, commit latencies). The figures are medians of 3 runs; machines are
noisy, so compare ratios, not absolutes. npm run bench runs the same workloads on other stores.

  --quick     smaller workloads (seconds, not minutes)
  --dir DIR   where to write (default: a temp directory, removed afterwards)
`

interface Row {
  workload: string
  result: string
  ratio: string
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0
const lastOf = <T>(values: T[]): T => values[values.length - 1] as T
const fmt = (n: number): string => Math.round(n).toLocaleString('en-US')

function status(text: string): void {
  if (process.stderr.isTTY) process.stderr.write(`\r\x1b[K${text}`)
}

export async function benchCommand(argv: string[]): Promise<number> {
  const { values, help } = parse(argv, { quick: { type: 'boolean' }, dir: { type: 'string' } }, 0, 0)
  if (help) return process.stdout.write(BENCH_USAGE), 0
  const dir = typeof values.dir === 'string' ? values.dir : await mkdtemp(join(tmpdir(), 'selene-persist-bench-'))
  await mkdir(dir, { recursive: true })
  const n = sizes(values.quick === true)
  const runs = 3
  const rows: Row[] = []
  /** The writer's stats() of each workload's last run. */
  const stats: Array<[string, WriterStats]> = []
  /** This package's driver, keeping the stats() of the writer it closed last. */
  let last: WriterStats | undefined
  const ours: Open<SeleneDriver> = async (at, options) => {
    const db = await openSelene(at, options)
    return {
      ...db,
      close: async () => {
        last = db.stats()
        await db.close()
      },
    }
  }
  /** A workload's figures and the stats() of the writer it closed last. */
  const withStats = async <T>(run: Promise<T>): Promise<T & { stats: WriterStats }> => ({ ...(await run), stats: last as WriterStats })
  /** A fresh directory for one case. */
  const fresh = (name: string): Promise<string> => mkdtemp(join(dir, `${name}-`))
  try {
    /** Median W1 rate at 128 B, the base of W2's ratio. */
    let singleRate = 0
    for (const size of [128, 1024]) {
      const awaited: Array<{ ops: number; p50: number; p99: number; stats: WriterStats }> = []
      const blocking: typeof awaited = []
      const base: number[] = []
      for (let run = 0; run < runs; run++) {
        status(`W1 ${size} B, run ${run + 1}/${runs}`)
        awaited.push(await withStats(w1(ours, await fresh(`w1-${size}`), n, size, 'await')))
        blocking.push(await withStats(w1(ours, await fresh(`w1-sync-${size}`), n, size, 'blocking')))
        base.push((await w1(nodeFs, await fresh(`w1-fs-${size}`), n, size, 'blocking')).ops)
      }
      if (size === 128) singleRate = median(awaited.map((r) => r.ops))
      const row = (workload: string, results: typeof awaited): Row => {
        const rate = median(results.map((r) => r.ops))
        return {
          workload,
          result: `${fmt(rate)} ops/s, p50 ${median(results.map((r) => r.p50)).toFixed(3)} ms, p99 ${median(results.map((r) => r.p99)).toFixed(3)} ms`,
          ratio: `${(rate / median(base)).toFixed(2)}x node fs (${fmt(median(base))} ops/s)`,
        }
      }
      rows.push(row(`W1 durable append, ${size} B`, awaited), row(`W1 blocking appendDurableSync, ${size} B`, blocking))
      stats.push([`W1 durable append, ${size} B`, lastOf(awaited).stats], [`W1 blocking, ${size} B`, lastOf(blocking).stats])
    }
    const w2s: Array<{ ops: number; stall: number; stats: WriterStats }> = []
    for (let run = 0; run < runs; run++) {
      status(`W2 ${n.writers} concurrent writers, run ${run + 1}/${runs}`)
      w2s.push(await withStats(w2(ours, await fresh('w2'), n)))
    }
    rows.push({
      workload: `W2 ${n.writers} concurrent durable writers`,
      result: `${fmt(median(w2s.map((r) => r.ops)))} ops/s, longest stall ${median(w2s.map((r) => r.stall)).toFixed(1)} ms`,
      ratio: `${(median(w2s.map((r) => r.ops)) / singleRate).toFixed(1)}x W1 (group commit)`,
    })
    stats.push([`W2 ${n.writers} concurrent writers`, lastOf(w2s).stats])
    const ingests: Record<'w3' | 'w6', Array<Ingest & { stats: WriterStats }>> = { w3: [], w6: [] }
    const w4s: number[] = []
    const w4b: number[] = []
    const w5s: number[] = []
    for (let run = 0; run < runs; run++) {
      const bulk = await fresh('w3')
      status(`W3 bulk ingest of ${fmt(n.bulk)} records, run ${run + 1}/${runs}`)
      ingests.w3.push(await withStats(w3(ours, bulk, n)))
      status(`W4 replay, run ${run + 1}/${runs}`)
      w4s.push((await w4(ours, bulk, n, (db) => db.scanEntries())).ops)
      w4b.push((await w4(ours, bulk, n)).ops)
      status(`W5 open, run ${run + 1}/${runs}`)
      w5s.push((await w5(ours, bulk)).ms)
      status(`W6 bulk ingest by appendBatch, run ${run + 1}/${runs}`)
      ingests.w6.push(await withStats(w6(ours, await fresh('w6'), n)))
    }
    const ingestRow = (workload: string, results: typeof ingests.w3): Row => ({
      workload,
      // The process's peak RSS as the first run ends: later runs follow a replay of a million
      // entry objects, whose peak the counter keeps.
      result: `${fmt(median(results.map((r) => r.ops)))} records/s, ${median(results.map((r) => r.mbps)).toFixed(1)} MB/s, peak RSS ${fmt(results[0]?.rss ?? 0)} MiB`,
      ratio: '',
    })
    rows.push(ingestRow(`W3 bulk ingest, ${fmt(n.bulk)} x 128 B, appendSync`, ingests.w3))
    rows.push({ workload: 'W4 full replay of W3, entries()', result: `${fmt(median(w4s))} records/s`, ratio: '' })
    rows.push({
      workload: 'W4 full replay of W3, batches()',
      result: `${fmt(median(w4b))} records/s`,
      ratio: `${(median(w4b) / median(w4s)).toFixed(1)}x entries()`,
    })
    rows.push({ workload: 'W5 open of W3 after clean close', result: `${median(w5s).toFixed(1)} ms`, ratio: '' })
    rows.push(ingestRow(`W6 bulk ingest, ${fmt(n.bulk)} x 128 B, appendBatch`, ingests.w6))
    stats.push(['W3 bulk ingest', lastOf(ingests.w3).stats], ['W6 bulk ingest', lastOf(ingests.w6).stats])
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
