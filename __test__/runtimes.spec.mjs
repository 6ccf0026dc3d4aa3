// The package under every runtime users run it in: Node, and Bun and Deno as installed from the
// npm registry (the dev dependencies `bun` and `deno`). Each runs the smoke round
// (runtimes/smoke.mjs) as a child process on a temp directory of its own, Deno with grants as
// narrow as work. Then the failures users meet first: a package whose addon is missing, Deno
// without --allow-ffi, and selene-persist/jetstream without its optional NATS packages, each a
// PersistError whose message says what to do.
import { execFile } from 'node:child_process'
import { cp, mkdir, symlink, writeFile } from 'node:fs/promises'
import { join, relative, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

import test from 'ava'

import { tempDir } from './helpers.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
const smoke = fileURLToPath(new URL('runtimes/smoke.mjs', import.meta.url))
/** The executables the `bun` and `deno` packages' install scripts put in place (what their bin entries run). */
const BUN = join(root, 'node_modules', 'bun', 'bin', 'bun.exe')
const DENO = join(root, 'node_modules', 'deno', process.platform === 'win32' ? 'deno.exe' : 'deno')
const platform = `${process.platform}-${process.arch}`

/** The environment variables napi's generated loader reads. */
const NAPI_ENV = ['NAPI_RS_NATIVE_LIBRARY_PATH', 'NAPI_RS_FORCE_WASI', 'NAPI_RS_WASI_FLAVOR', 'NAPI_RS_ENFORCE_VERSION_CHECK']

/**
 * The command running `script` under `runtime`, with access to `dirs`. Deno gets what the package
 * needs and no more: the addon (`ffi`: the directories it may load one from, none to withhold
 * the grant), reads of the package, of `dirs` and of /usr/bin/ldd (where napi's loader tells
 * glibc from musl), writes to `dirs`, and the loader's variables.
 */
function command(runtime, script, dirs, ffi = [root]) {
  if (runtime === 'node') return [process.execPath, [script]]
  if (runtime === 'bun') return [BUN, [script]]
  const grants = [`--allow-read=${[root, ...dirs, '/usr/bin/ldd']}`, `--allow-write=${dirs}`, `--allow-env=${NAPI_ENV}`]
  if (ffi.length > 0) grants.push(`--allow-ffi=${ffi}`)
  return [DENO, ['run', ...grants, script]]
}

/** Run `script` under `runtime` in `cwd` with `args`: its exit code and the JSON of its last line of output. */
async function run(runtime, script, cwd, { args = [], dirs = [cwd], ffi } = {}) {
  const [file, argv] = command(runtime, script, dirs, ffi)
  const { code, stdout, stderr } = await promisify(execFile)(file, [...argv, ...args], { cwd, env: { ...process.env, NO_COLOR: '1' }, timeout: 120_000 }).then(
    (done) => ({ code: 0, ...done }),
    (error) => error,
  )
  const last = stdout.trim().split('\n').at(-1)
  return { code, report: last ? JSON.parse(last) : null, stderr }
}

const RUNTIMES = ['node', 'bun', 'deno']

for (const runtime of RUNTIMES) {
  test(`the smoke round passes under ${runtime}`, async (t) => {
    const dir = await tempDir(t)
    const { code, report, stderr } = await run(runtime, smoke, dir, { args: [dir] })
    t.is(report?.runtime, runtime, stderr)
    t.deepEqual(report.failed, [])
    t.true(report.passed.includes('worker threads: a terminated worker releases its store'))
    t.is(code, 0, stderr)
  })
}

/**
 * A project in `dir` whose node_modules/selene-persist is a copy of this package's runtime files
 * (package.json and the built JS), with the addon only if `addon`, and no other package: no
 * platform package, no @nats-io clients.
 */
async function project(dir, { addon }) {
  const installed = join(dir, 'node_modules', 'selene-persist')
  const wanted = (rel) => rel === '' || rel === 'package.json' || /^[^/]+\.m?js$/.test(rel) || (addon && /^[^/]+\.node$/.test(rel)) || /^src(\/[^.]*|\/.*\.js)?$/.test(rel)
  await cp(root, installed, { recursive: true, filter: (source) => wanted(relative(root, source).split(sep).join('/')) })
  await writeFile(join(dir, 'package.json'), JSON.stringify({ type: 'module', dependencies: { 'selene-persist': '*' } }))
  return installed
}

/** A script that imports `specifier` (and, from CommonJS, requires it) and prints what each threw. */
const PROBE = (specifier) => `import { createRequire } from 'node:module'
const failure = (error) => ({ name: error.name, code: error.code, message: error.message, cause: error.cause instanceof Error })
const imported = await import('${specifier}').then(() => null, failure)
let required = null
try { createRequire(import.meta.url)('${specifier}') } catch (error) { required = failure(error) }
console.log(JSON.stringify({ imported, required }))
`

// npm 11.19 (this machine's) blocks a dependency's install script until approved, as Bun does.
const FIX = {
  node: ['npm rebuild selene-persist', 'npm install-scripts approve selene-persist'],
  bun: ['bun pm trust selene-persist'],
  deno: ['deno install --allow-scripts=npm:selene-persist'],
}

for (const runtime of RUNTIMES) {
  test(`a package without its addon is NATIVE_MISSING with the fix for ${runtime}`, async (t) => {
    const dir = await tempDir(t)
    await project(dir, { addon: false })
    await writeFile(join(dir, 'probe.mjs'), PROBE('selene-persist'))
    const { code, report, stderr } = await run(runtime, 'probe.mjs', dir)
    t.is(code, 0, stderr)
    for (const failure of [report.imported, report.required]) {
      t.like(failure, { name: 'PersistError', code: 'NATIVE_MISSING', cause: true })
      t.true(failure.message.includes(`no native addon loads for ${platform}`), failure.message)
      t.true(failure.message.includes(`selene-persist-${platform}`), failure.message)
      for (const fix of FIX[runtime]) t.true(failure.message.includes(fix), failure.message)
      t.false(failure.message.includes('npm has a bug'), failure.message)
    }
  })
}

test('Deno without --allow-ffi is NATIVE_MISSING naming the flag', async (t) => {
  const dir = await tempDir(t)
  await mkdir(join(dir, 'node_modules'))
  await symlink(root, join(dir, 'node_modules', 'selene-persist'))
  await writeFile(join(dir, 'package.json'), JSON.stringify({ type: 'module', dependencies: { 'selene-persist': '*' } }))
  await writeFile(join(dir, 'probe.mjs'), PROBE('selene-persist'))
  const { code, report, stderr } = await run('deno', 'probe.mjs', dir, { ffi: [] })
  t.is(code, 0, stderr)
  t.like(report.imported, { name: 'PersistError', code: 'NATIVE_MISSING', cause: true })
  t.regex(report.imported.message, /Requires ffi access/)
  t.regex(report.imported.message, /deno run --allow-ffi/)
})

test('selene-persist/jetstream without the NATS packages is OPTIONAL_DEPENDENCY_MISSING, in code and from the CLI; the core still loads', async (t) => {
  const dir = await tempDir(t)
  const installed = await project(dir, { addon: true })
  await writeFile(join(dir, 'core.mjs'), `const { Store } = await import('selene-persist')\nconsole.log(JSON.stringify({ core: typeof Store.open }))\n`)
  t.like((await run('node', 'core.mjs', dir)).report, { core: 'function' })
  await writeFile(join(dir, 'probe.mjs'), PROBE('selene-persist/jetstream'))
  const { code, report, stderr } = await run('node', 'probe.mjs', dir)
  t.is(code, 0, stderr)
  for (const failure of [report.imported, report.required]) {
    t.like(failure, { name: 'PersistError', code: 'OPTIONAL_DEPENDENCY_MISSING', cause: true })
    t.regex(failure.message, /needs the optional NATS packages, and @nats-io\/jetstream, @nats-io\/obj, @nats-io\/transport-node are not installed/)
    t.regex(failure.message, /npm install "@nats-io\/jetstream@\^3\.\d+\.\d+" "@nats-io\/obj@\^3\.\d+\.\d+" "@nats-io\/transport-node@\^3\.\d+\.\d+"$/)
  }
  const cli = await promisify(execFile)(process.execPath, [join(installed, 'cli.js'), 'ship', dir, '--server', 'nats://127.0.0.1:1', '--stream', 'S', '--node', '1'], { cwd: dir }).catch((error) => error)
  t.is(cli.code, 1)
  t.regex(cli.stderr, /needs the optional NATS packages.*npm install .*\[OPTIONAL_DEPENDENCY_MISSING\]\n$/)
})
