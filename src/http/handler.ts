/**
 * The Durable Streams protocol over `node:http`: a `(req, res)` handler that Express, Fastify
 * and plain `http.createServer` all accept. Each protocol rule is decided here; the streams
 * themselves (stores, marks, forks) are `Streams`'.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'

import { PersistError } from '../errors'
import type { Mark, ProducerStamp } from './marks'
import {
  comparePositions,
  CORS,
  respond as send,
  formatOffset,
  Headers,
  isJson,
  isText,
  mediaType,
  nextCursor,
  parseCount,
  parseOffset,
  type Position,
  validContentType,
} from './protocol'
import { type Stream, StreamError, type StreamMeta, Streams } from './streams'
import { Subscriptions } from './subscriptions'

export interface HandlerOptions {
  /** Root directory of the streams (created if missing). */
  dir: string
  /** How long a long-poll waits for data before answering 204 (default 30 s). */
  longPollTimeoutMs?: number
  /** Largest request body accepted (default 64 MiB; 413 above). */
  maxBodyBytes?: number
  /** Stores open at once (default 256); idle streams beyond it hold no file or thread. */
  maxOpenStores?: number
  /** Let subscriptions of type `webhook` send requests (default false; see docs/http.md). */
  webhooks?: boolean
}

/** The handler, and the means to stop it. */
export interface StreamHandler {
  (req: IncomingMessage, res: ServerResponse): void
  /** End live reads and close every store. */
  close(): Promise<void>
}

const CATCH_UP_CACHE = 'public, max-age=60, stale-while-revalidate=300'
const MAX_NAME_BYTES = 4096
/** An SSE response ends after this long so caches can collapse readers (protocol 8.2). */
const SSE_MAX_MS = 60_000

/**
 * A request target that `new URL` would return unchanged as its path: no query, escape, dot
 * segment or leading `//`. Appends take this way; anything else is parsed.
 */
const PLAIN_PATH = /^\/(?:[\w~.-][\w~./-]*)?$/

function pathOf(target: string): string {
  return PLAIN_PATH.test(target) && !target.includes('/.') ? target : new URL(target, 'http://localhost').pathname
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name.toLowerCase()]
  return Array.isArray(value) ? value[0] : value
}

/** The request body, refused past `max` bytes without reading the rest. */
function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'])
    if (Number.isFinite(declared) && declared > max) {
      reject(new StreamError(413, `body over ${max} bytes`))
      return
    }
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size > max) {
        req.removeAllListeners('data')
        req.resume()
        reject(new StreamError(413, `body over ${max} bytes`))
        return
      }
      chunks.push(chunk)
    })
    req.on('end', () => resolve(Buffer.concat(chunks)))
    req.on('error', reject)
  })
}

/** A JSON append's messages (one level of array flattened), as the stored JSON array. */
function jsonMessages(body: Buffer, allowEmpty: boolean): Buffer | null {
  let value: unknown
  try {
    value = JSON.parse(body.toString('utf8'))
  } catch {
    throw new StreamError(400, 'Invalid JSON')
  }
  const messages = Array.isArray(value) ? value : [value]
  if (messages.length === 0) {
    if (allowEmpty) return null
    throw new StreamError(400, 'Empty arrays are not allowed')
  }
  return Buffer.from(JSON.stringify(messages))
}

function producerStamp(req: IncomingMessage): ProducerStamp | undefined {
  const id = header(req, Headers.producerId)
  const epoch = header(req, Headers.producerEpoch)
  const seq = header(req, Headers.producerSeq)
  if (id === undefined && epoch === undefined && seq === undefined) return undefined
  if (id === undefined || epoch === undefined || seq === undefined) {
    throw new StreamError(400, 'Producer-Id, Producer-Epoch and Producer-Seq go together')
  }
  if (id === '') throw new StreamError(400, 'Producer-Id must not be empty')
  const e = parseCount(epoch)
  const s = parseCount(seq)
  if (e === null || s === null) throw new StreamError(400, 'Producer-Epoch and Producer-Seq must be integers in 0..2^53-1')
  return { id, epoch: e, seq: s }
}

