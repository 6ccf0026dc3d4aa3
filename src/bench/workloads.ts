/**
 * The benchmark workloads, each defined once. `npm run bench` (bench/peers.mjs) runs them on
 * every peer's driver, each case in a fresh process; the CLI's `bench` runs them on this
 * package's driver in its own process. A driver opens a store in a directory and offers the
 * one surface below: `selene-persist` and `node-fs` here (they ship, for the CLI), the other
 * peers in bench/drivers/.
 */
import { readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'

/** A store opened by a driver: what every workload calls. */
export interface Driver {
  /** Append record `i`; settles once it is durable when the store was opened `durable`. */
  put(i: number, value: Buffer): Promise<unknown>
  /** The peer's blocking durable put, where it has one. */
  putNow?(i: number, value: Buffer): unknown
  /** Append records `start`, `start + 1`, … in one call; `last` on the workload's final call. */
  putMany(start: number, values: Buffer[], last: boolean): Promise<unknown>
  /** Make everything put so far durable. */
  flush(): Promise<unknown>
  close(): Promise<unknown>
  /** Read every record back, touching each; how many there were. */
  scan(): Promise<number>
  /** Open the closed store again, learning its tail, and close it. */
  reopen(): Promise<unknown>
}

/** A driver's entry point: open a store in `dir`, durable per put or not. */
export type Open<D extends Driver = Driver> = (dir: string, options: { durable: boolean }) => Promise<D>

/** How much each workload does. */
export interface Sizes {
  /** W1's appends. */
  single: number
  /** W2's concurrent writers, */
  writers: number
  /** each first running this many untimed appends (the JIT's first optimised code lands outside the clock), */
  warm: number
  /** then this many timed ones. */
  each: number
  /** The records of W3 and W6 (and so of W4 and W5). */
  bulk: number
}

export const sizes = (quick: boolean): Sizes => ({ single: quick ? 300 : 2000, writers: 64, warm: quick ? 0 : 200, each: quick ? 20 : 400, bulk: quick ? 100_000 : 1_000_000 })

/** Record `i` of `size` bytes: the same payloads for every peer. */
export const record = (size: number, i: number): Buffer => Buffer.alloc(size, i % 251)

const now = (): number => performance.now()

/** W1's ways of putting one record: awaited and durable, the blocking durable put, awaited with no fdatasync. */
export type W1Mode = 'await' | 'blocking' | 'round-trip'

/**
 * W1: one put at a time. 'round-trip' times the hand-off to the committer and the reply back,
 * with neither thread idle long enough to go cold.
 */
export async function w1(open: Open, dir: string, n: Sizes, size: number, mode: W1Mode): Promise<{ ops: number; p50: number; p99: number }> {
  const db = await open(dir, { durable: mode !== 'round-trip' })
  const putNow = db.putNow?.bind(db)
  if (mode === 'blocking' && putNow === undefined) throw new Error('this driver has no blocking durable put')
  const latencies: number[] = []
  const t0 = now()
  for (let i = 0; i < n.single; i++) {
    const t = now()
    if (mode === 'blocking') putNow?.(i, record(size, i))
    else await db.put(i, record(size, i))
    latencies.push(now() - t)
  }
  const ms = now() - t0
  await db.close()
  latencies.sort((a, b) => a - b)
  const at = (q: number): number => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * q))] ?? 0
  return { ops: (n.single / ms) * 1000, p50: at(0.5), p99: at(0.99) }
}

/** W2: `writers` concurrent writers, each awaiting its own durable put of 128 B. */
export async function w2(open: Open, dir: string, n: Sizes): Promise<{ ops: number; stall: number }> {
  const db = await open(dir, { durable: true })
  let next = 0
  const writers = (each: number): Promise<unknown> =>
    Promise.all(
      Array.from({ length: n.writers }, async () => {
        for (let j = 0; j < each; j++) {
          const i = next++
          await db.put(i, record(128, i))
        }
      }),
    )
  await writers(n.warm)
  const delay = monitorEventLoopDelay({ resolution: 1 })
  delay.enable()
  const t0 = now()
  await writers(n.each)
  const ms = now() - t0
  delay.disable()
  await db.close()
  return { ops: ((n.writers * n.each) / ms) * 1000, stall: delay.max / 1e6 }
}

