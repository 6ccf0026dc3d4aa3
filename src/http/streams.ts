/**
 * The streams an HTTP server serves, each a store of its own under one root directory.
 *
 * A stream's directory (named by a hash of its name, so no name reaches the file system) holds
 * `meta.json` (what PUT fixed: content type, TTL or expiry, the fork it starts from), written
 * once before the directory is renamed into place, and `log/`, a store whose entries are the
 * stream's appends. Everything that changes later (data, producer state, `Stream-Seq`,
 * closure) is in the log, in the frame of the append that changed it, so one fdatasync makes
 * an append and its bookkeeping durable together and recovery is an ordinary open.
 *
 * An idle stream costs a small object in memory: its store is opened on demand and closed
 * again when more than `maxOpenStores` are open.
 */
import { createHash, randomBytes } from 'node:crypto'
import { promises as fs } from 'node:fs'
import { join } from 'node:path'

import { PersistError } from '../errors'
import { Store } from '../store'
import { fsyncDir, writeSynced } from './files'
import { decodeMark, encodeMark, type Mark, type ProducerStamp } from './marks'
import { ProducerTable } from './producers'
import { comparePositions, isJson, type Position } from './protocol'

/** What PUT fixes for the life of a stream. */
export interface StreamMeta {
  version: 1
  name: string
  contentType: string
  createdAt: number
  ttlSeconds?: number
  expiresAt?: string
  /** Where a fork starts, and what its PUT asked for (a repeated PUT must ask the same). */
  fork?: { from: string; at: Position; asked: { offset: string | null; sub: number; ttl: boolean } }
}

/** A protocol outcome other than success, with the status it maps to. */
export class StreamError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message)
  }
}

/** One read: the appends' units after a position, and where the reader stands after them. */
export interface ReadResult {
  /** Byte streams: the bytes. JSON streams: each message's JSON text. */
  chunks: Buffer[]
  end: Position
  upToDate: boolean
}

/** An admitted append waiting for the end of the event loop's turn, and who awaits it. */
interface Unsent {
  payload: Buffer
  principal: Buffer | undefined
  resolve: (seq: number) => void
  reject: (error: unknown) => void
}

const noop = (): void => {}

const META = 'meta.json'
const LOG = 'log'
const DELETED = 'deleted'

export class Stream {
  /** Appends acknowledged: the position after the last durable one. */
  tail: Position
  /** A closing append is durable. */
  closed = false
  /** A closing append has been admitted; later appends are refused. */
  closing = false
  softDeleted = false
  lastStreamSeq: string | undefined
  /** The producer append that closed the stream: its retry is a duplicate, not a conflict. */
  closedBy: ProducerStamp | undefined
  readonly producers = new ProducerTable()
  lastAccess = Date.now()
  /** Forks that read through this stream. */
  forks = 0
  /**
   * The last admitted append (it may reject: its own request handles that): a duplicate is
   * acknowledged only once it is durable.
   */
  settled: Promise<unknown> = Promise.resolve()
  /** Appends admitted in this turn of the event loop, not yet handed to the store. */
  unsent: Unsent[] = []
  readonly #waiters = new Set<() => void>()
  store: Store | null = null
  users = 0
  /** The marks of the log have been replayed into this object. */
  replayed = false

  constructor(
    readonly meta: StreamMeta,
    readonly dir: string,
    /** Positions of the stream's own appends start after this many entries. */
    readonly base: number,
  ) {
    this.tail = meta.fork ? { ...meta.fork.at } : { entries: 0, part: 0 }
  }

  /** Resolves once the last admitted append has settled, whichever way. */
  async drained(): Promise<void> {
    await this.settled.then(noop, noop)
  }

  get json(): boolean {
    return isJson(this.meta.contentType)
  }

  /** The position after own entry `seq`. */
  position(seq: number): Position {
    return { entries: this.base + seq, part: 0 }
  }

  /** Resolves when the tail moves or the stream closes or goes, or after `ms`; true if it changed. */
  changed(ms: number): { promise: Promise<boolean>; cancel: () => void } {
    let done!: (changed: boolean) => void
    const promise = new Promise<boolean>((resolve) => (done = resolve))
    const wake = () => finish(true)
    const timer = setTimeout(() => finish(false), ms)
    const finish = (changed: boolean) => {
      clearTimeout(timer)
      this.#waiters.delete(wake)
      done(changed)
    }
    this.#waiters.add(wake)
    return { promise, cancel: () => finish(false) }
  }

