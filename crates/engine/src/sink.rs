//! [`Sink`]: what a binding appends through, a [`Committer`] of its own or a shared store's
//! handle (which forwards to its own committer as owner, or over the socket as a client).

use std::fmt::Debug;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use crate::committer::{AppendRequest, Committer, Reply, Watcher, WriterState};
use crate::error::Result;
use crate::scan::TailRepair;
use crate::stats::StatsReport;
use crate::writer::NewEntry;

/// What a binding appends through: the calls of [`Committer`] it makes.
pub trait Sink: Send + Sync + Debug {
    /// [`Committer::append_all`].
    fn append_all(&self, requests: Vec<AppendRequest>);
    /// [`Committer::flush`].
    fn flush(&self, reply: Reply<()>);
    /// [`Committer::close`].
    fn close(&self, reply: Reply<()>);
    /// [`Committer::commit_now`].
    ///
    /// # Errors
    /// As [`Committer::commit_now`]; a client also `OwnerLost`.
    fn commit_now(&self, entries: Vec<NewEntry>) -> Result<Option<RangeInclusive<u64>>>;
    /// [`Committer::state`].
    fn state(&self) -> WriterState;
    /// [`Committer::watch`]: every new state of the log, whoever's commit made it.
    fn watch(&self, watcher: &Watcher);
    /// [`Committer::stats`].
    fn stats(&self) -> StatsReport;
    /// [`Committer::queued_bytes`].
    fn queued_bytes(&self) -> u64;
    /// [`Committer::wait_for_room`].
    fn wait_for_room(&self, limit: u64) -> bool;
    /// [`Committer::is_closed`].
    fn is_closed(&self) -> bool;
    /// [`Committer::tail_repair`].
    fn tail_repair(&self) -> Option<TailRepair>;
    /// [`Committer::torn_file`].
    fn torn_file(&self) -> Option<PathBuf>;
}

impl Sink for Committer {
    fn append_all(&self, requests: Vec<AppendRequest>) {
        Self::append_all(self, requests);
    }
    fn flush(&self, reply: Reply<()>) {
        Self::flush(self, reply);
    }
    fn close(&self, reply: Reply<()>) {
        Self::close(self, reply);
    }
    fn commit_now(&self, entries: Vec<NewEntry>) -> Result<Option<RangeInclusive<u64>>> {
        Self::commit_now(self, entries)
    }
    fn state(&self) -> WriterState {
        Self::state(self)
    }
    fn watch(&self, watcher: &Watcher) {
        Self::watch(self, watcher);
    }
    fn stats(&self) -> StatsReport {
        Self::stats(self)
    }
    fn queued_bytes(&self) -> u64 {
        Self::queued_bytes(self)
    }
    fn wait_for_room(&self, limit: u64) -> bool {
        Self::wait_for_room(self, limit)
    }
    fn is_closed(&self) -> bool {
        Self::is_closed(self)
    }
    fn tail_repair(&self) -> Option<TailRepair> {
        Self::tail_repair(self)
    }
    fn torn_file(&self) -> Option<PathBuf> {
        Self::torn_file(self).map(Path::to_path_buf)
    }
}
