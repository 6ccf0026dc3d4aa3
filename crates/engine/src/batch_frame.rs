//! The format v4 batch frame: the entries of one commit group as one frame, a 32-byte header
//! and a length table guarded by one checksum, then the records, each with its own 16-bit check.
//!
//! Every WAL of version 2 ([`crate::file_header::WAL_FORMAT`]) holds these: the writer frames
//! each commit as one (several past the caps of [`crate::scan::encode_records`]), the scan walks
//! them, salvage keeps their intact records, and shipments carry them. The v3 frame of
//! [`crate::frame`] is what WAL 1.0 files, written by earlier builds, hold.
//!
//! # Layout (all integers little-endian; varints are LEB128, canonical: no trailing zero byte)
//!
//! | bytes        | field                                                               |
//! |--------------|---------------------------------------------------------------------|
//! | 0..4         | head checksum: `checksum32` of bytes 4..32 and the length table      |
//! | 4            | frame version: [`FRAME_VERSION`] (4)                                |
//! | 5            | batch flags: 0x01 encrypted (reserved: refused); others must be zero |
//! | 6..8         | record count `n` (u16, 1..=65535)                                    |
//! | 8..12        | body checksum: `checksum32` of the records' 64-bit hashes, in order  |
//! | 12..20       | base sequence: record `i` has sequence `base + i`                    |
//! | 20..28       | base HLC seconds (u64): the group's earliest timestamp               |
//! | 28..32       | base HLC subseconds (u32)                                           |
//! | 32..         | length table: `n` varints, `record_len << 5 \| record flags`         |
//! | then         | the `n` records, back to back, each `record_len` bytes               |
//!
//! Record flags: 0x01 compressed (zstd), 0x02 checkpoint watermark, 0x04 replicated origin,
//! 0x08 principal, 0x10 producer stamp. A record is:
//!
//! | field                      | bytes                                                      |
//! |----------------------------|------------------------------------------------------------|
//! | HLC delta                  | varint: ticks (1/2^32 s) after the base HLC                |
//! | origin, if 0x04            | varint source node id, varint source sequence              |
//! | principal, if 0x08         | varint length (<= 4096), then the bytes                    |
//! | producer, if 0x10          | varint producer id, varint epoch (u32), varint sequence     |
//! | payload                    | the rest up to the check, as stored (<= 256 MiB)           |
//! | check                      | u16: low 16 bits of the record hash (0 is written as 1)    |
//!
//! The record hash is xxh3-64 of the record's bytes before its check, seeded with the record's
//! sequence, so a record is bound to its place in the log. No check is zero, so zeros (a lost
//! sector, or preallocated space behind a torn write) never pass as a record. The body checksum
//! is `checksum32` (xxh3-64, low 32 bits) of those 64-bit hashes, 8 bytes each, in order: the
//! payloads are hashed once, and an undetected damaged record needs both its 16-bit check and
//! the 32-bit body checksum to collide (about 2^-48), stronger than v3's 32-bit payload checksum.
//!
//! # Cost
//!
//! 32 bytes a batch; per record a table varint (2 bytes for a 128-byte payload), an HLC delta
//! (1 byte while the group's timestamps lie within 127 ticks of the earliest: the entries of one
//! append are consecutive ticks of one wall-clock read), and the 2-byte check. For 128-byte
//! payloads (v3: 40 bytes each): a group of one costs 37 bytes; one append of 16, 64 or 256
//! entries 7, 5.5 or 5.6 bytes an entry; 16, 64 or 256 separate appends a microsecond apart
//! (4295 ticks) 8.7, 7.4 or 7.1, their deltas taking 2-3 bytes. The deltas are from the base,
//! not from the previous record, so a damaged record never takes a neighbour's timestamp with it.
//!
//! # Damage, torn tails and salvage
//!
//! - Reading a batch checks the head (fixed header and table), then each record's check, then
//!   the body checksum; only then does it parse records. Every length read from the bytes is
//!   checked against the bytes given before it is used; a count allocates only once the bytes
//!   given are known to hold its table (a byte a record at least), so memory and time are
//!   bounded by the input, whatever the numbers in it.
//! - The head's checksum covers the table, so it can be verified only after the table is read.
//!   A damaged count or table entry can therefore make the head appear to run past the bytes
//!   given: [`Damage::Short`] does not prove the batch is the last thing in the file. The scan
//!   rule stays the v3 one, for every damage kind: a damaged batch with no valid batch after it
//!   is a torn tail (the writer died inside its last write; cut the whole batch, none of its
//!   records was acknowledged, since a group is acknowledged only once all of it is durable); a
//!   damaged batch with a valid one after it is mid-log corruption. An all-zero fixed header is
//!   [`Damage::ZeroHeader`], the clean end.
//! - What a flipped byte costs: in a record (delta, origin, principal, payload or check), that
//!   record alone; [`salvage_batch`] returns every other record. In the head (fixed header or
//!   table), the whole batch, whose records cannot be located without a trusted table; salvage
//!   then resynchronises at the next valid head, as today. A writer bounds that cost by bounding
//!   the records in a batch.
//! - Salvage accepts a record on its 16-bit check alone only when the body checksum shows the
//!   batch is damaged somewhere. If every record passes its check but the body checksum fails
//!   (one damaged record whose check collided, 2^-16), no record can be told intact, and all of
//!   the batch is reported damaged: one damaged record is never returned as intact. Two or more
//!   damaged records in one batch each slip through with a chance of 2^-16.
//! - Watermarks are records flagged 0x02 with no payload (4 bytes each in a batch of them);
//!   a rotation's watermark alone is a batch of one (36 bytes).
//!
//! # Encryption at rest (reserved, not built)
//!
//! Batch flag 0x01 marks an encrypted batch; this build refuses it (`UNSUPPORTED_FRAME`). Its
//! planned form keeps this header and table in clear (covered by the head checksum, so scan and
//! salvage still find batch boundaries) and puts a 4-byte key id and a 12-byte nonce right after
//! the table, with the records sealed by one AEAD (AES-256-GCM or ChaCha20-Poly1305) whose tag
//! ends the body. Adding it changes no byte of an unencrypted batch.

