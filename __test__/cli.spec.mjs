import { execFile, spawn } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'

import test from 'ava'

import { Store, WalWriter } from 'selene-persist'

import { fixture, runCli as run, tempDir } from './helpers.mjs'

const cli = new URL('../cli.js', import.meta.url).pathname

/** A store with two checkpoints and a few entries after them. */
async function sampleStore(t) {
  const dir = await tempDir(t)
  const store = await Store.open(dir)
  for (let n = 1; n <= 20; n++) await store.append(Buffer.from(JSON.stringify({ n })), n === 3 ? { principal: Buffer.from('alice') } : undefined)
  await store.checkpoint({ state: Buffer.from('twenty') })
  for (let n = 21; n <= 25; n++) await store.append(Buffer.from(JSON.stringify({ n })))
  await store.checkpoint({ state: Buffer.from('twenty-five') })
  await store.append(Buffer.from('{"n":26}'))
  await store.close()
  return dir
}

test('help: every command has --help, no command is a usage error', async (t) => {
  for (const command of ['inspect', 'verify', 'dump', 'demo', 'bench']) {
    const { code, stdout } = await run(command, '--help')
    t.is(code, 0, command)
    t.true(stdout.startsWith(`Usage: selene-persist ${command}`), command)
  }
  const help = await run('help')
  t.is(help.code, 0)
  t.regex(help.stdout, /inspect <dir\|file>/)
  t.is((await run()).code, 2)
  const unknown = await run('frobnicate')
  t.is(unknown.code, 2)
  t.regex(unknown.stderr, /unknown command 'frobnicate'/)
})

test('wrong arguments exit 2 with the command usage; missing paths exit 1 with the error code', async (t) => {
  for (const args of [['inspect'], ['verify', 'a', 'b'], ['dump', 'x', '--format', 'xml'], ['dump', 'x', '--from', '-1'], ['bench', 'extra']]) {
    const { code, stderr } = await run(...args)
    t.is(code, 2, args.join(' '))
    t.regex(stderr, /Usage: selene-persist/, args.join(' '))
  }
  for (const command of ['inspect', 'verify', 'dump']) {
    const { code, stderr } = await run(command, '/no/such/path')
    t.is(code, 1, command)
    t.regex(stderr, /No such file or directory.*\[IO\]/, command)
  }
})

test('inspect shows the MANIFEST, snapshots, archives and the active WAL', async (t) => {
  const dir = await sampleStore(t)
  const { code, stdout } = await run('inspect', dir)
  t.is(code, 0)
  t.regex(stdout, /live snapshot 27, active WAL after 27, archives \[21, 27\]/)
  t.regex(stdout, /snapshot\.27\.snap \(live\).*state/)
  t.regex(stdout, /wal\.21\.archive {2}sequences 1\.\.21 {2}21 entries \(1 watermark\)/)
  t.regex(stdout, /wal\.log {2}sequences 28\.\.28 {2}1 entries/)
  t.regex(stdout, /problems {6}none/)
  const json = JSON.parse((await run('inspect', dir, '--json')).stdout)
  t.is(json.kind, 'store')
  t.deepEqual(json.manifest, { liveSnapshotSeq: 27, activeWalSeq: 27, archives: [21, 27] })
  t.is(json.wal.lastSequence, 28)
  const single = JSON.parse((await run('inspect', join(dir, 'snapshot.21.snap'), '--json')).stdout)
  t.is(single.kind, 'snapshot')
  t.deepEqual(single.snapshots[0].sections.map((s) => s.name), ['state'])
})

