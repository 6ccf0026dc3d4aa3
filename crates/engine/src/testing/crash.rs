//! Crash-state exploration, in the manner of ALICE (OSDI 2014): record a workload's file-system
//! operations, then build every crash state the file system allows at every point of the
//! trace, for recovery to be checked against.
//!
//! At a crash point, for every file with writes since its last fdatasync, the states keep
//! them all, drop them all, or keep all but the last and tear the last one after any of its
//! bytes (every byte for writes up to 256 bytes; for longer ones the first and last three
//! bytes and every 64th of the way); directory operations (create, link, rename, remove) since
//! the last directory fsync are either all applied or all undone. Files are tracked by
//! identity, not name, so a rename or link moves the same contents.
//!
//! The workload's files live in one directory. When the workload creates that directory (and
//! its missing parents), each created directory is durable only once its parent was fsynced
//! after the creation; until all are, the states include the empty one: the directory gone.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::watch::{Event, Watched, Watcher};
use crate::io::VfsFile;

/// One recorded operation. Files are named by the identity the recorder gave them.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum TraceOp {
    /// A new, empty file appeared under a name.
    Create {
        /// Its name.
        name: String,
        /// Its identity.
        file: usize,
    },
    /// Bytes written at an offset.
    Write {
        /// The file.
        file: usize,
        /// Where.
        offset: u64,
        /// What.
        data: Vec<u8>,
    },
    /// The length set.
    SetLen {
        /// The file.
        file: usize,
        /// The new length.
        len: u64,
    },
    /// File data made durable.
    SyncData {
        /// The file.
        file: usize,
    },
    /// A second name for a file.
    Link {
        /// Existing name.
        from: String,
        /// New name.
        to: String,
    },
    /// A name moved, replacing the target.
    Rename {
        /// Old name.
        from: String,
        /// New name.
        to: String,
    },
    /// A name removed.
    Remove {
        /// The name.
        name: String,
    },
    /// The directory's names made durable.
    SyncDir,
    /// A directory created (the one the files live in, or one of its parents).
    CreateDir {
        /// Its path.
        dir: PathBuf,
    },
    /// A directory holding a created directory fsynced: the creations in it are durable.
    SyncParent {
        /// Its path.
        dir: PathBuf,
    },
}

#[derive(Debug, Default)]
struct Recorder {
    trace: Vec<TraceOp>,
    names: BTreeMap<String, usize>,
    next_file: usize,
}

/// The watcher behind [`RecordingFs`]: it records what each operation did, once it succeeded.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    state: Arc<Mutex<Recorder>>,
}

/// A file system that works on the real one and records every mutating operation in a single
/// directory, for [`crash_states`].
pub type RecordingFs = Watched<Trace>;

fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl RecordingFs {
    /// A recorder with an empty trace; the directory it works in must start empty.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The operations recorded so far.
    #[must_use]
    pub fn trace(&self) -> Vec<TraceOp> {
        self.watcher.lock().trace.clone()
    }

    /// How many operations have been recorded.
    #[must_use]
    pub fn len(&self) -> usize {
        self.watcher.lock().trace.len()
    }

    /// Whether nothing has been recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Trace {
    fn lock(&self) -> MutexGuard<'_, Recorder> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the trace created a directory in `dir`.
    fn created_in(&self, dir: &Path) -> bool {
        self.lock()
            .trace
            .iter()
            .any(|op| matches!(op, TraceOp::CreateDir { dir: made } if made.parent() == Some(dir)))
    }

    fn record(&self, op: TraceOp) {
        let mut state = self.lock();
        match &op {
            TraceOp::Create { name, file } => {
                state.names.insert(name.clone(), *file);
            }
            TraceOp::Link { from, to } => {
                if let Some(file) = state.names.get(from).copied() {
                    state.names.insert(to.clone(), file);
                }
            }
            TraceOp::Rename { from, to } => {
                if let Some(file) = state.names.remove(from) {
                    state.names.insert(to.clone(), file);
                }
            }
            TraceOp::Remove { name } => {
                state.names.remove(name);
            }
            _ => {}
        }
        state.trace.push(op);
    }
}

