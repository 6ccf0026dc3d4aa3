// Format v4's bytes on disk with the real writer: W3's 1M `appendSync` calls of 128 B under
// 'manual', then `flush`: the WAL's size over the payload bytes (issue 29's goal: <= 1.1x), and
// what one entry appended and flushed alone costs in framing (goal: <= 40 B).
// Usage (from the repository root, after `npm run build`): node bench/probes/w3-bytes.mjs
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { WalWriter } from '../../index.js'

const HEADER = 24
const dir = mkdtempSync(join(tmpdir(), 'w3-bytes-'))
try {
  const payload = Buffer.alloc(128, 7)
  const n = 1_000_000
  const bulk = join(dir, 'bulk.log')
  const writer = await WalWriter.open(bulk, { sync: 'manual' })
  for (let i = 0; i < n; i++) writer.appendSync(payload)
  await writer.flush()
  await writer.close()
  const size = statSync(bulk).size
  const one = join(dir, 'one.log')
  const single = await WalWriter.open(one, { sync: 'manual' })
  single.appendSync(payload)
  await single.flush()
  await single.close()
  console.log(`W3: ${size} B on disk for ${n * 128} B of payload: ${(size / (n * 128)).toFixed(3)}x, ${((size - HEADER) / n - 128).toFixed(2)} B of framing an entry`)
  console.log(`a group of one 128 B entry: ${statSync(one).size - HEADER - 128} B of framing`)
} finally {
  rmSync(dir, { recursive: true })
}