test('verify exits 0 when clean, 1 with each problem located when not, and honours --strict', async (t) => {
  const dir = await sampleStore(t)
  const clean = await run('verify', dir)
  t.is(clean.code, 0)
  t.regex(clean.stdout, /verified: no problems/)

  // A torn write (non-zero bytes) followed by preallocated zeros.
  await writeFile(join(dir, 'wal.log'), Buffer.concat([await readFile(join(dir, 'wal.log')), Buffer.alloc(10, 0xa5), Buffer.alloc(4096)]))
  const torn = await run('verify', dir)
  t.is(torn.code, 0, 'a torn tail is a warning')
  t.regex(torn.stdout, /warning .*wal\.log@\d+ {2}TORN_TAIL/)
  t.is((await run('verify', dir, '--strict')).code, 1)

  const archive = join(dir, 'wal.21.archive')
  const bytes = await readFile(archive)
  bytes[30] ^= 1
  await writeFile(archive, bytes)
  const broken = await run('verify', dir)
  t.is(broken.code, 1)
  t.regex(broken.stdout, /ERROR {3}.*wal\.21\.archive@24 {2}MID_LOG_CORRUPTION/)
  t.regex(broken.stdout, /verified: 1 error, 1 warning/)
  const json = JSON.parse((await run('verify', dir, '--json')).stdout)
  t.deepEqual(json.problems.map((p) => [p.severity, p.code]), [['error', 'MID_LOG_CORRUPTION'], ['warning', 'TORN_TAIL']])
})

