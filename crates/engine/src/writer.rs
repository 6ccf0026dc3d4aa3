//! The append-only WAL writer: one owner, positional writes, rollback on failure.
//!
//! Appends are *staged* (validated, compressed, given provisional sequences and timestamps)
//! and then *committed*: framed as one format v4 batch frame per commit (several when it passes
//! the caps of [`crate::scan::encode_records`]), one write, one fsync when the policy asks.
//! Staging many appends before one commit is how the [`crate::committer`] turns concurrent
//! appends into one batch and one fdatasync. A payload is staged by reference (a slice of the
//! buffer it arrived in, or its compressed form) and copied once, into the batch frame. A WAL
//! written in format v3 (read back from an older store) is appended to in v3 frames until a
//! rotation replaces it with a v4 file.
//!
//! Its [`options`] (sync policy, compression, preallocation, and their defaults) and the
//! [`entries`] an append hands it are modules of their own, re-exported here.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::batch_frame::Record;
use crate::error::{Error, Result};
use crate::file_header::{FILE_HEADER_LEN, FileHeader, Layout, le_u32, le_u64};
use crate::filename::{StoreFile, seal_path, torn_path};
use crate::frame::{self, FLAG_CHECKPOINT_WATERMARK, FrameFields, Origin, Producer};
use crate::hlc::{Hlc, HlcClock};
use crate::io::{OpenMode, Vfs, VfsFile};
use crate::publish::{Placement, copy_range, dir_of, publish, write_all};
use crate::scan::{FrameCursor, Step, TailRepair, encode_records_spliced, read_file_header};
use crate::seal::{LastFrame, Seal, open_sidecar};
use crate::warning::{self, Kind};

pub mod entries;
pub mod options;

pub use entries::{EntryView, NewEntries, NewEntry};
pub use options::{DEFAULT_PREALLOCATE, SyncPolicy, WalOptions};

/// Largest sequence the writer assigns: 2^53 - 1, so every sequence is exact as a JS number.
pub const MAX_SEQUENCE: u64 = (1 << 53) - 1;

/// A stored payload at least this large is not copied into the commit's frame bytes but written
/// from its own buffer between them: the write costs less than the copy.
const SPLICE_MIN: usize = 1 << 20;

/// A staged buffer larger than this is released after commit rather than kept for reuse.
const STAGING_RETAIN_LIMIT: usize = 4 << 20;

/// Committed bytes not yet synced whose writeback starts at once (see
/// `WalWriter::start_writeback`): big enough that the disk gets whole requests, small enough
/// that little is left for the fdatasync.
const WRITEBACK_CHUNK: u64 = 1 << 20;

/// The single writer of one WAL file. Holds the file's exclusive lock while it lives.
#[derive(Debug)]
pub struct WalWriter {
    vfs: Arc<dyn Vfs>,
    path: PathBuf,
    file: Box<dyn VfsFile>,
    options: WalOptions,
    clock: HlcClock,
    snapshot_seq: u64,
    last_sequence: u64,
    committed_offset: u64,
    /// Offset up to which writeback was started or data synced.
    written_back: u64,
    /// The file's length: `committed_offset` plus any preallocated zeros.
    allocated: u64,
    entries_since_fsync: u64,
    /// How the file's entries are framed (v4, or v3 for a file an older store wrote).
    layout: Layout,
    /// The staged entries, in sequence order.
    staged: Vec<Staged>,
    /// The frame bytes of a commit, kept for reuse, except the payloads in `spliced`.
    encoded: Vec<u8>,
    /// Large payloads left out of `encoded`: (their place in it, their index in `staged`).
    spliced: Vec<(usize, usize)>,
    staged_count: u64,
    /// The last committed frame.
    last_frame: Option<LastFrame>,
    /// The newest durable prefix, ready to be sealed.
    synced: Option<Seal>,
    /// The end of the prefix the seal on disk names (0: none).
    sealed_end: u64,
    /// The seal sidecar, opened at the first seal written.
    seal_file: Option<Box<dyn VfsFile>>,
    /// Whether the last seal write failed: warned about once, not at every commit.
    seal_failing: bool,
    /// Where the open-time scan started: past the sealed prefix, or at the first frame.
    scanned_from: u64,
    poisoned: Option<String>,
    tail_repair: Option<TailRepair>,
    /// Epoch anchors (sequence, offset just past it) of checkpoints not yet rotated; kept
    /// valid across resets.
    anchors: Vec<(u64, u64)>,
    /// fdatasyncs of the WAL that succeeded, and when the last one did.
    fdatasyncs: u64,
    last_fdatasync: Option<Instant>,
    /// What its writes and fdatasyncs have cost since it opened.
    io: IoTotals,
}

