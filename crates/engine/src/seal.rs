//! The seal: a 64-byte sidecar (`<wal>.seal`) naming a prefix of the WAL that was fdatasynced
//! and verified, so an open scans only what follows it.
//!
//! | bytes  | field                                                 |
//! |--------|-------------------------------------------------------|
//! | 0..4   | magic `SPSE`                                          |
//! | 4..8   | major, minor version (u16 LE each)                    |
//! | 8..16  | the WAL header's snapshot_seq                         |
//! | 16..24 | end: offset just past the last sealed frame           |
//! | 24..32 | offset of the last sealed frame                       |
//! | 32..40 | its sequence                                          |
//! | 40..44 | its header checksum                                   |
//! | 44..52 | writer clock seconds                                  |
//! | 52..56 | writer clock subseconds                               |
//! | 56..60 | reserved, zero                                        |
//! | 60..64 | checksum32 of bytes 0..60                             |
//!
//! The writer rewrites it (no fsync of its own) only after an fdatasync of the WAL, so it never
//! names bytes that were not durable first. An open trusts it only if the frame it names is
//! still there, intact, ending at `end`, in a file with the same snapshot_seq; anything else (a
//! missing, torn, stale or foreign seal) costs a full scan, never data. Frames before `end` are
//! then not re-read at open (except the last, verified in full, since the seal names it by its
//! header only): their payload checksums are checked when they are read, and in full
//! by `verify`.

use std::path::Path;

use crate::checksum::checksum32;
use crate::file_header::FileHeader;
use crate::file_header::{Format, le_u32, le_u64};
use crate::filename::seal_path;
use crate::scan::unit_head;

/// Most bytes of the last sealed unit read to check its head: a batch of the writer's cap
/// (1024 records) has a table of at most 10 KiB.
const SEAL_HEAD_READ: usize = 64 << 10;
use crate::hlc::Hlc;
use crate::io::{OpenMode, Vfs, VfsFile, read_exact_at};

/// The seal file format.
pub const FORMAT: Format = Format::new(*b"SPSE", "seal", 1, 0);
/// Length of a seal.
pub const SEAL_LEN: usize = 64;

/// The last frame of a sealed prefix.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct LastFrame {
    /// Its offset in the WAL.
    pub offset: u64,
    /// Its sequence (a batch frame's: its last).
    pub sequence: u64,
    /// Its header checksum, which names the frame (a batch frame's head checksum).
    pub header_checksum: u32,
    /// The sequence of its first entry (a batch frame's base; not stored: read from the WAL
    /// when the seal is examined).
    pub first_sequence: u64,
}

/// A durable, verified prefix of one WAL.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Seal {
    /// The WAL header's snapshot sequence.
    pub snapshot_seq: u64,
    /// Offset just past the last sealed frame.
    pub end: u64,
    /// The last sealed frame.
    pub last: LastFrame,
    /// The writer's clock when sealed: at least every timestamp in the prefix.
    pub clock: Hlc,
}

impl Seal {
    /// Encode the seal.
    #[must_use]
    pub fn encode(&self) -> [u8; SEAL_LEN] {
        let mut out = [0u8; SEAL_LEN];
        FORMAT.write_identity(&mut out);
        out[8..16].copy_from_slice(&self.snapshot_seq.to_le_bytes());
        out[16..24].copy_from_slice(&self.end.to_le_bytes());
        out[24..32].copy_from_slice(&self.last.offset.to_le_bytes());
        out[32..40].copy_from_slice(&self.last.sequence.to_le_bytes());
        out[40..44].copy_from_slice(&self.last.header_checksum.to_le_bytes());
        out[44..52].copy_from_slice(&self.clock.seconds.to_le_bytes());
        out[52..56].copy_from_slice(&self.clock.subseconds.to_le_bytes());
        let sum = checksum32(&out[0..60]);
        out[60..64].copy_from_slice(&sum.to_le_bytes());
        out
    }

