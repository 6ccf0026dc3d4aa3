//! A fault-injecting, operation-recording file system for tests.
//!
//! A [`Watched`] real file system that counts every mutating operation (open for write, write,
//! sync, set_len, allocate, link, rename, remove, directory creation, removal and sync). A [`FaultPlan`]
//! makes operation number `k` fail with EIO, ENOSPC, or a short write, so a test can fail every
//! step of a workload in turn.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::watch::{Event, Verdict, Watched, Watcher};
use crate::io::OpenMode;

/// The kind of fault to inject.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Fault {
    /// The operation fails with EIO and does nothing.
    Eio,
    /// The operation fails with ENOSPC and does nothing.
    NoSpace,
    /// A write stores only its first half, then fails with EIO; other operations fail as `Eio`.
    ShortWrite,
    /// The operation panics, as a bug in the engine would.
    Panic,
}

/// One recorded operation.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Op {
    /// A file was opened in a mode that can change it.
    Open(PathBuf, OpenMode),
    /// Bytes were written at an offset.
    Write(PathBuf, u64, usize),
    /// File data was synced.
    SyncData(PathBuf),
    /// Writeback of a range was started: path, offset, length.
    StartWriteback(PathBuf, u64, u64),
    /// The file length was set.
    SetLen(PathBuf, u64),
    /// The file was extended (preallocated) to at least a length.
    Allocate(PathBuf, u64),
    /// A hard link was made.
    Link(PathBuf, PathBuf),
    /// A file was renamed.
    Rename(PathBuf, PathBuf),
    /// A directory was created.
    CreateDir(PathBuf),
    /// An empty directory was removed.
    RemoveDir(PathBuf),
    /// A file was removed.
    Remove(PathBuf),
    /// A directory was synced.
    SyncDir(PathBuf),
}

/// Which operations fail, by index in the order they happen (0-based).
#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    /// `(index, fault)` pairs; an operation whose index is listed fails.
    pub faults: Vec<(usize, Fault)>,
    /// Fail every operation from this index on (a dead disk).
    pub fail_from: Option<(usize, Fault)>,
}

#[derive(Debug, Default)]
struct State {
    plan: FaultPlan,
    log: Vec<Op>,
}

/// The watcher behind [`FaultFs`]: it records each operation and fails the planned ones.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    state: Arc<Mutex<State>>,
}

/// The fault-injecting file system. Clones share one plan and one log.
pub type FaultFs = Watched<Faults>;

impl FaultFs {
    /// A file system that records everything and fails nothing until a plan is set.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Replace the fault plan; operation indices keep counting from the log's length.
    pub fn set_plan(&self, plan: FaultPlan) {
        self.watcher.lock().plan = plan;
    }

    /// Fail the operation `ahead` steps from now (0: the next one) with `fault`.
    pub fn fail_ahead(&self, ahead: usize, fault: Fault) {
        let at = self.op_count() + ahead;
        self.set_plan(FaultPlan {
            faults: vec![(at, fault)],
            fail_from: None,
        });
    }

    /// The operations recorded so far.
    #[must_use]
    pub fn log(&self) -> Vec<Op> {
        self.watcher.lock().log.clone()
    }

    /// Number of operations recorded so far.
    #[must_use]
    pub fn op_count(&self) -> usize {
        self.watcher.lock().log.len()
    }
}

impl Faults {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Op {
    fn of(event: &Event<'_>) -> Self {
        let owned = Path::to_path_buf;
        match *event {
            Event::Open { path, mode, .. } => Self::Open(owned(path), mode),
            Event::Write { path, offset, data } => Self::Write(owned(path), offset, data.len()),
            Event::SyncData { path } => Self::SyncData(owned(path)),
            Event::StartWriteback { path, offset, len } => {
                Self::StartWriteback(owned(path), offset, len)
            }
            Event::SetLen { path, len } => Self::SetLen(owned(path), len),
            Event::Allocate { path, len } => Self::Allocate(owned(path), len),
            Event::Link { from, to } => Self::Link(owned(from), owned(to)),
            Event::Rename { from, to } => Self::Rename(owned(from), owned(to)),
            Event::CreateDir { dir } => Self::CreateDir(owned(dir)),
            Event::RemoveDir { dir } => Self::RemoveDir(owned(dir)),
            Event::Remove { path } => Self::Remove(owned(path)),
            Event::SyncDir { dir } => Self::SyncDir(owned(dir)),
        }
    }
}

fn injected(fault: Fault) -> io::Error {
    match fault {
        Fault::NoSpace => io::Error::from_raw_os_error(28),
        Fault::Eio | Fault::ShortWrite => io::Error::from_raw_os_error(5),
        Fault::Panic => panic!("injected panic"),
    }
}

impl Watcher for Faults {
    type File = ();

    /// Record the operation and return the fault planned for it, if any.
    fn before(&self, event: &Event<'_>) -> Verdict {
        let mut state = self.lock();
        let index = state.log.len();
        state.log.push(Op::of(event));
        let listed = state.plan.faults.iter().find(|(at, _)| *at == index);
        let fault = listed.map(|(_, fault)| *fault).or_else(|| {
            state
                .plan
                .fail_from
                .filter(|(from, _)| index >= *from)
                .map(|(_, f)| f)
        });
        drop(state);
        match (fault, event) {
            (None, _) => Verdict::Run,
            (Some(Fault::ShortWrite), Event::Write { data, .. }) => Verdict::Torn {
                bytes: data.len() / 2,
                error: injected(Fault::ShortWrite),
            },
            (Some(fault), _) => Verdict::Fail(injected(fault)),
        }
    }

    fn opened(&self, _event: &Event<'_>) {}
}
