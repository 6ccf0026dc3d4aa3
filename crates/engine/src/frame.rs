//! The entry frame: a fixed 40-byte header guarded by its own checksum, an optional extent
//! (replicated-origin tail, then principal bytes), then the stored payload.
//!
//! | bytes  | field                                                        |
//! |--------|--------------------------------------------------------------|
//! | 0..4   | header checksum: checksum32 of bytes 4..40                   |
//! | 4..8   | stored payload length (u32 LE)                               |
//! | 8..12  | payload checksum: checksum32 of the payload as stored        |
//! | 12..20 | sequence (u64 LE)                                            |
//! | 20..28 | HLC seconds (u64 LE)                                         |
//! | 28..32 | HLC subseconds (u32 LE)                                      |
//! | 32     | flags: 0x01 compressed, 0x02 checkpoint watermark, 0x04 replicated origin |
//! | 33     | reserved, zero                                               |
//! | 34..36 | principal length + 1 (u16 LE; 0 means no principal)          |
//! | 36..40 | extent checksum: checksum32 of the extent (computed even when empty) |
//!
//! The extent is 16 bytes of origin (source node id, source sequence; u64 LE each) when the
//! replicated flag is set, then the principal bytes.

use crate::checksum::checksum32;
use crate::error::Error;
use crate::file_header::{le_u32, le_u64};
use crate::hlc::Hlc;

/// Length of the fixed frame header.
pub const FRAME_HEADER_LEN: usize = 40;
/// Largest payload, stored or decompressed: 256 MiB.
pub const MAX_PAYLOAD_LEN: usize = 256 << 20;
/// Largest principal: 4 KiB.
pub const MAX_PRINCIPAL_LEN: usize = 4096;
/// Flag: the payload is zstd-compressed.
pub const FLAG_COMPRESSED: u8 = 0x01;
/// Flag: the entry is a checkpoint watermark (reserved for rotation).
pub const FLAG_CHECKPOINT_WATERMARK: u8 = 0x02;
/// Flag: the extent starts with a replicated-origin tail.
pub const FLAG_REPLICATED: u8 = 0x04;
const KNOWN_FLAGS: u8 = FLAG_COMPRESSED | FLAG_CHECKPOINT_WATERMARK | FLAG_REPLICATED;
const ORIGIN_TAIL_LEN: usize = 16;

/// Where an entry came from.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Hash)]
pub enum Origin {
    /// Written by this node.
    #[default]
    Local,
    /// Copied from another node.
    Replicated {
        /// The node it came from.
        source_node_id: u64,
        /// Its sequence on that node.
        source_seq: u64,
    },
}

/// An idempotent producer's stamp on one entry (Kafka's producer id, epoch and sequence; the
/// Durable Streams protocol's `Producer-Id`, `Producer-Epoch`, `Producer-Seq`). Stored with the
/// entry, so the writer that recovers a log knows each producer's last sequence from the log
/// itself and a retry after a crash lands once.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Hash)]
pub struct Producer {
    /// Who appends: chosen by the producer, stable across its restarts.
    pub id: u64,
    /// Raised by each new incarnation of the producer; an older epoch is fenced.
    pub epoch: u32,
    /// The producer's own count of its appends within the epoch, from 0.
    pub seq: u64,
}

/// A decoded, checksum-verified frame header.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct FrameHeader {
    /// The header's own checksum (bytes 0..4), which names the frame: it covers the sequence,
    /// timestamp, lengths and payload checksum.
    pub header_checksum: u32,
    /// Stored (possibly compressed) payload length.
    pub payload_len: u32,
    /// Checksum of the stored payload.
    pub payload_checksum: u32,
    /// Entry sequence.
    pub sequence: u64,
    /// Entry timestamp.
    pub hlc: Hlc,
    /// Flag bits.
    pub flags: u8,
    /// Principal length, if the entry has a principal.
    pub principal_len: Option<usize>,
    /// Checksum of the extent.
    pub extent_checksum: u32,
}

impl FrameHeader {
    /// Length of the extent (origin tail and principal).
    #[must_use]
    pub fn extent_len(&self) -> usize {
        let tail = if self.flags & FLAG_REPLICATED != 0 {
            ORIGIN_TAIL_LEN
        } else {
            0
        };
        tail + self.principal_len.unwrap_or(0)
    }

