// The docs run as written: every code block of README.md and docs/ is either run here, in a
// child process of its own in a fresh directory, with the inputs it names defined around it and
// its output compared where it shows one, or listed with the reason it is not meant to run. A
// new block fails until it is classified.
import { spawn } from 'node:child_process'
import { mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import test from 'ava'

import { natsServer, startNats } from './nats.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))

/** Every fenced block of README.md and docs/*.md, as `file#index` to its language and body. */
async function blocks() {
  const files = ['README.md', ...(await readdir(join(root, 'docs'))).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`)]
  const found = new Map()
  for (const file of files) {
    const text = await readFile(join(root, file), 'utf8')
    let index = 0
    for (const match of text.matchAll(/^ *```(\w*)\n([\s\S]*?)^ *```$/gm)) found.set(`${file}#${index++}`, { lang: match[1], body: match[2] })
  }
  return found
}

const OPEN_WAL = `import { WalWriter } from 'selene-persist'\nconst wal = await WalWriter.open('./wal.log')\n`
const OPEN_STORE = `import { Store } from 'selene-persist'\nconst store = await Store.open('./data')\n`
const FILL_STORE = `{ const { Store } = await import('selene-persist'); const s = await Store.open('./data'); for (const n of [1, 2, 3]) await s.append(Buffer.from(JSON.stringify({ n }))); await s.close() }\n`
const REQUIRE = `import { createRequire } from 'node:module'\nconst require = createRequire(import.meta.url)\n`

/**
 * How each block runs. `before`/`after`: code around it (the inputs it names, and what closes
 * them); `runs`: how many times, in the same directory; `stdout`: the expected output, or a
 * function of the block; `check`: a predicate of the output; `until`: a line of output after which the test sends SIGINT (a block
 * that runs until Ctrl-C); `nats`: a nats-server whose URL is `servers`; `skip`: why it is not
 * meant to run here.
 */
const CASES = {
  'README.md#0': { skip: 'the quick start itself: .ci/run runs npm install and npm test, and check:package runs the demo' },
  'README.md#1': { skip: 'installs from the npm registry; check:package installs the packed tarball instead' },
  'README.md#2': { stdout: '1 {"type":"signup","user":42}\n2 a\n3 b\n' },
  'README.md#3': { runs: 2, after: `console.log(JSON.stringify([...todos]))`, stdout: '[[1,"write the docs"]]\n[[1,"write the docs"]]\n' },
  'docs/api.md#0': { after: 'await wal.close()' },
  'docs/api.md#1': { before: OPEN_WAL, after: 'await wal.close()\nconsole.log(seq)', stdout: '1\n' },
  'docs/api.md#2': { before: OPEN_STORE, after: 'console.log(Object.keys(s).join(", "))\nawait store.close()', stdout: (body) => `${topLevelKeys(body)}\n` },
  'docs/api.md#3': { before: `import { WalReader } from 'selene-persist'\nimport { mkdirSync } from 'node:fs'\nmkdirSync('./data')\n${OPEN_WAL.replace('./wal.log', './data/wal.log')}await wal.appendBatch([Buffer.from('x'), Buffer.from('y')])\nawait wal.close()\n`, stdout: '1 <Buffer 78>\n2 <Buffer 79>\n' },
  'docs/api.md#4': { before: `${REQUIRE}const metrics = { commits: { count: 0, inc(n) { this.count += n } } }\n`, after: `const { WalWriter } = require('selene-persist')\nconst wal = await WalWriter.open('./wal.log')\nawait Promise.all([wal.append(Buffer.from('a')), wal.append(Buffer.from('b'))])\nawait wal.close()\nconsole.log(metrics.commits.count)`, stdout: '2\n' },
  'docs/api.md#5': { before: `import { WalWriter, PersistError } from 'selene-persist'\nimport { mkdirSync } from 'node:fs'\nmkdirSync('./data')\nconst held = await WalWriter.open('./data/wal.log')\n`, after: 'await held.close()', stdout: 'another writer has it open\n' },
  'docs/cli.md#0': { shell: true, before: FILL_STORE, check: (out) => /\bok\b|no problems/i.test(out) },
  'docs/following.md#0': { before: `${FILL_STORE}const publish = async (event) => console.log('published', event.n)\n`, until: 'published 3', after: `console.log('position', relay.position)`, stdout: 'published 1\npublished 2\npublished 3\nposition 3\n' },
  'docs/following.md#1': { before: FILL_STORE, until: '3 {"n":3}', stdout: '1 {"n":1}\n2 {"n":2}\n3 {"n":3}\n' },
  'docs/http.md#0': { skip: 'listens on a fixed port; __test__/http.spec.mjs and the conformance suite serve the same handler on free ports' },
  'docs/http.md#1': { skip: 'curl against a server at a fixed port; the conformance suite makes each of these requests' },
  'docs/jetstream.md#0': { nats: true, before: `${REQUIRE}${OPEN_STORE}const otherStore = await Store.open('./other')\nconst servers = process.env.NATS_URL\n`, after: `await replica.caughtUp()\nconsole.log(shipper.lag.entries, otherStore.lastSequence)\nawait replica.close()\nawait shipper.close()\nawait otherStore.close()\nawait store.close()`, stdout: '0 1\n' },
  'docs/jetstream.md#1': { skip: 'a nats-server configuration file, not a program; the JetStream tests start servers from the same settings' },
  'docs/jetstream.md#2': { skip: 'needs a 3-node cluster at fixed ports; __test__/jetstream-cluster.spec.mjs runs the same commands on free ports' },
  'docs/sharing.md#0': { stdout: '6\n' },
  'docs/store.md#0': { runs: 2, after: 'console.log(JSON.stringify([...todos]))', stdout: '[[1,"write the docs"]]\n[[1,"write the docs"]]\n' },
}

/** The top-level keys of the object a block's comment shows (`// { a, b: { c }, d }`). */
function topLevelKeys(body) {
  let shown = body
    .split('\n')
    .filter((l) => l.trim().startsWith('//'))
    .map((l) => l.trim().slice(2))
    .join(' ')
  while (/\{[^{}]*\{[^{}]*\}/.test(shown)) shown = shown.replace(/(\{[^{}]*)\{[^{}]*\}/, '$1')
  return shown
    .replace(/[{}]/g, '')
    .split(',')
    .map((k) => k.split(':')[0].trim())
    .filter(Boolean)
    .join(', ')
}

/** Run `command` in `cwd`; SIGINT once a line of its output is `until`. */
function run(command, args, cwd, env, until) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    let interrupted = false
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000)
    child.stdout.on('data', (chunk) => {
      stdout += chunk
      if (until && !interrupted && stdout.split('\n').includes(until)) interrupted = child.kill('SIGINT')
    })
    child.stderr.on('data', (chunk) => {
      stderr += chunk
    })
    child.once('error', reject)
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    })
  })
}

