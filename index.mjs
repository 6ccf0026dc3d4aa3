// ES module entry: the same classes as the CommonJS build.
import cjs from './index.js'

export const { ERROR_CODES, PersistError, WalWriter, WalReader, Store, SnapshotReader, SnapshotBuilder, Appender, EntryBatch, inspect, verify } = cjs
export default cjs
