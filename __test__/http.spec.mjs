// selene-persist/http beyond the conformance suite: what a crash, a restart and hostile
// requests do to a real server process on 127.0.0.1.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readdir } from 'node:fs/promises'
import { request } from 'node:http'
import { connect } from 'node:net'
import { join } from 'node:path'
import { createInterface } from 'node:readline'

import { DurableStream } from '@durable-streams/client'
import test from 'ava'

import { serve } from '../http.js'
import { fixture, tempDir } from './helpers.mjs'

/** A server process on `dir`; resolves once it listens. */
async function startServer(t, dir, longPollMs = 30_000) {
  const child = spawn(process.execPath, [fixture('http-serve-child.mjs'), dir, String(longPollMs)], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL'))
  const [line] = await once(createInterface({ input: child.stdout }), 'line')
  return { child, url: line }
}

async function kill9(child) {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill('SIGKILL')
  await exited
}

/** POST `body` as producer `id`, epoch 0, sequence `seq`: resolves with the status, or null if the connection died. */
async function produce(url, id, seq, body) {
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'text/plain', 'Producer-Id': id, 'Producer-Epoch': '0', 'Producer-Seq': String(seq) },
      body,
    })
    await res.arrayBuffer()
    return res.status
  } catch {
    return null
  }
}

test('kill -9 of the server during idempotent appends, 40 rounds: every acknowledged append is there once, and every retry after the crash is deduplicated', async (t) => {
  t.timeout(300_000)
  const dir = await tempDir(t)
  const PRODUCERS = 4
  const ROUNDS = 40
  const next = Array(PRODUCERS).fill(0)
  const acked = new Set()
  let doubledRetries = 0
  let retriedLanded = 0
  let { child, url } = await startServer(t, dir)
  const stream = `${url}/crash`
  t.is((await fetch(stream, { method: 'PUT', headers: { 'content-type': 'text/plain' } })).status, 201)
  for (let round = 0; round < ROUNDS; round++) {
    // Each producer appends one at a time; the server dies once `target` acks have come back,
    // with the other producers' appends in flight.
    const target = acked.size + 3 + (round % 7)
    let stop = false
    const unknown = []
    await Promise.all(
      next.map(async (_, p) => {
        while (!stop) {
          const seq = next[p]
          const status = await produce(`${url}/crash`, `p${p}`, seq, `p${p}-${seq};`)
          if (status === null) {
            unknown.push([p, seq])
            return
          }
          t.is(status, 200, `p${p} seq ${seq}`)
          acked.add(`p${p}-${seq}`)
          next[p] = seq + 1
          if (acked.size >= target && !stop) {
            stop = true
            await kill9(child)
          }
        }
      }),
    )
    ;({ child, url } = await startServer(t, dir))
    // Each append whose outcome the crash hid is sent again: it lands once either way.
    for (const [p, seq] of unknown) {
      const status = await produce(`${url}/crash`, `p${p}`, seq, `p${p}-${seq};`)
      t.true(status === 200 || status === 204, `retry p${p} seq ${seq}: ${status}`)
      if (status === 204) retriedLanded++
      acked.add(`p${p}-${seq}`)
      next[p] = seq + 1
      // A second retry of the same append is a duplicate, never a second copy.
      if ((await produce(`${url}/crash`, `p${p}`, seq, `p${p}-${seq};`)) !== 204) doubledRetries++
    }
  }
  const body = await (await fetch(`${url}/crash?offset=-1`)).text()
  const seen = body.split(';').filter(Boolean)
  const counts = new Map()
  for (const item of seen) counts.set(item, (counts.get(item) ?? 0) + 1)
  t.deepEqual([...counts].filter(([, n]) => n > 1), [], 'no append twice')
  t.deepEqual([...acked].filter((item) => !counts.has(item)), [], 'every acknowledged append present')
  t.deepEqual([...counts.keys()].filter((item) => !acked.has(item)), [], 'nothing that was not sent')
  t.is(doubledRetries, 0)
  t.log(`${acked.size} appends over ${ROUNDS} kills; ${retriedLanded} retries found their append already landed`)
  await kill9(child)
})