use std::ops::{Range, RangeInclusive};

use xxhash_rust::xxh3::{Xxh3, xxh3_64_with_seed};

use crate::checksum::checksum32;
use crate::error::{Error, Result};
use crate::file_header::{le_u32, le_u64};
use crate::frame::{
    Damage, Defect, FLAG_CHECKPOINT_WATERMARK, FLAG_COMPRESSED, FLAG_REPLICATED, MAX_PAYLOAD_LEN,
    MAX_PRINCIPAL_LEN, Origin, Producer, check_caps,
};
use crate::hlc::Hlc;

/// The batch frame's version, written in every batch header and the only one read back.
pub const FRAME_VERSION: u8 = 4;
/// Length of the fixed part of the batch header.
pub const BATCH_HEADER_LEN: usize = 32;
/// Most records in one batch (the count is a u16).
pub const MAX_BATCH_RECORDS: usize = u16::MAX as usize;
/// Record flag: the record carries a principal.
pub const FLAG_PRINCIPAL: u8 = 0x08;
/// Record flag: the record carries an idempotent producer's stamp.
pub const FLAG_PRODUCER: u8 = 0x10;
/// Batch flag: the records are encrypted (reserved; refused by this build).
pub const BATCH_FLAG_ENCRYPTED: u8 = 0x01;

