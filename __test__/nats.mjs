// Real nats-server processes for the JetStream tests: on 127.0.0.1 only, on free ports, each
// with its own store directory and `sync_interval: always`, stopped by pid.
import { spawn, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { connect } from '@nats-io/transport-node'
import { jetstreamManager } from '@nats-io/jetstream'

/** nats-server 2.10 or newer: 2.9 acknowledges before fsync. */
export const natsServer = (() => {
  const found = spawnSync('nats-server', ['--version'], { encoding: 'utf8' })
  const version = /v(\d+)\.(\d+)/.exec(found.stdout ?? '')
  return version && (Number(version[1]) > 2 || Number(version[2]) >= 10) ? 'nats-server' : null
})()

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
