//! Durable consumers: a named position (the last acknowledged sequence) kept in the store
//! directory as `consumer.<name>`, published like the other files (temp file, fdatasync,
//! rename, directory fsync), so it survives any crash. Delivery from it is at-least-once: a
//! consumer resumes after its last acknowledgement. Retention keeps every archive a
//! registered consumer still needs (see [`crate::retention::plan`]).
//!
//! A position never passes the durable end of the log, so a crash can never leave a consumer
//! waiting after entries the log lost (the sequences would be reused, and never delivered):
//! - with the writer in this process ([`Log::Writer`]), a position past the last committed
//!   sequence is `InvalidArgument`, and entries not yet fdatasynced are flushed before the
//!   position is published, whatever the sync policy;
//! - from another process ([`Log::Files`]), a position may go up to what the files record as
//!   durable (the archives, the seal of the active WAL) and no further: it cannot flush, and
//!   does not wait (under `manual`, nothing may come). A durable follower yields only such
//!   entries.
//! - at open, a position past the recovered end (a backup taken mid-ack, a file copied in, a
//!   file written before this rule) is capped to it and reported ([`cap`]).
//!
//! The compare and the publish of an acknowledgement run under `consumers.lock`, held
//! exclusive, so a lower acknowledgement changes nothing whatever handle or process makes it.
//! A damaged position file is reported by name ([`scan`]) and counts as position 0 for
//! retention ([`retention_positions`]): it keeps everything the consumer might need, and the
//! other consumers and prunes go on.
//!
//! File (24 bytes, little-endian): magic `SPCS`, version, the position u64, 4 reserved zero
//! bytes, checksum32 of bytes 0..20.

use std::path::Path;

use crate::checksum::checksum32;
use crate::committer::Committer;
use crate::dir_lock::lock_dir;
use crate::error::{Error, Result};
use crate::file_header::{Format, le_u32, le_u64};
use crate::filename::{StoreFile, consumer_file, parse_consumer_file};
use crate::io::{LockKind, OpenMode, Vfs, VfsFile};
use crate::manifest::Manifest;
use crate::publish::{publish_sidecar, read_sidecar};
use crate::scan::read_file_header;
use crate::seal::Seal;

/// The consumer position file format.
pub const FORMAT: Format = Format::new(*b"SPCS", "consumer", 1, 0);
const LEN: usize = 24;
/// Longest consumer name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// A consumer's name must be 1 to 64 of `A-Z a-z 0-9 _ -`: it becomes part of a file name.
///
/// # Errors
/// `InvalidArgument`.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "a consumer name is 1 to {MAX_NAME_LEN} of A-Z, a-z, 0-9, _ and -, got {name:?}"
        )))
    }
}

/// Encode a position.
#[must_use]
pub fn encode(position: u64) -> [u8; LEN] {
    let mut out = [0u8; LEN];
    FORMAT.write_identity(&mut out);
    out[8..16].copy_from_slice(&position.to_le_bytes());
    let sum = checksum32(&out[0..20]);
    out[20..24].copy_from_slice(&sum.to_le_bytes());
    out
}

/// Decode a position file's bytes.
///
/// # Errors
/// `MagicMismatch`, `UnsupportedVersion`, `TruncatedHeader`, `ChecksumMismatch`,
/// `ReservedNonZero`.
pub fn decode(bytes: &[u8]) -> Result<u64> {
    FORMAT.check_identity(bytes, LEN)?;
    if bytes.len() != LEN || checksum32(&bytes[0..20]) != le_u32(&bytes[20..24]) {
        return Err(Error::ChecksumMismatch {
            what: "consumer position",
            offset: 0,
        });
    }
    if bytes[16..20] != [0; 4] {
        return Err(Error::ReservedNonZero { offset: 16 });
    }
    Ok(le_u64(&bytes[8..16]))
}

/// Where a consumer handle learns how far the log goes, and how it makes it durable.
#[derive(Clone, Copy, Debug)]
pub enum Log<'a> {
    /// The store's writer runs in this process: a position may go up to its last committed
    /// sequence; what is not yet fdatasynced is flushed before the position is published.
    Writer(&'a Committer),
    /// The writer, if any, runs in another process: a position may go up to what the files
    /// record as durable, and no further.
    Files,
}

/// A position found past the end of the log, and set back to it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Capped {
    /// The consumer.
    pub name: String,
    /// The position its file held.
    pub position: u64,
    /// The position it holds now: the last sequence of the log.
    pub capped_to: u64,
}