const RECORD_FLAG_BITS: u32 = 5;
const RECORD_FLAG_MASK: u128 = (1 << RECORD_FLAG_BITS) - 1;
const CHECK_LEN: usize = 2;
/// An HLC delta and a check: no record is shorter, and no table entry shorter than one byte.
const MIN_RECORD_LEN: usize = 1 + CHECK_LEN;
const MAX_HLC_TICKS: u128 = (1 << 96) - 1;
/// Longest varint of a u128 HLC delta below 2^96 (14 * 7 = 98 bits).
const MAX_DELTA_VARINT: usize = 14;
const MAX_U64_VARINT: usize = 10;
/// Longest varint of a u32 (5 * 7 = 35 bits).
const MAX_U32_VARINT: usize = 5;
/// Longest record: delta, origin, principal length and bytes, producer, payload, check.
const MAX_RECORD_LEN: usize = MAX_DELTA_VARINT
    + 2 * MAX_U64_VARINT
    + 2
    + MAX_PRINCIPAL_LEN
    + 2 * MAX_U64_VARINT
    + MAX_U32_VARINT
    + MAX_PAYLOAD_LEN
    + CHECK_LEN;

/// One record of a batch, to encode or as decoded: every field but the sequence, which is the
/// batch's base plus the record's index.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Record<'a> {
    /// Timestamp.
    pub hlc: Hlc,
    /// Where it came from.
    pub origin: Origin,
    /// Optional principal (at most 4 KiB).
    pub principal: Option<&'a [u8]>,
    /// Optional idempotent producer's stamp.
    pub producer: Option<Producer>,
    /// The payload as stored: zstd-compressed when `compressed` (at most 256 MiB).
    pub stored: &'a [u8],
    /// Whether `stored` is zstd-compressed.
    pub compressed: bool,
    /// Whether it is a checkpoint watermark.
    pub watermark: bool,
}

impl Record<'_> {
    /// Its record flags, as the length table holds them.
    #[must_use]
    pub fn flags(&self) -> u8 {
        let mut flags = 0;
        if self.compressed {
            flags |= FLAG_COMPRESSED;
        }
        if self.watermark {
            flags |= FLAG_CHECKPOINT_WATERMARK;
        }
        if matches!(self.origin, Origin::Replicated { .. }) {
            flags |= FLAG_REPLICATED;
        }
        if self.principal.is_some() {
            flags |= FLAG_PRINCIPAL;
        }
        if self.producer.is_some() {
            flags |= FLAG_PRODUCER;
        }
        flags
    }
}

/// A decoded, fully verified batch; payloads borrow the bytes it was decoded from.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Batch<'a> {
    /// Sequence of the first record.
    pub base_sequence: u64,
    /// Length of the whole batch frame in bytes.
    pub len: usize,
    /// The records, in sequence order.
    pub records: Vec<Record<'a>>,
}

impl Batch<'_> {
    /// The sequences the batch holds.
    #[must_use]
    pub fn sequences(&self) -> RangeInclusive<u64> {
        self.base_sequence..=self.base_sequence + (self.records.len() as u64 - 1)
    }
}

/// What [`salvage_batch`] recovers from a batch whose head verifies.
#[derive(Clone, Debug)]
pub struct Salvaged<'a> {
    /// Sequence of the first record.
    pub base_sequence: u64,
    /// Length of the whole batch frame, when all of it lies in the bytes given.
    pub len: Option<usize>,
    /// Each record in order: intact, or why not.
    pub records: Vec<std::result::Result<Record<'a>, Defect>>,
}

