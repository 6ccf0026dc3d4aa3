//! Entries as they cross to JS many at a time: one buffer holding every principal and payload,
//! then each entry's fields, packed on the thread that reads them.

use napi_derive::napi;
use selene_persist_engine::Result;
use selene_persist_engine::batch::{Batch, RESERVE_ENTRIES, decompress_payload};
use selene_persist_engine::frame::{FLAG_CHECKPOINT_WATERMARK, FLAG_COMPRESSED, Origin};
use selene_persist_engine::scan::FrameRef;

use crate::convert::to_f64;
use crate::pool::{self, PooledBuffer};

/// Doubles per entry, from [`NativeChunk::meta_at`], in [`LAYOUT`]'s order.
pub const META_FIELDS: usize = 5;

/// 32-bit integers per entry, from [`NativeChunk::fields_at`], in [`LAYOUT`]'s order. Starts
/// are offsets into [`NativeChunk::data`].
pub const U32_FIELDS: usize = 6;

/// The principal length of an entry without one.
pub const NO_PRINCIPAL: u32 = u32::MAX;

/// Where each field of an entry sits in a chunk: the facade reads them by these positions.
#[napi(object, object_from_js = false)]
pub struct NativeChunkLayout {
    /// Doubles per entry.
    pub meta_fields: u32,
    /// Position of the sequence among the doubles.
    pub sequence: u32,
    /// Of the HLC seconds.
    pub hlc_seconds: u32,
    /// Of the source node id (-1 for a local entry).
    pub source_node: u32,
    /// Of the source sequence.
    pub source_seq: u32,
    /// Of the frame's file offset.
    pub offset: u32,
    /// 32-bit integers per entry.
    pub u32_fields: u32,
    /// Position of the payload's start among the integers.
    pub payload_start: u32,
    /// Of the payload's length.
    pub payload_len: u32,
    /// Of the HLC subseconds.
    pub hlc_subseconds: u32,
    /// Of the principal's length (`no_principal` for none; it ends where the payload starts).
    pub principal_len: u32,
    /// Of the stored (maybe compressed) length.
    pub stored_len: u32,
    /// Of the flags.
    pub flags: u32,
    /// The principal length of an entry without one.
    pub no_principal: u32,
    /// Flag bit of a checkpoint watermark.
    pub flag_watermark: u32,
    /// Flag bit of a payload stored compressed.
    pub flag_compressed: u32,
}

/// The one layout of an entry's fields: [`Packed`] writes by it, the facade reads by it.
pub const LAYOUT: NativeChunkLayout = NativeChunkLayout {
    meta_fields: META_FIELDS as u32,
    sequence: 0,
    hlc_seconds: 1,
    source_node: 2,
    source_seq: 3,
    offset: 4,
    u32_fields: U32_FIELDS as u32,
    payload_start: 0,
    payload_len: 1,
    hlc_subseconds: 2,
    principal_len: 3,
    stored_len: 4,
    flags: 5,
    no_principal: NO_PRINCIPAL,
    flag_watermark: 1,
    flag_compressed: 2,
};

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
        let flags = frame.flags;
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
        let mut doubles = [0.0; META_FIELDS];
        let mut integers = [0_u32; U32_FIELDS];
        let at = |position: u32| position as usize;
        doubles[at(LAYOUT.sequence)] = to_f64(frame.sequence);
        doubles[at(LAYOUT.hlc_seconds)] = to_f64(frame.hlc.seconds);
        doubles[at(LAYOUT.source_node)] = node;
        doubles[at(LAYOUT.source_seq)] = seq;
        doubles[at(LAYOUT.offset)] = to_f64(frame.offset);
        integers[at(LAYOUT.payload_start)] = payload_start as u32;
        integers[at(LAYOUT.payload_len)] = payload_len as u32;
        integers[at(LAYOUT.hlc_subseconds)] = frame.hlc.subseconds;
        integers[at(LAYOUT.principal_len)] = frame
            .principal
            .as_ref()
            .map_or(NO_PRINCIPAL, |p| p.len() as u32);
        integers[at(LAYOUT.stored_len)] = frame.stored.len() as u32;
        let watermark = flags & FLAG_CHECKPOINT_WATERMARK != 0;
        integers[at(LAYOUT.flags)] = if watermark { LAYOUT.flag_watermark } else { 0 }
            | if compressed {
                LAYOUT.flag_compressed
            } else {
                0
            };
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
