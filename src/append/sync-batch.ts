/** `appendSync` entries, gathered into one buffer until handed to the committer. */
import type { Packed } from '../outbox'

/** `appendSync` hands its entries to the committer in batches of this many, or this many bytes. */
const SYNC_BATCH_ENTRIES = 1024
const SYNC_BATCH_BYTES = 1 << 20

/**
 * `appendSync` entries not yet handed to the committer, copied at the call into one buffer, so
 * a caller may reuse, change or transfer its buffer as soon as the call returns.
 */
export class SyncBatch {
  #data = new Uint8Array(64 << 10)
  #lengths = new Uint32Array(SYNC_BATCH_ENTRIES)
  #count = 0
  #bytes = 0

  get count(): number {
    return this.#count
  }

  get full(): boolean {
    return this.#count >= SYNC_BATCH_ENTRIES || this.#bytes >= SYNC_BATCH_BYTES
  }

  add(payload: Uint8Array): void {
    if (this.#bytes + payload.length > this.#data.length) {
      const bigger = new Uint8Array(Math.max(this.#bytes + payload.length, this.#data.length * 2))
      bigger.set(this.#data.subarray(0, this.#bytes))
      this.#data = bigger
    }
    this.#data.set(payload, this.#bytes)
    this.#bytes += payload.length
    this.#lengths[this.#count++] = payload.length
  }

  /** The entries gathered, as views valid until the next `add` unless {@link SyncBatch.release}d; the batch is emptied. */
  take(): Packed {
    const taken = { data: this.#data.subarray(0, this.#bytes), lengths: this.#lengths.subarray(0, this.#count) }
    this.#count = 0
    this.#bytes = 0
    return taken
  }

  /** Give the buffers behind the last `take` to its holder (a batch that must wait keeps them, uncopied); later entries go to new ones. */
  release(): void {
    this.#data = new Uint8Array(this.#data.length)
    this.#lengths = new Uint32Array(SYNC_BATCH_ENTRIES)
  }
}
