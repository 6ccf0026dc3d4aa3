// Issue 28: a store shared by any number of processes, with real processes (fixtures/shared-child.mjs).
import { spawn } from 'node:child_process'
import { chmod, lstat, readFile, readdir, symlink, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { join } from 'node:path'

import test from 'ava'

import { Store, WalReader } from 'selene-persist'

import { fixture, tempDir } from './helpers.mjs'

/** Kill -9 rounds of the owner run here; the soak runs more (`SHARED_KILL_ROUNDS`). */
const KILL_ROUNDS = Number(process.env.SHARED_KILL_ROUNDS ?? 3)

/** A child process of the store (for the test `t`): its acknowledged and refused appends, its roles, and a way to wait for what it says. */
function start(t, dir, name, { total = 0, concurrency = 1, producer } = {}) {
  const args = [fixture('shared-child.mjs'), dir, name, String(total), String(concurrency)]
  if (producer !== undefined) args.push(String(producer))
  const child = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'inherit'] })
  // Killed if the test ends without stopping it.
  t.teardown(() => child.kill('SIGKILL'))
  const p = { child, name, acks: new Map(), fails: new Map(), roles: [], said: [], done: false, closed: false, dead: false, waiters: [] }
  const wake = () => {
    for (const waiter of p.waiters.splice(0)) waiter()
  }
  p.exit = new Promise((resolve) =>
    child.on('exit', (code, signal) => {
      p.dead = true
      wake()
      resolve({ code, signal })
    }),
  )
  let buffered = ''
  child.stdout.on('data', (chunk) => {
    buffered += chunk
    const lines = buffered.split('\n')
    buffered = lines.pop()
    for (const line of lines) {
      const [word, a, b] = line.split(' ')
      if (word === 'ack') p.acks.set(Number(a), Number(b))
      else if (word === 'fail') p.fails.set(Number(a), b)
      else if (word === 'role') p.roles.push(a)
      else if (word === 'done') p.done = true
      else if (word === 'closed') p.closed = true
      else p.said.push(line)
    }
    wake()
  })
  /** Resolves once `condition()` holds; rejects if the child ends first. */
  p.until = (condition) =>
    new Promise((resolve, reject) => {
      const check = () => {
        if (condition()) resolve()
        else if (p.dead) reject(new Error(`${name} exited before the condition held`))
        else p.waiters.push(check)
      }
      check()
    })
  p.role = () => p.roles.at(-1)
  /** Ask it its role now. */
  p.ask = async () => {
    const heard = p.roles.length
    child.stdin.write('role\n')
    await p.until(() => p.roles.length > heard)
    return p.role()
  }
  p.stop = async () => {
    child.stdin.end('stop\n')
    return p.exit
  }
  return p
}

/** Every entry of the store's archives and active WAL, in order, read from the files (not replayed through the store); watermarks are not entries. */
async function scan(dir) {
  const archives = (await readdir(dir))
    .filter((name) => /^wal\.\d+\.archive$/.test(name))
    .sort((a, b) => Number(a.split('.')[1]) - Number(b.split('.')[1]))
  const log = []
  for (const file of [...archives, 'wal.log']) {
    const reader = await WalReader.open(join(dir, file))
    for await (const entry of reader.entries()) log.push([entry.sequence, Buffer.from(entry.payload).toString()])
  }
  return log
}

/**
 * The log against what the processes were told: sequences contiguous from 1 (but the
 * checkpoint watermarks at `watermarks`), every
 * acknowledged append at its sequence, each process's appends in its own order. Returns the
 * payloads found more than once.
 */
