//! Reading frames in order, and telling a torn tail from mid-log corruption.
//!
//! A *unit* is what the file's layout frames at once: a format v4 batch frame (a commit group)
//! or a format v3 frame (one entry). The cursor verifies a unit whole and then hands out its
//! entries one by one; an entry's `offset` and `end` are its unit's. The rules below apply to
//! units: a batch cut short or damaged is cut or refused whole.
//!
//! Where the frames stop, everything left in the file may be zero: space preallocated ahead of
//! the writer, or a length a crash persisted before the data. That is the clean end of the log,
//! not damage. Otherwise a damaged frame (short, or failing a checksum) is a *torn tail* when
//! no valid frame follows it anywhere in the file: a crash cut the last write. It is *mid-log
//! corruption* when a valid frame with a later sequence starts after it: acknowledged data sits
//! behind the damage, so nothing may be cut and the open is refused. A frame whose checksums
//! hold but whose contents this build rejects (unknown flags, a sequence out of order) is never
//! treated as torn.
//!
//! A reader beside a live writer sees bytes the writer has not finished: zeros where the next
//! frame will go, or a frame half copied in. Those are the current end, not damage. So a
//! cursor made [`FrameCursor::beside_writer`] re-reads any damage fresh from the file, takes
//! a zero remainder as the end *for now* (the next call reads on from there), and judges other
//! damage only once it is stable: at once when no writer holds the file's lock, otherwise
//! after re-reading it for about a quarter of a second, far longer than one write takes.

use std::collections::VecDeque;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::batch_frame::{self, BATCH_HEADER_LEN, HeadInfo, Record};
use crate::error::{Error, Result};
use crate::file_header::{FILE_HEADER_LEN, FileHeader, Layout, le_u32};
use crate::frame::{self, Damage, Defect, FRAME_HEADER_LEN, FrameHeader, Origin, Producer};
use crate::hlc::Hlc;
use crate::io::{OpenMode, Vfs, VfsFile, read_exact_at, read_up_to};

/// Why a tail was cut.
#[derive(Clone, Copy, Debug, Eq, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TailReason {
    /// The file ends inside the last frame.
    ShortFrame,
    /// The last frame fails a checksum and nothing valid follows it.
    CorruptFinalFrame,
}

impl TailReason {
    /// Stable kebab-case name, as the TypeScript API reports it.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ShortFrame => "short-frame",
            Self::CorruptFinalFrame => "corrupt-final-frame",
        }
    }
}

/// A torn tail found (and, by the writer, cut) at open.
#[derive(Clone, Copy, Debug, Eq, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TailRepair {
    /// Why the tail was cut.
    pub reason: TailReason,
    /// Offset of the first byte cut: the end of the last valid frame.
    pub offset: u64,
    /// Number of bytes of the torn write cut (up to its last non-zero byte).
    pub discarded_bytes: u64,
    /// How many of them (the first, up to 16 MiB) the writer kept in `<wal>.torn.<offset>`
    /// before cutting (0: none, as for a reader, which cuts nothing).
    pub saved_bytes: u64,
}

/// One verified entry as a WAL holds it, payload as stored: a format v3 frame, or one record
/// of a format v4 batch frame (whose offset and end are the batch's).
#[derive(Clone, Debug)]
pub struct Frame {
    /// Offset of the frame (v3) or batch frame (v4) holding it.
    pub offset: u64,
    /// Offset just past that frame or batch: the entry is durable once this is.
    pub end: u64,
    /// The checksum that names that frame or batch (its header or head checksum).
    pub unit_checksum: u32,
    /// Entry sequence.
    pub sequence: u64,
    /// Entry timestamp.
    pub hlc: Hlc,
    /// Flag bits ([`frame::FLAG_COMPRESSED`], [`frame::FLAG_CHECKPOINT_WATERMARK`], ...).
    pub flags: u8,
    /// Its origin.
    pub origin: Origin,
    /// Its principal.
    pub principal: Option<Vec<u8>>,
    /// Its idempotent producer's stamp (format v4 only).
    pub producer: Option<Producer>,
    /// The payload as stored (compressed if the flags say so), sharing the bytes it was read
    /// into; empty from a cursor made [`FrameCursor::without_payloads`].
    pub stored: Bytes,
}

