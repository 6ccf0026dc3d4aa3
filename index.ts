/**
 * selene-persist: a durable, append-only write-ahead log with snapshots, MANIFEST-committed
 * rotation, retention and recovery, on a Rust core.
 *
 * This facade adds typed options, typed errors, Promises and async iterators over the native
 * addon; every byte-level rule lives in the Rust engine.
 */
// First: a missing addon is a NATIVE_MISSING PersistError saying what to do.
import './src/addon'
export { Appender, type Quantiles, type TailRepair, type WriterStats } from './src/appender'
export { backup } from './src/backup'
export { type SalvageReport, type StoreSalvageReport, salvage } from './src/salvage'
export { type EntriesOptions, EntryBatch, type WalEntry } from './src/batch'
export { Consumer, type ConsumerInfo } from './src/consumer'
export { ERROR_CODES, type ErrorCode, PersistError } from './src/errors'
export { type ExamineOptions, type OnProgress, PROBLEM_CODES, type Problem, type ProblemCode, type Report, inspect, verify } from './src/examine'
export { type FollowOptions, type ProcessFollowOptions, follow, followBatches } from './src/follow'
export type { AppendMeta, CompressionOption, Hlc, Origin, RetentionPolicy, Sections, SharedOption, SharedRole, SyncPolicy } from './src/options'
export { type PublishedSnapshot, type SectionInfo, SnapshotBuilder, SnapshotReader } from './src/snapshot'
export { type AutoCheckpoint, type Checkpoint, type PruneResult, type Recovery, type SectionsSource, type SharingStats, Store, type StoreOptions } from './src/store'
export { WalReader, WalWriter, type WalWriterOptions } from './src/wal'
