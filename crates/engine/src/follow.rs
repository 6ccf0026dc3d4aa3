//! Following a log as it grows: every entry from a sequence on, in order and exactly once,
//! across checkpoints and rotations, beside a live writer in this process or another.
//!
//! A follower holds one file at a time and reads it with a [`WalReader`], so it never takes a
//! frame the writer has not finished for damage, and it keeps no backlog in memory. The file
//! holding the next sequence is found through the MANIFEST: an archive (immutable: read to its
//! end, then on to the next file) or the active `wal.log`. At the active WAL's current end the
//! follower waits, unless the MANIFEST names a newer active WAL than the one it holds: a
//! rotation committed, and the writer appends only to the new file from then on, so the held
//! file is read to its final end and the new `wal.log` opened, its sequences up to the last one
//! yielded skipped. A writer killed and reopened cuts at most a torn tail the follower never
//! yielded (a reader takes no unfinished frame), and appends to the same file.
//!
//! A durable follower yields only what is fdatasynced: in an archive everything, in the
//! active WAL what the seal names (the writer rewrites it after every fdatasync), and in an
//! active WAL a rotation retired everything (its prefix is archived and its tail was copied into
//! the new file, synced before it took the name).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::filename::StoreFile;
use crate::frame::FLAG_CHECKPOINT_WATERMARK;
use crate::io::Vfs;
use crate::manifest::Manifest;
use crate::reader::WalReader;
use crate::scan::Frame;

/// What a follower reads: a store directory, or one WAL file.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Target {
    /// A store directory: archives, then the active WAL, across rotations.
    Store(PathBuf),
    /// One WAL file.
    Wal(PathBuf),
}

/// The file a follower holds.
#[derive(Debug)]
struct Source {
    reader: WalReader,
    /// The last sequence of an archive; `None` for an active WAL.
    archive_end: Option<u64>,
    /// For an active WAL: whether a rotation retired it (it will not grow, and is all durable).
    retired: bool,
    /// End of the prefix known to be fdatasynced (durable followers of an active WAL).
    durable_end: u64,
    /// A frame read past `durable_end`, kept until it is durable.
    pending: Option<Frame>,
}

/// Reads a log from a sequence on, as far as it is written (or durable) now; call again for
/// what has been appended since.
#[derive(Debug)]
pub struct Follower {
    vfs: Arc<dyn Vfs>,
    target: Target,
    next: u64,
    durable: bool,
    source: Option<Source>,
}

impl Follower {
    /// A follower of `target` from sequence `from` on (`None`: the first entry after the live
    /// snapshot, or after a WAL file's header); `durable` yields only fdatasynced entries.
    ///
    /// # Errors
    /// MANIFEST and WAL header errors.
    pub fn open(
        vfs: &Arc<dyn Vfs>,
        target: Target,
        from: Option<u64>,
        durable: bool,
    ) -> Result<Self> {
        let next = match from {
            Some(from) => from.max(1),
            None => match &target {
                Target::Store(dir) => {
                    Manifest::read(vfs.as_ref(), dir)?
                        .map_or(0, |m| m.live_snapshot_seq)
                        .max(
                            WalReader::open(vfs, &StoreFile::Wal.path(dir)).map_or(0, |r| {
                                // Without a MANIFEST, the WAL header names the snapshot.
                                r.snapshot_seq()
                            }),
                        )
                        + 1
                }
                Target::Wal(path) => WalReader::open(vfs, path)?.snapshot_seq() + 1,
            },
        };
        Ok(Self {
            vfs: Arc::clone(vfs),
            target,
            next,
            durable,
            source: None,
        })
    }

    /// The next sequence this follower will yield.
    #[must_use]
    pub const fn next_sequence(&self) -> u64 {
        self.next
    }

    /// Up to `max_entries` entries (or about `max_bytes` of payload) from the next sequence
    /// on, checkpoint watermarks left out; empty when nothing more is there (or durable) yet.
    ///
    /// # Errors
    /// As [`Self::next_frames`], and `Decompression` or `PayloadTooLarge` of a payload.
    pub fn next_batch<B: Batch>(&mut self, max_entries: usize, max_bytes: usize) -> Result<B> {
        loop {
            let frames = self.next_frames(max_entries, max_bytes)?;
            if frames.is_empty() {
                return Ok(B::default());
            }
            let mut batch = B::with_limits(frames.len(), max_bytes);
            for frame in frames {
                if frame.flags & FLAG_CHECKPOINT_WATERMARK == 0 {
                    batch.push_frame(frame.borrowed())?;
                }
            }
            // A run of watermarks alone is not the end: read on.
            if !batch.is_empty() {
                return Ok(batch);
            }
        }
    }

