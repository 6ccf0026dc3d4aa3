//! Online backup: a consistent copy of a store directory while appends and checkpoints go on.
//!
//! Under the directory lock held shared (so no rotation or prune runs meanwhile, while appends
//! do), the files that never change once published (the live snapshot, the archives the
//! MANIFEST lists, consumer and replica positions) are hard-linked into a staging directory beside the
//! destination (copied when it is on another file system), and the active WAL is copied up to
//! a consistency point: the committed offset when the writer is in this process, else the end
//! of the prefix its seal records as durable. The MANIFEST is written last; then every file
//! and the staging directory are fsynced, and the staging directory is renamed to the
//! destination and its parent fsynced. So a backup killed at any point leaves either a
//! complete store at the destination or none there (only a `*.backup.tmp` staging directory),
//! never a store that opens with silent gaps. A backup that fails removes its staging
//! directory and the destination's parents it created: it leaves nothing behind.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::dir_lock::lock_dir;
use crate::error::{Error, Result};
use crate::file_header::FILE_HEADER_LEN;
use crate::filename::{StoreFile, consumer_file, parse_replica_file};
use crate::inspect::Progress;
use crate::io::{LockKind, OpenMode, Vfs};
use crate::manifest::Manifest;
use crate::publish::{Placement, Staging, copy_file, copy_range, publish, require_absent};
use crate::reader::WalReader;

/// How far into the active WAL a backup copies.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Upto {
    /// To this committed offset, holding entries up to this sequence (the writer's state, read
    /// under the lock).
    Committed {
        /// Offset just past the last committed entry.
        offset: u64,
        /// Its sequence.
        sequence: u64,
    },
    /// To the end of the prefix the seal records as fdatasynced (a writer in another process).
    Durable,
}

/// Back up the store in `dir` to `dest`, which must not exist; `upto` says how far into the
/// active WAL (see [`Upto`]); `committed` is called under the lock to learn it. Returns the
/// sequence of the last entry the backup holds.
///
/// # Errors
/// `InvalidArgument` if `dest` exists; I/O and MANIFEST errors (nothing is then created, at
/// the destination or beside it, nor in a `dir` that holds no store).
pub fn backup(
    vfs: &Arc<dyn Vfs>,
    dir: &Path,
    dest: &Path,
    committed: impl FnOnce() -> Upto,
) -> Result<u64> {
    backup_counted(vfs, dir, dest, committed, &Progress::default())
}

/// [`backup`], counting the bytes of the active WAL copied into `progress` (the other files
/// are hard-linked, or copied where they cannot be).
///
/// # Errors
/// As [`backup`].
pub fn backup_counted(
    vfs: &Arc<dyn Vfs>,
    dir: &Path,
    dest: &Path,
    committed: impl FnOnce() -> Upto,
    progress: &Progress,
) -> Result<u64> {
    require_absent(vfs.as_ref(), dest, "backup")?;
    let wal = StoreFile::Wal.path(dir);
    // Before the lock, whose file the lock would create in a directory that is not a store:
    // the WAL must open, and where it does not, the OS's own error says why (ENOENT, EACCES).
    drop(
        vfs.open(&wal, OpenMode::Read)
            .map_err(|e| Error::io("open", &wal, e))?,
    );
    let _lock = lock_dir(vfs.as_ref(), dir, LockKind::Shared)?;
    let staging = Staging::create(vfs, dest, "backup")?;
    let staged = staging.path();
    // Replica positions first: each names an anchor its writer had made durable, and the WAL's
    // end is fixed after this, so the copy holds everything up to every anchor it carries.
    for entry in vfs.list(dir).map_err(|e| Error::io("list", dir, e))? {
        if parse_replica_file(&entry.name).is_some() {
            place(
                vfs.as_ref(),
                &dir.join(&entry.name),
                &staged.join(&entry.name),
            )?;
        }
    }
    let manifest = Manifest::read(vfs.as_ref(), dir)?;
    let reader = WalReader::open(vfs, &wal)?;
    let (end, sequence) = match committed() {
        Upto::Committed { offset, sequence } => (offset, sequence),
        Upto::Durable => durable_point(vfs, &reader)?,
    };
    // Every position file is carried byte for byte, a damaged one too: a backup is a copy, and
    // the copy's retention then keeps for it what the source's keeps.
    let mut carried: Vec<String> = crate::consumer::scan(vfs.as_ref(), dir)?
        .into_iter()
        .map(|listed| consumer_file(&listed.name))
        .collect();
    if let Some(m) = &manifest {
        if m.live_snapshot_seq > 0 {
            carried.push(StoreFile::Snapshot(m.live_snapshot_seq).name());
        }
        carried.extend(m.archives.iter().map(|&n| StoreFile::Archive(n).name()));
    } else if reader.snapshot_seq() > 0 {
        carried.push(StoreFile::Snapshot(reader.snapshot_seq()).name());
    }
    for name in &carried {
        place(vfs.as_ref(), &dir.join(name), &staged.join(name))?;
    }
    let source = vfs
        .open(&wal, OpenMode::Read)
        .map_err(|e| Error::io("open", &wal, e))?;
    publish(
        vfs.as_ref(),
        &StoreFile::Wal.path(staged),
        Placement::Replace,
        |file, temp| {
            progress.total.store(end, Ordering::Relaxed);
            let mut done = 0;
            while done < end {
                let len = (end - done).min(PROGRESS_STEP);
                copy_range(source.as_ref(), &wal, done, file, temp, done, len)?;
                done += len;
                progress.done.store(done, Ordering::Relaxed);
            }
            Ok(())
        },
    )?;
    if let Some(m) = manifest {
        m.write(vfs.as_ref(), staged)?;
    }
    staging.place()?;
    Ok(sequence)
}

/// How much of the active WAL is copied between two updates of the progress.
const PROGRESS_STEP: u64 = 8 << 20;

/// Hard-link `from` to `to` (the file never changes once published), or copy it durably
/// where a link cannot be made (another file system).
fn place(vfs: &dyn Vfs, from: &Path, to: &Path) -> Result<()> {
    if vfs.link(from, to).is_ok() {
        return Ok(());
    }
    copy_file(vfs, from, to)
}

/// The end of the durable prefix of the active WAL, and the sequence of its last entry.
fn durable_point(vfs: &Arc<dyn Vfs>, reader: &WalReader) -> Result<(u64, u64)> {
    let end = reader.durable_end(vfs.as_ref())?;
    let mut scan = WalReader::open(vfs, reader.path())?;
    let mut sequence = reader.snapshot_seq();
    while let Some(frame) = scan.next_frame(0)? {
        if frame.end > end {
            break;
        }
        sequence = frame.sequence;
    }
    Ok((end.max(FILE_HEADER_LEN as u64), sequence))
}
