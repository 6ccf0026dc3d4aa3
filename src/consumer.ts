/** Durable consumers: a named, crash-safe position in a store's log, delivered at least once. */
import { type EntryBatch, type WalEntry, deferred, entriesOf } from './batch'
import { type ErrorCode, call, receiver } from './errors'
import type { FollowOptions } from './follow'
import { checkInteger } from './options'

/** A registered consumer, as `store.consumers()` lists it. */
export interface ConsumerInfo {
  name: string
  /** The last sequence it acknowledged (0 when damaged: retention keeps everything for it). */
  position: number
  /** Entries (sequences) after its position: what it has yet to acknowledge. */
  lagEntries: number
  /** Bytes of the log files holding those entries (whole files, so an upper bound). */
  lagBytes: number
  /**
   * Present when its position file cannot be read: the error (`STORE_INCONSISTENT`, its
   * message naming the file). Retention keeps everything for it until `removeConsumer`.
   */
  damaged?: { code: ErrorCode; message: string }
}

/** Records an acknowledgement durably; resolves with the position kept. */
export type Acknowledge = (name: string, sequence: number) => Promise<number>

/** What a consumer reads: a follower of its store from a sequence on. */
type FollowFrom = (from: number, options: Omit<FollowOptions, 'from'>) => AsyncGenerator<EntryBatch, void, undefined>

/**
 * A named cursor over a store's log. `entries()` and `batches()` follow the log from
 * `position + 1`; `ack(sequence)` records that everything up to `sequence` is handled,
 * durably (temp file, fdatasync, rename, directory fsync), after making those entries durable
 * if the sync policy has not yet: a position never passes the durable end of the log. After a
 * crash the consumer resumes after its last acknowledgement: delivery is at-least-once.
 */
export class Consumer {
  /** Its name. */
  readonly name: string
  #position: number
  readonly #acknowledge: Acknowledge
  readonly #follow: FollowFrom
  /** Acknowledgements are written one at a time, in call order. */
  #acking: Promise<unknown> = Promise.resolve()

  /** @internal */
  constructor(name: string, position: number, acknowledge: Acknowledge, follow: FollowFrom) {
    this.name = name
    this.#position = position
    this.#acknowledge = acknowledge
    this.#follow = follow
  }

  /** The last sequence acknowledged. */
  get position(): number {
    return receiver(this, Consumer).#position
  }

  /** The entries after the position, in batches, as the log grows (see `Store.followBatches`). */
  batches(options: Omit<FollowOptions, 'from'> = {}): AsyncGenerator<EntryBatch, void, undefined> {
    return deferred(() => this.#follow(this.#position + 1, options))
  }

  /** {@link Consumer.batches}, one entry at a time. */
  entries(options: Omit<FollowOptions, 'from'> = {}): AsyncGenerator<WalEntry, void, undefined> {
    return entriesOf(() => receiver(this, Consumer).batches(options))
  }

  /**
   * Record, durably, that every entry up to `sequence` is handled; resolves with the position
   * kept (a lower acknowledgement than one already made, by any handle or process, changes
   * nothing). Entries not yet durable are flushed first; a sequence past the store's last is
   * `INVALID_ARGUMENT`; once the store is closed, `CLOSED`.
   */
  ack(sequence: number): Promise<number> {
    return call(() => {
      const upTo = checkInteger('sequence', sequence, 0, Number.MAX_SAFE_INTEGER)
      const acked = this.#acking.then(async () => {
        this.#position = await this.#acknowledge(this.name, upTo)
        return this.#position
      })
      this.#acking = acked.catch(() => undefined)
      return acked
    })
  }
}
