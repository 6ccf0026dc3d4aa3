// ES module entry: the same classes as the CommonJS build.
// Loaded with require, not `import`: Node 20 reports a CommonJS module that throws under an
// ES import as uncaught even when the importer catches it (nodejs/node#51603), and the load
// throws on purpose when the addon or an optional package is missing (NATIVE_MISSING, ...).
import { createRequire } from 'node:module'

const cjs = createRequire(import.meta.url)('./index.js')

export const { ERROR_CODES, PROBLEM_CODES, PersistError, WalWriter, WalReader, Store, SnapshotReader, SnapshotBuilder, Appender, EntryBatch, Consumer, inspect, verify, follow, followBatches, backup, salvage } = cjs
export default cjs
