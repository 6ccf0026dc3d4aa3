/** Following a log as it grows: in this process (woken by the committer) or from another. */
import { type FSWatcher, existsSync, statSync, watch } from 'node:fs'
import { dirname, join } from 'node:path'

import * as native from '../native'

import { BATCH_BYTES, BATCH_ENTRIES, EntryBatch, type WalEntry, entriesOf } from './batch'
import { disposable } from './dispose'
import { call, invalid } from './errors'
import { checkInteger, checkObject, checkPath } from './options'

/** Options of `follow` and `followBatches`. */
export interface FollowOptions {
  /** First sequence to yield (default: the first after the live snapshot). */
  from?: number
  /** Yield an entry only once it is fdatasynced, under any sync policy (default: once committed). */
  durable?: boolean
  /** Ends the iteration (cleanly) when aborted. */
  signal?: AbortSignal
}

/** Options of the cross-process {@link follow}. */
export interface ProcessFollowOptions extends FollowOptions {
  /** The slow poll beside file-system notifications, in milliseconds (default 500). */
  pollMs?: number
}

/**
 * Tells a follower that the log may have grown. `arm()` is called before each read and
 * returns a Promise that resolves on the first change after it: `true` for more, `false` once
 * the writer is closed. So a change during a read is never missed.
 */
export interface Waker {
  arm(): Promise<boolean>
  close(): void
}

/** The options, checked: `from` (or null), `durable`, `signal`. */
export function followOptions(options: unknown): { from: number | null; durable: boolean; signal: AbortSignal | undefined } {
  // pollMs: the cross-process follower's, which hands its options on.
  const given = checkObject('options', options, ['from', 'durable', 'signal', 'pollMs'])
  const durable = given.durable ?? false
  if (typeof durable !== 'boolean') throw invalid('durable must be a boolean')
  const signal = given.signal
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalid('signal must be an AbortSignal')
  const from = given.from === undefined ? null : checkInteger('from', given.from, 0, Number.MAX_SAFE_INTEGER)
  return { from, durable, signal }
}

/** The batches of `path` (a store directory or a WAL file) from a follower woken by `waker`. */
export async function* followBatchesOf(path: string, options: unknown, makeWaker: () => Waker): AsyncGenerator<EntryBatch, void, undefined> {
  const { from, durable, signal } = followOptions(options)
  const follower = await call(() => native.NativeFollower.open(checkPath(path), from, durable))
  const waker = makeWaker()
  const aborted = new Promise<boolean>((resolve) => signal?.addEventListener('abort', () => resolve(false), { once: true }))
  try {
    let open = true
    for (;;) {
      if (signal?.aborted) return
      const changed: Promise<boolean> = open ? waker.arm() : Promise.resolve(false)
      const chunk = await call(() => follower.nextChunk(BATCH_ENTRIES, BATCH_BYTES))
      if (chunk.count > 0) {
        yield new EntryBatch(chunk)
        continue
      }
      // Once the writer closed, what it committed has been read: the end.
      if (!open) return
      open = await waiting(Promise.race([changed, aborted]))
    }
  } finally {
    waker.close()
    follower.close()
  }
}

/**
 * `wait`, keeping the event loop alive meanwhile, as a socket waiting for data does: a program
 * whose only work left is to follow a log must not exit (code 13) while the follower waits.
 */
async function waiting<T>(wait: Promise<T>): Promise<T> {
  const hold = setInterval(() => undefined, 2 ** 31 - 1)
  try {
    return await wait
  } finally {
    clearInterval(hold)
  }
}

/** Woken by file-system notifications on the log's directory, and by a slow poll. */
class ProcessWaker implements Waker {
  readonly #watcher: FSWatcher | null
  readonly #timer: ReturnType<typeof setInterval>
  #waiting: Array<(more: boolean) => void> = []