/// Append one batch frame holding `records` at `base_sequence..` to `out`, copying each payload
/// once (`out` grows once, to the frame's exact length). Returns where the frame lies in `out`.
///
/// # Errors
/// `InvalidArgument` (no records, or more than [`MAX_BATCH_RECORDS`]), `PayloadTooLarge`,
/// `PrincipalTooLarge` or `SequenceExhausted` (the last sequence would pass `u64::MAX`); `out`
/// is unchanged then.
pub fn encode_batch(
    out: &mut Vec<u8>,
    base_sequence: u64,
    records: &[Record<'_>],
) -> Result<Range<usize>> {
    encode_batch_spliced(out, base_sequence, records, usize::MAX, &mut Vec::new())
}

/// [`encode_batch`], leaving out of `out` each payload of at least `splice_min` bytes: the
/// caller writes it from its own buffer where it belongs. Each such payload is pushed to
/// `spliced` as (its place in `out`, its record's index); the frame is `out[range]` with those
/// payloads inserted, hashed and checked as if they were copied in.
///
/// # Errors
/// As [`encode_batch`].
pub fn encode_batch_spliced(
    out: &mut Vec<u8>,
    base_sequence: u64,
    records: &[Record<'_>],
    splice_min: usize,
    spliced: &mut Vec<(usize, usize)>,
) -> Result<Range<usize>> {
    if records.is_empty() || records.len() > MAX_BATCH_RECORDS {
        return Err(Error::InvalidArgument(format!(
            "a batch frame holds 1..={MAX_BATCH_RECORDS} records, not {}",
            records.len()
        )));
    }
    base_sequence
        .checked_add(records.len() as u64 - 1)
        .ok_or(Error::SequenceExhausted {
            last: base_sequence,
        })?;
    let base_ticks = records.iter().map(|r| r.hlc.ticks()).min().unwrap_or(0);
    let mut table_len = 0;
    let mut body_len = 0;
    for record in records {
        check_caps(record.stored.len(), record.principal)?;
        let len = record_len(record, base_ticks);
        table_len += varint_len(table_entry(len, record));
        body_len += len;
        if record.stored.len() >= splice_min {
            body_len -= record.stored.len();
        }
    }
    let start = out.len();
    out.reserve_exact(BATCH_HEADER_LEN + table_len + body_len);
    out.resize(start + BATCH_HEADER_LEN, 0);
    for record in records {
        put_varint(out, table_entry(record_len(record, base_ticks), record));
    }
    let mut body = BodyHash::default();
    for (index, (sequence, record)) in (base_sequence..).zip(records).enumerate() {
        let record_start = out.len();
        put_varint(out, record.hlc.ticks() - base_ticks);
        if let Origin::Replicated {
            source_node_id,
            source_seq,
        } = record.origin
        {
            put_varint(out, source_node_id);
            put_varint(out, source_seq);
        }
        if let Some(principal) = record.principal {
            put_varint(out, principal.len() as u64);
            out.extend_from_slice(principal);
        }
        if let Some(producer) = record.producer {
            put_varint(out, producer.id);
            put_varint(out, producer.epoch);
            put_varint(out, producer.seq);
        }
        let hash = if record.stored.len() >= splice_min {
            spliced.push((out.len(), index));
            let mut hasher = Xxh3::with_seed(sequence);
            hasher.update(&out[record_start..]);
            hasher.update(record.stored);
            hasher.digest()
        } else {
            out.extend_from_slice(record.stored);
            xxh3_64_with_seed(&out[record_start..], sequence)
        };
        out.extend_from_slice(&check16(hash).to_le_bytes());
        body.push(hash);
    }
    let base = Hlc::from_ticks(base_ticks);
    let head = &mut out[start..start + BATCH_HEADER_LEN];
    head[4] = FRAME_VERSION;
    #[allow(clippy::cast_possible_truncation)] // at most MAX_BATCH_RECORDS, checked above
    head[6..8].copy_from_slice(&(records.len() as u16).to_le_bytes());
    head[8..12].copy_from_slice(&body.checksum().to_le_bytes());
    head[12..20].copy_from_slice(&base_sequence.to_le_bytes());
    head[20..28].copy_from_slice(&base.seconds.to_le_bytes());
    head[28..32].copy_from_slice(&base.subseconds.to_le_bytes());
    let head_sum = checksum32(&out[start + 4..start + BATCH_HEADER_LEN + table_len]);
    out[start..start + 4].copy_from_slice(&head_sum.to_le_bytes());
    Ok(start..out.len())
}

/// What a batch's verified head says: enough to walk from batch to batch without its records.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct HeadInfo {
    /// Sequence of the first record.
    pub base_sequence: u64,
    /// How many records.
    pub count: usize,
    /// Length of the whole batch frame (which may run past the bytes given).
    pub len: usize,
    /// The head checksum (bytes 0..4), which names the batch.
    pub checksum: u32,
}

impl HeadInfo {
    /// Sequence of the last record.
    #[must_use]
    pub const fn last_sequence(&self) -> u64 {
        self.base_sequence + self.count as u64 - 1
    }
}

/// Bytes that always hold the head of a batch of `count` records: the fixed header and the
/// longest table.
#[must_use]
pub const fn head_bound(count: usize) -> usize {
    BATCH_HEADER_LEN + count * MAX_U64_VARINT
}

/// The record count a batch's fixed header claims (unverified), if `bytes` holds it.
#[must_use]
pub fn claimed_count(bytes: &[u8]) -> Option<usize> {
    bytes
        .get(6..8)
        .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
}

/// Verify the head (fixed header and length table) of the batch at the start of `bytes`.
///
/// # Errors
/// As [`decode_batch`], for the head alone.
pub fn batch_head(bytes: &[u8], offset: u64) -> std::result::Result<HeadInfo, Defect> {
    let head = read_head(bytes, offset)?;
    Ok(HeadInfo {
        base_sequence: head.base_sequence,
        count: head.table.len(),
        len: head.body_start + head.body_len(),
        checksum: le_u32(&bytes[0..4]),
    })
}

/// Decode and verify the batch frame at the start of `bytes` (found at file offset `offset`,
/// for errors); bytes after the frame are ignored.
///
/// # Errors
/// A [`Defect`]: damaged bytes (short, zero header, head, record or body checksum), or a
/// checksum-valid frame this build cannot accept (`UNSUPPORTED_VERSION`, `UNSUPPORTED_FRAME`).
pub fn decode_batch(bytes: &[u8], offset: u64) -> std::result::Result<Batch<'_>, Defect> {
    let head = read_head(bytes, offset)?;
    let len = head.end().ok_or(Defect::Damaged(Damage::Short))?;
    let mut body = BodyHash::default();
    for (sequence, range) in head.records() {
        let hash =
            record_hash(&bytes[range], sequence).ok_or(Defect::Damaged(Damage::RecordChecksum))?;
        body.push(hash);
    }
    if body.checksum() != head.body_checksum {
        return Err(Defect::Damaged(Damage::BodyChecksum));
    }
    let mut records = Vec::new();
    for ((_, range), &(_, flags)) in head.records().zip(&head.table) {
        let at = offset + range.start as u64;
        records.push(parse_record(&bytes[range], flags, head.base_ticks, at)?);
    }
    Ok(Batch {
        base_sequence: head.base_sequence,
        len,
        records,
    })
}

