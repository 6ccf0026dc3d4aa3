//! What a batched read collects its entries into: a `Vec<Entry>` (an entry each, for Rust
//! callers), or a binding's own layout (the Node binding packs every payload into one buffer
//! and the fields beside it, to hand over in one piece). Each takes verified frames borrowed
//! from the read window, so the readers decide which entries go in, and the batch only how they
//! are held.

use crate::compression::decompress_bounded;
use crate::error::{Error, Result};
use crate::frame::MAX_PAYLOAD_LEN;
use crate::reader::Entry;
use crate::scan::FrameRef;

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
        let entry = Entry::from_frame(frame.to_frame())?;
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
