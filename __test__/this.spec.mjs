// Issue 26 item 10: every method and getter of every exported class, called on a wrong `this`,
// fails with INVALID_ARGUMENT in the shape its kind promises: a synchronous method or getter
// throws, an async one rejects, a generator's first next() rejects. Never a raw TypeError,
// never INTERNAL (an engine panic), and nothing runs against the foreign object.
import { join } from 'node:path'

import test from 'ava'
import * as api from 'selene-persist'
import { Appender, Store, WalWriter } from 'selene-persist'
import * as jetstream from 'selene-persist/jetstream'

import { tempDir } from './helpers.mjs'

const exported = { ...api, ...jetstream }
const classes = Object.entries(exported).filter(([, value]) => typeof value === 'function' && /^class\b/.test(Function.prototype.toString.call(value)))

/**
 * The kind of every method and getter on each exported prototype, and arguments that would be
 * valid on a real instance (so the wrong `this`, not an argument, is what fails). A member
 * missing here fails the completeness test: a new method must be listed.
 */
const SYNC = 'sync'
const ASYNC = 'async'
const GENERATOR = 'generator'
const payload = () => Buffer.from('x')
const TABLE = {
  Appender: {
    admit: [ASYNC, () => [async () => 1]],
    changed: [SYNC],
    followBatches: [GENERATOR],
    path: [SYNC],
    nextChange: [ASYNC],
    follow: [GENERATOR],
    queuedBytes: [SYNC],
    waitingCalls: [SYNC],
    append: [ASYNC, () => [payload()]],
    appendSync: [SYNC, () => [payload()]],
    appendDurableSync: [SYNC, () => [payload()]],
    flushSync: [SYNC],
    appendBatch: [ASYNC, () => [[payload()]]],
    flush: [ASYNC],
    close: [ASYNC],
    lastSequence: [SYNC],
    committedOffset: [SYNC],
    snapshotSeq: [SYNC],
    entriesSinceFsync: [SYNC],
    stats: [SYNC],
    poisoned: [SYNC],
    closed: [SYNC],
  },
  Consumer: {
    position: [SYNC],
    batches: [GENERATOR],
    entries: [GENERATOR],
    ack: [ASYNC, () => [1]],
  },
  EntryBatch: Object.fromEntries(['sequence', 'hlc', 'origin', 'principal', 'payload', 'offset', 'storedLength', 'watermark', 'compressed', 'entry'].map((name) => [name, [SYNC, () => [0]]])),
  PersistError: {},
  SnapshotBuilder: {
    add: [SYNC, () => ['s', payload()]],
    publish: [ASYNC, (dir) => [dir, 1]],
  },
  SnapshotReader: {
    sequence: [SYNC],
    path: [SYNC],
    sections: [SYNC],
    read: [ASYNC, () => ['s']],
    verify: [ASYNC],
  },
  Store: {
    role: [SYNC],
    sharing: [SYNC],
    snapshot: [SYNC],
    replay: [GENERATOR],
    replayBatches: [GENERATOR],
    followBatches: [GENERATOR],
    append: [ASYNC, () => [payload()]],
    appendBatch: [ASYNC, () => [[payload()]]],
    appendSync: [SYNC, () => [payload()]],
    appendDurableSync: [SYNC, () => [payload()]],
    checkpoint: [ASYNC, () => [{}]],
    prune: [ASYNC],
    consumer: [ASYNC, () => ['c']],
    consumers: [ASYNC],
    removeConsumer: [ASYNC, () => ['c']],
    backup: [ASYNC, (dir) => [join(dir, 'backup')]],
    close: [ASYNC],
  },
  WalReader: {
    entries: [GENERATOR],
    batches: [GENERATOR],
  },
  WalWriter: {},
  Replicator: {
    positions: [SYNC],
    applied: [ASYNC, () => [1, 1]],
    caughtUp: [ASYNC],
    close: [ASYNC],
  },
  Shipper: {
    shippedSequence: [SYNC],
    lag: [SYNC],
    shipped: [ASYNC, () => [1]],
    audit: [ASYNC],
    close: [ASYNC],
  },
  AuditError: {},
}

/** Every method and getter of `prototype` (own members only: inherited ones are listed under their class). */
function members(prototype) {
  return Object.getOwnPropertyNames(prototype)
    .filter((name) => name !== 'constructor')
    .map((name) => {
      const descriptor = Object.getOwnPropertyDescriptor(prototype, name)
      return { name, run: descriptor.get ?? descriptor.value }
    })
    .filter(({ run }) => typeof run === 'function')
}