    /// Length of the whole frame on disk.
    #[must_use]
    pub fn frame_len(&self) -> u64 {
        (FRAME_HEADER_LEN + self.extent_len()) as u64 + u64::from(self.payload_len)
    }
}

/// Damage that a torn write can cause: a candidate for tail repair.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Damage {
    /// The file ends inside the frame.
    Short,
    /// The header is all zeros.
    ZeroHeader,
    /// The header checksum does not match.
    HeaderChecksum,
    /// The extent checksum does not match.
    ExtentChecksum,
    /// The payload checksum does not match.
    PayloadChecksum,
    /// A v4 batch record's own check does not match (see `batch_frame`).
    RecordChecksum,
    /// A v4 batch's body checksum does not match though every record's own check does.
    BodyChecksum,
}

impl Damage {
    /// A short human description.
    #[must_use]
    pub const fn describe(self) -> &'static str {
        match self {
            Self::Short => "file ends inside the frame",
            Self::ZeroHeader => "zero-filled header",
            Self::HeaderChecksum => "header checksum mismatch",
            Self::ExtentChecksum => "extent checksum mismatch",
            Self::PayloadChecksum => "payload checksum mismatch",
            Self::RecordChecksum => "record checksum mismatch",
            Self::BodyChecksum => "batch body checksum mismatch",
        }
    }
}

/// Why a frame could not be accepted.
#[derive(Clone, Debug)]
pub enum Defect {
    /// Damaged bytes, as a torn write leaves them.
    Damaged(Damage),
    /// Checksum-valid but unacceptable (a newer format, or a cap exceeded): never repaired.
    Invalid(Error),
}

/// Decode and verify a frame header found at `offset`.
///
/// # Errors
/// A [`Defect`]: damaged bytes, or a valid header this build cannot accept.
pub fn decode_header(bytes: &[u8; FRAME_HEADER_LEN], offset: u64) -> Result<FrameHeader, Defect> {
    if bytes.iter().all(|&b| b == 0) {
        return Err(Defect::Damaged(Damage::ZeroHeader));
    }
    if checksum32(&bytes[4..]) != le_u32(&bytes[0..4]) {
        return Err(Defect::Damaged(Damage::HeaderChecksum));
    }
    let invalid = |detail: String| Defect::Invalid(Error::UnsupportedFrame { offset, detail });
    let flags = bytes[32];
    if flags & !KNOWN_FLAGS != 0 {
        return Err(invalid(format!(
            "unknown flag bits {:#04x}",
            flags & !KNOWN_FLAGS
        )));
    }
    if bytes[33] != 0 {
        return Err(Defect::Invalid(Error::ReservedNonZero {
            offset: offset + 33,
        }));
    }
    let payload_len = le_u32(&bytes[4..8]);
    if payload_len as usize > MAX_PAYLOAD_LEN {
        return Err(invalid(format!(
            "payload length {payload_len} exceeds {MAX_PAYLOAD_LEN}"
        )));
    }
    let principal_len = match u16::from_le_bytes([bytes[34], bytes[35]]) {
        0 => None,
        n if usize::from(n) - 1 > MAX_PRINCIPAL_LEN => {
            return Err(invalid(format!(
                "principal length {} exceeds {MAX_PRINCIPAL_LEN}",
                n - 1
            )));
        }
        n => Some(usize::from(n) - 1),
    };
    Ok(FrameHeader {
        header_checksum: le_u32(&bytes[0..4]),
        payload_len,
        payload_checksum: le_u32(&bytes[8..12]),
        sequence: le_u64(&bytes[12..20]),
        hlc: Hlc {
            seconds: le_u64(&bytes[20..28]),
            subseconds: le_u32(&bytes[28..32]),
        },
        flags,
        principal_len,
        extent_checksum: le_u32(&bytes[36..40]),
    })
}

/// Verify and decode the extent of `header`.
///
/// # Errors
/// `Defect::Damaged(ExtentChecksum)` when the extent does not match its checksum.
pub fn decode_extent<'a>(
    header: &FrameHeader,
    extent: &'a [u8],
) -> Result<(Origin, Option<&'a [u8]>), Defect> {
    if checksum32(extent) != header.extent_checksum {
        return Err(Defect::Damaged(Damage::ExtentChecksum));
    }
    let (origin, principal) = if header.flags & FLAG_REPLICATED != 0 {
        let origin = Origin::Replicated {
            source_node_id: le_u64(&extent[0..8]),
            source_seq: le_u64(&extent[8..16]),
        };
        (origin, &extent[ORIGIN_TAIL_LEN..])
    } else {
        (Origin::Local, extent)
    };
    Ok((origin, header.principal_len.map(|_| principal)))
}

