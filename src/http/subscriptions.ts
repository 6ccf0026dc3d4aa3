/**
 * The protocol's reserved subscription API (`<prefix>/__ds/...`): a subscription follows the
 * streams under a prefix that match a glob or are named, and wakes a worker when they have
 * appends it has not acknowledged. A `webhook` subscription POSTs the wake, signed with the
 * server's Ed25519 key (published at `__ds/jwks.json`); a `pull-wake` one appends the wake to a
 * JSON stream and hands it to the first worker that claims it, under a lease. Each wake has a
 * generation: an acknowledgement or release of an older one is refused (`FENCED`), so a slow
 * worker cannot move a cursor a newer one owns.
 *
 * Subscriptions and their acknowledged offsets are published whole (temp file, fdatasync,
 * rename, directory fsync) under `<root>/subscriptions/`; the signing key is `<root>/webhook-key.json`.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, randomBytes, sign } from 'node:crypto'
import { promises as fs } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { isIP } from 'node:net'
import { join } from 'node:path'

import { publish } from './files'
import { formatOffset, respond } from './protocol'
import type { Streams } from './streams'

type Kind = 'webhook' | 'pull-wake'

/** What a path holds to be a request of this API rather than a stream's. */
const API = '/__ds/'

interface Link {
  /** Named in the subscription (explicit), or found by its pattern (glob). */
  explicit: boolean
  acked: string | null
}

interface Wake {
  id: string
  generation: number
  token: string
  holder: string | null
  leaseUntil: number
}

interface Saved {
  id: string
  prefix: string
  base: string
  type: Kind
  pattern: string | null
  explicit: string[]
  webhookUrl: string | null
  wakeStream: string | null
  leaseTtlMs: number
  description: string | null
  /** Each followed stream: its path, whether it is named, and the offset acknowledged. */
  links: [string, boolean, string | null][]
  generation: number
}

class Subscription {
  readonly links = new Map<string, Link>()
  wake: Wake | null = null
  generation: number
  delivering = false

  constructor(readonly saved: Saved) {
    this.generation = saved.generation
    for (const [path, explicit, acked] of saved.links) this.links.set(path, { explicit, acked })
  }
}

/** The subscription API's error codes, as the protocol names them in its JSON error bodies. */
export const SubscriptionErrors = {
  alreadyClaimed: 'ALREADY_CLAIMED',
  bodyTooLarge: 'BODY_TOO_LARGE',
  fenced: 'FENCED',
  internal: 'INTERNAL',
  invalidOffset: 'INVALID_OFFSET',
  invalidRequest: 'INVALID_REQUEST',
  methodNotAllowed: 'METHOD_NOT_ALLOWED',
  nothingPending: 'NOTHING_PENDING',
  notFound: 'NOT_FOUND',
  subscriptionExists: 'SUBSCRIPTION_EXISTS',
  subscriptionNotFound: 'SUBSCRIPTION_NOT_FOUND',
  unauthorized: 'UNAUTHORIZED',
  webhooksDisabled: 'WEBHOOKS_DISABLED',
  webhookUrlRejected: 'WEBHOOK_URL_REJECTED',
} as const

class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message)
  }
}

const DEFAULT_LEASE_MS = 30_000
const MAX_BODY = 64 << 10

/** `*` matches one path segment, `**` any number; other segments match as they are. */
export function globMatch(pattern: string, path: string): boolean {
  const split = (p: string) => p.split('/').filter((s) => s.length > 0)
  const parts = split(pattern)
  const segs = split(path)
  const match = (pi: number, si: number): boolean => {
    if (pi === parts.length) return si === segs.length
    if (parts[pi] === '**') {
      for (let i = si; i <= segs.length; i++) if (match(pi + 1, i)) return true
      return false
    }
    return si < segs.length && (parts[pi] === '*' || parts[pi] === segs[si]) && match(pi + 1, si + 1)
  }
  return match(0, 0)
}

/** Where a webhook may point: https to a public host, or http on this machine (for development). */
export function webhookUrlAllowed(raw: string): boolean {
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    return false
  }
  const host = url.hostname.toLowerCase()
  const loopback = host === 'localhost' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)
  if (url.protocol === 'http:') return loopback
  if (url.protocol !== 'https:' || loopback || isIP(host) === 6 || host.startsWith('[')) return false
  if (isIP(host) === 4) {
    const [a, b] = host.split('.').map(Number)
    if (a === 10 || a === 0 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) || (a === 169 && b === 254) || (a === 100 && b >= 64 && b <= 127)) return false
  }
  return true
}

