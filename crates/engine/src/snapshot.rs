//! Snapshots: named sections of application state at a sequence, in one verifiable file.
//!
//! Header, 48 bytes (little-endian):
//!
//! | bytes  | field                                                    |
//! |--------|----------------------------------------------------------|
//! | 0..4   | magic `SPSN`                                             |
//! | 4..8   | major, minor version (u16 each) = 1, 0                   |
//! | 8..16  | sequence the snapshot covers                             |
//! | 16..20 | section count (u32)                                      |
//! | 20..24 | reserved, zero                                           |
//! | 24..40 | body hash: xxh3-128 of every byte after the header       |
//! | 40..44 | reserved, zero                                           |
//! | 44..48 | checksum32 of bytes 0..44                                |
//!
//! Then one 32-byte row per section (name length u16, flags u16 with 0x01 = zstd, checksum32
//! of the stored bytes, file offset u64, stored length u64, raw length u64), then the
//! concatenated UTF-8 names, then the section bodies in row order.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::Xxh3;

use crate::checksum::checksum32;
use crate::compression::decompress_bounded;
use crate::error::{Error, Result};
use crate::file_header::{Format, le_u32, le_u64};
use crate::filename::StoreFile;
use crate::io::{OpenMode, Vfs, VfsFile, read_exact_at};
use crate::publish::{Placement, publish};

/// The snapshot file format.
pub const FORMAT: Format = Format::new(*b"SPSN", "snapshot", 1, 0);
const HEADER_LEN: usize = 48;
const ROW_LEN: usize = 32;
const FLAG_COMPRESSED: u16 = 0x01;
/// Most sections in one snapshot.
pub const MAX_SECTIONS: usize = 65_536;
/// Whether snapshot sections are zstd-compressed unless told otherwise (each is stored
/// compressed only when that is smaller).
pub const DEFAULT_COMPRESS_SECTIONS: bool = true;
/// Longest section name, in bytes.
pub const MAX_SECTION_NAME: usize = 255;
/// Largest section, raw or stored: 1 GiB.
pub const MAX_SECTION_LEN: usize = 1 << 30;

/// One section as listed in the table.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct SectionInfo {
    /// Its unique name.
    pub name: String,
    /// Whether it is stored zstd-compressed.
    pub compressed: bool,
    /// Length as stored.
    pub stored_len: u64,
    /// Length once decompressed.
    pub raw_len: u64,
    offset: u64,
    checksum: u32,
}

/// Collects sections, then publishes them as `snapshot.<sequence>.snap`.
#[derive(Debug)]
pub struct SnapshotBuilder {
    sequence: u64,
    level: i32,
    sections: Vec<(String, Vec<u8>, bool)>,
    names: HashSet<String>,
}

/// A snapshot written to disk.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct PublishedSnapshot {
    /// Its path.
    pub path: PathBuf,
    /// The sequence it covers.
    pub sequence: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// False when an identical file was already in place.
    pub created: bool,
}

impl SnapshotBuilder {
    /// A builder for the snapshot covering `sequence`, compressing with zstd at `level`.
    #[must_use]
    pub fn new(sequence: u64, level: i32) -> Self {
        Self {
            sequence,
            level,
            sections: Vec::new(),
            names: HashSet::new(),
        }
    }

    /// A builder holding `sections` (name, bytes, compress), each checked as by [`Self::add`].
    ///
    /// # Errors
    /// As [`Self::add`].
    pub fn with_sections(
        sequence: u64,
        level: i32,
        sections: impl IntoIterator<Item = (String, Vec<u8>, bool)>,
    ) -> Result<Self> {
        let mut builder = Self::new(sequence, level);
        for (name, bytes, compress) in sections {
            builder.add(&name, bytes, compress)?;
        }
        Ok(builder)
    }

    /// The sequence the snapshot covers.
    #[must_use]
    pub const fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The same sections, for the snapshot covering `sequence`.
    #[must_use]
    pub fn at_sequence(self, sequence: u64) -> Self {
        Self { sequence, ..self }
    }

