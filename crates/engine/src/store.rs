//! The Store: a directory holding a WAL, its snapshots and archives, and the MANIFEST that
//! commits them. Opening recovers; checkpoints rotate; prune applies retention.
//!
//! Recovery: the MANIFEST names the live snapshot (without a MANIFEST, the snapshot the WAL
//! header names, if any); its body hash is verified (a mismatch is an error, never a silent
//! fallback); a rotation interrupted after its commit is finished; replay yields the WAL's
//! entries above the snapshot, skipping watermarks and repeated replicated entries.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use crate::backup::{self, Upto};
use crate::batch::Batch;
use crate::committer::{Committer, Reply};
use crate::consumer::{self, Capped, Log, Summary};
use crate::dir_lock::lock_dir;
use crate::error::{Error, Result};
use crate::filename::StoreFile;
use crate::frame::{FLAG_CHECKPOINT_WATERMARK, Origin};
use crate::io::{LockKind, OpenMode, Vfs};
use crate::manifest::Manifest;
use crate::publish::make_dirs;
use crate::reader::WalReader;
use crate::retention::{PruneOutcome, RetentionPolicy, prune};
use crate::rotation::{Rotation, begin, begin_queued, finish};
use crate::scan::read_file_header;
use crate::snapshot::{SnapshotBuilder, SnapshotReader};
use crate::writer::{WalOptions, WalWriter};

/// What recovery found and did.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Recovery {
    /// Sequence of the live snapshot (0: none).
    pub snapshot_seq: u64,
    /// Whether a rotation interrupted after its commit was finished.
    pub finished_rotation: bool,
    /// Consumers whose position was past the recovered end of the log, set back to it.
    pub capped_consumers: Vec<Capped>,
}

