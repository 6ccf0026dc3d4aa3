// Contracts written once: the error codes and the defaults are defined by the engine; the
// facade's list, docs/api.md's tables and the TypeScript doc comments are checked against what
// the addon exports, and every key of every exported options and result type has its place in
// docs/api.md.
import { readFile, readdir } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { posix } from 'node:path'
import { fileURLToPath } from 'node:url'

import test from 'ava'
import ts from 'typescript'

import { ERROR_CODES, PROBLEM_CODES } from 'selene-persist'

const native = createRequire(import.meta.url)('../native.js')
const api = await readFile(new URL('../docs/api.md', import.meta.url), 'utf8')

/** The rows of the docs/api.md table that follows `heading`: first cell (unquoted) to the rest. */
function table(heading) {
  const at = api.indexOf(heading)
  if (at < 0) throw new Error(`docs/api.md has no heading ${heading}`)
  const rows = new Map()
  for (const line of api.slice(at).split('\n').slice(1)) {
    if (rows.size > 0 && !line.startsWith('|')) break
    const cells = line.split('|').map((c) => c.trim())
    if (cells.length > 2 && cells[1].startsWith('`')) rows.set(cells[1].replaceAll('`', ''), cells.slice(2))
  }
  return rows
}

const MIB = 1024 * 1024
const bytes = (n) => (n % MIB === 0 ? `${n / MIB} MiB` : `${n} B`)

/** Every exported interface of the built declarations, with each property's name and doc comment. */
function exportedInterfaces(entry) {
  const file = fileURLToPath(new URL(entry, import.meta.url))
  const program = ts.createProgram([file], { strict: true, noEmit: true })
  const checker = program.getTypeChecker()
  const module = checker.getSymbolAtLocation(program.getSourceFile(file))
  const found = new Map()
  for (let symbol of checker.getExportsOfModule(module)) {
    if (symbol.flags & ts.SymbolFlags.Alias) symbol = checker.getAliasedSymbol(symbol)
    if (!(symbol.flags & ts.SymbolFlags.Interface)) continue
    const type = checker.getDeclaredTypeOfSymbol(symbol)
    found.set(
      symbol.getName(),
      type.getProperties().map((p) => ({ name: p.getName(), doc: ts.displayPartsToString(p.getDocumentationComment(checker)) })),
    )
  }
  return found
}

test('the facade lists exactly the error codes the engine reports, in its order', (t) => {
  t.deepEqual([...ERROR_CODES], native.errorCodes())
})

test("docs/api.md's error table has one row per code", (t) => {
  t.deepEqual([...table('### Error codes').keys()].sort(), [...ERROR_CODES].sort())
})

test("docs/api.md's channel table has one row per channel the facade publishes on", async (t) => {
  const source = await readFile(new URL('../src/diagnostics.ts', import.meta.url), 'utf8')
  const published = [...source.matchAll(/channel\('(selene-persist:[a-z-]+)'\)/g)].map((m) => m[1])
  t.true(published.length > 0, 'the pattern reads diagnostics.ts')
  t.deepEqual([...table('## Diagnostics channels').keys()].sort(), published.sort())
})

test("docs/api.md's warning table has one row per kind the engine reports", (t) => {
  t.deepEqual([...table('### Warning kinds').keys()].sort(), native.warningKinds().sort())
})

test("the docs' defaults are the engine's", async (t) => {
  const d = native.defaults()
  const options = table('### `WalWriter.open(path, options?)`')
  t.is(options.get('sync')?.[0], `\`'${d.syncMode}'\``)
  t.is(options.get('compression')?.[0], `\`{ threshold: ${d.compressionThreshold}, level: ${d.compressionLevel} }\``)
  t.is(options.get('preallocate')?.[0], bytes(d.preallocate))
  t.is(options.get('maxQueueBytes')?.[0], bytes(d.maxQueueBytes))
  const storeOptions = table('### `Store.open(dir, options?)`')
  t.is(storeOptions.get('compressSnapshots')?.[0], `\`${d.compressSnapshots}\``)
  t.is(storeOptions.get('retention')?.[0], `\`{ keepSnapshots: ${d.keepSnapshots}, keepArchives: ${d.keepArchives} }\``)
  t.true(api.includes(`keepSnapshots?: number /* ${d.keepSnapshots} */; keepArchives?: number /* ${d.keepArchives} */`))
  const store = (await readFile(new URL('../docs/store.md', import.meta.url), 'utf8')).replaceAll('\n', ' ')
  t.true(store.includes(`keeps \`keepSnapshots\` snapshots (default ${d.keepSnapshots},`))
  t.true(store.includes(`\`keepArchives\` WAL archives (default ${d.keepArchives})`))
})

