// lmdb: each durable put awaits `flushed`; its putSync returns before the flush, so it has no
// blocking durable put (see src/bench/workloads.ts for the surface).
import { join } from 'node:path'

import { open as openLmdb } from 'lmdb'

import { key } from './key.mjs'

export async function open(dir, { durable }) {
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