function checkLog(t, log, processes, watermarks = []) {
  // A reduce, not Math.max(...log): a long run's log is more arguments than a call takes.
  const last = [...watermarks, ...log.map(([sequence]) => sequence)].reduce((a, b) => Math.max(a, b), 0)
  t.deepEqual(
    log.map(([sequence]) => sequence),
    Array.from({ length: last }, (_, k) => k + 1).filter((sequence) => !watermarks.includes(sequence)),
    'sequences contiguous from 1',
  )
  const at = new Map()
  for (const [sequence, text] of log) at.set(text, [...(at.get(text) ?? []), sequence])
  const doubled = [...at].filter(([, sequences]) => sequences.length > 1).map(([text]) => text)
  const wrong = []
  for (const p of processes) {
    const acked = [...p.acks].sort(([a], [b]) => a - b)
    for (const [i, sequence] of acked) if (!at.get(`${p.name}:${i}`)?.includes(sequence)) wrong.push([p.name, i, sequence, at.get(`${p.name}:${i}`)])
    const sequences = acked.map(([, sequence]) => sequence)
    t.deepEqual(sequences, [...sequences].sort((a, b) => a - b), `${p.name}'s appends in its own order`)
  }
  t.deepEqual(wrong, [], 'every acknowledged append is in the log at its sequence')
  return doubled
}

test('8 processes x 64 concurrent appends, with checkpoints by three and a prune: one log, every acknowledged entry once, in each process order', async (t) => {
  const dir = await tempDir(t)
  const processes = Array.from({ length: 8 }, (_, k) => start(t, dir, `p${k}`, { total: 256, concurrency: 64 }))
  await Promise.all(processes.map((p) => p.until(() => p.acks.size >= 32)))
  const checkpointing = processes.slice(0, 3)
  // One after another: a checkpoint whose watermark is older than a snapshot another process
  // published meanwhile is refused, as it would be in one process.
  for (const p of checkpointing) {
    p.child.stdin.write('checkpoint\n')
    await p.until(() => p.said.some((line) => line.startsWith('checkpoint')))
  }
  const owner = processes.find((p) => p.role() === 'owner')
  owner.child.stdin.write('prune\n')
  await owner.until(() => owner.said.some((line) => line.startsWith('prune')))
  const watermarks = checkpointing.map((p) => p.said.find((line) => line.startsWith('checkpoint')))
  t.true(watermarks.every((line) => /^checkpoint \d+$/.test(line)), `${watermarks}`)
  t.true(owner.said.includes('pruned'))
  await Promise.all(processes.map((p) => p.until(() => p.done)))
  t.is(processes.filter((p) => p.role() === 'owner').length, 1, 'one owner')
  for (const p of processes) t.deepEqual([...p.fails], [], `${p.name} had no refusals`)
  // Clients first, so none has to take over while the others close.
  for (const p of processes.filter((q) => q.role() === 'client')) t.like(await p.stop(), { code: 0 })
  t.like(await processes.find((p) => p.role() === 'owner').stop(), { code: 0 })
  const log = await scan(dir)
  t.is(log.length, 8 * 256)
  t.deepEqual(checkLog(t, log, processes, watermarks.map((line) => Number(line.split(' ')[1]))), [])
})