impl Frame {
    /// The frame, borrowed.
    #[must_use]
    pub fn borrowed(&self) -> FrameRef<'_> {
        FrameRef {
            offset: self.offset,
            end: self.end,
            unit_checksum: self.unit_checksum,
            sequence: self.sequence,
            hlc: self.hlc,
            flags: self.flags,
            origin: self.origin,
            principal: self.principal.as_deref(),
            producer: self.producer,
            stored: &self.stored,
            buffer: &self.stored,
        }
    }

    /// The entry as a batch-frame record.
    #[must_use]
    pub fn record(&self) -> Record<'_> {
        Record {
            hlc: self.hlc,
            origin: self.origin,
            principal: self.principal.as_deref(),
            producer: self.producer,
            stored: &self.stored,
            compressed: self.flags & frame::FLAG_COMPRESSED != 0,
            watermark: self.flags & frame::FLAG_CHECKPOINT_WATERMARK != 0,
        }
    }
}

/// One verified entry, borrowed from the bytes it was read into: what a batched read visits,
/// so an entry costs no allocation and no reference count until a caller keeps it.
#[derive(Clone, Copy, Debug)]
pub struct FrameRef<'a> {
    /// As [`Frame::offset`].
    pub offset: u64,
    /// As [`Frame::end`].
    pub end: u64,
    /// As [`Frame::unit_checksum`].
    pub unit_checksum: u32,
    /// Entry sequence.
    pub sequence: u64,
    /// Entry timestamp.
    pub hlc: Hlc,
    /// Flag bits, as [`Frame::flags`].
    pub flags: u8,
    /// Its origin.
    pub origin: Origin,
    /// Its principal.
    pub principal: Option<&'a [u8]>,
    /// Its idempotent producer's stamp (format v4 only).
    pub producer: Option<Producer>,
    /// The payload as stored (empty from a cursor made [`FrameCursor::without_payloads`]).
    pub stored: &'a [u8],
    /// The shared buffer `stored` lies in.
    buffer: &'a Bytes,
}

impl FrameRef<'_> {
    /// The payload as stored, sharing the buffer it lies in rather than copied.
    #[must_use]
    pub fn stored_shared(&self) -> Bytes {
        if self.stored.is_empty() {
            Bytes::new()
        } else {
            self.buffer.slice_ref(self.stored)
        }
    }

    /// The entry, owned (its payload shared, its principal copied).
    #[must_use]
    pub fn to_frame(&self) -> Frame {
        Frame {
            offset: self.offset,
            end: self.end,
            unit_checksum: self.unit_checksum,
            sequence: self.sequence,
            hlc: self.hlc,
            flags: self.flags,
            origin: self.origin,
            principal: self.principal.map(<[u8]>::to_vec),
            producer: self.producer,
            stored: self.stored_shared(),
        }
    }
}

/// Most records one batch frame holds as the writer and every encoder here make them.
pub const BATCH_RECORDS_CAP: usize = 1024;
/// Payload bytes after which such a batch is closed (a larger record still goes whole).
pub const BATCH_BYTES_CAP: usize = 1 << 20;

/// Append the consecutive entries `frames` (the first at `frames[0].sequence`) to `out` as
/// format v4 batch frames of at most [`BATCH_RECORDS_CAP`] records and about
/// [`BATCH_BYTES_CAP`] bytes each.
///
/// # Errors
/// As [`batch_frame::encode_batch`].
pub fn encode_batches(out: &mut Vec<u8>, frames: &[Frame]) -> Result<()> {
    let records: Vec<Record<'_>> = frames.iter().map(Frame::record).collect();
    let Some(first) = frames.first() else {
        return Ok(());
    };
    encode_records(out, first.sequence, &records).map(drop)
}

