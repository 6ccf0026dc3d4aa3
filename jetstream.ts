/**
 * selene-persist/jetstream: a log that leaves the machine, through NATS JetStream.
 *
 * `ship` publishes a store's committed log to a stream (pipelined, exactly once, fenced per
 * node) and its live snapshot to the stream's Object Store bucket; `replicate` follows
 * a stream into a local store; `restore` builds a new store from a node's remote snapshot and
 * shipments; `audit` (and `Shipper.audit()`) checks that the stream still holds every entry
 * it acknowledged. Needs the optional peer dependencies `@nats-io/transport-node`,
 * `@nats-io/jetstream` and `@nats-io/obj` (3.x), and nats-server 2.10 or newer (with
 * `sync_interval: always` where an acknowledged copy must survive power loss).
 */
// First: a missing addon or NATS package is a PersistError saying what to do.
import './src/addon'
import './src/jetstream/peers'
export { type Audited, AuditError, type AuditOptions, type SequenceRange, audit } from './src/jetstream/audit'
export type { RemoteOptions } from './src/jetstream/remote'
export { type ReplicateOptions, Replicator, replicate } from './src/jetstream/replicate'
export { type Restored, type RestoreOptions, restore } from './src/jetstream/restore'
export { type ShipLag, type ShipOptions, Shipper, ship } from './src/jetstream/ship'