const all = await blocks()

test('every code block of the docs is run here or says why not', (t) => {
  t.deepEqual([...all.keys()].filter((id) => !(id in CASES)), [])
  t.deepEqual(Object.keys(CASES).filter((id) => !all.has(id)), [])
})

for (const [id, spec] of Object.entries(CASES)) {
  if (spec.skip || !all.has(id)) continue
  const { body, lang } = all.get(id)
  const maybe = spec.nats && !natsServer ? test.failing : test
  maybe(`${id} runs as written`, async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'selene-docs-'))
    t.teardown(() => rm(dir, { recursive: true, force: true }))
    await mkdir(join(dir, 'node_modules', '.bin'), { recursive: true })
    await symlink(root, join(dir, 'node_modules', 'selene-persist'))
    await symlink(join(root, 'cli.js'), join(dir, 'node_modules', '.bin', 'selene-persist'))
    const nats = spec.nats ? await startNats(1) : null
    t.teardown(() => nats?.stop())
    const env = { NATS_URL: nats?.urls[0] ?? '', PATH: `${join(dir, 'node_modules', '.bin')}:${process.env.PATH}` }
    if (spec.shell) {
      t.is(lang, 'sh')
      await writeFile(join(dir, 'setup.mjs'), spec.before)
      t.is((await run('node', ['setup.mjs'], dir, env)).code, 0)
    }
    const program = spec.shell ? body.replaceAll('npx selene-persist', 'selene-persist') : `${spec.before ?? ''}${body}\n${spec.after ?? ''}\n`
    await writeFile(join(dir, spec.shell ? 'block.sh' : 'block.mjs'), program)
    let stdout = ''
    for (let i = 0; i < (spec.runs ?? 1); i++) {
      const result = spec.shell ? await run('bash', ['-eo', 'pipefail', 'block.sh'], dir, env) : await run('node', ['block.mjs'], dir, env, spec.until)
      t.is(result.stderr, '', `stderr of run ${i + 1}`)
      t.is(result.code, 0, `exit code of run ${i + 1}`)
      if (spec.until) t.true(result.stdout.split('\n').includes(spec.until), 'it reached the line that ends it')
      stdout += result.stdout
    }
    if (typeof spec.stdout === 'string') t.is(stdout, spec.stdout)
    else if (typeof spec.stdout === 'function') t.is(stdout, spec.stdout(body))
    if (spec.check) t.true(spec.check(stdout), stdout)
  })
}