impl Watcher for Trace {
    /// The file's identity; `None` for files the recorder never saw created (the lock file of
    /// a foreign directory).
    type File = Option<usize>;

    fn opened(&self, event: &Event<'_>) -> Option<usize> {
        let Event::Open { path, existed, .. } = *event else {
            return None;
        };
        let name = name_of(path);
        if existed {
            return self.lock().names.get(&name).copied();
        }
        let file = {
            let mut state = self.lock();
            state.next_file += 1;
            state.next_file - 1
        };
        self.record(TraceOp::Create { name, file });
        Some(file)
    }

    fn after(&self, event: &Event<'_>, file: Option<(&Option<usize>, &dyn VfsFile)>) {
        let op = match (*event, file) {
            (Event::Link { from, to }, _) => TraceOp::Link {
                from: name_of(from),
                to: name_of(to),
            },
            (Event::Rename { from, to }, _) => TraceOp::Rename {
                from: name_of(from),
                to: name_of(to),
            },
            (Event::Remove { path }, _) => TraceOp::Remove {
                name: name_of(path),
            },
            (Event::CreateDir { dir }, _) => TraceOp::CreateDir {
                dir: dir.to_path_buf(),
            },
            (Event::SyncDir { dir }, _) if self.created_in(dir) => TraceOp::SyncParent {
                dir: dir.to_path_buf(),
            },
            (Event::SyncDir { .. }, _) => TraceOp::SyncDir,
            (Event::Write { offset, data, .. }, Some((&Some(file), _))) => TraceOp::Write {
                file,
                offset,
                data: data.to_vec(),
            },
            (Event::SyncData { .. }, Some((&Some(file), _))) => TraceOp::SyncData { file },
            (Event::SetLen { len, .. }, Some((&Some(file), _))) => TraceOp::SetLen { file, len },
            // Recorded as the length it leaves: preallocated space reads back as zeros.
            (Event::Allocate { .. }, Some((&Some(file), handle))) => match handle.size() {
                Ok(len) => TraceOp::SetLen { file, len },
                Err(_) => return,
            },
            _ => return,
        };
        self.record(op);
    }
}

/// A directory's contents after a crash: file name to bytes.
pub type CrashState = BTreeMap<String, Vec<u8>>;

#[derive(Clone, Debug, Default)]
struct FileModel {
    durable: Vec<u8>,
    current: Vec<u8>,
    /// Data operations since the last fdatasync, in order.
    pending: Vec<TraceOp>,
}

fn apply(content: &mut Vec<u8>, op: &TraceOp) {
    match op {
        TraceOp::Write { offset, data, .. } => {
            let start = usize::try_from(*offset).unwrap_or(usize::MAX);
            if content.len() < start + data.len() {
                content.resize(start + data.len(), 0);
            }
            content[start..start + data.len()].copy_from_slice(data);
        }
        TraceOp::SetLen { len, .. } => content.resize(usize::try_from(*len).unwrap_or(0), 0),
        _ => {}
    }
}

/// The ways unsynced data can survive a crash.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum DataFate {
    Kept,
    Lost,
    /// All but the last pending write kept; of the last, only its first this many bytes.
    Torn(usize),
}

/// Where a write of `len` bytes may be torn: after each of its bytes but the last, all of them
/// when there are few, else the ends and every 64th of the way.
fn tear_points(len: usize) -> Vec<usize> {
    if len <= 256 {
        return (1..len).collect();
    }
    let mut points: Vec<usize> = [1, 2, 3, len - 3, len - 2, len - 1]
        .into_iter()
        .chain((1..64).map(|i| i * len / 64))
        .collect();
    points.sort_unstable();
    points.dedup();
    points
}

