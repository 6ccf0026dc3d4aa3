//! A fault-injecting, operation-recording file system for tests.
//!
//! Wraps [`StdFs`] and counts every mutating operation (open for write, write, sync, set_len,
//! allocate, link, remove, directory sync). A [`FaultPlan`] makes operation number `k` fail
//! with EIO, ENOSPC, or a short write, so a test can fail every step of a workload in turn.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::io::{DirEntry, LockKind, OpenMode, StdFs, Vfs, VfsFile};

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

/// The fault-injecting file system. Clones share one plan and one log.
#[derive(Clone, Debug, Default)]
pub struct FaultFs {
    state: Arc<Mutex<State>>,
}

impl FaultFs {
    /// A file system that records everything and fails nothing until a plan is set.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Replace the fault plan; operation indices keep counting from the log's length.
    pub fn set_plan(&self, plan: FaultPlan) {
        self.lock().plan = plan;
    }

    /// Fail the operation `ahead` steps from now (0: the next one) with `fault`.
    pub fn fail_ahead(&self, ahead: usize, fault: Fault) {
        let at = self.op_count() + ahead;
        self.set_plan(FaultPlan {
            faults: vec![(at, fault)],
            fail_from: None,
        });
    }

    /// This file system as a shared `Vfs` handle (sharing the plan and log).
    #[must_use]
    pub fn shared(&self) -> Arc<dyn Vfs> {
        Arc::new(self.clone())
    }

    /// The operations recorded so far.
    #[must_use]
    pub fn log(&self) -> Vec<Op> {
        self.lock().log.clone()
    }

    /// Number of operations recorded so far.
    #[must_use]
    pub fn op_count(&self) -> usize {
        self.lock().log.len()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Record `op` and return the fault planned for it, if any.
    fn record(&self, op: Op) -> Option<Fault> {
        let mut state = self.lock();
        let index = state.log.len();
        state.log.push(op);
        let listed = state.plan.faults.iter().find(|(at, _)| *at == index);
        listed.map(|(_, fault)| *fault).or_else(|| {
            state
                .plan
                .fail_from
                .filter(|(from, _)| index >= *from)
                .map(|(_, f)| f)
        })
    }
}

fn injected(fault: Fault) -> io::Error {
    match fault {
        Fault::NoSpace => io::Error::from_raw_os_error(28),
        Fault::Eio | Fault::ShortWrite => io::Error::from_raw_os_error(5),
        Fault::Panic => panic!("injected panic"),
    }
}

fn check(fault: Option<Fault>) -> io::Result<()> {
    fault.map_or(Ok(()), |f| Err(injected(f)))
}

impl Vfs for FaultFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn VfsFile>> {
        if mode != OpenMode::Read {
            check(self.record(Op::Open(path.to_path_buf(), mode)))?;
        }
        let inner = StdFs.open(path, mode)?;
        Ok(Box::new(FaultFile {
            fs: self.clone(),
            path: path.to_path_buf(),
            inner,
        }))
    }

    fn link(&self, from: &Path, to: &Path) -> io::Result<()> {
        check(self.record(Op::Link(from.to_path_buf(), to.to_path_buf())))?;
        StdFs.link(from, to)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        check(self.record(Op::Rename(from.to_path_buf(), to.to_path_buf())))?;
        StdFs.rename(from, to)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        StdFs.list(dir)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        check(self.record(Op::CreateDir(dir.to_path_buf())))?;
        StdFs.create_dir_all(dir)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        check(self.record(Op::Remove(path.to_path_buf())))?;
        StdFs.remove(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        check(self.record(Op::SyncDir(dir.to_path_buf())))?;
        StdFs.sync_dir(dir)
    }
}

#[derive(Debug)]
struct FaultFile {
    fs: FaultFs,
    path: PathBuf,
    inner: Box<dyn VfsFile>,
}

impl VfsFile for FaultFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }

    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        match self
            .fs
            .record(Op::Write(self.path.clone(), offset, buf.len()))
        {
            None => self.inner.write_all_at(buf, offset),
            Some(Fault::ShortWrite) => {
                self.inner.write_all_at(&buf[..buf.len() / 2], offset)?;
                Err(injected(Fault::ShortWrite))
            }
            Some(fault) => Err(injected(fault)),
        }
    }

    fn sync_data(&mut self) -> io::Result<()> {
        check(self.fs.record(Op::SyncData(self.path.clone())))?;
        self.inner.sync_data()
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        check(self.fs.record(Op::SetLen(self.path.clone(), len)))?;
        self.inner.set_len(len)
    }

    fn allocate(&mut self, len: u64) -> io::Result<()> {
        check(self.fs.record(Op::Allocate(self.path.clone(), len)))?;
        self.inner.allocate(len)
    }

    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }

    fn try_lock(&self) -> io::Result<bool> {
        self.inner.try_lock()
    }

    fn lock(&self, kind: LockKind) -> io::Result<()> {
        self.inner.lock(kind)
    }
}
