// The shipped declarations compile in a user's strict project that checks library files too
// (skipLibCheck: false), imported as ESM and required as CommonJS, under node16 and nodenext.
import { execFile } from 'node:child_process'
import { mkdir, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'

import test from 'ava'

import { tempDir } from './helpers.mjs'

const root = new URL('..', import.meta.url).pathname
const tsc = join(root, 'node_modules', '.bin', 'tsc')

const ESM = `import { PersistError, Store } from 'selene-persist'
import { Shipper, ship, type ShipOptions } from 'selene-persist/jetstream'
import { createHandler, serve, type Serving } from 'selene-persist/http'

export async function use(dir: string, options: ShipOptions): Promise<number> {
  const store = await Store.open(dir)
  const sequence: number = await store.append(Buffer.from('a'))
  // @ts-expect-error: a payload is bytes, so the types are real, not any
  await store.append(42)
  const shipper: Shipper = await ship(store, options)
  await shipper.close()
  await store.close()
  return sequence
}

export const isPersistError = (error: unknown): boolean => error instanceof PersistError && typeof error.code === 'string'

export async function served(dir: string): Promise<string> {
  const serving: Serving = await serve({ dir, port: 0 })
  // @ts-expect-error: the root directory is required
  await createHandler({})
  await serving.close()
  return serving.url
}
`

const CJS = `import persist = require('selene-persist')
import jetstream = require('selene-persist/jetstream')
import http = require('selene-persist/http')

export async function use(dir: string): Promise<number> {
  const store = await persist.Store.open(dir)
  // @ts-expect-error: a payload is bytes, so the types are real, not any
  await store.append(42)
  const sequence: number = await store.append(Buffer.from('a'))
  await store.close()
  return sequence
}

export const shipFunction: typeof jetstream.ship = jetstream.ship
export const serveFunction: typeof http.serve = http.serve
`

/** A consumer project in a temp dir, the package linked into its node_modules as npm would install it. */
async function consumer(t) {
  const dir = await tempDir(t)
  await mkdir(join(dir, 'node_modules', '@types'), { recursive: true })
  await symlink(root, join(dir, 'node_modules', 'selene-persist'))
  await symlink(join(root, 'node_modules', '@types', 'node'), join(dir, 'node_modules', '@types', 'node'))
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true }))
  await writeFile(join(dir, 'esm.mts'), ESM)
  await writeFile(join(dir, 'cjs.cts'), CJS)
  return dir
}

for (const module of ['node16', 'nodenext']) {
  test(`the declarations compile with skipLibCheck false, strict, module ${module}: ESM import and CommonJS require, with selene-persist/jetstream`, async (t) => {
    const dir = await consumer(t)
    const args = ['--noEmit', '--strict', '--skipLibCheck', 'false', '--module', module, '--moduleResolution', module, '--target', 'ES2022', '--lib', 'ES2022', '--types', 'node', 'esm.mts', 'cjs.cts']
    const result = await promisify(execFile)(tsc, args, { cwd: dir }).then(
      () => ({ code: 0, stdout: '' }),
      (error) => ({ code: error.code, stdout: error.stdout }),
    )
    t.deepEqual(result, { code: 0, stdout: '' })
  })
}
