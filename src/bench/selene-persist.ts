/** The benchmark driver for this package (see workloads.ts): a `WalWriter` in `dir/wal.log`. */
import { rmSync } from 'node:fs'
import { join } from 'node:path'

import type { WriterStats } from '../appender'
import { WalReader, WalWriter } from '../wal'
import type { Driver } from './workloads'

/** What this package offers beyond the common surface: its batch call, entry objects, stats and a rescan. */
export interface SeleneDriver extends Driver {
  putNow(i: number, value: Buffer): unknown
  putBatch(values: Buffer[]): Promise<unknown>
  /** Replay as entry objects, not batch views. */
  scanEntries(): Promise<number>
  stats(): WriterStats
  /** The open with the seal gone (a full verified rescan of every frame), ms. */
  rescan(): Promise<number>
}

export async function open(dir: string, { durable }: { durable: boolean }): Promise<SeleneDriver> {
  const path = join(dir, 'wal.log')
  const writer = await WalWriter.open(path, { sync: durable ? 'always' : 'manual', compression: false })
  const timedOpen = async (): Promise<number> => {
    const t0 = performance.now()
    await (await WalWriter.open(path)).close()
    return performance.now() - t0
  }
  return {
    put: (_i, value) => writer.append(value),
    putNow: (_i, value) => writer.appendDurableSync(value),
    putMany: async (_start, values) => {
      for (const value of values) writer.appendSync(value)
    },
    putBatch: (values) => writer.appendBatch(values),
    flush: () => writer.flush(),
    close: () => writer.close(),
    stats: () => writer.stats(),
    scan: async () => {
      let n = 0
      // Each entry's sequence and payload touched, as an app applying the log does.
      for await (const batch of (await WalReader.open(path)).batches()) for (let i = 0; i < batch.length; i++) n += batch.sequence(i) > 0 && batch.payload(i).length > 0 ? 1 : 0
      return n
    },
    scanEntries: async () => {
      let n = 0
      for await (const entry of (await WalReader.open(path)).entries()) n += entry.payload.length > 0 ? 1 : 0
      return n
    },
    reopen: timedOpen,
    rescan: async () => {
      rmSync(`${path}.seal`)
      return timedOpen()
    },
  }
}
