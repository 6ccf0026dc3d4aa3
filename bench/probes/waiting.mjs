// Calls waiting for room in the queue: fire N appends of 300 B without awaiting under
// `maxQueueBytes: 1 MiB` ('manual', so no fdatasync is timed), then await them all. Reports
// the time to drain and the peak RSS above the process's start, per waiting call. Each size
// runs in a fresh process, `--runs` times; medians are printed.
//
//   node bench/probes/waiting.mjs [--runs 3] [--sizes 100000,200000,400000,1000000,2000000]
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'

const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' }, sizes: { type: 'string', default: '100000,200000,400000,1000000,2000000' }, child: { type: 'string' } } })

if (values.child !== undefined) {
  const { WalWriter } = await import('../../index.js')
  const count = Number(values.child)
  const dir = mkdtempSync(join(tmpdir(), 'selene-waiting-'))
  const writer = await WalWriter.open(join(dir, 'wal.log'), { sync: 'manual', maxQueueBytes: 1 << 20 })
  const payload = Buffer.alloc(300, 7)
  const base = process.memoryUsage().rss
  const start = process.hrtime.bigint()
  const pending = new Array(count)
  for (let i = 0; i < count; i++) pending[i] = writer.append(payload)
  const waiting = writer.waitingCalls
  const peakWhileQueued = process.memoryUsage().rss
  await Promise.all(pending)
  const ms = Number(process.hrtime.bigint() - start) / 1e6
  await writer.close()
  rmSync(dir, { recursive: true, force: true })
  process.stdout.write(JSON.stringify({ count, waiting, ms, rssBytes: peakWhileQueued - base }))
  process.exit(0)
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const runs = Number(values.runs)
console.log('| waiting calls | drain time (median) | per call | RSS while queued | RSS per waiting call |')
console.log('|---|---|---|---|---|')
for (const size of values.sizes.split(',').map(Number)) {
  const results = []
  for (let r = 0; r < runs; r++) {
    const out = execFileSync(process.execPath, ['--max-old-space-size=8192', new URL(import.meta.url).pathname, '--child', String(size)], { encoding: 'utf8' })
    results.push(JSON.parse(out))
  }
  const ms = median(results.map((r) => r.ms))
  const rss = median(results.map((r) => r.rssBytes))
  const waiting = median(results.map((r) => r.waiting))
  console.log(`| ${size.toLocaleString('en')} (${waiting.toLocaleString('en')} waited) | ${(ms / 1000).toFixed(2)} s | ${((ms * 1000) / size).toFixed(2)} µs | ${(rss / 2 ** 20).toFixed(0)} MiB | ${(rss / waiting).toFixed(0)} B |`)
}
