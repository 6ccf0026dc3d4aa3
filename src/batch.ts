/** Batches of entries as they cross from the engine: one buffer, and the fields as numbers. */
import * as native from '../native'

import { call, guarded, receiver } from './errors'
import { disposable } from './dispose'
import { type Hlc, type Origin, checkInteger, checkObject } from './options'

/** One entry read back. */
export interface WalEntry {
  sequence: number
  hlc: Hlc
  origin: Origin
  principal: Buffer | null
  payload: Buffer
}

// Numbers per entry in a chunk, and their positions, as the addon packs them: the doubles
// from `metaAt`, the 32-bit integers from `fieldsAt`, both in the chunk's buffer.
const {
  metaFields: META_FIELDS,
  sequence: SEQUENCE,
  hlcSeconds: HLC_SECONDS,
  sourceNode: SOURCE_NODE,
  sourceSeq: SOURCE_SEQ,
  offset: OFFSET,
  u32Fields: U32_FIELDS,
  payloadStart: PAYLOAD_START,
  payloadLen: PAYLOAD_LEN,
  hlcSubseconds: HLC_SUBSECONDS,
  principalLen: PRINCIPAL_LEN,
  storedLen: STORED_LEN,
  flags: FLAGS,
  noPrincipal: NO_PRINCIPAL,
  flagWatermark: FLAG_WATERMARK,
  flagCompressed: FLAG_COMPRESSED,
} = native.chunkLayout()

/**
 * A Buffer made as Node makes its own (its internal `FastBuffer`): a Uint8Array subclass whose
 * prototype is `Buffer.prototype`, so it is a Buffer in every respect (`Buffer.isBuffer`,
 * `instanceof`, every method, `constructor`). `buffer.subarray` builds the same view through
 * the species protocol and `Buffer.from`'s argument checks: 130 ns a view against 55 on this
 * machine (`node bench/probes/views.mjs`), most of what a replay loop pays per entry.
 */
class View extends Uint8Array {}
Object.setPrototypeOf(View.prototype, Buffer.prototype)
Object.defineProperty(View.prototype, 'constructor', { value: Buffer, writable: true, configurable: true })

/**
 * Up to 4096 entries (about 4 MiB) read in one native call. Accessors take the entry's index and return
 * views into one shared buffer (no copies); `entry(i)` builds a plain object when one is wanted.
 * The views stay valid as long as you keep them.
 */
export class EntryBatch {
  /** The chunk's memory (a view keeps it, and so the pooled buffer behind it, alive). */
  readonly #memory: ArrayBuffer
  readonly #base: number
  readonly #meta: Float64Array
  readonly #fields: Uint32Array
  /** How many entries. */
  readonly length: number

  /** @internal */
  constructor(chunk: native.NativeChunk) {
    const { data, count, metaAt, fieldsAt } = chunk
    // The addon hands over its own 8-aligned memory; a runtime that copies it (Electron)
    // may not keep the alignment a Float64Array view needs.
    const bytes = (data.byteOffset + metaAt) % 8 === 0 ? data : Buffer.from(data)
    this.#memory = bytes.buffer as ArrayBuffer
    this.#base = bytes.byteOffset
    this.#meta = new Float64Array(this.#memory, this.#base + metaAt, count * META_FIELDS)
    this.#fields = new Uint32Array(this.#memory, this.#base + fieldsAt, count * U32_FIELDS)
    this.length = count
  }