test('kill -9 of the owner while 4 clients append: a client takes over, nothing acknowledged is lost or doubled', async (t) => {
  const dir = await tempDir(t)
  const owner = start(t, dir, 'first', { concurrency: 4 })
  await owner.until(() => owner.role() === 'owner')
  // Two clients unstamped (an append in flight fails OWNER_LOST), two stamped (sent again),
  // each with more appends in flight than the 8 a producer's window once held.
  let alive = [0, 1, 2, 3].map((k) => start(t, dir, `c${k}`, { concurrency: k >= 2 ? 32 : 8, producer: k >= 2 ? 100 + k : undefined }))
  const everyone = [owner, ...alive]
  await Promise.all(alive.map((p) => p.until(() => p.role() === 'client')))
  let current = owner
  const takeovers = []
  for (let round = 0; round < KILL_ROUNDS; round++) {
    await Promise.all(alive.map((p) => p.until(() => p.acks.size >= 20 * (round + 1))))
    const killed = Date.now()
    current.child.kill('SIGKILL')
    await current.exit
    alive = alive.filter((p) => p !== current)
    // A new owner exists (a process reports its new role after its next append). Acks alone
    // do not show it: the dead owner's answers already in the sockets are read after the kill.
    await Promise.any(alive.map((p) => p.until(() => p.role() === 'owner')))
    // Each survivor goes on: the new owner serves it.
    const before = new Map(alive.map((p) => [p, p.acks.size]))
    await Promise.all(alive.map((p) => p.until(() => p.acks.size >= before.get(p) + 10)))
    takeovers.push(Date.now() - killed)
    // Asked, not taken from the last role line: a process reports a change when it notices.
    const roles = await Promise.all(alive.map((p) => p.ask()))
    const owners = alive.filter((_, i) => roles[i] === 'owner')
    t.is(owners.length, 1, `round ${round}: exactly one new owner`)
    current = owners[0]
    if (alive.length < 4) {
      const fresh = start(t, dir, `n${round}`, { concurrency: 8 })
      await fresh.until(() => fresh.role() === 'client')
      alive.push(fresh)
      everyone.push(fresh)
    }
  }
  t.log(`owner kill -9 to every client appending again: ${takeovers.join(', ')} ms`)
  for (const p of alive.filter((q) => q !== current)) t.like(await p.stop(), { code: 0 })
  t.like(await current.stop(), { code: 0 })
  for (const p of everyone) {
    const codes = new Set(p.fails.values())
    codes.delete('OWNER_LOST')
    t.deepEqual([...codes], [], `${p.name}: only OWNER_LOST refusals`)
  }
  const stamped = everyone.filter((p) => p.name === 'c2' || p.name === 'c3')
  t.deepEqual([...stamped.flatMap((p) => [...p.fails.values()])], [], 'stamped appends are retried, never refused')
  // Unstamped appends are never sent twice; a stamped one sent again after its owner died is
  // found in the new owner's producer table, rebuilt from the stamps on disk: once either way.
  t.deepEqual(checkLog(t, await scan(dir), everyone), [], 'no append doubled (raw WAL scan)')
})

test('a client follows what other processes append, woken by the owner’s notices (no polling)', async (t) => {
  const dir = await tempDir(t)
  // An owner that appends nothing, and a writer that is another client.
  const owner = start(t, dir, 'o', { concurrency: 0 })
  await owner.until(() => owner.role() === 'owner')
  const store = await Store.open(dir, { shared: true })
  t.is(store.role, 'client')
  const seen = []
  const following = (async () => {
    for await (const entry of store.follow({ from: 1 })) {
      seen.push(Buffer.from(entry.payload).toString())
      if (seen.length === 20) return
    }
  })()
  const writer = start(t, dir, 'w', { total: 20, concurrency: 1 })
  await following
  t.deepEqual(
    seen,
    Array.from({ length: 20 }, (_, i) => `w:${i}`),
  )
  // This process appended nothing and runs no timer: the owner's notices woke it.
  t.is(store.stats().entries, 0)
  t.true(store.sharing.notices > 1)
  t.like(await writer.stop(), { code: 0 })
  await store.close()
  t.like(await owner.stop(), { code: 0 })
})

test('kill -9 of a client mid-append: the owner and the log carry on', async (t) => {
  const dir = await tempDir(t)
  const store = await Store.open(dir, { shared: true })
  t.is(store.role, 'owner')
  const client = start(t, dir, 'c', { concurrency: 16 })
  await client.until(() => client.acks.size >= 50)
  client.child.kill('SIGKILL')
  await client.exit
  const mine = await store.append(Buffer.from('owner:0'))
  t.true(mine > 50)
  await store.close()
  const log = await scan(dir)
  t.deepEqual(checkLog(t, log, [client]), [])
  t.is(log.at(-1)[1], 'owner:0')
})

/** A raw connection to the owner's socket; resolves once the owner has closed it. */
function hostile(socket, send) {
  return new Promise((resolve, reject) => {
    const peer = connect(socket, () => send(peer))
    // Whatever the owner says last is read, so its end is seen.
    peer.resume()
    peer.on('error', () => undefined)
    peer.on('close', resolve)
    peer.setTimeout(60_000, () => reject(new Error('the owner never dropped the connection')))
  })
}

