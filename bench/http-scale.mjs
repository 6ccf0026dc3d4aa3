// How much a stream costs a selene-persist/http server: creates STREAMS streams (default
// 10,000) with one 128-byte append each, then measures the server's RSS and open descriptors
// with every stream idle, and again with ACTIVE of them (default 256, the default maxOpenStores)
// just appended to. The server runs in its own process; the figures are its /proc entries.
// Run: node bench/http-scale.mjs   (after npm run build)
import { readdir, readFile } from 'node:fs/promises'

import { client, start } from './drivers/http-servers.mjs'

const STREAMS = Number(process.env.STREAMS ?? 10_000)
const ACTIVE = Number(process.env.ACTIVE ?? 256)
const PARALLEL = 32

const server = await start('selene-persist')
const request = client(PARALLEL)
const send = (method, path, body) => request(method, `${server.url}${path}`, body)

async function usage() {
  const status = await readFile(`/proc/${server.pid}/status`, 'utf8')
  const rss = Number(/VmRSS:\s+(\d+)/.exec(status)[1]) * 1024
  const fds = (await readdir(`/proc/${server.pid}/fd`)).length
  return { rss, fds }
}

const base = await usage()
const t0 = performance.now()
for (let next = 0; next < STREAMS; ) {
  const wave = []
  for (let k = 0; k < PARALLEL && next < STREAMS; k++, next++) wave.push(send('PUT', `/s/${next}`, 'x'.repeat(128)))
  for (const status of await Promise.all(wave)) if (status !== 201) throw new Error(`PUT: ${status}`)
}
const created = (performance.now() - t0) / 1000
const idle = await usage()
for (let next = 0; next < ACTIVE; ) {
  const wave = []
  for (let k = 0; k < PARALLEL && next < ACTIVE; k++, next++) wave.push(send('POST', `/s/${next}`, 'y'.repeat(128)))
  for (const status of await Promise.all(wave)) if (status !== 204) throw new Error(`POST: ${status}`)
}
const active = await usage()
await server.stop()

const kib = (n) => `${(n / 1024).toFixed(1)} KiB`
console.log(`${STREAMS} streams created in ${created.toFixed(1)} s (${(STREAMS / created).toFixed(0)}/s, ${PARALLEL} at a time)`)
console.log(`idle: RSS ${kib(idle.rss - base.rss)} in all, ${kib((idle.rss - base.rss) / STREAMS)} a stream; descriptors ${idle.fds - base.fds} in all`)
console.log(`${ACTIVE} active: RSS ${kib((active.rss - idle.rss) / ACTIVE)} and ${((active.fds - idle.fds) / ACTIVE).toFixed(1)} descriptors a stream`)
