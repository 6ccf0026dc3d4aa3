// Errors a program can branch on: the OS's errno, syscall and path on IO errors (a cause shaped
// as Node's own), NOT_A_FILE for a directory, NOT_A_DIRECTORY for a file, the path the caller gave, FILE_IN_STORE for a
// store's files opened as a WAL, and unknown option keys refused with a "did you mean".
import { openSync } from 'node:fs'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

import test from 'ava'
import { PersistError, SnapshotBuilder, Store, WalReader, WalWriter, follow, verify } from 'selene-persist'

import { checkpointedStore, tempDir } from './helpers.mjs'

test('an OS failure carries errno, syscall, path and osCode, names the path given, and its cause is Node-shaped', async (t) => {
  const dir = await tempDir(t)
  const path = join(dir, 'missing', 'wal.log')
  const error = await t.throwsAsync(WalWriter.open(path), { instanceOf: PersistError })
  t.like(error, { code: 'IO', path, syscall: 'open', errno: -2, osCode: 'ENOENT' })
  t.notRegex(error.message, /\.tmp/, 'not the temp file the engine would have written')
  t.true(error.message.includes(path))
  // The cause is what Node's own fs.openSync(path, 'w') throws for it, field for field.
  const node = (() => {
    try {
      openSync(path, 'w')
    } catch (e) {
      return e
    }
  })()
  t.like(error.cause, { code: node.code, errno: node.errno, syscall: node.syscall, path: node.path, message: node.message })
  t.false(error.cause.message.includes('[selene:'), 'not the addon wrapper')
})

test('an engine error that is not the OS has no napi wrapper as its cause; one about a file names it', async (t) => {
  const dir = await tempDir(t)
  const path = join(dir, 'wal.log')
  const writer = await WalWriter.open(path)
  await writer.close()
  const again = await WalWriter.open(path)
  const locked = await t.throwsAsync(WalWriter.open(path))
  t.like(locked, { code: 'WRITER_LOCK_HELD', path, cause: undefined })
  t.false('errno' in locked)
  await again.close()
})

test('a directory opened as a WAL is NOT_A_FILE', async (t) => {
  const dir = await tempDir(t)
  const error = await t.throwsAsync(WalWriter.open(dir), { instanceOf: PersistError })
  t.like(error, { code: 'NOT_A_FILE', path: dir })
  t.regex(error.message, /directory, not a regular file/)
})

test('a store opened at a file, or below one, is NOT_A_DIRECTORY naming the file, and the file is untouched', async (t) => {
  const dir = await tempDir(t)
  const file = join(dir, 'a-file')
  await writeFile(file, 'not a store')
  for (const at of [file, join(file, 'store'), join(file, 'deeper', 'store')]) {
    const error = await t.throwsAsync(Store.open(at), { instanceOf: PersistError })
    t.like(error, { code: 'NOT_A_DIRECTORY', path: file }, at)
    t.regex(error.message, /a file, not a directory/)
  }
  const backupError = await t.throwsAsync((async () => {
    const store = await Store.open(join(dir, 'store'))
    try {
      await store.backup(join(file, 'copy'))
    } finally {
      await store.close()
    }
  })())
  t.like(backupError, { code: 'NOT_A_DIRECTORY', path: file })
  t.is(await readFile(file, 'utf8'), 'not a store')
})

test('WalWriter.open on a file of a store (an archive, the live WAL) is FILE_IN_STORE, and the store stays whole', async (t) => {
  const dir = await checkpointedStore(t)
  for (const name of ['wal.2.archive', 'wal.log', 'snapshot.2.snap', 'wal.9.archive']) {
    const error = await t.throwsAsync(WalWriter.open(join(dir, name)), { instanceOf: PersistError })
    t.like(error, { code: 'FILE_IN_STORE', path: join(dir, name) }, name)
    t.regex(error.message, /a file of the store at .*Store\.open/, name)
  }
  t.deepEqual((await verify(dir)).problems, [])
  const reopened = await Store.open(dir)
  t.is(reopened.lastSequence, 3)
  await reopened.close()
  // A WAL named like a store's, in a directory that is no store, is a WAL of its own.
  const alone = await tempDir(t)
  const writer = await WalWriter.open(join(alone, 'wal.log'))
  await writer.close()
  t.pass()
})

