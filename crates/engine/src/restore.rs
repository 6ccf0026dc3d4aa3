//! Restore: a new store directory built from a snapshot's bytes and the shipments after it
//! (see [`crate::shipment`]), every entry keeping its sequence, timestamp, origin and
//! principal, so the new store's snapshot plus replay equals the origin's up to that point.
//!
//! The store is built in a staging directory beside the destination: the snapshot is written
//! and verified in full (body hash), the frames are appended to a fresh `wal.log` whose header
//! names the snapshot, and [`Restore::finish`] fdatasyncs the WAL, writes the MANIFEST and
//! renames the directory into place. A restore that fails, or is dropped unfinished, removes
//! its staging directory and the destination's parents it created: it leaves nothing behind.
//! One killed leaves nothing at the destination (only a `*.restore.tmp` staging directory).
//!
//! Frames must continue the log without a hole: one already written is skipped (shipments may
//! overlap after a shipper restarted), one past the next expected sequence is `SequenceGap`,
//! since entries between them are missing from what was shipped. A [`Limit`] ends the log at a
//! sequence or a timestamp (point-in-time restore).

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::file_header::{FILE_HEADER_LEN, FileHeader};
use crate::filename::{StoreFile, temp_path};
use crate::hlc::Hlc;
use crate::io::{OpenMode, Vfs, VfsFile};
use crate::manifest::Manifest;
use crate::publish::{Staging, require_absent};
use crate::scan::encode_batches;
use crate::shipment;
use crate::snapshot::SnapshotReader;

/// Where a restored log ends (both bounds apply when both are given).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Limit {
    /// The last sequence to keep.
    pub to_sequence: Option<u64>,
    /// The latest timestamp to keep: the log ends before the first entry stamped later.
    pub to_hlc: Option<Hlc>,
}

impl Limit {
    fn admits(&self, sequence: u64, hlc: Hlc) -> bool {
        self.to_sequence.is_none_or(|to| sequence <= to) && self.to_hlc.is_none_or(|to| hlc <= to)
    }
}

/// What one [`Restore::push`] did.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Pushed {
    /// The last sequence the new log holds.
    pub last: u64,
    /// Whether the limit was reached: nothing more will be taken.
    pub done: bool,
}

/// A store being restored (see the module documentation).
#[derive(Debug)]
pub struct Restore {
    vfs: Arc<dyn Vfs>,
    staging: Staging,
    wal: Box<dyn VfsFile>,
    wal_end: u64,
    snapshot_seq: u64,
    last: u64,
    limit: Limit,
    done: bool,
    buffer: Vec<u8>,
}

impl Restore {
    /// Begin restoring into `dest` (which must not exist) from the bytes of a snapshot file, or
    /// from the start of the log when there is none.
    ///
    /// # Errors
    /// `InvalidArgument` if `dest` exists; the snapshot's decode and verify errors; I/O errors.
    pub fn begin(
        vfs: &Arc<dyn Vfs>,
        dest: &Path,
        snapshot: Option<&[u8]>,
        limit: Limit,
    ) -> Result<Self> {
        require_absent(vfs.as_ref(), dest, "restore")?;
        let staging = Staging::create(vfs, dest, "restore")?;
        let snapshot_seq = match snapshot {
            Some(bytes) => place_snapshot(vfs.as_ref(), staging.path(), bytes)?,
            None => 0,
        };
        if limit.to_sequence.is_some_and(|to| to < snapshot_seq) {
            return Err(Error::InvalidArgument(format!(
                "the snapshot covers sequence {snapshot_seq}, past the limit"
            )));
        }
        let wal_path = StoreFile::Wal.path(staging.path());
        let mut wal = vfs
            .open(&wal_path, OpenMode::CreateNew)
            .map_err(|e| Error::io("create", &wal_path, e))?;
        wal.write_all_at(&FileHeader::new(snapshot_seq).encode(), 0)
            .map_err(|e| Error::io("write", &wal_path, e))?;
        Ok(Self {
            vfs: Arc::clone(vfs),
            staging,
            wal,
            wal_end: FILE_HEADER_LEN as u64,
            snapshot_seq,
            last: snapshot_seq,
            limit,
            done: limit.to_sequence == Some(snapshot_seq),
            buffer: Vec::new(),
        })
    }

    /// The sequence the snapshot covers (0: none).
    #[must_use]
    pub const fn snapshot_seq(&self) -> u64 {
        self.snapshot_seq
    }

    /// Append the frames of `shipment` that continue the log, up to the limit.
    ///
    /// # Errors
    /// The shipment's decode errors; `SequenceGap` when it starts past the next sequence; I/O
    /// errors.
    pub fn push(&mut self, shipment: &[u8]) -> Result<Pushed> {
        let (_, frames) = shipment::decode(shipment)?;
        self.buffer.clear();
        let mut last = self.last;
        let mut kept = Vec::new();
        for frame in frames {
            let sequence = frame.sequence;
            if self.done || sequence <= last {
                continue;
            }
            if sequence != last + 1 {
                return Err(Error::SequenceGap {
                    offset: self.wal_end + self.buffer.len() as u64,
                    expected: last + 1,
                    found: sequence,
                });
            }
            if !self.limit.admits(sequence, frame.hlc) {
                self.done = true;
                break;
            }
            last = sequence;
            self.done = self.limit.to_sequence == Some(sequence);
            kept.push(frame);
        }
        encode_batches(&mut self.buffer, &kept)?;
        self.wal
            .write_all_at(&self.buffer, self.wal_end)
            .map_err(|e| Error::io("write", self.staging.path(), e))?;
        self.wal_end += self.buffer.len() as u64;
        self.last = last;
        Ok(Pushed {
            last,
            done: self.done,
        })
    }

    /// Make the new store durable and give it its name; returns its last sequence.
    ///
    /// # Errors
    /// I/O errors (nothing is then left).
    pub fn finish(mut self) -> Result<u64> {
        self.wal
            .sync_data()
            .map_err(|e| Error::io("fdatasync", self.staging.path(), e))?;
        Manifest {
            live_snapshot_seq: self.snapshot_seq,
            active_wal_seq: self.snapshot_seq,
            archives: Vec::new(),
        }
        .write(self.vfs.as_ref(), self.staging.path())?;
        self.staging.place()?;
        Ok(self.last)
    }
}

/// Write the snapshot `bytes` into `staging`, verify it in full, and name it by the sequence
/// it covers; returns that sequence.
fn place_snapshot(vfs: &dyn Vfs, staging: &Path, bytes: &[u8]) -> Result<u64> {
    let landing = temp_path(&StoreFile::Snapshot(0).path(staging));
    let mut file = vfs
        .open(&landing, OpenMode::CreateNew)
        .map_err(|e| Error::io("create", &landing, e))?;
    file.write_all_at(bytes, 0)
        .and_then(|()| file.sync_data())
        .map_err(|e| Error::io("write", &landing, e))?;
    let reader = SnapshotReader::open(vfs, &landing)?;
    reader.verify()?;
    let sequence = reader.sequence();
    vfs.rename(&landing, &StoreFile::Snapshot(sequence).path(staging))
        .map_err(|e| Error::io("rename", &landing, e))?;
    Ok(sequence)
}
