//! The 24-byte WAL file header.
//!
//! | bytes  | field                                   |
//! |--------|-----------------------------------------|
//! | 0..4   | magic `SPWL`                            |
//! | 4..6   | major version (u16 LE)                  |
//! | 6..8   | minor version (u16 LE)                  |
//! | 8..16  | snapshot_seq (u64 LE)                   |
//! | 16..20 | reserved, zero                          |
//! | 20..24 | checksum32 of bytes 0..20               |
//!
//! Decoding checks the magic, then the exact version, and only then the length, checksum and
//! reserved bytes, so a foreign or newer file is reported as such and never as corruption.

use crate::checksum::checksum32;
use crate::error::{Error, Result};

/// A file format's identity: the magic its files open with and the one version this build
/// writes and reads. Each format has one such constant, used by its encoder
/// ([`Format::write_identity`]) and its decoder ([`Format::check_identity`]) alike, so raising
/// a version changes what is written and what is read together.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Format {
    /// The first four bytes of every file of the format.
    pub magic: [u8; 4],
    /// What the format is called in errors.
    pub name: &'static str,
    /// Major version.
    pub major: u16,
    /// Minor version.
    pub minor: u16,
}

/// The WAL file format (also every archive): version 2 holds format v4 batch frames
/// ([`crate::batch_frame`]), what every new WAL is written in.
pub const WAL_FORMAT: Format = Format::new(*b"SPWL", "WAL", 2, 0);
/// The WAL file format before it: version 1 holds format v3 frames ([`crate::frame`]). Such a
/// file is still read, and appended to in its own frames, until a rotation replaces it.
pub const WAL_FORMAT_V3: Format = Format::new(*b"SPWL", "WAL", 1, 0);
/// Length of the file header in bytes.
pub const FILE_HEADER_LEN: usize = 24;

/// How a WAL file's entries are framed, from its header's version.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub enum Layout {
    /// Format v3 (WAL version 1): a 40-byte header per entry. Read, never started anew.
    V3,
    /// Format v4 (WAL version 2): one batch frame per commit group.
    #[default]
    V4,
}

/// The decoded file header.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct FileHeader {
    /// Highest sequence covered by the snapshot this WAL extends; entries start above it.
    pub snapshot_seq: u64,
    /// How its entries are framed.
    pub layout: Layout,
}

impl FileHeader {
    /// The header of a new WAL: format v4.
    #[must_use]
    pub const fn new(snapshot_seq: u64) -> Self {
        Self {
            snapshot_seq,
            layout: Layout::V4,
        }
    }
}

impl FileHeader {
    /// Encode the header.
    #[must_use]
    pub fn encode(&self) -> [u8; FILE_HEADER_LEN] {
        let mut out = [0u8; FILE_HEADER_LEN];
        match self.layout {
            Layout::V3 => WAL_FORMAT_V3.write_identity(&mut out),
            Layout::V4 => WAL_FORMAT.write_identity(&mut out),
        }
        out[8..16].copy_from_slice(&self.snapshot_seq.to_le_bytes());
        let sum = checksum32(&out[0..20]);
        out[20..24].copy_from_slice(&sum.to_le_bytes());
        out
    }

    /// Decode from the first bytes of a file (`bytes` may be shorter than the header).
    ///
    /// # Errors
    /// `MagicMismatch`, `UnsupportedVersion`, `TruncatedHeader`, `ChecksumMismatch` or
    /// `ReservedNonZero`, checked in that order.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let layout = match WAL_FORMAT.check_identity(bytes, FILE_HEADER_LEN) {
            Ok(()) => Layout::V4,
            Err(newer @ Error::UnsupportedVersion { .. }) => {
                match WAL_FORMAT_V3.check_identity(bytes, FILE_HEADER_LEN) {
                    Ok(()) => Layout::V3,
                    Err(Error::UnsupportedVersion { .. }) => return Err(newer),
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        if checksum32(&bytes[0..20]) != le_u32(&bytes[20..24]) {
            return Err(Error::ChecksumMismatch {
                what: "WAL file header",
                offset: 0,
            });
        }
        if bytes[16..20] != [0; 4] {
            return Err(Error::ReservedNonZero { offset: 16 });
        }
        Ok(Self {
            snapshot_seq: le_u64(&bytes[8..16]),
            layout,
        })
    }
}

impl Format {
    /// The format whose files begin with `magic` and version `major`.`minor`, called `name`.
    #[must_use]
    pub const fn new(magic: [u8; 4], name: &'static str, major: u16, minor: u16) -> Self {
        Self {
            magic,
            name,
            major,
            minor,
        }
    }

    /// Write the magic and the version into the first 8 bytes of `out`.
    pub fn write_identity(self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.magic);
        out[4..6].copy_from_slice(&self.major.to_le_bytes());
        out[6..8].copy_from_slice(&self.minor.to_le_bytes());
    }