function json(res: ServerResponse, status: number, body?: unknown): void {
  if (body === undefined) respond(res, status)
  else respond(res, status, { 'content-type': 'application/json' }, JSON.stringify(body))
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > MAX_BODY) throw new ApiError(413, SubscriptionErrors.bodyTooLarge, `body over ${MAX_BODY} bytes`)
    chunks.push(chunk)
  }
  try {
    const value = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as unknown
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value as Record<string, unknown>
  } catch {
    // answered below
  }
  throw new ApiError(400, SubscriptionErrors.invalidRequest, 'the body must be a JSON object')
}

export class Subscriptions {
  readonly #dir: string
  readonly #streams: Streams
  readonly #webhooks: boolean
  readonly #key: KeyObject
  readonly #kid: string
  readonly #all = new Map<string, Subscription>()
  readonly #inflight = new Set<Promise<unknown>>()

  private constructor(dir: string, streams: Streams, webhooks: boolean, key: KeyObject, kid: string) {
    this.#dir = dir
    this.#streams = streams
    this.#webhooks = webhooks
    this.#key = key
    this.#kid = kid
  }

  static async open(root: string, streams: Streams, webhooks: boolean): Promise<Subscriptions> {
    const dir = join(root, 'subscriptions')
    await fs.mkdir(dir, { recursive: true, mode: 0o700 })
    const keyFile = join(root, 'webhook-key.json')
    let stored: { kid: string; pem: string }
    try {
      stored = JSON.parse(await fs.readFile(keyFile, 'utf8')) as { kid: string; pem: string }
    } catch {
      const { privateKey } = generateKeyPairSync('ed25519')
      stored = { kid: `ds_${randomBytes(9).toString('base64url')}`, pem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() }
      await publish(keyFile, JSON.stringify(stored))
    }
    const subscriptions = new Subscriptions(dir, streams, webhooks, createPrivateKey(stored.pem), stored.kid)
    for (const name of await fs.readdir(dir)) {
      if (name.endsWith('.tmp')) await fs.rm(join(dir, name), { force: true })
      else if (name.endsWith('.json')) {
        const saved = JSON.parse(await fs.readFile(join(dir, name), 'utf8')) as Saved
        subscriptions.#all.set(subscriptions.#keyOf(saved.prefix, saved.id), new Subscription(saved))
      }
    }
    return subscriptions
  }