    /// Add a section; `compress` stores it zstd-compressed when that makes it smaller.
    ///
    /// # Errors
    /// `InvalidArgument` for an empty or over-long name, `DuplicateSection`,
    /// `SnapshotTooLarge` past the section count or size caps.
    pub fn add(&mut self, name: &str, bytes: Vec<u8>, compress: bool) -> Result<()> {
        if name.is_empty() || name.len() > MAX_SECTION_NAME {
            return Err(Error::InvalidArgument(format!(
                "section names must be 1 to {MAX_SECTION_NAME} bytes, got {}",
                name.len()
            )));
        }
        if self.names.contains(name) {
            return Err(Error::DuplicateSection(name.to_owned()));
        }
        if self.sections.len() == MAX_SECTIONS {
            return Err(too_large("section count", MAX_SECTIONS + 1, MAX_SECTIONS));
        }
        if bytes.len() > MAX_SECTION_LEN {
            return Err(too_large("section", bytes.len(), MAX_SECTION_LEN));
        }
        self.names.insert(name.to_owned());
        self.sections.push((name.to_owned(), bytes, compress));
        Ok(())
    }

    /// Write the snapshot into `dir` (temp file, fdatasync, no-clobber link, directory fsync).
    /// An identical file already in place is accepted; a different one is `ArtifactConflict`.
    ///
    /// # Errors
    /// I/O errors and `ArtifactConflict`.
    pub fn publish(self, vfs: &dyn Vfs, dir: &Path) -> Result<PublishedSnapshot> {
        let path = StoreFile::Snapshot(self.sequence).path(dir);
        let bodies: Vec<(Vec<u8>, bool)> = self
            .sections
            .iter()
            .map(|(_, raw, compress)| {
                let packed = compress
                    .then(|| zstd::bulk::compress(raw, self.level).ok())
                    .flatten();
                match packed {
                    Some(p) if p.len() < raw.len() => (p, true),
                    _ => (raw.clone(), false),
                }
            })
            .collect();
        let names_len: usize = self.sections.iter().map(|(n, ..)| n.len()).sum();
        let mut offset = (HEADER_LEN + ROW_LEN * self.sections.len() + names_len) as u64;
        let mut table = Vec::with_capacity(ROW_LEN * self.sections.len() + names_len);
        for ((name, raw, _), (stored, compressed)) in self.sections.iter().zip(&bodies) {
            #[allow(clippy::cast_possible_truncation)]
            table.extend_from_slice(&(name.len() as u16).to_le_bytes());
            table.extend_from_slice(&(if *compressed { FLAG_COMPRESSED } else { 0 }).to_le_bytes());
            table.extend_from_slice(&checksum32(stored).to_le_bytes());
            table.extend_from_slice(&offset.to_le_bytes());
            table.extend_from_slice(&(stored.len() as u64).to_le_bytes());
            table.extend_from_slice(&(raw.len() as u64).to_le_bytes());
            offset += stored.len() as u64;
        }
        for (name, ..) in &self.sections {
            table.extend_from_slice(name.as_bytes());
        }
        let mut hasher = Xxh3::new();
        hasher.update(&table);
        bodies.iter().for_each(|(stored, _)| hasher.update(stored));
        let mut header = [0u8; HEADER_LEN];
        FORMAT.write_identity(&mut header);
        header[8..16].copy_from_slice(&self.sequence.to_le_bytes());
        #[allow(clippy::cast_possible_truncation)]
        header[16..20].copy_from_slice(&(self.sections.len() as u32).to_le_bytes());
        header[24..40].copy_from_slice(&hasher.digest128().to_le_bytes());
        let sum = checksum32(&header[0..44]);
        header[44..48].copy_from_slice(&sum.to_le_bytes());

        let published = publish(
            vfs,
            &path,
            Placement::Link {
                require_identical: true,
            },
            |file, temp| {
                let io = |e| Error::io("write", temp, e);
                file.write_all_at(&header, 0).map_err(io)?;
                file.write_all_at(&table, HEADER_LEN as u64).map_err(io)?;
                let mut at = (HEADER_LEN + table.len()) as u64;
                for (stored, _) in &bodies {
                    file.write_all_at(stored, at).map_err(io)?;
                    at += stored.len() as u64;
                }
                Ok(())
            },
        )?;
        Ok(PublishedSnapshot {
            path,
            sequence: self.sequence,
            bytes: offset,
            created: published.created,
        })
    }
}