/// The live snapshot of the store in `dir`, as its MANIFEST names it now, read beside the
/// process that owns the store (a shared store's client). A snapshot pruned between reading
/// the MANIFEST and opening it was replaced by a newer one: the MANIFEST is read again.
///
/// # Errors
/// MANIFEST and snapshot errors; `StoreInconsistent` when the file named holds another
/// sequence.
pub fn live_snapshot(vfs: &Arc<dyn Vfs>, dir: &Path) -> Result<Option<SnapshotReader>> {
    let mut tries = 0;
    loop {
        let live = Manifest::read(vfs.as_ref(), dir)?.map_or(0, |m| m.live_snapshot_seq);
        if live == 0 {
            return Ok(None);
        }
        let path = StoreFile::Snapshot(live).path(dir);
        let reader = match SnapshotReader::open(vfs.as_ref(), &path) {
            Err(Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound && tries < 8 =>
            {
                tries += 1;
                continue;
            }
            other => other?,
        };
        if reader.sequence() != live {
            return Err(Error::StoreInconsistent {
                dir: dir.to_path_buf(),
                detail: format!(
                    "{} holds the state after sequence {}, not {live}",
                    path.display(),
                    reader.sequence()
                ),
            });
        }
        return Ok(Some(reader));
    }
}

/// An open store. One per directory: the WAL's lock enforces it across processes.
#[derive(Debug)]
pub struct Store {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    committer: Arc<Committer>,
    snapshot: Mutex<Option<Arc<SnapshotReader>>>,
    recovery: Recovery,
    /// Serialises checkpoints and prunes of this store.
    maintenance: Mutex<()>,
    snapshot_level: i32,
}

fn guard<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Store {
    /// Create or recover the store in `dir`. A missing `dir` and missing parents are created,
    /// each made durable (its parent fsynced) before anything is written inside it.
    ///
    /// # Errors
    /// `WriterLockHeld`, every WAL, snapshot and MANIFEST error, `StoreInconsistent` when the
    /// files contradict each other.
    pub fn open(vfs: &Arc<dyn Vfs>, dir: &Path, options: WalOptions) -> Result<Self> {
        make_dirs(vfs.as_ref(), dir)?;
        let lock = lock_dir(vfs.as_ref(), dir, LockKind::Exclusive)?;
        let manifest = Manifest::read(vfs.as_ref(), dir)?;
        let wal_path = StoreFile::Wal.path(dir);
        let seed = manifest.as_ref().map_or(0, |m| m.live_snapshot_seq);
        let mut writer = WalWriter::open(
            vfs,
            &wal_path,
            WalOptions {
                snapshot_seq: seed,
                ..options
            },
        )?;
        let header_seq = writer.snapshot_seq();
        let live = manifest
            .as_ref()
            .map_or(header_seq, |m| m.live_snapshot_seq);
        let inconsistent = |detail: String| Error::StoreInconsistent {
            dir: dir.to_path_buf(),
            detail,
        };
        if header_seq > live {
            return Err(inconsistent(format!(
                "wal.log starts after snapshot {header_seq}, but the MANIFEST's live snapshot is {live}"
            )));
        }
        let snapshot = if live == 0 {
            None
        } else {
            let path = StoreFile::Snapshot(live).path(dir);
            if vfs
                .stat(&path)
                .map_err(|e| Error::io("stat", &path, e))?
                .is_none()
            {
                return Err(inconsistent(format!(
                    "the live snapshot {} is missing",
                    path.display()
                )));
            }
            let reader = SnapshotReader::open(vfs.as_ref(), &path)?;
            // An older valid snapshot copied over the live one would restore old state and
            // replay only after `live`: the entries between would never reach the app.
            if reader.sequence() != live {
                return Err(inconsistent(format!(
                    "{} holds the state after sequence {}, not {live}",
                    path.display(),
                    reader.sequence()
                )));
            }
            reader.verify()?;
            Some(Arc::new(reader))
        };
        if let Some(m) = &manifest {
            check_archives(vfs, dir, &m.archives).map_err(inconsistent)?;
        }
        let mut recovery = Recovery {
            snapshot_seq: live,
            ..Recovery::default()
        };
        if header_seq < live {
            // Committed rotation whose WAL reset did not happen: finish it.
            if writer.last_sequence() < live {
                return Err(inconsistent(format!(
                    "wal.log ends at {} but the live snapshot covers {live}",
                    writer.last_sequence()
                )));
            }
            let carry_from =
                offset_after(vfs, &wal_path, live)?.unwrap_or(writer.committed_offset());
            writer.reset(live, carry_from)?;
            recovery.finished_rotation = true;
        }
        if manifest.is_none() && live > 0 {
            // Adopt the WAL header's snapshot in a MANIFEST so later rotations extend it.
            Manifest {
                live_snapshot_seq: live,
                active_wal_seq: live,
                archives: Vec::new(),
            }
            .write(vfs.as_ref(), dir)?;
        }
        drop(lock);
        // Everything the writer recovered is durable now: no position may pass it.
        recovery.capped_consumers = consumer::cap(vfs.as_ref(), dir, writer.last_sequence())?;
        Ok(Self {
            vfs: Arc::clone(vfs),
            dir: dir.to_path_buf(),
            committer: Arc::new(Committer::start(writer)?),
            snapshot: Mutex::new(snapshot),
            recovery,
            maintenance: Mutex::new(()),
            snapshot_level: options.compression.level,
        })
    }

    /// The committer that owns the store's WAL writer: append, flush and close through it.
    #[must_use]
    pub fn committer(&self) -> &Arc<Committer> {
        &self.committer
    }

    /// The store directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What recovery found and did at open.
    #[must_use]
    pub const fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// The live snapshot, if there is one.
    #[must_use]
    pub fn snapshot(&self) -> Option<Arc<SnapshotReader>> {
        guard(&self.snapshot).clone()
    }

    /// A reader of the entries after the live snapshot, from `from` on.
    ///
    /// # Errors
    /// I/O and WAL header errors.
    pub fn replay(&self, from: u64) -> Result<Replay> {
        self.check_open()?;
        let snapshot_seq = self.snapshot().map_or(0, |s| s.sequence());
        Replay::open(&self.vfs, &self.dir, snapshot_seq, from)
    }

    /// Snapshot `sections` (name, bytes, compress) at a new watermark sequence and rotate.
    /// Appends continue meanwhile. Blocks; call it from a worker thread.
    ///
    /// # Errors
    /// Section errors (nothing is written), and the errors of [`begin`] and [`finish`].
    pub fn checkpoint(&self, sections: Vec<(String, Vec<u8>, bool)>) -> Result<Rotation> {
        let builder = self.builder(sections)?;
        let sequence = begin(&self.committer)?;
        self.finish_checkpoint(builder, sequence)
    }

    /// Check `sections` against the caps, ready for [`Self::finish_checkpoint`].
    ///
    /// # Errors
    /// `InvalidArgument`, `DuplicateSection`, `SnapshotTooLarge`.
    pub fn builder(&self, sections: Vec<(String, Vec<u8>, bool)>) -> Result<SnapshotBuilder> {
        SnapshotBuilder::with_sections(0, self.snapshot_level, sections)
    }

    /// Queue a checkpoint watermark now: the snapshot finished with it must hold the state
    /// after every append queued before this call. `reply` gets its sequence.
    pub fn begin_checkpoint(&self, reply: Reply<u64>) {
        begin_queued(&self.committer, reply);
    }

    /// Publish `builder` at the sequence [`Self::begin_checkpoint`] returned and rotate. Blocks.
    ///
    /// # Errors
    /// As [`finish`].
    pub fn finish_checkpoint(&self, builder: SnapshotBuilder, sequence: u64) -> Result<Rotation> {
        let _maintenance = guard(&self.maintenance);
        let wal_path = StoreFile::Wal.path(&self.dir);
        let rotation = finish(&self.committer, &self.vfs, &wal_path, builder, sequence)?;
        let reader = SnapshotReader::open(self.vfs.as_ref(), &rotation.snapshot.path)?;
        *guard(&self.snapshot) = Some(Arc::new(reader));
        Ok(rotation)
    }

    /// Back up the store to `dest` (which must not exist) while appends go on: every entry
    /// committed when the backup took the directory lock. Returns the last sequence it holds.
    /// Blocks; call it from a worker thread.
    ///
    /// # Errors
    /// As [`backup::backup`].
    pub fn backup(&self, dest: &Path) -> Result<u64> {
        self.check_open()?;
        backup::backup(&self.vfs, &self.dir, dest, || {
            let state = self.committer.state();
            Upto::Committed {
                offset: state.committed_offset,
                sequence: state.last_sequence,
            }
        })
    }

    /// Apply `policy`. Blocks; call it from a worker thread.
    ///
    /// # Errors
    /// As [`prune`].
    pub fn prune(&self, policy: &RetentionPolicy) -> Result<PruneOutcome> {
        self.check_open()?;
        let _maintenance = guard(&self.maintenance);
        prune(self.vfs.as_ref(), &self.dir, policy, SystemTime::now())
    }

    /// The position of the durable consumer `name`, registering it at `start` first if it is
    /// new. Blocks (a flush, when `start` is not yet durable).
    ///
    /// # Errors
    /// `Closed`, and as [`consumer::register`].
    pub fn consumer(&self, name: &str, start: u64) -> Result<u64> {
        self.check_open()?;
        consumer::register(self.vfs.as_ref(), &self.dir, name, start, self.log())
    }

    /// Acknowledge everything up to `position` for consumer `name`, flushing first what is
    /// not yet durable; returns the position kept. Blocks.
    ///
    /// # Errors
    /// `Closed`, and as [`consumer::ack`].
    pub fn ack(&self, name: &str, position: u64) -> Result<u64> {
        self.check_open()?;
        consumer::ack(self.vfs.as_ref(), &self.dir, name, position, self.log())
    }

    /// Every registered consumer, damaged ones included, with its lag behind the last
    /// committed sequence.
    ///
    /// # Errors
    /// `Closed`, and as [`consumer::describe`].
    pub fn consumers(&self) -> Result<Vec<Summary>> {
        self.check_open()?;
        let last = self.committer.state().last_sequence;
        consumer::describe(self.vfs.as_ref(), &self.dir, last)
    }

    /// Forget consumer `name`; whether it was registered.
    ///
    /// # Errors
    /// `Closed`, and as [`consumer::remove`].
    pub fn remove_consumer(&self, name: &str) -> Result<bool> {
        self.check_open()?;
        consumer::remove(self.vfs.as_ref(), &self.dir, name)
    }

    fn log(&self) -> Log<'_> {
        Log::Writer(&self.committer)
    }

    /// A closed store reads and changes nothing.
    fn check_open(&self) -> Result<()> {
        if self.committer.is_closed() {
            return Err(Error::Closed { what: "store" });
        }
        Ok(())
    }
}