/// A registered consumer as the directory holds it.
#[derive(Clone, Debug)]
pub struct Listed {
    /// Its name.
    pub name: String,
    /// Its position, or why its file cannot be read (an error naming the file).
    pub position: Result<u64>,
}

/// The position of consumer `name` in `dir`, or `None` if it is not registered.
///
/// # Errors
/// `InvalidArgument` for a bad name; I/O errors; `StoreInconsistent` naming the file when it
/// is damaged.
pub fn read(vfs: &dyn Vfs, dir: &Path, name: &str) -> Result<Option<u64>> {
    check_name(name)?;
    let Some((bytes, len)) = read_sidecar(vfs, &dir.join(consumer_file(name)), LEN as u64)? else {
        return Ok(None);
    };
    let why = match len.cmp(&(LEN as u64)) {
        std::cmp::Ordering::Less => {
            format!("it is {len} bytes, shorter than the {LEN} of a position")
        }
        std::cmp::Ordering::Greater => {
            format!("it is {len} bytes, longer than the {LEN} of a position")
        }
        std::cmp::Ordering::Equal => match decode(&bytes) {
            Ok(position) => return Ok(Some(position)),
            Err(e) => format!("{}: {e}", e.code()),
        },
    };
    Err(Error::StoreInconsistent {
        dir: dir.to_path_buf(),
        detail: format!(
            "{} is damaged ({why}); removing the consumer forgets it",
            consumer_file(name)
        ),
    })
}

/// Record `position` as consumer `name`'s, durably, replacing what was there. No check against
/// the log: for copies of positions already checked (salvage); acknowledge with [`ack`].
///
/// # Errors
/// `InvalidArgument` for a bad name; I/O errors (the old position then stays).
pub fn write(vfs: &dyn Vfs, dir: &Path, name: &str, position: u64) -> Result<()> {
    check_name(name)?;
    publish_sidecar(vfs, dir, &consumer_file(name), &encode(position))
}

/// The position of consumer `name`, registering it at `start` first if it is new (`start`
/// checked and made durable as an acknowledgement is).
///
/// # Errors
/// As [`ack`]; from another process, `StoreInconsistent` for a position past the durable end
/// (a power loss took entries it acknowledged: opening the store caps it).
pub fn register(vfs: &dyn Vfs, dir: &Path, name: &str, start: u64, log: Log<'_>) -> Result<u64> {
    check_name(name)?;
    let _held = lock_consumers(vfs, dir)?;
    match read(vfs, dir, name)? {
        Some(position) => {
            if matches!(log, Log::Files) {
                let end = durable_end(vfs, dir)?;
                if position > end {
                    return Err(Error::StoreInconsistent {
                        dir: dir.to_path_buf(),
                        detail: format!(
                            "{} is at {position}, past the durable end of the log ({end}): opening the store caps it",
                            consumer_file(name)
                        ),
                    });
                }
            }
            Ok(position)
        }
        None => {
            make_durable(vfs, dir, log, start)?;
            write(vfs, dir, name, start).map(|()| start)
        }
    }
}

/// Move consumer `name`'s position up to `position` (an acknowledgement); a lower one changes
/// nothing, since delivery resumes after the highest acknowledged. Returns the position kept.
/// The entries up to `position` are durable before it is published (see [`Log`]); the compare
/// and the publish hold `consumers.lock`.
///
/// # Errors
/// `InvalidArgument` for a bad name, or a position past the log's last sequence (from another
/// process: past its durable end); the errors of a flush; as [`read`] and [`write`].
pub fn ack(vfs: &dyn Vfs, dir: &Path, name: &str, position: u64, log: Log<'_>) -> Result<u64> {
    check_name(name)?;
    make_durable(vfs, dir, log, position)?;
    let _held = lock_consumers(vfs, dir)?;
    match read(vfs, dir, name)? {
        Some(current) if current >= position => Ok(current),
        _ => write(vfs, dir, name, position).map(|()| position),
    }
}

/// Forget consumer `name`; whether it was registered.
///
/// # Errors
/// `InvalidArgument` for a bad name; I/O errors.
pub fn remove(vfs: &dyn Vfs, dir: &Path, name: &str) -> Result<bool> {
    check_name(name)?;
    let _held = lock_consumers(vfs, dir)?;
    let path = dir.join(consumer_file(name));
    match vfs.remove(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("remove", &path, e)),
    }
    vfs.sync_dir(dir)
        .map_err(|e| Error::io("fsync directory", dir, e))?;
    Ok(true)
}