test('hostile clients (garbage, a huge length, a frame that never finishes) are dropped without harm', async (t) => {
  const dir = await tempDir(t)
  const store = await Store.open(dir, { shared: true })
  const socket = join(dir, 'shared.sock')
  t.true((await lstat(socket)).isSocket())
  t.is(((await lstat(socket)).mode & 0o777).toString(8), '600')
  const garbage = Buffer.alloc(64, 0x5a)
  const huge = Buffer.alloc(8)
  huge.writeUInt32LE(0xffffffff, 0)
  await Promise.all([
    hostile(socket, (peer) => peer.write(garbage)),
    hostile(socket, (peer) => peer.write(huge)),
    // Slowloris: the header of a 100-byte frame, then nothing; the owner drops it at the frame's deadline.
    hostile(socket, (peer) => peer.write(Buffer.from([100, 0, 0, 0, 1, 2, 3, 4]))),
  ])
  // The owner still serves: its own appends and a real client's.
  const client = start(t, dir, 'c', { total: 10, concurrency: 2 })
  await client.until(() => client.done)
  t.is(client.acks.size, 10)
  await store.append(Buffer.from('owner'))
  t.like(await client.stop(), { code: 0 })
  await store.close()
  t.deepEqual(checkLog(t, await scan(dir), [client]), [])
})

test('a stale socket left by a killed owner, or a symlink planted at the path, is replaced and never followed', async (t) => {
  const dir = await tempDir(t)
  const socket = join(dir, 'shared.sock')
  const first = start(t, dir, 'first', { concurrency: 1 })
  await first.until(() => first.acks.size >= 5)
  first.child.kill('SIGKILL')
  await first.exit
  t.true((await lstat(socket)).isSocket(), 'the dead owner left its socket')
  let store = await Store.open(dir, { shared: true })
  t.is(store.role, 'owner', 'the stale socket did not make it a client')
  const client = start(t, dir, 'c', { total: 5, concurrency: 1 })
  await client.until(() => client.done)
  t.like(await client.stop(), { code: 0 })
  await store.close()
  const target = join(dir, 'elsewhere')
  await writeFile(target, 'keep')
  await symlink(target, socket)
  store = await Store.open(dir, { shared: true })
  t.true((await lstat(socket)).isSocket())
  t.is(await readFile(target, 'utf8'), 'keep')
  await store.close()
})

test('two owners never coexist; without shared, a second opener gets WRITER_LOCK_HELD as before', async (t) => {
  const dir = await tempDir(t)
  const store = await Store.open(dir, { shared: true })
  t.is(store.role, 'owner')
  t.is((await t.throwsAsync(Store.open(dir))).code, 'WRITER_LOCK_HELD')
  const clients = [0, 1, 2, 3].map((k) => start(t, dir, `c${k}`, { total: 4, concurrency: 2 }))
  await Promise.all(clients.map((p) => p.until(() => p.done)))
  t.deepEqual(
    clients.map((p) => p.roles),
    clients.map(() => ['client']),
  )
  // The owner closes: exactly one process takes over, whichever gets the lock.
  await store.close()
  const late = start(t, dir, 'late', { total: 4, concurrency: 1 })
  await late.until(() => late.done)
  const everyone = [...clients, late]
  const roles = await Promise.all(everyone.map((p) => p.ask()))
  t.is(roles.filter((role) => role === 'owner').length, 1, `one owner: ${roles}`)
  for (const p of everyone.filter((q) => q.role() === 'client')) t.like(await p.stop(), { code: 0 })
  t.like(await everyone.find((p) => p.role() === 'owner').stop(), { code: 0 })
  t.deepEqual(checkLog(t, await scan(dir), everyone), [])
  await (await Store.open(dir)).close()
})

