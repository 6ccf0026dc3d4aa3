#!/usr/bin/env node
// Runs after `npm install selene-persist`. If a prebuilt binary loads, there is nothing to do.
// Otherwise (no prebuilt package for this platform), build the addon from the Rust sources
// shipped in the package, which needs a Rust toolchain (https://rustup.rs). The build takes a
// few minutes; npm shows its output only with `npm install --foreground-scripts`.
'use strict'
const { execFileSync } = require('node:child_process')
const { copyFileSync, existsSync, mkdtempSync, rmSync } = require('node:fs')
const { tmpdir } = require('node:os')
const { join } = require('node:path')

const root = join(__dirname, '..')

function loads() {
  try {
    require(join(root, 'native.js'))
    return true
  } catch {
    return false
  }
}

/** The suffix napi's loader looks for beside native.js on this platform. */
function platformSuffix() {
  const { platform, arch } = process
  if (platform === 'win32') return `win32-${arch}-msvc`
  if (platform === 'linux') {
    const glibc = process.report?.getReport()?.header?.glibcVersionRuntime
    return `linux-${arch}-${glibc ? 'gnu' : 'musl'}`
  }
  return `${platform}-${arch}`
}

function libraryName() {
  if (process.platform === 'win32') return 'selene_persist_node.dll'
  return process.platform === 'darwin' ? 'libselene_persist_node.dylib' : 'libselene_persist_node.so'
}

/**
 * Build the addon of the package at `packageRoot` with cargo (its progress passed through) and
 * copy it in beside native.js. Cargo builds into `CARGO_TARGET_DIR` when set, else into a
 * temporary directory that is removed afterwards, built or not, so no build tree stays in
 * node_modules. Throws when cargo fails.
 */
function buildFromSource(packageRoot) {
  const own = process.env.CARGO_TARGET_DIR || undefined
  const target = own ?? mkdtempSync(join(tmpdir(), 'selene-persist-build-'))
  try {
    execFileSync('cargo', ['build', '--release', '--locked', '--manifest-path', join(packageRoot, 'crates', 'node', 'Cargo.toml')], {
      cwd: packageRoot,
      stdio: 'inherit',
      env: { ...process.env, CARGO_TARGET_DIR: target },
    })
    copyFileSync(join(target, 'release', libraryName()), join(packageRoot, `selene-persist.${platformSuffix()}.node`))
  } finally {
    if (own === undefined) rmSync(target, { recursive: true, force: true })
  }
}

function main() {
  // In a git checkout, `npm install` runs the `prepare` script next, which builds the addon.
  if (loads() || existsSync(join(root, '.git'))) return 0
  if (!existsSync(join(root, 'crates', 'node', 'Cargo.toml'))) {
    console.warn('selene-persist: no prebuilt binary for this platform and no Rust sources to build one')
    return 0
  }
  console.log(`selene-persist: no prebuilt binary for ${platformSuffix()}; building from source with cargo (a few minutes)`)
  const started = Date.now()
  try {
    buildFromSource(root)
  } catch {
    console.error('selene-persist: the source build failed; install a Rust toolchain (https://rustup.rs) and run `npm rebuild selene-persist`')
    return 1
  }
  if (!loads()) {
    console.error('selene-persist: built the addon but it does not load')
    return 1
  }
  console.log(`selene-persist: built from source in ${Math.round((Date.now() - started) / 1000)} s`)
  return 0
}

if (require.main === module) process.exitCode = main()

module.exports = { buildFromSource }