/// Recover what can be trusted from a damaged batch frame at the start of `bytes`: each record
/// whose bytes are all present and pass their check, under the rules of the module doc.
///
/// # Errors
/// A [`Defect`] when the head itself does not verify or is unacceptable: no record can then be
/// located.
pub fn salvage_batch(bytes: &[u8], offset: u64) -> std::result::Result<Salvaged<'_>, Defect> {
    let head = read_head(bytes, offset)?;
    let mut body = BodyHash::default();
    let mut records = Vec::new();
    let mut all_checks_pass = true;
    for ((sequence, range), &(_, flags)) in head.records().zip(&head.table) {
        let at = offset + range.start as u64;
        let record = match bytes.get(range.clone()) {
            None => Err(Defect::Damaged(Damage::Short)),
            Some(record) => match record_hash(record, sequence) {
                None => Err(Defect::Damaged(Damage::RecordChecksum)),
                Some(hash) => {
                    body.push(hash);
                    parse_record(record, flags, head.base_ticks, at)
                }
            },
        };
        all_checks_pass &= !matches!(record, Err(Defect::Damaged(_)));
        records.push(record);
    }
    if all_checks_pass && body.checksum() != head.body_checksum {
        records.fill(Err(Defect::Damaged(Damage::BodyChecksum)));
    }
    Ok(Salvaged {
        base_sequence: head.base_sequence,
        len: head.end(),
        records,
    })
}

