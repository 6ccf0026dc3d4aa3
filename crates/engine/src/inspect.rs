//! Looking inside a store directory or a single file without changing it: what is there
//! (`Depth::Inspect`) and whether every checksum, hash and cross-file rule holds
//! (`Depth::Verify`). Problems are collected, each with its file, offset and error code,
//! rather than stopping at the first.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::batch::Entry;
use crate::compression::declared_len;
use crate::consumer;
use crate::dir_lock::{DirLock, lock_dir};
use crate::error::{Error, Result};
use crate::file_header::FILE_HEADER_LEN;
use crate::filename::{StoreFile, consumer_file, is_temp};
use crate::frame::{FLAG_CHECKPOINT_WATERMARK, FLAG_COMPRESSED};
use crate::io::{DirEntry, LockKind, OpenMode, Stat, Vfs, read_exact_at};
use crate::manifest::Manifest;
use crate::reader::WalReader;
use crate::scan::TailRepair;
use crate::snapshot::SnapshotReader;

/// How deep to look.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Depth {
    /// Headers, section tables and the frame chain (every frame checksum).
    Inspect,
    /// Also decompress every payload, hash every snapshot body, and check the MANIFEST
    /// against the files and sequence continuity across archives.
    Verify,
}

/// Bytes examined so far, and in all; shared with whoever draws a progress bar.
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes examined.
    pub done: AtomicU64,
    /// Bytes to examine.
    pub total: AtomicU64,
}

/// How bad a problem is.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// Data is damaged, missing or inconsistent.
    Error,
    /// Expected after a crash and repaired by the next open or prune (torn tail, orphans).
    Warning,
}

/// One problem found.
#[derive(Clone, Debug, Eq, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// How bad it is.
    pub severity: Severity,
    /// The file it is in.
    pub file: String,
    /// Where in the file, if known.
    pub offset: Option<u64>,
    /// A stable code (an error code, or `TORN_TAIL`, `ORPHAN`, `STALE_TEMP_FILE`).
    pub code: String,
    /// What is wrong.
    pub message: String,
}

/// A WAL or archive file.
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WalSummary {
    /// Its path.
    pub path: String,
    /// Its size.
    pub file_bytes: u64,
    /// The snapshot sequence in its header.
    pub snapshot_seq: u64,
    /// First entry's sequence.
    pub first_sequence: Option<u64>,
    /// Last entry's sequence.
    pub last_sequence: Option<u64>,
    /// Entries, watermarks included.
    pub entries: u64,
    /// Checkpoint watermarks among them.
    pub watermarks: u64,
    /// Entries stored compressed.
    pub compressed_entries: u64,
    /// Payload bytes as stored.
    pub stored_payload_bytes: u64,
    /// Payload bytes decompressed (declared by each zstd frame, or counted by `Depth::Verify`).
    pub raw_payload_bytes: u64,
    /// A torn tail after the last valid frame.
    pub torn_tail: Option<TailRepair>,
}

/// A snapshot file.
#[derive(Clone, Debug, Eq, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotSummary {
    /// Its path.
    pub path: String,
    /// The sequence it covers.
    pub sequence: u64,
    /// Its size.
    pub bytes: u64,
    /// Whether the MANIFEST names it live.
    pub live: bool,
    /// Its sections.
    pub sections: Vec<SectionSummary>,
}

/// One snapshot section.
#[derive(Clone, Debug, Eq, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SectionSummary {
    /// Name.
    pub name: String,
    /// Length once decompressed.
    pub raw_len: u64,
    /// Length as stored.
    pub stored_len: u64,
    /// Whether it is stored compressed.
    pub compressed: bool,
}

/// An archive and whether the MANIFEST lists it.
#[derive(Clone, Debug, Eq, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveSummary {
    /// The sequence in its name.
    pub sequence: u64,
    /// Whether the MANIFEST lists it.
    pub tracked: bool,
    /// Its contents.
    pub wal: WalSummary,
}

