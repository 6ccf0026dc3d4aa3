// classic-level (LevelDB): `sync: true` puts when durable; it has no blocking put (see src/bench/workloads.ts for the surface).
import { join } from 'node:path'

import { ClassicLevel } from 'classic-level'

import { key } from './key.mjs'

export async function open(dir, { durable }) {
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