test('a client checkpoints and prunes (the owner performs them), reads the live snapshot, replays, registers and acknowledges consumers and backs up the store', async (t) => {
  const dir = await tempDir(t)
  const dest = join(await tempDir(t), 'copy')
  const owner = start(t, dir, 'o', { total: 5, concurrency: 1 })
  await owner.until(() => owner.done)
  const store = await Store.open(dir, { shared: true })
  t.is(store.role, 'client')
  const last = await store.append(Buffer.from('client:0'))
  t.is(last, 6)
  const relay = await store.consumer('relay', { from: 1 })
  t.is(await relay.ack(4), 4)
  t.like(await store.consumers(), [{ name: 'relay', position: 4, lagEntries: 2 }])
  t.is(await store.backup(dest), 6)
  const checkpoint = await store.checkpoint({ s: Buffer.from('state') })
  t.is(checkpoint.sequence, 7, 'the watermark follows the client’s appends')
  t.is(store.snapshotSeq, 7)
  t.is(await store.append(Buffer.from('client:1')), 8)
  // The snapshot and the replay read the files the owner writes.
  t.is(store.snapshot.sequence, 7)
  t.is(Buffer.from(await store.snapshot.read('s')).toString(), 'state')
  const replayed = async () => {
    const out = []
    for await (const entry of store.replay()) out.push(Buffer.from(entry.payload).toString())
    return out
  }
  t.deepEqual(await replayed(), ['client:1'])
  owner.child.stdin.write('checkpoint\n')
  await owner.until(() => owner.said.some((line) => line.startsWith('checkpoint')))
  t.is(store.snapshot.sequence, 9, 'the snapshot another process made is the live one here too')
  t.is(Buffer.from(await store.snapshot.read('by')).toString(), 'o')
  t.deepEqual(await replayed(), [])
  t.true(await store.removeConsumer('relay'))
  // The owner prunes for the client: two snapshots, each with its archive; one of each kept.
  const pruned = await store.prune({ keepSnapshots: 1, keepArchives: 1 })
  t.like(pruned, { deletedSnapshots: [7], retainedSnapshots: [9], deletedArchives: [7], retainedArchives: [9] })
  t.deepEqual((await readdir(dir)).filter((name) => /^(snapshot|wal)\.\d+\./.test(name)), ['snapshot.9.snap', 'wal.9.archive'])
  await store.close()
  t.like(await owner.stop(), { code: 0 })
  const copy = await Store.open(dest)
  t.is(copy.lastSequence, 6)
  await copy.close()
  const after = await Store.open(dir)
  t.is(after.snapshot.sequence, 9)
  await after.close()
})

test('a peer running as another user is refused (SO_PEERCRED), even through a socket made reachable to it', async (t) => {
  if (process.getuid?.() !== 0) {
    t.log('needs root, to run a peer as another user')
    t.pass()
    return
  }
  const dir = await tempDir(t)
  const store = await Store.open(dir, { shared: true })
  const socket = join(dir, 'shared.sock')
  // Loosened on purpose, so only the uid check stands between the stranger and the owner.
  await chmod(dir, 0o711)
  await chmod(socket, 0o666)
  const peer = `const s = require('node:net').connect(${JSON.stringify(socket)}, () => {
  console.log('connected')
  s.write(Buffer.alloc(8))
})
let got = 0
s.on('data', (d) => (got += d.length))
s.on('error', () => undefined)
s.on('close', () => console.log('closed ' + got))`
  const heard = await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', peer], { uid: 65534, gid: 65534, stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.on('error', reject)
    child.on('exit', () => resolve(out.trim()))
  })
  // It got through the file's permissions, and was dropped unread: not even the goodbye a
  // same-user peer gets after its bad frame.
  t.is(heard, 'connected\nclosed 0')
  const same = await new Promise((resolve) => {
    let got = 0
    const s = connect(socket, () => s.write(Buffer.alloc(8)))
    s.on('data', (d) => (got += d.length))
    s.on('close', () => resolve(got))
  })
  t.true(same > 0, 'a same-user peer is read, and told goodbye')
  await store.close()
})