/// Set every position past `last_sequence`, the end of the log a store recovered, back to it;
/// returns what was capped. Damaged files are left for [`scan`] to report.
///
/// # Errors
/// I/O errors of the listing and the writes.
pub fn cap(vfs: &dyn Vfs, dir: &Path, last_sequence: u64) -> Result<Vec<Capped>> {
    let past = |c: &Listed| matches!(c.position, Ok(p) if p > last_sequence);
    // The common case takes no lock (and creates no lock file in a store without consumers).
    if !scan(vfs, dir)?.iter().any(past) {
        return Ok(Vec::new());
    }
    let _held = lock_consumers(vfs, dir)?;
    let mut capped = Vec::new();
    for Listed { name, position } in scan(vfs, dir)? {
        if let Ok(position) = position
            && position > last_sequence
        {
            write(vfs, dir, &name, last_sequence)?;
            crate::warning::report(
                crate::warning::Kind::ConsumerCapped,
                dir,
                format_args!(
                    "consumer {name:?} at {position} capped to the log's end, {last_sequence}"
                ),
            );
            capped.push(Capped {
                name,
                position,
                capped_to: last_sequence,
            });
        }
    }
    Ok(capped)
}

/// Check `position` against the log and make the entries up to it durable, or refuse it.
fn make_durable(vfs: &dyn Vfs, dir: &Path, log: Log<'_>, position: u64) -> Result<()> {
    match log {
        Log::Writer(committer) => {
            let state = committer.state();
            if position > state.last_sequence {
                return Err(Error::InvalidArgument(format!(
                    "cannot acknowledge sequence {position}: the log ends at {}",
                    state.last_sequence
                )));
            }
            if position
                > state
                    .last_sequence
                    .saturating_sub(state.entries_since_fsync)
            {
                committer.commit_now(Vec::new())?;
            }
            Ok(())
        }
        Log::Files => {
            let end = durable_end(vfs, dir)?;
            if position > end {
                return Err(Error::InvalidArgument(format!(
                    "cannot acknowledge sequence {position}: the log is durable up to {end} (acknowledge what a durable follower yields, or from the writer's process)"
                )));
            }
            Ok(())
        }
    }
}

/// The last sequence of the log of `dir` that the files record as durable, as any process can
/// tell: the newest archived one (the MANIFEST's active WAL starts after it), the active WAL's
/// start, and the last entry its seal names. Waits out a rotation (it holds the directory lock
/// until its new WAL is sealed).
///
/// # Errors
/// MANIFEST and WAL header errors; I/O errors.
pub fn durable_end(vfs: &dyn Vfs, dir: &Path) -> Result<u64> {
    let _lock = lock_dir(vfs, dir, LockKind::Shared)?;
    let archived = Manifest::read(vfs, dir)?.map_or(0, |m| m.active_wal_seq);
    let wal = StoreFile::Wal.path(dir);
    let file = match vfs.open(&wal, OpenMode::Read) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(archived),
        Err(e) => return Err(Error::io("open", &wal, e)),
    };
    let header = read_file_header(file.as_ref(), &wal)?;
    let len = file.size().map_err(|e| Error::io("stat", &wal, e))?;
    let sealed =
        Seal::load(vfs, &wal, file.as_ref(), header, len).map_or(0, |seal| seal.last.sequence);
    Ok(archived.max(header.snapshot_seq).max(sealed))
}

/// Hold `consumers.lock` of `dir` exclusive until the returned file is dropped.
fn lock_consumers(vfs: &dyn Vfs, dir: &Path) -> Result<Box<dyn VfsFile>> {
    // Never deleted or replaced: a new inode would be a second lock domain.
    let path = StoreFile::ConsumerLock.path(dir);
    let file = vfs
        .open(&path, OpenMode::Create)
        .map_err(|e| Error::io("open", &path, e))?;
    file.lock(LockKind::Exclusive)
        .map_err(|e| Error::io("lock", &path, e))?;
    Ok(file)
}

