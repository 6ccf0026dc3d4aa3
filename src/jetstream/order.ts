/**
 * A node's shipments put back in sequence order. A shipper keeps several publishes in flight,
 * so the stream may store shipment k + 1 before k (k's publish failed and was retried after a
 * reconnect). Each shipment names `after`: every entry of its node up to there was stored
 * before it. A receiver reading the stream in order therefore knows, for each shipment:
 * - it continues what was taken (`first <= have + 1`): take it, then any held one it unblocks;
 * - it starts further on, but `after <= have`: the entries between were published beside it
 *   and may still come: hold it (at most {@link HELD_LIMIT});
 * - `after > have`: entries stored before it were never seen: they are gone from the stream
 *   (its age or size limits): `REMOTE_INCOMPLETE`.
 */
import { PersistError } from '../errors'
import type { Range } from './remote'

/** Shipments held for a hole at most: far more than a shipper ever has in flight. */
const HELD_LIMIT = 256

/** A shipment and what the receiver keeps with it. */
export interface Placed<T> extends Range {
  item: T
}

/** One node's shipments in order (see the module documentation). */
export class InOrder<T> {
  #have: number | null
  readonly #held: Array<Placed<T>> = []
  readonly #where: string

  /** `have`: the node's last sequence already taken, or `null` to start at the first shipment's `after`. */
  constructor(have: number | null, where: string) {
    this.#have = have
    this.#where = where
  }

  /** The shipments held for a hole, lowest first. */
  get held(): ReadonlyArray<Placed<T>> {
    return this.#held
  }

  /** Take the next shipment in stream order; returns the shipments that now continue the log. */
  offer(shipment: Placed<T>): Array<Placed<T>> {
    const have = this.#have ?? shipment.after
    this.#have = have
    if (shipment.last <= have) return []
    if (shipment.after > have) {
      throw new PersistError('REMOTE_INCOMPLETE', `node ${shipment.node}'s entries ${have + 1} to ${shipment.after} are missing from ${this.#where}`)
    }
    if (shipment.first > have + 1) {
      if (this.#held.length >= HELD_LIMIT) {
        throw new PersistError('REMOTE_INCOMPLETE', `node ${shipment.node}'s entry ${have + 1} is missing from ${this.#where}: ${HELD_LIMIT} later shipments wait for it`)
      }
      this.#held.push(shipment)
      this.#held.sort((a, b) => a.first - b.first)
      return []
    }
    const ready = [shipment]
    this.#have = shipment.last
    while (this.#held.length > 0 && (this.#held[0]?.first ?? Infinity) <= this.#have + 1) {
      const next = this.#held.shift() as Placed<T>
      if (next.last <= this.#have) continue
      ready.push(next)
      this.#have = next.last
    }
    return ready
  }
}