/// The body checksum, fed one record hash at a time: `checksum32` of the hashes' bytes, which
/// the streaming hasher takes a block at a time (one update a record costs more than the record).
struct BodyHash {
    state: Xxh3,
    block: [u8; 256],
    len: usize,
}

impl Default for BodyHash {
    fn default() -> Self {
        Self {
            state: Xxh3::new(),
            block: [0; 256],
            len: 0,
        }
    }
}

impl BodyHash {
    fn push(&mut self, hash: u64) {
        self.block[self.len..self.len + 8].copy_from_slice(&hash.to_le_bytes());
        self.len += 8;
        if self.len == self.block.len() {
            self.state.update(&self.block);
            self.len = 0;
        }
    }

    fn checksum(mut self) -> u32 {
        self.state.update(&self.block[..self.len]);
        low32(self.state.digest())
    }
}

/// A verified batch head: the fixed header and the length table.
struct Head {
    base_sequence: u64,
    base_ticks: u128,
    body_checksum: u32,
    /// Each record's length and flags.
    table: Vec<(usize, u8)>,
    /// Where the records start.
    body_start: usize,
    /// Length of the bytes given.
    available: usize,
}

impl Head {
    fn body_len(&self) -> usize {
        self.table.iter().map(|&(len, _)| len).sum()
    }

    /// The frame's length, if all of it lies in the bytes given.
    fn end(&self) -> Option<usize> {
        let end = self.body_start + self.body_len();
        (end <= self.available).then_some(end)
    }

    /// Each record's sequence and byte range (which may run past the bytes given).
    fn records(&self) -> impl Iterator<Item = (u64, Range<usize>)> + '_ {
        let mut at = self.body_start;
        (self.base_sequence..).zip(self.table.iter().map(move |&(len, _)| {
            at += len;
            at - len..at
        }))
    }
}

fn read_head(bytes: &[u8], offset: u64) -> std::result::Result<Head, Defect> {
    let short = Defect::Damaged(Damage::Short);
    let Some(fixed) = bytes.get(..BATCH_HEADER_LEN) else {
        return Err(short);
    };
    if fixed.iter().all(|&b| b == 0) {
        return Err(Defect::Damaged(Damage::ZeroHeader));
    }
    let damaged = Defect::Damaged(Damage::HeaderChecksum);
    let count = usize::from(u16::from_le_bytes([fixed[6], fixed[7]]));
    // Every table entry is at least one byte: a count the bytes cannot hold is short (or
    // damaged, which only the checksum could tell), and allocates nothing.
    if bytes.len() - BATCH_HEADER_LEN < count {
        return Err(short);
    }
    // One pass over the table; a length out of range is reported only once the checksum
    // says the table is what the writer wrote.
    let mut at = BATCH_HEADER_LEN;
    let mut table = Vec::with_capacity(count);
    let mut bad_len = None;
    for _ in 0..count {
        match read_varint(&bytes[at..], MAX_U64_VARINT) {
            Varint::Value(value, used) => {
                at += used;
                let len = value >> RECORD_FLAG_BITS;
                if !(MIN_RECORD_LEN as u128..=MAX_RECORD_LEN as u128).contains(&len) {
                    bad_len.get_or_insert(len);
                }
                #[allow(clippy::cast_possible_truncation)] // checked above, and 4 bits
                table.push((len as usize, (value & RECORD_FLAG_MASK) as u8));
            }
            Varint::Short => return Err(short),
            Varint::Invalid => return Err(damaged),
        }
    }
    if checksum32(&bytes[4..at]) != le_u32(&fixed[0..4]) {
        return Err(damaged);
    }
    let invalid = |detail: String| Defect::Invalid(Error::UnsupportedFrame { offset, detail });
    if fixed[4] != FRAME_VERSION {
        return Err(Defect::Invalid(Error::UnsupportedVersion {
            what: "WAL batch frame",
            major: u16::from(fixed[4]),
            minor: 0,
            supported: (u16::from(FRAME_VERSION), 0),
        }));
    }
    if fixed[5] & BATCH_FLAG_ENCRYPTED != 0 {
        return Err(invalid(
            "encrypted batches are not supported by this build".into(),
        ));
    }
    if fixed[5] != 0 {
        return Err(invalid(format!(
            "unknown batch flag bits {:#04x}",
            fixed[5]
        )));
    }
    if count == 0 {
        return Err(invalid("a batch with no records".into()));
    }
    let base_sequence = le_u64(&fixed[12..20]);
    if base_sequence.checked_add(count as u64 - 1).is_none() {
        return Err(invalid(format!(
            "{count} records from sequence {base_sequence} pass the largest sequence"
        )));
    }
    if let Some(len) = bad_len {
        return Err(invalid(format!("record length {len} out of range")));
    }
    let base = Hlc {
        seconds: le_u64(&fixed[20..28]),
        subseconds: le_u32(&fixed[28..32]),
    };
    Ok(Head {
        base_sequence,
        base_ticks: base.ticks(),
        body_checksum: le_u32(&fixed[8..12]),
        table,
        body_start: at,
        available: bytes.len(),
    })
}

