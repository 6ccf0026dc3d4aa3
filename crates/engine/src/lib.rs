//! selene-persist engine: a durable, append-only write-ahead log.
//!
//! Pure Rust, no Node dependency. Layers, bottom up: [`io`] (every file-system call),
//! [`checksum`], [`file_header`] and [`frame`] (the byte formats), [`compression`], [`hlc`],
//! [`scan`] (torn tail vs corruption), [`writer`] and [`reader`], and [`committer`] (one thread
//! per writer, group commit).

pub mod checksum;
pub mod committer;
pub mod compression;
#[cfg(any(test, feature = "fault-injection"))]
pub mod crash;
pub mod error;
#[cfg(any(test, feature = "fault-injection"))]
pub mod fault;
pub mod file_header;
pub mod filename;
pub mod frame;
pub mod hlc;
pub mod inspect;
pub mod io;
pub mod manifest;
pub mod publish;
pub mod reader;
pub mod retention;
pub mod rotation;
pub mod scan;
pub mod seal;
pub mod snapshot;
pub mod store;
pub mod writer;

pub use committer::{AppendRequest, Committer, Reply, WriterState};
pub use compression::Compression;
pub use error::{Error, Result};
pub use frame::Origin;
pub use hlc::Hlc;
pub use reader::{Entry, WalReader};
pub use scan::{TailReason, TailRepair};
pub use writer::{MAX_SEQUENCE, NewEntry, SyncPolicy, WalOptions, WalWriter};