/// Bytes written to the WAL and the time spent writing and fdatasyncing them, since the writer
/// opened: a reader of two readings has the cost of what came between (the facade's
/// `selene-persist:commit` events carry those differences).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct IoTotals {
    /// Frame bytes written (committed).
    pub written_bytes: u64,
    /// Time in the writes.
    pub write_us: u64,
    /// Time in the fdatasyncs of the WAL.
    pub fdatasync_us: u64,
}

/// The store directory `path` is a file of, if it is one: its name is a store file's and a
/// MANIFEST sits beside it. A MANIFEST that cannot be examined counts as absent (opening
/// `path` itself then reports what is wrong).
fn store_of(vfs: &dyn Vfs, path: &Path) -> Option<PathBuf> {
    let named = path
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(StoreFile::parse);
    let dir = dir_of(path);
    let manifest = named.and_then(|_| vfs.stat(&StoreFile::Manifest.path(dir)).ok().flatten());
    manifest.map(|_| dir.to_path_buf())
}

/// Microseconds since `start`.
fn micros_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
}

impl WalWriter {
    /// [`WalWriter::open`] for a WAL of its own, refusing a file of a store directory
    /// ([`Error::FileInStore`]): only its store writes those.
    ///
    /// # Errors
    /// `FileInStore`, and those of [`WalWriter::open`].
    pub fn open_alone(vfs: &Arc<dyn Vfs>, path: &Path, options: WalOptions) -> Result<Self> {
        if let Some(dir) = store_of(vfs.as_ref(), path) {
            return Err(Error::FileInStore {
                path: path.to_path_buf(),
                dir,
            });
        }
        Self::open(vfs, path, options)
    }

