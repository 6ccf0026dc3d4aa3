//! Salvage: every frame that verifies, copied past damage into a new, valid log.
//!
//! The source is read, never modified. From the end of its header, each frame that verifies in
//! full (header, extent and payload checksums) with a sequence above the last one kept is
//! copied byte for byte. Past damage the scan resynchronises at the next offset holding such a
//! frame; the 40-byte header carries its own checksum and the sequence, so a false match is as
//! unlikely as a 32-bit checksum collision that also fits the sequence order and the payload's
//! checksum. The damaged bytes are kept in `<dest>.damaged` for forensics, in order, and the
//! report gives each range's offset in the source.
//!
//! The WAL format requires consecutive sequences, so a run of sequences lost in the damage is
//! filled with checkpoint-watermark frames (no payload), which replay and followers skip: every
//! surviving entry keeps its own sequence, and the report lists the missing ones. A damaged
//! file header is replaced by one naming the sequence before the first frame kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::consumer;
use crate::error::{Error, Result};
use crate::file_header::{FILE_HEADER_LEN, FileHeader};
use crate::filename::StoreFile;
use crate::frame::{self, FLAG_CHECKPOINT_WATERMARK, FrameFields, FrameHeader, Origin};
use crate::io::{OpenMode, Vfs, read_up_to};
use crate::manifest::Manifest;
use crate::publish::{Placement, Staging, copy_file, publish, require_absent, write_all};
use crate::scan;
use crate::snapshot::SnapshotReader;

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

/// The first frame verifying in full at `offset` of `bytes` with a sequence above `after`.
fn frame_at(bytes: &[u8], offset: usize, after: u64) -> Option<FrameHeader> {
    scan::frame_in(bytes, offset)
        .ok()
        .map(|f| f.header)
        .filter(|h| h.sequence > after)
}

/// Salvage the WAL file `source` into a new WAL `dest` (which must not exist).
///
/// # Errors
/// `InvalidArgument` if `dest` exists; I/O errors. A source with no frame that verifies gives
/// an empty log.
pub fn salvage_wal(vfs: &Arc<dyn Vfs>, source: &Path, dest: &Path) -> Result<SalvageReport> {
    require_absent(vfs.as_ref(), dest, "salvage")?;
    salvage_files(vfs, &[source.to_path_buf()], dest, Header::Source(None))
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
) -> Result<SalvageReport> {
    let mut report = SalvageReport::default();
    let mut out = Vec::new();
    let mut damaged = Vec::new();
    let mut snapshot_seq = None;
    let mut last = 0;
    let mut last_hlc = crate::hlc::Hlc::default();
    for source in sources {
        let file = vfs
            .open(source, OpenMode::Read)
            .map_err(|e| Error::io("open", source, e))?;
        let len = file.size().map_err(|e| Error::io("stat", source, e))?;
        let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(0)];
        let got =
            read_up_to(file.as_ref(), &mut bytes, 0).map_err(|e| Error::io("read", source, e))?;
        bytes.truncate(got);
        let mut pos = FILE_HEADER_LEN.min(bytes.len());
        if snapshot_seq.is_none() {
            let decoded = FileHeader::decode(&bytes).ok();
            report.header_replaced = decoded.is_none();
            // The sequence before the first frame: the header's, or (header damaged) a hint's,
            // or the first frame's.
            last = match (header, decoded) {
                (Header::Fixed(seq), _) => seq,
                (Header::Source(_), Some(h)) => h.snapshot_seq,
                (Header::Source(Some(seq)), None) => seq,
                (Header::Source(None), None) => (pos..bytes.len())
                    .find_map(|at| frame_at(&bytes, at, 0))
                    .map_or(0, |f| f.sequence - 1),
            };
            snapshot_seq = Some(last);
        }
        while pos < bytes.len() {
            if let Some(found) = frame_at(&bytes, pos, last) {
                if found.sequence > last + 1 {
                    report.missing.push((last + 1, found.sequence - 1));
                    for sequence in last + 1..found.sequence {
                        let fields = FrameFields {
                            sequence,
                            hlc: last_hlc,
                            origin: Origin::Local,
                            principal: None,
                            flags: FLAG_CHECKPOINT_WATERMARK,
                        };
                        frame::encode_frame(&mut out, &fields, &[]);
                    }
                }
                let end = pos + usize::try_from(found.frame_len()).unwrap_or(usize::MAX);
                out.extend_from_slice(&bytes[pos..end]);
                report.frames_recovered += 1;
                last = found.sequence;
                last_hlc = found.hlc;
                pos = end;
                continue;
            }
            // Zeros to the end are the clean end of the log, not damage.
            if bytes[pos..].iter().all(|&b| b == 0) {
                break;
            }
            let next = (pos + 1..bytes.len())
                .find(|&at| frame_at(&bytes, at, last).is_some())
                .unwrap_or(bytes.len());
            report.skipped.push((pos as u64, (next - pos) as u64));
            damaged.extend_from_slice(&bytes[pos..next]);
            pos = next;
        }
    }
    report.last_sequence = last;
    let mut log = FileHeader {
        snapshot_seq: snapshot_seq.unwrap_or(last),
    }
    .encode()
    .to_vec();
    log.extend_from_slice(&out);
    publish(vfs.as_ref(), dest, Placement::Replace, |f, temp| {
        write_all(f, temp, &log)
    })?;
    if !damaged.is_empty() {
        let side = damaged_path(dest);
        publish(vfs.as_ref(), &side, Placement::Replace, |f, temp| {
            write_all(f, temp, &damaged)
        })?;
        report.damaged_file = Some(side.display().to_string());
    }
    Ok(report)
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
    let report = salvage_files(vfs, &rebuilt, &wal.path(staged), header)?;
    out.files.push((wal.name(), report));
    for (name, position) in consumer::list(vfs.as_ref(), source)? {
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
