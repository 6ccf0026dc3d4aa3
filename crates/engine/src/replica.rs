//! Replica positions: how far a store replicating a stream has applied each source node, kept
//! as `replica.<name>` in the store directory and published like a consumer position (temp
//! file, fdatasync, rename, directory fsync), so it survives any crash.
//!
//! The file records the positions as they stood at `anchor`, a sequence of the replica's own
//! log; entries appended after it are found by reading the log on from there (their origin
//! names the source node and sequence), so positions are exact even when a crash came between
//! an append and the next write of this file: each source entry is applied once.
//!
//! File (little-endian): magic `SPRP`, version, anchor u64, stream sequence u64 (the last
//! message applied), node count u32, 4 reserved zero bytes, then per node its id and last
//! applied sequence (u64 each), then checksum32 of everything before it.

use std::collections::BTreeMap;
use std::path::Path;

use crate::checksum::checksum32;
use crate::consumer::check_name;
use crate::error::{Error, Result};
use crate::file_header::{Format, le_u32, le_u64};
use crate::filename::replica_file;
use crate::io::Vfs;
use crate::publish::{publish_sidecar, read_sidecar};

/// The replica positions file format.
pub const FORMAT: Format = Format::new(*b"SPRP", "replica positions", 1, 0);
const FIXED_LEN: usize = 32;
/// Most source nodes one replica file records.
pub const MAX_NODES: usize = 1 << 16;

/// How far a replica has applied each source node.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Positions {
    /// The replica's own last sequence when these positions held.
    pub anchor: u64,
    /// The stream sequence of the last message applied.
    pub stream_seq: u64,
    /// Per source node, the last sequence applied.
    pub nodes: BTreeMap<u64, u64>,
}

impl Positions {
    /// Encode the file.
    ///
    /// # Errors
    /// `InvalidArgument` past [`MAX_NODES`] nodes.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let count = u32::try_from(self.nodes.len())
            .ok()
            .filter(|&n| n as usize <= MAX_NODES)
            .ok_or_else(|| Error::InvalidArgument(format!("more than {MAX_NODES} source nodes")))?;
        let mut out = vec![0u8; FIXED_LEN];
        FORMAT.write_identity(&mut out);
        out[8..16].copy_from_slice(&self.anchor.to_le_bytes());
        out[16..24].copy_from_slice(&self.stream_seq.to_le_bytes());
        out[24..28].copy_from_slice(&count.to_le_bytes());
        for (node, seq) in &self.nodes {
            out.extend_from_slice(&node.to_le_bytes());
            out.extend_from_slice(&seq.to_le_bytes());
        }
        let sum = checksum32(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        Ok(out)
    }

    /// Decode the file's bytes.
    ///
    /// # Errors
    /// `MagicMismatch`, `UnsupportedVersion`, `TruncatedHeader`, `ChecksumMismatch`,
    /// `ReservedNonZero`.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        FORMAT.check_identity(bytes, FIXED_LEN + 4)?;
        let count = le_u32(&bytes[24..28]) as usize;
        let body = FIXED_LEN + 16 * count;
        let damaged = Error::ChecksumMismatch {
            what: "replica positions",
            offset: 0,
        };
        if count > MAX_NODES
            || bytes.len() != body + 4
            || checksum32(&bytes[..body]) != le_u32(&bytes[body..])
        {
            return Err(damaged);
        }
        if bytes[28..32] != [0; 4] {
            return Err(Error::ReservedNonZero { offset: 28 });
        }
        let nodes = bytes[FIXED_LEN..body]
            .chunks(16)
            .map(|pair| (le_u64(&pair[..8]), le_u64(&pair[8..])))
            .collect();
        Ok(Self {
            anchor: le_u64(&bytes[8..16]),
            stream_seq: le_u64(&bytes[16..24]),
            nodes,
        })
    }
}

/// The positions of the replica `name` in `dir`, or `None` if it has none yet.
///
/// # Errors
/// `InvalidArgument` for a bad name; I/O and decode errors.
pub fn read(vfs: &dyn Vfs, dir: &Path, name: &str) -> Result<Option<Positions>> {
    check_name(name)?;
    let largest = (FIXED_LEN + 16 * MAX_NODES + 4) as u64;
    read_sidecar(vfs, &dir.join(replica_file(name)), largest)?
        .map(|(bytes, _)| Positions::decode(&bytes))
        .transpose()
}

/// Record `positions` as replica `name`'s, durably, replacing what was there.
///
/// # Errors
/// `InvalidArgument` for a bad name; I/O errors (the old positions then stay).
pub fn write(vfs: &dyn Vfs, dir: &Path, name: &str, positions: &Positions) -> Result<()> {
    check_name(name)?;
    publish_sidecar(vfs, dir, &replica_file(name), &positions.encode()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_damage_is_refused() {
        let positions = Positions {
            anchor: 99,
            stream_seq: 1234,
            nodes: [(1, 50), (7, (1 << 53) - 1)].into_iter().collect(),
        };
        let good = positions.encode().unwrap();
        assert_eq!(Positions::decode(&good).unwrap(), positions);
        assert_eq!(
            Positions::decode(&Positions::default().encode().unwrap()).unwrap(),
            Positions::default()
        );
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 1;
            assert!(Positions::decode(&bad).is_err(), "byte {i}");
        }
        for cut in 0..good.len() {
            assert!(Positions::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn written_positions_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let vfs = crate::io::StdFs::shared();
        assert_eq!(read(vfs.as_ref(), dir.path(), "events").unwrap(), None);
        let positions = Positions {
            anchor: 3,
            stream_seq: 8,
            nodes: [(2, 5)].into_iter().collect(),
        };
        write(vfs.as_ref(), dir.path(), "events", &positions).unwrap();
        assert_eq!(
            read(vfs.as_ref(), dir.path(), "events").unwrap(),
            Some(positions)
        );
        assert!(read(vfs.as_ref(), dir.path(), "../x").is_err());
    }
}