fn too_large(what: &'static str, len: usize, cap: usize) -> Error {
    Error::SnapshotTooLarge {
        what,
        len: len as u64,
        cap: cap as u64,
    }
}

/// An open snapshot: header and table checked at open, body hash on [`Self::verify`].
#[derive(Debug)]
pub struct SnapshotReader {
    path: PathBuf,
    file: Box<dyn VfsFile>,
    sequence: u64,
    body_hash: u128,
    sections: Vec<SectionInfo>,
}

impl SnapshotReader {
    /// Open the snapshot at `path` and check its header and section table.
    ///
    /// # Errors
    /// I/O errors, `MagicMismatch`, `UnsupportedVersion`, `TruncatedHeader`,
    /// `ChecksumMismatch`, `ReservedNonZero`, `SnapshotCorrupt`.
    pub fn open(vfs: &dyn Vfs, path: &Path) -> Result<Self> {
        let file = vfs
            .open(path, OpenMode::Read)
            .map_err(|e| Error::io("open", path, e))?;
        let len = file.size().map_err(|e| Error::io("stat", path, e))?;
        let mut header = [0u8; HEADER_LEN];
        let have = usize::try_from(len).unwrap_or(HEADER_LEN).min(HEADER_LEN);
        read_exact_at(file.as_ref(), &mut header[..have], 0)
            .map_err(|e| Error::io("read", path, e))?;
        decode_header(&header[..have])?;
        let corrupt = |detail: String| Error::SnapshotCorrupt {
            path: path.to_path_buf(),
            detail,
        };
        let count = le_u32(&header[16..20]) as usize;
        if count > MAX_SECTIONS {
            return Err(corrupt(format!(
                "{count} sections exceed the cap of {MAX_SECTIONS}"
            )));
        }
        let rows_len = (ROW_LEN * count) as u64;
        if HEADER_LEN as u64 + rows_len > len {
            return Err(corrupt(
                "section table runs past the end of the file".into(),
            ));
        }
        let mut rows = vec![0u8; ROW_LEN * count];
        read_exact_at(file.as_ref(), &mut rows, HEADER_LEN as u64)
            .map_err(|e| Error::io("read", path, e))?;
        let names_len: u64 = rows
            .chunks(ROW_LEN)
            .map(|r| u64::from(u16::from_le_bytes([r[0], r[1]])))
            .sum();
        let body_start = HEADER_LEN as u64 + rows_len + names_len;
        if body_start > len {
            return Err(corrupt("section names run past the end of the file".into()));
        }
        let mut names = vec![0u8; usize::try_from(names_len).unwrap_or(0)];
        read_exact_at(file.as_ref(), &mut names, HEADER_LEN as u64 + rows_len)
            .map_err(|e| Error::io("read", path, e))?;
        let mut sections = Vec::with_capacity(count);
        let mut seen = HashSet::new();
        let mut name_at = 0usize;
        for row in rows.chunks(ROW_LEN) {
            let name_len = usize::from(u16::from_le_bytes([row[0], row[1]]));
            let name = std::str::from_utf8(&names[name_at..name_at + name_len])
                .map_err(|_| corrupt("a section name is not UTF-8".into()))?
                .to_owned();
            name_at += name_len;
            let flags = u16::from_le_bytes([row[2], row[3]]);
            let info = SectionInfo {
                compressed: flags & FLAG_COMPRESSED != 0,
                checksum: le_u32(&row[4..8]),
                offset: le_u64(&row[8..16]),
                stored_len: le_u64(&row[16..24]),
                raw_len: le_u64(&row[24..32]),
                name,
            };
            let end = info.offset.checked_add(info.stored_len);
            if flags & !FLAG_COMPRESSED != 0
                || info.offset < body_start
                || end.is_none_or(|end| end > len)
                || info.stored_len > MAX_SECTION_LEN as u64
                || info.raw_len > MAX_SECTION_LEN as u64
                || name_len == 0
            {
                return Err(corrupt(format!(
                    "section {:?} has an impossible layout",
                    info.name
                )));
            }
            if !seen.insert(info.name.clone()) {
                return Err(corrupt(format!("section {:?} appears twice", info.name)));
            }
            sections.push(info);
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            sequence: le_u64(&header[8..16]),
            body_hash: u128::from_le_bytes(header[24..40].try_into().unwrap_or_default()),
            sections,
        })
    }

    /// The sequence the snapshot covers.
    #[must_use]
    pub const fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Its path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The sections, in the order they were added.
    #[must_use]
    pub fn sections(&self) -> &[SectionInfo] {
        &self.sections
    }

    /// Check the body hash over every byte after the header.
    ///
    /// # Errors
    /// I/O errors and `BodyHashMismatch`.
    pub fn verify(&self) -> Result<()> {
        let len = self
            .file
            .size()
            .map_err(|e| Error::io("stat", &self.path, e))?;
        let mut hasher = Xxh3::new();
        let mut buf = vec![0u8; 256 << 10];
        let mut pos = HEADER_LEN as u64;
        while pos < len {
            let n = usize::try_from((len - pos).min(buf.len() as u64)).unwrap_or(buf.len());
            read_exact_at(self.file.as_ref(), &mut buf[..n], pos)
                .map_err(|e| Error::io("read", &self.path, e))?;
            hasher.update(&buf[..n]);
            pos += n as u64;
        }
        if hasher.digest128() == self.body_hash {
            Ok(())
        } else {
            Err(Error::BodyHashMismatch {
                path: self.path.clone(),
            })
        }
    }

    /// The whole file's bytes, read once and checked against the body hash: a snapshot as it
    /// leaves the machine.
    ///
    /// # Errors
    /// I/O errors and `BodyHashMismatch`.
    pub fn contents(&self) -> Result<Vec<u8>> {
        let len = self
            .file
            .size()
            .map_err(|e| Error::io("stat", &self.path, e))?;
        let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(0)];
        read_exact_at(self.file.as_ref(), &mut bytes, 0)
            .map_err(|e| Error::io("read", &self.path, e))?;
        let body = bytes.get(HEADER_LEN..).unwrap_or(&[]);
        if xxhash_rust::xxh3::xxh3_128(body) == self.body_hash {
            Ok(bytes)
        } else {
            Err(Error::BodyHashMismatch {
                path: self.path.clone(),
            })
        }
    }

    /// The raw bytes of section `name`, checksum-verified and decompressed.
    ///
    /// # Errors
    /// `SectionNotFound`, I/O errors, `ChecksumMismatch`, `SnapshotCorrupt`.
    pub fn read(&self, name: &str) -> Result<Vec<u8>> {
        let info = self
            .sections
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| Error::SectionNotFound(name.to_owned()))?;
        let mut stored = vec![0u8; usize::try_from(info.stored_len).unwrap_or(0)];
        read_exact_at(self.file.as_ref(), &mut stored, info.offset)
            .map_err(|e| Error::io("read", &self.path, e))?;
        if checksum32(&stored) != info.checksum {
            return Err(Error::ChecksumMismatch {
                what: "snapshot section",
                offset: info.offset,
            });
        }
        if !info.compressed {
            return Ok(stored);
        }
        let raw_len = usize::try_from(info.raw_len).unwrap_or(MAX_SECTION_LEN);
        let corrupt = |detail: String| Error::SnapshotCorrupt {
            path: self.path.clone(),
            detail,
        };
        match decompress_bounded(&stored, raw_len) {
            Ok(Ok(raw)) if raw.len() == raw_len => Ok(raw),
            Ok(_) => Err(corrupt(format!(
                "section {name:?} does not decompress to its recorded length"
            ))),
            Err(e) => Err(corrupt(format!(
                "section {name:?} does not decompress: {e}"
            ))),
        }
    }
}

fn decode_header(bytes: &[u8]) -> Result<()> {
    FORMAT.check_identity(bytes, HEADER_LEN)?;
    if checksum32(&bytes[0..44]) != le_u32(&bytes[44..48]) {
        return Err(Error::ChecksumMismatch {
            what: "snapshot header",
            offset: 0,
        });
    }
    if bytes[20..24] != [0; 4] || bytes[40..44] != [0; 4] {
        return Err(Error::ReservedNonZero { offset: 20 });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
