// Shared helpers for the ava tests.
import { execFile, execFileSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

import { Appender, Store, WalReader } from 'selene-persist'

const native = createRequire(import.meta.url)('../native.js')

/** A fresh temp directory, removed when the test ends. */
export async function tempDir(t) {
  const dir = await mkdtemp(join(tmpdir(), 'selene-persist-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** A closed store in a fresh temp directory: entry 1 ('a'), a checkpoint at 1 (one snapshot and an archive), entry 2 ('b'). */
export async function checkpointedStore(t) {
  const dir = await tempDir(t)
  const store = await Store.open(dir)
  await store.append(Buffer.from('a'))
  await store.checkpoint({ s: Buffer.from('x') })
  await store.append(Buffer.from('b'))
  await store.close()
  return dir
}

const cli = new URL('../cli.js', import.meta.url).pathname

/** The path of the test fixture script `name` (in __test__/fixtures). */
export const fixture = (name) => new URL(`./fixtures/${name}`, import.meta.url).pathname

/** Run the CLI; resolves with { code, stdout, stderr } whatever the exit code. */
export async function runCli(...args) {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [cli, ...args], { maxBuffer: 64 << 20, timeout: 120_000 })
    return { code: 0, stdout, stderr }
  } catch (error) {
    return { code: error.code, stdout: error.stdout, stderr: error.stderr }
  }
}

/** A payload of 100 bytes, each `i % 251`. */
export const hundred = (i) => Buffer.alloc(100, i % 251)

/** Bytes in an ArrayBuffer of their own (small Buffers share Node's pool, which never detaches). */
export const own = (text) => new Uint8Array(Buffer.from(text))

/** Bytes whose ArrayBuffer has been transferred away. */
export function detached(text) {
  const view = own(text)
  structuredClone(view.buffer, { transfer: [view.buffer] })
  return view
}

/** Recover the store at `dir` (as a new writer does), then every entry its retained files hold from `from` on, as [sequence, payload hex]. */
export async function followed(dir, from = 1) {
  const store = await Store.open(dir)
  // A follower ends once the store closes, after the entries committed before.
  const following = (async () => {
    const entries = []
    for await (const entry of store.follow({ from })) entries.push([entry.sequence, entry.payload.toString('hex')])
    return entries
  })()
  await store.close()
  return following
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

/**
 * An Appender over a fake addon: `submit` sees what the facade hands over; `settle` answers as
 * the addon's callback would; `overrides` replace other fake methods.
 */
export function probeAppender(syncMode, submit, overrides = {}) {
  let listener
  const fake = {
    listen: (callback) => {
      listener = callback
    },
    submit,
    commitSync: () => null,
    takeSettled: () => ({ settled: new Float64Array(), failures: [] }),
    flush: async () => undefined,
    close: async () => undefined,
    state: () => ({ closed: false }),
    tailRepair: () => null,
    ...overrides,
  }
  class Probe extends Appender {
    constructor() {
      super(fake, 1 << 20, native.syncSemantics({ syncMode }))
    }
  }
  return { probe: new Probe(), settle: (settled, failures) => listener(settled, failures) }
}

/** Payload `i` of the follow tests: mixed sizes (one over the compression threshold), named by `id`. */
export function sized(id, i) {
  const bytes = Buffer.alloc([10, 300, 5000, 70][i % 4], 97 + (i % 26))
  bytes.write(`${id} `)
  return bytes
}

/** A tmpfs of `size` mounted for this test (root only); null, with a log line, where it cannot be. */
export async function smallDisk(t, size) {
  const dir = await tempDir(t)
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'pipe' })
  } catch {
    t.log('skipped: mounting a tmpfs needs root')
    return null
  }
  // Teardowns run last-registered first: unmount before the directory is removed.
  t.teardown(() => execFileSync('umount', ['-l', dir], { stdio: 'pipe' }))
  return dir
}


/** Every entry the store at `dir` replays, and its snapshot's sections, in a comparable form. */
export async function contents(dir) {
  const store = await Store.open(dir)
  const entries = []
  for await (const e of store.replay()) {
    entries.push({ sequence: e.sequence, hlc: e.hlc, origin: e.origin, principal: e.principal?.toString() ?? null, payload: e.payload.toString() })
  }
  const sections = {}
  const snapshot = store.snapshot
  if (snapshot) for (const { name } of snapshot.sections()) sections[name] = (await snapshot.read(name)).toString()
  const snapshotSeq = store.snapshotSeq
  await store.close()
  return { entries, sections, snapshotSeq }
}

