//! Salvage: every frame that verifies, copied past damage into a new, valid log.
//!
//! The source is read, never modified, through one window of a few MiB (grown to the one frame
//! being verified when that is larger), and the new log and `<dest>.damaged` are written as the
//! scan goes, through bounded buffers: memory does not grow with the source, and work and
//! output grow with its size only, never with a number read from it (not even with the lengths
//! frame headers claim: the bytes verified are bounded, see `source`).
//!
//! From the end of its header, each frame that verifies in full (header, extent and payload
//! checksums) and continues the sequence is copied byte for byte. Past damage the scan
//! resynchronises at the next offset holding a frame with a later sequence; the 40-byte header
//! carries its own checksum and the sequence, so a false match is as unlikely as a 32-bit
//! checksum collision that also passes the payload's. A frame that jumps ahead of the sequence
//! is taken only if no frame that jumps less follows within 1 MiB after it (see `resync`): a
//! frame spliced in from another log, or from further along this one, is an outlier and
//! counted as damage, and the log's own frames after it are kept. The damaged bytes are kept in
//! `<dest>.damaged` for forensics, in order, and the report gives each range's offset.
//!
//! The WAL format requires consecutive sequences, so a run of sequences lost in the damage is
//! filled with checkpoint-watermark frames (no payload), which replay and followers skip: every
//! surviving entry keeps its own sequence, and the report lists the missing ones. A salvage
//! writes at most one watermark per 40 bytes of source (a frame header's length), so the new
//! log is at most twice the source's size. The bound is the source's size rather than that of
//! the damaged bytes because damage can remove bytes: a lost page leaves sequences missing and
//! no damaged bytes at all. A frame whose gap would exceed what is left of that budget (a frame
//! at sequence 10^8 in a 10 KB file) cannot be the log's continuation without more lost bytes
//! than the file ever held; it is counted as damage and the scan goes on, so the frames after
//! it are still kept. (Ending the new log at such a gap would lose them; a marker frame saying
//! "these sequences are absent" would change the format.) A damaged file header is replaced by
//! one naming the sequence before the first frame kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Serialize;

use crate::consumer;
use crate::error::{Error, Result};
use crate::file_header::{FILE_HEADER_LEN, FileHeader, Layout};
use crate::filename::StoreFile;
use crate::frame::FRAME_HEADER_LEN;
use crate::hlc::Hlc;
use crate::inspect::Progress;
use crate::io::Vfs;
use crate::manifest::Manifest;
use crate::publish::{Placement, Staging, copy_file, publish, require_absent};
use crate::scan::v3_frame_as_batch;
use crate::snapshot::SnapshotReader;

mod resync;
mod sink;
mod source;

use resync::Scanner;
use sink::{Output, Sidecar};
use source::{Piece, Source};

/// What a salvage found and did.
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SalvageReport {
    /// Frames copied into the new log.
    pub frames_recovered: u64,
    /// Byte ranges of the source skipped as damaged: `(offset, length)`, in order.
    pub skipped: Vec<(u64, u64)>,
    /// Sequence ranges lost in the damage: `(first, last)`, filled with watermarks.
    pub missing: Vec<(u64, u64)>,
    /// Whether the source's file header was damaged (and replaced).
    pub header_replaced: bool,
    /// The last sequence of the new log.
    pub last_sequence: u64,
    /// Where the damaged bytes were kept (none when nothing was skipped).
    pub damaged_file: Option<String>,
}

/// Salvage the WAL file `source` into a new WAL `dest` (which must not exist).
///
/// # Errors
/// `InvalidArgument` if `dest` exists; I/O errors. A source with no frame that verifies gives
/// an empty log.
pub fn salvage_wal(vfs: &Arc<dyn Vfs>, source: &Path, dest: &Path) -> Result<SalvageReport> {
    salvage_wal_counted(vfs, source, dest, &Progress::default())
}

/// [`salvage_wal`], counting the source bytes read into `progress` as it goes.
///
/// # Errors
/// As [`salvage_wal`].
pub fn salvage_wal_counted(
    vfs: &Arc<dyn Vfs>,
    source: &Path,
    dest: &Path,
    progress: &Progress,
) -> Result<SalvageReport> {
    require_absent(vfs.as_ref(), dest, "salvage")?;
    progress
        .total
        .store(size_of(vfs.as_ref(), source)?, Ordering::Relaxed);
    salvage_files(
        vfs,
        &[source.to_path_buf()],
        dest,
        Header::Source(None),
        progress,
    )
}

