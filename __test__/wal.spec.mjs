import { execFile } from 'node:child_process'
import { readFile, writeFile, truncate, appendFile, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'

import test from 'ava'

import { PersistError, WalReader, WalWriter, salvage, verify } from 'selene-persist'

import { runUntilKilled } from './fixtures/kill.mjs'
import { fixture, hundred, payloadFor, probeAppender, readAll, runCli, smallDisk, tempDir } from './helpers.mjs'

async function walWith(t, count, options) {
  const path = join(await tempDir(t), 'wal.log')
  const writer = await WalWriter.open(path, options)
  for (let seq = 1; seq <= count; seq++) await writer.append(payloadFor(seq))
  await writer.close()
  return path
}

function assertStandard(t, entries, first, last) {
  t.deepEqual(
    entries.map((e) => e.sequence),
    Array.from({ length: last - first + 1 }, (_, i) => first + i),
  )
  for (const e of entries) t.deepEqual(e.payload, payloadFor(e.sequence))
}

test('payloads, principals, origins and timestamps round-trip', async (t) => {
  const path = join(await tempDir(t), 'wal.log')
  const writer = await WalWriter.open(path)
  const big = Buffer.alloc(200_000, 'compressible ')
  const noise = Buffer.from(Array.from({ length: 10_000 }, (_, i) => (i * 7919 + (i >> 3) * 31) & 0xff))
  const cases = [
    [Buffer.from('plain'), undefined],
    [new Uint8Array([0, 1, 2, 255]), { principal: Buffer.from('alice') }],
    [Buffer.alloc(0), { principal: new Uint8Array(0) }],
    [big, { origin: { kind: 'replicated', sourceNodeId: 42, sourceSeq: 7 } }],
    [noise, { origin: { kind: 'local' }, hlc: { seconds: 1_600_000_000, subseconds: 99 } }],
  ]
  for (const [payload, meta] of cases) await writer.append(payload, meta)
  t.is(writer.lastSequence, cases.length)
  await writer.close()
  const entries = await readAll(path)
  t.is(entries.length, cases.length)
  entries.forEach((entry, i) => {
    const [payload, meta] = cases[i]
    t.is(entry.sequence, i + 1)
    t.true(Buffer.isBuffer(entry.payload))
    t.deepEqual(entry.payload, Buffer.from(payload))
    t.deepEqual(entry.principal, meta?.principal === undefined ? null : Buffer.from(meta.principal))
    t.deepEqual(entry.origin, meta?.origin ?? { kind: 'local' })
  })
  t.deepEqual(entries[4].hlc, { seconds: 1_600_000_000, subseconds: 99 })
  t.true(entries[1].hlc.seconds > 1_700_000_000)
  // The big compressible payload was stored compressed.
  t.true((await stat(path)).size < 50_000)
})

test("a batch's payloads and principals are Buffers in every respect, sharing the batch's memory", async (t) => {
  const path = join(await tempDir(t), 'wal.log')
  const writer = await WalWriter.open(path, { compression: false })
  await writer.append(Buffer.from('hello, world'), { principal: Buffer.from('alice') })
  await writer.append(Buffer.from('second'))
  await writer.close()
  const reader = await WalReader.open(path)
  for await (const batch of reader.batches()) {
    const payload = batch.payload(0)
    const principal = batch.principal(0)
    for (const view of [payload, principal]) {
      t.true(Buffer.isBuffer(view))
      t.true(view instanceof Buffer)
      t.is(view.constructor, Buffer)
      t.is(Object.getPrototypeOf(Object.getPrototypeOf(view)), Buffer.prototype)
    }
    t.is(payload.toString(), 'hello, world')
    t.is(payload.toString('hex'), Buffer.from('hello, world').toString('hex'))
    t.is(payload.readUInt32BE(0), Buffer.from('hello, world').readUInt32BE(0))
    t.true(payload.equals(Buffer.from('hello, world')))
    t.is(Buffer.compare(principal, Buffer.from('alice')), 0)
    t.deepEqual(payload.subarray(7), Buffer.from('world'))
    t.true(Buffer.isBuffer(payload.subarray(7)) && Buffer.isBuffer(payload.slice(7)))
    t.is(JSON.stringify(payload), JSON.stringify(Buffer.from('hello, world')))
    t.is(Buffer.concat([payload, batch.payload(1)]).toString(), 'hello, worldsecond')
    // Views, not copies: both entries' payloads lie in the one buffer the batch arrived in.
    t.is(payload.buffer, batch.payload(1).buffer)
  }
})

test('sequences follow call order under many concurrent appends', async (t) => {
  const path = join(await tempDir(t), 'wal.log')
  const writer = await WalWriter.open(path)
  const seqs = await Promise.all(Array.from({ length: 1000 }, (_, i) => writer.append(payloadFor(i + 1))))
  t.deepEqual(seqs, Array.from({ length: 1000 }, (_, i) => i + 1))
  await writer.close()
  assertStandard(t, await readAll(path), 1, 1000)
})

test('appendBatch commits contiguous sequences', async (t) => {
  const path = join(await tempDir(t), 'wal.log')
  const writer = await WalWriter.open(path)
  await writer.append(payloadFor(1))
  t.is(await writer.appendBatch([payloadFor(2), payloadFor(3), payloadFor(4)]), 2)
  t.is(writer.lastSequence, 4)
  await writer.close()
  assertStandard(t, await readAll(path), 1, 4)
})

test('reopen continues the sequence; snapshotSeq seeds a new file and the header wins', async (t) => {
  const path = join(await tempDir(t), 'wal.log')
  let writer = await WalWriter.open(path, { snapshotSeq: 100 })
  t.is(writer.snapshotSeq, 100)
  t.is(writer.lastSequence, 100)
  t.is(await writer.append(Buffer.from('a')), 101)
  await writer.close()
  writer = await WalWriter.open(path, { snapshotSeq: 7 })
  t.is(writer.snapshotSeq, 100)
  t.is(await writer.append(Buffer.from('b')), 102)
  await writer.close()
  const reader = await WalReader.open(path)
  t.is(reader.snapshotSeq, 100)
})

test('entries({ from }) starts at the given sequence and iterates afresh each time', async (t) => {
  const path = await walWith(t, 30)
  const reader = await WalReader.open(path)
  assertStandard(t, await readAll(path, { from: 25 }), 25, 30)
  assertStandard(t, await readAll(path, { from: 0 }), 1, 30)
  t.deepEqual(await readAll(path, { from: 31 }), [])
  let first = 0
  for await (const e of reader.entries()) {
    first = e.sequence
    break
  }
  t.is(first, 1)
})

test('a torn tail is cut on open and reported', async (t) => {
  const path = await walWith(t, 5)
  const size = (await stat(path)).size
  await truncate(path, size - 3)
  // The reader stops cleanly before the torn frame and does not change the file.
  assertStandard(t, await readAll(path), 1, 4)
  t.is((await stat(path)).size, size - 3)
  const writer = await WalWriter.open(path)
  t.is(writer.tailRepair?.reason, 'short-frame')
  t.is(writer.tailRepair?.discardedBytes, writer.tailRepair && size - 3 - writer.tailRepair.offset)
  t.is(writer.lastSequence, 4)
  t.is(await writer.append(payloadFor(5)), 5)
  await writer.close()
  assertStandard(t, await readAll(path), 1, 5)
})

test('a zero-filled tail is the end of the log: nothing is reported, appends go on, close trims it', async (t) => {
  const path = await walWith(t, 3)
  const size = (await stat(path)).size
  await appendFile(path, Buffer.alloc(4096))
  const writer = await WalWriter.open(path, { preallocate: false })
  t.is(writer.tailRepair, null)
  t.is(writer.committedOffset, size)
  t.is(await writer.append(payloadFor(4)), 4)
  await writer.close()
  t.is((await stat(path)).size, writer.committedOffset)
  assertStandard(t, await readAll(path), 1, 4)
})

test('preallocation grows the WAL in whole chunks and close cuts it to its frames', async (t) => {
  const path = await walWith(t, 0)
  const writer = await WalWriter.open(path, { preallocate: 64 * 1024 })
  t.is(await writer.append(payloadFor(1)), 1)
  t.is((await stat(path)).size, 64 * 1024)
  await writer.appendBatch(Array.from({ length: 4000 }, (_, i) => payloadFor(i + 2)))
  const grown = (await stat(path)).size
  t.true(grown > 64 * 1024 && grown % (64 * 1024) === 0 && grown >= writer.committedOffset, `size ${grown}`)
  await writer.close()
  t.is((await stat(path)).size, writer.committedOffset)
  assertStandard(t, await readAll(path), 1, 4001)
  const exact = await WalWriter.open(path, { preallocate: false })
  await exact.append(payloadFor(4002))
  t.is((await stat(path)).size, exact.committedOffset)
  await exact.close()
})

test('by default, policies that fdatasync as they commit preallocate 1 MiB, the others do not', async (t) => {
  const dir = await tempDir(t)
  const policies = [['always', 1 << 20], [{ everyN: 10 }, 1 << 20], ['manual', 0], [{ intervalMs: 50 }, 0]]
  for (const [sync, chunk] of policies) {
    const path = join(dir, `${JSON.stringify(sync).replace(/\W/g, '')}.log`)
    const writer = await WalWriter.open(path, { sync })
    await writer.append(payloadFor(1))
    const size = (await stat(path)).size
    t.is(size, chunk === 0 ? writer.committedOffset : chunk, JSON.stringify(sync))
    await writer.close()
  }
})

test('preallocate must be false or a byte count of at least 4096', async (t) => {
  const path = await walWith(t, 0)
  for (const preallocate of [0, 100, -1, 1.5, '4096', null]) {
    const error = await t.throwsAsync(WalWriter.open(path, { preallocate }))
    t.is(error.code, 'INVALID_ARGUMENT', String(preallocate))
  }
})

test('mid-log corruption is refused and the file left untouched', async (t) => {
  const path = await walWith(t, 10)
  // As after a crash before a seal: the open scans every frame.
  await rm(`${path}.seal`)
  const bytes = await readFile(path)
  bytes[Math.floor(bytes.length / 2)] ^= 0x20
  await writeFile(path, bytes)
  const error = await t.throwsAsync(WalWriter.open(path), { instanceOf: PersistError })
  t.is(error.code, 'MID_LOG_CORRUPTION')
  // Which file: in a store, the damage may be in any of its archives.
  t.is(error.path, path)
  t.true(error.message.includes(path), error.message)
  t.deepEqual(await readFile(path), bytes)
  const readError = await t.throwsAsync(readAll(path), { instanceOf: PersistError })
  t.is(readError.code, 'MID_LOG_CORRUPTION')
  t.is(readError.path, path)
})

test('damage in the last sealed frame is SEALED_CORRUPTION, never a torn tail to cut', async (t) => {
  const path = await walWith(t, 10)
  const bytes = await readFile(path)
  // The last byte of the last payload: the frame header the seal names stays intact.
  bytes[bytes.length - 1] ^= 0x20
  await writeFile(path, bytes)
  const error = await t.throwsAsync(WalWriter.open(path), { instanceOf: PersistError })
  t.is(error.code, 'SEALED_CORRUPTION')
  t.is(error.path, path)
  t.deepEqual(await readFile(path), bytes, 'nothing was cut')
  t.is((await t.throwsAsync(readAll(path), { instanceOf: PersistError })).code, 'SEALED_CORRUPTION')
  const report = await verify(path)
  t.true(report.problems.some((p) => p.severity === 'error' && p.code === 'SEALED_CORRUPTION'), JSON.stringify(report.problems))
})

test('an open after a clean close trusts the sealed prefix; reading and verify still find damage in it', async (t) => {
  const path = await walWith(t, 10)
  const bytes = await readFile(path)
  bytes[Math.floor(bytes.length / 2)] ^= 0x20
  await writeFile(path, bytes)
  const writer = await WalWriter.open(path)
  t.is(writer.lastSequence, 10)
  t.is(writer.tailRepair, null)
  await writer.close()
  t.is((await t.throwsAsync(readAll(path), { instanceOf: PersistError })).code, 'MID_LOG_CORRUPTION')
  const report = await verify(path)
  t.true(report.problems.some((p) => p.severity === 'error'), JSON.stringify(report.problems))
})

test('foreign, newer and truncated files get their own codes', async (t) => {
  const dir = await tempDir(t)
  const foreign = join(dir, 'foreign.db')
  await writeFile(foreign, 'SQLite format 3\0' + 'x'.repeat(100))
  t.is((await t.throwsAsync(WalWriter.open(foreign))).code, 'MAGIC_MISMATCH')
  t.is((await t.throwsAsync(WalReader.open(foreign))).code, 'MAGIC_MISMATCH')

  const newer = await walWith(t, 1)
  const bytes = await readFile(newer)
  bytes.writeUInt16LE(3, 4)
  await writeFile(newer, bytes)
  t.is((await t.throwsAsync(WalWriter.open(newer))).code, 'UNSUPPORTED_VERSION')

  const short = join(dir, 'short.log')
  await writeFile(short, bytes.subarray(0, 4))
  bytes.writeUInt16LE(2, 4)
  await writeFile(short, bytes.subarray(0, 12))
  t.is((await t.throwsAsync(WalWriter.open(short))).code, 'TRUNCATED_HEADER')

  const headerFlip = await walWith(t, 1)
  const hb = await readFile(headerFlip)
  hb[9] ^= 1
  await writeFile(headerFlip, hb)
  t.is((await t.throwsAsync(WalWriter.open(headerFlip))).code, 'CHECKSUM_MISMATCH')
})

test('a second writer in another process gets WRITER_LOCK_HELD', async (t) => {
  const path = join(await tempDir(t), 'wal.log')
  const writer = await WalWriter.open(path)
  const { stdout } = await promisify(execFile)(process.execPath, [fixture('lock-child.mjs'), path])
  t.deepEqual(JSON.parse(stdout), { ok: false, code: 'WRITER_LOCK_HELD', name: 'PersistError' })
  // And in this process too.
  t.is((await t.throwsAsync(WalWriter.open(path))).code, 'WRITER_LOCK_HELD')
  await writer.close()
  const after = await promisify(execFile)(process.execPath, [fixture('lock-child.mjs'), path])
  t.deepEqual(JSON.parse(after.stdout), { ok: true })
})

test('sync policies report what is not yet durable', async (t) => {
  const dir = await tempDir(t)
  const always = await WalWriter.open(join(dir, 'a.log'))
  await always.append(payloadFor(1))
  t.is(always.entriesSinceFsync, 0)
  await always.close()

  const everyN = await WalWriter.open(join(dir, 'b.log'), { sync: { everyN: 3 } })
  for (let i = 1; i <= 4; i++) await everyN.append(payloadFor(i))
  t.is(everyN.entriesSinceFsync, 1)
  await everyN.flush()
  t.is(everyN.entriesSinceFsync, 0)
  await everyN.close()

  const manual = await WalWriter.open(join(dir, 'c.log'), { sync: 'manual' })
  for (let i = 1; i <= 5; i++) await manual.append(payloadFor(i))
  t.is(manual.entriesSinceFsync, 5)
  await manual.flush()
  t.is(manual.entriesSinceFsync, 0)
  await manual.close()

  const interval = await WalWriter.open(join(dir, 'd.log'), { sync: { intervalMs: 10 } })
  await interval.append(payloadFor(1))
  const deadline = Date.now() + 10_000
  while (interval.entriesSinceFsync > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5))
  t.is(interval.entriesSinceFsync, 0, 'the background fdatasync ran')
  await interval.close()
  for (const name of ['a.log', 'b.log', 'c.log', 'd.log']) t.true((await readAll(join(dir, name))).length > 0)
})

