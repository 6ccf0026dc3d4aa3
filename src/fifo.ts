/** A first-in first-out queue with O(1) push and shift. */

/**
 * A ring buffer that doubles when full. `Array.prototype.shift` moves every element, so a queue
 * of a million waiting calls drained with it takes quadratic time; this never moves one.
 */
export class Fifo<T> {
  #items: (T | undefined)[] = new Array<T | undefined>(16)
  #head = 0
  #length = 0

  /** How many items are queued. */
  get length(): number {
    return this.#length
  }

  push(item: T): void {
    if (this.#length === this.#items.length) this.#grow()
    this.#items[(this.#head + this.#length) % this.#items.length] = item
    this.#length++
  }

  /** The oldest item, left in place. */
  peek(): T | undefined {
    return this.#length === 0 ? undefined : this.#items[this.#head]
  }

  /** Remove and return the oldest item. */
  shift(): T | undefined {
    if (this.#length === 0) return undefined
    const item = this.#items[this.#head]
    this.#items[this.#head] = undefined
    this.#head = (this.#head + 1) % this.#items.length
    this.#length--
    return item
  }

  #grow(): void {
    const size = this.#items.length
    const bigger = new Array<T | undefined>(size * 2)
    for (let i = 0; i < this.#length; i++) bigger[i] = this.#items[(this.#head + i) % size]
    this.#items = bigger
    this.#head = 0
  }
}
