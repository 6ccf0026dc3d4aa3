// Memory of a large appendBatch: `appendBatch` of `--count` payloads of `--mib` MiB each
// (random bytes, so compression cannot shrink them) to a fresh WalWriter, awaited. Reports
// the peak RSS (VmHWM) the call adds above the process's peak once the caller's buffers are
// filled, over the payload bytes: 1.0 means one copy of the payload beyond the caller's
// buffers. Each case runs in a fresh process, `--runs` times; medians are printed.
//
//   node bench/probes/large-batch.mjs [--runs 3] [--count 4] [--mib 200]
import { execFileSync } from 'node:child_process'
import { randomFillSync } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    count: { type: 'string', default: '4' },
    mib: { type: 'string', default: '200' },
    child: { type: 'string' },
  },
})

/** The process's peak resident set so far, in bytes. */
const peakRss = () => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) * 1024

if (values.child !== undefined) {
  const { WalWriter } = await import('../../index.js')
  const compression = values.child === 'compressed' ? undefined : false
  const dir = mkdtempSync(join(tmpdir(), 'selene-large-batch-'))
  try {
    const writer = await WalWriter.open(join(dir, 'wal.log'), { sync: 'always', compression })
    const payloads = Array.from({ length: Number(values.count) }, () => randomFillSync(Buffer.allocUnsafe(Number(values.mib) << 20)))
    const bytes = payloads.reduce((sum, p) => sum + p.length, 0)
    const base = peakRss()
    const start = process.hrtime.bigint()
    await writer.appendBatch(payloads)
    const ms = Number(process.hrtime.bigint() - start) / 1e6
    const growth = peakRss() - base
    await writer.close()
    process.stdout.write(JSON.stringify({ bytes, growth, ms }))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  process.exit(0)
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const mib = (n) => `${(n / 2 ** 20).toFixed(0)} MiB`
console.log(`appendBatch of ${values.count} x ${values.mib} MiB of random bytes, medians of ${values.runs} fresh processes`)
console.log('| compression | payload | peak RSS growth | growth / payload | time |')
console.log('|---|---|---|---|---|')
for (const mode of ['compressed', 'off']) {
  const results = []
  for (let run = 0; run < Number(values.runs); run++) {
    const args = [new URL(import.meta.url).pathname, '--child', mode, '--count', values.count, '--mib', values.mib]
    results.push(JSON.parse(execFileSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 1 << 20 })))
  }
  const growth = median(results.map((r) => r.growth))
  const bytes = results[0].bytes
  console.log(`| ${mode === 'compressed' ? 'default (zstd tried)' : 'off'} | ${mib(bytes)} | ${mib(growth)} | ${(growth / bytes).toFixed(2)}x | ${median(results.map((r) => r.ms)).toFixed(0)} ms |`)
}