test("the TypeScript doc comments' defaults are the engine's", (t) => {
  const d = native.defaults()
  const types = exportedInterfaces('../index.d.ts')
  const doc = (type, key) => types.get(type)?.find((p) => p.name === key)?.doc ?? ''
  t.regex(doc('WalWriterOptions', 'sync'), new RegExp(`default \`'${d.syncMode}'\``))
  t.regex(doc('WalWriterOptions', 'compression'), new RegExp(`\\(default ${d.compressionThreshold}\\)`))
  t.regex(doc('WalWriterOptions', 'maxQueueBytes'), new RegExp(`\\(default ${bytes(d.maxQueueBytes)}\\)`))
  t.regex(doc('WalWriterOptions', 'preallocate'), new RegExp(`\\(default ${bytes(d.preallocate)}\\)`))
  t.regex(doc('RetentionPolicy', 'keepSnapshots'), new RegExp(`\\(default ${d.keepSnapshots}\\)`))
  t.regex(doc('RetentionPolicy', 'keepArchives'), new RegExp(`\\(default ${d.keepArchives}\\)`))
  t.regex(doc('StoreOptions', 'compressSnapshots'), new RegExp(`\\(default ${d.compressSnapshots}\\)`))
})

/** The engine's default behind an option or a key of an options type, as the docs write it, by the key's name. */
function documentedDefaults() {
  const d = native.defaults()
  return new Map([
    ['sync', `'${d.syncMode}'`],
    ['compression', String(d.compressionThreshold)],
    ['threshold', String(d.compressionThreshold)],
    ['level', String(d.compressionLevel)],
    ['preallocate', bytes(d.preallocate)],
    ['maxQueueBytes', bytes(d.maxQueueBytes)],
    ['keepSnapshots', String(d.keepSnapshots)],
    ['keepArchives', String(d.keepArchives)],
    ['compressSnapshots', String(d.compressSnapshots)],
  ])
}

test('every option key of the options types has its row in docs/api.md, and every row is an option', (t) => {
  const types = exportedInterfaces('../index.d.ts')
  const keys = (type) => (types.get(type) ?? []).map((p) => p.name)
  const writer = keys('WalWriterOptions')
  const own = keys('StoreOptions').filter((k) => !writer.includes(k))
  t.true(writer.length > 0 && own.length > 0)
  t.deepEqual([...table('### `WalWriter.open(path, options?)`').keys()].sort(), [...writer].sort())
  t.deepEqual([...table('### `Store.open(dir, options?)`').keys()].sort(), [...own].sort())
})

test("every default a TypeScript doc comment or docs/api.md's Types table gives for an engine option is the addon's", (t) => {
  const expected = documentedDefaults()
  const wrong = []
  for (const entry of ['../index.d.ts', '../jetstream.d.ts', '../http.d.ts']) {
    for (const [type, properties] of exportedInterfaces(entry)) {
      for (const { name, doc } of properties) {
        const want = expected.get(name)
        if (want === undefined || !/options|policy/i.test(type)) continue
        // Each such key states its default, and states the addon's.
        const stated = [...doc.matchAll(/default (?:`)?([^\s),;`]+(?: MiB| B)?)/g)].map((m) => m[1])
        if (!stated.includes(want)) wrong.push(`${type}.${name}: ${stated.join(', ') || 'none'} (the addon: ${want})`)
      }
    }
  }
  for (const line of api.slice(api.indexOf('## Types')).split('\n')) {
    for (const [, key, value] of line.matchAll(/(\w+)\?: \w+ \/\* ([^*]+) \*\//g)) {
      const want = expected.get(key)
      if (want !== undefined && value.trim() !== want) wrong.push(`docs/api.md ${key}: ${value.trim()} (the addon: ${want})`)
    }
  }
  t.deepEqual(wrong, [])
})