const badOpenArgs = [
  [123, undefined],
  ['', undefined],
  ['has\0nul', undefined],
  [undefined, undefined],
  ['ok.log', 'not an object'],
  ['ok.log', { sync: 'sometimes' }],
  ['ok.log', { sync: { everyN: 0 } }],
  ['ok.log', { sync: { everyN: 1.5 } }],
  ['ok.log', { sync: { intervalMs: -1 } }],
  ['ok.log', { sync: null }],
  ['ok.log', { compression: 'yes' }],
  ['ok.log', { compression: { threshold: -1 } }],
  ['ok.log', { compression: { level: 99 } }],
  ['ok.log', { snapshotSeq: -1 }],
  ['ok.log', { snapshotSeq: 2 ** 53 }],
  ['ok.log', { snapshotSeq: '5' }],
  // Found by the API fuzzer: a BigInt made the error message itself throw.
  ['ok.log', { sync: 10n }],
  ['ok.log', { snapshotSeq: 10n }],
  ['ok.log', { sync: Symbol('s') }],
]

test('bad open arguments are INVALID_ARGUMENT and create nothing', async (t) => {
  const dir = await tempDir(t)
  for (const [path, options] of badOpenArgs) {
    const full = typeof path === 'string' && path.length > 0 && !path.includes('\0') ? join(dir, path) : path
    const label = String(path) + ' ' + String(options && Object.keys(options))
    const error = await t.throwsAsync(WalWriter.open(full, options), { instanceOf: PersistError }, label)
    t.is(error.code, 'INVALID_ARGUMENT', label)
  }
  await t.throwsAsync(stat(join(dir, 'ok.log')), { code: 'ENOENT' })
  const missing = await t.throwsAsync(WalWriter.open(join(dir, 'no', 'such', 'dir', 'wal.log')))
  t.is(missing.code, 'IO')
})