impl FileModel {
    fn content(&self, fate: DataFate) -> Vec<u8> {
        match fate {
            DataFate::Kept => self.current.clone(),
            DataFate::Lost => self.durable.clone(),
            DataFate::Torn(keep) => {
                let mut content = self.durable.clone();
                let Some((last, earlier)) = self.pending.split_last() else {
                    return content;
                };
                earlier.iter().for_each(|op| apply(&mut content, op));
                if let TraceOp::Write { file, offset, data } = last {
                    let keep = keep.min(data.len());
                    apply(
                        &mut content,
                        &TraceOp::Write {
                            file: *file,
                            offset: *offset,
                            data: data[..keep].to_vec(),
                        },
                    );
                } else {
                    apply(&mut content, last);
                }
                content
            }
        }
    }
}

/// Every distinct crash state after the first `prefix` operations of `trace`, which started
/// in an empty directory.
#[must_use]
pub fn crash_states(trace: &[TraceOp], prefix: usize) -> Vec<CrashState> {
    let mut files: BTreeMap<usize, FileModel> = BTreeMap::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    let mut durable_names: BTreeMap<String, usize> = BTreeMap::new();
    // Each directory the trace created, and whether its creation is durable.
    let mut dirs: Vec<(&Path, bool)> = Vec::new();
    for op in &trace[..prefix] {
        match op {
            TraceOp::Create { name, file } => {
                files.insert(*file, FileModel::default());
                names.insert(name.clone(), *file);
            }
            TraceOp::Write { file, .. } | TraceOp::SetLen { file, .. } => {
                if let Some(model) = files.get_mut(file) {
                    apply(&mut model.current, op);
                    model.pending.push(op.clone());
                }
            }
            TraceOp::SyncData { file } => {
                if let Some(model) = files.get_mut(file) {
                    model.durable = model.current.clone();
                    model.pending.clear();
                }
            }
            TraceOp::Link { from, to } => {
                if let Some(file) = names.get(from).copied() {
                    names.insert(to.clone(), file);
                }
            }
            TraceOp::Rename { from, to } => {
                if let Some(file) = names.remove(from) {
                    names.insert(to.clone(), file);
                }
            }
            TraceOp::Remove { name } => {
                names.remove(name);
            }
            TraceOp::SyncDir => durable_names = names.clone(),
            TraceOp::CreateDir { dir } => dirs.push((dir, false)),
            TraceOp::SyncParent { dir } => {
                for (made, durable) in &mut dirs {
                    *durable |= made.parent() == Some(dir.as_path());
                }
            }
        }
    }
    // Tear points of every file's last unsynced write, so each file is torn at each of its own.
    let longest = files
        .values()
        .filter_map(|m| match m.pending.last() {
            Some(TraceOp::Write { data, .. }) => Some(data.len()),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let fates: Vec<DataFate> = [DataFate::Kept, DataFate::Lost]
        .into_iter()
        .chain(tear_points(longest).into_iter().map(DataFate::Torn))
        .collect();
    let mut seen = BTreeSet::new();
    let mut states = Vec::new();
    for directory in [&names, &durable_names] {
        for &fate in &fates {
            let state: CrashState = directory
                .iter()
                .filter_map(|(name, file)| {
                    files
                        .get(file)
                        .map(|model| (name.clone(), model.content(fate)))
                })
                .collect();
            if seen.insert(state.clone()) {
                states.push(state);
            }
        }
    }
    if dirs.iter().any(|(_, durable)| !durable) && seen.insert(CrashState::new()) {
        states.push(CrashState::new());
    }
    states
}

/// Write `state` into the empty directory `dir`.
///
/// # Errors
/// I/O errors.
pub fn materialize(state: &CrashState, dir: &Path) -> io::Result<PathBuf> {
    for (name, content) in state {
        std::fs::write(dir.join(name), content)?;
    }
    Ok(dir.to_path_buf())
}
