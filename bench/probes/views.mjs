// The cost of one payload view, the per-entry work of a replay loop: the package's
// `EntryBatch.payload(i)` against `Buffer#subarray` and `Buffer.from(arrayBuffer, offset, length)`
// over the same 4096 payloads of 128 B; and W4's whole loop body (a sequence and a payload view,
// as `npm run bench` replays), with no read at all: the most any replay through views can reach
// on the JS thread. Medians of 5 rounds of 500 passes.
// Usage (from the repository root, after `npm run build`): node bench/probes/views.mjs
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { WalReader, WalWriter } from '../../index.js'

const COUNT = 4096
const LENGTH = 128
const dir = mkdtempSync(join(tmpdir(), 'selene-persist-views-'))
const path = join(dir, 'wal.log')
const writer = await WalWriter.open(path, { sync: 'manual', compression: false })
for (let i = 0; i < COUNT; i++) writer.appendSync(Buffer.alloc(LENGTH, i % 251))
await writer.close()
let batch
for await (const b of (await WalReader.open(path)).batches()) batch ??= b
rmSync(dir, { recursive: true, force: true })

const starts = Array.from({ length: COUNT }, (_, i) => batch.payload(i).byteOffset)
const whole = Buffer.from(batch.payload(0).buffer)
const ways = {
  'EntryBatch.payload': (i) => batch.payload(i),
  'Buffer#subarray': (i) => whole.subarray(starts[i], starts[i] + LENGTH),
  'Buffer.from(ab, off, len)': (i) => Buffer.from(whole.buffer, starts[i], LENGTH),
  // Its result's length is the payload's when the sequence is positive (it always is).
  'W4 loop body': (i) => (batch.sequence(i) > 0 ? batch.payload(i) : whole),
}
const rounds = Object.fromEntries(Object.keys(ways).map((name) => [name, []]))
for (let round = 0; round < 6; round++) {
  for (const [name, view] of Object.entries(ways)) {
    let n = 0
    const t0 = performance.now()
    for (let pass = 0; pass < 500; pass++) for (let i = 0; i < COUNT; i++) n += view(i).length
    const ns = ((performance.now() - t0) * 1e6) / (500 * COUNT)
    if (n !== 500 * COUNT * LENGTH) throw new Error(`${name} made views of the wrong length`)
    if (round > 0) rounds[name].push(ns)
  }
}
for (const [name, values] of Object.entries(rounds)) {
  const ns = values.sort((a, b) => a - b)[2]
  console.log(`${name.padEnd(26)} ${ns.toFixed(1)} ns an entry (at most ${(1e3 / ns).toFixed(1)}M entries/s)`)
}
