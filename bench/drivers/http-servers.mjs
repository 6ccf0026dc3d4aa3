// The Durable Streams servers the HTTP benchmarks run, and the client they drive them with.
// `start(name)` runs one in a process of its own (`node drivers/http-servers.mjs <name> <dir>`,
// which prints `listening <base URL>`) on a fresh directory.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { connect } from 'node:net'
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
 * `send(method, url, body)`, resolving with the status: HTTP/1.1 requests written and
 * responses parsed by hand on kept-alive sockets, at most `maxSockets` open at once. A load
 * generator, not a client: it reads a response's status line, headers and body (by
 * Content-Length or chunked) and nothing more. node:http's client cost as much CPU per request
 * as the server under test (and fetch more still), which on a 2-core machine the server needs.
 */
export function client(maxSockets) {
  /** Kept-alive connections by origin, and requests waiting for one. */
  const idle = new Map()
  const waiting = []
  let open = 0
  const take = (origin) => {
    const free = idle.get(origin) ?? []
    idle.set(origin, free)
    for (let connection = free.pop(); connection; connection = free.pop()) {
      if (!connection.broken) return connection
      open--
    }
    if (open >= maxSockets) {
      // At the cap: an idle connection to another origin (a server since stopped) makes room.
      const other = [...idle.values()].find((list) => list.length > 0)?.pop()
      if (!other) return null
      other.socket.destroy()
      open--
    }
    open++
    return new Connection(origin)
  }
  const release = (connection) => {
    if (connection.broken) open--
    else {
      const next = waiting.findIndex((w) => w.origin === connection.origin)
      if (next >= 0) return waiting.splice(next, 1)[0].start(connection)
      if (waiting.length === 0) return idle.get(connection.origin).push(connection)
      // Requests wait for another origin: make room for them.
      connection.socket.destroy()
      open--
    }
    if (waiting.length > 0 && open < maxSockets) {
      const next = waiting.shift()
      next.start(take(next.origin))
    }
  }
  return async (method, url, body) => {
    const { host, pathname, search } = new URL(url)
    const connection = take(host) ?? (await new Promise((start) => waiting.push({ origin: host, start })))
    const head = `${method} ${pathname}${search} HTTP/1.1\r\nHost: ${host}\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`
    try {
      return await connection.exchange(head + body)
    } finally {
      release(connection)
    }
  }
}

const HEAD_END = Buffer.from('\r\n\r\n')
const LINE_END = Buffer.from('\r\n')

/** One kept-alive socket with at most one request in flight. */
class Connection {
  broken = false
  #buffer = Buffer.alloc(0)
  #pending = null

  constructor(origin) {
    this.origin = origin
    const { hostname, port } = new URL(`http://${origin}`)
    this.socket = connect(Number(port), hostname)
    this.socket.setNoDelay(true)
    this.socket.on('data', (chunk) => this.#read(chunk))
    this.socket.on('error', (error) => this.#fail(error))
    this.socket.on('close', () => this.#fail(new Error('connection closed')))
  }

  /** Send `request`; resolves with the response's status once its whole body has arrived. */
  exchange(request) {
    if (this.broken) return Promise.reject(new Error('connection closed'))
    return new Promise((resolve, reject) => {
      this.#pending = { resolve, reject }
      this.socket.write(request)
    })
  }

  #fail(error) {
    this.broken = true
    const pending = this.#pending
    this.#pending = null
    pending?.reject(error)
  }

  #read(chunk) {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk])
    const end = this.#buffer.indexOf(HEAD_END)
    if (end < 0 || this.#pending === null) return
    const head = this.#buffer.toString('latin1', 0, end).toLowerCase()
    const status = Number(head.slice(9, 12))
    let at = end + HEAD_END.length
    if (/\r\ntransfer-encoding:[^\r]*chunked/.test(head)) {
      for (;;) {
        const line = this.#buffer.indexOf(LINE_END, at)
        if (line < 0) return
        const size = Number.parseInt(this.#buffer.toString('latin1', at, line), 16)
        at = line + LINE_END.length + size + LINE_END.length
        if (at > this.#buffer.length) return
        if (size === 0) break
      }
    } else {
      const length = /\r\ncontent-length:\s*(\d+)/.exec(head)
      at += length ? Number(length[1]) : 0
      if (at > this.#buffer.length) return
    }
    if (/\r\nconnection:\s*close/.test(head)) this.broken = true
    this.#buffer = this.#buffer.subarray(at)
    const pending = this.#pending
    this.#pending = null
    pending.resolve(status)
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(`listening ${await SERVERS[process.argv[2]](process.argv[3])}\n`)
}
