/** The Store: a recovered directory of WAL, snapshots and archives committed by a MANIFEST. */
import * as native from '../native'

import { publish } from './diagnostics'
import { type ErrorCode, PersistError, call, guarded, invalid, receiver, translate } from './errors'
import {
  type RetentionPolicy,
  type Sections,
  checkInteger,
  checkObject,
  checkPath,
  compressOption,
  DEFAULTS,
  isObject,
  nativeOptions,
  nativePolicy,
  nativeSections,
  type SharedOption,
  type SharedRole,
  checkShared,
} from './options'
import { Appender } from './appender'
import { type EntriesOptions, type EntryBatch, type WalEntry, batchesOf, deferred, entriesOf, fromOption } from './batch'
import { disposable } from './dispose'
import { Consumer, type ConsumerInfo } from './consumer'
import type { FollowOptions } from './follow'
import { SnapshotReader } from './snapshot'
import { WAL_OPTIONS, type WalWriterOptions, queueBound } from './wal'

/** What a checkpoint did. */
export interface Checkpoint {
  /** The sequence the new snapshot covers. */
  sequence: number
  snapshotPath: string
  snapshotBytes: number
  /** The sealed WAL prefix. */
  archivePath: string
}

/** What a prune did. */
export interface PruneResult {
  deletedSnapshots: number[]
  deletedArchives: number[]
  deletedTempFiles: string[]
  retainedSnapshots: number[]
  retainedArchives: number[]
  bytesReclaimed: number
  /** Consumers a `maxBytes` budget forced an archive they still need out from under: their next read fails with `CONSUMER_BEHIND_RETENTION`. */
  consumersBehind: string[]
  /** Kept torn tails deleted: the newest `keepArchives` are kept, none older than `maxAgeMs`. */
  deletedTornFiles: string[]
}

/** Sections, or a function that captures them (synchronously) and may serialise them later. */
export type SectionsSource = Sections | (() => Sections | Promise<Sections>)

/** Checkpoint automatically once the active WAL passes a threshold. */
export interface AutoCheckpoint {
  /** Checkpoint when the active WAL reaches this many bytes. */
  maxBytes?: number
  /** Checkpoint when this many entries follow the live snapshot. */
  maxEntries?: number
  /**
   * Returns the application state as sections. It is called at the start of an `append`,
   * before that entry is queued, and must capture (synchronously) the state after every
   * earlier append; it may return a Promise that finishes serialising what it captured.
   */
  sections: () => Sections | Promise<Sections>
  /** Called with the error of a failed automatic checkpoint (default: ignored). */
  onError?: (error: PersistError) => void
}

/** Options of {@link Store.open}: the writer's (but `snapshotSeq`, which the store manages), and the store's own. */
export interface StoreOptions extends Omit<WalWriterOptions, 'snapshotSeq'> {
  /** Whether snapshot sections are zstd-compressed (default true). */
  compressSnapshots?: boolean
  /** The policy `prune()` applies when called without one. */
  retention?: RetentionPolicy
  /** Checkpoint automatically past a size or entry threshold. */
  autoCheckpoint?: AutoCheckpoint
  /**
   * Share the store with other processes (default `false`: a second opener gets
   * `WRITER_LOCK_HELD`). The first to open it becomes its owner; the others are clients whose
   * appends the owner commits with its own, and one of them takes over when the owner goes.
   * See docs/sharing.md.
   */
  shared?: SharedOption
}

/** What a handle of a shared store holds or has heard now (docs/sharing.md). */
export interface SharingStats {
  /** As the owner: the clients connected (0 in a client). */
  clients: number
  /** As the owner: requests read from clients and not yet answered and sent; bounded per client. */
  inFlightRequests: number
  /** As the owner: those requests' payload bytes; bounded per client. */
  inFlightBytes: number
  /** As the owner: notices of the log's state written to clients; as a client: those heard from the owner (what wakes its followers). */
  notices: number
}