test('bad append arguments are typed errors and lose nothing', async (t) => {
  const path = join(await tempDir(t), 'wal.log')
  const writer = await WalWriter.open(path)
  await writer.append(payloadFor(1))
  const bad = [
    ['string payload', 'hello', undefined],
    ['number payload', 42, undefined],
    ['null payload', null, undefined],
    ['array payload', [1, 2, 3], undefined],
    ['string principal', Buffer.from('x'), { principal: 'alice' }],
    ['bad origin', Buffer.from('x'), { origin: { kind: 'elsewhere' } }],
    ['origin missing ids', Buffer.from('x'), { origin: { kind: 'replicated' } }],
    ['negative hlc', Buffer.from('x'), { hlc: { seconds: -1, subseconds: 0 } }],
    ['fractional hlc', Buffer.from('x'), { hlc: { seconds: 1.5, subseconds: 0 } }],
    ['meta not an object', Buffer.from('x'), 'meta'],
  ]
  for (const [label, payload, meta] of bad) {
    const error = await t.throwsAsync(writer.append(payload, meta), { instanceOf: PersistError }, label)
    t.is(error.code, 'INVALID_ARGUMENT', label)
  }
  t.is((await t.throwsAsync(writer.append(Buffer.alloc(1), { principal: Buffer.alloc(4097) }))).code, 'PRINCIPAL_TOO_LARGE')
  t.is(await writer.append(Buffer.alloc(1), { principal: Buffer.alloc(4096) }), 2)
  const tooBig = Buffer.alloc(256 * 1024 * 1024 + 1)
  t.is((await t.throwsAsync(writer.append(tooBig))).code, 'PAYLOAD_TOO_LARGE')
  t.is((await t.throwsAsync(writer.appendBatch([]))).code, 'INVALID_ARGUMENT')
  t.is((await t.throwsAsync(writer.appendBatch([Buffer.alloc(1), 'x']))).code, 'INVALID_ARGUMENT')
  t.is(writer.lastSequence, 2)
  await writer.close()
  t.deepEqual((await readAll(path)).map((e) => e.sequence), [1, 2])
  const reader = await WalReader.open(path)
  t.is((await t.throwsAsync(readAll(path, { from: -1 }))).code, 'INVALID_ARGUMENT')
  t.is((await t.throwsAsync(reader.entries({ from: 'x' }).next())).code, 'INVALID_ARGUMENT')
})