/// Append `records`, at sequences from `base` on, to `out` as capped batch frames; returns
/// where each batch lies in `out`.
///
/// # Errors
/// As [`batch_frame::encode_batch`].
pub fn encode_records(
    out: &mut Vec<u8>,
    base: u64,
    records: &[Record<'_>],
) -> Result<Vec<Range<usize>>> {
    encode_records_spliced(out, base, records, usize::MAX, &mut Vec::new())
}

/// [`encode_records`], leaving payloads of at least `splice_min` bytes out of `out` as
/// [`batch_frame::encode_batch_spliced`] does; `spliced` gets (place in `out`, index in
/// `records`) for each.
///
/// # Errors
/// As [`batch_frame::encode_batch`].
pub fn encode_records_spliced(
    out: &mut Vec<u8>,
    base: u64,
    records: &[Record<'_>],
    splice_min: usize,
    spliced: &mut Vec<(usize, usize)>,
) -> Result<Vec<Range<usize>>> {
    let mut batches = Vec::new();
    let mut at = 0;
    while at < records.len() {
        let mut end = at;
        let mut bytes = 0;
        while end < records.len() && end - at < BATCH_RECORDS_CAP && bytes < BATCH_BYTES_CAP {
            bytes += records[end].stored.len();
            end += 1;
        }
        let from = spliced.len();
        batches.push(batch_frame::encode_batch_spliced(
            out,
            base + at as u64,
            &records[at..end],
            splice_min,
            spliced,
        )?);
        for (_, index) in &mut spliced[from..] {
            *index += at;
        }
        at = end;
    }
    Ok(batches)
}

/// Hand each entry of the unit (a v3 frame, or a v4 batch frame) at the start of `bytes`, found
/// at `offset`, to `visit`, borrowed from `buffer` (which `bytes` lies in; `None`: payloads
/// left empty). The unit is verified whole, and its first sequence checked to follow
/// `previous` (when given), before the first entry is visited. Returns the unit's length and
/// its last sequence.
fn visit_unit<'a>(
    bytes: &'a [u8],
    offset: u64,
    layout: Layout,
    buffer: Option<&'a Bytes>,
    previous: Option<u64>,
    mut visit: impl FnMut(FrameRef<'a>),
) -> std::result::Result<(usize, u64), Defect> {
    static NO_BUFFER: Bytes = Bytes::new();
    let follows = |base: u64| match previous {
        Some(previous) => check_sequence(offset, previous, base).map_err(Defect::Invalid),
        None => Ok(()),
    };
    let keep = |stored: &'a [u8]| if buffer.is_some() { stored } else { &[] };
    let buffer = buffer.unwrap_or(&NO_BUFFER);
    match layout {
        Layout::V3 => {
            let short = Defect::Damaged(Damage::Short);
            let head: &[u8; FRAME_HEADER_LEN] = bytes
                .get(..FRAME_HEADER_LEN)
                .and_then(|b| b.try_into().ok())
                .ok_or(short.clone())?;
            let header = frame::decode_header(head, offset)?;
            let len = usize::try_from(header.frame_len()).unwrap_or(usize::MAX);
            let body = bytes.get(FRAME_HEADER_LEN..len).ok_or(short)?;
            let (origin, principal, stored) = check_body(&header, body)?;
            follows(header.sequence)?;
            visit(FrameRef {
                offset,
                end: offset + len as u64,
                unit_checksum: header.header_checksum,
                sequence: header.sequence,
                hlc: header.hlc,
                flags: header.flags,
                origin,
                principal,
                producer: None,
                stored: keep(stored),
                buffer,
            });
            Ok((len, header.sequence))
        }
        Layout::V4 => {
            let batch = batch_frame::decode_batch(bytes, offset)?;
            follows(batch.base_sequence)?;
            let end = offset + batch.len as u64;
            let checksum = le_u32(&bytes[0..4]);
            for (sequence, record) in (batch.base_sequence..).zip(&batch.records) {
                visit(FrameRef {
                    offset,
                    end,
                    unit_checksum: checksum,
                    sequence,
                    hlc: record.hlc,
                    flags: record.flags(),
                    origin: record.origin,
                    principal: record.principal,
                    producer: record.producer,
                    stored: keep(record.stored),
                    buffer,
                });
            }
            Ok((batch.len, *batch.sequences().end()))
        }
    }
}

/// The entries of the unit at the start of `bytes`, as [`visit_unit`] finds them, owned
/// (payloads share `buffer`), and the unit's length.
fn unit_in(
    bytes: &[u8],
    offset: u64,
    layout: Layout,
    buffer: Option<&Bytes>,
) -> std::result::Result<(Vec<Frame>, usize), Defect> {
    let mut frames = Vec::new();
    let (len, _) = visit_unit(bytes, offset, layout, buffer, None, |frame| {
        frames.push(frame.to_frame());
    })?;
    Ok((frames, len))
}

/// The entries of the format v4 batch frame at `offset` of an in-memory run of batch frames,
/// verified in full (bytes ending inside it are `Damage::Short`), and the batch's length. The
/// payloads are copied out of `bytes`.
///
/// # Errors
/// The [`Defect`] that stops it.
pub fn batch_in(bytes: &[u8], offset: usize) -> std::result::Result<(Vec<Frame>, usize), Defect> {
    let rest = bytes.get(offset..).ok_or(Defect::Damaged(Damage::Short))?;
    let head = batch_frame::batch_head(rest, offset as u64)?;
    let body = rest.get(..head.len).ok_or(Defect::Damaged(Damage::Short))?;
    let owned = Bytes::copy_from_slice(body);
    unit_in(&owned, offset as u64, Layout::V4, Some(&owned))
}

/// The entries of the unit (a v3 frame or a v4 batch frame) at the start of `bytes`, found at
/// `offset`, verified in full, their payloads left empty.
///
/// # Errors
/// The [`Defect`] that stops it.
pub fn verify_unit(
    bytes: &[u8],
    offset: u64,
    layout: Layout,
) -> std::result::Result<Vec<Frame>, Defect> {
    unit_in(bytes, offset, layout, None).map(|(frames, _)| frames)
}

/// Append the verified v3 frame at the start of `bytes` (found at `offset`) to `out` as a
/// format v4 batch frame of one, its payload copied once.
///
/// # Errors
/// The [`Defect`] that stops it, and those of [`batch_frame::encode_batch`].
pub fn v3_frame_as_batch(bytes: &[u8], offset: u64, out: &mut Vec<u8>) -> Result<()> {
    let damaged = |offset| Error::ChecksumMismatch {
        what: "WAL frame",
        offset,
    };
    let head: &[u8; FRAME_HEADER_LEN] = bytes
        .get(..FRAME_HEADER_LEN)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| damaged(offset))?;
    let header = frame::decode_header(head, offset).map_err(|_| damaged(offset))?;
    let len = usize::try_from(header.frame_len()).unwrap_or(usize::MAX);
    let body = bytes
        .get(FRAME_HEADER_LEN..len)
        .ok_or_else(|| damaged(offset))?;
    let (origin, principal, stored) = check_body(&header, body).map_err(|_| damaged(offset))?;
    let record = Record {
        hlc: header.hlc,
        origin,
        principal,
        producer: None,
        stored,
        compressed: header.flags & frame::FLAG_COMPRESSED != 0,
        watermark: header.flags & frame::FLAG_CHECKPOINT_WATERMARK != 0,
    };
    batch_frame::encode_batch(out, header.sequence, &[record]).map(drop)
}

/// A verified head of the unit at the start of `bytes`: its first and last sequence, the
/// checksum naming it, its length.
///
/// # Errors
/// The [`Defect`] of a head that does not verify.
pub fn unit_head(
    bytes: &[u8],
    offset: u64,
    layout: Layout,
) -> std::result::Result<HeadInfo, Defect> {
    match layout {
        Layout::V3 => {
            let head: &[u8; FRAME_HEADER_LEN] = bytes
                .get(..FRAME_HEADER_LEN)
                .and_then(|b| b.try_into().ok())
                .ok_or(Defect::Damaged(Damage::Short))?;
            let header = frame::decode_header(head, offset)?;
            Ok(HeadInfo {
                base_sequence: header.sequence,
                count: 1,
                len: usize::try_from(header.frame_len()).unwrap_or(usize::MAX),
                checksum: header.header_checksum,
            })
        }
        Layout::V4 => batch_frame::batch_head(bytes, offset),
    }
}

/// Bytes that hold the head of the unit at the start of `bytes` (which holds at least its
/// fixed header), whatever it claims.
fn head_need(bytes: &[u8], layout: Layout) -> usize {
    match layout {
        Layout::V3 => FRAME_HEADER_LEN,
        Layout::V4 => batch_frame::head_bound(batch_frame::claimed_count(bytes).unwrap_or(0)),
    }
}

/// Length of a unit's fixed header.
const fn fixed_len(layout: Layout) -> usize {
    match layout {
        Layout::V3 => FRAME_HEADER_LEN,
        Layout::V4 => BATCH_HEADER_LEN,
    }
}

/// What the cursor found next.
#[derive(Debug)]
pub enum Step {
    /// A verified frame.
    Frame(Frame),
    /// The clean end of the log: the end of the file, or only zeros left.
    End,
    /// A torn tail starting at the cursor's offset.
    Torn(TailRepair),
}

/// Read and check the file header.
///
/// # Errors
/// I/O errors and every header error of [`FileHeader::decode`].
pub fn read_file_header(file: &dyn VfsFile, path: &Path) -> Result<FileHeader> {
    let len = file.size().map_err(|e| Error::io("stat", path, e))?;
    let mut bytes = [0u8; FILE_HEADER_LEN];
    let have = usize::try_from(len)
        .unwrap_or(usize::MAX)
        .min(FILE_HEADER_LEN);
    read_exact_at(file, &mut bytes[..have], 0).map_err(|e| Error::io("read", path, e))?;
    FileHeader::decode(&bytes[..have])
}

const WINDOW: usize = 256 << 10;

/// The sequence of a unit whose checksums hold must continue `previous`.
///
/// # Errors
/// `NonMonotonicSequence`, `SequenceGap`: a unit whose checksums hold but whose sequence is
/// out of order is corruption, never a torn tail.
fn check_sequence(offset: u64, previous: u64, found: u64) -> Result<()> {
    if found <= previous {
        return Err(Error::NonMonotonicSequence {
            offset,
            previous,
            found,
        });
    }
    if found != previous + 1 {
        return Err(Error::SequenceGap {
            offset,
            expected: previous + 1,
            found,
        });
    }
    Ok(())
}

/// A verified frame body: the origin, the principal, the payload as stored.
type Body<'a> = (Origin, Option<&'a [u8]>, &'a [u8]);

/// The extent and payload that follow `header` (the frame's body), verified: the second half.
fn check_body<'a>(header: &FrameHeader, body: &'a [u8]) -> std::result::Result<Body<'a>, Defect> {
    let (extent, stored) = body.split_at(header.extent_len());
    let (origin, principal) = frame::decode_extent(header, extent)?;
    frame::verify_payload(header, stored)?;
    Ok((origin, principal, stored))
}

