//! Entries as they cross to JS many at a time: one buffer holding every principal and payload,
//! then each entry's fields, packed on the thread that reads them.

use napi_derive::napi;
use selene_persist_engine::Result;
use selene_persist_engine::batch::{Batch, RESERVE_ENTRIES, decompress_payload};
use selene_persist_engine::frame::{FLAG_CHECKPOINT_WATERMARK, FLAG_COMPRESSED, Origin};
use selene_persist_engine::scan::FrameRef;

use crate::convert::to_f64;
use crate::pool::{self, PooledBuffer};

/// Doubles per entry, from [`NativeChunk::meta_at`]: sequence, HLC seconds, source node id
/// (-1 for local), source sequence, frame offset.
pub const META_FIELDS: usize = 5;

/// 32-bit integers per entry, from [`NativeChunk::fields_at`]: payload start, payload length,
/// HLC subseconds, principal length (`NO_PRINCIPAL` for none; the principal ends where the
/// payload starts), stored length, flags (1 watermark, 2 compressed). Starts are offsets into
/// [`NativeChunk::data`].
pub const U32_FIELDS: usize = 6;

/// The principal length of an entry without one.
pub const NO_PRINCIPAL: u32 = u32::MAX;

/// Payload bytes a chunk makes room for at once (1024 entries of 1 KiB, or 4096 of 256 bytes);
/// beyond that it grows by doubling.
const RESERVE_BYTES: usize = 1 << 20;

/// Many entries in one crossing, 64 bytes of fields an entry beside their bytes.
#[napi(object, object_from_js = false)]
pub struct NativeChunk {
    /// Principals and payloads back to back, then the doubles, then the integers, in native
    /// byte order.
    #[napi(ts_type = "Buffer")]
    pub data: PooledBuffer,
    /// How many entries.
    pub count: u32,
    /// Where the doubles start in `data` (a multiple of 8).
    pub meta_at: u32,
    /// Where the integers start in `data`.
    pub fields_at: u32,
}

/// A chunk being packed as frames are read: one copy of each payload, no allocation per entry.
#[derive(Default)]
pub struct Packed {
    data: Vec<u8>,
    meta: Vec<u8>,
    fields: Vec<u8>,
    count: usize,
}

impl Batch for Packed {
    fn with_limits(max_entries: usize, max_bytes: usize) -> Self {
        let entries = max_entries.min(RESERVE_ENTRIES);
        Self {
            data: pool::take(max_bytes.min(RESERVE_BYTES)),
            meta: pool::take(entries * META_FIELDS * 8),
            fields: pool::take(entries * U32_FIELDS * 4),
            count: 0,
        }
    }

    // Lengths fit 32 bits: a chunk's data is bounded by the reader's byte limit plus one
    // payload, which the cap keeps far under 4 GiB.
    #[allow(clippy::cast_possible_truncation)]
    fn push_frame(&mut self, frame: FrameRef<'_>) -> Result<usize> {
        let flags = frame.header.flags;
        let compressed = flags & FLAG_COMPRESSED != 0;
        if let Some(principal) = frame.principal {
            self.data.extend_from_slice(principal);
        }
        let payload_start = self.data.len();
        if compressed {
            self.data
                .extend_from_slice(&decompress_payload(frame.stored, frame.offset)?);
        } else {
            self.data.extend_from_slice(frame.stored);
        }
        let payload_len = self.data.len() - payload_start;
        let (node, seq) = match frame.origin {
            Origin::Local => (-1.0, 0.0),
            Origin::Replicated {
                source_node_id,
                source_seq,
            } => (to_f64(source_node_id), to_f64(source_seq)),
        };
        let doubles = [
            to_f64(frame.header.sequence),
            to_f64(frame.header.hlc.seconds),
            node,
            seq,
            to_f64(frame.offset),
        ];
        let watermark = flags & FLAG_CHECKPOINT_WATERMARK != 0;
        let integers = [
            payload_start as u32,
            payload_len as u32,
            frame.header.hlc.subseconds,
            frame.principal.map_or(NO_PRINCIPAL, |p| p.len() as u32),
            frame.stored.len() as u32,
            u32::from(watermark) | (u32::from(compressed) << 1),
        ];
        doubles
            .iter()
            .for_each(|d| self.meta.extend_from_slice(&d.to_ne_bytes()));
        integers
            .iter()
            .for_each(|i| self.fields.extend_from_slice(&i.to_ne_bytes()));
        self.count += 1;
        Ok(payload_len)
    }

    fn len(&self) -> usize {
        self.count
    }
}

impl Packed {
    /// The chunk as it crosses: the fields after the bytes, the doubles 8-aligned.
    #[allow(clippy::cast_possible_truncation)]
    pub fn finish(self) -> NativeChunk {
        let Self {
            mut data,
            meta,
            fields,
            count,
        } = self;
        data.resize(data.len().next_multiple_of(8), 0);
        let meta_at = data.len();
        data.extend_from_slice(&meta);
        let fields_at = data.len();
        data.extend_from_slice(&fields);
        pool::give_back(meta);
        pool::give_back(fields);
        NativeChunk {
            data: PooledBuffer(data),
            count: count as u32,
            meta_at: meta_at as u32,
            fields_at: fields_at as u32,
        }
    }
}
