//! Reading frames in order, and telling a torn tail from mid-log corruption.
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

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::error::{Error, Result};
use crate::file_header::{FILE_HEADER_LEN, FileHeader};
use crate::frame::{self, Damage, Defect, FRAME_HEADER_LEN, FrameHeader, Origin};
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

/// One verified frame, payload as stored.
#[derive(Clone, Debug)]
pub struct Frame {
    /// Offset of the frame in the file.
    pub offset: u64,
    /// Its header.
    pub header: FrameHeader,
    /// Its origin.
    pub origin: Origin,
    /// Its principal.
    pub principal: Option<Vec<u8>>,
    /// The payload as stored (compressed if the header says so), sharing the bytes it was read
    /// into; empty from a cursor made [`FrameCursor::without_payloads`].
    pub stored: Bytes,
}

impl Frame {
    /// The frame's bytes exactly as a WAL holds them (its encoding is deterministic, so the
    /// checksums come out as they were read).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let fields = frame::FrameFields {
            sequence: self.header.sequence,
            hlc: self.header.hlc,
            origin: self.origin,
            principal: self.principal.as_deref(),
            flags: self.header.flags & !frame::FLAG_REPLICATED,
        };
        frame::encode_frame(out, &fields, &self.stored);
    }

    /// The frame, borrowed.
    #[must_use]
    pub fn borrowed(&self) -> FrameRef<'_> {
        FrameRef {
            offset: self.offset,
            header: self.header,
            origin: self.origin,
            principal: self.principal.as_deref(),
            stored: &self.stored,
            source: &self.stored,
        }
    }
}

/// One verified frame, borrowed from the bytes it was read into.
#[derive(Clone, Copy, Debug)]
pub struct FrameRef<'a> {
    /// Offset of the frame in the file.
    pub offset: u64,
    /// Its header.
    pub header: FrameHeader,
    /// Its origin.
    pub origin: Origin,
    /// Its principal.
    pub principal: Option<&'a [u8]>,
    /// The payload as stored (compressed if the header says so).
    pub stored: &'a [u8],
    /// The shared buffer `stored` lies in, so that an owned frame shares it.
    source: &'a Bytes,
}

impl FrameRef<'_> {
    /// The frame, owned: its payload shares the bytes it was read into.
    #[must_use]
    pub fn to_frame(&self) -> Frame {
        Frame {
            offset: self.offset,
            header: self.header,
            origin: self.origin,
            principal: self.principal.map(<[u8]>::to_vec),
            stored: if self.stored.is_empty() {
                Bytes::new()
            } else {
                self.source.slice_ref(self.stored)
            },
        }
    }
}

