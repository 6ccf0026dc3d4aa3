//! MANIFEST-committed rotation: seal the WAL prefix behind a snapshot and start a new epoch.
//!
//! | phase | step | a crash or failure here leaves |
//! |---|---|---|
//! | 0 | fix the sequence N: append a durable checkpoint watermark | the old epoch, plus a watermark that replay skips |
//! | 1 | publish `snapshot.N.snap` | the old epoch and an orphan snapshot (pruned later) |
//! | 2 | publish `wal.N.archive`: the WAL bytes up to N | the old epoch and an orphan archive (pruned later) |
//! | 3 | replace the MANIFEST: live N, archives + N. **The commit point.** | the new epoch; the old `wal.log` still holds N and what followed it |
//! | 4 | replace `wal.log` with header N plus the frames after N | the new epoch |
//!
//! Phases 1 and 2 run on the caller's thread while appends continue; only 3 and 4 run on the
//! committer thread, so appends wait just for the MANIFEST write and the carry-over of the
//! few frames appended meanwhile. Recovery finishes an interrupted phase 4.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::committer::{Committer, Reply};
use crate::dir_lock::lock_dir;
use crate::error::{Error, Result};
use crate::filename::StoreFile;
use crate::io::{LockKind, OpenMode, Vfs};
use crate::manifest::Manifest;
use crate::publish::{Placement, copy_range, dir_of, publish};
use crate::snapshot::{PublishedSnapshot, SnapshotBuilder};
use crate::writer::WalWriter;

/// What a rotation did.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Rotation {
    /// The sequence the new snapshot covers.
    pub sequence: u64,
    /// The published snapshot.
    pub snapshot: PublishedSnapshot,
    /// The sealed WAL prefix.
    pub archive_path: PathBuf,
}

/// Phase 0: append a durable checkpoint watermark in queue order and anchor the new epoch at
/// it. The state a snapshot at its sequence holds must include every append queued before
/// this call and none after; every checkpoint is a new epoch, even with no entries since the
/// last one.
///
/// # Errors
/// Append and flush errors.
pub fn begin(committer: &Committer) -> Result<u64> {
    committer.call(WalWriter::append_watermark)
}

/// [`begin`] without waiting: the watermark is queued now, `reply` gets the outcome.
pub fn begin_queued(committer: &Committer, reply: Reply<u64>) {
    committer.submit(WalWriter::append_watermark, reply);
}

/// Phases 1 to 4 for the epoch [`begin`] anchored at `sequence`. Blocks; call it from a
/// worker thread.
///
/// # Errors
/// `InvalidArgument` if a later epoch is already committed; I/O and publish errors (before
/// the commit the writer stays usable; after it, a failure poisons the writer and reopening
/// finishes the rotation).
pub fn finish(
    committer: &Committer,
    vfs: &Arc<dyn Vfs>,
    wal_path: &Path,
    builder: SnapshotBuilder,
    sequence: u64,
) -> Result<Rotation> {
    let dir = dir_of(wal_path).to_path_buf();
    let _lock = lock_dir(vfs.as_ref(), &dir, LockKind::Exclusive)?;
    // Only rotations move anchors, and they are serialised by the lock held from here on.
    let offset = committer.call(move |w| {
        w.anchor_offset(sequence).ok_or_else(|| {
            Error::InvalidArgument(format!("no checkpoint was begun at sequence {sequence}"))
        })
    })?;
    let current = committer.state().snapshot_seq;
    let committed =
        Manifest::read(vfs.as_ref(), &dir)?.map_or(current, |m| m.live_snapshot_seq.max(current));
    if committed >= sequence {
        return Err(Error::InvalidArgument(format!(
            "a checkpoint at {committed} is already committed"
        )));
    }
    let snapshot = builder.at_sequence(sequence).publish(vfs.as_ref(), &dir)?;
    let archive_path = StoreFile::Archive(sequence).path(&dir);
    let wal = vfs
        .open(wal_path, OpenMode::Read)
        .map_err(|e| Error::io("open", wal_path, e))?;
    publish(
        vfs.as_ref(),
        &archive_path,
        Placement::Link {
            require_identical: true,
        },
        |file, temp| copy_range(wal.as_ref(), wal_path, 0, file, temp, 0, offset),
    )?;
    drop(wal);
    let vfs = Arc::clone(vfs);
    committer.call(move |w| commit_and_reset(w, vfs.as_ref(), &dir, sequence, offset))?;
    Ok(Rotation {
        sequence,
        snapshot,
        archive_path,
    })
}

/// Phases 3 and 4, on the committer thread.
fn commit_and_reset(
    w: &mut crate::WalWriter,
    vfs: &dyn Vfs,
    dir: &Path,
    sequence: u64,
    offset: u64,
) -> Result<()> {
    let mut archives = Manifest::read(vfs, dir)?
        .map(|m| m.archives)
        .unwrap_or_default();
    archives.push(sequence);
    archives.sort_unstable();
    archives.dedup();
    let next = Manifest {
        live_snapshot_seq: sequence,
        active_wal_seq: sequence,
        archives,
    };
    if let Err(error) = next.write(vfs, dir) {
        // If the rename happened the new epoch is visible but maybe not durable: stop here.
        if Manifest::read(vfs, dir)
            .ok()
            .flatten()
            .is_none_or(|m| m.live_snapshot_seq == sequence)
        {
            w.poison(&error);
        }
        return Err(error);
    }
    w.reset(sequence, offset)
        .inspect_err(|error| w.poison(error))
}