    /// Open (creating if absent) the WAL at `path`, take its lock, scan it and cut a torn tail.
    ///
    /// # Errors
    /// `InvalidArgument` for bad options, `WriterLockHeld`, header errors, `MidLogCorruption`
    /// and sequence errors (the file is then left untouched), and I/O errors.
    pub fn open(vfs: &Arc<dyn Vfs>, path: &Path, options: WalOptions) -> Result<Self> {
        options.validate()?;
        let mut file = match vfs.open(path, OpenMode::ReadWrite) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                create(vfs.as_ref(), path, options.snapshot_seq)?;
                vfs.open(path, OpenMode::ReadWrite)
                    .map_err(|e| Error::io("open", path, e))?
            }
            Err(e) => return Err(Error::io("open", path, e)),
        };
        lock_writer(file.as_ref(), path, options.lock_patience)?;
        let header = read_file_header(file.as_ref(), path)?;
        let file_len = file.size().map_err(|e| Error::io("stat", path, e))?;
        let mut cursor = FrameCursor::new(file_len, header).without_payloads();
        let mut clock = HlcClock::default();
        let seal = Seal::examine(vfs.as_ref(), path, file.as_ref(), header, file_len)
            .map_err(|why| {
                if let Some(why) = why {
                    let detail =
                        format!("the seal was ignored ({why}); the whole file was scanned");
                    warning::report(Kind::SealIgnored, &seal_path(path), detail);
                }
            })
            .ok();
        let mut last_frame = None;
        let mut scanned_from = cursor.offset();
        if let Some(seal) = seal {
            // The prefix is trusted unread, except its last frame, whose payload is verified
            // again: the seal names it by its header only.
            cursor = cursor
                .starting_at(seal.last.offset, seal.last.first_sequence.saturating_sub(1))
                .sealed_until(seal.end);
            clock.observe(seal.clock);
            last_frame = Some(seal.last);
            scanned_from = seal.end;
        }
        let tail_repair = loop {
            match cursor.next(file.as_ref(), path)? {
                Step::Frame(frame) => {
                    clock.observe(frame.hlc);
                    let first_sequence = last_frame
                        .filter(|last: &LastFrame| last.offset == frame.offset)
                        .map_or(frame.sequence, |last| last.first_sequence);
                    last_frame = Some(LastFrame {
                        offset: frame.offset,
                        sequence: frame.sequence,
                        header_checksum: frame.unit_checksum,
                        first_sequence,
                    });
                }
                Step::End => break None,
                Step::Torn(repair) => break Some(repair),
            }
        };
        let mut allocated = file_len;
        let mut tail_repair = tail_repair;
        if let Some(repair) = tail_repair.as_mut() {
            repair.saved_bytes = save_torn(vfs.as_ref(), path, file.as_ref(), repair);
            tracing::warn!(path = %path.display(), reason = repair.reason.as_str(), offset = repair.offset,
                discarded = repair.discarded_bytes, "cutting torn WAL tail");
            file.set_len(repair.offset)
                .map_err(|e| Error::io("truncate", path, e))?;
            file.sync_data()
                .map_err(|e| Error::io("fdatasync", path, e))?;
            allocated = repair.offset;
        }
        let mut writer = Self {
            vfs: Arc::clone(vfs),
            path: path.to_path_buf(),
            file,
            options,
            clock,
            snapshot_seq: header.snapshot_seq,
            last_sequence: cursor.last_sequence(),
            committed_offset: cursor.offset(),
            written_back: cursor.offset(),
            allocated,
            entries_since_fsync: 0,
            layout: header.layout,
            staged: Vec::new(),
            encoded: Vec::new(),
            spliced: Vec::new(),
            staged_count: 0,
            last_frame,
            synced: seal,
            sealed_end: seal.map_or(0, |s| s.end),
            seal_file: None,
            seal_failing: false,
            scanned_from,
            poisoned: None,
            tail_repair,
            anchors: Vec::new(),
            fdatasyncs: 0,
            last_fdatasync: None,
            io: IoTotals::default(),
        };
        // Frames past the seal were left by a writer that died before sealing them, perhaps
        // before their fdatasync. Readers serve them from now on, so they are made durable and
        // sealed like any commit: a durable follower (a shipper) reads only what is sealed, and
        // would otherwise wait for them until the next commit.
        let sealed = seal.map_or(FILE_HEADER_LEN as u64, |s| s.end);
        if writer.committed_offset > sealed {
            // A cut tail was fdatasynced with its cut, and everything before it with it.
            if writer.tail_repair.is_none() {
                writer
                    .file
                    .sync_data()
                    .map_err(|e| Error::io("fdatasync", path, e))?;
            }
            writer.note_synced();
        }
        Ok(writer)
    }

    /// Validate, compress and frame `entries` behind anything already staged.
    /// Returns the sequences they will have once committed. On error nothing is staged.
    ///
    /// # Errors
    /// `Poisoned`, cap errors, `SequenceExhausted`.
    pub fn stage(&mut self, entries: &[NewEntry]) -> Result<RangeInclusive<u64>> {
        let sourced = entries.iter().map(|e| (e.view(), Some(&e.payload)));
        self.stage_flagged(entries.len(), sourced, false)
    }

    /// [`Self::stage`] of a request's entries, listed or packed.
    ///
    /// # Errors
    /// As [`Self::stage`].
    pub fn stage_entries(&mut self, entries: &NewEntries) -> Result<RangeInclusive<u64>> {
        self.stage_flagged(entries.len(), entries.sourced_views(), false)
    }

    /// Stage `entries`, each with the buffer its payload is a slice of (if any: a large
    /// payload is then staged as a slice of it rather than copied).
    fn stage_flagged<'a>(
        &mut self,
        count: usize,
        entries: impl Iterator<Item = (EntryView<'a>, Option<&'a Bytes>)> + Clone,
        watermark: bool,
    ) -> Result<RangeInclusive<u64>> {
        self.check_usable()?;
        if count == 0 {
            return Err(Error::InvalidArgument(
                "a batch needs at least one entry".into(),
            ));
        }
        entries.clone().try_for_each(|(e, _)| e.validate())?;
        if self.layout == Layout::V3 && entries.clone().any(|(e, _)| e.producer.is_some()) {
            return Err(Error::InvalidArgument(
                "a producer stamp needs a format v4 WAL; this one is v3 until its next rotation"
                    .into(),
            ));
        }
        let first = self.last_sequence + self.staged_count + 1;
        let last = first + count as u64 - 1;
        if last > MAX_SEQUENCE {
            return Err(Error::SequenceExhausted { last: first - 1 });
        }
        // One wall-clock read per batch: the clock ticks past it for each further entry.
        let wall = Hlc::wall();
        for (entry, source) in entries {
            let hlc = match entry.hlc {
                Some(hlc) => {
                    self.clock.observe(hlc);
                    hlc
                }
                None => self.clock.tick(wall),
            };
            let packed = self.options.compression.compress(entry.payload);
            let compressed = packed.is_some();
            let stored = match (packed, source) {
                (Some(packed), _) => Bytes::from(packed),
                (None, _) if entry.payload.is_empty() => Bytes::new(),
                (None, Some(source)) => source.slice_ref(entry.payload),
                (None, None) => Bytes::copy_from_slice(entry.payload),
            };
            self.staged.push(Staged {
                hlc,
                origin: entry.origin,
                principal: entry.principal.map(<[u8]>::to_vec),
                producer: entry.producer,
                stored,
                compressed,
                watermark,
            });
        }
        self.staged_count += count as u64;
        Ok(first..=last)
    }

    /// Write everything staged (one write, plus two for each payload staged by reference), and
    /// fdatasync if the policy asks.
    ///
    /// On a write error the file is cut back to the last committed entry and the writer stays
    /// usable; if that cut fails, or fdatasync fails (the page cache can no longer be trusted),
    /// the writer is poisoned. Either way no staged sequence is consumed.
    ///
    /// # Errors
    /// `Poisoned` and I/O errors.
    pub fn commit(&mut self) -> Result<()> {
        self.commit_staged(false)
    }

    /// [`Self::commit`], then fdatasync whatever policy is set, so every committed entry is
    /// durable when this returns. The staged entries and the fdatasync succeed or fail as one:
    /// if the fdatasync fails they are cut back like a failed write (and the writer is
    /// poisoned), so an entry this refuses never survives in the file.
    ///
    /// # Errors
    /// As [`Self::commit`].
    pub fn commit_durably(&mut self) -> Result<()> {
        if self.staged_count == 0 {
            return if self.entries_since_fsync > 0 {
                self.flush()
            } else {
                self.check_usable()
            };
        }
        self.commit_staged(true)
    }

    fn commit_staged(&mut self, force_sync: bool) -> Result<()> {
        if self.staged_count == 0 {
            return Ok(());
        }
        let outcome = self.write_staged(force_sync);
        self.staged_count = 0;
        self.staged.clear();
        self.spliced.clear();
        if self.encoded.capacity() > STAGING_RETAIN_LIMIT {
            self.encoded = Vec::new();
        } else {
            self.encoded.clear();
        }
        outcome
    }

    /// Frame the staged entries into `encoded`: batch frames (v4, large payloads left for
    /// `spliced`) or one frame each (v3). Returns where the last unit starts in `encoded`.
    fn encode_staged(&mut self) -> Result<usize> {
        let base = self.last_sequence + 1;
        let mut last = 0;
        match self.layout {
            Layout::V4 => {
                let records: Vec<Record<'_>> = self.staged.iter().map(Staged::record).collect();
                let batches = encode_records_spliced(
                    &mut self.encoded,
                    base,
                    &records,
                    SPLICE_MIN,
                    &mut self.spliced,
                )?;
                last = batches.last().map_or(0, |batch| batch.start);
            }
            Layout::V3 => {
                for (sequence, staged) in (base..).zip(&self.staged) {
                    let start = self.encoded.len();
                    let record = staged.record();
                    let fields = FrameFields {
                        sequence,
                        hlc: staged.hlc,
                        origin: staged.origin,
                        principal: record.principal,
                        flags: record.flags()
                            & (frame::FLAG_COMPRESSED | FLAG_CHECKPOINT_WATERMARK),
                    };
                    frame::encode_frame(&mut self.encoded, &fields, &staged.stored);
                    last = start;
                }
            }
        }
        Ok(last)
    }

    /// Write the encoded frames at the committed offset, each spliced payload from its own
    /// buffer at its place (one write when none is).
    fn write_encoded(&mut self) -> std::io::Result<()> {
        let (mut from, mut at) = (0, self.committed_offset);
        for &(to, index) in &self.spliced {
            let head = &self.encoded[from..to];
            let payload = &self.staged[index].stored;
            self.file.write_all_at(head, at)?;
            self.file.write_all_at(payload, at + head.len() as u64)?;
            at += (head.len() + payload.len()) as u64;
            from = to;
        }
        match &self.encoded[from..] {
            [] => Ok(()),
            tail => self.file.write_all_at(tail, at),
        }
    }

    fn write_staged(&mut self, force_sync: bool) -> Result<()> {
        self.check_usable()?;
        let last_start = self.encode_staged()?;
        let spliced_len = |upto: usize| -> usize {
            self.spliced
                .iter()
                .filter(|&&(at, _)| at < upto)
                .map(|&(_, index)| self.staged[index].stored.len())
                .sum()
        };
        let staged_len = (self.encoded.len() + spliced_len(usize::MAX)) as u64;
        let last_offset = (last_start + spliced_len(last_start)) as u64;
        self.preallocate(self.committed_offset + staged_len)?;
        let started = Instant::now();
        let written = self.write_encoded();
        self.io.write_us += micros_since(started);
        if let Err(e) = written {
            let error = Error::io("write", &self.path, e);
            self.cut_back(&error);
            return Err(error);
        }
        self.io.written_bytes += staged_len;
        let unsynced = self.entries_since_fsync + self.staged_count;
        let sync = force_sync
            || match self.options.sync {
                SyncPolicy::Always => true,
                SyncPolicy::EveryN(n) => unsynced >= u64::from(n),
                SyncPolicy::Manual | SyncPolicy::Interval(_) => false,
            };
        if sync && let Err(e) = self.timed_sync() {
            let error = Error::io("fdatasync", &self.path, e);
            self.cut_back(&error);
            self.poison(&error);
            return Err(error);
        }
        self.last_sequence += self.staged_count;
        self.last_frame = Some(LastFrame {
            offset: self.committed_offset + last_offset,
            sequence: self.last_sequence,
            header_checksum: le_u32(&self.encoded[last_start..last_start + 4]),
            first_sequence: le_u64(&self.encoded[last_start + 12..last_start + 20]),
        });
        self.committed_offset += staged_len;
        // A write past the preallocated zeros (there was no room for a chunk) grew the file.
        self.allocated = self.allocated.max(self.committed_offset);
        self.entries_since_fsync = if sync { 0 } else { unsynced };
        if sync {
            self.note_synced();
        } else {
            self.start_writeback();
        }
        Ok(())
    }

    /// Under a policy that syncs later, start writing back each further `WRITEBACK_CHUNK` of
    /// committed bytes at once, as RocksDB's `bytes_per_sync` does: the disk works while the
    /// writer goes on, and the fdatasync that comes later (a flush, the interval, the Nth
    /// commit) waits for the last chunk only. A hint: a failure costs nothing but time.
    fn start_writeback(&mut self) {
        let pending = self.committed_offset - self.written_back;
        if pending < WRITEBACK_CHUNK {
            return;
        }
        if let Err(e) = self.file.start_writeback(self.written_back, pending) {
            tracing::debug!(path = %self.path.display(), error = %e, "cannot start writeback");
        }
        self.written_back = self.committed_offset;
    }

    /// fdatasync the WAL, counting the time.
    fn timed_sync(&mut self) -> std::io::Result<()> {
        let started = Instant::now();
        let synced = self.file.sync_data();
        self.io.fdatasync_us += micros_since(started);
        synced
    }

    /// Record that everything committed is durable, and seal it: one 64-byte write (no fsync)
    /// after each fdatasync, so an open after a crash rescans only what was never synced, and
    /// a follower in another process learns how far the log is durable.
    fn note_synced(&mut self) {
        self.written_back = self.committed_offset;
        self.fdatasyncs += 1;
        self.last_fdatasync = Some(Instant::now());
        let Some(last) = self.last_frame else {
            return;
        };
        self.synced = Some(Seal {
            snapshot_seq: self.snapshot_seq,
            end: self.committed_offset,
            last,
            clock: self.clock.latest(),
        });
        self.write_seal();
    }

    /// Write the newest durable prefix to the seal sidecar. Best effort: without a seal the
    /// next open scans more, and loses nothing. A failure is warned about once, until a seal
    /// write succeeds again.
    fn write_seal(&mut self) {
        let Some(seal) = self.synced.filter(|s| s.end != self.sealed_end) else {
            return;
        };
        let written = match &mut self.seal_file {
            Some(file) => seal.store(file.as_mut()),
            None => open_sidecar(self.vfs.as_ref(), &self.path).and_then(|mut file| {
                seal.store(file.as_mut())?;
                self.seal_file = Some(file);
                Ok(())
            }),
        };
        match written {
            Ok(()) => {
                self.sealed_end = seal.end;
                self.seal_failing = false;
            }
            Err(_) if self.seal_failing => {}
            Err(e) => {
                self.seal_failing = true;
                let sidecar = seal_path(&self.path);
                warning::report(
                    Kind::SealWriteFailed,
                    &sidecar,
                    Error::io("write", &sidecar, e),
                );
            }
        }
    }

    /// Grow the file in whole preallocation chunks until it holds `end` bytes.
    ///
    /// When the disk has no room for a whole chunk, the zeros written of it are cut again (left
    /// there, they would take the space the write itself needs) and the write grows the file
    /// itself: a commit that fits is never refused for want of space ahead of it.
    fn preallocate(&mut self, end: u64) -> Result<()> {
        let chunk = self.options.preallocate;
        if chunk == 0 || end <= self.allocated {
            return Ok(());
        }
        let len = end.div_ceil(chunk).saturating_mul(chunk);
        let Err(e) = self.file.allocate(len) else {
            self.allocated = len;
            return Ok(());
        };
        let no_space = e.kind() == std::io::ErrorKind::StorageFull;
        let error = Error::io("preallocate", &self.path, e);
        if let Err(cut) = self.file.set_len(self.allocated) {
            let cut = Error::io("truncate", &self.path, cut);
            warning::report(Kind::CutBackFailed, &self.path, &cut);
            self.poison(&cut);
            return Err(error);
        }
        if !no_space {
            return Err(error);
        }
        warning::report(Kind::PreallocationSkipped, &self.path, &error);
        Ok(())
    }

    /// Cut the file back to the last committed entry after a failed commit.
    fn cut_back(&mut self, cause: &Error) {
        if let Err(e) = self.file.set_len(self.committed_offset) {
            warning::report(Kind::CutBackFailed, &self.path, &e);
            self.poison(&Error::io("truncate", &self.path, e));
            return;
        }
        self.allocated = self.committed_offset;
        warning::report(Kind::CommitCutBack, &self.path, cause);
    }

    /// Stage and commit `entries` in one step.
    ///
    /// # Errors
    /// As [`Self::stage`] and [`Self::commit`].
    pub fn append(&mut self, entries: &[NewEntry]) -> Result<RangeInclusive<u64>> {
        let range = self.stage(entries)?;
        self.commit()?;
        Ok(range)
    }

    /// Append a durable checkpoint-watermark entry (empty payload) and anchor an epoch at it.
    /// Returns its sequence.
    ///
    /// # Errors
    /// As [`Self::append`] and [`Self::flush`].
    pub fn append_watermark(&mut self) -> Result<u64> {
        if self.staged_count > 0 {
            return Err(Error::Internal(
                "watermark staged behind uncommitted entries".into(),
            ));
        }
        let watermark = EntryView::default();
        self.stage_flagged(1, std::iter::once((watermark, None)), true)?;
        self.commit()?;
        // The epoch is anchored only once the watermark is durable.
        self.flush()?;
        self.anchors
            .push((self.last_sequence, self.committed_offset));
        Ok(self.last_sequence)
    }

    /// Offset in the current file just past the anchored `sequence`: the WAL prefix a
    /// rotation at that sequence archives.
    #[must_use]
    pub fn anchor_offset(&self, sequence: u64) -> Option<u64> {
        self.anchors
            .iter()
            .find(|(s, _)| *s == sequence)
            .map(|(_, offset)| *offset)
    }

    /// Replace the WAL with a fresh one whose header names `snapshot_seq` and which carries
    /// over the committed frames from `from_offset` on (entries appended after the snapshot).
    /// The new file is locked before it takes the old one's name.
    ///
    /// # Errors
    /// I/O errors; the caller decides whether the failure poisons.
    pub fn reset(&mut self, snapshot_seq: u64, from_offset: u64) -> Result<()> {
        self.check_usable()?;
        let tail_len = self
            .committed_offset
            .checked_sub(from_offset)
            .ok_or_else(|| {
                Error::Internal(format!(
                    "reset from {from_offset} past the committed end {}",
                    self.committed_offset
                ))
            })?;
        // The new file is format v4 unless it carries over format v3 frames.
        let layout = if tail_len == 0 {
            Layout::V4
        } else {
            self.layout
        };
        let header = FileHeader {
            snapshot_seq,
            layout,
        }
        .encode();
        let (old, path) = (self.file.as_ref(), &self.path);
        let published = publish(self.vfs.as_ref(), path, Placement::Replace, |file, temp| {
            if !file.try_lock().map_err(|e| Error::io("lock", temp, e))? {
                return Err(Error::WriterLockHeld {
                    path: temp.to_path_buf(),
                });
            }
            write_all(file, temp, &header)?;
            copy_range(
                old,
                path,
                from_offset,
                file,
                temp,
                FILE_HEADER_LEN as u64,
                tail_len,
            )
        })?;
        self.file = published.file;
        self.layout = layout;
        self.snapshot_seq = snapshot_seq;
        self.committed_offset = FILE_HEADER_LEN as u64 + tail_len;
        self.allocated = self.committed_offset;
        self.written_back = self.committed_offset;
        // Later anchors move with the frames they follow; earlier ones are sealed.
        self.anchors.retain(|(s, _)| *s > snapshot_seq);
        for (_, offset) in &mut self.anchors {
            *offset = *offset - from_offset + FILE_HEADER_LEN as u64;
        }
        self.last_frame = self
            .last_frame
            .filter(|last| last.offset >= from_offset)
            .map(|last| LastFrame {
                offset: last.offset - from_offset + FILE_HEADER_LEN as u64,
                ..last
            });
        // The new file was synced whole before it took the name; the old seal names the old one.
        self.sealed_end = 0;
        self.synced = None;
        self.entries_since_fsync = 0;
        self.note_synced();
        Ok(())
    }

    /// Make every committed entry durable now.
    ///
    /// # Errors
    /// `Poisoned`, I/O errors (an fdatasync failure poisons the writer).
    pub fn flush(&mut self) -> Result<()> {
        self.check_usable()?;
        if let Err(e) = self.timed_sync() {
            let error = Error::io("fdatasync", &self.path, e);
            self.poison(&error);
            return Err(error);
        }
        self.entries_since_fsync = 0;
        self.note_synced();
        Ok(())
    }

    /// [`Self::wind_down`], then release the lock.
    ///
    /// # Errors
    /// As [`Self::flush`]. The lock is released either way.
    pub fn close(mut self) -> Result<()> {
        self.wind_down()
    }

    /// Everything closing does before the lock goes: the fdatasync owed (committed entries
    /// unsynced and a policy other than `Manual`, or frames inherited from a crashed writer
    /// and never synced), the preallocated tail cut, so a closed WAL is exactly as long as its
    /// frames, and the seal of what is durable, so the next open scans nothing it does not
    /// have to. A poisoned writer touches nothing.
    ///
    /// # Errors
    /// As [`Self::flush`].
    pub fn wind_down(&mut self) -> Result<()> {
        if self.poisoned.is_some() {
            return Ok(());
        }
        let owed = self.entries_since_fsync > 0 && self.options.sync != SyncPolicy::Manual;
        // Frames found at open and never synced by this writer (a crashed writer's): one
        // fdatasync, cheap when the kernel already wrote them, lets them be sealed.
        let synced_end = self.synced.map_or(FILE_HEADER_LEN as u64, |s| s.end);
        let inherited = self.entries_since_fsync == 0 && synced_end != self.committed_offset;
        if owed || inherited {
            self.flush()?;
        }
        if self.allocated > self.committed_offset {
            // Only zeros go, so a failure loses nothing: the next open reads them as the end.
            match self.file.set_len(self.committed_offset) {
                Ok(()) => self.allocated = self.committed_offset,
                Err(e) => {
                    warning::report(Kind::TailTrimFailed, &self.path, e);
                }
            }
        }
        self.write_seal();
        Ok(())
    }

    /// Refuse further writes until reopened.
    pub fn poison(&mut self, cause: &Error) {
        if self.poisoned.is_none() {
            self.poisoned = Some(cause.to_string());
        }
    }

    fn check_usable(&self) -> Result<()> {
        match &self.poisoned {
            Some(cause) => Err(Error::Poisoned {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// The WAL's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The options the writer was opened with.
    #[must_use]
    pub const fn options(&self) -> &WalOptions {
        &self.options
    }

    /// Sequence of the last committed entry (the snapshot sequence if there is none).
    #[must_use]
    pub const fn last_sequence(&self) -> u64 {
        self.last_sequence
    }

    /// File offset just past the last committed entry.
    #[must_use]
    pub const fn committed_offset(&self) -> u64 {
        self.committed_offset
    }

    /// The snapshot sequence in the file header.
    #[must_use]
    pub const fn snapshot_seq(&self) -> u64 {
        self.snapshot_seq
    }

    /// Committed entries not yet fdatasynced.
    #[must_use]
    pub const fn entries_since_fsync(&self) -> u64 {
        self.entries_since_fsync
    }

    /// What its writes and fdatasyncs have cost since it opened.
    #[must_use]
    pub const fn io_totals(&self) -> IoTotals {
        self.io
    }

    /// fdatasyncs of the WAL that succeeded since it was opened, and when the last one did.
    #[must_use]
    pub const fn fdatasyncs(&self) -> (u64, Option<Instant>) {
        (self.fdatasyncs, self.last_fdatasync)
    }

    /// Where the open-time scan started: just past the prefix a valid seal named (frames the
    /// open did not re-read), or the first frame.
    #[must_use]
    pub const fn scanned_from(&self) -> u64 {
        self.scanned_from
    }

    /// The torn tail cut at open, if any.
    #[must_use]
    pub const fn tail_repair(&self) -> Option<TailRepair> {
        self.tail_repair
    }

    /// Why the writer is poisoned, if it is.
    #[must_use]
    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }
}

/// One staged entry: its fields, its payload as stored held by reference.
#[derive(Debug)]
struct Staged {
    hlc: Hlc,
    origin: Origin,
    principal: Option<Vec<u8>>,
    producer: Option<Producer>,
    stored: Bytes,
    compressed: bool,
    watermark: bool,
}

impl Staged {
    fn record(&self) -> Record<'_> {
        Record {
            hlc: self.hlc,
            origin: self.origin,
            principal: self.principal.as_deref(),
            producer: self.producer,
            stored: &self.stored,
            compressed: self.compressed,
            watermark: self.watermark,
        }
    }
}

/// Most bytes of a torn tail kept before it is cut: a torn write is at most the writes since
/// the last fdatasync, so more than this is more than any forensics needs.
pub const MAX_TORN_SAVED: u64 = 16 << 20;

/// Keep the first bytes of the torn tail `repair` (up to [`MAX_TORN_SAVED`]) in
/// `<wal>.torn.<offset>`, published like every other file; returns how many. Best effort: on a
/// full disk the tail is cut unsaved rather than the WAL left unopenable. An existing file of
/// that name (the same tail, saved by an open that crashed before its cut) is kept.
fn save_torn(vfs: &dyn Vfs, path: &Path, file: &dyn VfsFile, repair: &TailRepair) -> u64 {
    let len = repair.discarded_bytes.min(MAX_TORN_SAVED);
    let target = torn_path(path, repair.offset);
    let saved = publish(
        vfs,
        &target,
        Placement::Link {
            require_identical: false,
        },
        |out, temp| copy_range(file, path, repair.offset, out, temp, 0, len),
    );
    match saved {
        Ok(_) => len,
        Err(e) => {
            warning::report(Kind::TornTailUnsaved, &target, e);
            0
        }
    }
}

/// Take the exclusive writer lock on `file`, waiting up to `patience`.
fn lock_writer(file: &dyn VfsFile, path: &Path, patience: Duration) -> Result<()> {
    let deadline = Instant::now() + patience;
    while !file.try_lock().map_err(|e| Error::io("lock", path, e))? {
        if Instant::now() >= deadline {
            return Err(Error::WriterLockHeld {
                path: path.to_path_buf(),
            });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Create a WAL holding only its header, atomically: a crash leaves either no WAL or a
/// complete header. If another opener created it first, theirs is kept.
fn create(vfs: &dyn Vfs, path: &Path, snapshot_seq: u64) -> Result<()> {
    let header = FileHeader::new(snapshot_seq).encode();
    publish(
        vfs,
        path,
        Placement::Link {
            require_identical: false,
        },
        |file, temp| write_all(file, temp, &header),
    )
    .map(drop)
}
