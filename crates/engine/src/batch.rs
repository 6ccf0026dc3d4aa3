//! What a batched read collects its entries into: a `Vec<Entry>` (an entry each, for Rust
//! callers; [`Entry`] is defined here so the readers depend on the batch, not back), or a
//! binding's own layout (the Node binding packs every payload into one buffer
//! and the fields beside it, to hand over in one piece). Each takes verified frames borrowed
//! from the read window, so the readers decide which entries go in, and the batch only how they
//! are held.

use bytes::Bytes;

use crate::compression::decompress_bounded;
use crate::error::{Error, Result};
use crate::frame::{FLAG_CHECKPOINT_WATERMARK, FLAG_COMPRESSED, MAX_PAYLOAD_LEN, Origin, Producer};
use crate::hlc::Hlc;
use crate::scan::FrameRef;

/// One entry read back, payload decompressed.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Entry {
    /// Its sequence.
    pub sequence: u64,
    /// Its timestamp.
    pub hlc: Hlc,
    /// Its origin.
    pub origin: Origin,
    /// Its principal.
    pub principal: Option<Vec<u8>>,
    /// Its idempotent producer's stamp, if it has one.
    pub producer: Option<Producer>,
    /// Its payload (a slice of the bytes it was read into, unless it was decompressed).
    pub payload: Bytes,
    /// Whether it is a checkpoint watermark.
    pub watermark: bool,
    /// Offset of its frame in the file.
    pub offset: u64,
    /// Payload length as stored.
    pub stored_len: u64,
    /// Whether the payload was stored compressed.
    pub compressed: bool,
}

impl Entry {
    /// Decode a verified frame, decompressing its payload within the cap.
    ///
    /// # Errors
    /// `Decompression`, `PayloadTooLarge`.
    pub fn from_frame(frame: FrameRef<'_>) -> Result<Self> {
        let flags = frame.flags;
        let (offset, stored_len) = (frame.offset, frame.stored.len() as u64);
        let payload = if flags & FLAG_COMPRESSED == 0 {
            frame.stored_shared()
        } else {
            decompress_payload(frame.stored, frame.offset)?.into()
        };
        Ok(Self {
            sequence: frame.sequence,
            hlc: frame.hlc,
            origin: frame.origin,
            principal: frame.principal.map(<[u8]>::to_vec),
            producer: frame.producer,
            payload,
            watermark: flags & FLAG_CHECKPOINT_WATERMARK != 0,
            offset,
            stored_len,
            compressed: flags & FLAG_COMPRESSED != 0,
        })
    }
}

/// Entries a batch makes room for at once, whatever larger limit a read names.
pub const RESERVE_ENTRIES: usize = 4096;

/// A collection of entries read in one batch.
pub trait Batch: Default {
    /// An empty batch with room for what a read of at most `max_entries` entries and about
    /// `max_bytes` of payload is likely to hold, so it does not grow entry by entry.
    fn with_limits(max_entries: usize, max_bytes: usize) -> Self;

    /// Add the entry of a verified frame, its payload decompressed within the cap; returns
    /// the payload's length.
    ///
    /// # Errors
    /// `Decompression`, `PayloadTooLarge`.
    fn push_frame(&mut self, frame: FrameRef<'_>) -> Result<usize>;

    /// How many entries it holds.
    fn len(&self) -> usize;

    /// Whether it holds none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Batch for Vec<Entry> {
    fn with_limits(max_entries: usize, _max_bytes: usize) -> Self {
        Self::with_capacity(max_entries.min(RESERVE_ENTRIES))
    }

    fn push_frame(&mut self, frame: FrameRef<'_>) -> Result<usize> {
        let entry = Entry::from_frame(frame)?;
        let len = entry.payload.len();
        self.push(entry);
        Ok(len)
    }

    fn len(&self) -> usize {
        self.len()
    }
}

/// The payload of a stored zstd frame at `offset`, decompressed within the cap.
///
/// # Errors
/// `Decompression`, `PayloadTooLarge`.
pub fn decompress_payload(stored: &[u8], offset: u64) -> Result<Vec<u8>> {
    decompress_bounded(stored, MAX_PAYLOAD_LEN)
        .map_err(|e| Error::Decompression {
            offset,
            detail: e.to_string(),
        })?
        .map_err(|len| Error::PayloadTooLarge {
            len,
            cap: MAX_PAYLOAD_LEN as u64,
        })
}
