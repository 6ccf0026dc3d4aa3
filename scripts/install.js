#!/usr/bin/env node
// Runs after `npm install selene-persist`. If a prebuilt binary loads, there is nothing to do.
// Otherwise (no prebuilt package for this platform), build the addon from the Rust sources
// shipped in the package, which needs a Rust toolchain (https://rustup.rs).
'use strict'
const { execFileSync } = require('node:child_process')
const { copyFileSync, existsSync } = require('node:fs')
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

// In a git checkout, `npm install` runs the `prepare` script next, which builds the addon.
if (loads() || existsSync(join(root, '.git'))) process.exit(0)
if (!existsSync(join(root, 'crates', 'node', 'Cargo.toml'))) {
  console.warn('selene-persist: no prebuilt binary for this platform and no Rust sources to build one')
  process.exit(0)
}
console.log(`selene-persist: no prebuilt binary for ${platformSuffix()}; building from source with cargo`)
try {
  execFileSync('cargo', ['build', '--release', '--locked', '--manifest-path', join(root, 'crates', 'node', 'Cargo.toml')], {
    cwd: root,
    stdio: 'inherit',
  })
} catch (error) {
  console.error('selene-persist: the source build failed; install a Rust toolchain (https://rustup.rs) and run `npm rebuild selene-persist`')
  process.exit(1)
}
const target = process.env.CARGO_TARGET_DIR ?? join(root, 'target')
copyFileSync(join(target, 'release', libraryName()), join(root, `selene-persist.${platformSuffix()}.node`))
if (!loads()) {
  console.error('selene-persist: built the addon but it does not load')
  process.exit(1)
}
console.log('selene-persist: built from source')