/// Each listed archive that is present must be a WAL whose header starts before the sequence
/// its name ends at (one cheap header read each); a missing one is for `verify` to report.
fn check_archives(
    vfs: &Arc<dyn Vfs>,
    dir: &Path,
    archives: &[u64],
) -> std::result::Result<(), String> {
    for &seq in archives {
        let path = StoreFile::Archive(seq).path(dir);
        let file = match vfs.open(&path, OpenMode::Read) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            opened => opened.map_err(|e| Error::io("open", &path, e).to_string())?,
        };
        let header = read_file_header(file.as_ref(), &path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if header.snapshot_seq >= seq {
            return Err(format!(
                "{} starts after sequence {}, so it cannot end at {seq}",
                path.display(),
                header.snapshot_seq
            ));
        }
    }
    Ok(())
}

/// Offset of the first frame with a sequence above `sequence`, if any.
fn offset_after(vfs: &Arc<dyn Vfs>, wal_path: &Path, sequence: u64) -> Result<Option<u64>> {
    let mut reader = WalReader::open(vfs, wal_path)?;
    Ok(reader.next_frame(sequence + 1)?.map(|frame| frame.offset))
}

/// The entries a store replays: above the snapshot, no watermarks, each replicated entry once.
///
/// A source's entries arrive in its sequence order, so a replicated entry is a repeat when its
/// source sequence is not above the highest applied from that source: memory grows with the
/// number of source nodes, not of entries.
#[derive(Debug)]
pub struct Replay {
    reader: WalReader,
    from: u64,
    /// Highest source sequence applied, per source node.
    applied: HashMap<u64, u64>,
}