test('a reader with @durable-streams/client resumes at its offset across a server restart: no gap, no repeat', async (t) => {
  const dir = await tempDir(t)
  let { child, url } = await startServer(t, dir, 500)
  const streamUrl = `${url}/resume`
  await DurableStream.create({ url: streamUrl, contentType: 'application/json' })
  const writer = new DurableStream({ url: streamUrl, contentType: 'application/json' })
  for (let i = 0; i < 5; i++) await writer.append(JSON.stringify({ i }))
  const first = await new DurableStream({ url: streamUrl }).stream({ live: false, json: true })
  const before = await first.json()
  const offset = first.offset
  t.deepEqual(before.map((m) => m.i), [0, 1, 2, 3, 4])
  await kill9(child)
  ;({ child, url } = await startServer(t, dir, 500))
  const again = new DurableStream({ url: `${url}/resume`, contentType: 'application/json' })
  for (let i = 5; i < 8; i++) await again.append(JSON.stringify({ i }))
  const resumed = await again.stream({ offset, live: false, json: true })
  t.deepEqual((await resumed.json()).map((m) => m.i), [5, 6, 7])
  await kill9(child)
})

async function inProcess(t) {
  const dir = await tempDir(t)
  const server = await serve({ dir, port: 0, longPollTimeoutMs: 500, maxBodyBytes: 1 << 20 })
  t.teardown(() => server.close())
  return { dir, server, url: server.url }
}

test('hostile requests get protocol errors and harm nothing: huge bodies, bad offsets, traversal in names, a client that sends half a request', async (t) => {
  const { dir, url } = await inProcess(t)
  t.is((await fetch(`${url}/ok`, { method: 'PUT', headers: { 'content-type': 'text/plain' }, body: 'kept' })).status, 201)
  // A body over the cap is refused with 413, whether declared or streamed.
  const big = Buffer.alloc((1 << 20) + 1, 1)
  t.is((await fetch(`${url}/ok`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: big })).status, 413)
  const chunked = await new Promise((resolve) => {
    const req = request(`${url}/ok`, { method: 'POST', headers: { 'content-type': 'text/plain', 'transfer-encoding': 'chunked' } }, (res) => resolve(res.statusCode))
    req.on('error', () => resolve('reset'))
    for (let i = 0; i < 20; i++) req.write(Buffer.alloc(64 << 10, 2))
    req.end()
  })
  t.true(chunked === 413 || chunked === 'reset', String(chunked))
  // Offsets the server never handed out.
  for (const offset of ['abc', '1', '-2', '0000000000000001', '9999999999999999_x', '']) {
    t.is((await fetch(`${url}/ok?offset=${encodeURIComponent(offset)}`)).status, 400, offset)
  }
  t.is((await fetch(`${url}/ok?offset=-1&offset=now`)).status, 400)
  // A name with dot segments or encoded slashes is a name: nothing is created outside the root.
  for (const name of ['/..%2F..%2Fescape', '/a/%2e%2e/%2e%2e/escape', '/%00nul']) {
    const status = (await fetch(`${url}${name}`, { method: 'PUT', headers: { 'content-type': 'text/plain' }, body: 'x' })).status
    t.true(status === 201 || status === 404, `${name}: ${status}`)
  }
  t.deepEqual((await readdir(dir)).sort(), ['streams', 'subscriptions', 'trash', 'webhook-key.json'])
  t.true((await readdir(join(dir, '..'))).every((name) => name !== 'escape'))
  // Half a request holds one socket and nothing else: others are served meanwhile.
  const slow = connect(new URL(url).port, '127.0.0.1')
  await once(slow, 'connect')
  slow.write('POST /ok HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nabc')
  t.is((await fetch(`${url}/ok`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '!' })).status, 204)
  slow.destroy()
  t.is(await (await fetch(`${url}/ok?offset=-1`)).text(), 'kept!')
})