/// For each of `positions`, how many bytes of log files hold entries after it: every listed
/// archive that ends after it, and the active WAL if its last entry (`last_sequence`) does.
/// Whole files, so an upper bound (off by at most one file's worth), and cheap: the MANIFEST
/// is read and each file stated once, whatever the number of positions; no log is read.
///
/// # Errors
/// MANIFEST errors and I/O errors of the stats.
pub fn lag_bytes(
    vfs: &dyn Vfs,
    dir: &Path,
    positions: &[u64],
    last_sequence: u64,
) -> Result<Vec<u64>> {
    let size = |file: StoreFile| -> Result<u64> {
        let path = file.path(dir);
        Ok(vfs
            .stat(&path)
            .map_err(|e| Error::io("stat", &path, e))?
            .map_or(0, |s| s.size))
    };
    let mut files = Vec::new();
    for end in Manifest::read(vfs, dir)?
        .map(|m| m.archives)
        .unwrap_or_default()
    {
        files.push((end, size(StoreFile::Archive(end))?));
    }
    files.push((last_sequence, size(StoreFile::Wal)?));
    Ok(positions
        .iter()
        .map(|&p| {
            files
                .iter()
                .filter(|(end, _)| *end > p)
                .map(|(_, n)| n)
                .sum()
        })
        .collect())
}

/// Every registered consumer of `dir`, by name, each with its position or the error that
/// names its damaged file: one damaged file never hides the others.
///
/// # Errors
/// I/O errors of the listing.
pub fn scan(vfs: &dyn Vfs, dir: &Path) -> Result<Vec<Listed>> {
    let mut consumers = Vec::new();
    for entry in vfs.list(dir).map_err(|e| Error::io("list", dir, e))? {
        if let Some(name) = parse_consumer_file(&entry.name)
            && check_name(name).is_ok()
        {
            // Removed since the listing: not registered any more.
            match read(vfs, dir, name) {
                Ok(None) => {}
                read => consumers.push(Listed {
                    name: name.to_owned(),
                    position: read.map(|p| p.unwrap_or(0)),
                }),
            }
        }
    }
    consumers.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(consumers)
}

/// Every registered consumer of `dir` and its position, by name.
///
/// # Errors
/// I/O errors; the error of the first damaged file (see [`scan`] for one that goes on).
pub fn list(vfs: &dyn Vfs, dir: &Path) -> Result<Vec<(String, u64)>> {
    scan(vfs, dir)?
        .into_iter()
        .map(|c| c.position.map(|p| (c.name, p)))
        .collect()
}

/// Every consumer's position as retention must honour it: a damaged one's as 0, so everything
/// it might need is kept until it is removed.
///
/// # Errors
/// I/O errors of the listing.
pub fn retention_positions(vfs: &dyn Vfs, dir: &Path) -> Result<Vec<(String, u64)>> {
    Ok(scan(vfs, dir)?
        .into_iter()
        .map(|c| (c.name, c.position.unwrap_or(0)))
        .collect())
}

/// A consumer as a store lists it.
#[derive(Clone, Debug)]
pub struct Summary {
    /// Its name.
    pub name: String,
    /// Its position (0 when damaged: what retention keeps for it).
    pub position: u64,
    /// Bytes of the log files holding entries after it (an upper bound).
    pub lag_bytes: u64,
    /// Why its file cannot be read, if it cannot.
    pub damage: Option<Error>,
}

/// Every consumer of `dir` with its lag behind `last_sequence`, the damaged ones included.
///
/// # Errors
/// As [`scan`] and [`lag_bytes`].
pub fn describe(vfs: &dyn Vfs, dir: &Path, last_sequence: u64) -> Result<Vec<Summary>> {
    let consumers = scan(vfs, dir)?;
    let positions: Vec<u64> = consumers
        .iter()
        .map(|c| *c.position.as_ref().unwrap_or(&0))
        .collect();
    let lags = lag_bytes(vfs, dir, &positions, last_sequence)?;
    Ok(consumers
        .into_iter()
        .zip(positions.into_iter().zip(lags))
        .map(|(c, (position, lag_bytes))| Summary {
            name: c.name,
            position,
            lag_bytes,
            damage: c.position.err(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_damage_is_refused() {
        for position in [0, 1, 1 << 40, (1 << 53) - 1] {
            assert_eq!(decode(&encode(position)).unwrap(), position);
        }
        let good = encode(7);
        for i in 0..LEN {
            let mut bad = good;
            bad[i] ^= 1;
            assert!(decode(&bad).is_err(), "byte {i}");
        }
        assert_eq!(decode(&good[..10]).unwrap_err().code(), "TRUNCATED_HEADER");
    }

    #[test]
    fn names_are_file_name_safe() {
        for good in ["a", "relay-1", "OUTBOX_2", &"x".repeat(64)] {
            check_name(good).unwrap();
        }
        for bad in ["", "a.b", "a/b", "..", "é", &"x".repeat(65), "a b"] {
            assert_eq!(
                check_name(bad).unwrap_err().code(),
                "INVALID_ARGUMENT",
                "{bad:?}"
            );
        }
    }
}
