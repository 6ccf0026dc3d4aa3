/**
 * `await using` for every handle: the key, and iterators that carry it where the runtime's
 * async generators do not (Node 20's lack it; Bun's and Deno's have it).
 */

/**
 * `Symbol.asyncDispose`: native in Node 20+, Bun and Deno; Node 18.18+ defines it as
 * `Symbol.for('nodejs.asyncDispose')`, which older runtimes get here too, so a handle disposes
 * the same way wherever it runs.
 */
export const asyncDispose: typeof Symbol.asyncDispose = (Symbol.asyncDispose ?? Symbol.for('nodejs.asyncDispose')) as typeof Symbol.asyncDispose

/**
 * `iterator` itself, disposable: `[Symbol.asyncDispose]()` ends it as a `break` out of its
 * `for await` loop would (`return()`), releasing what it holds.
 */
export function disposable<T>(iterator: AsyncGenerator<T, void, undefined>): AsyncGenerator<T, void, undefined> {
  if (typeof (iterator as Partial<AsyncDisposable>)[asyncDispose] !== 'function') {
    Object.defineProperty(iterator, asyncDispose, {
      value: async (): Promise<void> => void (await iterator.return(undefined)),
      configurable: true,
      writable: true,
    })
  }
  return iterator
}
