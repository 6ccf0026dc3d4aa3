/** Batches of entries as they cross from the engine: one buffer, and the fields as numbers. */
import type * as native from '../native'

import { call, invalid } from './errors'
import { type Hlc, type Origin, checkInteger, isObject } from './options'

/** One entry read back. */
export interface WalEntry {
  sequence: number
  hlc: Hlc
  origin: Origin
  principal: Buffer | null
  payload: Buffer
}

// Field positions per entry in a chunk's meta array (see crates/node/src/convert.rs).
const FIELDS = 12
const SEQUENCE = 0
const HLC_SECONDS = 1
const HLC_SUBSECONDS = 2
const SOURCE_NODE = 3
const SOURCE_SEQ = 4
const PRINCIPAL_START = 5
const PRINCIPAL_LEN = 6
const PAYLOAD_START = 7
const PAYLOAD_LEN = 8
const OFFSET = 9
const STORED_LEN = 10
const FLAGS = 11

/**
 * Up to a thousand entries read in one native call. Accessors take the entry's index and return
 * views into one shared buffer (no copies); `entry(i)` builds a plain object when one is wanted.
 * The views stay valid as long as you keep them.
 */
export class EntryBatch {
  readonly #data: Buffer
  readonly #meta: Float64Array
  /** How many entries. */
  readonly length: number

  /** @internal */
  constructor(chunk: native.NativeChunk) {
    this.#data = chunk.data
    this.#meta = chunk.meta
    this.length = chunk.count
  }

  #field(i: number, field: number): number {
    return this.#meta[i * FIELDS + field] ?? 0
  }

  sequence(i: number): number {
    return this.#field(i, SEQUENCE)
  }

  hlc(i: number): Hlc {
    return { seconds: this.#field(i, HLC_SECONDS), subseconds: this.#field(i, HLC_SUBSECONDS) }
  }

  origin(i: number): Origin {
    const node = this.#field(i, SOURCE_NODE)
    return node < 0 ? { kind: 'local' } : { kind: 'replicated', sourceNodeId: node, sourceSeq: this.#field(i, SOURCE_SEQ) }
  }

  principal(i: number): Buffer | null {
    const start = this.#field(i, PRINCIPAL_START)
    return start < 0 ? null : this.#data.subarray(start, start + this.#field(i, PRINCIPAL_LEN))
  }

  payload(i: number): Buffer {
    const start = this.#field(i, PAYLOAD_START)
    return this.#data.subarray(start, start + this.#field(i, PAYLOAD_LEN))
  }

  /** Offset of the entry's frame in its file. */
  offset(i: number): number {
    return this.#field(i, OFFSET)
  }

  /** Payload length as stored (compressed or not). */
  storedLength(i: number): number {
    return this.#field(i, STORED_LEN)
  }

  /** Whether the entry is a checkpoint watermark (only `dump` asks for those). */
  watermark(i: number): boolean {
    return (this.#field(i, FLAGS) & 1) !== 0
  }

  /** Whether the payload was stored zstd-compressed. */
  compressed(i: number): boolean {
    return (this.#field(i, FLAGS) & 2) !== 0
  }

  entry(i: number): WalEntry {
    return { sequence: this.sequence(i), hlc: this.hlc(i), origin: this.origin(i), principal: this.principal(i), payload: this.payload(i) }
  }
}

/** What one native read of entries returns at most. */
export const BATCH_ENTRIES = 1024
export const BATCH_BYTES = 4 << 20

/** A native source of chunks: a WAL reader or a store's replay. */
export interface ChunkSource {
  nextChunk(maxEntries: number, maxBytes: number): Promise<native.NativeChunk>
  close(): void
}

/** Yield every batch of a native chunk source, then release it. */
export async function* batchesOf(source: ChunkSource): AsyncGenerator<EntryBatch, void, undefined> {
  try {
    for (;;) {
      const chunk = await call(() => source.nextChunk(BATCH_ENTRIES, BATCH_BYTES))
      if (chunk.count === 0) return
      yield new EntryBatch(chunk)
    }
  } finally {
    source.close()
  }
}

/** Yield every entry of a stream of batches. */
export async function* entriesOf(batches: AsyncIterable<EntryBatch>): AsyncGenerator<WalEntry, void, undefined> {
  for await (const batch of batches) {
    for (let i = 0; i < batch.length; i++) yield batch.entry(i)
  }
}

/** Options of {@link WalReader.entries} and {@link Store.replay}. */
export interface EntriesOptions {
  /** First sequence to yield (default: the first there is). */
  from?: number
}

export function fromOption(options: unknown): number {
  if (!isObject(options)) throw invalid('options must be an object')
  return checkInteger('from', options.from ?? 0, 0, Number.MAX_SAFE_INTEGER)
}
