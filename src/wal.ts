/** The WAL writer and reader. */
import * as native from '../native'

import { Appender } from './appender'
import { type EntriesOptions, type EntryBatch, type WalEntry, batchesOf, deferred, entriesOf, fromOption } from './batch'
import { call, receiver } from './errors'
import { type CompressionOption, DEFAULTS, type SyncPolicy, checkInteger, checkObject, checkPath, nativeOptions } from './options'

/** Options of {@link WalWriter.open}. */
export interface WalWriterOptions {
  /** Durability policy; default `'always'` (durable when `append` resolves). */
  sync?: SyncPolicy
  /** zstd compression of payloads at or above `threshold` bytes (default 4096); `false` disables. */
  compression?: CompressionOption
  /** Snapshot sequence recorded in a new file's header; the first entry gets `snapshotSeq + 1`. */
  snapshotSeq?: number
  /** Bound on payload bytes queued to the committer at once (default 4 MiB); see {@link Appender}. */
  maxQueueBytes?: number
  /**
   * Grow the active WAL this many bytes of written zeros at a time ahead of the writes
   * (default 1 MiB), so an fdatasync flushes data without a file-size or extent change;
   * `false` grows it write by write, and is the default under `'manual'` and `{ intervalMs }`,
   * which fdatasync seldom. The unused zero tail is cut at close and read as the end
   * of the log after a crash.
   */
  preallocate?: number | false
}

/** The keys of {@link WalWriterOptions}. */
export const WAL_OPTIONS = ['sync', 'compression', 'snapshotSeq', 'maxQueueBytes', 'preallocate'] as const

/** The single writer of one WAL file. */
export class WalWriter extends Appender {
  private constructor(handle: native.NativeAppender, maxQueueBytes: number, sync: native.NativeSyncSemantics, path: string) {
    super(handle, maxQueueBytes, sync, path)
  }

  /** Open (creating if absent) the WAL file at `path`, scan it and cut any torn tail. */
  static async open(path: string, options?: WalWriterOptions): Promise<WalWriter> {
    return call(async () => {
      const given = checkObject('options', options, WAL_OPTIONS)
      const normalised = nativeOptions(given)
      const maxQueueBytes = queueBound(given)
      return new WalWriter(await native.NativeAppender.openWriter(checkPath(path), normalised), maxQueueBytes, native.syncSemantics(normalised), path)
    })
  }
}

/** The `maxQueueBytes` option, checked. */
export function queueBound(options: Record<string, unknown>): number {
  const given = options.maxQueueBytes
  return given === undefined ? DEFAULTS.maxQueueBytes : checkInteger('maxQueueBytes', given, 1, Number.MAX_SAFE_INTEGER)
}

/**
 * Reads a WAL file, verifying every checksum. Safe beside a live writer, in this process or
 * another: it reads up to the current end (entries appended while it iterates are read too),
 * never takes bytes the writer has not finished for damage, ends cleanly at a torn tail, and
 * throws `MID_LOG_CORRUPTION` where stable damage hides valid entries and `SEALED_CORRUPTION`
 * where it lies inside the prefix the seal records as durable.
 */
export class WalReader {
  /** The file's path. */
  readonly path: string
  /** The snapshot sequence recorded in the file header. */
  readonly snapshotSeq: number

  private constructor(path: string, snapshotSeq: number) {
    this.path = path
    this.snapshotSeq = snapshotSeq
  }

  /** Open the WAL at `path` and check its header. */
  static async open(path: string): Promise<WalReader> {
    return call(async () => {
      const reader = await native.NativeReader.open(checkPath(path))
      const snapshotSeq = reader.snapshotSeq() ?? 0
      reader.close()
      return new WalReader(path, snapshotSeq)
    })
  }

  /** The entries in sequence order, each iteration reading the file afresh. */
  entries(options: EntriesOptions = {}): AsyncGenerator<WalEntry, void, undefined> {
    return entriesOf(() => receiver(this, WalReader).batches(options))
  }

  /**
   * The entries in batches of up to 4096, each read in one native call: the fastest way to
   * replay, with no object per entry unless you ask for one (see {@link EntryBatch}). A thread
   * of the reader's own reads up to three batches ahead while you work on one.
   */
  batches(options: EntriesOptions = {}): AsyncGenerator<EntryBatch, void, undefined> {
    return deferred(() => batchesAt(receiver(this, WalReader).path, options))
  }
}

/** {@link WalReader.batches} of the WAL at `path`. */
async function* batchesAt(path: string, options: EntriesOptions): AsyncGenerator<EntryBatch, void, undefined> {
  const from = fromOption(options)
  const reader = await call(() => native.NativeReader.open(path))
  yield* batchesOf({
    nextChunk: (maxEntries, maxBytes) => reader.nextChunk(from, maxEntries, maxBytes, false),
    takeChunk: () => reader.takeChunk(),
    close: () => reader.close(),
  })
}
