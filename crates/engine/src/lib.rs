//! selene-persist engine: a durable, append-only write-ahead log with snapshots,
//! MANIFEST-committed rotation, retention and recovery. Pure Rust, no Node dependency.
//!
//! # The map
//!
//! **The file system.** [`io`] is the one door to it (`Vfs`, `VfsFile`, `StdFs`): every open
//! refuses what is not a regular file, and every open that can write refuses a symlink.
//! [`filename`] names every file of a store directory, and parses the names back.
//!
//! **Formats**, each a pair of inverse functions beside its rules and one [`file_header::Format`]
//! constant that both check: [`checksum`] (the only checksum), [`file_header`] (the WAL's
//! 24-byte header and its two layouts), [`batch_frame`] (format v4: one frame per commit group,
//! what every new WAL holds), [`frame`] (format v3's 40-byte frame header, extent and payload,
//! still read; the caps),
//! [`compression`] (zstd, bounded decompression), [`hlc`] (monotonic timestamps), [`seal`]
//! (the 64-byte sidecar naming the last durable frame), [`snapshot`] (sections at a sequence),
//! [`manifest`] (the commit point).
//!
//! **The WAL.** [`scan`] walks frames and tells the end of the log from a torn tail and from
//! corruption (and, for readers beside a live writer, from bytes not yet finished). [`writer`]
//! stages and commits (one write, fdatasync per policy, cut back or poison on failure); its
//! [`options`](writer::options) and defaults, and the [`entries`](writer::entries) an append
//! hands it, stand apart.
//! [`reader`] yields verified entries, collected by [`batch`] into entries or one packed chunk. [`committer`] is one thread per writer that groups
//! concurrent appends into one write and one fdatasync, and counts what it does ([`stats`]).
//! [`follow`] reads a store's log (or one WAL) as it grows, across rotations, beside a live
//! writer in any process; [`consumer`] keeps a named follower's acknowledged position durably.
//!
//! **The store.** [`publish`] (temp file, fdatasync, link or rename, directory fsync),
//! [`dir_lock`] (`MANIFEST.lock`: exclusive to change the committed state, shared to read it),
//! [`rotation`] (the four-phase checkpoint), [`retention`] (prune as a plan, then its
//! application), [`store`] (recovery, checkpoint, prune, replay), [`backup`] (a consistent
//! copy of a live store).
//!
//! **Sharing.** [`shared`] opens a store for any number of processes: the first its owner,
//! whose [`server`](shared::server) thread feeds its committer the appends of the others, each
//! a [`client`](shared::client); the messages are the [`wire`](shared::wire)'s, the socket's
//! place is [`path`](shared::path)'s; a client takes over when the owner goes. [`producer`]
//! is the idempotent producers' table the owner checks stamped appends against. A binding
//! appends through a [`sink`]: its own committer or a shared store.
//!
//! **Inspection and repair.** [`inspect`] examines a store or a file at two depths and collects
//! problems; [`salvage`] copies every frame that verifies past damage into a new log (`source`
//! reads the damaged file in windows, `resync` finds where the log goes on, `sink` streams the
//! outputs).
//!
//! **Replication.** [`shipment`] packs consecutive frames of one node's log, byte for byte,
//! into one message that leaves the machine; [`replica`] keeps how far a replicating store
//! has applied each source node, exact across a crash; [`restore`] builds a new store from a
//! snapshot and the shipments after it, every entry keeping its sequence and origin.
//!
//! **Test support** (feature `fault-injection`): [`testing`] has the recording (`watch`),
//! fault-injecting (`fault`) and crash-state (`crash`) file systems, all on one wrapper of the
//! real one.
//!
//! [`error`] gives every failure a stable code; [`warning`] hands on what the engine notices
//! and carries on past; the crate root re-exports what a binding needs.

pub mod backup;
pub mod batch;
pub mod batch_frame;
pub mod checksum;
pub mod committer;
pub mod compression;
pub mod consumer;
pub mod dir_lock;
pub mod error;
pub mod file_header;
pub mod filename;
pub mod follow;
pub mod frame;
pub mod hlc;
pub mod inspect;
pub mod io;
pub mod manifest;
pub mod producer;
pub mod publish;
pub mod reader;
pub mod replica;
pub mod restore;
pub mod retention;
pub mod rotation;
pub mod salvage;
pub mod scan;
pub mod seal;
#[cfg(unix)]
pub mod shared;
pub mod shipment;
pub mod sink;
pub mod snapshot;
pub mod stats;
pub mod store;
#[cfg(any(test, feature = "fault-injection"))]
pub mod testing;
pub mod warning;
pub mod writer;

pub use batch::Entry;
pub use committer::{AppendRequest, Committer, Reply, Watcher, WriterState};
pub use compression::Compression;
pub use error::{Error, Result};
pub use frame::{Origin, Producer};
pub use hlc::Hlc;
pub use reader::WalReader;
pub use scan::{TailReason, TailRepair};
pub use sink::Sink;
pub use writer::{
    EntryView, MAX_SEQUENCE, NewEntries, NewEntry, SyncPolicy, WalOptions, WalWriter,
};