  #keyOf(prefix: string, id: string): string {
    return `${prefix}\0${id}`
  }

  #file(sub: Subscription): string {
    return join(this.#dir, `${createHash('sha256').update(this.#keyOf(sub.saved.prefix, sub.saved.id)).digest('hex').slice(0, 40)}.json`)
  }

  async #save(sub: Subscription): Promise<void> {
    sub.saved.links = [...sub.links].map(([path, link]) => [path, link.explicit, link.acked])
    sub.saved.generation = sub.generation
    await publish(this.#file(sub), JSON.stringify(sub.saved))
  }

  /** Whether a request for `name` is one of this API's (under `<prefix>/__ds/`). */
  static owns(name: string): boolean {
    return name.includes(API)
  }

  /** Answer a request for `name`, one of this API's (see `owns`). */
  async handle(name: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const at = name.indexOf(API)
    const prefix = name.slice(0, at)
    const rest = name.slice(at + API.length).split('/')
    try {
      if (rest.length === 1 && rest[0] === 'jwks.json' && req.method === 'GET') {
        const jwk = createPublicKey(this.#key).export({ format: 'jwk' })
        respond(res, 200, { 'content-type': 'application/jwk-set+json', 'cache-control': 'public, max-age=300' }, JSON.stringify({ keys: [{ ...jwk, kid: this.#kid, alg: 'EdDSA', use: 'sig' }] }))
        return
      }
      if (rest[0] !== 'subscriptions' || rest.length < 2 || rest[1] === '') throw new ApiError(404, SubscriptionErrors.notFound, 'no such API')
      const id = decodeURIComponent(rest[1])
      const action = rest.slice(2)
      const base = `http://${req.headers.host ?? 'localhost'}${prefix}`
      if (action.length === 0) {
        if (req.method === 'PUT') return await this.#put(prefix, base, id, req, res)
        const sub = this.#get(prefix, id)
        if (req.method === 'GET') return json(res, 200, await this.#describe(sub))
        if (req.method === 'DELETE') {
          this.#all.delete(this.#keyOf(prefix, id))
          await fs.rm(this.#file(sub), { force: true })
          return json(res, 204)
        }
        throw new ApiError(405, SubscriptionErrors.methodNotAllowed, 'GET, PUT or DELETE')
      }
      const sub = this.#get(prefix, id)
      switch (`${req.method} ${action[0]}`) {
        case 'POST streams': {
          const body = await readJson(req)
          const paths = Array.isArray(body.streams) ? body.streams.filter((s): s is string => typeof s === 'string') : []
          for (const path of paths) await this.#link(sub, path, true)
          await this.#save(sub)
          return json(res, 204)
        }
        case 'DELETE streams': {
          const path = decodeURIComponent(action.slice(1).join('/'))
          const link = sub.links.get(path)
          if (link?.explicit) {
            if (sub.saved.pattern !== null && globMatch(sub.saved.pattern, path)) link.explicit = false
            else sub.links.delete(path)
          }
          await this.#save(sub)
          return json(res, 204)
        }
        case 'POST callback':
        case 'POST ack':
          return json(res, 200, await this.#ack(sub, req))
        case 'POST claim':
          return json(res, 200, await this.#claim(sub, req))
        case 'POST release':
          await this.#release(sub, req)
          return json(res, 204)
        default:
          throw new ApiError(404, SubscriptionErrors.notFound, 'no such API')
      }
    } catch (error) {
      if (error instanceof ApiError) json(res, error.status, { error: { code: error.code, message: error.message, ...error.extra } })
      else json(res, 500, { error: { code: SubscriptionErrors.internal, message: 'internal error' } })
    }
  }

  #get(prefix: string, id: string): Subscription {
    const sub = this.#all.get(this.#keyOf(prefix, id))
    if (!sub) throw new ApiError(404, SubscriptionErrors.subscriptionNotFound, `no subscription ${id}`)
    return sub
  }

  async #put(prefix: string, base: string, id: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readJson(req)
    const type = body.type
    if (type !== 'webhook' && type !== 'pull-wake') throw new ApiError(400, SubscriptionErrors.invalidRequest, "type is 'webhook' or 'pull-wake'")
    const pattern = typeof body.pattern === 'string' ? body.pattern : null
    const explicit = Array.isArray(body.streams) ? body.streams.filter((s): s is string => typeof s === 'string') : []
    if (pattern === null && explicit.length === 0) throw new ApiError(400, SubscriptionErrors.invalidRequest, 'a pattern or streams')
    const webhook = body.webhook as { url?: unknown } | undefined
    let webhookUrl: string | null = null
    if (type === 'webhook') {
      if (!this.#webhooks) throw new ApiError(400, SubscriptionErrors.webhooksDisabled, 'this server does not send webhooks')
      if (typeof webhook?.url !== 'string' || !webhookUrlAllowed(webhook.url)) {
        throw new ApiError(400, SubscriptionErrors.webhookUrlRejected, 'webhook.url must be https to a public host, or http on this machine')
      }
      webhookUrl = webhook.url
    }
    const wakeStream = type === 'pull-wake' ? (typeof body.wake_stream === 'string' ? body.wake_stream : null) : null
    if (type === 'pull-wake' && wakeStream === null) throw new ApiError(400, SubscriptionErrors.invalidRequest, 'a pull-wake subscription needs wake_stream')
    const leaseTtlMs = typeof body.lease_ttl_ms === 'number' && Number.isSafeInteger(body.lease_ttl_ms) && body.lease_ttl_ms > 0 ? body.lease_ttl_ms : DEFAULT_LEASE_MS
    const description = typeof body.description === 'string' ? body.description : null
    const saved: Saved = { id, prefix, base, type, pattern, explicit, webhookUrl, wakeStream, leaseTtlMs, description, links: [], generation: 0 }
    const existing = this.#all.get(this.#keyOf(prefix, id))
    if (existing) {
      const same = (a: Saved) => JSON.stringify([a.type, a.pattern, [...a.explicit].sort(), a.webhookUrl, a.wakeStream, a.leaseTtlMs, a.description])
      if (same(existing.saved) !== same(saved)) throw new ApiError(409, SubscriptionErrors.subscriptionExists, 'a subscription with this id and another configuration exists')
      return json(res, 200, await this.#describe(existing))
    }
    const sub = new Subscription(saved)
    // What is there now is not pending: the subscription follows appends from here on.
    for (const path of explicit) await this.#link(sub, path, true)
    if (pattern !== null) {
      for (const name of this.#streams.names()) {
        const path = name.startsWith(`${prefix}/`) ? name.slice(prefix.length + 1) : null
        if (path !== null && globMatch(pattern, path)) await this.#link(sub, path, false)
      }
    }
    this.#all.set(this.#keyOf(prefix, id), sub)
    await this.#save(sub)
    json(res, 201, await this.#describe(sub))
  }

  /** Follow `path` from its current tail (a stream linked later by its pattern: from its start). */
  async #link(sub: Subscription, path: string, explicit: boolean): Promise<void> {
    const link = sub.links.get(path)
    if (link) {
      link.explicit ||= explicit
      return
    }
    const tail = await this.#streams.tailOf(`${sub.saved.prefix}/${path}`)
    sub.links.set(path, { explicit, acked: tail === null ? null : formatOffset(tail) })
  }

  async #streamInfos(sub: Subscription) {
    const infos = []
    for (const [path, link] of sub.links) {
      const tail = await this.#streams.tailOf(`${sub.saved.prefix}/${path}`)
      const tailOffset = tail === null ? null : formatOffset(tail)
      infos.push({
        path,
        link_type: link.explicit ? 'explicit' : 'glob',
        acked_offset: link.acked,
        tail_offset: tailOffset,
        has_pending: tailOffset !== null && (tail!.entries > 0 || tail!.part > 0) && (link.acked === null || tailOffset > link.acked),
      })
    }
    return infos
  }

  async #describe(sub: Subscription) {
    const { id, type, pattern, webhookUrl, wakeStream, leaseTtlMs, description, prefix, base } = sub.saved
    const out: Record<string, unknown> = { id, type, pattern, lease_ttl_ms: leaseTtlMs, description, streams: await this.#streamInfos(sub) }
    if (type === 'webhook') {
      out.webhook = { url: webhookUrl, signing: { alg: 'ed25519', kid: this.#kid, jwks_url: `${base}/__ds/jwks.json` } }
    }
    if (wakeStream !== null) out.wake_stream = wakeStream
    void prefix
    return out
  }

  /** A stream changed (created, appended to, closed): wake the subscriptions that follow it. */
  changed(name: string): void {
    for (const sub of this.#all.values()) {
      const prefix = `${sub.saved.prefix}/`
      if (!name.startsWith(prefix)) continue
      const path = name.slice(prefix.length)
      if (!sub.links.has(path)) {
        if (sub.saved.pattern === null || !globMatch(sub.saved.pattern, path)) continue
        // A stream the pattern finds after the subscription was made: everything in it is new.
        sub.links.set(path, { explicit: false, acked: null })
      }
      this.#track(this.#wake(sub))
    }
  }

  #track(work: Promise<unknown>): void {
    const done = work.catch(() => {}).finally(() => this.#inflight.delete(done))
    this.#inflight.add(done)
  }

  #newWake(sub: Subscription): Wake {
    sub.generation++
    sub.wake = { id: `w_${randomBytes(9).toString('base64url')}`, generation: sub.generation, token: randomBytes(24).toString('base64url'), holder: null, leaseUntil: 0 }
    return sub.wake
  }

  async #wake(sub: Subscription): Promise<void> {
    if (sub.wake !== null || sub.delivering) return
    const streams = await this.#streamInfos(sub)
    if (!streams.some((s) => s.has_pending)) return
    const wake = this.#newWake(sub)
    await this.#save(sub)
    if (sub.saved.type === 'pull-wake') {
      const event = { subscription_id: sub.saved.id, wake_id: wake.id, generation: wake.generation, streams: streams.filter((s) => s.has_pending).map((s) => s.path) }
      await this.#streams.appendInternal(`${sub.saved.prefix}/${sub.saved.wakeStream}`, Buffer.from(JSON.stringify([event])))
      return
    }
    sub.delivering = true
    try {
      const body = JSON.stringify({
        subscription_id: sub.saved.id,
        wake_id: wake.id,
        generation: wake.generation,
        callback_url: `${sub.saved.base}/__ds/subscriptions/${encodeURIComponent(sub.saved.id)}/callback`,
        callback_token: wake.token,
        streams,
      })
      const t = Math.floor(Date.now() / 1000)
      const signature = sign(null, Buffer.from(`${t}.${body}`), this.#key).toString('base64url')
      const res = await fetch(sub.saved.webhookUrl!, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'webhook-signature': `t=${t},kid=${this.#kid},ed25519=${signature}` },
        body,
        redirect: 'error',
        signal: AbortSignal.timeout(30_000),
      })
      const answer = (await res.json().catch(() => ({}))) as { done?: unknown }
      // A worker that answers `done` has handled the wake: its streams are acknowledged to
      // the tails it was shown.
      if (res.ok && answer.done === true && sub.wake === wake) {
        for (const s of streams) {
          const link = sub.links.get(s.path)
          if (link && s.tail_offset !== null && (link.acked === null || s.tail_offset > link.acked)) link.acked = s.tail_offset
        }
        sub.wake = null
        await this.#save(sub)
      }
    } finally {
      sub.delivering = false
    }
  }

  #current(sub: Subscription, body: Record<string, unknown>, req: IncomingMessage): Wake {
    const wake = sub.wake
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1]
    if (wake === null || body.wake_id !== wake.id || body.generation !== wake.generation) throw new ApiError(409, SubscriptionErrors.fenced, 'this wake is no longer current')
    if (token !== wake.token) throw new ApiError(401, SubscriptionErrors.unauthorized, 'the bearer token of the wake is required')
    return wake
  }

  async #ack(sub: Subscription, req: IncomingMessage) {
    const body = await readJson(req)
    this.#current(sub, body, req)
    const acks = Array.isArray(body.acks) ? (body.acks as { stream?: unknown; offset?: unknown }[]) : []
    for (const ack of acks) {
      if (typeof ack.stream !== 'string' || typeof ack.offset !== 'string') throw new ApiError(400, SubscriptionErrors.invalidRequest, 'an ack is { stream, offset }')
      const link = sub.links.get(ack.stream)
      if (!link) throw new ApiError(400, SubscriptionErrors.invalidRequest, `${ack.stream} is not followed`)
      if (link.acked !== null && ack.offset < link.acked) throw new ApiError(409, SubscriptionErrors.invalidOffset, 'an ack may not move the cursor back')
      link.acked = ack.offset
    }
    if (body.done === true) sub.wake = null
    await this.#save(sub)
    const pending = (await this.#streamInfos(sub)).some((s) => s.has_pending)
    if (pending && sub.wake === null) this.#track(this.#wake(sub))
    return { ok: true, next_wake: pending }
  }

  async #claim(sub: Subscription, req: IncomingMessage) {
    const body = await readJson(req)
    const worker = typeof body.worker === 'string' ? body.worker : null
    if (worker === null) throw new ApiError(400, SubscriptionErrors.invalidRequest, 'a claim names its worker')
    const now = Date.now()
    let wake = sub.wake
    if (wake !== null && wake.holder !== null && wake.leaseUntil > now && wake.holder !== worker) {
      throw new ApiError(409, SubscriptionErrors.alreadyClaimed, 'another worker holds this wake', { current_holder: wake.holder })
    }
    const streams = await this.#streamInfos(sub)
    if (wake === null || (wake.holder !== null && wake.leaseUntil <= now)) {
      if (!streams.some((s) => s.has_pending)) throw new ApiError(409, SubscriptionErrors.nothingPending, 'no stream has unacknowledged appends')
      wake = this.#newWake(sub)
      await this.#save(sub)
    }
    wake.holder = worker
    wake.leaseUntil = now + sub.saved.leaseTtlMs
    return { wake_id: wake.id, generation: wake.generation, token: wake.token, lease_ttl_ms: sub.saved.leaseTtlMs, streams }
  }

  async #release(sub: Subscription, req: IncomingMessage): Promise<void> {
    const body = await readJson(req)
    const wake = this.#current(sub, body, req)
    wake.holder = null
    wake.leaseUntil = 0
  }

  /** Wait for wakes being delivered. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.#inflight])
  }
}