    /// Decode a seal; `None` unless it is whole, current-version and its checksum holds.
    #[must_use]
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        FORMAT.check_identity(bytes, SEAL_LEN).ok()?;
        if bytes.len() != SEAL_LEN
            || checksum32(&bytes[0..60]) != le_u32(&bytes[60..64])
            || bytes[56..60] != [0; 4]
        {
            return None;
        }
        Some(Self {
            snapshot_seq: le_u64(&bytes[8..16]),
            end: le_u64(&bytes[16..24]),
            last: LastFrame {
                offset: le_u64(&bytes[24..32]),
                sequence: le_u64(&bytes[32..40]),
                header_checksum: le_u32(&bytes[40..44]),
                first_sequence: le_u64(&bytes[32..40]),
            },
            clock: Hlc {
                seconds: le_u64(&bytes[44..52]),
                subseconds: le_u32(&bytes[52..56]),
            },
        })
    }

    /// The seal of `wal`, if there is one and it still names an intact frame of `file`, a WAL
    /// of `file_len` bytes whose header holds `snapshot_seq`.
    #[must_use]
    pub fn load(
        vfs: &dyn Vfs,
        wal: &Path,
        file: &dyn VfsFile,
        header: FileHeader,
        file_len: u64,
    ) -> Option<Self> {
        Self::examine(vfs, wal, file, header, file_len).ok()
    }

    /// [`Seal::load`], saying why a seal there was refused: `Err(None)` when there is none to
    /// use (absent, not yet written, or an earlier epoch's), `Err(Some(why))` when a seal of
    /// this epoch does not name a frame of the file (torn, damaged, another file's, or the WAL
    /// cut shorter): what a writer's open reports, since only its file cannot be growing.
    ///
    /// # Errors
    /// As described: the seal cannot be used.
    pub fn examine(
        vfs: &dyn Vfs,
        wal: &Path,
        file: &dyn VfsFile,
        header: FileHeader,
        file_len: u64,
    ) -> std::result::Result<Self, Option<&'static str>> {
        let sidecar = vfs
            .open(&seal_path(wal), OpenMode::Read)
            .map_err(|_| None)?;
        let mut bytes = [0u8; SEAL_LEN];
        let len = sidecar.size().map_err(|_| None)?;
        if len == 0 {
            return Err(None);
        }
        if len != SEAL_LEN as u64 {
            return Err(Some("its length is not a seal's"));
        }
        read_exact_at(sidecar.as_ref(), &mut bytes, 0).map_err(|_| None)?;
        let mut seal = Self::decode(&bytes).ok_or(Some("it fails its checksum"))?;
        let last = seal.last;
        if seal.snapshot_seq != header.snapshot_seq {
            return Err(None);
        }
        if seal.end > file_len || last.offset >= seal.end {
            return Err(Some("it names a prefix longer than the file"));
        }
        let need = usize::try_from(seal.end - last.offset).unwrap_or(usize::MAX);
        let mut head = vec![0u8; need.min(SEAL_HEAD_READ)];
        let named = read_exact_at(file, &mut head, last.offset)
            .ok()
            .and_then(|()| unit_head(&head, last.offset, header.layout).ok())
            .filter(|unit| {
                unit.last_sequence() == last.sequence
                    && unit.checksum == last.header_checksum
                    && last.offset + unit.len as u64 == seal.end
            });
        let names_it = named.is_some();
        if let Some(unit) = named {
            seal.last.first_sequence = unit.base_sequence;
        }
        if names_it {
            Ok(seal)
        } else {
            Err(Some("no frame of the file is where it names its last"))
        }
    }

    /// Write the seal over `sidecar` (no fsync: a lost or torn seal only costs a full scan).
    ///
    /// # Errors
    /// The write's I/O error.
    pub fn store(&self, sidecar: &mut dyn VfsFile) -> std::io::Result<()> {
        sidecar.write_all_at(&self.encode(), 0)
    }
}

/// Open (creating if absent) the seal sidecar of `wal` for writing.
///
/// # Errors
/// The open's I/O error.
pub fn open_sidecar(vfs: &dyn Vfs, wal: &Path) -> std::io::Result<Box<dyn VfsFile>> {
    vfs.open(&seal_path(wal), OpenMode::Create)
}

/// Decoding never panics and round-trips.
#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Seal {
        Seal {
            snapshot_seq: 7,
            end: 4096,
            last: LastFrame {
                offset: 4000,
                sequence: 99,
                header_checksum: 0xDEAD_BEEF,
                first_sequence: 99,
            },
            clock: Hlc {
                seconds: 1_700_000_000,
                subseconds: 12,
            },
        }
    }

    #[test]
    fn round_trips() {
        assert_eq!(Seal::decode(&sample().encode()), Some(sample()));
    }

    #[test]
    fn every_bit_flip_and_truncation_is_refused() {
        let bytes = sample().encode();
        for bit in 0..SEAL_LEN * 8 {
            let mut flipped = bytes;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(Seal::decode(&flipped), None, "bit {bit}");
        }
        for len in 0..SEAL_LEN {
            assert_eq!(Seal::decode(&bytes[..len]), None, "length {len}");
        }
    }
}