/// Verify the stored payload of `header`.
///
/// # Errors
/// `Defect::Damaged(PayloadChecksum)` on mismatch.
pub fn verify_payload(header: &FrameHeader, stored: &[u8]) -> Result<(), Defect> {
    if checksum32(stored) == header.payload_checksum {
        Ok(())
    } else {
        Err(Defect::Damaged(Damage::PayloadChecksum))
    }
}

/// The fields of a frame to encode.
#[derive(Clone, Copy, Debug)]
pub struct FrameFields<'a> {
    /// Entry sequence.
    pub sequence: u64,
    /// Entry timestamp.
    pub hlc: Hlc,
    /// Entry origin.
    pub origin: Origin,
    /// Optional principal (at most [`MAX_PRINCIPAL_LEN`] bytes; checked by the caller).
    pub principal: Option<&'a [u8]>,
    /// Extra flags (compressed, watermark); the replicated flag is derived from `origin`.
    pub flags: u8,
}

/// Append one encoded frame for `fields` and the stored payload to `out`.
///
/// The caller has checked the caps; lengths here fit their fields.
pub fn encode_frame(out: &mut Vec<u8>, fields: &FrameFields<'_>, stored: &[u8]) {
    encode_frame_head(out, fields, stored);
    out.extend_from_slice(stored);
}

/// Append the frame for `fields` and `stored` to `out` up to the stored payload, which the
/// caller writes right after (the header's lengths and checksums cover it already).
pub fn encode_frame_head(out: &mut Vec<u8>, fields: &FrameFields<'_>, stored: &[u8]) {
    let start = out.len();
    out.resize(start + FRAME_HEADER_LEN, 0);
    let mut flags = fields.flags;
    if let Origin::Replicated {
        source_node_id,
        source_seq,
    } = fields.origin
    {
        flags |= FLAG_REPLICATED;
        out.extend_from_slice(&source_node_id.to_le_bytes());
        out.extend_from_slice(&source_seq.to_le_bytes());
    }
    if let Some(principal) = fields.principal {
        out.extend_from_slice(principal);
    }
    let extent_checksum = checksum32(&out[start + FRAME_HEADER_LEN..]);
    let principal_len_p1 = fields.principal.map_or(0, |p| p.len() + 1);
    let header = &mut out[start..start + FRAME_HEADER_LEN];
    #[allow(clippy::cast_possible_truncation)]
    {
        header[4..8].copy_from_slice(&(stored.len() as u32).to_le_bytes());
        header[34..36].copy_from_slice(&(principal_len_p1 as u16).to_le_bytes());
    }
    header[8..12].copy_from_slice(&checksum32(stored).to_le_bytes());
    header[12..20].copy_from_slice(&fields.sequence.to_le_bytes());
    header[20..28].copy_from_slice(&fields.hlc.seconds.to_le_bytes());
    header[28..32].copy_from_slice(&fields.hlc.subseconds.to_le_bytes());
    header[32] = flags;
    header[36..40].copy_from_slice(&extent_checksum.to_le_bytes());
    let sum = checksum32(&header[4..]);
    header[0..4].copy_from_slice(&sum.to_le_bytes());
}

/// The caps every entry is held to, written and read: a payload of `payload_len` bytes (as
/// stored) and its principal.
///
/// # Errors
/// `PayloadTooLarge` or `PrincipalTooLarge`.
pub(crate) fn check_caps(payload_len: usize, principal: Option<&[u8]>) -> crate::error::Result<()> {
    if payload_len > MAX_PAYLOAD_LEN {
        return Err(Error::PayloadTooLarge {
            len: payload_len as u64,
            cap: MAX_PAYLOAD_LEN as u64,
        });
    }
    match principal {
        Some(p) if p.len() > MAX_PRINCIPAL_LEN => Err(Error::PrincipalTooLarge {
            len: p.len() as u64,
            cap: MAX_PRINCIPAL_LEN as u64,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