/** What is wrong with how `run()` fails (`null`: it fails as a wrong `this` must, in the shape `kind` promises). */
async function problemOf(kind, run) {
  let result
  try {
    result = run()
  } catch (error) {
    return kind === SYNC ? wrongThis(error) : `threw synchronously (${error}) where a ${kind} method must reject`
  }
  if (kind === SYNC) return 'returned instead of throwing'
  const settled = kind === GENERATOR ? result?.next?.() : result
  if (!(settled instanceof Promise)) return `did not return ${kind === ASYNC ? 'a Promise' : 'an async generator'}`
  try {
    await settled
  } catch (error) {
    return wrongThis(error)
  }
  return 'resolved'
}

/** `null` if `error` is the typed wrong-`this` failure, else what it is. */
function wrongThis(error) {
  const typed = error instanceof api.PersistError && error.code === 'INVALID_ARGUMENT' && /wrong `this`/.test(error.message)
  return typed ? null : `${error?.constructor?.name} ${error?.code}: ${error?.message}`
}

test('the table lists every method and getter of every exported class, and no other', (t) => {
  t.deepEqual(classes.map(([name]) => name).sort(), Object.keys(TABLE).sort())
  for (const [name, cls] of classes) t.deepEqual(members(cls.prototype).map((m) => m.name).sort(), Object.keys(TABLE[name]).sort(), name)
})

test('every method and getter called on a wrong `this` is INVALID_ARGUMENT, in its kind’s shape', async (t) => {
  const dir = await tempDir(t)
  const writer = await api.WalWriter.open(join(dir, 'w.log'))
  await writer.append(payload())
  await writer.close()
  const reader = await api.WalReader.open(join(dir, 'w.log'))
  const error = new api.PersistError('IO', 'not a handle')
  const problems = []
  let checked = 0
  for (const [name, cls] of classes) {
    // A plain object, and a real instance of another exported class.
    for (const [what, self] of [['{}', {}], ['another class’s instance', cls === api.WalReader ? error : reader]]) {
      for (const { name: member, run } of members(cls.prototype)) {
        const [kind, args = () => []] = TABLE[name][member]
        const problem = await problemOf(kind, () => run.call(self, ...args(dir)))
        if (problem !== null) problems.push(`${name}.prototype.${member} on ${what}: ${problem}`)
        checked++
      }
    }
  }
  t.deepEqual(problems, [])
  t.true(checked > 100)
  // The foreign WalReader was not used as one: nothing was appended through it.
  t.is((await import('./helpers.mjs').then((h) => h.readAll(join(dir, 'w.log')))).length, 1)
})

// Issue 12, item 10: a method called with a wrong `this` is INVALID_ARGUMENT.
test('methods and getters called on a foreign object are INVALID_ARGUMENT', async (t) => {
  const foreign = {}
  t.is((await t.throwsAsync(WalWriter.prototype.append.call(foreign, Buffer.from('x')))).code, 'INVALID_ARGUMENT')
  t.is((await t.throwsAsync(Appender.prototype.flush.call(foreign))).code, 'INVALID_ARGUMENT')
  t.is((await t.throwsAsync(Appender.prototype.close.call(foreign))).code, 'INVALID_ARGUMENT')
  t.is((await t.throwsAsync(Store.prototype.checkpoint.call(foreign, {}))).code, 'INVALID_ARGUMENT')
  t.is(t.throws(() => WalWriter.prototype.appendSync.call(foreign, Buffer.from('x'))).code, 'INVALID_ARGUMENT')
  t.is(t.throws(() => Appender.prototype.appendDurableSync.call(foreign, Buffer.from('x'))).code, 'INVALID_ARGUMENT')
  const getter = Object.getOwnPropertyDescriptor(Appender.prototype, 'lastSequence').get
  t.is(t.throws(() => getter.call(foreign)).code, 'INVALID_ARGUMENT')
  t.is(t.throws(() => Object.getOwnPropertyDescriptor(Store.prototype, 'snapshot').get.call(foreign)).code, 'INVALID_ARGUMENT')
  t.is((await t.throwsAsync(Store.prototype.append.call(foreign, Buffer.from('x')))).code, 'INVALID_ARGUMENT')
  t.is((await t.throwsAsync(Store.prototype.close.call(foreign))).code, 'INVALID_ARGUMENT')
  t.is(t.throws(() => Store.prototype.appendSync.call(foreign, Buffer.from('x'))).code, 'INVALID_ARGUMENT')
})

test('statics ignore `this`, and fail only on their arguments, with a typed error', async (t) => {
  for (const [name, cls] of classes) {
    for (const key of Object.getOwnPropertyNames(cls)) {
      if (['length', 'name', 'prototype'].includes(key) || typeof cls[key] !== 'function') continue
      const label = `${name}.${key} on {} with no arguments`
      const failure = await t.throwsAsync(async () => cls[key].call({}), undefined, label)
      t.true(failure instanceof api.PersistError, `${label}: ${failure}`)
      t.is(failure?.code, 'INVALID_ARGUMENT', `${label}: ${failure}`)
    }
  }
})