/// Re-reads of damage beside a live writer before it is judged, with pauses doubling from 1 ms
/// (about 255 ms in all). One write of a group is long finished by then.
const SETTLE_ROUNDS: u32 = 8;

/// Walks the entries of one file from the end of its header, a unit (a v3 frame, or a v4 batch
/// frame) at a time.
#[derive(Debug)]
pub struct FrameCursor {
    layout: Layout,
    file_len: u64,
    /// Offset just past the last unit read.
    offset: u64,
    /// Sequence of the last entry of the last unit read.
    last_sequence: u64,
    /// Entries of the last unit read not yet returned.
    pending: VecDeque<Frame>,
    /// The bytes last read, shared: a frame's payload is a slice of them, not a copy.
    window: Bytes,
    window_start: u64,
    /// Whether frames carry their payload bytes (a reader), or only their verified headers
    /// (the writer's open-time scan, which needs no copy of every payload).
    keep_payloads: bool,
    /// Bytes before this offset were fdatasynced and sealed: damage there is corruption,
    /// never a torn tail.
    sealed_end: u64,
    /// Set for readers: a writer may be appending to the file meanwhile, and this file
    /// system is how the cursor asks whether one holds the file's lock.
    beside: Option<Arc<dyn Vfs>>,
}

impl FrameCursor {
    /// A cursor over a file of `file_len` bytes with header `header`.
    #[must_use]
    pub fn new(file_len: u64, header: FileHeader) -> Self {
        Self {
            layout: header.layout,
            file_len,
            offset: FILE_HEADER_LEN as u64,
            last_sequence: header.snapshot_seq,
            pending: VecDeque::new(),
            window: Bytes::new(),
            window_start: 0,
            keep_payloads: true,
            sealed_end: 0,
            beside: None,
        }
    }

