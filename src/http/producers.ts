/**
 * Idempotent producers (Durable Streams 5.2.1, Kafka's rules): per producer id the current
 * epoch and the last sequence accepted in it. A retry of an accepted sequence is a duplicate,
 * an older epoch is fenced, a new epoch starts at 0, and a skipped sequence is a gap.
 */
import type { ProducerStamp } from './marks'

export type Verdict =
  | { kind: 'accept' }
  | { kind: 'duplicate'; lastSeq: number }
  | { kind: 'fenced'; epoch: number }
  | { kind: 'bad-epoch-start' }
  | { kind: 'gap'; expected: number; received: number }

export class ProducerTable {
  readonly #state = new Map<string, { epoch: number; lastSeq: number }>()

  /** What an append carrying `stamp` would be; changes nothing. */
  check(stamp: ProducerStamp): Verdict {
    const state = this.#state.get(stamp.id)
    if (state === undefined) {
      return stamp.seq === 0 ? { kind: 'accept' } : { kind: 'gap', expected: 0, received: stamp.seq }
    }
    if (stamp.epoch < state.epoch) return { kind: 'fenced', epoch: state.epoch }
    if (stamp.epoch > state.epoch) return stamp.seq === 0 ? { kind: 'accept' } : { kind: 'bad-epoch-start' }
    if (stamp.seq <= state.lastSeq) return { kind: 'duplicate', lastSeq: state.lastSeq }
    if (stamp.seq === state.lastSeq + 1) return { kind: 'accept' }
    return { kind: 'gap', expected: state.lastSeq + 1, received: stamp.seq }
  }

  /** An append carrying `stamp` is in the log (written, or found there by recovery). */
  record(stamp: ProducerStamp): void {
    this.#state.set(stamp.id, { epoch: stamp.epoch, lastSeq: stamp.seq })
  }
}