impl Replay {
    /// The entries of the active WAL of the store in `dir` after snapshot `snapshot_seq`, from
    /// `from` on; safe beside a live writer (this process's or another's).
    ///
    /// # Errors
    /// I/O and WAL header errors.
    pub fn open(vfs: &Arc<dyn Vfs>, dir: &Path, snapshot_seq: u64, from: u64) -> Result<Self> {
        Ok(Self {
            reader: WalReader::open(vfs, &StoreFile::Wal.path(dir))?,
            from: from.max(snapshot_seq + 1),
            applied: HashMap::new(),
        })
    }

    /// Up to `max_entries` entries (or about `max_bytes` of payload); empty at the end.
    ///
    /// # Errors
    /// As [`WalReader::collect`].
    pub fn next_batch<B: Batch>(&mut self, max_entries: usize, max_bytes: usize) -> Result<B> {
        let applied = &mut self.applied;
        self.reader
            .collect(self.from, max_entries, max_bytes, |frame| {
                if frame.flags & FLAG_CHECKPOINT_WATERMARK != 0 {
                    return false;
                }
                let Origin::Replicated {
                    source_node_id,
                    source_seq,
                } = frame.origin
                else {
                    return true;
                };
                let highest = applied.entry(source_node_id).or_insert(0);
                if source_seq <= *highest {
                    return false;
                }
                *highest = source_seq;
                true
            })
    }
}