/// Everything examined.
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The directory or file examined.
    pub path: String,
    /// `store`, `wal`, `snapshot` or `manifest`.
    pub kind: String,
    /// The MANIFEST, if there is one.
    pub manifest: Option<Manifest>,
    /// Snapshots, ascending.
    pub snapshots: Vec<SnapshotSummary>,
    /// Archives, ascending.
    pub archives: Vec<ArchiveSummary>,
    /// The active WAL (or the one WAL file examined).
    pub wal: Option<WalSummary>,
    /// Temp files left by interrupted publications.
    pub temp_files: Vec<String>,
    /// The store's durable consumers, by name.
    pub consumers: Vec<ConsumerSummary>,
    /// Torn tails an open cut and kept (`wal.log.torn.<offset>`), by name, with their sizes.
    pub torn_files: Vec<(String, u64)>,
    /// Everything wrong.
    pub problems: Vec<Problem>,
}

/// A durable consumer and how far it lags.
#[derive(Clone, Debug, Eq, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerSummary {
    /// Its name.
    pub name: String,
    /// The last sequence it acknowledged.
    pub position: u64,
    /// Sequences after its position in the active WAL's range: what it has yet to acknowledge.
    pub lag_entries: u64,
}

impl Report {
    fn problem(
        &mut self,
        severity: Severity,
        file: &Path,
        offset: Option<u64>,
        code: &str,
        message: String,
    ) {
        self.problems.push(Problem {
            severity,
            file: file.display().to_string(),
            offset,
            code: code.to_owned(),
            message,
        });
    }

    fn error(&mut self, file: &Path, error: &Error) {
        self.problem(
            Severity::Error,
            file,
            error.offset(),
            error.code(),
            error.to_string(),
        );
    }

    /// Whether any problem is an error.
    #[must_use]
    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(|p| p.severity == Severity::Error)
    }
}

/// What `path` is, through `vfs`.
fn stat(vfs: &Arc<dyn Vfs>, path: &Path) -> Result<Option<Stat>> {
    vfs.stat(path).map_err(|e| Error::io("stat", path, e))
}

/// The size of `path` (0 if it cannot be read: the problem is reported where it is opened).
fn size_of(vfs: &Arc<dyn Vfs>, path: &Path) -> u64 {
    vfs.stat(path).ok().flatten().map_or(0, |s| s.size)
}

/// Examine `path`: a store directory, or one WAL, archive, snapshot or MANIFEST file.
///
/// # Errors
/// Only when `path` cannot be read at all; everything else is a [`Problem`] in the report.
pub fn examine(
    vfs: &Arc<dyn Vfs>,
    path: &Path,
    depth: Depth,
    progress: &Progress,
) -> Result<Report> {
    let mut report = Report {
        path: path.display().to_string(),
        ..Report::default()
    };
    if vfs.is_dir(path).map_err(|e| Error::io("stat", path, e))? {
        report.kind = "store".into();
        examine_store(vfs, path, depth, progress, &mut report)?;
    } else {
        let file = vfs
            .open(path, OpenMode::Read)
            .map_err(|e| Error::io("open", path, e))?;
        let size = file.size().map_err(|e| Error::io("stat", path, e))?;
        progress.total.store(size, Ordering::Relaxed);
        let mut magic = [0u8; 4];
        let have = usize::try_from(size).unwrap_or(4).min(4);
        read_exact_at(file.as_ref(), &mut magic[..have], 0)
            .map_err(|e| Error::io("read", path, e))?;
        match &magic {
            b"SPSN" => {
                report.kind = "snapshot".into();
                if let Some(s) = examine_snapshot(vfs, path, depth, false, &mut report) {
                    report.snapshots.push(s);
                }
            }
            b"SPMF" => {
                report.kind = "manifest".into();
                let mut bytes = vec![0u8; usize::try_from(size).unwrap_or(0)];
                read_exact_at(file.as_ref(), &mut bytes, 0)
                    .map_err(|e| Error::io("read", path, e))?;
                match Manifest::decode(&bytes, path) {
                    Ok(m) => report.manifest = Some(m),
                    Err(e) => report.error(path, &e),
                }
            }
            _ => {
                report.kind = "wal".into();
                report.wal =
                    examine_wal(vfs, path, depth, progress, Severity::Warning, &mut report);
            }
        }
        progress.done.store(size, Ordering::Relaxed);
    }
    Ok(report)
}