    /// The same cursor, for a reader that may run beside a live writer of the file: the file
    /// may grow (or lose its zero tail) while it reads, and unfinished bytes are the end for
    /// now, never damage. `vfs` opens the file again to ask whether a writer holds its lock.
    #[must_use]
    pub fn beside_writer(self, vfs: Arc<dyn Vfs>) -> Self {
        Self {
            beside: Some(vfs),
            ..self
        }
    }

    /// The same cursor, treating damage before `end` (the end of a sealed prefix) as
    /// corruption rather than a torn tail.
    #[must_use]
    pub fn sealed_until(self, end: u64) -> Self {
        Self {
            sealed_end: end,
            ..self
        }
    }

    /// The same cursor, verifying every payload checksum as before but returning frames whose
    /// `stored` is empty.
    #[must_use]
    pub fn without_payloads(self) -> Self {
        Self {
            keep_payloads: false,
            ..self
        }
    }

    /// The same cursor, resuming at `offset`, the start of a unit known to be valid, just past
    /// a unit whose last sequence was `last_sequence`.
    #[must_use]
    pub fn starting_at(self, offset: u64, last_sequence: u64) -> Self {
        Self {
            offset,
            last_sequence,
            ..self
        }
    }

    /// How the file's entries are framed.
    #[must_use]
    pub const fn layout(&self) -> Layout {
        self.layout
    }

    /// Offset just past the last unit read (all of whose entries were returned once the
    /// cursor reports the end).
    #[must_use]
    pub const fn offset(&self) -> u64 {
        self.offset
    }

    /// Sequence of the last entry of the last unit read (the header's snapshot_seq before any).
    #[must_use]
    pub const fn last_sequence(&self) -> u64 {
        self.last_sequence
    }

    /// The next entry, the end, or a torn tail.
    ///
    /// # Errors
    /// I/O errors, [`Error::MidLogCorruption`], [`Error::SealedCorruption`], sequence errors,
    /// and unsupported frames.
    pub fn next(&mut self, file: &dyn VfsFile, path: &Path) -> Result<Step> {
        if let Some(frame) = self.pending.pop_front() {
            return Ok(Step::Frame(frame));
        }
        if self.offset >= self.file_len {
            self.refresh_len(file, path)?;
            if self.offset >= self.file_len {
                return Ok(Step::End);
            }
        }
        match self.read_unit(file, path)? {
            Ok(unit) => Ok(self.advance(unit)),
            Err(_) if self.beside.is_some() => self.judge(file, path),
            Err(Defect::Invalid(error)) => Err(error),
            Err(Defect::Damaged(damage)) => self.classify(file, path, damage),
        }
    }

