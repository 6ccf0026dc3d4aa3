/**
 * `Symbol.asyncDispose`, for `await using`: native in Node 20+, Bun and Deno; Node 18.18+
 * defines it as `Symbol.for('nodejs.asyncDispose')`, which older runtimes get here too, so a
 * handle disposes the same way wherever it runs.
 */
export const asyncDispose: typeof Symbol.asyncDispose = (Symbol.asyncDispose ?? Symbol.for('nodejs.asyncDispose')) as typeof Symbol.asyncDispose