/// The frame at `offset` of an in-memory run of frames, verified in full (header, extent and
/// payload checksums); bytes ending inside it are `Damage::Short`.
///
/// # Errors
/// The [`Defect`] that stops it.
pub fn frame_in(bytes: &[u8], offset: usize) -> std::result::Result<Frame, Defect> {
    let short = Defect::Damaged(Damage::Short);
    let header: &[u8; FRAME_HEADER_LEN] = bytes
        .get(offset..offset + FRAME_HEADER_LEN)
        .and_then(|b| b.try_into().ok())
        .ok_or(short.clone())?;
    let header = frame::decode_header(header, offset as u64)?;
    let body = offset + FRAME_HEADER_LEN;
    let extent = bytes
        .get(body..body + header.extent_len())
        .ok_or(short.clone())?;
    let (origin, principal) = frame::decode_extent(&header, extent)?;
    let principal = principal.map(<[u8]>::to_vec);
    let start = body + header.extent_len();
    let stored = bytes
        .get(start..start + header.payload_len as usize)
        .ok_or(short)?;
    frame::verify_payload(&header, stored)?;
    Ok(Frame {
        offset: offset as u64,
        header,
        origin,
        principal,
        stored: Bytes::copy_from_slice(stored),
    })
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

/// The header of the frame at `offset`, checked, its sequence the one after `previous`: the
/// first half of verifying a frame, on every path of the cursor.
///
/// # Errors
/// `NonMonotonicSequence`, `SequenceGap`: a frame whose checksums hold but whose sequence is
/// out of order is corruption, never a torn tail.
fn check_header(
    bytes: &[u8],
    offset: u64,
    previous: u64,
) -> Result<std::result::Result<FrameHeader, Defect>> {
    let bytes: &[u8; FRAME_HEADER_LEN] = bytes.try_into().unwrap_or(&[0; FRAME_HEADER_LEN]);
    let header = match frame::decode_header(bytes, offset) {
        Ok(header) => header,
        Err(defect) => return Ok(Err(defect)),
    };
    if header.sequence <= previous {
        return Err(Error::NonMonotonicSequence {
            offset,
            previous,
            found: header.sequence,
        });
    }
    if header.sequence != previous + 1 {
        return Err(Error::SequenceGap {
            offset,
            expected: previous + 1,
            found: header.sequence,
        });
    }
    Ok(Ok(header))
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

/// Walks the frames of one file from the end of its header.
#[derive(Debug)]
pub struct FrameCursor {
    file_len: u64,
    offset: u64,
    last_sequence: u64,
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
    /// A cursor over a file of `file_len` bytes whose header names `snapshot_seq`.
    #[must_use]
    pub fn new(file_len: u64, snapshot_seq: u64) -> Self {
        Self {
            file_len,
            offset: FILE_HEADER_LEN as u64,
            last_sequence: snapshot_seq,
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

    /// The same cursor, resuming at `offset` just past a frame known to be valid whose
    /// sequence was `last_sequence`.
    #[must_use]
    pub fn starting_at(self, offset: u64, last_sequence: u64) -> Self {
        Self {
            offset,
            last_sequence,
            ..self
        }
    }

    /// Offset just past the last frame returned.
    #[must_use]
    pub const fn offset(&self) -> u64 {
        self.offset
    }

    /// Sequence of the last frame returned (the header's snapshot_seq before any).
    #[must_use]
    pub const fn last_sequence(&self) -> u64 {
        self.last_sequence
    }

    /// The next frame, the end, or a torn tail.
    ///
    /// # Errors
    /// I/O errors, [`Error::MidLogCorruption`], [`Error::SealedCorruption`], sequence errors,
    /// and unsupported frames.
    pub fn next(&mut self, file: &dyn VfsFile, path: &Path) -> Result<Step> {
        if self.offset >= self.file_len {
            self.refresh_len(file, path)?;
            if self.offset >= self.file_len {
                return Ok(Step::End);
            }
        }
        match self.read_frame(file, path)? {
            Ok(frame) => Ok(self.advance(frame)),
            Err(_) if self.beside.is_some() => self.judge(file, path),
            Err(Defect::Invalid(error)) => Err(error),
            Err(Defect::Damaged(damage)) => self.classify(file, path, damage),
        }
    }

    fn advance(&mut self, frame: Frame) -> Step {
        self.offset += frame.header.frame_len();
        self.last_sequence = frame.header.sequence;
        Step::Frame(frame)
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
            let defect = match self.read_frame(file, path)? {
                Ok(frame) => return Ok(self.advance(frame)),
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
                    // finished the frame in between (and died). A writer writes front to back
                    // and never zeroes bytes it wrote, so damage read again *after* the rest was
                    // seen is stable; read as valid, it was the writer's.
                    Defect::Damaged(damage) => match self.classify(file, path, damage) {
                        verdict @ (Err(Error::MidLogCorruption { .. }) | Ok(Step::Torn(_))) => {
                            self.window = Bytes::new();
                            match self.read_frame(file, path)? {
                                Ok(frame) => Ok(self.advance(frame)),
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

    fn read_frame(
        &mut self,
        file: &dyn VfsFile,
        path: &Path,
    ) -> Result<std::result::Result<Frame, Defect>> {
        let (offset, keep_payloads) = (self.offset, self.keep_payloads);
        let Some(at) = self.fetch(file, path, offset, FRAME_HEADER_LEN)? else {
            return Ok(Err(Defect::Damaged(Damage::Short)));
        };
        let header = match check_header(&self.window[at], offset, self.last_sequence)? {
            Ok(header) => header,
            Err(defect) => return Ok(Err(defect)),
        };
        let body_len = header.extent_len() + header.payload_len as usize;
        let Some(body) = self.fetch(file, path, offset + FRAME_HEADER_LEN as u64, body_len)? else {
            return Ok(Err(Defect::Damaged(Damage::Short)));
        };
        Ok(
            check_body(&header, &self.window[body.clone()]).map(|(origin, principal, _)| Frame {
                offset,
                header,
                origin,
                principal: principal.map(<[u8]>::to_vec),
                stored: if keep_payloads {
                    self.window
                        .slice(body.end - header.payload_len as usize..body.end)
                } else {
                    Bytes::new()
                },
            }),
        )
    }

    /// The frames that follow whole in the bytes already read, each verified exactly as
    /// [`Self::next`] verifies it, handed to `visit` borrowed, until `visit` says stop
    /// (`Ok(false)`) or a frame is not whole there or does not verify; [`Self::next`] then
    /// reads that one afresh and judges it. No read and no allocation per frame: the fast path
    /// of a batched read.
    ///
    /// # Errors
    /// Only what `visit` returns.
    pub fn next_in_window<E>(
        &mut self,
        mut visit: impl FnMut(FrameRef<'_>) -> std::result::Result<bool, E>,
    ) -> std::result::Result<(), E> {
        let window = &self.window;
        let end = (self.window_start + window.len() as u64).min(self.file_len);
        while self.offset >= self.window_start && self.offset + FRAME_HEADER_LEN as u64 <= end {
            let offset = self.offset;
            let at = usize::try_from(offset - self.window_start).unwrap_or(usize::MAX);
            let header_bytes = &window[at..at + FRAME_HEADER_LEN];
            let Ok(Ok(header)) = check_header(header_bytes, offset, self.last_sequence) else {
                return Ok(());
            };
            let frame_end = offset + header.frame_len();
            if frame_end > end {
                return Ok(());
            }
            let body_end = at + usize::try_from(frame_end - offset).unwrap_or(usize::MAX);
            let Ok((origin, principal, stored)) =
                check_body(&header, &window[at + FRAME_HEADER_LEN..body_end])
            else {
                return Ok(());
            };
            self.offset = frame_end;
            self.last_sequence = header.sequence;
            let frame = FrameRef {
                offset,
                header,
                origin,
                principal,
                stored,
                source: window,
            };
            if !visit(frame)? {
                return Ok(());
            }
        }
        Ok(())
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
                offset,
                detail: damage.describe(),
                next_valid,
            });
        }
        if offset < self.sealed_end {
            return Err(Error::SealedCorruption {
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

    /// First offset in `start..limit` holding a valid frame header with a later sequence.
    fn find_valid_frame(
        &self,
        file: &dyn VfsFile,
        path: &Path,
        start: u64,
        limit: u64,
    ) -> Result<Option<u64>> {
        const CHUNK: usize = 1 << 20;
        let mut buf = Vec::new();
        let mut pos = start;
        while pos < limit && pos + FRAME_HEADER_LEN as u64 <= self.file_len {
            let want = usize::try_from(self.file_len - pos)
                .unwrap_or(usize::MAX)
                .min(CHUNK + FRAME_HEADER_LEN - 1);
            buf.resize(want, 0);
            let got = read_up_to(file, &mut buf, pos).map_err(|e| Error::io("read", path, e))?;
            buf.truncate(got);
            if got < FRAME_HEADER_LEN {
                return Ok(None);
            }
            for (i, window) in buf.windows(FRAME_HEADER_LEN).enumerate() {
                let candidate = pos + i as u64;
                if candidate >= limit {
                    return Ok(None);
                }
                let bytes: &[u8; FRAME_HEADER_LEN] =
                    window.try_into().unwrap_or(&[0; FRAME_HEADER_LEN]);
                if let Ok(header) = frame::decode_header(bytes, candidate)
                    && header.sequence > self.last_sequence
                {
                    return Ok(Some(candidate));
                }
            }
            pos += (got - FRAME_HEADER_LEN + 1) as u64;
        }
        Ok(None)
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