  constructor(path: string, isDir: boolean, pollMs: number) {
    const fire = (): void => this.#fire()
    let watcher: FSWatcher | null = null
    try {
      watcher = watch(isDir ? path : dirname(path), fire)
      watcher.on('error', () => undefined)
    } catch {
      // No notifications here (some network file systems): the poll alone wakes the follower.
    }
    this.#watcher = watcher
    this.#timer = setInterval(fire, pollMs)
  }

  arm(): Promise<boolean> {
    return new Promise((resolve) => this.#waiting.push(resolve))
  }

  #fire(): void {
    const waiting = this.#waiting
    this.#waiting = []
    for (const resolve of waiting) resolve(true)
  }

  close(): void {
    this.#watcher?.close()
    clearInterval(this.#timer)
    for (const resolve of this.#waiting) resolve(false)
    this.#waiting = []
  }
}

/** Whether `path` is a directory (false when it cannot be examined). */
function isDirectory(path: string): boolean {
  try {
    return statSync(path, { throwIfNoEntry: false })?.isDirectory() ?? false
  } catch {
    return false
  }
}

/**
 * Whether there is a log at `path` to follow: a file, or a directory holding `wal.log`. A path
 * that cannot be examined counts as there, so that opening it reports the typed error.
 */
export function logPresent(path: string): boolean {
  try {
    const stat = statSync(path, { throwIfNoEntry: false })
    return stat !== undefined && (!stat.isDirectory() || existsSync(join(path, 'wal.log')))
  } catch {
    return true
  }
}

/**
 * Wait until a log is at `path` ({@link logPresent}), as `tail -F` waits for a file: woken by
 * notifications on the path (a directory) or its parent, and by a poll every `pollMs`.
 * Resolves `false` if `signal` aborts first.
 */
export async function logAppeared(path: string, pollMs: number, signal?: AbortSignal): Promise<boolean> {
  const aborted = new Promise<boolean>((resolve) => signal?.addEventListener('abort', () => resolve(false), { once: true }))
  while (!signal?.aborted) {
    const waker = new ProcessWaker(path, isDirectory(path), pollMs)
    try {
      const changed = waker.arm()
      if (logPresent(path)) return true
      await Promise.race([changed, aborted])
    } finally {
      waker.close()
    }
  }
  return false
}

/** {@link followBatchesOf} from another process, once the log is there. */
async function* followProcess(path: string, options: ProcessFollowOptions, pollMs: number): AsyncGenerator<EntryBatch, void, undefined> {
  const { signal } = followOptions(options)
  if (!logPresent(checkPath(path)) && !(await logAppeared(path, pollMs, signal))) return
  // A store directory is watched itself (rotations rename in it); a WAL file, its directory.
  const makeWaker = (): Waker => new ProcessWaker(path, isDirectory(path), pollMs)
  yield* followBatchesOf(path, options, makeWaker)
}

/** The slow poll beside file-system notifications of a follower from another process, by default (`pollMs`). */
export const POLL_MS = 500

/**
 * Follow a log from another process: `path` is a store directory (its archives, then its active
 * WAL, across rotations) or a WAL file. Opens nothing for writing and takes no lock; bytes the
 * writer has not finished are waited for, never reported as damage. Woken by file-system
 * notifications, with a slow poll as the fallback; a writer killed and reopened is followed on.
 * A log that is not there yet (no such file or directory, or a directory without `wal.log`) is
 * waited for, as `tail -F` does, so a follower may start before its writer; abort with `signal`.
 */
export function followBatches(path: string, options: ProcessFollowOptions = {}): AsyncGenerator<EntryBatch, void, undefined> {
  const given = checkObject('options', options)
  const pollMs = given.pollMs === undefined ? POLL_MS : checkInteger('pollMs', given.pollMs, 1, 2 ** 31 - 1)
  return disposable(followProcess(path, given, pollMs))
}

/** {@link followBatches}, one entry at a time. */
export function follow(path: string, options: ProcessFollowOptions = {}): AsyncGenerator<WalEntry, void, undefined> {
  return entriesOf(followBatches(path, options))
}