function ttlOf(req: IncomingMessage): { ttlSeconds?: number; expiresAt?: string } {
  const ttl = header(req, Headers.ttl)
  const expires = header(req, Headers.expiresAt)
  if (ttl !== undefined && expires !== undefined) throw new StreamError(400, 'Stream-TTL and Stream-Expires-At are exclusive')
  if (ttl !== undefined) {
    const seconds = parseCount(ttl)
    if (seconds === null) throw new StreamError(400, 'Invalid Stream-TTL')
    return { ttlSeconds: seconds }
  }
  if (expires !== undefined) {
    if (Number.isNaN(Date.parse(expires))) throw new StreamError(400, 'Invalid Stream-Expires-At')
    return { expiresAt: new Date(Date.parse(expires)).toISOString() }
  }
  return {}
}

export class Protocol {
  readonly #streams: Streams
  readonly #subscriptions: Subscriptions
  readonly #longPollMs: number
  readonly #maxBody: number
  readonly #live = new Set<ServerResponse>()
  #closing = false

  constructor(streams: Streams, subscriptions: Subscriptions, options: HandlerOptions) {
    this.#streams = streams
    this.#subscriptions = subscriptions
    this.#longPollMs = options.longPollTimeoutMs ?? 30_000
    this.#maxBody = options.maxBodyBytes ?? 64 << 20
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const target = req.url ?? '/'
      const name = pathOf(target)
      if (req.method === 'OPTIONS') return send(res, 204)
      if (Buffer.byteLength(name) > MAX_NAME_BYTES) throw new StreamError(414, 'stream name too long')
      if (name.includes('\0') || name === '/') throw new StreamError(404, 'no such stream')
      if (Subscriptions.owns(name)) return await this.#subscriptions.handle(name, req, res)
      switch (req.method) {
        case 'PUT':
          await this.#create(name, req, res)
          return this.#subscriptions.changed(name)
        case 'POST':
          await this.#append(name, req, res)
          return this.#subscriptions.changed(name)
        case 'GET':
          return await this.#read(name, new URL(target, 'http://localhost'), req, res)
        case 'HEAD':
          return await this.#head(name, res)
        case 'DELETE':
          return await this.#delete(name, res)
        default:
          return send(res, 405, { allow: CORS['access-control-allow-methods'] }, 'Method not allowed')
      }
    } catch (error) {
      if (error instanceof StreamError) return send(res, error.status, error.headers, error.message)
      if (error instanceof PersistError) return send(res, error.code === 'PAYLOAD_TOO_LARGE' ? 413 : 500, {}, error.code)
      return send(res, 500, {}, 'internal error')
    }
  }

  async #existing(name: string): Promise<Stream> {
    const stream = await this.#streams.get(name)
    if (stream) return stream
    if (this.#streams.isSoftDeleted(name)) throw new StreamError(410, 'stream is gone')
    throw new StreamError(404, 'no such stream')
  }

  #tailHeaders(stream: Stream): Record<string, string> {
    const headers: Record<string, string> = { [Headers.nextOffset]: formatOffset(stream.tail) }
    if (stream.closed) headers[Headers.closed] = 'true'
    return headers
  }

  async #create(name: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const given = header(req, 'content-type')
    const forkedFrom = header(req, Headers.forkedFrom)
    const forkOffset = header(req, Headers.forkOffset)
    const subOffset = header(req, Headers.forkSubOffset)
    let contentType = given !== undefined && validContentType(given) ? given : undefined
    const ttl = ttlOf(req)
    const closed = header(req, Headers.closed) === 'true'
    if (forkOffset !== undefined && parseOffset(forkOffset) === null) throw new StreamError(400, 'Invalid Stream-Fork-Offset')
    if (subOffset !== undefined && forkedFrom === undefined) throw new StreamError(400, 'Stream-Fork-Sub-Offset needs Stream-Forked-From')
    const sub = subOffset === undefined ? 0 : parseCount(subOffset)
    if (sub === null) throw new StreamError(400, 'Invalid Stream-Fork-Sub-Offset')
    const body = await readBody(req, this.#maxBody)

    const existing = await this.#streams.get(name)
    if (existing) {
      const same =
        mediaType(existing.meta.contentType) === mediaType(contentType ?? existing.meta.contentType) &&
        (contentType !== undefined || forkedFrom !== undefined || mediaType(existing.meta.contentType) === 'application/octet-stream') &&
        sameTtl(existing.meta, ttl) &&
        existing.closed === closed &&
        sameFork(existing.meta.fork, forkedFrom, forkOffset, sub)
      if (!same) throw new StreamError(409, 'stream exists with another configuration')
      return send(res, 200, { 'content-type': existing.meta.contentType, ...this.#tailHeaders(existing) })
    }
    if (this.#streams.isSoftDeleted(name)) throw new StreamError(409, 'the stream was deleted but forks still read it')

    let fork: StreamMeta['fork']
    if (forkedFrom !== undefined) {
      const source = await this.#streams.forkSource(forkedFrom)
      if (!source) throw new StreamError(404, 'fork source not found')
      if (contentType !== undefined && mediaType(contentType) !== mediaType(source.meta.contentType)) {
        throw new StreamError(409, 'content type differs from the source stream')
      }
      contentType = source.meta.contentType
      const at: Position = forkOffset === undefined ? { ...source.tail } : parseOffset(forkOffset)!
      if (comparePositions(at, source.tail) > 0) throw new StreamError(400, 'fork offset beyond the source stream')
      if (sub > 0) {
        if (at.part > 0) throw new StreamError(400, 'Invalid fork sub-offset')
        const units = await this.#streams.unitsAfter(source, at.entries)
        if (units === null || sub > units) throw new StreamError(400, 'Invalid fork sub-offset')
        // The whole append is the same point as the position after it.
        if (sub === units) at.entries += 1
        else at.part = sub
      }
      const ttlGiven = ttl.ttlSeconds !== undefined || ttl.expiresAt !== undefined
      fork = { from: forkedFrom, at, asked: { offset: forkOffset ?? null, sub, ttl: ttlGiven } }
      if (!ttlGiven) {
        if (source.meta.expiresAt !== undefined) ttl.expiresAt = source.meta.expiresAt
        else if (source.meta.ttlSeconds !== undefined) ttl.ttlSeconds = source.meta.ttlSeconds
      }
    }
    contentType ??= 'application/octet-stream'
    const payload = body.length === 0 ? null : isJson(contentType) ? jsonMessages(body, true) : body
    const meta: StreamMeta = { version: 1, name, contentType, createdAt: Date.now(), ...ttl, ...(fork ? { fork } : {}) }
    const stream = await this.#streams.create(meta, { payload, mark: closed ? { closed: true } : {} })
    send(res, 201, { location: `http://${req.headers.host ?? 'localhost'}${name}`, 'content-type': contentType, ...this.#tailHeaders(stream) })
  }

  async #append(name: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const close = header(req, Headers.closed) === 'true'
    const producer = producerStamp(req)
    const streamSeq = header(req, Headers.seq)
    const given = header(req, 'content-type')
    const body = await readBody(req, this.#maxBody)
    const stream = this.#streams.ready(name) ?? (await this.#existing(name))
    stream.lastAccess = Date.now()
    if (body.length === 0 && !close) throw new StreamError(400, 'an append needs a body')
    // The stream's own content type was checked when it was created.
    if (body.length > 0 && given !== stream.meta.contentType) {
      if (given === undefined || !validContentType(given)) throw new StreamError(400, 'Content-Type is required')
      if (mediaType(given) !== mediaType(stream.meta.contentType)) throw new StreamError(409, 'Content-Type differs from the stream')
    }
    /** The tail headers, and the producer's epoch with `seq` if a producer sent the append. */
    const answer = (seq: number): Record<string, string> => {
      const headers = this.#tailHeaders(stream)
      if (producer) {
        headers[Headers.producerEpoch] = String(producer.epoch)
        headers[Headers.producerSeq] = String(seq)
      }
      return headers
    }

    if (stream.closing) {
      await stream.drained()
      const sameClose = producer !== undefined && sameStamp(stream.closedBy, producer)
      if (sameClose || (close && body.length === 0 && producer === undefined)) {
        return send(res, 204, answer(producer?.seq ?? 0))
      }
      throw new StreamError(409, 'stream is closed', this.#tailHeaders(stream))
    }
    const payload = body.length === 0 ? null : stream.json ? jsonMessages(body, false) : body
    const seqRegresses = streamSeq !== undefined && stream.lastStreamSeq !== undefined && streamSeq <= stream.lastStreamSeq
    if (producer) {
      const verdict = stream.producers.check(producer)
      switch (verdict.kind) {
        case 'fenced':
          throw new StreamError(403, 'stale producer epoch', { [Headers.producerEpoch]: String(verdict.epoch) })
        case 'bad-epoch-start':
          throw new StreamError(400, 'a new producer epoch starts at Producer-Seq 0')
        case 'gap':
          throw new StreamError(409, 'producer sequence gap', {
            [Headers.producerExpectedSeq]: String(verdict.expected),
            [Headers.producerReceivedSeq]: String(verdict.received),
          })
        case 'duplicate':
          await stream.drained()
          return send(res, 204, answer(verdict.lastSeq))
        case 'accept':
          if (seqRegresses) break
          stream.producers.record(producer)
      }
    }
    if (seqRegresses) throw new StreamError(409, 'Stream-Seq must increase')
    // Admitted: from here to the store's append nothing awaits, so the checks above and the
    // order of appends agree.
    const mark: Mark = {}
    if (producer) mark.producer = producer
    if (streamSeq !== undefined) {
      mark.streamSeq = streamSeq
      stream.lastStreamSeq = streamSeq
    }
    if (close) {
      mark.closed = true
      stream.closing = true
      stream.closedBy = producer
    }
    await this.#streams.append(stream, payload, mark)
    send(res, producer && payload !== null ? 200 : 204, answer(producer?.seq ?? 0))
  }

  async #head(name: string, res: ServerResponse): Promise<void> {
    const stream = await this.#existing(name)
    const headers: Record<string, string> = {
      'content-type': stream.meta.contentType,
      'cache-control': 'no-store',
      ...this.#tailHeaders(stream),
    }
    if (stream.meta.ttlSeconds !== undefined) headers[Headers.ttl] = String(stream.meta.ttlSeconds)
    if (stream.meta.expiresAt !== undefined) headers[Headers.expiresAt] = stream.meta.expiresAt
    send(res, 200, headers)
  }

  async #delete(name: string, res: ServerResponse): Promise<void> {
    const stream = await this.#existing(name)
    await this.#streams.remove(stream)
    send(res, 204)
  }

  async #read(name: string, url: URL, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const offsets = url.searchParams.getAll('offset')
    const live = url.searchParams.get('live')
    if (offsets.length > 1) throw new StreamError(400, 'one offset')
    const offset = offsets[0]
    if (live !== null && live !== 'long-poll' && live !== 'sse') throw new StreamError(400, 'live is long-poll or sse')
    if (live !== null && offset === undefined) throw new StreamError(400, `live=${live} needs an offset`)
    let from: Position | 'now'
    if (offset === undefined || offset === '-1') from = { entries: 0, part: 0 }
    else if (offset === 'now') from = 'now'
    else {
      const parsed = parseOffset(offset)
      if (parsed === null) throw new StreamError(400, 'Invalid offset')
      from = parsed
    }
    const stream = await this.#existing(name)
    stream.lastAccess = Date.now()
    const cursor = url.searchParams.get('cursor')
    if (live === 'sse') return this.#sse(stream, from === 'now' ? { ...stream.tail } : from, cursor, req, res)
    if (from === 'now' && live === null) {
      return send(res, 200, {
        'content-type': stream.meta.contentType,
        'cache-control': 'no-store',
        [Headers.upToDate]: 'true',
        ...this.#tailHeaders(stream),
      }, stream.json ? '[]' : '')
    }
    const at = from === 'now' ? { ...stream.tail } : from
    let result = await this.#streams.read(stream, at)
    if (live === 'long-poll' && result.chunks.length === 0 && !stream.closed) {
      const wait = stream.changed(this.#longPollMs)
      const stop = () => wait.cancel()
      req.once('close', stop)
      const changed = await wait.promise
      req.off('close', stop)
      const current = await this.#streams.get(name)
      if (!current) throw new StreamError(404, 'stream is gone')
      if (changed) result = await this.#streams.read(current, at)
      if (result.chunks.length === 0) {
        return send(res, 204, {
          [Headers.upToDate]: 'true',
          [Headers.cursor]: nextCursor(cursor),
          ...this.#tailHeaders(current),
          [Headers.nextOffset]: formatOffset(comparePositions(at, current.tail) > 0 ? at : current.tail),
        })
      }
    }
    if (live === 'long-poll' && result.chunks.length === 0 && stream.closed) {
      return send(res, 204, { [Headers.upToDate]: 'true', [Headers.cursor]: nextCursor(cursor), ...this.#tailHeaders(stream) })
    }
    const etag = `"${formatOffset(from === 'now' ? stream.tail : from)}:${formatOffset(result.end)}${stream.closed && result.upToDate ? ':c' : ''}"`
    const headers: Record<string, string> = {
      'content-type': stream.meta.contentType,
      [Headers.nextOffset]: formatOffset(result.end),
      etag,
      'cache-control': CATCH_UP_CACHE,
    }
    if (result.upToDate) headers[Headers.upToDate] = 'true'
    if (stream.closed && result.upToDate) headers[Headers.closed] = 'true'
    if (live === 'long-poll') headers[Headers.cursor] = nextCursor(cursor)
    if (header(req, 'if-none-match') === etag) return send(res, 304, headers)
    send(res, 200, headers, this.#body(stream, result.chunks))
  }

  #body(stream: Stream, chunks: Buffer[]): Buffer {
    if (!stream.json) return Buffer.concat(chunks)
    return Buffer.from(`[${chunks.filter((c) => c.length > 0).map((c) => c.toString('utf8')).join(',')}]`)
  }

  async #sse(stream: Stream, from: Position, cursor: string | null, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const base64 = !isText(stream.meta.contentType)
    const headers: Record<string, string> = {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
    }
    if (base64) headers['stream-sse-data-encoding'] = 'base64'
    res.writeHead(200, { ...CORS, ...headers })
    this.#live.add(res)
    let open = true
    let wait: { cancel: () => void } | null = null
    const stop = () => {
      open = false
      wait?.cancel()
    }
    req.once('close', stop)
    res.once('close', stop)
    const deadline = Date.now() + SSE_MAX_MS
    let at = from
    try {
      while (open && !this.#closing) {
        const current = await this.#streams.get(stream.meta.name)
        if (!current) break
        stream = current
        const result = await this.#streams.read(stream, at)
        // Everything read goes in one data event, and each data event is followed by its control.
        const data = this.#body(stream, result.chunks)
        if (stream.json ? data.length > 2 : data.length > 0) {
          const text = base64 ? data.toString('base64') : data.toString('utf8')
          res.write(`event: data\n${sseData(text)}\n`)
        }
        at = result.end
        const done = stream.closed && result.upToDate
        const control: Record<string, unknown> = { streamNextOffset: formatOffset(at) }
        if (done) control.streamClosed = true
        else {
          control.streamCursor = nextCursor(cursor)
          if (result.upToDate) control.upToDate = true
        }
        res.write(`event: control\n${sseData(JSON.stringify(control))}\n`)
        if (done || Date.now() >= deadline) break
        if (!result.upToDate) continue
        const waiting = stream.changed(Math.max(1, deadline - Date.now()))
        wait = waiting
        await waiting.promise
        wait = null
      }
    } finally {
      this.#live.delete(res)
      req.off('close', stop)
      res.end()
    }
  }

  /** End live reads (SSE, long-polls end on their own) before the stores close. */
  close(): void {
    this.#closing = true
    for (const res of this.#live) res.end()
  }
}

/** A repeated PUT asks for the TTL the stream has (a fork that inherited one asked for none). */
function sameTtl(meta: StreamMeta, ttl: { ttlSeconds?: number; expiresAt?: string }): boolean {
  if (meta.fork && !meta.fork.asked.ttl) return ttl.ttlSeconds === undefined && ttl.expiresAt === undefined
  return meta.ttlSeconds === ttl.ttlSeconds && meta.expiresAt === ttl.expiresAt
}

/** A repeated PUT asks for the fork the stream is (or for none, of a stream that is none). */
function sameFork(fork: StreamMeta['fork'], from: string | undefined, offset: string | undefined, sub: number): boolean {
  if (from === undefined) return fork === undefined
  return fork !== undefined && fork.from === from && (offset === undefined || fork.asked.offset === offset) && fork.asked.sub === sub
}

function sameStamp(a: ProducerStamp | undefined, b: ProducerStamp): boolean {
  return a !== undefined && a.id === b.id && a.epoch === b.epoch && a.seq === b.seq
}

/** SSE `data:` lines for a text, one per line of it. */
function sseData(text: string): string {
  return `${text
    .split(/\r\n|\r|\n/)
    .map((line) => `data:${line}`)
    .join('\n')}\n`
}

/** A request handler serving the streams under `options.dir`. */
export async function createHandler(options: HandlerOptions): Promise<StreamHandler> {
  const streams = await Streams.open(options.dir, options.maxOpenStores === undefined ? {} : { maxOpenStores: options.maxOpenStores })
  const subscriptions = await Subscriptions.open(options.dir, streams, options.webhooks ?? false)
  const protocol = new Protocol(streams, subscriptions, options)
  const handler = ((req: IncomingMessage, res: ServerResponse) => {
    void protocol.handle(req, res)
  }) as StreamHandler
  handler.close = async () => {
    protocol.close()
    await subscriptions.close()
    await streams.close()
  }
  return handler
}
