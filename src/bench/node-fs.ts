/** The benchmark driver for plain Node fs (see workloads.ts): `writeSync`, then `fdatasyncSync` when durable. */
import { closeSync, fdatasyncSync, openSync, readFileSync, writeSync } from 'node:fs'
import { join } from 'node:path'

import type { Driver } from './workloads'

export async function open(dir: string, { durable }: { durable: boolean }): Promise<Driver> {
  const path = join(dir, 'log.bin')
  const fd = openSync(path, 'a')
  const putNow = (_i: number, value: Buffer): void => {
    writeSync(fd, value)
    if (durable) fdatasyncSync(fd)
  }
  return {
    put: async (i, value) => putNow(i, value),
    putNow,
    putMany: async (_start, values) => writeSync(fd, Buffer.concat(values)),
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
