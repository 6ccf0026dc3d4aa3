// The Durable Streams servers the HTTP benchmarks run, and the client they drive them with.
// `start(name)` runs one in a process of its own (`node drivers/http-servers.mjs <name> <dir>`,
// which prints `listening <base URL>`) on a fresh directory.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { Agent, request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath, pathToFileURL } from 'node:url'

export const SERVERS = {
  /** selene-persist/http: a store per stream, appends acknowledged after their fdatasync. */
  'selene-persist': async (dir) => {
    const { serve } = await import('../../http.js')
    return (await serve({ dir, port: 0 })).url
  },
  /** The protocol's Node reference server in its file-backed mode (LMDB and one log file a stream). */
  reference: async (dir) => {
    const { DurableStreamTestServer } = await import('@durable-streams/server')
    return new DurableStreamTestServer({ port: 0, host: '127.0.0.1', dataDir: dir, compression: false }).start()
  },
}

/** Server `name` listening, in its own process: `{ url, pid, stop() }` (stop kills it and removes its directory). */
export async function start(name) {
  const dir = await mkdtemp(join(tmpdir(), `bench-http-${name}-`))
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), name, dir], { stdio: ['ignore', 'pipe', 'inherit'] })
  let url
  for await (const line of createInterface({ input: child.stdout })) {
    if (line.startsWith('listening ')) {
      url = line.slice('listening '.length)
      break
    }
  }
  // The reference server logs to stdout: keep the pipe drained.
  child.stdout.resume()
  return {
    url,
    pid: child.pid,
    async stop() {
      const exited = once(child, 'exit')
      child.kill('SIGKILL')
      await exited
      await rm(dir, { recursive: true, force: true })
    },
  }
}

/**
 * `send(method, url, body)`, resolving with the status: node:http on kept-alive sockets, at
 * most `maxSockets` at once (fetch costs the client more CPU than the servers spend, which
 * would hide the difference between them).
 */
export function client(maxSockets) {
  const agent = new Agent({ keepAlive: true, maxSockets })
  return (method, url, body) =>
    new Promise((resolve, reject) => {
      const req = request(url, { method, agent, headers: { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) } }, (res) => {
        res.resume()
        res.on('end', () => resolve(res.statusCode))
      })
      req.on('error', reject)
      req.end(body)
    })
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(`listening ${await SERVERS[process.argv[2]](process.argv[3])}\n`)
}