/** What recovery found and did when the store opened. */
export interface Recovery {
  /** Sequence of the live snapshot (0: none). */
  snapshotSeq: number
  /** Whether a rotation interrupted after its commit was finished. */
  finishedRotation: boolean
  /**
   * Consumers whose position was past the recovered end of the log (a power loss took entries
   * they had acknowledged, or their file came from elsewhere), set back to that end: they
   * receive the entries appended from now on.
   */
  cappedConsumers: Array<{ name: string; position: number; cappedTo: number }>
}

/** The keys of {@link StoreOptions}. */
const STORE_OPTIONS = [...WAL_OPTIONS.filter((key) => key !== 'snapshotSeq'), 'compressSnapshots', 'retention', 'autoCheckpoint', 'shared']

function checkAuto(auto: unknown): AutoCheckpoint | null {
  if (auto === undefined) return null
  if (!isObject(auto) || typeof auto.sections !== 'function') {
    throw invalid('autoCheckpoint needs a sections() function')
  }
  checkObject('autoCheckpoint', auto, ['sections', 'maxBytes', 'maxEntries', 'onError'])
  if (auto.maxBytes === undefined && auto.maxEntries === undefined) {
    throw invalid('autoCheckpoint needs maxBytes or maxEntries')
  }
  if (auto.maxBytes !== undefined) checkInteger('autoCheckpoint.maxBytes', auto.maxBytes, 1, Number.MAX_SAFE_INTEGER)
  if (auto.maxEntries !== undefined) checkInteger('autoCheckpoint.maxEntries', auto.maxEntries, 1, Number.MAX_SAFE_INTEGER)
  if (auto.onError !== undefined && typeof auto.onError !== 'function') throw invalid('autoCheckpoint.onError must be a function')
  return auto as unknown as AutoCheckpoint
}

/**
 * A store directory: `wal.log`, `snapshot.<seq>.snap`, `wal.<seq>.archive`, `MANIFEST`.
 * Opening recovers it; `checkpoint` seals the WAL behind a snapshot of your state; `prune`
 * applies retention. One Store per directory, across processes.
 */
export class Store extends Appender {
  readonly #native: native.NativeStore
  readonly #retention: RetentionPolicy
  readonly #compress: boolean
  readonly #auto: AutoCheckpoint | null
  #autoRunning: Promise<void> | null = null
  readonly #shared: boolean
  /** Serialises checkpoint finishes and prunes, in call order. */
  #maintenance: Promise<unknown> = Promise.resolve()
  /** What recovery found and did. */
  readonly recovery: Recovery

  private constructor(handle: native.NativeStore, dir: string, options: StoreOptions, auto: AutoCheckpoint | null, maxQueueBytes: number, sync: native.NativeSyncSemantics) {
    super(handle.appender(), maxQueueBytes, sync, dir, checkShared(options.shared) !== null)
    this.#native = handle
    this.#shared = checkShared(options.shared) !== null
    this.#retention = options.retention ?? {}
    this.#compress = options.compressSnapshots ?? DEFAULTS.compressSnapshots
    this.#auto = auto
    this.recovery = handle.recovery()
  }

  /** Create the directory if needed, recover it, and open it for appends. */
  static async open(dir: string, options?: StoreOptions): Promise<Store> {
    return call(async () => {
      if (isObject(options) && 'snapshotSeq' in options) throw invalid('a Store manages snapshotSeq itself')
      const given = checkObject('options', options, STORE_OPTIONS)
      const auto = checkAuto(given.autoCheckpoint)
      nativePolicy(given.retention)
      const maxQueueBytes = queueBound(given)
      const normalised = nativeOptions(given)
      const shared = checkShared(given.shared)
      const handle = shared ? await native.NativeStore.openShared(checkPath(dir), normalised, shared.producer) : await native.NativeStore.open(checkPath(dir), normalised)
      return new Store(handle, dir, given as StoreOptions, auto, maxQueueBytes, native.syncSemantics(normalised))
    })
  }