/// The size of the file at `path` (0 if it is gone).
fn size_of(vfs: &dyn Vfs, path: &Path) -> Result<u64> {
    Ok(vfs
        .stat(path)
        .map_err(|e| Error::io("stat", path, e))?
        .map_or(0, |stat| stat.size))
}

/// What the new log's header names.
#[derive(Clone, Copy, Debug)]
enum Header {
    /// The source's; if it is damaged, this sequence (the active WAL of a store must start
    /// after its live snapshot) or else the one before the first frame kept.
    Source(Option<u64>),
    /// This sequence, whatever the sources say (a log rebuilt after an older snapshot).
    Fixed(u64),
}

/// Salvage `sources`, read one after another as one run of sequences (each file's own header
/// skipped), into the new WAL `dest`.
fn salvage_files(
    vfs: &Arc<dyn Vfs>,
    sources: &[PathBuf],
    dest: &Path,
    header: Header,
    progress: &Progress,
) -> Result<SalvageReport> {
    let mut opened = Vec::with_capacity(sources.len());
    for path in sources {
        opened.push(Source::open(vfs.as_ref(), path)?);
    }
    let size: u64 = opened.iter().map(Source::len).sum();
    let mut report = SalvageReport::default();
    publish(vfs.as_ref(), dest, Placement::Replace, |file, temp| {
        let mut run = Run {
            report: &mut report,
            out: Output::new(file, temp, FILE_HEADER_LEN as u64),
            side: Sidecar::new(vfs.as_ref(), damaged_path(dest)),
            last: None,
            snapshot: None,
            last_hlc: Hlc::default(),
            budget: size / FRAME_HEADER_LEN as u64,
            progress,
        };
        for (i, mut source) in opened.into_iter().enumerate() {
            if i == 0 {
                run.read_header(&mut source, header)?;
            }
            run.copy(&mut source)?;
        }
        run.finish()
    })?;
    Ok(report)
}

/// One salvage, across its sources.
struct Run<'a> {
    report: &'a mut SalvageReport,
    out: Output<'a>,
    side: Sidecar<'a>,
    /// The sequence of the last frame kept (before the first: the one the header names), once
    /// known.
    last: Option<u64>,
    /// The sequence the new log's header names, once known.
    snapshot: Option<u64>,
    /// The timestamp of the last frame kept, which the watermarks after it carry.
    last_hlc: Hlc,
    /// How many more watermark frames may fill gaps.
    budget: u64,
    /// Source bytes read, across the sources.
    progress: &'a Progress,
}