/// Examine a store directory: its MANIFEST, every snapshot and archive, the active WAL, the
/// cross-file rules (at `Depth::Verify`) and the consumers, in that order.
fn examine_store(
    vfs: &Arc<dyn Vfs>,
    dir: &Path,
    depth: Depth,
    progress: &Progress,
    report: &mut Report,
) -> Result<()> {
    let _lock = lock_if_present(vfs, dir)?;
    let listing = vfs.list(dir).map_err(|e| Error::io("list", dir, e))?;
    progress
        .total
        .store(examined_bytes(&listing), Ordering::Relaxed);
    let manifest = read_manifest(vfs, dir, report);
    let live = manifest.as_ref().map_or(0, |m| m.live_snapshot_seq);
    let (mut snapshot_seqs, archive_seqs) = sort_listing(&listing, dir, report);
    // The listing holds regular files only: a live snapshot that is something else (a FIFO,
    // say) is still examined, so its open reports what it is.
    if live > 0
        && !snapshot_seqs.contains(&live)
        && stat(vfs, &StoreFile::Snapshot(live).path(dir))?.is_some()
    {
        snapshot_seqs.push(live);
    }
    examine_snapshots(vfs, dir, snapshot_seqs, live, depth, progress, report);
    let tracked: &[u64] = manifest.as_ref().map_or(&[], |m| &m.archives);
    examine_archives(vfs, dir, archive_seqs, tracked, depth, progress, report);
    let wal_path = StoreFile::Wal.path(dir);
    report.wal = if stat(vfs, &wal_path)?.is_some() {
        examine_wal(vfs, &wal_path, depth, progress, Severity::Warning, report)
    } else {
        None
    };
    if depth == Depth::Verify {
        check_store(dir, manifest.as_ref(), report);
    }
    list_consumers(vfs, dir, report);
    report.manifest = manifest;
    Ok(())
}

/// The directory lock held shared, to wait out a running rotation or prune, or `None` where
/// there is no lock file (none is created).
fn lock_if_present(vfs: &Arc<dyn Vfs>, dir: &Path) -> Result<Option<DirLock>> {
    if stat(vfs, &StoreFile::Lock.path(dir))?.is_some() {
        Ok(Some(lock_dir(vfs.as_ref(), dir, LockKind::Shared)?))
    } else {
        Ok(None)
    }
}

/// The bytes of the files examined frame by frame (the WAL, snapshots, archives): the
/// progress total.
fn examined_bytes(listing: &[DirEntry]) -> u64 {
    listing
        .iter()
        .filter(|e| {
            matches!(
                StoreFile::parse(&e.name),
                Some(StoreFile::Wal | StoreFile::Snapshot(_) | StoreFile::Archive(_))
            )
        })
        .map(|e| e.size)
        .sum()
}

/// The MANIFEST of `dir`, if it has one that reads; a MANIFEST that does not is an error in
/// the report.
fn read_manifest(vfs: &Arc<dyn Vfs>, dir: &Path, report: &mut Report) -> Option<Manifest> {
    match Manifest::read(vfs.as_ref(), dir) {
        Ok(m) => m,
        Err(e) => {
            report.error(&StoreFile::Manifest.path(dir), &e);
            None
        }
    }
}

/// Record the kept torn tails and the stale temp files (each a warning) of `listing`; returns
/// the sequences of its snapshots and of its archives.
fn sort_listing(listing: &[DirEntry], dir: &Path, report: &mut Report) -> (Vec<u64>, Vec<u64>) {
    let mut snapshot_seqs = Vec::new();
    let mut archive_seqs = Vec::new();
    for entry in listing {
        let path = dir.join(&entry.name);
        if let Some(StoreFile::Torn(_)) = StoreFile::parse(&entry.name) {
            report.torn_files.push((entry.name.clone(), entry.size));
        } else if is_temp(&entry.name) {
            report.temp_files.push(entry.name.clone());
            report.problem(
                Severity::Warning,
                &path,
                None,
                "STALE_TEMP_FILE",
                "left by an interrupted publication; prune deletes it".into(),
            );
        } else {
            match StoreFile::parse(&entry.name) {
                Some(StoreFile::Snapshot(seq)) => snapshot_seqs.push(seq),
                Some(StoreFile::Archive(seq)) => archive_seqs.push(seq),
                _ => {}
            }
        }
    }
    (snapshot_seqs, archive_seqs)
}