test('dump prints entries as NDJSON, text or hex, within --from and --to', async (t) => {
  const dir = await sampleStore(t)
  const archive = join(dir, 'wal.21.archive')
  const lines = (await run('dump', archive, '--from', '2', '--to', '4')).stdout.trim().split('\n').map((l) => JSON.parse(l))
  t.deepEqual(lines.map((e) => e.sequence), [2, 3, 4])
  t.deepEqual(JSON.parse(lines[0].payload), { n: 2 })
  t.is(lines[1].principal, Buffer.from('alice').toString('base64'))
  t.is(lines[0].encoding, 'utf8')
  const watermark = JSON.parse((await run('dump', archive, '--from', '21')).stdout)
  t.true(watermark.watermark)
  const text = (await run('dump', archive, '--from', '3', '--to', '3', '--format', 'text')).stdout
  t.regex(text, /^#3 @\d+ \S+ local principal=alice 7 B: "\{\\"n\\":3\}"\n$/)
  const hex = (await run('dump', archive, '--from', '3', '--to', '3', '--format', 'hex')).stdout
  t.regex(hex, /00000000 {2}7b 22 6e 22 3a 33 7d/)
  // A directory means its wal.log.
  t.deepEqual((await run('dump', dir)).stdout.trim().split('\n').map((l) => JSON.parse(l).sequence), [28])
})

test('dump reports a torn tail on stderr without changing the file', async (t) => {
  const path = join(await tempDir(t), 'wal.log')
  const writer = await WalWriter.open(path)
  await writer.append(Buffer.from('one'))
  await writer.close()
  const torn = Buffer.concat([await readFile(path), Buffer.from('partial')])
  await writeFile(path, torn)
  const { code, stdout, stderr } = await run('dump', path)
  t.is(code, 0)
  t.is(stdout.trim().split('\n').length, 1)
  t.regex(stderr, /torn tail: 7 bytes/)
  t.deepEqual(await readFile(path), torn)
})

test('demo runs the main job end to end and can be run again on the same store', async (t) => {
  const dir = await tempDir(t)
  const first = await run('demo', dir)
  t.is(first.code, 0, first.stderr)
  t.regex(first.stdout, /every acknowledged one \(\d+\) included: yes/)
  t.regex(first.stdout, /checkpoint at sequence \d+/)
  const second = await run('demo', dir)
  t.is(second.code, 0, second.stderr)
  t.regex(second.stdout, /recovered [1-9]\d* earlier events/)
  t.is((await run('verify', dir)).code, 0)
})

test('bench --quick prints its table', async (t) => {
  const { code, stdout } = await run('bench', '--quick')
  t.is(code, 0)
  for (const workload of ['W1 durable append, 128 B', 'W2 64 concurrent', 'W3 bulk ingest', 'W4 full replay', 'W5 open']) t.true(stdout.includes(workload), workload)
})

test('tail prints what is there; tail -f follows a writer across a checkpoint until Ctrl-C, exit 0', async (t) => {
  const dir = await tempDir(t)
  const store = await Store.open(dir)
  for (let n = 1; n <= 3; n++) await store.append(Buffer.from(`e${n}`))
  const once = await run('tail', dir, '--format', 'json')
  t.is(once.code, 0)
  t.deepEqual(once.stdout.trim().split('\n').map((l) => JSON.parse(l).payload), ['e1', 'e2', 'e3'])
  const child = spawn(process.execPath, [cli, 'tail', '-f', dir, '--from', '2'], { stdio: ['ignore', 'pipe', 'inherit'] })
  const lines = []
  let buffered = ''
  const enough = new Promise((resolve) =>
    child.stdout.on('data', (chunk) => {
      buffered += chunk.toString()
      const parts = buffered.split('\n')
      buffered = parts.pop()
      lines.push(...parts)
      if (lines.length >= 4) resolve()
    }),
  )
  await store.append(Buffer.from('e4'))
  await store.checkpoint({ s: Buffer.from('x') })
  await store.append(Buffer.from('e5'))
  await enough
  const exited = new Promise((resolve) => child.on('exit', resolve))
  child.kill('SIGINT')
  t.is(await exited, 0)
  t.deepEqual(lines.map((l) => JSON.parse(l).payload), ['e2', 'e3', 'e4', 'e5'])
  await store.close()
})

test('tail --consumer resumes after its acknowledged position; inspect lists consumers and their lag', async (t) => {
  const dir = await tempDir(t)
  const store = await Store.open(dir)
  for (let n = 1; n <= 4; n++) await store.append(Buffer.from(`e${n}`))
  t.is((await run('tail', dir, '--consumer', 'cli')).stdout.trim().split('\n').length, 4)
  await store.append(Buffer.from('e5'))
  const again = await run('tail', dir, '--consumer', 'cli', '--format', 'text')
  t.regex(again.stdout, /^#5 .*"e5"\n$/)
  await (await store.consumer('late', { from: 3 })).ack(3)
  const inspected = await run('inspect', dir)
  t.regex(inspected.stdout, /consumer +cli +at 5, 0 behind/)
  t.regex(inspected.stdout, /consumer +late +at 3, 2 behind/)
  await store.close()
})

test('backup copies a store whose writer is running, up to what is durable; the copy opens', async (t) => {
  const dir = await tempDir(t)
  const store = await Store.open(dir)
  for (let n = 1; n <= 5; n++) await store.append(Buffer.from(`e${n}`))
  await store.checkpoint({ s: Buffer.from('state') })
  await store.append(Buffer.from('e6'))
  const dest = join(await tempDir(t), 'copy')
  const result = await run('backup', dir, dest, '--json')
  t.is(result.code, 0, result.stderr)
  t.deepEqual(JSON.parse(result.stdout), { destination: dest, sequence: 7 })
  await store.close()
  const copy = await Store.open(dest)
  t.deepEqual(await copy.snapshot.read('s'), Buffer.from('state'))
  const replayed = []
  for await (const entry of copy.replay()) replayed.push(entry.payload.toString())
  t.deepEqual(replayed, ['e6'])
  await copy.close()
  t.is((await run('backup', dir, dest)).code, 1, 'an existing destination is refused')
})

/**
 * Run the CLI with its stdout in a pipe whose reader takes lines until it has `want`, then closes
 * the pipe (as `| head -n want` does). Resolves with the exit code, stderr and every complete line
 * the reader received before it closed.
 */
function readThenClose(want, ...args) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let received = ''
    let stderr = ''
    child.stderr.on('data', (chunk) => (stderr += chunk))
    child.stdout.on('data', (chunk) => {
      received += chunk
      if (received.split('\n').length - 1 >= want) child.stdout.destroy()
    })
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stderr, lines: received.split('\n').slice(0, -1) }))
  })
}

/** A store of `count` durable entries of 200 bytes each. */
async function bigStore(t, count) {
  const dir = await tempDir(t)
  const store = await Store.open(dir, { sync: 'manual' })
  await store.appendBatch(Array.from({ length: count }, (_, i) => Buffer.alloc(200, 97 + (i % 26))))
  await store.flush()
  await store.close()
  return dir
}

