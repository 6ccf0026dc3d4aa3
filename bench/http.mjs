// Durable Streams over HTTP: selene-persist/http against the protocol's reference server
// (file-backed), each in its own process on 127.0.0.1, interleaved round by round (medians of
// ROUNDS, default 3). Cases are data: one client appending in sequence, 32 clients on one
// stream, 32 clients on 32 streams (128-byte appends, each awaited), then a catch-up read of
// 1M JSON messages and the SSE lag from an append to its event (selene-persist only).
// Run: npm --prefix bench install && node bench/http.mjs   (after npm run build; ROUNDS=n)
import { client, start } from './drivers/http-servers.mjs'

const ROUNDS = Number(process.env.ROUNDS ?? 3)
const PAYLOAD = 'x'.repeat(128)

const CASES = [
  { name: '1 client, sequential', clients: 1, streams: 1, appends: 400 },
  { name: '32 clients, 1 stream', clients: 32, streams: 1, appends: 3200 },
  { name: '32 clients, 32 streams', clients: 32, streams: 32, appends: 3200 },
]

const send = client(256)

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

async function runCase(url, c) {
  const streams = Array.from({ length: c.streams }, (_, i) => `${url}/bench-${i}-${Date.now()}`)
  for (const s of streams) await fetch(s, { method: 'PUT', headers: { 'content-type': 'text/plain' } })
  const perClient = c.appends / c.clients
  const latencies = []
  const t0 = performance.now()
  await Promise.all(
    Array.from({ length: c.clients }, async (_, k) => {
      const target = streams[k % c.streams]
      for (let i = 0; i < perClient; i++) {
        const s = performance.now()
        const status = await send('POST', target, PAYLOAD)
        if (status !== 204) throw new Error(`append: ${status}`)
        latencies.push(performance.now() - s)
      }
    }),
  )
  const seconds = (performance.now() - t0) / 1000
  latencies.sort((a, b) => a - b)
  return { rate: c.appends / seconds, p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99) }
}

async function catchUp(url) {
  const stream = `${url}/catch-up`
  await fetch(stream, { method: 'PUT', headers: { 'content-type': 'application/json' } })
  const batch = JSON.stringify(Array.from({ length: 10_000 }, (_, i) => ({ i })))
  for (let b = 0; b < 100; b++) await fetch(stream, { method: 'POST', headers: { 'content-type': 'application/json' }, body: batch })
  const t0 = performance.now()
  let offset = '-1'
  let messages = 0
  for (;;) {
    const res = await fetch(`${stream}?offset=${offset}`)
    messages += (await res.json()).length
    offset = res.headers.get('stream-next-offset')
    if (res.headers.get('stream-up-to-date') === 'true') break
  }
  return { messages, rate: messages / ((performance.now() - t0) / 1000) }
}

async function sseLag(url) {
  const stream = `${url}/sse-lag`
  await fetch(stream, { method: 'PUT', headers: { 'content-type': 'text/plain' } })
  const controller = new AbortController()
  const res = await fetch(`${stream}?offset=now&live=sse`, { signal: controller.signal })
  const reader = res.body.getReader()
  const decoder = new TextDecoder()
  let text = ''
  const nextData = async () => {
    for (;;) {
      const at = text.indexOf('event: data')
      const end = at < 0 ? -1 : text.indexOf('\n\n', at)
      if (end >= 0) {
        text = text.slice(end + 2)
        return
      }
      const { value, done } = await reader.read()
      if (done) throw new Error('SSE ended')
      text += decoder.decode(value, { stream: true })
    }
  }
  const lags = []
  for (let i = 0; i < 200; i++) {
    const s = performance.now()
    const seen = nextData()
    await fetch(stream, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: PAYLOAD })
    await seen
    lags.push(performance.now() - s)
  }
  controller.abort()
  lags.sort((a, b) => a - b)
  return { p50: quantile(lags, 0.5), p99: quantile(lags, 0.99) }
}

const results = new Map(CASES.map((c) => [c.name, { 'selene-persist': [], reference: [] }]))
for (let round = 0; round < ROUNDS; round++) {
  for (const server of round % 2 === 0 ? ['selene-persist', 'reference'] : ['reference', 'selene-persist']) {
    const running = await start(server)
    try {
      for (const c of CASES) results.get(c.name)[server].push(await runCase(running.url, c))
    } finally {
      await running.stop()
    }
  }
}

const fmt = (n) => (n >= 100 ? n.toFixed(0) : n.toFixed(1))
console.log(`| case | selene-persist appends/s (p50 / p99 ms) | reference appends/s (p50 / p99 ms) | ratio (median of ${ROUNDS} rounds, range) |`)
console.log('|---|---|---|---|')
for (const c of CASES) {
  const { 'selene-persist': ours, reference } = results.get(c.name)
  const ratios = ours.map((o, i) => o.rate / reference[i].rate).sort((a, b) => a - b)
  const show = (rs) => `${fmt(median(rs.map((r) => r.rate)))} (${median(rs.map((r) => r.p50)).toFixed(1)} / ${median(rs.map((r) => r.p99)).toFixed(1)})`
  console.log(`| ${c.name} | ${show(ours)} | ${show(reference)} | ${median(ratios).toFixed(1)}x (${ratios[0].toFixed(1)}-${ratios.at(-1).toFixed(1)}) |`)
}

const ours = await start('selene-persist')
try {
  const read = await catchUp(ours.url)
  console.log(`\ncatch-up read: ${read.messages} JSON messages at ${fmt(read.rate)} messages/s`)
  const lag = await sseLag(ours.url)
  console.log(`SSE lag, append to event: p50 ${lag.p50.toFixed(2)} ms, p99 ${lag.p99.toFixed(2)} ms (200 appends, each awaited)`)
} finally {
  await ours.stop()
}