test('concurrent appends handed to the store together are each acknowledged and each stored once, within the tail their responses name', async (t) => {
  const { url } = await inProcess(t)
  const stream = `${url}/together`
  t.is((await fetch(stream, { method: 'PUT', headers: { 'content-type': 'text/plain' } })).status, 201)
  const N = 64
  const body = (i) => `<${String(i).padStart(6, '0')}>`
  const size = body(0).length
  // All at once over many sockets: requests read in one turn of the event loop share a hand-over.
  const tails = await Promise.all(
    Array.from({ length: N }, async (_, i) => {
      const res = await fetch(stream, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: body(i) })
      t.is(res.status, 204)
      return Number(res.headers.get('stream-next-offset').split('_')[0])
    }),
  )
  const read = await fetch(`${stream}?offset=-1`)
  const text = await read.text()
  const stored = Array.from({ length: text.length / size }, (_, k) => text.slice(k * size, (k + 1) * size))
  t.deepEqual([...stored].sort(), Array.from({ length: N }, (_, i) => body(i)))
  // A response names the tail once its append is durable: at least one, at most all of them.
  t.is(read.headers.get('stream-next-offset'), `${String(N).padStart(16, '0')}_${'0'.repeat(16)}`)
  t.true(tails.every((tail) => tail >= 1 && tail <= N))
})

test('a request target new URL would rewrite (dot segments, a query) names the stream of its rewritten path', async (t) => {
  const { url } = await inProcess(t)
  t.is((await fetch(`${url}/n/a`, { method: 'PUT', headers: { 'content-type': 'text/plain' } })).status, 201)
  // node:http sends the target as written (fetch would normalise it first).
  const post = (path, body) =>
    new Promise((resolve, reject) => {
      const req = request(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'text/plain' } }, (res) => {
        res.resume()
        res.on('end', () => resolve(res.statusCode))
      })
      req.on('error', reject)
      req.end(body)
    })
  for (const [path, body] of [['/n/./a', '1'], ['/n/x/../a', '2'], ['/n/a?q=1', '3'], ['/n/a', '4']]) t.is(await post(path, body), 204, path)
  t.is(await post('/n/.a', 'x'), 404)
  t.is(await (await fetch(`${url}/n/a?offset=-1`)).text(), '1234')
})

test('streams cost no open store when idle: only maxOpenStores stay open, and the others reopen on demand with their producers', async (t) => {
  const dir = await tempDir(t)
  const server = await serve({ dir, port: 0, maxOpenStores: 4 })
  t.teardown(() => server.close())
  const fds = async () => (await readdir('/proc/self/fd')).length
  const before = await fds()
  for (let i = 0; i < 40; i++) {
    t.is((await fetch(`${server.url}/s${i}`, { method: 'PUT', headers: { 'content-type': 'text/plain' }, body: `s${i}` })).status, 201)
    const status = await produce(`${server.url}/s${i}`, 'p', 0, '+')
    t.is(status, 200)
  }
  // 40 streams, 4 stores open: the descriptors held are those of 4 stores, not 40.
  const held = (await fds()) - before
  t.true(held < 40, `${held} descriptors for 40 streams`)
  // A closed stream reopens with its producer state from its log: a retry is a duplicate.
  t.is(await produce(`${server.url}/s0`, 'p', 0, '+'), 204)
  t.is(await (await fetch(`${server.url}/s0?offset=-1`)).text(), 's0+')
})

test('selene-persist serve prints its URL, serves, and exits 0 on SIGTERM', async (t) => {
  const dir = await tempDir(t)
  const child = spawn(process.execPath, [new URL('../cli.js', import.meta.url).pathname, 'serve', join(dir, 'streams'), '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => child.exitCode === null && child.kill('SIGKILL'))
  const [line] = await once(createInterface({ input: child.stdout }), 'line')
  const url = /at (http:\/\/127\.0\.0\.1:\d+)$/.exec(line)?.[1]
  t.truthy(url, line)
  t.is((await fetch(`${url}/a`, { method: 'PUT', headers: { 'content-type': 'text/plain' }, body: 'x' })).status, 201)
  t.is(await (await fetch(`${url}/a?offset=-1`)).text(), 'x')
  const exited = once(child, 'exit')
  child.kill('SIGTERM')
  t.deepEqual(await exited, [0, null])
})
