#!/usr/bin/env bash
# Check the package as users receive it: pack it, install the tarball into a fresh project,
# require and import it there, run a short script and the CLI, then check the type
# declarations for ESM and CJS consumers (attw) and the package layout (publint).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

tarball=$(npm pack --silent --pack-destination "$work" | tail -n 1)
echo "packed $tarball ($(du -h "$work/$tarball" | cut -f1))"
mkdir "$work/app"
cd "$work/app"
npm init -y >/dev/null
npm install --no-audit --no-fund --silent "$work/$tarball"

node -e "
const { WalWriter, Store, PersistError } = require('selene-persist')
;(async () => {
  const store = await Store.open('store')
  await store.append(Buffer.from('from require'))
  await store.checkpoint({ state: Buffer.from('s') })
  await store.append(Buffer.from('after checkpoint'))
  await store.close()
  const err = await WalWriter.open('').catch((e) => e)
  if (!(err instanceof PersistError) || err.code !== 'INVALID_ARGUMENT') throw new Error('typed errors broken')
  console.log('require: ok')
})()
"
node --input-type=module -e "
import persist, { Store } from 'selene-persist'
if (persist.Store !== Store) throw new Error('ESM and CJS disagree')
const store = await Store.open('store')
const seen = []
for await (const e of store.replay()) seen.push(e.payload.toString())
await store.close()
if (seen.join() !== 'after checkpoint') throw new Error('replay: ' + seen.join())
console.log('import: ok')
"
npx --no-install selene-persist verify store
npx --no-install selene-persist inspect store --json > inspect.json
node -e "if (require('./inspect.json').manifest.liveSnapshotSeq !== 2) process.exit(1)"
# The core works without the optional NATS packages; the commands that need them say so.
if npx --no-install selene-persist ship store --server nats://127.0.0.1:1 --stream S --node 1 2> ship.err; then exit 1; fi
grep -q 'needs the optional NATS packages' ship.err
echo "cli: ok"
# selene-persist/http needs no optional package: served from the installed tarball, as require and import.
node --input-type=module -e "
import { serve } from 'selene-persist/http'
import { createRequire } from 'node:module'
if (createRequire(import.meta.url)('selene-persist/http').serve !== serve) throw new Error('ESM and CJS disagree')
const server = await serve({ dir: 'streams' })
const put = await fetch(server.url + '/s', { method: 'PUT', headers: { 'content-type': 'text/plain' }, body: 'hello' })
const text = await (await fetch(server.url + '/s?offset=-1')).text()
await server.close()
if (put.status !== 201 || text !== 'hello') throw new Error('http: ' + put.status + ' ' + text)
console.log('http: ok')
"

# The path users take on a platform with a prebuilt binary: the main package without a .node,
# its optionalDependencies naming the per-platform package (as a release publishes them), both
# installed into a fresh project with no Rust toolchain on PATH; the loader finds the binary there.
if [ "$(node -p 'process.platform + "-" + process.arch')" = linux-x64 ] && [ -f "$repo/selene-persist.linux-x64-gnu.node" ]; then
  mkdir "$work/release" "$work/platform-app" "$work/bin"
  tar -xzf "$work/$tarball" -C "$work/release"
  rm "$work/release/package/"*.node
  node -e "
const fs = require('fs'), file = '$work/release/package/package.json', pkg = JSON.parse(fs.readFileSync(file))
pkg.optionalDependencies = { 'selene-persist-linux-x64-gnu': pkg.version }
fs.writeFileSync(file, JSON.stringify(pkg, null, 2))
"
  cp -r "$repo/npm/linux-x64-gnu" "$work/platform"
  cp "$repo/selene-persist.linux-x64-gnu.node" "$work/platform/"
  main=$(cd "$work/release/package" && npm pack --silent --ignore-scripts --pack-destination "$work/release" | tail -n 1)
  platform=$(cd "$work/platform" && npm pack --silent --pack-destination "$work" | tail -n 1)
  ln -s "$(command -v node)" "$work/bin/node"
  ln -s "$(command -v npm)" "$work/bin/npm"
  nocargo="$work/bin:/usr/bin:/bin"
  if PATH="$nocargo" command -v cargo >/dev/null; then echo "cargo is in /usr/bin or /bin: cannot check an install without it"; exit 1; fi
  cd "$work/platform-app"
  npm init -y >/dev/null
  PATH="$nocargo" npm install --no-audit --no-fund --foreground-scripts "$work/release/$main" "$work/$platform" > install.log 2>&1 || { cat install.log; exit 1; }
  if grep -q 'building from source' install.log; then cat install.log; exit 1; fi
  PATH="$nocargo" node -e "
const { Store } = require('selene-persist')
const found = require.resolve('selene-persist-linux-x64-gnu')
;(async () => {
  const store = await Store.open('store')
  await store.append(Buffer.from('from the platform package'))
  await store.close()
  console.log('platform package: ok (' + require('path').relative(process.cwd(), found) + ')')
})()
"
  cd "$work/app"
fi

# A platform with no prebuilt binary: the install script builds one from the shipped sources.
rm node_modules/selene-persist/*.node
if ! CARGO_TARGET_DIR="$repo/target" npm rebuild selene-persist --foreground-scripts > rebuild.log 2>&1; then
  cat rebuild.log
  exit 1
fi
grep 'selene-persist:' rebuild.log
node -e "require('selene-persist'); console.log('source build: ok')"

cd "$repo"
npx --no-install attw --pack . --format table-flipped
npx --no-install publint --strict
echo "package: ok"