test('a closed writer refuses everything with CLOSED (a second close() resolves: dispose.spec)', async (t) => {
  const path = join(await tempDir(t), 'wal.log')
  const writer = await WalWriter.open(path)
  const pending = writer.append(payloadFor(1))
  await writer.close()
  t.is(await pending, 1, 'an append queued before close is committed')
  t.true(writer.closed)
  for (const call of [() => writer.append(payloadFor(2)), () => writer.appendBatch([payloadFor(2)]), () => writer.flush()]) {
    const error = await t.throwsAsync(call(), { instanceOf: PersistError })
    t.is(error.code, 'CLOSED')
  }
  t.is(writer.lastSequence, 1)
})

test('close makes the lock available to the next writer at once', async (t) => {
  const path = join(await tempDir(t), 'wal.log')
  for (let round = 1; round <= 20; round++) {
    const writer = await WalWriter.open(path)
    t.is(await writer.append(payloadFor(round)), round)
    await writer.close()
  }
  assertStandard(t, await readAll(path), 1, 20)
})


for (const preallocate of [4096, false]) {
  test(`every acknowledged entry survives SIGKILL under always, and nothing else appears (preallocate ${preallocate})`, async (t) => {
    const path = join(await tempDir(t), 'wal.log')
    let highestAcked = 0
    for (let round = 0; round < 5; round++) {
      const args = [path, '8', String(preallocate)]
      highestAcked = Math.max(highestAcked, await runUntilKilled(fixture('append-child.mjs'), args, 50, Math.floor(Math.random() * 40)))
      t.true(highestAcked >= 50)
      const killedSize = (await stat(path)).size
      if (preallocate) t.is(killedSize % preallocate, 0, 'killed with its preallocated chunk in place')
      const entries = await readAll(path)
      const last = entries.at(-1)?.sequence ?? 0
      t.true(last >= highestAcked, `round ${round}: acknowledged ${highestAcked}, recovered only ${last}`)
      // Contiguous from 1, each payload exactly what was appended under its sequence.
      assertStandard(t, entries, 1, last)
      // Reopening for write repairs any torn tail and keeps every acknowledged entry.
      const writer = await WalWriter.open(path, { preallocate })
      t.true(writer.lastSequence >= highestAcked)
      t.true(writer.committedOffset <= killedSize)
      await writer.close()
      t.is((await stat(path)).size, writer.committedOffset, 'close leaves exactly the frames')
    }
  })
}

