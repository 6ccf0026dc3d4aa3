// Every handle with a close() disposes with `await using`, and closes again without complaint:
// a second close() (later or at the same time) resolves; only the first reports a failure.
import { execFile } from 'node:child_process'
import { mkdir, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'

import test from 'ava'
import { Store, WalReader, WalWriter, follow, followBatches } from 'selene-persist'

import { payloadFor, readAll, tempDir } from './helpers.mjs'

const root = new URL('..', import.meta.url).pathname
const tsc = join(root, 'node_modules', '.bin', 'tsc')

const USING = `import { Store, WalWriter } from 'selene-persist'

export async function main(dir: string): Promise<string> {
  {
    await using writer = await WalWriter.open(dir + '/wal.log')
    await writer.append(Buffer.from('w'))
  }
  {
    await using store = await Store.open(dir + '/store')
    await store.append(Buffer.from('s'))
  }
  // Both files are released: open them again at once.
  const writer = await WalWriter.open(dir + '/wal.log')
  const store = await Store.open(dir + '/store')
  const seen = [writer.lastSequence, store.lastSequence].join(',')
  await writer.close()
  await store.close()
  return seen
}
`

test('await using, compiled by TypeScript, closes a WalWriter and a Store at the end of the block', async (t) => {
  const dir = await tempDir(t)
  await mkdir(join(dir, 'node_modules', '@types'), { recursive: true })
  await symlink(root, join(dir, 'node_modules', 'selene-persist'))
  await symlink(join(root, 'node_modules', '@types', 'node'), join(dir, 'node_modules', '@types', 'node'))
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }))
  await writeFile(join(dir, 'using.mts'), USING)
  const args = ['--strict', '--skipLibCheck', 'false', '--module', 'node16', '--moduleResolution', 'node16', '--target', 'ES2022', '--lib', 'ES2022,esnext.disposable', '--types', 'node', 'using.mts']
  const compiled = await promisify(execFile)(tsc, args, { cwd: dir }).then(
    () => '',
    (error) => error.stdout,
  )
  t.is(compiled, '')
  const { main } = await import(join(dir, 'using.mjs'))
  t.is(await main(dir), '1,1')
})

test('Symbol.asyncDispose is the one Node defines (Symbol.for("nodejs.asyncDispose") where absent)', async (t) => {
  const dispose = Symbol.asyncDispose ?? Symbol.for('nodejs.asyncDispose')
  const path = join(await tempDir(t), 'wal.log')
  const writer = await WalWriter.open(path)
  await writer.append(payloadFor(1))
  await writer[dispose]()
  t.true(writer.closed)
  t.is(typeof Store.prototype[dispose], 'function')
  t.deepEqual((await readAll(path)).map((e) => e.sequence), [1])
})

for (const [name, open] of [
  ['WalWriter', (dir) => WalWriter.open(join(dir, 'wal.log'))],
  ['Store', (dir) => Store.open(dir)],
]) {
  test(`${name}: a second close() resolves, two at once both resolve, and dispose after close resolves`, async (t) => {
    const dir = await tempDir(t)
    const handle = await open(dir)
    const pending = handle.append(payloadFor(1))
    const [first, second] = await Promise.allSettled([handle.close(), handle.close()])
    t.deepEqual([first.status, second.status], ['fulfilled', 'fulfilled'])
    t.is(await pending, 1)
    await t.notThrowsAsync(handle.close())
    await t.notThrowsAsync(handle[Symbol.asyncDispose]())
    t.is((await t.throwsAsync(handle.append(payloadFor(2)))).code, 'CLOSED', 'writes are still refused')
  })
}

test('every iterator handed out disposes: [Symbol.asyncDispose]() ends it as a break would, even on Node 20', async (t) => {
  const dispose = Symbol.asyncDispose ?? Symbol.for('nodejs.asyncDispose')
  const dir = await tempDir(t)
  const store = await Store.open(join(dir, 'store'))
  for (let i = 1; i <= 3; i++) await store.append(payloadFor(i))
  await store.flush()
  const consumer = await store.consumer('reader')
  const writer = await WalWriter.open(join(dir, 'wal.log'))
  for (let i = 1; i <= 3; i++) await writer.append(payloadFor(i))
  const reader = await WalReader.open(join(dir, 'wal.log'))
  const iterators = {
    'store.replay': () => store.replay(),
    'store.replayBatches': () => store.replayBatches(),
    'store.follow': () => store.follow(),
    'store.followBatches': () => store.followBatches(),
    'consumer.entries': () => consumer.entries(),
    'consumer.batches': () => consumer.batches(),
    'writer.follow': () => writer.follow(),
    'writer.followBatches': () => writer.followBatches(),
    'reader.entries': () => reader.entries(),
    'reader.batches': () => reader.batches(),
    'follow(dir)': () => follow(join(dir, 'store')),
    'followBatches(dir)': () => followBatches(join(dir, 'store')),
  }
  for (const [name, make] of Object.entries(iterators)) {
    const iterator = make()
    t.is(typeof iterator[dispose], 'function', name)
    t.false((await iterator.next()).done, `${name} yields`)
    await iterator[dispose]()
    t.true((await iterator.next()).done, `${name} is ended by dispose`)
  }
  // Nothing the followers held keeps the handles from closing.
  await writer.close()
  await store.close()
})