impl Run<'_> {
    /// Decide the sequence before the first frame from the first source's header; if it is
    /// damaged, from `header`'s hint, or else from the first frame kept.
    fn read_header(&mut self, source: &mut Source, header: Header) -> Result<()> {
        let len = usize::try_from(source.len()).unwrap_or(usize::MAX);
        let decoded = source
            .bytes(0, len.min(FILE_HEADER_LEN))?
            .and_then(|bytes| FileHeader::decode(bytes).ok());
        self.report.header_replaced = decoded.is_none();
        self.last = match (header, decoded) {
            (Header::Fixed(seq), _) => Some(seq),
            (Header::Source(_), Some(h)) => Some(h.snapshot_seq),
            (Header::Source(Some(seq)), None) => Some(seq),
            (Header::Source(None), None) => None,
        };
        self.snapshot = self.last;
        Ok(())
    }

    /// Copy every frame of `source` that continues the sequence, fill gaps, keep the damage.
    fn copy(&mut self, source: &mut Source) -> Result<()> {
        let mut scanner = Scanner::default();
        let mut pos = (FILE_HEADER_LEN as u64).min(source.len());
        let mut counted = 0;
        while pos < source.len() {
            self.progress
                .done
                .fetch_add(pos - counted, Ordering::Relaxed);
            counted = pos;
            let next = match self.last {
                Some(last) => match source.unit_at(pos)? {
                    Some(h) if last.checked_add(1) == Some(h.first) => Some((pos, h)),
                    _ => {
                        if let Some(len) = self.salvage_records(source, pos, last)? {
                            pos += len;
                            continue;
                        }
                        scanner.resume(source, pos, last, self.budget)?
                    }
                },
                // No header to go by: the first frame found names the sequence before it.
                None => scanner.resume(source, pos, 0, u64::MAX)?,
            };
            let Some((at, frame)) = next else {
                // Zeros to the end are the clean end of the log, not damage.
                if !source.zero_from(pos)? {
                    self.damage(source, pos, source.len() - pos)?;
                }
                break;
            };
            if at > pos {
                self.damage(source, pos, at - pos)?;
            }
            let last = *self.last.get_or_insert(frame.first - 1);
            self.snapshot.get_or_insert(last);
            let gap = frame.first - last - 1;
            if gap > 0 {
                self.report.missing.push((last + 1, frame.first - 1));
                self.out.watermarks(last + 1..frame.first, self.last_hlc)?;
                self.budget -= gap;
            }
            let len = frame.len;
            match source.layout() {
                // A batch frame is copied byte for byte.
                Layout::V4 => self.out.push(source.frame_bytes(at, len)?)?,
                // A v3 frame is written as a batch frame of one: the new log is format v4.
                Layout::V3 => {
                    let mut encoded = Vec::new();
                    v3_frame_as_batch(source.frame_bytes(at, len)?, at, &mut encoded)?;
                    self.out.push(&encoded)?;
                }
            }
            self.report.frames_recovered += frame.last - frame.first + 1;
            self.last = Some(frame.last);
            self.last_hlc = frame.hlc;
            pos = at + len;
        }
        self.progress
            .done
            .fetch_add(source.len().saturating_sub(counted), Ordering::Relaxed);
        Ok(())
    }

    /// At `pos`, where the sequence after `last` belongs, a damaged batch frame whose head
    /// verifies and continues the sequence: keep every intact record, fill the lost ones with
    /// watermarks, keep its bytes as damage. Returns its length, or `None` if there is none.
    fn salvage_records(&mut self, source: &mut Source, pos: u64, last: u64) -> Result<Option<u64>> {
        let Some((len, pieces)) = source.pieces_at(pos)? else {
            return Ok(None);
        };
        let continues = match pieces.first() {
            Some(Piece::Kept(first, ..) | Piece::Lost(first, _)) => *first == last + 1,
            None => false,
        };
        if !continues {
            return Ok(None);
        }
        self.damage(source, pos, len)?;
        for piece in pieces {
            match piece {
                Piece::Kept(first, end, hlc, encoded) => {
                    self.out.push(&encoded)?;
                    self.report.frames_recovered += end - first + 1;
                    self.last = Some(end);
                    self.last_hlc = hlc;
                }
                Piece::Lost(first, end) => {
                    self.report.missing.push((first, end));
                    self.out.watermarks(first..end + 1, self.last_hlc)?;
                    self.budget = self.budget.saturating_sub(end - first + 1);
                    self.last = Some(end);
                }
            }
        }
        Ok(Some(len))
    }

    /// Keep the `len` damaged bytes of `source` at `at`.
    fn damage(&mut self, source: &Source, at: u64, len: u64) -> Result<()> {
        self.report.skipped.push((at, len));
        self.side.append(source, at, len)
    }

    /// Write the header, and place the damaged bytes' file.
    fn finish(self) -> Result<()> {
        self.report.last_sequence = self.last.unwrap_or(0);
        let header = FileHeader {
            snapshot_seq: self.snapshot.unwrap_or(0),
            layout: Layout::V4,
        };
        self.out.finish(&header.encode())?;
        self.report.damaged_file = self.side.finish()?.map(|p| p.display().to_string());
        Ok(())
    }
}

/// Where the damaged bytes of a salvage into `dest` are kept: `<dest>.damaged`.
#[must_use]
pub fn damaged_path(dest: &Path) -> PathBuf {
    let mut name = dest.as_os_str().to_owned();
    name.push(".damaged");
    PathBuf::from(name)
}

/// What a store salvage did: the snapshot it carried over, and each WAL file's salvage.
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreSalvage {
    /// The snapshot carried over whole, after it verified (0: none): the live one, or the
    /// newest older one when the live one is damaged.
    pub snapshot_seq: u64,
    /// The live snapshot, when it was damaged and an older one was used instead: the active WAL
    /// is then rebuilt from the archives after that one, and the old active WAL.
    pub damaged_snapshot: Option<u64>,
    /// Each salvaged file (`wal.<N>.archive`, `wal.log`) and its report, archives first.
    pub files: Vec<(String, SalvageReport)>,
}

/// Salvage the store directory `source` into a new store `dest` (which must not exist).
///
/// The newest snapshot at or before the live one that verifies is carried over: the live one,
/// or, when it is damaged, an older one. Every archive the MANIFEST lists up to that snapshot
/// is salvaged as it is; the active WAL is salvaged after it, and, when an older snapshot had
/// to be used, rebuilt from the archives that end after that snapshot followed by the old
/// active WAL, as one run of sequences. Consumer positions are copied and the MANIFEST (naming
/// the snapshot used) written last, in a staging directory renamed into place, so the result
/// opens as a store or is not there; a salvage that fails removes the staging directory.
///
/// # Errors
/// `InvalidArgument` if `dest` exists; I/O and MANIFEST errors.
pub fn salvage_store(vfs: &Arc<dyn Vfs>, source: &Path, dest: &Path) -> Result<StoreSalvage> {
    salvage_store_counted(vfs, source, dest, &Progress::default())
}