test('tail --consumer | head acknowledges only what was written and drained; a closed pipe ends tail, tail -f and dump quietly, exit 0', async (t) => {
  const dir = await bigStore(t, 10_000)
  for (const [name, follow] of [['c', []], ['cf', ['-f']]]) {
    const { code, stderr, lines } = await readThenClose(3, 'tail', dir, ...follow, '--consumer', name)
    t.is(code, 0, `${name}: ${stderr}`)
    t.is(stderr, '', 'no stack trace')
    t.deepEqual(lines.slice(0, 3).map((l) => JSON.parse(l).sequence), [1, 2, 3])
    const store = await Store.open(dir)
    const { position } = (await store.consumers()).find((c) => c.name === name)
    await store.close()
    t.true(position <= lines.length, `${name}: acknowledged ${position}, the reader received ${lines.length} lines`)
    // Everything not acknowledged comes again, once, in order.
    const rest = (await run('tail', dir, '--consumer', name)).stdout.trim().split('\n').map((l) => JSON.parse(l).sequence)
    t.deepEqual(rest, Array.from({ length: 10_000 - position }, (_, i) => position + 1 + i))
  }
  for (const args of [['tail', dir], ['dump', dir], ['dump', dir, '--format', 'hex']]) {
    const { code, stderr } = await readThenClose(1, ...args)
    t.is(code, 0, args.join(' '))
    t.is(stderr, '', args.join(' '))
  }
})

test('help <command> prints that command\'s usage, exit 0', async (t) => {
  const help = await run('help', 'inspect')
  const own = await run('inspect', '--help')
  t.is(help.code, 0)
  t.true(help.stdout.length > 0)
  t.is(help.stdout, own.stdout)
})

test('--version prints the package version, exit 0', async (t) => {
  const { version } = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8'))
  for (const flag of ['--version', '-v']) t.deepEqual(await run(flag), { code: 0, stdout: `${version}\n`, stderr: '' }, flag)
})

test('an unknown command or option is one line on stderr, with a "did you mean" hint when one is near, exit 2', async (t) => {
  const cases = [
    [['verfy', 'x'], "selene-persist: unknown command 'verfy'; did you mean 'verify'?\n"],
    [['inpsect'], "selene-persist: unknown command 'inpsect'; did you mean 'inspect'?\n"],
    [['frobnicate'], "selene-persist: unknown command 'frobnicate' (selene-persist help lists the commands)\n"],
    [['--verison'], "selene-persist: unknown option '--verison'; did you mean '--version'?\n"],
    [['inspect', 'x', '--jsn'], "selene-persist inspect: unknown option '--jsn'; did you mean '--json'?\n"],
    [['verify', 'x', '--stirct'], "selene-persist verify: unknown option '--stirct'; did you mean '--strict'?\n"],
    [['verify', 'x', '--js'], "selene-persist verify: unknown option '--js'; did you mean '--json'?\n"],
    [['tail', 'x', '--folow'], "selene-persist tail: unknown option '--folow'; did you mean '--follow'?\n"],
    [['inspect', 'x', '--bogus'], "selene-persist inspect: unknown option '--bogus' (the options: --json, --help)\n"],
    [['inspect', 'x', '-q'], "selene-persist inspect: unknown option '-q' (the options: --json, --help)\n"],
    [['--version', 'extra'], "selene-persist: --version takes no arguments (given 'extra')\n"],
    [['help', 'inspct'], "selene-persist: unknown command 'inspct'; did you mean 'inspect'?\n"],
    [['help', 'inspect', 'x'], "selene-persist: help takes at most a command (given 'inspect x')\n"],
  ]
  for (const [args, stderr] of cases) t.deepEqual(await run(...args), { code: 2, stdout: '', stderr }, args.join(' '))
})

test('verify and salvage on a pipe write only their result: no progress on stderr, --json output parses', async (t) => {
  const dir = await sampleStore(t)
  const verified = await run('verify', dir, '--json')
  t.is(verified.code, 0)
  t.is(verified.stderr, '')
  t.deepEqual(JSON.parse(verified.stdout).problems, [])
  const salvaged = await run('salvage', dir, join(await tempDir(t), 'out'), '--json')
  t.is(salvaged.code, 0)
  t.is(salvaged.stderr, '')
  t.is(JSON.parse(salvaged.stdout).kind, 'store')
})

