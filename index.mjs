// ES module entry: the same classes as the CommonJS build.
import cjs from './index.js'

export const { ERROR_CODES, PROBLEM_CODES, PersistError, WalWriter, WalReader, Store, SnapshotReader, SnapshotBuilder, Appender, EntryBatch, Consumer, inspect, verify, follow, followBatches, backup, salvage } = cjs
export default cjs