/// [`salvage_store`], counting the bytes of its logs read into `progress` as it goes.
///
/// # Errors
/// As [`salvage_store`].
pub fn salvage_store_counted(
    vfs: &Arc<dyn Vfs>,
    source: &Path,
    dest: &Path,
    progress: &Progress,
) -> Result<StoreSalvage> {
    require_absent(vfs.as_ref(), dest, "salvage")?;
    let manifest = Manifest::read(vfs.as_ref(), source)?;
    let live = manifest.as_ref().map_or(0, |m| m.live_snapshot_seq);
    let archives = manifest
        .as_ref()
        .map_or_else(Vec::new, |m| m.archives.clone());
    let snapshot = newest_sound_snapshot(vfs.as_ref(), source, live)?;
    let staging = Staging::create(vfs, dest, "salvage")?;
    let staged = staging.path();
    let mut out = StoreSalvage {
        snapshot_seq: snapshot,
        damaged_snapshot: (snapshot != live).then_some(live),
        files: Vec::new(),
    };
    if snapshot > 0 {
        let file = StoreFile::Snapshot(snapshot);
        copy_file(vfs.as_ref(), &file.path(source), &file.path(staged))?;
    }
    let present = |file: StoreFile| -> Result<bool> {
        let path = file.path(source);
        Ok(vfs
            .stat(&path)
            .map_err(|e| Error::io("stat", &path, e))?
            .is_some())
    };
    let mut logs = vec![StoreFile::Wal.path(source)];
    logs.extend(
        archives
            .iter()
            .map(|&end| StoreFile::Archive(end).path(source)),
    );
    let mut total = 0;
    for log in &logs {
        total += size_of(vfs.as_ref(), log)?;
    }
    progress.total.store(total, Ordering::Relaxed);
    let mut kept = Vec::new();
    let mut rebuilt = Vec::new();
    for &end in &archives {
        let archive = StoreFile::Archive(end);
        if !present(archive)? {
            continue;
        }
        if end <= snapshot {
            let report = salvage_files(
                vfs,
                &[archive.path(source)],
                &archive.path(staged),
                Header::Source(None),
                progress,
            )?;
            out.files.push((archive.name(), report));
            kept.push(end);
        } else {
            rebuilt.push(archive.path(source));
        }
    }
    let wal = StoreFile::Wal;
    rebuilt.push(wal.path(source));
    let header = if snapshot == live {
        Header::Source(Some(live))
    } else {
        Header::Fixed(snapshot)
    };
    let report = salvage_files(vfs, &rebuilt, &wal.path(staged), header, progress)?;
    out.files.push((wal.name(), report));
    // A damaged position becomes 0: its consumer is delivered everything again (at least
    // once), never skips what it had not acknowledged.
    for (name, position) in consumer::retention_positions(vfs.as_ref(), source)? {
        consumer::write(vfs.as_ref(), staged, &name, position)?;
    }
    if manifest.is_some() {
        Manifest {
            live_snapshot_seq: snapshot,
            active_wal_seq: snapshot,
            archives: kept,
        }
        .write(vfs.as_ref(), staged)?;
    }
    staging.place()?;
    // The damaged bytes were kept in the staging directory, which is now `dest`.
    for (name, report) in &mut out.files {
        if report.damaged_file.is_some() {
            report.damaged_file = Some(damaged_path(&dest.join(name)).display().to_string());
        }
    }
    Ok(out)
}

/// The newest snapshot at or before `live` in `dir` that opens and verifies (0: none).
fn newest_sound_snapshot(vfs: &dyn Vfs, dir: &Path, live: u64) -> Result<u64> {
    let mut candidates: Vec<u64> = vfs
        .list(dir)
        .map_err(|e| Error::io("list", dir, e))?
        .iter()
        .filter_map(|entry| match StoreFile::parse(&entry.name) {
            Some(StoreFile::Snapshot(seq)) if seq <= live => Some(seq),
            _ => None,
        })
        .collect();
    candidates.sort_unstable_by(|a, b| b.cmp(a));
    for seq in candidates {
        let sound = SnapshotReader::open(vfs, &StoreFile::Snapshot(seq).path(dir))
            .and_then(|reader| reader.verify().map(|()| reader.sequence() == seq));
        if matches!(sound, Ok(true)) {
            return Ok(seq);
        }
    }
    Ok(0)
}