test('inspect exits 1 when it reports an ERROR (a garbage MANIFEST and wal.log), 0 with warnings only; help lists the exit codes', async (t) => {
  const dir = await tempDir(t)
  await writeFile(join(dir, 'MANIFEST'), Buffer.alloc(500, 0x5a))
  await writeFile(join(dir, 'wal.log'), Buffer.alloc(5000, 0xa5))
  const text = await run('inspect', dir)
  t.is(text.code, 1)
  t.regex(text.stdout, /ERROR .*MANIFEST {2}MAGIC_MISMATCH/)
  const json = await run('inspect', dir, '--json')
  t.is(json.code, 1)
  t.deepEqual(JSON.parse(json.stdout).problems.map((p) => [p.severity, p.code]), [['error', 'MAGIC_MISMATCH'], ['error', 'MAGIC_MISMATCH']])
  const torn = await sampleStore(t)
  await writeFile(join(torn, 'wal.log'), Buffer.concat([await readFile(join(torn, 'wal.log')), Buffer.from('partial')]))
  const warned = await run('inspect', torn)
  t.is(warned.code, 0)
  t.regex(warned.stdout, /warning .*TORN_TAIL/)
  const help = await run('help')
  t.regex(help.stdout, /Exit codes: 0 ok; 1 problems found/)
})

// Issue 12, item 1: a reader must never take bytes a live writer has not finished (or may still
// cut) for damage.
test('CLI verify, inspect and dump beside a writer appending in another process report no damage', async (t) => {
  const path = join(await tempDir(t), 'wal.log')
  const child = spawn(process.execPath, [fixture('append-child.mjs'), path, '8'], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => child.kill('SIGKILL'))
  await new Promise((resolve) => child.stdout.once('data', resolve))
  for (let round = 0; round < 4; round++) {
    const verified = await run('verify', path)
    t.is(verified.code, 0, verified.stdout)
    t.notRegex(verified.stdout, /CORRUPTION|TORN_TAIL/)
    t.is((await run('inspect', path)).code, 0)
    const dumped = await run('dump', path, '--format', 'json')
    t.is(dumped.code, 0, dumped.stderr)
    t.notRegex(dumped.stderr, /torn tail/)
  }
})