test('batches() hands out views of one buffer per batch, matching entries()', async (t) => {
  const path = join(await tempDir(t), 'wal.log')
  const writer = await WalWriter.open(path)
  const payloads = Array.from({ length: 3000 }, (_, i) => (i % 7 === 0 ? Buffer.alloc(40_000, i % 256) : payloadFor(i + 1)))
  for (let i = 0; i < payloads.length; i += 500) await writer.appendBatch(payloads.slice(i, i + 500))
  await writer.append(Buffer.from('last'), { principal: Buffer.from('p'), origin: { kind: 'replicated', sourceNodeId: 9, sourceSeq: 4 } })
  await writer.close()
  const reader = await WalReader.open(path)
  const seen = []
  let batches = 0
  for await (const batch of reader.batches({ from: 2 })) {
    batches++
    t.true(batch.length <= 4096)
    for (let i = 0; i < batch.length; i++) seen.push(batch.entry(i))
    if (batch.length > 1) t.is(batch.payload(0).buffer, batch.payload(1).buffer, 'payloads share one buffer')
  }
  t.true(batches >= 3)
  const expected = (await readAll(path)).filter((e) => e.sequence >= 2)
  t.deepEqual(seen, expected)
  const last = seen.at(-1)
  t.deepEqual([last.principal, last.origin], [Buffer.from('p'), { kind: 'replicated', sourceNodeId: 9, sourceSeq: 4 }])
  t.true(seen.slice(0, -1).every((e) => e.principal === null && e.origin.kind === 'local'))
  t.true(seen[6].payload.equals(payloads[7]) && payloads[7].length === 40_000, 'a compressed payload is decompressed into the batch')
})

test('appendSync: entries in call order with append(), one flush makes them durable', async (t) => {
  const path = join(await tempDir(t), 'wal.log')
  const writer = await WalWriter.open(path, { sync: 'manual' })
  for (let seq = 1; seq <= 5000; seq++) writer.appendSync(payloadFor(seq))
  t.is(await writer.append(payloadFor(5001)), 5001, 'append() keeps its place after the appendSync entries')
  writer.appendSync(payloadFor(5002))
  await writer.flush()
  t.is(writer.lastSequence, 5002)
  t.is(writer.entriesSinceFsync, 0)
  await writer.close()
  assertStandard(t, await readAll(path), 1, 5002)
})