    /// Take the entries of a unit read whole: the first returned, the rest pending.
    fn advance(&mut self, unit: (Vec<Frame>, usize)) -> Step {
        self.take(unit);
        self.pending.pop_front().map_or(Step::End, Step::Frame)
    }

    /// Queue the entries of a unit read whole, and move past it.
    fn take(&mut self, (frames, len): (Vec<Frame>, usize)) {
        self.offset += len as u64;
        if let Some(last) = frames.last() {
            self.last_sequence = last.sequence;
        }
        self.pending.extend(frames);
    }

    /// Beside a live writer, the file's length as it is now.
    fn refresh_len(&mut self, file: &dyn VfsFile, path: &Path) -> Result<()> {
        if self.beside.is_some() {
            self.file_len = file.size().map_err(|e| Error::io("stat", path, e))?;
        }
        Ok(())
    }

    /// Damage seen by a reader beside a possible live writer: re-read it fresh; a zero (or
    /// no) remainder is the end for now; anything else is judged once it is stable.
    fn judge(&mut self, file: &dyn VfsFile, path: &Path) -> Result<Step> {
        let mut pause = Duration::from_millis(1);
        let mut writer_live = None;
        for round in 0..=SETTLE_ROUNDS {
            // The window may hold bytes read before the writer wrote them.
            self.window = Bytes::new();
            self.refresh_len(file, path)?;
            let defect = match self.read_unit(file, path)? {
                Ok(unit) => return Ok(self.advance(unit)),
                Err(defect) => defect,
            };
            if self.data_end(file, path, self.offset)? == self.offset {
                return Ok(Step::End);
            }
            let stable = round == SETTLE_ROUNDS
                || !*writer_live.get_or_insert_with(|| self.writer_live(path));
            if stable {
                return match defect {
                    Defect::Invalid(error) => Err(error),
                    // The damage was read before the rest of the file was: a writer may have
                    // finished the unit in between (and died). A writer writes front to back
                    // and never zeroes bytes it wrote, so damage read again *after* the rest was
                    // seen is stable; read as valid, it was the writer's.
                    Defect::Damaged(damage) => match self.classify(file, path, damage) {
                        verdict @ (Err(Error::MidLogCorruption { .. }) | Ok(Step::Torn(_))) => {
                            self.window = Bytes::new();
                            match self.read_unit(file, path)? {
                                Ok(unit) => Ok(self.advance(unit)),
                                Err(_) => verdict,
                            }
                        }
                        verdict => verdict,
                    },
                };
            }
            std::thread::sleep(pause);
            pause *= 2;
        }
        unreachable!("the last round is stable")
    }

    /// Whether a writer holds the file's lock (it does for as long as it is open). When the
    /// question cannot be asked, a writer is assumed, which only costs waiting.
    fn writer_live(&self, path: &Path) -> bool {
        let Some(vfs) = &self.beside else {
            return false;
        };
        // Taking the lock for a moment is harmless: a writer's open waits for it.
        vfs.open(path, OpenMode::Read)
            .and_then(|probe| probe.try_lock())
            .map_or(true, |taken| !taken)
    }

    /// Read and verify the unit at the cursor: its head, its sequence, then all of it.
    fn read_unit(
        &mut self,
        file: &dyn VfsFile,
        path: &Path,
    ) -> Result<std::result::Result<(Vec<Frame>, usize), Defect>> {
        let at = match self.fetch_unit(file, path)? {
            Ok(at) => at,
            Err(defect) => return Ok(Err(defect)),
        };
        let keep = self.keep_payloads.then_some(&self.window);
        Ok(unit_in(&self.window[at], self.offset, self.layout, keep))
    }

    /// Bring the unit at the cursor whole into the window, its head verified and its sequence
    /// checked (its records not yet): where it lies there.
    fn fetch_unit(
        &mut self,
        file: &dyn VfsFile,
        path: &Path,
    ) -> Result<std::result::Result<Range<usize>, Defect>> {
        let (offset, layout) = (self.offset, self.layout);
        let fixed = fixed_len(layout);
        let Some(at) = self.fetch(file, path, offset, fixed)? else {
            return Ok(Err(Defect::Damaged(Damage::Short)));
        };
        if self.window[at.clone()].iter().all(|&b| b == 0) {
            return Ok(Err(Defect::Damaged(Damage::ZeroHeader)));
        }
        let available = usize::try_from(self.file_len - offset).unwrap_or(usize::MAX);
        let need = head_need(&self.window[at], layout).min(available);
        let Some(at) = self.fetch(file, path, offset, need)? else {
            return Ok(Err(Defect::Damaged(Damage::Short)));
        };
        let head = match unit_head(&self.window[at], offset, layout) {
            Ok(head) => head,
            Err(defect) => return Ok(Err(defect)),
        };
        check_sequence(offset, self.last_sequence, head.base_sequence)?;
        Ok(self
            .fetch(file, path, offset, head.len)?
            .ok_or(Defect::Damaged(Damage::Short)))
    }

