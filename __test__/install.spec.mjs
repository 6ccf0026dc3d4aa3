// The install script's source build, run against a fake `cargo` on PATH that writes the library
// file a real build would (the real build is checked by scripts/check-package.sh).
import { execFile } from 'node:child_process'
import { chmod, mkdir, readFile, readdir, writeFile } from 'node:fs/promises'
import { delimiter, join } from 'node:path'
import { promisify } from 'node:util'

import test from 'ava'

import { tempDir } from './helpers.mjs'

const install = new URL('../scripts/install.js', import.meta.url).pathname

// Records the target directory it was given, then fails or writes the library there.
const FAKE_CARGO = `#!/bin/sh
echo "$CARGO_TARGET_DIR" > "$RECORD"
[ "$FAKE_CARGO_FAIL" = 1 ] && exit 101
mkdir -p "$CARGO_TARGET_DIR/release"
printf built > "$CARGO_TARGET_DIR/release/libselene_persist_node.so"
printf built > "$CARGO_TARGET_DIR/release/libselene_persist_node.dylib"
`

/** Run buildFromSource on an empty package dir with the fake cargo first on PATH and TMPDIR a fresh directory. */
async function build(t, env = {}) {
  const base = await tempDir(t)
  const [bin, tmp, pkg] = [join(base, 'bin'), join(base, 'tmp'), join(base, 'pkg')]
  for (const dir of [bin, tmp, pkg]) await mkdir(dir)
  await writeFile(join(bin, 'cargo'), FAKE_CARGO)
  await chmod(join(bin, 'cargo'), 0o755)
  const record = join(base, 'target-dir')
  const { CARGO_TARGET_DIR: _, ...inherited } = process.env
  const options = { env: { ...inherited, PATH: `${bin}${delimiter}${process.env.PATH}`, TMPDIR: tmp, RECORD: record, ...env } }
  const script = `require(${JSON.stringify(install)}).buildFromSource(${JSON.stringify(pkg)})`
  const code = await promisify(execFile)(process.execPath, ['-e', script], options).then(
    () => 0,
    (error) => error.code,
  )
  const built = (await readdir(pkg)).filter((name) => /^selene-persist\..+\.node$/.test(name))
  return { code, tmp, pkg, built, target: (await readFile(record, 'utf8')).trim(), tmpLeft: await readdir(tmp) }
}

const linuxOrMac = process.platform === 'linux' || process.platform === 'darwin' ? test : test.skip

linuxOrMac('the source build runs cargo in a temporary target directory and removes it after a build', async (t) => {
  const { code, pkg, built, target, tmp, tmpLeft } = await build(t)
  t.is(code, 0)
  t.true(target.startsWith(tmp), target)
  t.deepEqual(tmpLeft, [])
  t.is(built.length, 1)
  t.is(await readFile(join(pkg, built[0] ?? ''), 'utf8'), 'built')
})

linuxOrMac('the source build removes its temporary target directory when cargo fails too', async (t) => {
  const { code, built, target, tmp, tmpLeft } = await build(t, { FAKE_CARGO_FAIL: '1' })
  t.not(code, 0)
  t.true(target.startsWith(tmp), target)
  t.deepEqual(tmpLeft, [])
  t.deepEqual(built, [])
})

linuxOrMac('the source build uses CARGO_TARGET_DIR when set, and keeps it', async (t) => {
  const own = join(await tempDir(t), 'own-target')
  const { code, target } = await build(t, { CARGO_TARGET_DIR: own })
  t.is(code, 0)
  t.is(target, own)
  t.deepEqual(await readdir(join(own, 'release')), ['libselene_persist_node.dylib', 'libselene_persist_node.so'])
})