/// The record's hash, if its check matches.
fn record_hash(record: &[u8], sequence: u64) -> Option<u64> {
    let (content, check) = record.split_at(record.len() - CHECK_LEN);
    let hash = xxh3_64_with_seed(content, sequence);
    (check16(hash).to_le_bytes() == check).then_some(hash)
}

/// Parse a record whose check holds (`at`: its file offset, for errors).
fn parse_record(
    record: &[u8],
    flags: u8,
    base_ticks: u128,
    at: u64,
) -> std::result::Result<Record<'_>, Defect> {
    let invalid = |detail: &str| {
        Defect::Invalid(Error::UnsupportedFrame {
            offset: at,
            detail: format!("record: {detail}"),
        })
    };
    let mut rest = &record[..record.len() - CHECK_LEN];
    let mut next = |max: usize, what: &str| match read_varint(rest, max) {
        Varint::Value(value, used) => {
            rest = &rest[used..];
            Ok(value)
        }
        Varint::Short | Varint::Invalid => Err(invalid(what)),
    };
    let ticks = base_ticks
        .checked_add(next(MAX_DELTA_VARINT, "bad HLC delta")?)
        .filter(|&t| t <= MAX_HLC_TICKS)
        .ok_or_else(|| invalid("HLC past its range"))?;
    let to_u64 = |v: u128, what: &str| u64::try_from(v).map_err(|_| invalid(what));
    let origin = if flags & FLAG_REPLICATED == 0 {
        Origin::Local
    } else {
        Origin::Replicated {
            source_node_id: to_u64(next(MAX_U64_VARINT, "bad origin")?, "bad origin")?,
            source_seq: to_u64(next(MAX_U64_VARINT, "bad origin")?, "bad origin")?,
        }
    };
    let principal_len = if flags & FLAG_PRINCIPAL == 0 {
        None
    } else {
        Some(next(MAX_U64_VARINT, "bad principal length")?)
    };
    let principal = match principal_len {
        None => None,
        Some(len) if len > MAX_PRINCIPAL_LEN as u128 || len > rest.len() as u128 => {
            return Err(invalid("principal length out of range"));
        }
        Some(len) => {
            #[allow(clippy::cast_possible_truncation)] // at most rest.len(), checked above
            let (principal, after) = rest.split_at(len as usize);
            rest = after;
            Some(principal)
        }
    };
    let producer = if flags & FLAG_PRODUCER == 0 {
        None
    } else {
        let mut next = |max: usize| match read_varint(rest, max) {
            Varint::Value(value, used) => {
                rest = &rest[used..];
                Ok(value)
            }
            Varint::Short | Varint::Invalid => Err(invalid("bad producer stamp")),
        };
        let bad = |_| invalid("bad producer stamp");
        let id = u64::try_from(next(MAX_U64_VARINT)?).map_err(bad)?;
        let epoch = u32::try_from(next(MAX_U32_VARINT)?).map_err(bad)?;
        let seq = u64::try_from(next(MAX_U64_VARINT)?).map_err(bad)?;
        Some(Producer { id, epoch, seq })
    };
    if rest.len() > MAX_PAYLOAD_LEN {
        return Err(invalid("payload longer than 256 MiB"));
    }
    Ok(Record {
        hlc: Hlc::from_ticks(ticks),
        origin,
        principal,
        producer,
        stored: rest,
        compressed: flags & FLAG_COMPRESSED != 0,
        watermark: flags & FLAG_CHECKPOINT_WATERMARK != 0,
    })
}

