// W1's ratio measured in pairs: one process alternates 50 blocking `appendDurableSync` calls
// with 50 awaited `append` calls, 20 times, on one writer under 'always', so both sides see the
// same disk at the same moments (separate processes, as `npm run bench` runs them, see a
// different disk from minute to minute on a shared host). Prints both means and their ratio.
// Usage (from the repository root, after `npm run build`): node bench/w1-paired.mjs
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { WalWriter } from 'selene-persist'

const ROUNDS = 20
const EACH = 50
const dir = mkdtempSync(join(tmpdir(), 'selene-persist-w1-'))
const writer = await WalWriter.open(join(dir, 'wal.log'), { sync: 'always', compression: false })
const record = (i) => Buffer.alloc(128, i % 251)
for (let i = 0; i < EACH; i++) await writer.append(record(i))
let blocking = 0
let awaited = 0
for (let round = 0; round < ROUNDS; round++) {
  let t0 = performance.now()
  for (let i = 0; i < EACH; i++) writer.appendDurableSync(record(i))
  blocking += performance.now() - t0
  t0 = performance.now()
  for (let i = 0; i < EACH; i++) await writer.append(record(i))
  awaited += performance.now() - t0
}
await writer.close()
rmSync(dir, { recursive: true, force: true })
const us = (ms) => ((ms * 1000) / (ROUNDS * EACH)).toFixed(1)
console.log(`blocking ${us(blocking)} us a call, awaited ${us(awaited)} us a call: awaited at ${(blocking / awaited).toFixed(2)}x the blocking rate`)