/** What a bulk ingest measured; the loop and the durable flush after it apart (CPU, then disk). */
export interface Ingest {
  ops: number
  mbps: number
  /** The process's peak RSS, MiB. */
  rss: number
  closeMs: number
  loopMs: number
  flushMs: number
  /** What the store left on disk. */
  bytes: number
}

/** Bulk ingest of `n.bulk` records of 128 B in calls of 1000 through `put`, not durable until one flush at the end. */
async function ingest<D extends Driver>(open: Open<D>, dir: string, n: Sizes, fresh: boolean, put: (db: D, start: number, values: Buffer[], last: boolean) => Promise<unknown>): Promise<Ingest> {
  // From a pool made before the clock starts (as LevelDB's db_bench does), so that it times
  // the store and not Buffer.alloc; `fresh` makes every record inside the clock instead.
  const pool = fresh ? [] : Array.from({ length: 16 }, (_, b) => Array.from({ length: 1000 }, (_, j) => record(128, b * 1000 + j)))
  const db = await open(dir, { durable: false })
  const t0 = now()
  for (let i = 0; i < n.bulk; i += 1000) {
    const values = fresh ? Array.from({ length: 1000 }, (_, j) => record(128, i + j)) : (pool[(i / 1000) % pool.length] as Buffer[])
    await put(db, i, values, i + 1000 >= n.bulk)
  }
  const loopMs = now() - t0
  await db.flush()
  const ms = now() - t0
  const rss = process.resourceUsage().maxRSS / 1024
  const t1 = now()
  await db.close()
  const closeMs = now() - t1
  const files = readdirSync(dir, { recursive: true, encoding: 'utf8' }).map((name) => statSync(join(dir, name))).filter((s) => s.isFile())
  const bytes = files.reduce((sum, s) => sum + s.size, 0)
  return { ops: (n.bulk / ms) * 1000, mbps: (n.bulk * 128) / 1e6 / (ms / 1000), rss, closeMs, loopMs, flushMs: ms - loopMs, bytes }
}

/** W3: bulk ingest through each peer's `putMany` (this package: one `appendSync` per record, what an ingest loop calls). */
export const w3 = (open: Open, dir: string, n: Sizes, fresh = false): Promise<Ingest> => ingest(open, dir, n, fresh, (db, start, values, last) => db.putMany(start, values, last))

/** W6: W3's records through this package's `appendBatch`, 1000 a call. */
export const w6 = <D extends Driver & { putBatch(values: Buffer[]): Promise<unknown> }>(open: Open<D>, dir: string, n: Sizes): Promise<Ingest> =>
  ingest(open, dir, n, false, (db, _start, values) => db.putBatch(values))

/** W4: full replay of the bulk-ingested store in `dir`, by `read` (the driver's `scan` unless given). */
export async function w4<D extends Driver>(open: Open<D>, dir: string, n: Sizes, read: (db: D) => Promise<number> = (db) => db.scan()): Promise<{ ops: number }> {
  const db = await open(dir, { durable: false })
  const t0 = now()
  const count = await read(db)
  const ms = now() - t0
  await db.close()
  if (count < n.bulk) throw new Error(`replayed ${count} of ${n.bulk}`)
  return { ops: (count / ms) * 1000 }
}

/** W5: the open of the bulk-ingested store in `dir` after a clean close (or after `w5Kill`). */
export async function w5(open: Open, dir: string): Promise<{ ms: number }> {
  const db = await open(dir, { durable: false })
  await db.close()
  const t0 = now()
  await db.reopen()
  return { ms: now() - t0 }
}

/** W5 after kill -9: append 1000 more records, make them durable, then die without closing. */
export async function w5Kill(open: Open, dir: string, n: Sizes): Promise<never> {
  const db = await open(dir, { durable: false })
  await db.putMany(
    n.bulk,
    Array.from({ length: 1000 }, (_, j) => record(128, j)),
    true,
  )
  await db.flush()
  process.kill(process.pid, 'SIGKILL')
  throw new Error('not killed')
}