    /// The identity gate every format opens with: magic, then the exact version, then the
    /// header's full length. A foreign or newer file is reported as such, never as corruption.
    ///
    /// # Errors
    /// `MagicMismatch`, `UnsupportedVersion` or `TruncatedHeader`.
    pub fn check_identity(self, bytes: &[u8], header_len: usize) -> Result<()> {
        let truncated = || Error::TruncatedHeader {
            len: bytes.len() as u64,
            need: header_len as u64,
        };
        let found: [u8; 4] = bytes
            .get(0..4)
            .ok_or_else(truncated)?
            .try_into()
            .unwrap_or_default();
        if found != self.magic {
            return Err(Error::MagicMismatch {
                expected: self.name,
                found,
            });
        }
        let version = bytes.get(4..8).ok_or_else(truncated)?;
        let (major, minor) = (
            u16::from_le_bytes([version[0], version[1]]),
            u16::from_le_bytes([version[2], version[3]]),
        );
        if (major, minor) != (self.major, self.minor) {
            return Err(Error::UnsupportedVersion {
                what: self.name,
                major,
                minor,
                supported: (self.major, self.minor),
            });
        }
        if bytes.len() < header_len {
            return Err(truncated());
        }
        Ok(())
    }
}

/// Little-endian u32 from a 4-byte slice.
pub(crate) fn le_u32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes(bytes.try_into().unwrap_or_default())
}

/// Little-endian u64 from an 8-byte slice.
pub(crate) fn le_u64(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes.try_into().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_pins_layout() {
        let bytes = FileHeader::new(0x0102_0304_0506_0708).encode();
        assert_eq!(&bytes[0..4], b"SPWL");
        assert_eq!(&bytes[4..8], &[2, 0, 0, 0]);
        assert_eq!(&bytes[8..16], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(&bytes[16..20], &[0; 4]);
        assert_eq!(
            FileHeader::decode(&bytes).unwrap().snapshot_seq,
            0x0102_0304_0506_0708
        );
    }

    #[test]
    fn a_version_1_header_is_read_as_format_v3() {
        let header = FileHeader {
            snapshot_seq: 5,
            layout: Layout::V3,
        };
        let bytes = header.encode();
        assert_eq!(&bytes[4..8], &[1, 0, 0, 0]);
        assert_eq!(FileHeader::decode(&bytes).unwrap(), header);
    }

    #[test]
    fn foreign_file_is_magic_mismatch_even_when_short() {
        let err = FileHeader::decode(b"SQLite format 3\0").unwrap_err();
        assert_eq!(err.code(), "MAGIC_MISMATCH");
        assert_eq!(
            FileHeader::decode(b"PK\x03\x04").unwrap_err().code(),
            "MAGIC_MISMATCH"
        );
    }

    #[test]
    fn other_versions_are_unsupported_not_corrupt() {
        for (major, minor) in [(0u16, 9u16), (1, 1), (2, 1), (3, 0)] {
            let mut bytes = FileHeader::new(0).encode();
            bytes[4..6].copy_from_slice(&major.to_le_bytes());
            bytes[6..8].copy_from_slice(&minor.to_le_bytes());
            // Checksum deliberately stale: the version gate comes first.
            assert_eq!(
                FileHeader::decode(&bytes).unwrap_err().code(),
                "UNSUPPORTED_VERSION"
            );
            // A newer file with a shorter header is still reported by version.
            assert_eq!(
                FileHeader::decode(&bytes[..16]).unwrap_err().code(),
                "UNSUPPORTED_VERSION"
            );
        }
    }

    #[test]
    fn truncation_at_every_length_is_typed() {
        for layout in [Layout::V3, Layout::V4] {
            let bytes = FileHeader {
                snapshot_seq: 7,
                layout,
            }
            .encode();
            for len in 0..FILE_HEADER_LEN {
                let err = FileHeader::decode(&bytes[..len]).unwrap_err();
                assert_eq!(err.code(), "TRUNCATED_HEADER", "{layout:?}, length {len}");
            }
        }
    }

    #[test]
    fn every_bit_flip_past_the_version_is_caught() {
        let good = FileHeader::new(99).encode();
        for byte in 8..FILE_HEADER_LEN {
            for bit in 0..8 {
                let mut bytes = good;
                bytes[byte] ^= 1 << bit;
                let code = FileHeader::decode(&bytes).unwrap_err().code();
                assert_eq!(code, "CHECKSUM_MISMATCH", "byte {byte} bit {bit}");
            }
        }
    }

    #[test]
    fn reserved_bytes_must_be_zero_even_with_a_valid_checksum() {
        let mut bytes = FileHeader::new(1).encode();
        bytes[17] = 1;
        let sum = checksum32(&bytes[0..20]);
        bytes[20..24].copy_from_slice(&sum.to_le_bytes());
        assert_eq!(
            FileHeader::decode(&bytes).unwrap_err().code(),
            "RESERVED_NON_ZERO"
        );
    }
}