test('appendSync refuses the always policy, bad payloads and a closed writer', async (t) => {
  const path = join(await tempDir(t), 'wal.log')
  const always = await WalWriter.open(path)
  t.is(t.throws(() => always.appendSync(payloadFor(1))).code, 'INVALID_ARGUMENT')
  await always.close()
  const manual = await WalWriter.open(path, { sync: { everyN: 100 } })
  for (const bad of ['text', 42, null, [1, 2]]) t.is(t.throws(() => manual.appendSync(bad)).code, 'INVALID_ARGUMENT')
  t.is(t.throws(() => manual.appendSync(Buffer.allocUnsafe(256 * 1024 * 1024 + 1))).code, 'PAYLOAD_TOO_LARGE')
  manual.appendSync(payloadFor(1))
  await manual.close()
  t.is(t.throws(() => manual.appendSync(payloadFor(2))).code, 'CLOSED')
  assertStandard(t, await readAll(path), 1, 1)
})

test('a failed appendSync batch refuses every later call with its error', async (t) => {
  const failure = '[selene:IO] write wal.log: No space left on device'
  const calls = []
  // Every request fails, answered later as the committer would.
  const { probe, settle } = probeAppender('manual', (data, lengths, requests) => {
    calls.push(lengths.length)
    const settled = new Float64Array(requests.length)
    for (let i = 0; i < requests.length; i += 2) settled.set([requests[i], -1], i)
    setImmediate(() => settle(settled, Array(requests.length / 2).fill(failure)))
  })
  probe.appendSync(Buffer.from('a'))
  probe.appendSync(Buffer.from('b'))
  const flushed = await t.throwsAsync(probe.flush())
  t.deepEqual(calls, [2], 'both entries went in one batch')
  t.is(flushed.code, 'IO')
  t.regex(flushed.message, /appendSync batch failed.*No space left/)
  t.is(t.throws(() => probe.appendSync(Buffer.from('c'))).code, 'IO')
  t.is((await t.throwsAsync(probe.append(Buffer.from('d')))).code, 'IO')
  t.deepEqual(calls, [2], 'nothing after the failure reached the committer')
})

test('the appends of one tick reach the committer in one call, and each request settles on its own', async (t) => {
  const submits = []
  const { probe, settle } = probeAppender('always', (data, lengths, requests) =>
    submits.push({ data: Buffer.concat(data), lengths: [...lengths], requests: [...requests] }),
  )
  const a = probe.append(Buffer.from('aa'))
  const b = probe.appendBatch([Buffer.from('b'), Buffer.from('ccc')])
  const c = probe.append(Buffer.from('d'))
  t.is(submits.length, 0, 'nothing is handed over before the tick ends')
  await Promise.resolve()
  t.is(submits.length, 1)
  const [{ data, lengths, requests }] = submits
  t.is(data.toString(), 'aabcccd')
  t.deepEqual(lengths, [2, 1, 3, 1])
  const [ta, , tb, , tc] = requests
  t.deepEqual([requests[1], requests[3], requests[5]], [1, 2, 1], 'one request per call, with its entry count')
  t.is(probe.queuedBytes, 7)
  // The committer answers out of order, in one callback; the failed request fails alone.
  settle(new Float64Array([tc, 4, ta, -1, tb, 2]), ['[selene:PRINCIPAL_TOO_LARGE] too big'])
  t.is(await c, 4)
  t.is(await b, 2)
  const error = await t.throwsAsync(a, { instanceOf: PersistError })
  t.is(error.code, 'PRINCIPAL_TOO_LARGE')
  t.is(probe.queuedBytes, 0)
})

test('a payload is copied when append is called, so the caller may reuse its buffer at once', async (t) => {
  const path = join(await tempDir(t), 'wal.log')
  const writer = await WalWriter.open(path)
  const buffer = Buffer.from('first')
  const pending = [writer.append(buffer)]
  buffer.write('again')
  pending.push(writer.appendBatch([buffer]))
  buffer.write('third')
  t.deepEqual(await Promise.all(pending), [1, 2])
  await writer.close()
  t.deepEqual((await readAll(path)).map((e) => e.payload.toString()), ['first', 'again'])
})

test('in one tick, a refused request fails alone and the others commit with their metadata', async (t) => {
  const path = join(await tempDir(t), 'wal.log')
  const writer = await WalWriter.open(path)
  const calls = [
    writer.append(payloadFor(1)),
    writer.append(Buffer.from('refused'), { principal: Buffer.alloc(4097) }),
    writer.append(payloadFor(2), { principal: Buffer.from('alice'), origin: { kind: 'replicated', sourceNodeId: 3, sourceSeq: 9 } }),
    writer.appendBatch([payloadFor(3), payloadFor(4)]),
  ]
  const outcomes = await Promise.allSettled(calls)
  t.deepEqual(
    outcomes.map((o) => (o.status === 'fulfilled' ? o.value : o.reason.code)),
    [1, 'PRINCIPAL_TOO_LARGE', 2, 3],
  )
  await writer.close()
  const entries = await readAll(path)
  assertStandard(t, entries, 1, 4)
  t.deepEqual(entries[1].principal, Buffer.from('alice'))
  t.deepEqual(entries[1].origin, { kind: 'replicated', sourceNodeId: 3, sourceSeq: 9 })
  t.is(entries[0].principal, null)
})

