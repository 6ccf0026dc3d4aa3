/** Durable consumers: a named, crash-safe position in a store's log, delivered at least once. */
import type * as native from '../native'

import { type EntryBatch, type WalEntry, entriesOf } from './batch'
import { call } from './errors'
import type { FollowOptions } from './follow'
import { checkInteger } from './options'

/** A registered consumer, as `store.consumers()` lists it. */
export interface ConsumerInfo {
  name: string
  /** The last sequence it acknowledged. */
  position: number
  /** Entries (sequences) after its position: what it has yet to acknowledge. */
  lagEntries: number
  /** Bytes of the log files holding those entries (whole files, so an upper bound). */
  lagBytes: number
}

/** What a consumer reads: a follower of its store from a sequence on. */
type FollowFrom = (from: number, options: Omit<FollowOptions, 'from'>) => AsyncGenerator<EntryBatch, void, undefined>

/**
 * A named cursor over a store's log. `entries()` and `batches()` follow the log from
 * `position + 1`; `ack(sequence)` records that everything up to `sequence` is handled,
 * durably (temp file, fdatasync, rename, directory fsync). After a crash the consumer resumes
 * after its last acknowledgement: delivery is at-least-once.
 */
export class Consumer {
  /** Its name. */
  readonly name: string
  #position: number
  readonly #native: native.NativeConsumers
  readonly #follow: FollowFrom
  /** Acknowledgements are written one at a time, in call order. */
  #acking: Promise<unknown> = Promise.resolve()

  /** @internal */
  constructor(name: string, position: number, consumers: native.NativeConsumers, follow: FollowFrom) {
    this.name = name
    this.#position = position
    this.#native = consumers
    this.#follow = follow
  }

  /** The last sequence acknowledged. */
  get position(): number {
    return this.#position
  }

  /** The entries after the position, in batches, as the log grows (see `Store.followBatches`). */
  batches(options: Omit<FollowOptions, 'from'> = {}): AsyncGenerator<EntryBatch, void, undefined> {
    return this.#follow(this.#position + 1, options)
  }

  /** {@link Consumer.batches}, one entry at a time. */
  entries(options: Omit<FollowOptions, 'from'> = {}): AsyncGenerator<WalEntry, void, undefined> {
    return entriesOf(this.batches(options))
  }

  /**
   * Record, durably, that every entry up to `sequence` is handled; resolves with the position
   * kept (a lower acknowledgement than one already made changes nothing).
   */
  ack(sequence: number): Promise<number> {
    return call(() => {
      const upTo = checkInteger('sequence', sequence, 0, Number.MAX_SAFE_INTEGER)
      const acked = this.#acking.then(async () => {
        this.#position = await this.#native.ack(this.name, upTo)
        return this.#position
      })
      this.#acking = acked.catch(() => undefined)
      return acked
    })
  }
}
