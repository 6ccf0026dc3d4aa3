// W1's ratio measured in pairs: one process alternates 50 blocking `appendDurableSync` calls
// with 50 awaited `append` calls, 20 times, on one writer under 'always', so both sides see the
// same disk at the same moments (separate processes, as `npm run bench` runs them, see a
// different disk from minute to minute on a shared host). Prints both means and their ratio.
// For reference it does the same with plain Node fs on a file of written zeros (so each
// fdatasync, like the writer's, changes no file size): `writeSync` then `fdatasyncSync`,
// against `writeSync` then an awaited `fs.fdatasync`, whose thread-pool round trip is the same
// pair of hand-offs an awaited `append` pays.
// Usage (from the repository root, after `npm run build`): node bench/probes/w1-paired.mjs
import { closeSync, fdatasync, fdatasyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { WalWriter } from '../../index.js'

const ROUNDS = 20
const EACH = 50
const dir = mkdtempSync(join(tmpdir(), 'selene-persist-w1-'))
const writer = await WalWriter.open(join(dir, 'wal.log'), { sync: 'always', compression: false })
const record = (i) => Buffer.alloc(128, i % 251)
for (let i = 0; i < EACH; i++) await writer.append(record(i))

const fd = openSync(join(dir, 'node.bin'), 'w')
writeSync(fd, Buffer.alloc(2 * ROUNDS * EACH * 128))
fdatasyncSync(fd)
let at = 0
const nodeSync = (v) => {
  writeSync(fd, v, 0, v.length, at)
  at += v.length
}

const total = { blocking: 0, awaited: 0, nodeBlocking: 0, nodeAwaited: 0 }
const timed = async (key, call) => {
  const t0 = performance.now()
  for (let i = 0; i < EACH; i++) await call(record(i))
  total[key] += performance.now() - t0
}
for (let round = 0; round < ROUNDS; round++) {
  await timed('blocking', (v) => writer.appendDurableSync(v))
  await timed('awaited', (v) => writer.append(v))
  await timed('nodeBlocking', (v) => (nodeSync(v), fdatasyncSync(fd)))
  await timed('nodeAwaited', (v) => (nodeSync(v), new Promise((resolve, reject) => fdatasync(fd, (e) => (e ? reject(e) : resolve())))))
}
await writer.close()
closeSync(fd)
rmSync(dir, { recursive: true, force: true })
const us = (ms) => (ms * 1000) / (ROUNDS * EACH)
const line = (name, blocking, awaited) =>
  `${name}: blocking ${us(blocking).toFixed(1)} us a call, awaited ${us(awaited).toFixed(1)} us (${(us(awaited) - us(blocking)).toFixed(1)} us more): awaited at ${(blocking / awaited).toFixed(2)}x the blocking rate`
console.log(line('selene-persist', total.blocking, total.awaited))
console.log(line('node fs', total.nodeBlocking, total.nodeAwaited))