test('a pending append keeps Node running until it is acknowledged; an idle writer does not', async (t) => {
  const dir = await tempDir(t)
  const script = (ack) => `
    import { WalWriter } from 'selene-persist'
    const writer = await WalWriter.open(${JSON.stringify(join(dir, 'wal.log'))})
    ${ack ? "writer.append(Buffer.from('x')).then((seq) => console.log('acknowledged', seq))" : ''}
  `
  const run = (source) => promisify(execFile)(process.execPath, ['--input-type=module', '-e', source], { timeout: 20_000 })
  const acked = await run(script(true))
  t.is(acked.stdout.trim(), 'acknowledged 1')
  const idle = await run(script(false))
  t.is(idle.stdout, '', 'an open writer with nothing pending lets the process exit')
  t.is((await readAll(join(dir, 'wal.log'))).length, 1)
})

test('a batch kept by the caller is never written over by later reads', async (t) => {
  // The addon reuses the buffers of batches JS has collected; one still referenced must stay
  // as it was, however many reads and collections follow.
  const { stdout } = await promisify(execFile)(process.execPath, ['--expose-gc', fixture('held-batches.mjs')])
  const { batches, kept, replayed, changed } = JSON.parse(stdout.trim())
  t.true(batches > 4, `the replay took ${batches} batches`)
  t.true(kept > 100)
  t.is(replayed, 120_000)
  t.is(changed, 0)
})

test('a closed store or writer is collected with its buffers: nothing the addon holds keeps it alive', async (t) => {
  // The addon's outcome callback referenced the handle until the process exited: each closed
  // handle kept its 128 KiB of append buffers (an HTTP server closing idle stores leaked them).
  const { stdout } = await promisify(execFile)(process.execPath, ['--expose-gc', fixture('closed-handles.mjs')])
  const { handles, alive, which } = JSON.parse(stdout.trim())
  t.is(handles, 40)
  // V8 may keep the newest object or two reachable from its caches; the rest must be gone.
  t.true(alive <= 3, `still alive: ${which}`)
})

/** A writer under 'always' on a fresh WAL, holding `count` entries of `hundred(i)`. */
async function writerOf(t, count) {
  const path = join(await tempDir(t), 'wal.log')
  const writer = await WalWriter.open(path, { sync: 'always' })
  await writer.appendBatch(Array.from({ length: count }, (_, i) => hundred(i)))
  return { path, writer }
}

// Issue 12, item 1: a reader must never take bytes a live writer has not finished (or may still
// cut) for damage.
test('a reader that cached the zero tail reads on when the writer appends', async (t) => {
  const { path, writer } = await writerOf(t, 1024)
  const batches = (await WalReader.open(path)).batches()
  let seen = (await batches.next()).value.length
  await writer.append(hundred(1024))
  await writer.append(hundred(1025))
  for await (const batch of batches) seen += batch.length
  t.is(seen, 1026)
  await writer.close()
})

// Issue 12, item 1: a reader must never take bytes a live writer has not finished (or may still
// cut) for damage.
test('a reader still iterating when the writer closes ends cleanly', async (t) => {
  const { path, writer } = await writerOf(t, 3000)
  const batches = (await WalReader.open(path)).batches()
  let seen = (await batches.next()).value.length
  await writer.append(hundred(3000))
  await writer.close()
  for await (const batch of batches) seen += batch.length
  t.is(seen, 3001)
})

// Issue 12, item 3: close() always releases the file, the lock and the committer thread, whatever
// failed before.
test('close after a failed appendSync batch still closes the native writer, then reports the failure', async (t) => {
  const closes = []
  const { probe, settle } = probeAppender(
    'manual',
    (data, lengths, requests) => {
      const settled = new Float64Array(requests.length)
      for (let i = 0; i < requests.length; i += 2) settled.set([requests[i], -1], i)
      setImmediate(() => settle(settled, Array(requests.length / 2).fill('[selene:IO] write wal.log: Input/output error')))
    },
    { close: async () => closes.push('closed') },
  )
  probe.appendSync(Buffer.from('a'))
  await t.throwsAsync(probe.flush())
  t.is((await t.throwsAsync(probe.close())).code, 'IO')
  t.deepEqual(closes, ['closed'], 'the native writer was closed all the same')
})

// Issue 12, item 3: close() always releases the file, the lock and the committer thread, whatever
// failed before.
test('on a full disk: a failed appendSync batch, then close releases the lock and the file reopens', async (t) => {
  const disk = await smallDisk(t, '1m')
  if (!disk) return t.pass()
  const path = join(disk, 'wal.log')
  const writer = await WalWriter.open(path, { sync: 'manual', preallocate: false, compression: false })
  for (let i = 0; i < 40; i++) writer.appendSync(Buffer.alloc(64 << 10, i))
  t.is((await t.throwsAsync(writer.flush())).code, 'DISK_FULL')
  t.is((await t.throwsAsync(writer.close())).code, 'DISK_FULL')
  const reopened = await WalWriter.open(path, { sync: 'manual' })
  const kept = reopened.lastSequence
  t.true(kept < 40)
  await reopened.close()
  const entries = await readAll(path)
  t.is(entries.length, kept)
  t.true(entries.every((e, i) => e.payload.equals(Buffer.alloc(64 << 10, i))))
})