test('unknown option keys are INVALID_ARGUMENT naming the nearest known key, in plain JS', async (t) => {
  const dir = await tempDir(t)
  const cases = [
    [() => WalWriter.open(join(dir, 'w.log'), { synk: 'always' }), '`synk` in options; did you mean `sync`?'],
    [() => WalWriter.open(join(dir, 'w.log'), { preallocated: false }), 'did you mean `preallocate`?'],
    [() => Store.open(join(dir, 's'), { retension: {} }), 'did you mean `retention`?'],
    [() => Store.open(join(dir, 's'), { autoCheckpoint: { sections: () => ({}), maxByte: 5 } }), '`maxByte` in autoCheckpoint; did you mean `maxBytes`?'],
    [() => Store.open(join(dir, 's'), { zzzzzz: 1 }), 'the known ones are `sync`'],
    [() => follow(join(dir, 'w.log'), { form: 3 }).next(), 'did you mean `from`?'],
  ]
  for (const [run, message] of cases) {
    const error = await t.throwsAsync(run(), { instanceOf: PersistError })
    t.is(error.code, 'INVALID_ARGUMENT', message)
    t.true(error.message.includes(message), `${error.message} has ${message}`)
  }
  await mkdir(join(dir, 'p'))
  const store = await Store.open(join(dir, 'p'))
  t.is((await t.throwsAsync(store.prune({ keepSnapshot: 1 }))).code, 'INVALID_ARGUMENT')
  t.is((await t.throwsAsync(store.consumer('c', { form: 1 }))).code, 'INVALID_ARGUMENT')
  t.is((await t.throwsAsync(store.checkpoint({}, { compres: true }))).code, 'INVALID_ARGUMENT')
  await store.close()
})

test('unknown keys of nested options, entry meta and the replay and read options are refused too', async (t) => {
  const dir = await tempDir(t)
  const store = await Store.open(join(dir, 's'))
  const writer = await WalWriter.open(join(dir, 'w.log'))
  await writer.append(Buffer.from('x'))
  const reader = await WalReader.open(join(dir, 'w.log'))
  const cases = [
    [() => WalWriter.open(join(dir, 'c.log'), { compression: { treshold: 1 } }), '`treshold` in compression; did you mean `threshold`?'],
    [() => WalWriter.open(join(dir, 'e.log'), { sync: { everyN: 2, intervalMS: 5 } }), '`intervalMS` in sync; did you mean `intervalMs`?'],
    [() => WalWriter.open(join(dir, 'b.log'), { sync: { everyN: 2, intervalMs: 5 } }), 'sync must be'],
    [() => writer.append(Buffer.from('y'), { principle: Buffer.from('p') }), '`principle` in meta; did you mean `principal`?'],
    [() => store.replay({ form: 1 }).next(), '`form` in options; did you mean `from`?'],
    [() => reader.entries({ form: 1 }).next(), '`form` in options; did you mean `from`?'],
    [() => new SnapshotBuilder().add('a', Buffer.from('x'), { compres: false }), '`compres` in options; did you mean `compress`?'],
    [() => new SnapshotBuilder().add('a', Buffer.from('x'), { compress: 'no' }), 'options.compress must be a boolean'],
  ]
  for (const [run, message] of cases) {
    const error = await t.throwsAsync(async () => run(), { instanceOf: PersistError })
    t.is(error.code, 'INVALID_ARGUMENT', message)
    t.true(error.message.includes(message), `${error.message} has ${message}`)
  }
  t.is(writer.lastSequence, 1, 'nothing refused was appended')
  await writer.close()
  await store.close()
})

test('the JetStream functions refuse unknown option keys too, before connecting', async (t) => {
  const { audit, replicate, restore, ship } = await import('selene-persist/jetstream')
  const dir = await tempDir(t)
  const store = await Store.open(join(dir, 's'))
  const remote = { servers: 'nats://127.0.0.1:1', stream: 'S' }
  const cases = [
    [() => ship(store, { ...remote, nodeId: 1, windw: 4 }), 'did you mean `window`?'],
    [() => replicate({ ...remote, into: store, node: [1] }), 'did you mean `nodes`?'],
    [() => restore({ ...remote, nodeId: 1, dir: join(dir, 'r'), toSequnce: 3 }), 'did you mean `toSequence`?'],
    [() => audit({ ...remote, nodeId: 1, dir: join(dir, 's'), subjct: 'x' }), 'did you mean `subject`?'],
  ]
  for (const [run, message] of cases) {
    const error = await t.throwsAsync(run(), { instanceOf: PersistError })
    t.is(error.code, 'INVALID_ARGUMENT', message)
    t.true(error.message.includes(message), `${error.message} has ${message}`)
  }
  await store.close()
})
