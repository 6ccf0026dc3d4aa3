/** Waking in-process followers: one Promise a change of the log, renewed on each. */
import type { Waker } from '../follow'

/** The changes of one writer's log, announced to the followers waiting for one. */
export class Wakeup {
  /** Resolves on the next commit, flush or checkpoint (`true`), or once ended (`false`). */
  #change!: Promise<boolean>
  #announce!: (more: boolean) => void
  #ended = false

  constructor() {
    this.#renew()
  }

  /** Wake the followers: the log may have grown, or become durable further. */
  changed(): void {
    if (this.#ended) return
    const announce = this.#announce
    this.#renew()
    announce(true)
  }

  /** The writer is closed: followers read what was committed, then end. */
  end(): void {
    this.#ended = true
    this.#announce(false)
  }

  /** Resolves on the next change (`true`), or `false` once ended. */
  next(): Promise<boolean> {
    return this.#change
  }

  /** What wakes one follower. */
  waker(): Waker {
    return { arm: () => this.next(), close: () => undefined }
  }

  #renew(): void {
    this.#change = new Promise<boolean>((resolve) => (this.#announce = resolve))
  }
}
