//! Durable consumers: a named position (the last acknowledged sequence) kept in the store
//! directory as `consumer.<name>`, published like the other files (temp file, fdatasync,
//! rename, directory fsync), so it survives any crash. Delivery from it is at-least-once: a
//! consumer resumes after its last acknowledgement. Retention keeps every archive a
//! registered consumer still needs (see [`crate::retention::plan`]).
//!
//! File (24 bytes, little-endian): magic `SPCS`, version, the position u64, 4 reserved zero
//! bytes, checksum32 of bytes 0..20.

use std::path::Path;

use crate::checksum::checksum32;
use crate::error::{Error, Result};
use crate::file_header::{Format, le_u32, le_u64};
use crate::filename::{StoreFile, consumer_file, parse_consumer_file};
use crate::io::Vfs;
use crate::manifest::Manifest;
use crate::publish::{publish_sidecar, read_sidecar};

/// The consumer position file format.
pub const FORMAT: Format = Format {
    magic: *b"SPCS",
    name: "consumer",
    major: 1,
    minor: 0,
};
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

/// The position of consumer `name` in `dir`, or `None` if it is not registered.
///
/// # Errors
/// `InvalidArgument` for a bad name; I/O and decode errors.
pub fn read(vfs: &dyn Vfs, dir: &Path, name: &str) -> Result<Option<u64>> {
    check_name(name)?;
    let Some((bytes, len)) = read_sidecar(vfs, &dir.join(consumer_file(name)), LEN as u64)? else {
        return Ok(None);
    };
    if len != LEN as u64 {
        return Err(Error::TruncatedHeader {
            len,
            need: LEN as u64,
        });
    }
    decode(&bytes).map(Some)
}

/// Record `position` as consumer `name`'s, durably, replacing what was there.
///
/// # Errors
/// `InvalidArgument` for a bad name; I/O errors (the old position then stays).
pub fn write(vfs: &dyn Vfs, dir: &Path, name: &str, position: u64) -> Result<()> {
    check_name(name)?;
    publish_sidecar(vfs, dir, &consumer_file(name), &encode(position))
}

/// Move consumer `name`'s position up to `position` (an acknowledgement); a lower one is
/// ignored, since delivery resumes after the highest acknowledged. Returns the position kept.
///
/// # Errors
/// As [`read`] and [`write`].
pub fn advance(vfs: &dyn Vfs, dir: &Path, name: &str, position: u64) -> Result<u64> {
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

/// Every registered consumer of `dir` and its position, by name.
///
/// # Errors
/// I/O and decode errors.
pub fn list(vfs: &dyn Vfs, dir: &Path) -> Result<Vec<(String, u64)>> {
    let mut consumers = Vec::new();
    for entry in vfs.list(dir).map_err(|e| Error::io("list", dir, e))? {
        if let Some(name) = parse_consumer_file(&entry.name)
            && check_name(name).is_ok()
            && let Some(position) = read(vfs, dir, name)?
        {
            consumers.push((name.to_owned(), position));
        }
    }
    consumers.sort();
    Ok(consumers)
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
