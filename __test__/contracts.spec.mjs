// Contracts written once: the error codes and the defaults are defined by the engine; the
// facade's list, the README's tables and the docs are checked against what the addon exports.
import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'

import test from 'ava'

import { ERROR_CODES } from 'selene-persist'

const native = createRequire(import.meta.url)('../native.js')
const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8')

/** The rows of the README table that follows `heading`: first cell (unquoted) to the rest. */
function table(heading) {
  const section = readme.slice(readme.indexOf(heading))
  const rows = new Map()
  for (const line of section.split('\n').slice(1)) {
    if (rows.size > 0 && !line.startsWith('|')) break
    const cells = line.split('|').map((c) => c.trim())
    if (cells.length > 2 && cells[1].startsWith('`')) rows.set(cells[1].replaceAll('`', ''), cells.slice(2))
  }
  return rows
}

const MIB = 1024 * 1024
const bytes = (n) => (n % MIB === 0 ? `${n / MIB} MiB` : `${n} B`)

test('the facade lists exactly the error codes the engine reports, in its order', (t) => {
  t.deepEqual([...ERROR_CODES], native.errorCodes())
})

test("the README's error table has one row per code", (t) => {
  t.deepEqual([...table('### Error codes').keys()].sort(), [...ERROR_CODES].sort())
})

test("the README's defaults are the engine's", (t) => {
  const d = native.defaults()
  const options = table('### `WalWriter.open(path, options?)`')
  t.is(options.get('sync')?.[0], `\`'${d.syncMode}'\``)
  t.is(options.get('compression')?.[0], `\`{ threshold: ${d.compressionThreshold}, level: ${d.compressionLevel} }\``)
  t.is(options.get('preallocate')?.[0], bytes(d.preallocate))
  t.is(options.get('maxQueueBytes')?.[0], bytes(d.maxQueueBytes))
  t.true(readme.includes(`keepSnapshots?: number /* ${d.keepSnapshots} */; keepArchives?: number /* ${d.keepArchives} */`))
  t.true(readme.includes(`keeps \`keepSnapshots\` snapshots (default ${d.keepSnapshots},`))
  t.true(readme.includes(`\`keepArchives\` WAL archives (default ${d.keepArchives})`))
  t.true(readme.includes(`\`compressSnapshots\` (default ${d.compressSnapshots})`))
})

test('the ES module entry exports everything the CommonJS build does', async (t) => {
  const cjs = createRequire(import.meta.url)('selene-persist')
  const esm = await import('selene-persist')
  t.deepEqual(Object.keys(esm).filter((k) => k !== 'default').sort(), Object.keys(cjs).filter((k) => k !== '__esModule').sort())
})
