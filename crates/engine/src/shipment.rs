//! A shipment: consecutive entries of one node's log as format v4 batch frames, packed into one
//! message that leaves the machine (the facade's `selene-persist/jetstream` publishes one per
//! JetStream message). The batches are encoded as a writer encodes them (capped, deterministic),
//! except that the last entry is a batch of its own: a shipment then ends with exactly the bytes
//! of a one-entry shipment of its last entry, which is how a shipper proves a stored shipment is
//! its own log's (the facade's fence).
//!
//! | bytes  | field                                   |
//! |--------|-----------------------------------------|
//! | 0..4   | magic `SPSH`                            |
//! | 4..8   | major, minor (u16 LE each)              |
//! | 8..16  | node id (u64 LE)                        |
//! | 16..24 | first sequence (u64 LE)                 |
//! | 24..28 | entry count (u32 LE, at least 1)        |
//! | 28..32 | checksum32 of bytes 0..28               |
//!
//! Then batch frames back to back holding `count` entries, with sequences `first`,
//! `first + 1`, ...: each keeps its head, record and body checksums, and [`decode`] verifies
//! every one of them, so a shipment damaged anywhere on its way is refused whole. Checkpoint watermarks travel too:
//! a node's sequences then arrive without holes, and a receiver can prove it missed none.

use crate::checksum::checksum32;
use crate::error::{Error, Result};
use crate::file_header::{Format, le_u32, le_u64};
use crate::frame::Defect;
use crate::scan::{Frame, batch_in, encode_batches};

/// The shipment format.
pub const FORMAT: Format = Format::new(*b"SPSH", "shipment", 2, 0);
/// Length of a shipment's header.
pub const HEADER_LEN: usize = 32;

/// What a shipment's header says.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Header {
    /// The node whose log the frames come from.
    pub node_id: u64,
    /// The sequence of the first frame.
    pub first: u64,
    /// How many frames follow (at least 1).
    pub count: u32,
}

impl Header {
    /// The sequence of the last frame.
    #[must_use]
    pub const fn last(&self) -> u64 {
        self.first + self.count as u64 - 1
    }
}

/// Encode the consecutive `frames` of node `node_id` as one shipment.
///
/// # Errors
/// `InvalidArgument` when `frames` is empty, too many, or not consecutive.
pub fn encode(node_id: u64, frames: &[Frame]) -> Result<Vec<u8>> {
    let (Some(first), Some((last, before)), Ok(count)) = (
        frames.first(),
        frames.split_last(),
        u32::try_from(frames.len()),
    ) else {
        return Err(Error::InvalidArgument(
            "a shipment holds 1 to 2^32 - 1 frames".into(),
        ));
    };
    let first = first.sequence;
    if frames
        .iter()
        .zip(first..)
        .any(|(f, want)| f.sequence != want)
    {
        return Err(Error::InvalidArgument(
            "a shipment's frames must have consecutive sequences".into(),
        ));
    }
    let body: usize = frames.iter().map(|f| f.stored.len() + 8).sum();
    let mut out = Vec::with_capacity(HEADER_LEN + body);
    out.resize(HEADER_LEN, 0);
    FORMAT.write_identity(&mut out);
    out[8..16].copy_from_slice(&node_id.to_le_bytes());
    out[16..24].copy_from_slice(&first.to_le_bytes());
    out[24..28].copy_from_slice(&count.to_le_bytes());
    let sum = checksum32(&out[0..28]);
    out[28..32].copy_from_slice(&sum.to_le_bytes());
    encode_batches(&mut out, before)?;
    encode_batches(&mut out, std::slice::from_ref(last))?;
    Ok(out)
}

/// Decode and verify a shipment: its header, then every frame in full, their sequences in
/// order, and nothing after the last. Frame offsets are offsets into `bytes`.
///
/// # Errors
/// `MagicMismatch`, `UnsupportedVersion`, `TruncatedHeader`; `ChecksumMismatch` for any
/// damaged byte; `SequenceGap` for frames out of order; `UnsupportedFrame` for a frame this
/// build cannot read.
pub fn decode(bytes: &[u8]) -> Result<(Header, Vec<Frame>)> {
    FORMAT.check_identity(bytes, HEADER_LEN)?;
    let damaged = |offset: usize| Error::ChecksumMismatch {
        what: "shipment",
        offset: offset as u64,
    };
    if checksum32(&bytes[0..28]) != le_u32(&bytes[28..32]) {
        return Err(damaged(0));
    }
    let header = Header {
        node_id: le_u64(&bytes[8..16]),
        first: le_u64(&bytes[16..24]),
        count: le_u32(&bytes[24..28]),
    };
    if header.count == 0
        || header.first == 0
        || header.first.checked_add(u64::from(header.count)).is_none()
    {
        return Err(damaged(16));
    }
    let mut frames = Vec::with_capacity(header.count.min(1 << 16) as usize);
    let mut at = HEADER_LEN;
    let mut expected = header.first;
    while at < bytes.len() && expected <= header.last() {
        let (batch, len) = batch_in(bytes, at).map_err(|defect| match defect {
            Defect::Invalid(error) => error,
            Defect::Damaged(_) => damaged(at),
        })?;
        let found = batch.first().map_or(expected, |f| f.sequence);
        if found != expected || expected + batch.len() as u64 - 1 > header.last() {
            return Err(Error::SequenceGap {
                offset: at as u64,
                expected,
                found,
            });
        }
        expected += batch.len() as u64;
        at += len;
        frames.extend(batch);
    }
    if expected != header.last() + 1 {
        return Err(damaged(at));
    }
    if at != bytes.len() {
        return Err(damaged(at));
    }
    Ok((header, frames))
}

#[cfg(test)]
mod tests;