/// Examine the snapshots at `seqs`, ascending; one newer than the `live` one is an orphan.
fn examine_snapshots(
    vfs: &Arc<dyn Vfs>,
    dir: &Path,
    mut seqs: Vec<u64>,
    live: u64,
    depth: Depth,
    progress: &Progress,
    report: &mut Report,
) {
    seqs.sort_unstable();
    for seq in seqs {
        let path = StoreFile::Snapshot(seq).path(dir);
        if let Some(summary) = examine_snapshot(vfs, &path, depth, seq == live, report) {
            report.snapshots.push(summary);
        }
        if seq > live {
            report.problem(Severity::Warning, &path, None, "ORPHAN", format!("newer than the live snapshot {live}: left by an unfinished checkpoint; prune deletes it"));
        }
        progress
            .done
            .fetch_add(size_of(vfs, &path), Ordering::Relaxed);
    }
}

/// Examine the archives at `seqs`, ascending: one the MANIFEST does not list (`tracked`) is
/// an orphan, and at `Depth::Verify` one that scans clean must end at its own sequence.
fn examine_archives(
    vfs: &Arc<dyn Vfs>,
    dir: &Path,
    mut seqs: Vec<u64>,
    tracked: &[u64],
    depth: Depth,
    progress: &Progress,
    report: &mut Report,
) {
    seqs.sort_unstable();
    for seq in seqs {
        let path = StoreFile::Archive(seq).path(dir);
        let errors_before = report.problems.len();
        let Some(wal) = examine_wal(vfs, &path, depth, progress, Severity::Error, report) else {
            continue;
        };
        // An archive that already failed its scan cannot be judged by where it ends.
        let scanned_clean = report.problems.len() == errors_before;
        if !tracked.contains(&seq) {
            report.problem(
                Severity::Warning,
                &path,
                None,
                "ORPHAN",
                "not listed in the MANIFEST; prune deletes it".into(),
            );
        }
        let last = wal.last_sequence.unwrap_or(wal.snapshot_seq);
        if depth == Depth::Verify && scanned_clean && last != seq {
            report.problem(
                Severity::Error,
                &path,
                None,
                "STORE_INCONSISTENT",
                format!("archive ends at {last}, not at {seq}"),
            );
        }
        report.archives.push(ArchiveSummary {
            sequence: seq,
            tracked: tracked.contains(&seq),
            wal,
        });
    }
}

/// List the registered consumers with their lag behind the active WAL's last entry. A
/// damaged position file is an error of its own, naming it; the others are still listed.
fn list_consumers(vfs: &Arc<dyn Vfs>, dir: &Path, report: &mut Report) {
    let last = report
        .wal
        .as_ref()
        .map_or(0, |w| w.last_sequence.unwrap_or(w.snapshot_seq));
    match consumer::scan(vfs.as_ref(), dir) {
        Ok(consumers) => {
            for listed in consumers {
                match listed.position {
                    Ok(position) => report.consumers.push(ConsumerSummary {
                        lag_entries: last.saturating_sub(position),
                        name: listed.name,
                        position,
                    }),
                    Err(e) => report.error(&dir.join(consumer_file(&listed.name)), &e),
                }
            }
        }
        Err(e) => report.error(dir, &e),
    }
}

/// The cross-file rules: the MANIFEST names files that exist, archives chain without gaps,
/// and the active WAL continues from the live snapshot.
fn check_store(dir: &Path, manifest: Option<&Manifest>, report: &mut Report) {
    let manifest_path = StoreFile::Manifest.path(dir);
    let inconsistent = |report: &mut Report, file: &Path, message: String| {
        report.problem(Severity::Error, file, None, "STORE_INCONSISTENT", message);
    };
    if let Some(m) = manifest {
        if m.live_snapshot_seq > 0
            && !report
                .snapshots
                .iter()
                .any(|s| s.sequence == m.live_snapshot_seq)
        {
            inconsistent(
                report,
                &manifest_path,
                format!("the live snapshot {} is missing", m.live_snapshot_seq),
            );
        }
        for seq in &m.archives {
            if !report.archives.iter().any(|a| a.sequence == *seq) {
                inconsistent(
                    report,
                    &manifest_path,
                    format!("the listed archive wal.{seq}.archive is missing"),
                );
            }
        }
    }
    let chain: Vec<(u64, u64, String)> = report
        .archives
        .iter()
        .filter(|a| a.tracked)
        .map(|a| (a.sequence, a.wal.snapshot_seq, a.wal.path.clone()))
        .collect();
    for pair in chain.windows(2) {
        let ((previous, _, _), (_, starts_after, path)) = (&pair[0], &pair[1]);
        if starts_after != previous {
            inconsistent(
                report,
                Path::new(path),
                format!("starts after {starts_after}, but the previous archive ends at {previous}"),
            );
        }
    }
    let live = manifest.map_or(0, |m| m.live_snapshot_seq);
    if let Some(wal) = report.wal.clone() {
        let path = PathBuf::from(&wal.path);
        if wal.snapshot_seq > live {
            inconsistent(
                report,
                &path,
                format!(
                    "starts after {}, past the live snapshot {live}",
                    wal.snapshot_seq
                ),
            );
        } else if wal.snapshot_seq < live {
            report.problem(Severity::Warning, &path, None, "ROTATION_UNFINISHED", format!("starts after {} but the live snapshot is {live}: the next open finishes the rotation", wal.snapshot_seq));
        }
    }
}