  /** What this process is to a store opened `shared`: its `'owner'` (a client becomes it when it takes over) or a `'client'`; `null` for a store not shared. */
  get role(): SharedRole | null {
    return guarded(() => (this.#shared ? (this.#native.isOwner() ? 'owner' : 'client') : null))
  }

  /** What this handle of a shared store holds (as the owner) or has heard (as a client) now; `null` for a store not shared. */
  get sharing(): SharingStats | null {
    return guarded(() => this.#native.sharing())
  }

  /** The live snapshot, or `null` before the first checkpoint. */
  get snapshot(): SnapshotReader | null {
    return guarded(() => {
      const handle = this.#native.snapshot()
      return handle ? new SnapshotReader(handle) : null
    })
  }

  /**
   * The entries after the live snapshot, in order, without checkpoint watermarks and with
   * each replicated entry (by source node and sequence) once. Restore `snapshot`, then apply
   * these.
   */
  replay(options: EntriesOptions = {}): AsyncGenerator<WalEntry, void, undefined> {
    return entriesOf(() => receiver(this, Store).replayBatches(options))
  }

  /** {@link Store.replay} in batches, each read in one native call (see {@link EntryBatch}). */
  replayBatches(options: EntriesOptions = {}): AsyncGenerator<EntryBatch, void, undefined> {
    return deferred(() => receiver(this, Store).#replayFrom(options))
  }

  async *#replayFrom(options: EntriesOptions): AsyncGenerator<EntryBatch, void, undefined> {
    const from = fromOption(options)
    yield* batchesOf(await call(() => this.#native.replay(from)))
  }

  /** {@link Appender.followBatches}; once the store is closed, reading starts with `CLOSED`. */
  override followBatches(options: FollowOptions = {}): AsyncGenerator<EntryBatch, void, undefined> {
    const batches = super.followBatches(options)
    const closed = (): boolean => this.closed
    return disposable(
      (async function* () {
        if (closed()) throw new PersistError('CLOSED', 'the store is closed')
        yield* batches
      })(),
    )
  }

  override append(...args: Parameters<Appender['append']>): Promise<number> {
    return Store.#afterAutoCheckpoint(this, () => super.append(...args))
  }

  override appendBatch(...args: Parameters<Appender['appendBatch']>): Promise<number> {
    return Store.#afterAutoCheckpoint(this, () => super.appendBatch(...args))
  }

  /** Start a due automatic checkpoint, then `append`; a failure (a wrong `this`) rejects. */
  static #afterAutoCheckpoint(store: Store, append: () => Promise<number>): Promise<number> {
    try {
      store.#maybeAutoCheckpoint()
    } catch (error) {
      return Promise.reject(translate(error))
    }
    return append()
  }

  override appendSync(payload: Uint8Array): void {
    guarded(() => this.#maybeAutoCheckpoint())
    super.appendSync(payload)
  }

  override appendDurableSync(...args: Parameters<Appender['appendDurableSync']>): number {
    guarded(() => this.#maybeAutoCheckpoint())
    return super.appendDurableSync(...args)
  }

  /**
   * Snapshot your state and seal the WAL behind it. `sections` must hold the state after
   * every append called before `checkpoint` (a function is called at once and must capture
   * synchronously). Appends continue while the snapshot and archive are written; they wait
   * only for the MANIFEST commit and the swap of `wal.log`.
   */
  checkpoint(sections: SectionsSource, options: { compress?: boolean } = {}): Promise<Checkpoint> {
    return call(() => {
      const compress = compressOption(options) ?? this.#compress
      const captured = typeof sections === 'function' ? sections() : sections
      // Sections given synchronously are checked before any watermark is queued.
      const converted = captured instanceof Promise ? captured.then((s) => nativeSections(s, compress)) : nativeSections(captured, compress)
      // Queued in call order with the capture: the watermark follows exactly the appends made so far.
      const begun = this.admit(() => this.#native.beginCheckpoint())
      const previous = this.#maintenance
      const finished = (async () => {
        const [sequence, ready] = await Promise.all([begun, converted])
        await previous
        const checkpoint = await this.#native.finishCheckpoint(sequence, ready)
        // Followers at the end of the retired WAL move on to the new one.
        this.changed()
        publish('checkpoint', () => ({ path: this.path, checkpoint }))
        return checkpoint
      })()
      this.#maintenance = finished.catch(() => undefined)
      return finished
    })
  }

  /** Apply retention (default: the store's `retention` option, else the engine's default policy). */
  prune(policy?: RetentionPolicy): Promise<PruneResult> {
    return call(() => {
      const normalised = nativePolicy(policy ?? this.#retention)
      const run = this.#maintenance.then(async () => {
        const result = await this.#native.prune(normalised)
        publish('prune', () => ({ path: this.path, result }))
        return result
      })
      this.#maintenance = run.catch(() => undefined)
      return run
    })
  }

  /**
   * The durable consumer `name` (1 to 64 of `A-Z a-z 0-9 _ -`), registered now if new: its
   * position, the last sequence it acknowledged, is kept in the store directory and survives
   * any crash, and retention keeps every archive it still needs. A new consumer starts after
   * `from - 1` (default: after the live snapshot); `from` past `lastSequence + 1` is
   * `INVALID_ARGUMENT`.
   */
  consumer(name: string, options: { from?: number } = {}): Promise<Consumer> {
    return call(async () => {
      const given = checkObject('options', options, ['from'])
      const start = given.from === undefined ? this.snapshotSeq : checkInteger('from', given.from, 1, Number.MAX_SAFE_INTEGER) - 1
      if (typeof name !== 'string') throw invalid('a consumer name must be a string')
      const handle = this.#native
      const position = await handle.registerConsumer(name, start)
      return new Consumer(
        name,
        position,
        (consumer, sequence) => handle.ackConsumer(consumer, sequence),
        (from, follow) => this.followBatches({ ...follow, from }),
      )
    })
  }

  /**
   * The registered consumers: each one's position and how far it lags the log. One whose file
   * is damaged is listed with `damaged` set (its file named), not thrown for.
   */
  consumers(): Promise<ConsumerInfo[]> {
    return call(async () => {
      const listed = await this.#native.consumers()
      const last = this.lastSequence
      return listed.map(({ name, position, lagBytes, damaged }) => ({
        name,
        position,
        lagEntries: Math.max(0, last - position),
        lagBytes,
        ...(damaged ? { damaged: { code: damaged.code as ErrorCode, message: damaged.message } } : {}),
      }))
    })
  }

  /** Forget the consumer `name` (retention no longer keeps anything for it); whether it was registered. */
  removeConsumer(name: string): Promise<boolean> {
    return call(() => {
      if (typeof name !== 'string') throw invalid('a consumer name must be a string')
      return this.#native.removeConsumer(name)
    })
  }

  /**
   * Back up the store to `destination` (which must not exist) while appends and checkpoints
   * go on: a consistent copy holding every entry committed when the backup began, which opens
   * as a normal store. Snapshots and archives are hard-linked where they can be, the active WAL
   * copied, the MANIFEST written last, everything fsynced, and the copy renamed into place at
   * the end: a backup that dies leaves no store at `destination`. Resolves with the last
   * sequence the backup holds.
   */
  backup(destination: string): Promise<number> {
    return call(() => this.#native.backup(checkPath(destination)))
  }

  /** Wait for a running automatic checkpoint, then commit, sync and close. */
  override close(): Promise<void> {
    return call(async () => {
      await this.#autoRunning
      await this.#maintenance
      return super.close()
    })
  }

  /**
   * Start an automatic checkpoint if a threshold is passed. Runs at the start of an append,
   * before that entry is queued, so `sections()` sees the state after every earlier append.
   */
  #maybeAutoCheckpoint(): void {
    const auto = this.#auto
    if (!auto || this.#autoRunning || this.closed) return
    const due =
      (auto.maxBytes !== undefined && this.committedOffset >= auto.maxBytes) ||
      (auto.maxEntries !== undefined && this.lastSequence - this.snapshotSeq >= auto.maxEntries)
    if (!due) return
    const running = this.checkpoint(auto.sections).then(
      () => undefined,
      (error: unknown) => auto.onError?.(error as PersistError),
    )
    this.#autoRunning = running.finally(() => {
      this.#autoRunning = null
    })
  }
}
