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
use crate::filename::{StoreFile, staging_path};
use crate::frame::{
    self, FLAG_CHECKPOINT_WATERMARK, FRAME_HEADER_LEN, FrameFields, FrameHeader, Origin,
};
use crate::io::{OpenMode, Vfs, read_up_to};
use crate::manifest::Manifest;
use crate::publish::{Placement, publish, require_absent, write_all};
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
    let header: &[u8; FRAME_HEADER_LEN] = bytes
        .get(offset..offset + FRAME_HEADER_LEN)?
        .try_into()
        .ok()?;
    let decoded = frame::decode_header(header, offset as u64).ok()?;
    if decoded.sequence <= after {
        return None;
    }
    let body = offset + FRAME_HEADER_LEN;
    let extent = bytes.get(body..body + decoded.extent_len())?;
    frame::decode_extent(&decoded, extent).ok()?;
    let start = body + decoded.extent_len();
    let stored = bytes.get(start..start + decoded.payload_len as usize)?;
    frame::verify_payload(&decoded, stored).ok()?;
    Some(decoded)
}

/// Salvage the WAL file `source` into a new WAL `dest` (which must not exist).
///
/// # Errors
/// `InvalidArgument` if `dest` exists; I/O errors. A source with no frame that verifies gives
/// an empty log.
pub fn salvage_wal(vfs: &Arc<dyn Vfs>, source: &Path, dest: &Path) -> Result<SalvageReport> {
    require_absent(vfs.as_ref(), dest, "salvage")?;
    salvage_file(vfs, source, dest, None)
}

/// [`salvage_wal`]; a damaged header is replaced by one naming `header_seq` when given (the
/// active WAL of a store must start after its live snapshot), else the sequence before the
/// first frame kept.
fn salvage_file(
    vfs: &Arc<dyn Vfs>,
    source: &Path,
    dest: &Path,
    header_seq: Option<u64>,
) -> Result<SalvageReport> {
    let file = vfs
        .open(source, OpenMode::Read)
        .map_err(|e| Error::io("open", source, e))?;
    let len = file.size().map_err(|e| Error::io("stat", source, e))?;
    let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(0)];
    let got = read_up_to(file.as_ref(), &mut bytes, 0).map_err(|e| Error::io("read", source, e))?;
    bytes.truncate(got);
    let mut report = SalvageReport::default();
    let header = FileHeader::decode(&bytes).ok();
    report.header_replaced = header.is_none();
    let mut out = Vec::new();
    let mut damaged = Vec::new();
    let mut pos = FILE_HEADER_LEN.min(bytes.len());
    // The sequence before the first frame: the header's, or (header damaged) the first frame's.
    let mut last = match (header, header_seq) {
        (Some(h), _) => h.snapshot_seq,
        (None, Some(seq)) => seq,
        (None, None) => (pos..bytes.len())
            .find_map(|at| frame_at(&bytes, at, 0))
            .map_or(0, |f| f.sequence - 1),
    };
    let snapshot_seq = last;
    let mut last_hlc = crate::hlc::Hlc::default();
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
    report.last_sequence = last;
    let mut log = FileHeader { snapshot_seq }.encode().to_vec();
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

/// What a store salvage did: the live snapshot it carried over, and each WAL file's salvage.
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreSalvage {
    /// The live snapshot's sequence (0: none), carried over whole after it verified.
    pub snapshot_seq: u64,
    /// Each salvaged file (`wal.<N>.archive`, `wal.log`) and its report, archives first.
    pub files: Vec<(String, SalvageReport)>,
}

/// Salvage the store directory `source` into a new store `dest` (which must not exist): the
/// live snapshot (which must verify: a damaged one is refused, and its WAL files can still be
/// salvaged one by one), every archive the MANIFEST lists and the active WAL, each salvaged,
/// consumer positions, and the MANIFEST last; built in a staging directory renamed into place,
/// so the result opens as a store or is not there.
///
/// # Errors
/// `InvalidArgument` if `dest` exists; the live snapshot's errors; I/O and MANIFEST errors.
pub fn salvage_store(vfs: &Arc<dyn Vfs>, source: &Path, dest: &Path) -> Result<StoreSalvage> {
    require_absent(vfs.as_ref(), dest, "salvage")?;
    let manifest = Manifest::read(vfs.as_ref(), source)?;
    let live = manifest.as_ref().map_or(0, |m| m.live_snapshot_seq);
    let staging = staging_path(dest, "salvage");
    vfs.create_dir_all(&staging)
        .map_err(|e| Error::io("create directory", &staging, e))?;
    let mut out = StoreSalvage {
        snapshot_seq: live,
        files: Vec::new(),
    };
    if live > 0 {
        let snapshot = StoreFile::Snapshot(live);
        let reader = SnapshotReader::open(vfs.as_ref(), &snapshot.path(source))?;
        reader.verify()?;
        copy_file(
            vfs.as_ref(),
            &snapshot.path(source),
            &snapshot.path(&staging),
        )?;
    }
    for &end in manifest.as_ref().map_or(&[][..], |m| &m.archives) {
        let archive = StoreFile::Archive(end);
        if vfs
            .stat(&archive.path(source))
            .map_err(|e| Error::io("stat", archive.path(source), e))?
            .is_some()
        {
            let report = salvage_file(vfs, &archive.path(source), &archive.path(&staging), None)?;
            out.files.push((archive.name(), report));
        }
    }
    let wal = StoreFile::Wal;
    let report = salvage_file(vfs, &wal.path(source), &wal.path(&staging), Some(live))?;
    out.files.push((wal.name(), report));
    for (name, position) in consumer::list(vfs.as_ref(), source)? {
        consumer::write(vfs.as_ref(), &staging, &name, position)?;
    }
    if let Some(m) = manifest {
        m.write(vfs.as_ref(), &staging)?;
    }
    crate::publish::place_dir(vfs.as_ref(), &staging, dest)?;
    Ok(out)
}

/// Copy `from` to `to` durably.
fn copy_file(vfs: &dyn Vfs, from: &Path, to: &Path) -> Result<()> {
    let source = vfs
        .open(from, OpenMode::Read)
        .map_err(|e| Error::io("open", from, e))?;
    let len = source.size().map_err(|e| Error::io("stat", from, e))?;
    publish(vfs, to, Placement::Replace, |file, temp| {
        crate::publish::copy_range(source.as_ref(), from, 0, file, temp, 0, len)
    })
    .map(drop)
}