fn examine_snapshot(
    vfs: &Arc<dyn Vfs>,
    path: &Path,
    depth: Depth,
    live: bool,
    report: &mut Report,
) -> Option<SnapshotSummary> {
    let reader = match SnapshotReader::open(vfs.as_ref(), path) {
        Ok(reader) => reader,
        Err(e) => {
            report.error(path, &e);
            return None;
        }
    };
    if depth == Depth::Verify
        && let Err(e) = reader.verify()
    {
        report.error(path, &e);
    }
    let sections = reader
        .sections()
        .iter()
        .map(|s| SectionSummary {
            name: s.name.clone(),
            raw_len: s.raw_len,
            stored_len: s.stored_len,
            compressed: s.compressed,
        })
        .collect();
    Some(SnapshotSummary {
        path: path.display().to_string(),
        sequence: reader.sequence(),
        bytes: size_of(vfs, path),
        live,
        sections,
    })
}

/// Walk every frame of a WAL file. A torn tail is reported with `torn_severity`.
fn examine_wal(
    vfs: &Arc<dyn Vfs>,
    path: &Path,
    depth: Depth,
    progress: &Progress,
    torn_severity: Severity,
    report: &mut Report,
) -> Option<WalSummary> {
    let mut reader = match WalReader::open(vfs, path) {
        Ok(reader) => reader,
        Err(e) => {
            report.error(path, &e);
            return None;
        }
    };
    let mut summary = WalSummary {
        path: path.display().to_string(),
        file_bytes: size_of(vfs, path),
        snapshot_seq: reader.snapshot_seq(),
        ..WalSummary::default()
    };
    let start = progress.done.load(Ordering::Relaxed);
    loop {
        let frame = match reader.next_frame(0) {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => {
                report.error(path, &e);
                break;
            }
        };
        let (flags, stored) = (frame.flags, frame.stored.len() as u64);
        summary.first_sequence.get_or_insert(frame.sequence);
        summary.last_sequence = Some(frame.sequence);
        summary.entries += 1;
        summary.watermarks += u64::from(flags & FLAG_CHECKPOINT_WATERMARK != 0);
        summary.stored_payload_bytes += stored;
        let end = frame.end;
        if flags & FLAG_COMPRESSED == 0 {
            summary.raw_payload_bytes += stored;
        } else {
            summary.compressed_entries += 1;
            if depth == Depth::Verify {
                match Entry::from_frame(frame.borrowed()) {
                    Ok(entry) => summary.raw_payload_bytes += entry.payload.len() as u64,
                    Err(e) => report.error(path, &e),
                }
            } else {
                summary.raw_payload_bytes += declared_len(&frame.stored).unwrap_or(stored);
            }
        }
        progress.done.store(start + end, Ordering::Relaxed);
    }
    if let Some(torn) = reader.torn_tail() {
        summary.torn_tail = Some(torn);
        report.problem(
            torn_severity,
            path,
            Some(torn.offset),
            "TORN_TAIL",
            format!(
                "{} bytes after the last valid entry ({}); the next writer open cuts them",
                torn.discarded_bytes,
                torn.reason.as_str()
            ),
        );
    }
    progress.done.store(
        start + summary.file_bytes.max(FILE_HEADER_LEN as u64),
        Ordering::Relaxed,
    );
    Some(summary)
}