    /// When the unit at the cursor is not whole in the window, read it in, so that
    /// [`Self::next_in_window`] can visit it borrowed; whether the window changed. When it did
    /// not, the unit is damaged or unfinished (or the file ends), and [`Self::next`] judges it.
    ///
    /// # Errors
    /// I/O errors, and a sequence out of order behind a valid head.
    pub fn fill_window(&mut self, file: &dyn VfsFile, path: &Path) -> Result<bool> {
        let before = (self.window_start, self.window.len());
        // A defect found here is judged by `next`, which reads the unit again.
        let _whole = self.fetch_unit(file, path)?;
        Ok((self.window_start, self.window.len()) != before)
    }

    /// The entries that follow whole in the bytes already read, each verified exactly as
    /// [`Self::next`] verifies it, handed to `visit` borrowed, until `visit` says stop
    /// (`Ok(false)`) or a unit is not whole there or does not verify; [`Self::next`] then
    /// reads that one afresh and judges it. No read per unit: the fast path of a batched read.
    ///
    /// # Errors
    /// Only what `visit` returns.
    pub fn next_in_window<E>(
        &mut self,
        mut visit: impl FnMut(FrameRef<'_>) -> std::result::Result<bool, E>,
    ) -> std::result::Result<(), E> {
        while let Some(frame) = self.pending.pop_front() {
            if !visit(frame.borrowed())? {
                return Ok(());
            }
        }
        // Entries go to `visit` borrowed from the window as the unit is decoded; only those
        // after the one where `visit` stops (or fails) are kept, owned, for the next call.
        let window = self.window.clone();
        let keep = self.keep_payloads.then_some(&window);
        loop {
            let Some(bytes) = self.window_at_cursor(&window) else {
                return Ok(());
            };
            let mut outcome = Ok(true);
            let mut rest = Vec::new();
            let unit = visit_unit(
                bytes,
                self.offset,
                self.layout,
                keep,
                Some(self.last_sequence),
                |frame| match outcome {
                    Ok(true) => outcome = visit(frame),
                    _ => rest.push(frame.to_frame()),
                },
            );
            // Not whole here, or not valid: `next` reads it afresh and judges it.
            let Ok((len, last)) = unit else {
                return Ok(());
            };
            self.offset += len as u64;
            self.last_sequence = last;
            self.pending.extend(rest);
            if !outcome? {
                return Ok(());
            }
        }
    }

    /// The bytes of the window from the cursor to the file's end as last seen, if the window
    /// holds the cursor.
    fn window_at_cursor<'w>(&self, window: &'w Bytes) -> Option<&'w [u8]> {
        let end = (self.window_start + window.len() as u64).min(self.file_len);
        let at = usize::try_from(self.offset.checked_sub(self.window_start)?).ok()?;
        let visible = usize::try_from(end.checked_sub(self.offset)?).ok()?;
        window.get(at..at + visible)
    }

    /// Where `len` bytes at `offset` are in the read window (read afresh if they are not);
    /// `None` if the file ends first.
    fn fetch(
        &mut self,
        file: &dyn VfsFile,
        path: &Path,
        offset: u64,
        len: usize,
    ) -> Result<Option<Range<usize>>> {
        let end = offset + len as u64;
        if end > self.file_len {
            self.refresh_len(file, path)?;
            if end > self.file_len {
                return Ok(None);
            }
        }
        let window_end = self.window_start + self.window.len() as u64;
        if offset < self.window_start || end > window_end {
            let want = usize::try_from(self.file_len - offset)
                .unwrap_or(usize::MAX)
                .min(WINDOW.max(len));
            // The last buffer again when no frame read from it still shares it (a batched read
            // copies what it keeps), else a new one: fresh memory costs a page fault a page.
            let mut fresh = match std::mem::take(&mut self.window).try_into_mut() {
                Ok(mut reused) if reused.capacity() >= want => {
                    reused.clear();
                    reused.resize(want, 0);
                    reused
                }
                _ => BytesMut::zeroed(want),
            };
            // A live writer may cut its zero tail between the stat and this read.
            let got =
                read_up_to(file, &mut fresh, offset).map_err(|e| Error::io("read", path, e))?;
            fresh.truncate(got);
            self.window = fresh.freeze();
            self.window_start = offset;
            if got < len {
                self.file_len = offset + got as u64;
                return Ok(None);
            }
        }
        let start = usize::try_from(offset - self.window_start).unwrap_or(0);
        Ok(Some(start..start + len))
    }

    /// Decide whether damage at the cursor is the zero-filled end, a torn tail, or corruption
    /// (mid-log, or inside the sealed prefix).
    fn classify(&self, file: &dyn VfsFile, path: &Path, damage: Damage) -> Result<Step> {
        let offset = self.offset;
        let data_end = self.data_end(file, path, offset)?;
        if data_end > offset
            && let Some(next_valid) = self.find_valid_frame(file, path, offset + 1, data_end)?
        {
            return Err(Error::MidLogCorruption {
                path: path.to_path_buf(),
                offset,
                detail: damage.describe(),
                next_valid,
            });
        }
        if offset < self.sealed_end {
            return Err(Error::SealedCorruption {
                path: path.to_path_buf(),
                offset,
                detail: damage.describe(),
                sealed_end: self.sealed_end,
            });
        }
        if data_end == offset {
            return Ok(Step::End);
        }
        let reason = if damage == Damage::Short {
            TailReason::ShortFrame
        } else {
            TailReason::CorruptFinalFrame
        };
        Ok(Step::Torn(TailRepair {
            reason,
            offset,
            discarded_bytes: data_end - offset,
            saved_bytes: 0,
        }))
    }

    /// First offset in `start..limit` holding a unit whose head verifies, with a later
    /// sequence.
    fn find_valid_frame(
        &self,
        file: &dyn VfsFile,
        path: &Path,
        start: u64,
        limit: u64,
    ) -> Result<Option<u64>> {
        const CHUNK: usize = 1 << 20;
        let fixed = fixed_len(self.layout);
        let mut buf = Vec::new();
        let mut pos = start;
        while pos < limit && pos + fixed as u64 <= self.file_len {
            let want = usize::try_from(self.file_len - pos)
                .unwrap_or(usize::MAX)
                .min(CHUNK + fixed - 1);
            buf.resize(want, 0);
            let got = read_up_to(file, &mut buf, pos).map_err(|e| Error::io("read", path, e))?;
            buf.truncate(got);
            if got < fixed {
                return Ok(None);
            }
            for i in 0..=got - fixed {
                let candidate = pos + i as u64;
                if candidate >= limit {
                    return Ok(None);
                }
                if self.plausible(&buf[i..i + fixed])
                    && self.head_at(file, path, &buf[i..], candidate)?
                {
                    return Ok(Some(candidate));
                }
            }
            pos += (got - fixed + 1) as u64;
        }
        Ok(None)
    }

    /// A cheap test of a fixed header before its checksum is computed.
    fn plausible(&self, fixed: &[u8]) -> bool {
        match self.layout {
            Layout::V3 => true,
            Layout::V4 => {
                fixed[4] == batch_frame::FRAME_VERSION
                    && batch_frame::claimed_count(fixed).is_some_and(|n| n > 0)
            }
        }
    }

    /// Whether the unit at `candidate` (whose bytes `buf` starts with, perhaps not all of its
    /// head) has a head that verifies and a later sequence.
    fn head_at(&self, file: &dyn VfsFile, path: &Path, buf: &[u8], candidate: u64) -> Result<bool> {
        let need = head_need(buf, self.layout);
        let available = usize::try_from(self.file_len - candidate).unwrap_or(usize::MAX);
        let owned;
        let bytes = if buf.len() >= need || buf.len() >= available {
            buf
        } else {
            let mut more = vec![0; need.min(available)];
            let got =
                read_up_to(file, &mut more, candidate).map_err(|e| Error::io("read", path, e))?;
            more.truncate(got);
            owned = more;
            &owned
        };
        Ok(unit_head(bytes, candidate, self.layout)
            .is_ok_and(|head| head.base_sequence > self.last_sequence))
    }

    /// Offset just past the last non-zero byte at or after `start`; `start` if there is none.
    /// Read backwards from the end, so a long preallocated tail costs one pass over zeros.
    fn data_end(&self, file: &dyn VfsFile, path: &Path, start: u64) -> Result<u64> {
        const CHUNK: u64 = 1 << 20;
        let mut buf = Vec::new();
        let mut end = self.file_len;
        while end > start {
            let from = end.saturating_sub(CHUNK).max(start);
            buf.resize(usize::try_from(end - from).unwrap_or(0), 0);
            let got = read_up_to(file, &mut buf, from).map_err(|e| Error::io("read", path, e))?;
            buf.truncate(got);
            if let Some(last) = buf.iter().rposition(|&b| b != 0) {
                return Ok(from + last as u64 + 1);
            }
            end = from;
        }
        Ok(start)
    }
}
