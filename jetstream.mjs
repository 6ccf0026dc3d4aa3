// ES module entry of selene-persist/jetstream: the same functions as the CommonJS build.
import cjs from './jetstream.js'

export const { audit, AuditError, Replicator, replicate, restore, Shipper, ship } = cjs
export default cjs
