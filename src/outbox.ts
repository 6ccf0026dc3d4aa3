/** The appends of one tick, copied into reusable buffers and handed to the addon in one call. */
import type * as native from '../native'

/** Where an outbox is sent: the native appender of a writer or store. */
export type Submitter = Pick<native.NativeAppender, 'submit'>

/** Payloads back to back in `data`, with their `lengths`: copied already, owned by whoever holds them. */
export interface Packed {
  data: Uint8Array
  lengths: Uint32Array
}

/** A request's payloads: the caller's buffers, or payloads already packed. */
export type Payloads = readonly Uint8Array[] | Packed

/** Payloads of at most this size are copied into shared slabs; larger ones get a buffer each. */
const SLAB_BYTES = 1 << 20
const SLAB_ITEM_MAX = SLAB_BYTES >> 4

/**
 * Copies of the payloads of waiting calls, packed into 1 MiB slabs: a copy costs its bytes
 * and one view, not an ArrayBuffer of its own. Waiting calls start in order, so a slab is
 * freed (by the GC) soon after its last call starts.
 */
export class Slab {
  #chunk = new Uint8Array(0)
  #used = 0

  /** A copy of `bytes`. */
  copy(bytes: Uint8Array): Uint8Array {
    // Not `bytes.slice()`: on a Buffer that is a view, not a copy.
    if (bytes.length > SLAB_ITEM_MAX) return new Uint8Array(bytes)
    if (this.#used + bytes.length > this.#chunk.length) {
      this.#chunk = new Uint8Array(SLAB_BYTES)
      this.#used = 0
    }
    const view = this.#chunk.subarray(this.#used, this.#used + bytes.length)
    view.set(bytes)
    this.#used += bytes.length
    return view
  }
}

/** A copy of the caller's `payloads`, made in `slab`. */
export function pack(payloads: readonly Uint8Array[], slab: Slab): Uint8Array[] {
  return payloads.map((payload) => slab.copy(payload))
}

/** Starting size of the payload buffer; one grown past `KEEP_BYTES` is dropped after a send. */
const DATA_BYTES = 64 << 10
const KEEP_BYTES = 1 << 20

/** Room for at least `needed` elements, keeping the first `used`. */
function grown<T extends Uint8Array | Uint32Array | Float64Array>(array: T, used: number, needed: number, make: (length: number) => T): T {
  if (needed <= array.length) return array
  const bigger = make(Math.max(needed, array.length * 2))
  bigger.set(array.subarray(0, used))
  return bigger
}

/**
 * Requests (one append, one appendBatch) in call order, each under a ticket. Payloads are
 * copied in when added, so callers may reuse their buffers at once, and the addon reads them
 * all from one buffer instead of converting each one. (A batch of `appendSync` entries, packed
 * already, goes to the addon directly.)
 */
export class Outbox {
  #data = new Uint8Array(DATA_BYTES)
  #used = 0
  #lengths = new Uint32Array(256)
  #entries = 0
  /** `(ticket, count)` pairs. */
  #requests = new Float64Array(128)
  #slots = 0
  /** One per request once any request has metadata, else `null`. */
  #metas: Array<native.NativeMeta | undefined> | null = null

  /** Payload bytes waiting to be sent. */
  get bytes(): number {
    return this.#used
  }

  /** Whether nothing is waiting to be sent. */
  get empty(): boolean {
    return this.#slots === 0
  }

  /** Copy in `payloads` (`bytes` in all) as one request under `ticket`. */
  add(ticket: number, payloads: readonly Uint8Array[], bytes: number, meta: native.NativeMeta | undefined): void {
    const count = payloads.length
    this.#data = grown(this.#data, this.#used, this.#used + bytes, (n) => new Uint8Array(n))
    this.#lengths = grown(this.#lengths, this.#entries, this.#entries + count, (n) => new Uint32Array(n))
    this.#requests = grown(this.#requests, this.#slots, this.#slots + 2, (n) => new Float64Array(n))
    for (const payload of payloads) {
      this.#data.set(payload, this.#used)
      this.#used += payload.length
      this.#lengths[this.#entries++] = payload.length
    }
    if (meta !== undefined && this.#metas === null) this.#metas = new Array<native.NativeMeta | undefined>(this.#slots / 2).fill(undefined)
    this.#metas?.push(meta)
    this.#requests[this.#slots++] = ticket
    this.#requests[this.#slots++] = count
  }

  /** The tickets waiting, in order. */
  tickets(): number[] {
    const tickets: number[] = []
    for (let i = 0; i < this.#slots; i += 2) tickets.push(this.#requests[i] ?? 0)
    return tickets
  }

  /** Hand everything to `target` in one call (which copies it), then empty the outbox. If the call throws, nothing is emptied. */
  sendTo(target: Submitter): void {
    target.submit([this.#data.subarray(0, this.#used)], this.#lengths.subarray(0, this.#entries), this.#requests.subarray(0, this.#slots), this.#metas)
    this.clear()
  }

  /** Forget everything waiting. */
  clear(): void {
    if (this.#data.length > KEEP_BYTES) this.#data = new Uint8Array(DATA_BYTES)
    this.#used = 0
    this.#entries = 0
    this.#slots = 0
    this.#metas = null
  }
}
