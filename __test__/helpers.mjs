// Shared helpers for the ava tests.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { WalReader } from 'selene-persist'

/** A fresh temp directory, removed when the test ends. */
export async function tempDir(t) {
  const dir = await mkdtemp(join(tmpdir(), 'selene-persist-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** The deterministic payload of sequence `seq` in the standard workload. */
export function payloadFor(seq) {
  return Buffer.from(`event-${seq}-${'x'.repeat(seq % 23)}`)
}

/** Every entry of the WAL at `path`. */
export async function readAll(path, options) {
  const reader = await WalReader.open(path)
  const entries = []
  for await (const entry of reader.entries(options)) entries.push(entry)
  return entries
}