    /// Up to `max_frames` verified frames (or about `max_bytes` of them) from the next sequence
    /// on, checkpoint watermarks included, payloads as stored: consecutive sequences, as a
    /// shipment carries them. Empty when nothing more is there (or durable) yet.
    ///
    /// # Errors
    /// `ConsumerBehindRetention` when the next entry's file was pruned; read errors of the
    /// files (stable damage, never a frame still being written).
    pub fn next_frames(&mut self, max_frames: usize, max_bytes: usize) -> Result<Vec<Frame>> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        while batch.len() < max_frames && bytes < max_bytes {
            if self.source.is_none() {
                match self.open_source()? {
                    Some(source) => self.source = Some(source),
                    None => break,
                }
            }
            let Some(source) = self.source.as_mut() else {
                break;
            };
            if let Some(frame) = next_frame(source, self.vfs.as_ref(), self.next, self.durable)? {
                self.next = frame.sequence + 1;
                bytes += frame.stored.len();
                batch.push(frame);
                continue;
            }
            // The held file's current end.
            if let Some(end) = source.archive_end {
                if self.next <= end {
                    return Err(inconsistent(
                        &self.target,
                        format!("wal.{end}.archive ends before sequence {}", self.next),
                    ));
                }
                self.source = None;
            } else if source.retired {
                self.source = None;
            } else if retired(self.vfs.as_ref(), &self.target, source)? {
                // Read it to its final end before moving on.
                source.retired = true;
            } else {
                break;
            }
        }
        Ok(batch)
    }

    /// Open the file that holds the next sequence; `None` when it is not there yet (the
    /// active WAL a committed rotation names has not taken its name).
    fn open_source(&self) -> Result<Option<Source>> {
        let dir = match &self.target {
            Target::Wal(path) => return Ok(Some(self.active(WalReader::open(&self.vfs, path)?))),
            Target::Store(dir) => dir,
        };
        // A rotation or prune may run between reading the MANIFEST and opening a file: try again
        // once with the newer MANIFEST before calling the entries pruned.
        for _ in 0..2 {
            let manifest = Manifest::read(self.vfs.as_ref(), dir)?;
            let wal = WalReader::open(&self.vfs, &StoreFile::Wal.path(dir))?;
            let header = wal.snapshot_seq();
            if header < self.next {
                if manifest.is_some_and(|m| m.active_wal_seq > header) {
                    return Ok(None);
                }
                return Ok(Some(self.active(wal)));
            }
            let archives = manifest.map(|m| m.archives).unwrap_or_default();
            if let Some(&end) = archives.iter().find(|&&end| end >= self.next)
                && let Ok(reader) = WalReader::open(&self.vfs, &StoreFile::Archive(end).path(dir))
                && reader.snapshot_seq() < self.next
            {
                return Ok(Some(Source {
                    reader,
                    archive_end: Some(end),
                    retired: true,
                    durable_end: u64::MAX,
                    pending: None,
                }));
            }
        }
        Err(Error::ConsumerBehindRetention {
            dir: dir.clone(),
            next: self.next,
        })
    }

    fn active(&self, reader: WalReader) -> Source {
        Source {
            reader,
            archive_end: None,
            retired: false,
            durable_end: 0,
            pending: None,
        }
    }
}

/// The next frame of `source` from sequence `next` on, if one is there (and, for a durable
/// follower, durable).
fn next_frame(
    source: &mut Source,
    vfs: &dyn Vfs,
    next: u64,
    durable: bool,
) -> Result<Option<Frame>> {
    let frame = match source.pending.take() {
        Some(frame) => frame,
        None => match source.reader.next_frame(next)? {
            Some(frame) => frame,
            None => return Ok(None),
        },
    };
    let end = frame.end;
    if durable && !source.retired && end > source.durable_end {
        source.durable_end = source.reader.durable_end(vfs)?;
        if end > source.durable_end {
            source.pending = Some(frame);
            return Ok(None);
        }
    }
    Ok(Some(frame))
}

/// Whether the MANIFEST names a newer active WAL than the one `source` holds.
fn retired(vfs: &dyn Vfs, target: &Target, source: &Source) -> Result<bool> {
    let Target::Store(dir) = target else {
        return Ok(false);
    };
    Ok(Manifest::read(vfs, dir)?.is_some_and(|m| m.active_wal_seq > source.reader.snapshot_seq()))
}

fn inconsistent(target: &Target, detail: String) -> Error {
    let dir = match target {
        Target::Store(dir) => dir.clone(),
        Target::Wal(path) => path.parent().map_or_else(PathBuf::new, Path::to_path_buf),
    };
    Error::StoreInconsistent { dir, detail }
}