test("every prose statement of the default retention ('keep N snapshots, M archives') is the addon's", async (t) => {
  const d = native.defaults()
  const root = new URL('../', import.meta.url)
  const files = ['README.md', ...(await readdir(new URL('docs/', root))).map((f) => `docs/${f}`), ...(await readdir(new URL('src/', root), { recursive: true })).filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts')).map((f) => `src/${f}`)]
  const stated = []
  for (const file of files) {
    const text = (await readFile(new URL(file, root), 'utf8')).replaceAll(/\s+/g, ' ')
    for (const [phrase, snapshots, archives] of text.matchAll(/keeps? (\d+) snapshots,? (?:and )?(\d+) archives/g)) stated.push([file, phrase, Number(snapshots), Number(archives)])
  }
  t.true(stated.length > 0)
  t.deepEqual(
    stated.filter(([, , snapshots, archives]) => snapshots !== d.keepSnapshots || archives !== d.keepArchives),
    [],
  )
})

test('every error code the docs and the doc comments name exists', async (t) => {
  // Upper-case names with an underscore that are not codes: environment variables, open flags, constants.
  const NOT_CODES = new Set(['ERROR_CODES', 'PROBLEM_CODES', 'O_NOFOLLOW', 'O_NONBLOCK', 'O_EXCL', 'RUSTC_BOOTSTRAP', 'PROPTEST_CASES', 'LD_PRELOAD', 'FUZZ_SEED', 'FUZZ_OPS', 'CARGO_TARGET_DIR', 'CARGO_INCREMENTAL', 'NAPI_RS_NATIVE_LIBRARY_PATH', 'NAPI_RS_FORCE_WASI', 'NAPI_RS_WASI_FLAVOR', 'NAPI_RS_ENFORCE_VERSION_CHECK', 'SO_PEERCRED', 'XDG_RUNTIME_DIR', 'SHARED_KILL_ROUNDS'])
  // The HTTP subscription API's codes are the protocol's, in their own table.
  const { SubscriptionErrors } = createRequire(import.meta.url)('../src/http/subscriptions.js')
  const known = new Set([...ERROR_CODES, ...PROBLEM_CODES, ...Object.values(SubscriptionErrors)])
  const root = new URL('../', import.meta.url)
  const files = ['README.md', 'ARCHITECTURE.md', 'RELIABILITY.md', ...(await readdir(new URL('docs/', root))).map((f) => `docs/${f}`)]
  for (const dir of ['src', 'crates/engine/src', 'crates/node/src']) {
    for (const name of await readdir(new URL(`${dir}/`, root), { recursive: true })) {
      if ((name.endsWith('.ts') && !name.endsWith('.d.ts')) || name.endsWith('.rs')) files.push(`${dir}/${name}`)
    }
  }
  files.push('index.ts', 'jetstream.ts', 'http.ts', 'cli.ts')
  const texts = await Promise.all(files.map((file) => readFile(new URL(file, root), 'utf8')))
  // Constants of the code (`MAX_SEQUENCE`) are names, not codes.
  const declared = new Set(texts.flatMap((text) => [...text.matchAll(/\b(?:const|static)\s+([A-Z][A-Z0-9_]+)\b/g)].map((m) => m[1])))
  const unknown = new Set()
  files.forEach((file, i) => {
    // In Markdown every such name counts; in code, those quoted in backticks (doc comments, messages).
    const pattern = file.endsWith('.md') ? /\b([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)\b/g : /`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)`/g
    for (const [, name] of texts[i].matchAll(pattern)) if (!known.has(name) && !NOT_CODES.has(name) && !declared.has(name)) unknown.add(`${file}: ${name}`)
  })
  t.deepEqual([...unknown], [])
})

test('every option of each CLI command is in its row of docs/cli.md', async (t) => {
  const cli = await readFile(new URL('../docs/cli.md', import.meta.url), 'utf8')
  const rows = new Map()
  for (const line of cli.split('\n')) {
    const match = /^\| `(\w+)([^|]*(?:\\\|[^|]*)*)` \|/.exec(line)
    if (match) rows.set(match[1], match[2])
  }
  const require = createRequire(import.meta.url)
  const missing = []
  let commands = 0
  for (const module of ['examine', 'dump', 'tail', 'backup', 'salvage', 'remote', 'serve', 'demo', 'bench']) {
    for (const [name, usage] of Object.entries(require(`../src/cli/${module}.js`))) {
      if (!name.endsWith('_USAGE')) continue
      const command = /^Usage: selene-persist (\w+)/.exec(usage)?.[1]
      const row = rows.get(command)
      commands++
      if (row === undefined) {
        missing.push(`${command}: no row`)
        continue
      }
      for (const [, short, long] of usage.matchAll(/^ {2}(?:(-\w), )?--([\w-]+)/gm)) {
        if (!row.includes(`--${long}`) && !(short && row.includes(`[${short}]`))) missing.push(`${command} --${long}`)
      }
    }
  }
  t.is(commands, rows.size)
  t.deepEqual(missing, [])
})

test('every exported interface has a row in its Types table, holding every key', async (t) => {
  const jetstream = await readFile(new URL('../docs/jetstream.md', import.meta.url), 'utf8')
  const http = await readFile(new URL('../docs/http.md', import.meta.url), 'utf8')
  const missing = []
  for (const [entry, docs] of [
    ['../index.d.ts', api],
    ['../jetstream.d.ts', jetstream],
    ['../http.d.ts', http],
  ]) {
    for (const [type, properties] of exportedInterfaces(entry)) {
      const row = docs.split('\n').find((line) => line.startsWith(`| \`${type}\` |`))
      if (!row) missing.push(type)
      else for (const { name } of properties) if (!new RegExp(`\\b${name}\\b`).test(row)) missing.push(`${type}.${name}`)
    }
  }
  t.deepEqual(missing, [])
})

test("every source module of the engine, the binding and the facade is named in ARCHITECTURE.md or the engine's map", async (t) => {
  const architecture = await readFile(new URL('../ARCHITECTURE.md', import.meta.url), 'utf8')
  const map = await readFile(new URL('../crates/engine/src/lib.rs', import.meta.url), 'utf8')
  const modules = async (dir, extension) =>
    (await readdir(new URL(`../${dir}/`, import.meta.url), { recursive: true }))
      .filter((name) => name.endsWith(extension) && !name.endsWith('.d.ts') && !name.includes('tests'))
      .map((name) => name.slice(0, -extension.length).split('/').at(-1))
      .filter((name) => name !== 'mod' && name !== 'lib')
  const unnamed = []
  for (const name of await modules('crates/engine/src', '.rs')) if (!architecture.includes(`\`${name}\``) && !map.includes(`[\`${name}\`]`)) unnamed.push(`engine ${name}`)
  for (const name of await modules('crates/node/src', '.rs')) if (!architecture.includes(`\`${name}\``)) unnamed.push(`binding ${name}`)
  for (const name of await modules('src', '.ts')) if (!architecture.includes(`\`${name}\``)) unnamed.push(`facade ${name}`)
  t.deepEqual(unnamed, [])
})

test("the engine's modules import one another without a cycle", async (t) => {
  const src = new URL('../crates/engine/src/', import.meta.url)
  const files = (await readdir(src, { recursive: true })).filter((f) => f.endsWith('.rs') && !f.includes('tests') && f !== 'lib.rs')
  const uses = new Map()
  for (const file of files) {
    const module = file.split('/')[0].replace(/\.rs$/, '')
    const text = (await readFile(new URL(file, src), 'utf8')).split('#[cfg(test)]')[0]
    const code = text
      .split('\n')
      .filter((line) => !line.trim().startsWith('//'))
      .join('\n')
    const targets = uses.get(module) ?? new Set()
    for (const [, used] of code.matchAll(/crate::(\w+)/g)) if (used !== module) targets.add(used)
    // `use crate::{a, b::c}` groups
    for (const [, group] of code.matchAll(/crate::\{([^}]*)\}/g)) for (const part of group.split(',')) if (part.trim()) targets.add(part.trim().split('::')[0])
    uses.set(module, targets)
  }
  t.deepEqual(cyclesOf(uses), [])
})

test("the facade's modules import one another without a cycle (type-only imports aside)", async (t) => {
  const root = new URL('../', import.meta.url)
  const sources = (await readdir(new URL('src/', root), { recursive: true })).filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
  const files = ['index.ts', 'jetstream.ts', 'http.ts', 'cli.ts', ...sources.map((f) => `src/${f}`)]
  const uses = new Map()
  for (const file of files) {
    const text = await readFile(new URL(file, root), 'utf8')
    const targets = new Set()
    for (const [, spec] of text.matchAll(/^(?:import|export)\s+(?!type\b)[^'"]*?from\s+'(\.[^']+)'/gm)) {
      const target = `${posix.normalize(posix.join(posix.dirname(file), spec))}.ts`
      if (files.includes(target)) targets.add(target)
    }
    uses.set(file, targets)
  }
  t.true([...uses.values()].some((targets) => targets.size > 0), 'the import pattern reads the sources')
  t.deepEqual(cyclesOf(uses), [])
})

/** Every cycle of a module graph (module -> the modules it imports), as `a -> b -> a`. */
function cyclesOf(uses) {
  const cycles = []
  const state = new Map()
  const visit = (module, path) => {
    if (state.get(module) === 'done') return
    if (state.get(module) === 'open') return void cycles.push([...path.slice(path.indexOf(module)), module].join(' -> '))
    state.set(module, 'open')
    for (const next of uses.get(module) ?? []) if (uses.has(next)) visit(next, [...path, module])
    state.set(module, 'done')
  }
  for (const module of uses.keys()) visit(module, [])
  return cycles
}

test('the ES module entry exports everything the CommonJS build does', async (t) => {
  const cjs = createRequire(import.meta.url)('selene-persist')
  const esm = await import('selene-persist')
  t.deepEqual(Object.keys(esm).filter((k) => k !== 'default').sort(), Object.keys(cjs).filter((k) => k !== '__esModule').sort())
})

test("only src/errors.ts reads the addon's error wire (`[selene:CODE] message`)", async (t) => {
  const readers = []
  for (const dir of ['src', 'src/cli', 'src/jetstream', 'src/http']) {
    for (const name of await readdir(new URL(`../${dir}/`, import.meta.url))) {
      if (!name.endsWith('.ts') || name.endsWith('.d.ts')) continue
      const text = await readFile(new URL(`../${dir}/${name}`, import.meta.url), 'utf8')
      // The wire's prefix, or a code looked for in a message's text.
      if (/selene:|\/[A-Z][A-Z_]+\/\.test\(|message\.(startsWith|includes)\(/.test(text)) readers.push(`${dir}/${name}`)
    }
  }
  t.deepEqual(readers, ['src/errors.ts'])
})

test("the facade's problem codes are the ones the engine's inspect raises beside its error codes", async (t) => {
  const raised = new Set()
  const engine = new URL('../crates/engine/src/', import.meta.url)
  for (const name of await readdir(engine, { recursive: true })) {
    if (!name.startsWith('inspect') || !name.endsWith('.rs')) continue
    // Every code a problem is given by name: a string literal of capitals (byte strings are magic numbers).
    for (const [, code] of (await readFile(new URL(name, engine), 'utf8')).matchAll(/(?<![b\w])"([A-Z][A-Z_]+)"/g)) raised.add(code)
  }
  t.deepEqual([...raised].filter((code) => !ERROR_CODES.includes(code)).sort(), [...PROBLEM_CODES].sort())
})

test('what each sync policy means (ack before fdatasync, fdatasync on a timer) comes from the binding', (t) => {
  const facts = (options) => native.syncSemantics(options)
  t.deepEqual(facts({}), facts({ syncMode: native.defaults().syncMode }))
  t.deepEqual(facts({ syncMode: 'always' }), { acksBeforeSync: false, syncsInBackground: false })
  t.deepEqual(facts({ syncMode: 'everyN', everyN: 8 }), { acksBeforeSync: true, syncsInBackground: false })
  t.deepEqual(facts({ syncMode: 'manual' }), { acksBeforeSync: true, syncsInBackground: false })
  t.deepEqual(facts({ syncMode: 'interval', intervalMs: 5 }), { acksBeforeSync: true, syncsInBackground: true })
})

test("a chunk's layout, from the addon, gives every field of an entry its own position", (t) => {
  const { metaFields, u32Fields, noPrincipal, flagWatermark, flagCompressed, ...positions } = native.chunkLayout()
  const doubles = ['sequence', 'hlcSeconds', 'sourceNode', 'sourceSeq', 'offset'].map((k) => positions[k])
  const integers = ['payloadStart', 'payloadLen', 'hlcSubseconds', 'principalLen', 'storedLen', 'flags'].map((k) => positions[k])
  t.deepEqual([...doubles].sort(), [...Array(metaFields).keys()])
  t.deepEqual([...integers].sort(), [...Array(u32Fields).keys()])
  t.is(noPrincipal, 2 ** 32 - 1)
  t.is(flagWatermark & flagCompressed, 0)
})