// Issue 17 (when things go wrong).
test('salvage gets back every entry around mid-log damage a read refuses, keeping the damaged bytes', async (t) => {
  const dir = await tempDir(t)
  const path = join(dir, 'app.wal')
  const writer = await WalWriter.open(path)
  for (let n = 1; n <= 9; n++) await writer.append(Buffer.from(`entry number ${n}`))
  await writer.close()
  const offsets = []
  const reader = await WalReader.open(path)
  for await (const batch of reader.batches()) for (let i = 0; i < batch.length; i++) offsets.push(batch.offset(i))
  const bytes = await readFile(path)
  bytes[offsets[4] + 45] ^= 0xff // the payload of entry 5
  await writeFile(path, bytes)
  // The open trusts the sealed prefix; a read finds the damage and refuses to skip past it.
  t.is((await t.throwsAsync(readAll(path))).code, 'MID_LOG_CORRUPTION')
  const out = join(dir, 'salvaged.wal')
  const report = await salvage(path, out)
  t.is(report.framesRecovered, 8)
  t.deepEqual(report.missing, [[5, 5]])
  t.deepEqual(report.skipped.map(([offset]) => offset), [offsets[4]])
  t.deepEqual(await readFile(path), bytes, 'the source is untouched')
  t.is((await readFile(report.damagedFile)).length, report.skipped[0][1])
  t.deepEqual((await readAll(out)).map((e) => e.payload.toString()), [1, 2, 3, 4, 6, 7, 8, 9].map((n) => `entry number ${n}`))
  const printed = await runCli('salvage', path, join(dir, 'again.wal'))
  t.is(printed.code, 0, printed.stderr)
  t.regex(printed.stdout, /8 frames, up to sequence 9\n {2}skipped \d+ damaged bytes at offset \d+\n {2}missing sequences 5\.\.5\n/)
  t.is(report.kind, 'wal')
  t.is((await t.throwsAsync(salvage(path, out))).code, 'INVALID_ARGUMENT', 'an existing destination is refused')
})

test('a read that meets corruption first delivers every entry before it', async (t) => {
  const path = await walWith(t, 100)
  let offset = 0
  for await (const batch of (await WalReader.open(path)).batches()) {
    for (let i = 0; i < batch.length; i++) if (batch.sequence(i) === 60) offset = batch.offset(i)
  }
  // One payload byte of entry 60 flipped: valid frames follow, so it is mid-log corruption.
  const file = await readFile(path)
  file[offset + 40 + 2] ^= 0x20
  await writeFile(path, file)
  const seen = []
  const error = await t.throwsAsync(async () => {
    for await (const batch of (await WalReader.open(path)).batches()) for (let i = 0; i < batch.length; i++) seen.push(batch.sequence(i))
  })
  t.is(error.code, 'MID_LOG_CORRUPTION')
  t.deepEqual(seen, Array.from({ length: 59 }, (_, i) => i + 1))
})

test.serial('batches() reads ahead on a thread of its own, which stops when the caller does', async (t) => {
  const path = join(await tempDir(t), 'wal.log')
  const writer = await WalWriter.open(path, { sync: 'manual' })
  for (let i = 0; i < 40_000; i++) writer.appendSync(Buffer.alloc(100, i % 251))
  await writer.close()
  // Threads show their names in /proc: the read-ahead's is `selene-ahead`.
  const { readdir } = await import('node:fs/promises')
  const readingAhead = async () => {
    const names = await Promise.all((await readdir('/proc/self/task')).map((id) => readFile(`/proc/self/task/${id}/comm`, 'utf8').catch(() => '')))
    return names.filter((name) => name.trim() === 'selene-ahead').length
  }
  const settle = async (want) => {
    for (let i = 0; i < 200 && (await readingAhead()) !== want; i++) await new Promise((resolve) => setTimeout(resolve, 5))
    return readingAhead()
  }
  let seen = 0
  for await (const batch of (await WalReader.open(path)).batches()) {
    seen += batch.length
    // The log holds more chunks than the read-ahead keeps: it waits for this one to be taken.
    t.is(await readingAhead(), 1)
    break
  }
  t.true(seen > 0 && seen < 40_000)
  t.is(await settle(0), 0, 'the read-ahead stopped')
  // Read to the end, the thread stops there too, and every entry came once, in order.
  const sequences = []
  for await (const batch of (await WalReader.open(path)).batches()) for (let i = 0; i < batch.length; i++) sequences.push(batch.sequence(i))
  t.deepEqual(sequences, Array.from({ length: 40_000 }, (_, i) => i + 1))
  t.is(await settle(0), 0)
})
