/**
 * The native addon's load, done first by every entry point (index.ts, and so jetstream.ts and
 * cli.ts), before any module that imports `../native`: when no binary loads, the package fails
 * with a `NATIVE_MISSING` PersistError that names the platform, what was tried and the fix for
 * the runtime at hand, instead of napi's generic loader message (which blames an npm bug). A
 * failed `require` is not cached, so the later imports of `../native` only run once it loaded.
 */
import { PersistError } from './errors'

/** napi's own summary, the outermost error (it blames an npm bug); its causes are the attempts, last first. */
const NAPI_SUMMARY = /^Cannot find native binding/

function nativeMissing(error: unknown): PersistError {
  const target = platformTarget()
  const tried = causes(error)
    .filter((message) => !NAPI_SUMMARY.test(message))
    .reverse()
    .map((message) => `  - ${message}`)
  return new PersistError(
    'NATIVE_MISSING',
    [`selene-persist: no native addon loads for ${target}. Tried:`, ...tried, fix(error, target)].join('\n'),
    { cause: error },
  )
}

/** napi's name for this platform, as in its file and package names: `linux-x64-gnu`, `darwin-arm64`. */
function platformTarget(): string {
  const { platform, arch } = process
  if (platform === 'win32') return `win32-${arch}-msvc`
  if (platform !== 'linux') return `${platform}-${arch}`
  return `linux-${arch}-${glibc() ? 'gnu' : 'musl'}`
}

function glibc(): boolean {
  try {
    const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header
    return header?.glibcVersionRuntime !== undefined
  } catch {
    // A runtime without process reports: glibc is by far the likelier.
    return true
  }
}

/** The first line of the message of `error` and of each of its causes, outermost first. */
function causes(error: unknown): string[] {
  const found: string[] = []
  for (let at = error; at instanceof Error && found.length < 16; at = at.cause) found.push(at.message.split('\n')[0] ?? '')
  return found
}

/** What to do about it under the runtime at hand. */
function fix(error: unknown, target: string): string {
  const deno = (globalThis as { Deno?: unknown }).Deno !== undefined
  if (deno && causes(error).some((message) => /Requires \w+ access|--allow-/.test(message))) {
    return 'Fix: Deno loads the addon only with these permissions: `deno run --allow-ffi --allow-read --allow-write --allow-env main.js` (narrower grants: docs/install.md in the selene-persist repository).'
  }
  const fromPackage = `Fix: install the optional package selene-persist-${target} (a lockfile made on another platform, or --omit=optional / --no-optional, leaves it out), or let selene-persist's install script build the addon from source (this needs a Rust toolchain, https://rustup.rs):`
  if (deno) return `${fromPackage} \`deno install --allow-scripts=npm:selene-persist\`.`
  if (process.versions.bun !== undefined) return `${fromPackage} Bun blocks it until trusted: \`bun pm trust selene-persist\`.`
  return `${fromPackage} \`npm rebuild selene-persist\` runs it after an install that skipped it (--ignore-scripts, or an npm that blocks install scripts until approved: \`npm install-scripts approve selene-persist\` lets later installs run it); pnpm 10 runs it only once approved (\`pnpm approve-builds\`, or "onlyBuiltDependencies" in pnpm-workspace.yaml or package.json).`
}

try {
  require('../native')
} catch (error) {
  throw nativeMissing(error)
}
