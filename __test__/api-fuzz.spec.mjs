// API fuzzing: random sequences of calls with random and hostile arguments. Every failure must
// be a PersistError with a known code, and the process must survive. FUZZ_OPS sets the budget,
// FUZZ_SEED replays a run.
import { join } from 'node:path'

import test from 'ava'

import { ERROR_CODES, PersistError, SnapshotBuilder, SnapshotReader, Store, WalReader, WalWriter } from 'selene-persist'

import { detached, readAll, tempDir } from './helpers.mjs'

const CODES = new Set(ERROR_CODES)

/** mulberry32: a small seeded PRNG, so a failing run can be replayed. */
function rng(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

// Issue 12, item 4: every byte argument is checked at the call; a buffer that changes afterwards
// cannot crash, hang or store something else.
test('a detached buffer is INVALID_ARGUMENT everywhere, and the writer still closes', async (t) => {
  const path = join(await tempDir(t), 'wal.log')
  const writer = await WalWriter.open(path, { sync: 'manual' })
  const error = await t.throwsAsync(writer.append(detached('x')))
  t.true(error instanceof PersistError)
  t.is(error.code, 'INVALID_ARGUMENT')
  t.is(t.throws(() => writer.appendSync(detached('x'))).code, 'INVALID_ARGUMENT')
  t.is(t.throws(() => writer.appendDurableSync(detached('x'))).code, 'INVALID_ARGUMENT')
  t.is((await t.throwsAsync(writer.appendBatch([Buffer.from('ok'), detached('x')]))).code, 'INVALID_ARGUMENT')
  t.is((await t.throwsAsync(writer.append(Buffer.from('x'), { principal: detached('p') }))).code, 'INVALID_ARGUMENT')
  await writer.close()
  t.deepEqual(await readAll(path), [], 'nothing was stored, not even an empty entry')
})

test('random call sequences with hostile arguments give typed errors and never crash', async (t) => {
  const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31)
  const budget = Number(process.env.FUZZ_OPS ?? 3000)
  t.log(`seed ${seed}, ${budget} operations (replay with FUZZ_SEED=${seed})`)
  const random = rng(seed)
  const pick = (items) => items[Math.floor(random() * items.length)]
  const dir = await tempDir(t)

  const scalars = [undefined, null, 0, -1, 1, 1.5, NaN, Infinity, -Infinity, 2 ** 53, 2 ** 64, 10n, '', 'x', '\0', 'wal.log', true, Symbol('s'), () => 1, [], [1], {}]
  const bytes = () => pick([Buffer.alloc(0), Buffer.from('payload'), new Uint8Array(5000).fill(7), Buffer.alloc(4097), new Uint16Array(3), new ArrayBuffer(4)])
  const anything = () => (random() < 0.5 ? pick(scalars) : bytes())
  const numberish = () => pick([0, 1, 3, 100, -5, 0.5, 2 ** 53, NaN, '7', undefined, null, 10n])
  const options = () =>
    pick([
      undefined,
      {},
      { sync: pick(['always', 'manual', { everyN: numberish() }, { intervalMs: numberish() }, anything()]) },
      { compression: pick([false, { threshold: numberish(), level: numberish() }, anything()]) },
      { snapshotSeq: numberish() },
      anything(),
    ])
  const meta = () =>
    pick([
      undefined,
      { principal: random() < 0.7 ? bytes() : anything() },
      { origin: pick([{ kind: 'local' }, { kind: 'replicated', sourceNodeId: numberish(), sourceSeq: numberish() }, { kind: anything() }, anything()]) },
      { hlc: pick([{ seconds: numberish(), subseconds: numberish() }, anything()]) },
      anything(),
    ])
  const sections = () => pick([{ a: bytes() }, new Map([['m', bytes()]]), { [String(pick(['', 'x', 'ünï', '\0', 'n'.repeat(300)]))]: bytes() }, { a: anything() }, anything(), () => ({ f: bytes() }), () => anything()])
  // Hostile values stay as they are; any other string is a file name inside the temp dir, so a
  // valid-looking path never lands in the working directory.
  const inDir = (value) => (typeof value === 'string' && value !== '' && !value.includes('\0') ? join(dir, value) : value)
  const path = () => pick([join(dir, 'w.log'), join(dir, 'store'), join(dir, 'nope', 'w.log'), dir, '', inDir(anything()), join(dir, 'store', 'wal.log')])

  const handles = []
  let failures = 0
  const check = async (label, run) => {
    try {
      const result = await run()
      if (result && typeof result === 'object' && (result instanceof WalWriter || result instanceof Store)) handles.push(result)
    } catch (error) {
      failures++
      if (!(error instanceof PersistError) || !CODES.has(error.code)) {
        t.fail(`${label}: ${error?.constructor?.name} ${error?.code} ${String(error?.message ?? error)} (seed ${seed})`)
      }
    }
  }

  const actions = [
    () => check('WalWriter.open', () => WalWriter.open(path(), options())),
    () => check('Store.open', () => Store.open(path(), pick([undefined, { retention: { keepSnapshots: numberish() } }, { autoCheckpoint: { maxEntries: numberish(), sections: () => ({ s: Buffer.from('x') }) } }, options()]))),
    () => check('append', () => pick(handles)?.append(random() < 0.7 ? bytes() : anything(), meta())),
    () => check('appendBatch', () => pick(handles)?.appendBatch(pick([[bytes(), bytes()], [], [anything()], anything()]))),
    () => check('appendSync', () => pick(handles)?.appendSync(random() < 0.7 ? bytes() : anything())),
    () => check('appendDurableSync', () => pick(handles)?.appendDurableSync(random() < 0.7 ? bytes() : anything(), meta())),
    () => check('flush', () => pick(handles)?.flush()),
    () => check('flushSync', () => pick(handles)?.flushSync()),
    () => check('close', () => pick(handles)?.close()),
    () => check('close during appends', () => {
      const h = pick(handles)
      if (!h) return undefined
      const pending = [h.append(bytes()), h.append(bytes())]
      return Promise.allSettled([...pending, h.close()]).then((results) => {
        for (const r of results) if (r.status === 'rejected') throw r.reason
      })
    }),
    () => check('getters', () => {
      const h = pick(handles)
      return h && [h.lastSequence, h.committedOffset, h.snapshotSeq, h.entriesSinceFsync, h.poisoned, h.closed, h.tailRepair]
    }),
    () => check('checkpoint', () => {
      const h = pick(handles.filter((x) => x instanceof Store))
      return h?.checkpoint(sections(), pick([undefined, { compress: anything() }, { compress: true }]))
    }),
    () => check('prune', () => pick(handles.filter((x) => x instanceof Store))?.prune(pick([undefined, { keepSnapshots: numberish(), keepArchives: numberish(), maxBytes: numberish(), maxAgeMs: numberish() }, anything()]))),
    () => check('replay', async () => {
      const h = pick(handles.filter((x) => x instanceof Store))
      if (h) for await (const _ of h.replay(pick([undefined, { from: numberish() }, anything()]))) break
    }),
    () => check('snapshot.read', () => pick(handles.filter((x) => x instanceof Store))?.snapshot?.read(random() < 0.5 ? 's' : anything())),
    () => check('WalReader', async () => {
      const reader = await WalReader.open(path())
      for await (const _ of reader.entries(pick([undefined, { from: numberish() }, anything()]))) break
    }),
    () => check('SnapshotReader.open', () => SnapshotReader.open(path())),
    () => check('SnapshotBuilder', () => new SnapshotBuilder().add(anything(), random() < 0.5 ? bytes() : anything()).publish(path(), numberish())),
  ]

  const running = []
  for (let i = 0; i < budget; i++) {
    const action = pick(actions)
    // Mostly awaited in order; sometimes left running to interleave with what follows.
    if (random() < 0.8) await action()
    else running.push(action())
  }
  // Every call left running settles (check never rejects), then every handle it opened is closed.
  await Promise.all(running)
  await Promise.allSettled(handles.map((h) => h.close()))
  t.log(`${failures} calls failed, each with a PersistError and a known code`)
  t.pass()
})
