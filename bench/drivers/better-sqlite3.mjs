// better-sqlite3: one table in WAL mode, synchronous=FULL when durable (see src/bench/workloads.ts for the surface).
import { join } from 'node:path'

import Database from 'better-sqlite3'

export async function open(dir, { durable }) {
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