// Issue 12, item 9: text output escapes what it takes from files.
test('inspect prints escape sequences from files as text, never raw', async (t) => {
  const dir = await tempDir(t)
  const store = await Store.open(dir)
  await store.append(Buffer.from('x'), { principal: Buffer.from('\x1b[2Jmallory') })
  await store.checkpoint({ '\x1b[2J\x1b]0;owned\x07': Buffer.from('s'), '\u009b31m': Buffer.from('c1') })
  await store.append(Buffer.from('y'), { principal: Buffer.from('\x1b[2Jmallory') })
  await store.close()
  const inspected = await run('inspect', dir)
  t.is(inspected.code, 0)
  t.notRegex(inspected.stdout, /[\x1b\x07\u009b]/)
  t.regex(inspected.stdout, /\\u\{1b\}\[2J/)
  const dumped = await run('dump', dir)
  t.notRegex(dumped.stdout, /[\x1b\x07\u009b]/)
})

test('tail -f waits for a store not yet made, saying so on stderr; tail without -f exits 1 with IO', async (t) => {
  const dir = join(await tempDir(t), 'later')
  const missing = await run('tail', dir)
  t.is(missing.code, 1)
  t.regex(missing.stderr, /No such file or directory.*\[IO\]/)
  const child = spawn(process.execPath, [cli, 'tail', '-f', dir, '--consumer', 'c', '--format', 'text'], { stdio: ['ignore', 'pipe', 'pipe'] })
  const exited = new Promise((resolve) => child.on('exit', resolve))
  let stdout = ''
  const line = new Promise((resolve) => child.stdout.on('data', (chunk) => (stdout += chunk).includes('\n') && resolve()))
  await new Promise((resolve) => child.stderr.on('data', (chunk) => String(chunk).includes(`waiting for ${dir} to become a store or WAL`) && resolve()))
  const store = await Store.open(dir)
  await store.append(Buffer.from('first'))
  await line
  child.kill('SIGINT')
  t.is(await exited, 0)
  t.regex(stdout, /^#1 .*"first"\n$/)
  t.deepEqual((await store.consumers()).map((c) => [c.name, c.position]), [['c', 1]])
  await store.close()
})

test('every command exits non-zero when it fails, naming the error code on stderr (usage errors 2, others 1)', async (t) => {
  const store = await sampleStore(t)
  const damaged = await tempDir(t)
  await writeFile(join(damaged, 'MANIFEST'), Buffer.alloc(500, 0x5a))
  const file = join(await tempDir(t), 'a-file')
  await writeFile(file, 'not a directory')
  const nowhere = ['--server', 'nats://127.0.0.1:1', '--stream', 'S', '--node', '1']
  const cases = [
    [['inspect', '/no/such/path'], 1, 'IO'],
    [['verify', damaged], 1, null],
    [['dump', '/no/such/path'], 1, 'IO'],
    [['tail', '/no/such/path'], 1, 'IO'],
    [['backup', store, store], 1, 'INVALID_ARGUMENT'],
    [['salvage', '/no/such/path', join(await tempDir(t), 'out')], 1, 'IO'],
    [['ship', store, ...nowhere], 1, 'REMOTE_UNAVAILABLE'],
    [['replicate', store, ...nowhere], 1, 'REMOTE_UNAVAILABLE'],
    [['restore', join(await tempDir(t), 'new'), ...nowhere], 1, 'REMOTE_UNAVAILABLE'],
    [['audit', store, ...nowhere], 1, 'REMOTE_UNAVAILABLE'],
    [['demo', file], 1, null],
    [['bench', '--quik'], 2, null],
  ]
  for (const [args, expected, code] of cases) {
    const result = await run(...args)
    t.is(result.code, expected, `${args[0]}: ${result.stderr}`)
    if (code !== null) t.true(result.stderr.includes(`[${code}]`), `${args[0]}: ${result.stderr}`)
  }
})

/** Run the CLI on a pseudo-terminal (util-linux `script`): what it wrote there, stdout and stderr together. */
async function runOnTerminal(...args) {
  const quoted = [process.execPath, cli, ...args].map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(' ')
  const { stdout } = await promisify(execFile)('script', ['-qefc', quoted, '/dev/null'], { maxBuffer: 64 << 20 })
  return stdout
}

test('salvage, backup and verify of a large store draw progress on a terminal, every 64 MiB; nothing on a pipe', async (t) => {
  const dir = await tempDir(t)
  const store = await Store.open(dir, { sync: 'manual', compression: false })
  const chunk = Buffer.alloc(1 << 20)
  for (let i = 0; i < 140; i++) {
    chunk.fill(i)
    chunk.writeUInt32LE(i * 7919)
    await store.appendBatch([chunk])
  }
  // Durable, so a backup from another process copies all of it.
  await store.flush()
  await store.close()
  const out = await tempDir(t)
  for (const [label, args] of [
    ['salvaging', ['salvage', dir, join(out, 'salvaged')]],
    ['backing up', ['backup', dir, join(out, 'backup')]],
    ['verifying', ['verify', dir]],
  ]) {
    const shown = await runOnTerminal(...args)
    const bars = shown.split(`${label} [`).length - 1
    t.true(bars >= 2 && bars <= 4, `${label}: ${bars} progress lines for 140 MiB (${JSON.stringify(shown.slice(0, 300))})`)
    t.regex(shown, /100% 14\d\.\d MiB \/ 14\d\.\d MiB/, label)
  }
  for (const args of [['salvage', dir, join(out, 'piped')], ['backup', dir, join(out, 'piped-backup')], ['verify', dir]]) {
    const piped = await run(...args)
    t.is(piped.code, 0, args[0])
    t.is(piped.stderr, '', `${args[0]}: no progress on a pipe`)
  }
})