  wake(): void {
    for (const wake of [...this.#waiters]) wake()
  }
}

export interface StreamsOptions {
  /** Stores open at once; idle ones beyond this are closed (default 256). */
  maxOpenStores?: number
}

/** Largest read answered at once (whole appends; at least one). */
const MAX_READ_BYTES = 1 << 20
const EMPTY = Buffer.alloc(0)

function dirName(name: string): string {
  return createHash('sha256').update(name).digest('hex').slice(0, 40)
}

export class Streams {
  readonly #root: string
  readonly #streamsDir: string
  readonly #trash: string
  readonly #known = new Map<string, Stream>()
  readonly #loading = new Map<string, Promise<Stream | null>>()
  /** Streams whose store is open, least recently used first. */
  readonly #open = new Set<Stream>()
  /** Streams with unsent appends, and whether their hand-over is scheduled. */
  readonly #unsent = new Set<Stream>()
  #sendScheduled = false
  readonly #maxOpen: number
  #sweeper: NodeJS.Timeout | null = null

  private constructor(root: string, options: StreamsOptions) {
    this.#root = root
    this.#streamsDir = join(root, 'streams')
    this.#trash = join(root, 'trash')
    this.#maxOpen = options.maxOpenStores ?? 256
  }

  /** Open the root (created if missing): every stream's metadata is read, no store is opened. */
  static async open(root: string, options: StreamsOptions = {}): Promise<Streams> {
    const streams = new Streams(root, options)
    await fs.mkdir(streams.#streamsDir, { recursive: true, mode: 0o700 })
    await fs.rm(streams.#trash, { recursive: true, force: true })
    await fs.mkdir(streams.#trash, { recursive: true, mode: 0o700 })
    for (const entry of await fs.readdir(streams.#streamsDir)) {
      if (entry.startsWith('.')) {
        await fs.rm(join(streams.#streamsDir, entry), { recursive: true, force: true })
        continue
      }
      const stream = await streams.#readMeta(join(streams.#streamsDir, entry))
      if (stream) streams.#known.set(stream.meta.name, stream)
    }
    for (const stream of streams.#known.values()) {
      if (stream.meta.fork) {
        const source = streams.#known.get(stream.meta.fork.from)
        if (source) source.forks++
      }
    }
    streams.#sweeper = setInterval(() => void streams.sweep(), 250)
    streams.#sweeper.unref()
    return streams
  }

  async #readMeta(dir: string): Promise<Stream | null> {
    let meta: StreamMeta
    try {
      meta = JSON.parse(await fs.readFile(join(dir, META), 'utf8')) as StreamMeta
    } catch {
      return null
    }
    if (meta.version !== 1 || typeof meta.name !== 'string') return null
    const base = meta.fork ? meta.fork.at.entries + (meta.fork.at.part > 0 ? 1 : 0) : 0
    const stream = new Stream(meta, dir, base)
    stream.softDeleted = await fs
      .access(join(dir, DELETED))
      .then(() => true)
      .catch(() => false)
    return stream
  }

  #expired(stream: Stream, now = Date.now()): boolean {
    const { ttlSeconds, expiresAt } = stream.meta
    if (expiresAt !== undefined && Date.parse(expiresAt) <= now) return true
    return ttlSeconds !== undefined && stream.lastAccess + ttlSeconds * 1000 <= now
  }

  /** Remove expired streams (the server calls this on a timer; reads check it too). */
  async sweep(): Promise<void> {
    const now = Date.now()
    for (const stream of [...this.#known.values()]) {
      if (!stream.softDeleted && this.#expired(stream, now)) await this.remove(stream).catch(() => {})
    }
  }

  /**
   * The stream named `name` if it can be used at once (known, not deleted or expired, its
   * store open), else undefined: then `get` decides. Spares the hot path an await.
   */
  ready(name: string): Stream | undefined {
    const stream = this.#known.get(name)
    if (!stream || stream.softDeleted || !stream.store || this.#expired(stream)) return undefined
    this.#touchOpen(stream)
    return stream
  }

  /** The stream named `name`, loaded (its log replayed once) and with its store open. */
  async get(name: string): Promise<Stream | null> {
    const stream = this.#known.get(name)
    if (!stream || stream.softDeleted) return null
    if (this.#expired(stream)) {
      await this.remove(stream)
      return null
    }
    await this.#ensureOpen(stream)
    return this.#known.get(name) === stream ? stream : null
  }

  /** The names of the streams there are (not deleted). */
  *names(): Iterable<string> {
    for (const [name, stream] of this.#known) if (!stream.softDeleted) yield name
  }

  /** Where a stream ends, or null if there is no such stream. */
  async tailOf(name: string): Promise<Position | null> {
    const stream = await this.get(name)
    return stream ? { ...stream.tail } : null
  }

  /** Append stored-form `payload` to an existing stream, outside any request (a wake event). */
  async appendInternal(name: string, payload: Buffer): Promise<void> {
    const stream = await this.get(name)
    if (!stream) throw new StreamError(404, `no stream ${name}`)
    if (stream.closing) throw new StreamError(409, `${name} is closed`)
    await this.append(stream, payload, {})
  }

  /** Whether a name is taken by a stream that was deleted while forks still read it. */
  isSoftDeleted(name: string): boolean {
    return this.#known.get(name)?.softDeleted === true
  }

  async #ensureOpen(stream: Stream): Promise<void> {
    if (stream.store) {
      this.#touchOpen(stream)
      return
    }
    let loading = this.#loading.get(stream.meta.name)
    if (!loading) {
      loading = this.#load(stream).finally(() => this.#loading.delete(stream.meta.name))
      this.#loading.set(stream.meta.name, loading)
    }
    await loading
  }

  async #load(stream: Stream): Promise<Stream> {
    const store = await Store.open(join(stream.dir, LOG))
    if (!stream.replayed) await this.#replayMarks(stream, store)
    stream.store = store
    this.#touchOpen(stream)
    await this.#evict()
    return stream
  }

  /**
   * Everything but the data is in the marks: replay them once, at the stream's first open, to
   * know the producers, the last Stream-Seq and whether the stream is closed. Reopening after
   * an eviction needs none of it: the stream kept what it learnt.
   */
  async #replayMarks(stream: Stream, store: Store): Promise<void> {
    let last = 0
    for await (const batch of store.replayBatches()) {
      for (let i = 0; i < batch.length; i++) {
        last = batch.sequence(i)
        const mark = decodeMark(batch.principal(i))
        if (mark.producer) stream.producers.record(mark.producer)
        if (mark.streamSeq !== undefined) stream.lastStreamSeq = mark.streamSeq
        if (mark.closed) {
          stream.closed = stream.closing = true
          stream.closedBy = mark.producer
        }
      }
    }
    if (last > 0) stream.tail = stream.position(last)
    stream.replayed = true
  }

  #touchOpen(stream: Stream): void {
    this.#open.delete(stream)
    this.#open.add(stream)
  }

  async #evict(): Promise<void> {
    for (const stream of [...this.#open]) {
      if (this.#open.size <= this.#maxOpen) return
      if (stream.users > 0 || !this.#open.delete(stream)) continue
      await this.#closeStore(stream)
    }
  }

  /** Close a stream's store; `forget` (after a failed append) also drops what it learnt. */
  async #closeStore(stream: Stream, forget = false): Promise<void> {
    // Appends admitted before the close reach the store first, as if handed over at once.
    this.#sendUnsent()
    const store = stream.store
    stream.store = null
    if (store) await store.close()
    stream.wake()
    if (!forget) return
    // The store refused an append: what memory says may be ahead of the log. Start again
    // from the log.
    const fresh = new Stream(stream.meta, stream.dir, stream.base)
    fresh.lastAccess = stream.lastAccess
    fresh.forks = stream.forks
    fresh.softDeleted = stream.softDeleted
    if (this.#known.get(stream.meta.name) === stream) this.#known.set(stream.meta.name, fresh)
    stream.wake()
  }

  /**
   * Create a stream: its metadata and initial append are written in a directory that is
   * renamed into place, so a crash leaves the stream whole or absent.
   */
  async create(meta: StreamMeta, initial: { payload: Buffer | null; mark: Mark }): Promise<Stream> {
    const final = join(this.#streamsDir, dirName(meta.name))
    let seq = 0
    const staging = join(this.#streamsDir, `.${randomBytes(8).toString('hex')}`)
    await fs.mkdir(staging, { mode: 0o700 })
    try {
      await writeSynced(join(staging, META), JSON.stringify(meta))
      // One append at most: no preallocated megabyte to write and trim again.
      const store = await Store.open(join(staging, LOG), { preallocate: false })
      try {
        const principal = encodeMark(initial.mark)
        if (initial.payload !== null || principal) {
          seq = await store.append(initial.payload ?? Buffer.alloc(0), principal ? { principal } : undefined)
        }
      } finally {
        await store.close()
      }
      await fsyncDir(staging)
      await fs.rename(staging, final)
      await fsyncDir(this.#streamsDir)
    } catch (error) {
      await fs.rm(staging, { recursive: true, force: true })
      throw error
    }
    // Left closed until its first use: a new stream costs no open store.
    const stream = (await this.#readMeta(final))!
    if (seq > 0) stream.tail = stream.position(seq)
    if (initial.mark.closed) stream.closed = stream.closing = true
    this.#known.set(meta.name, stream)
    if (meta.fork) {
      const source = this.#known.get(meta.fork.from)
      if (source) source.forks++
    }
    return stream
  }

  /**
   * Delete a stream. One that forks still read is only marked deleted (its name stays taken)
   * until the last of them goes.
   */
  async remove(stream: Stream): Promise<void> {
    if (this.#known.get(stream.meta.name) !== stream) {
      const current = this.#known.get(stream.meta.name)
      if (!current) return
      stream = current
    }
    if (stream.forks > 0) {
      if (!stream.softDeleted) {
        await (await fs.open(join(stream.dir, DELETED), 'w', 0o600)).close()
        await fsyncDir(stream.dir)
        stream.softDeleted = true
        stream.wake()
      }
      return
    }
    this.#known.delete(stream.meta.name)
    this.#open.delete(stream)
    this.#sendUnsent()
    const store = stream.store
    stream.store = null
    stream.softDeleted = true
    stream.wake()
    if (store) await store.close().catch(() => {})
    const gone = join(this.#trash, randomBytes(8).toString('hex'))
    await fs.rename(stream.dir, gone)
    await fsyncDir(this.#streamsDir)
    await fs.rm(gone, { recursive: true, force: true })
    if (stream.meta.fork) {
      const source = this.#known.get(stream.meta.fork.from)
      if (source) {
        source.forks--
        if (source.softDeleted && source.forks === 0) await this.remove(source)
      }
    }
  }

  /** A stream by name for reading through a fork, deleted or not. */
  async #source(name: string): Promise<Stream> {
    const stream = this.#known.get(name)
    if (!stream) throw new StreamError(404, `fork source ${name} is gone`)
    await this.#ensureOpen(stream)
    return this.#known.get(name)!
  }

  /** A deleted-but-forked or live stream's source, by name, for a new fork. */
  async forkSource(name: string): Promise<Stream | null> {
    const stream = this.#known.get(name)
    if (!stream) return null
    if (stream.softDeleted) throw new StreamError(409, 'the source stream was deleted')
    return this.get(name)
  }

  /**
   * Append `payload` (or only a mark: a close with no body) once the caller has checked the
   * protocol's rules. Returns when the append is durable.
   *
   * The appends admitted in one turn of the event loop (the requests of every socket that was
   * readable) are handed to each store together at its end, in admission order: one native
   * hand-over and one wake of the committer for all of them, where each request's own tick
   * would cost one each.
   */
  async append(stream: Stream, payload: Buffer | null, mark: Mark): Promise<Position> {
    if (!stream.store) throw new StreamError(503, 'stream not open')
    const principal = encodeMark(mark)
    stream.users++
    const pending = new Promise<number>((resolve, reject) => {
      stream.unsent.push({ payload: payload ?? EMPTY, principal, resolve, reject })
    })
    stream.settled = pending
    this.#unsent.add(stream)
    if (!this.#sendScheduled) {
      this.#sendScheduled = true
      setImmediate(this.#sendUnsent)
    }
    try {
      const seq = await pending
      const at = stream.position(seq)
      if (comparePositions(at, stream.tail) > 0) stream.tail = at
      if (mark.closed) stream.closed = true
      stream.wake()
      return at
    } catch (error) {
      // The store refuses everything after a failed write: start again from what is on disk.
      await this.#closeStore(stream, true).catch(() => {})
      throw error instanceof PersistError ? error : new StreamError(500, String(error))
    } finally {
      stream.users--
    }
  }

  /** Hand every stream's unsent appends to its store, in order. */
  readonly #sendUnsent = (): void => {
    this.#sendScheduled = false
    for (const stream of this.#unsent) {
      const store = stream.store
      for (const { payload, principal, resolve, reject } of stream.unsent.splice(0)) {
        if (store) store.append(payload, principal ? { principal } : undefined).then(resolve, reject)
        else reject(new StreamError(503, 'stream not open'))
      }
    }
    this.#unsent.clear()
  }

  /**
   * Read from `from` up to the tail, at most about 1 MiB but always at least one append;
   * through fork sources for the positions a fork inherits.
   */
  async read(stream: Stream, from: Position): Promise<ReadResult> {
    const chunks: Buffer[] = []
    let end = from
    let bytes = 0
    const take = (chunk: Buffer, at: Position) => {
      chunks.push(chunk)
      bytes += chunk.length
      end = at
    }
    await this.#readInto(stream, from, stream.tail, take, () => bytes >= MAX_READ_BYTES)
    return { chunks, end, upToDate: comparePositions(end, stream.tail) >= 0 }
  }

  async #readInto(
    stream: Stream,
    from: Position,
    until: Position,
    take: (chunk: Buffer, at: Position) => void,
    full: () => boolean,
  ): Promise<void> {
    const fork = stream.meta.fork
    if (fork && comparePositions(from, fork.at) < 0) {
      const source = await this.#source(fork.from)
      await this.#readInto(source, from, comparePositions(until, fork.at) < 0 ? until : fork.at, take, full)
      if (full()) return
      from = fork.at
    }
    if (comparePositions(from, until) >= 0 || full()) return
    const store = stream.store
    if (!store) throw new StreamError(503, 'stream not open')
    const firstSeq = Math.max(1, from.entries - stream.base + 1)
    stream.users++
    try {
      for await (const batch of store.replayBatches({ from: firstSeq })) {
        for (let i = 0; i < batch.length; i++) {
          const entries = stream.base + batch.sequence(i)
          const skip = entries === from.entries + 1 ? from.part : 0
          if (entries > until.entries) {
            // A fork point inside this append: its first `until.part` units are inherited.
            if (entries === until.entries + 1 && until.part > skip) {
              take(this.#slice(stream, batch.payload(i), skip, until.part), until)
            }
            return
          }
          take(this.#slice(stream, batch.payload(i), skip), { entries, part: 0 })
          if (full()) return
        }
      }
    } finally {
      stream.users--
    }
  }

  /**
   * Units `start` to `end` of an append: bytes of a byte stream; messages of a JSON stream,
   * stored as one JSON array and returned comma-joined without the brackets.
   */
  #slice(stream: Stream, payload: Buffer, start: number, end?: number): Buffer {
    if (!stream.json) return payload.subarray(start, end)
    if (payload.length === 0) return payload
    if (start === 0 && end === undefined) return payload.subarray(1, payload.length - 1)
    const messages = (JSON.parse(payload.toString('utf8')) as unknown[]).slice(start, end)
    return Buffer.from(messages.map((m) => JSON.stringify(m)).join(','))
  }

  /** How many units (bytes, or JSON messages) the append after `entries` holds; null if none. */
  async unitsAfter(stream: Stream, entries: number): Promise<number | null> {
    let got: Buffer | null = null
    const next = { entries: entries + 1, part: 0 }
    const until = comparePositions(next, stream.tail) < 0 ? next : stream.tail
    await this.#readInto(stream, { entries, part: 0 }, until, (chunk) => (got = chunk), () => got !== null)
    if (got === null) return null
    const chunk: Buffer = got
    return stream.json ? (chunk.length === 0 ? 0 : (JSON.parse(`[${chunk.toString('utf8')}]`) as unknown[]).length) : chunk.length
  }

  /** Stop the sweeper and close every store. */
  async close(): Promise<void> {
    if (this.#sweeper) clearInterval(this.#sweeper)
    this.#sweeper = null
    const open = [...this.#open]
    this.#open.clear()
    await Promise.allSettled(open.map((stream) => this.#closeStore(stream)))
    for (const stream of this.#known.values()) stream.wake()
  }

  get root(): string {
    return this.#root
  }
}