/// The encoded length of `record` in a batch whose base HLC is `base_ticks`.
fn record_len(record: &Record<'_>, base_ticks: u128) -> usize {
    let origin = match record.origin {
        Origin::Local => 0,
        Origin::Replicated {
            source_node_id,
            source_seq,
        } => varint_len(source_node_id) + varint_len(source_seq),
    };
    let principal = record
        .principal
        .map_or(0, |p| varint_len(p.len() as u64) + p.len());
    let producer = record.producer.map_or(0, |p| {
        varint_len(p.id) + varint_len(p.epoch) + varint_len(p.seq)
    });
    varint_len(record.hlc.ticks() - base_ticks)
        + origin
        + principal
        + producer
        + record.stored.len()
        + CHECK_LEN
}

fn table_entry(len: usize, record: &Record<'_>) -> u128 {
    (u128::from(len as u64) << RECORD_FLAG_BITS) | u128::from(record.flags())
}

/// A record's check: the hash's low 16 bits, except that 0 is written as 1, so a record zeroed
/// by a lost sector or preallocated space never passes.
#[allow(clippy::cast_possible_truncation)] // the truncation is the format's
const fn check16(hash: u64) -> u16 {
    match hash as u16 {
        0 => 1,
        low => low,
    }
}

#[allow(clippy::cast_possible_truncation)]
const fn low32(hash: u64) -> u32 {
    hash as u32
}

fn put_varint(out: &mut Vec<u8>, value: impl Into<u128>) {
    let mut value = value.into();
    while value >= 0x80 {
        #[allow(clippy::cast_possible_truncation)]
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    #[allow(clippy::cast_possible_truncation)]
    out.push(value as u8);
}

fn varint_len(value: impl Into<u128>) -> usize {
    let bits = 128 - value.into().leading_zeros() as usize;
    bits.max(1).div_ceil(7)
}

/// A varint read from untrusted bytes.
enum Varint {
    /// The value and the bytes it took.
    Value(u128, usize),
    /// The bytes end inside it.
    Short,
    /// Longer than `max` bytes, or not canonical (a trailing zero byte).
    Invalid,
}

fn read_varint(bytes: &[u8], max: usize) -> Varint {
    // Most values here (lengths, small deltas) take one or two bytes.
    match *bytes {
        [b0, ..] if b0 < 0x80 => return Varint::Value(u128::from(b0), 1),
        [b0, b1, ..] if b1 < 0x80 && b1 != 0 && max >= 2 => {
            return Varint::Value(u128::from(b0 & 0x7f) | u128::from(b1) << 7, 2);
        }
        _ => {}
    }
    let mut value = 0u128;
    for (i, &byte) in bytes.iter().take(max).enumerate() {
        value |= u128::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return if byte == 0 && i > 0 {
                Varint::Invalid
            } else {
                Varint::Value(value, i + 1)
            };
        }
    }
    if bytes.len() < max {
        Varint::Short
    } else {
        Varint::Invalid
    }
}

#[cfg(test)]
mod tests;
