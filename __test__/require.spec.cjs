const test = require('ava')
const { join } = require('node:path')
const { mkdtempSync, rmSync } = require('node:fs')
const { tmpdir } = require('node:os')

const persist = require('selene-persist')

test('the package loads through require() with the same classes', async (t) => {
  t.is(typeof persist.WalWriter.open, 'function')
  t.is(typeof persist.WalReader.open, 'function')
  const dir = mkdtempSync(join(tmpdir(), 'selene-persist-cjs-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const writer = await persist.WalWriter.open(join(dir, 'wal.log'))
  t.is(await writer.append(Buffer.from('from commonjs')), 1)
  await writer.close()
  const error = await t.throwsAsync(writer.append(Buffer.from('x')))
  t.true(error instanceof persist.PersistError)
  t.is(error.code, 'CLOSED')
})

test('ESM and CommonJS entry points export the same objects', async (t) => {
  const esm = await import('selene-persist')
  t.is(esm.WalWriter, persist.WalWriter)
  t.is(esm.PersistError, persist.PersistError)
  t.is(esm.default, persist)
})