  #double(i: number, field: number): number {
    return this.#meta[i * META_FIELDS + field] ?? 0
  }

  #u32(i: number, field: number): number {
    return this.#fields[i * U32_FIELDS + field] ?? 0
  }

  // Each accessor checks its `this` (`receiver`): a hot path, so one `instanceof` and no closure.
  sequence(i: number): number {
    return receiver(this, EntryBatch).#double(i, SEQUENCE)
  }

  hlc(i: number): Hlc {
    const self = receiver(this, EntryBatch)
    return { seconds: self.#double(i, HLC_SECONDS), subseconds: self.#u32(i, HLC_SUBSECONDS) }
  }

  origin(i: number): Origin {
    const self = receiver(this, EntryBatch)
    const node = self.#double(i, SOURCE_NODE)
    return node < 0 ? { kind: 'local' } : { kind: 'replicated', sourceNodeId: node, sourceSeq: self.#double(i, SOURCE_SEQ) }
  }

  principal(i: number): Buffer | null {
    const self = receiver(this, EntryBatch)
    const len = self.#u32(i, PRINCIPAL_LEN)
    if (len === NO_PRINCIPAL) return null
    return self.#view(self.#u32(i, PAYLOAD_START) - len, len)
  }

  payload(i: number): Buffer {
    const self = receiver(this, EntryBatch)
    return self.#view(self.#u32(i, PAYLOAD_START), self.#u32(i, PAYLOAD_LEN))
  }

  /** `length` bytes from `start` of the chunk, as a Buffer sharing its memory. */
  #view(start: number, length: number): Buffer {
    return new View(this.#memory, this.#base + start, length) as Buffer
  }

  /** Offset of the entry's frame in its file. */
  offset(i: number): number {
    return receiver(this, EntryBatch).#double(i, OFFSET)
  }

  /** Payload length as stored (compressed or not). */
  storedLength(i: number): number {
    return receiver(this, EntryBatch).#u32(i, STORED_LEN)
  }

  /** Whether the entry is a checkpoint watermark (only `dump` asks for those). */
  watermark(i: number): boolean {
    return (receiver(this, EntryBatch).#u32(i, FLAGS) & FLAG_WATERMARK) !== 0
  }

  /** Whether the payload was stored zstd-compressed. */
  compressed(i: number): boolean {
    return (receiver(this, EntryBatch).#u32(i, FLAGS) & FLAG_COMPRESSED) !== 0
  }

  entry(i: number): WalEntry {
    const self = receiver(this, EntryBatch)
    return { sequence: self.sequence(i), hlc: self.hlc(i), origin: self.origin(i), principal: self.principal(i), payload: self.payload(i) }
  }
}

/** What one native read of entries returns at most. */
export const BATCH_ENTRIES = 4096
export const BATCH_BYTES = 4 << 20

/** A native source of chunks, read ahead: a WAL reader or a store's replay. */
export interface ChunkSource {
  nextChunk(maxEntries: number, maxBytes: number): Promise<native.NativeChunk>
  /** A chunk read ahead already, or `null` if none is ready yet. */
  takeChunk(): native.NativeChunk | null
  close(): void
}

/**
 * Yield every batch of a native chunk source, then release it. The source reads ahead on a
 * thread of its own while the caller works, and a chunk it has ready is taken at once.
 */
export async function* batchesOf(source: ChunkSource): AsyncGenerator<EntryBatch, void, undefined> {
  const read = (): Promise<native.NativeChunk> => call(() => source.nextChunk(BATCH_ENTRIES, BATCH_BYTES))
  let yielded = false
  try {
    for (;;) {
      let chunk = guarded(() => source.takeChunk()) ?? (await read())
      // The read-ahead may have found the end before the caller was done with the last batch,
      // which may have appended more: look again, as a read made now would.
      if (chunk.count === 0 && yielded) chunk = await read()
      if (chunk.count === 0) return
      yielded = true
      yield new EntryBatch(chunk)
    }
  } finally {
    source.close()
  }
}

/**
 * Yield every entry of a stream of batches. Given a function that makes the stream (a method
 * of its caller, brand-checked with `receiver`), it calls it at the first `next()`, so what it
 * throws (a wrong `this`, a bad option) rejects there, translated, as a generator's failure must.
 */
export function entriesOf(batches: AsyncIterable<EntryBatch> | (() => AsyncIterable<EntryBatch>)): AsyncGenerator<WalEntry, void, undefined> {
  return disposable(
    (async function* () {
      for await (const batch of typeof batches === 'function' ? deferred(batches) : batches) {
        for (let i = 0; i < batch.length; i++) yield batch.entry(i)
      }
    })(),
  )
}

/**
 * The items of the stream `make()` returns, calling it at the first `next()`: what it throws
 * rejects that call, translated. Disposable (`await using`), as every iterator handed out is.
 */
export function deferred<T>(make: () => AsyncIterable<T>): AsyncGenerator<T, void, undefined> {
  return disposable(
    (async function* () {
      yield* guarded(make)
    })(),
  )
}

/** Options of {@link WalReader.entries} and {@link Store.replay}. */
export interface EntriesOptions {
  /** First sequence to yield (default: the first there is). */
  from?: number
}

export function fromOption(options: unknown): number {
  return checkInteger('from', checkObject('options', options, ['from']).from ?? 0, 0, Number.MAX_SAFE_INTEGER)
}
