//! The MANIFEST, a store directory's single commit point.
//!
//! Layout (little-endian): magic `SPMF`, major/minor u16 = 1/0, live snapshot sequence u64
//! (0: none), active WAL header sequence u64, archive count u32, reserved u32 = 0, the
//! archived WAL sequences (u64, strictly ascending), then xxh3-64 of all preceding bytes.
//! It is replaced atomically (temp, fdatasync, rename, directory fsync); a committed MANIFEST
//! is never torn, so any decode failure is an error, never a fallback.

use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::file_header::{Format, le_u32, le_u64};
use crate::filename::StoreFile;
use crate::io::{OpenMode, Vfs, read_exact_at};
use crate::publish::{Placement, publish, write_all};

/// The MANIFEST file format.
pub const FORMAT: Format = Format::new(*b"SPMF", "MANIFEST", 1, 0);
const FIXED_LEN: usize = 32;
/// Most archives a MANIFEST lists.
pub const MAX_ARCHIVES: usize = 1 << 20;

/// The committed state of a store directory (in camelCase as `inspect` reports it).
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Sequence of the live snapshot (0: no snapshot).
    pub live_snapshot_seq: u64,
    /// The snapshot sequence the active WAL's header should carry.
    pub active_wal_seq: u64,
    /// Sequences of the retained `wal.<seq>.archive` files, ascending.
    pub archives: Vec<u64>,
}

impl Manifest {
    /// Encode the MANIFEST.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FIXED_LEN + 8 * self.archives.len() + 8);
        out.resize(8, 0);
        FORMAT.write_identity(&mut out);
        out.extend_from_slice(&self.live_snapshot_seq.to_le_bytes());
        out.extend_from_slice(&self.active_wal_seq.to_le_bytes());
        #[allow(clippy::cast_possible_truncation)]
        out.extend_from_slice(&(self.archives.len() as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        for seq in &self.archives {
            out.extend_from_slice(&seq.to_le_bytes());
        }
        let hash = xxhash_rust::xxh3::xxh3_64(&out);
        out.extend_from_slice(&hash.to_le_bytes());
        out
    }

    /// Decode a MANIFEST read from `path`.
    ///
    /// # Errors
    /// `TruncatedHeader`, `MagicMismatch`, `UnsupportedVersion`, `ChecksumMismatch`,
    /// `ReservedNonZero`, `StoreInconsistent` (archives out of order).
    pub fn decode(bytes: &[u8], path: &Path) -> Result<Self> {
        let truncated = |need: usize| Error::TruncatedHeader {
            len: bytes.len() as u64,
            need: need as u64,
        };
        FORMAT.check_identity(bytes, FIXED_LEN)?;
        let fixed = &bytes[..FIXED_LEN];
        let count = le_u32(&fixed[24..28]) as usize;
        if count > MAX_ARCHIVES {
            return Err(inconsistent(
                path,
                format!("MANIFEST lists {count} archives"),
            ));
        }
        let total = FIXED_LEN + 8 * count + 8;
        if bytes.len() != total {
            return Err(truncated(total));
        }
        if xxhash_rust::xxh3::xxh3_64(&bytes[..total - 8]) != le_u64(&bytes[total - 8..]) {
            return Err(Error::ChecksumMismatch {
                what: "MANIFEST",
                offset: 0,
            });
        }
        if fixed[28..32] != [0; 4] {
            return Err(Error::ReservedNonZero { offset: 28 });
        }
        let archives: Vec<u64> = bytes[FIXED_LEN..total - 8].chunks(8).map(le_u64).collect();
        if archives.windows(2).any(|w| w[0] >= w[1]) {
            return Err(inconsistent(
                path,
                "MANIFEST archives are not strictly ascending".into(),
            ));
        }
        Ok(Self {
            live_snapshot_seq: le_u64(&fixed[8..16]),
            active_wal_seq: le_u64(&fixed[16..24]),
            archives,
        })
    }

    /// The MANIFEST of `dir`, or `None` if it has none.
    ///
    /// # Errors
    /// I/O and decode errors.
    pub fn read(vfs: &dyn Vfs, dir: &Path) -> Result<Option<Self>> {
        let path = StoreFile::Manifest.path(dir);
        let file = match vfs.open(&path, OpenMode::Read) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open", &path, e)),
        };
        let len = file.size().map_err(|e| Error::io("stat", &path, e))?;
        if len > (FIXED_LEN + 8 * MAX_ARCHIVES + 8) as u64 {
            return Err(inconsistent(&path, format!("MANIFEST is {len} bytes")));
        }
        let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(0)];
        read_exact_at(file.as_ref(), &mut bytes, 0).map_err(|e| Error::io("read", &path, e))?;
        Self::decode(&bytes, &path).map(Some)
    }

    /// Commit this MANIFEST to `dir` atomically.
    ///
    /// # Errors
    /// I/O errors. On an error the previous MANIFEST may or may not have been replaced;
    /// [`Self::read`] tells which.
    pub fn write(&self, vfs: &dyn Vfs, dir: &Path) -> Result<()> {
        let bytes = self.encode();
        publish(
            vfs,
            &StoreFile::Manifest.path(dir),
            Placement::Replace,
            |file, temp| write_all(file, temp, &bytes),
        )
        .map(drop)
    }
}

fn inconsistent(path: &Path, detail: String) -> Error {
    Error::StoreInconsistent {
        dir: crate::publish::dir_of(path).to_path_buf(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::StdFs;

    fn sample() -> Manifest {
        Manifest {
            live_snapshot_seq: 40,
            active_wal_seq: 40,
            archives: vec![10, 20, 40],
        }
    }

    #[test]
    fn round_trips_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Manifest::read(&StdFs, dir.path()).unwrap(), None);
        sample().write(&StdFs, dir.path()).unwrap();
        assert_eq!(Manifest::read(&StdFs, dir.path()).unwrap(), Some(sample()));
        let next = Manifest {
            live_snapshot_seq: 50,
            active_wal_seq: 50,
            archives: vec![50],
        };
        next.write(&StdFs, dir.path()).unwrap();
        assert_eq!(Manifest::read(&StdFs, dir.path()).unwrap(), Some(next));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from(StoreFile::Manifest.name())]
        );
    }

    #[test]
    fn every_bit_flip_and_truncation_is_an_error() {
        let bytes = sample().encode();
        let path = Path::new("/d/MANIFEST");
        for byte in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[byte] ^= 0x08;
            assert!(Manifest::decode(&bad, path).is_err(), "byte {byte}");
        }
        for len in 0..bytes.len() {
            assert!(
                Manifest::decode(&bytes[..len], path).is_err(),
                "length {len}"
            );
        }
        assert_eq!(
            Manifest::decode(b"SPWL....", path).unwrap_err().code(),
            "MAGIC_MISMATCH"
        );
    }

    #[test]
    fn archives_must_ascend() {
        let bad = Manifest {
            archives: vec![5, 5],
            ..sample()
        }
        .encode();
        assert_eq!(
            Manifest::decode(&bad, Path::new("MANIFEST"))
                .unwrap_err()
                .code(),
            "STORE_INCONSISTENT"
        );
    }
}
