//! The file being salvaged, read through one window: memory stays at the window (or the one
//! frame being verified, when it is larger) whatever the file's size.
//!
//! Verifying a frame hashes all its bytes, and a header (its own checksum holding) can claim
//! up to the payload cap: a file of headers each claiming the rest of the file would cost work
//! quadratic in its size. So the bytes verified are bounded by [`VERIFY_FACTOR`] times the
//! file's size (plus one window): a log verifies each of its bytes about once, and a damaged
//! one each a few times (a frame at the damage, again when the scan passes it, again when it
//! is kept after a look-ahead). Past that, no frame verifies: the rest of such a file is kept
//! as damage.

use std::path::{Path, PathBuf};

use crate::batch_frame;
use crate::error::{Error, Result};
use crate::file_header::{FILE_HEADER_LEN, FileHeader, Layout};
use crate::frame::FRAME_HEADER_LEN;
use crate::hlc::Hlc;
use crate::io::{OpenMode, Vfs, VfsFile, read_up_to};
use crate::publish::copy_range;
use crate::scan::encode_records;

/// How much of the source is read at a time.
pub(super) const WINDOW: usize = 4 << 20;

/// How many times its size a source's frames may cost in verification.
pub(super) const VERIFY_FACTOR: u64 = 8;

/// A unit of the source that verified in full: a v3 frame or a v4 batch frame.
#[derive(Clone, Copy, Debug)]
pub(super) struct Unit {
    /// Its first sequence.
    pub(super) first: u64,
    /// Its last sequence.
    pub(super) last: u64,
    /// Its length.
    pub(super) len: u64,
    /// Its latest timestamp.
    pub(super) hlc: Hlc,
}

/// A piece of a damaged batch frame whose head verifies: a run of intact records, encoded as
/// a batch frame of their own, or a run of sequences lost in the damage.
#[derive(Debug)]
pub(super) enum Piece {
    /// Records `first..=last`, intact, encoded; the latest timestamp among them.
    Kept(u64, u64, Hlc, Vec<u8>),
    /// Sequences `first..=last`, damaged.
    Lost(u64, u64),
}

/// One source file and the window of it last read.
pub(super) struct Source {
    layout: Layout,
    file: Box<dyn VfsFile>,
    path: PathBuf,
    len: u64,
    window: Vec<u8>,
    start: u64,
    /// Bytes that frames may still cost to verify.
    verify_budget: u64,
}

impl Source {
    /// Open `path` for reading.
    ///
    /// # Errors
    /// I/O errors.
    pub(super) fn open(vfs: &dyn Vfs, path: &Path) -> Result<Self> {
        let file = vfs
            .open(path, OpenMode::Read)
            .map_err(|e| Error::io("open", path, e))?;
        let len = file.size().map_err(|e| Error::io("stat", path, e))?;
        let mut head = [0u8; FILE_HEADER_LEN];
        let got =
            read_up_to(file.as_ref(), &mut head, 0).map_err(|e| Error::io("read", path, e))?;
        // A damaged header still says which layout by its major version, if that byte holds.
        let layout = FileHeader::decode(&head[..got])
            .map_or(if head[4] == 1 { Layout::V3 } else { Layout::V4 }, |h| {
                h.layout
            });
        Ok(Self {
            layout,
            file,
            path: path.to_path_buf(),
            len,
            window: Vec::new(),
            start: 0,
            verify_budget: len.saturating_mul(VERIFY_FACTOR) + WINDOW as u64,
        })
    }

    /// The file's length (shorter than at open if it shrank meanwhile).
    pub(super) const fn len(&self) -> u64 {
        self.len
    }

    /// The `n` bytes at `at`, read into the window unless they are in it already (the window
    /// then starts at `at` and grows to hold them); `None` past the end of the file.
    ///
    /// # Errors
    /// I/O errors.
    pub(super) fn bytes(&mut self, at: u64, n: usize) -> Result<Option<&[u8]>> {
        let end = at.saturating_add(n as u64);
        if end > self.len {
            return Ok(None);
        }
        if at < self.start || end > self.start + self.window.len() as u64 {
            let want = usize::try_from(self.len - at)
                .unwrap_or(usize::MAX)
                .min(n.max(WINDOW));
            self.window.clear();
            self.window.resize(want, 0);
            let got = read_up_to(self.file.as_ref(), &mut self.window, at)
                .map_err(|e| Error::io("read", &self.path, e))?;
            self.window.truncate(got);
            self.start = at;
            if got < want {
                self.len = at + got as u64;
            }
            if got < n {
                return Ok(None);
            }
        }
        let from = usize::try_from(at - self.start).unwrap_or(usize::MAX);
        Ok(Some(&self.window[from..from + n]))
    }

    /// The `len` bytes of the frame at `at`, which verified.
    ///
    /// # Errors
    /// I/O errors; `UnexpectedEof` if the file shrank since.
    pub(super) fn frame_bytes(&mut self, at: u64, len: u64) -> Result<&[u8]> {
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if self.bytes(at, len)?.is_none() {
            let eof = std::io::ErrorKind::UnexpectedEof.into();
            return Err(Error::io("read", &self.path, eof));
        }
        // In the window now.
        Ok(self.bytes(at, len)?.unwrap_or_default())
    }

    /// How the source's entries are framed.
    pub(super) const fn layout(&self) -> Layout {
        self.layout
    }

    /// The unit at `at` if it verifies in full (every checksum, and a head this build
    /// accepts) within the verification budget.
    ///
    /// # Errors
    /// I/O errors.
    pub(super) fn unit_at(&mut self, at: u64) -> Result<Option<Unit>> {
        let layout = self.layout;
        let fixed = match layout {
            Layout::V3 => FRAME_HEADER_LEN,
            Layout::V4 => batch_frame::BATCH_HEADER_LEN,
        };
        let Some(head) = self.bytes(at, fixed)? else {
            return Ok(None);
        };
        let need = match layout {
            Layout::V3 => FRAME_HEADER_LEN,
            Layout::V4 => {
                if head[4] != batch_frame::FRAME_VERSION {
                    return Ok(None);
                }
                batch_frame::head_bound(batch_frame::claimed_count(head).unwrap_or(0))
            }
        };
        let available = usize::try_from(self.len - at).unwrap_or(usize::MAX);
        let Some(head) = self.bytes(at, need.min(available))? else {
            return Ok(None);
        };
        let Ok(info) = crate::scan::unit_head(head, at, layout) else {
            return Ok(None);
        };
        // A length past the end, or past the budget, is not read at all.
        let len = info.len as u64;
        if len > self.verify_budget || at.saturating_add(len) > self.len {
            return Ok(None);
        }
        self.verify_budget -= len;
        let Ok(n) = usize::try_from(len) else {
            return Ok(None);
        };
        let Some(bytes) = self.bytes(at, n)? else {
            return Ok(None);
        };
        Ok(crate::scan::verify_unit(bytes, at, layout)
            .ok()
            .map(|frames| Unit {
                first: info.base_sequence,
                last: info.last_sequence(),
                len,
                hlc: frames.iter().map(|f| f.hlc).max().unwrap_or_default(),
            }))
    }

    /// A v4 batch frame at `at` whose head verifies though the batch does not: its length (as
    /// much of it as the file holds) and its pieces, in sequence order, every record whose
    /// bytes are intact kept ([`batch_frame::salvage_batch`]); lost records after the last kept
    /// one are left out (what follows the batch says whether they are missing). `None` for a v3
    /// source or a head that does not verify.
    ///
    /// # Errors
    /// I/O errors, and those of encoding the kept records.
    pub(super) fn pieces_at(&mut self, at: u64) -> Result<Option<(u64, Vec<Piece>)>> {
        if self.layout != Layout::V4 {
            return Ok(None);
        }
        let available = usize::try_from(self.len.saturating_sub(at)).unwrap_or(usize::MAX);
        let Some(head) = self.bytes(at, batch_frame::BATCH_HEADER_LEN.min(available))? else {
            return Ok(None);
        };
        let need = batch_frame::head_bound(batch_frame::claimed_count(head).unwrap_or(0));
        let Some(head) = self.bytes(at, need.min(available))? else {
            return Ok(None);
        };
        let Ok(info) = batch_frame::batch_head(head, at) else {
            return Ok(None);
        };
        let len = info.len.min(available);
        if len as u64 > self.verify_budget {
            return Ok(None);
        }
        self.verify_budget -= len as u64;
        let Some(bytes) = self.bytes(at, len)? else {
            return Ok(None);
        };
        let Ok(salvaged) = batch_frame::salvage_batch(bytes, at) else {
            return Ok(None);
        };
        let mut pieces = Vec::new();
        let mut run: Vec<batch_frame::Record<'_>> = Vec::new();
        let mut run_start = salvaged.base_sequence;
        for (sequence, record) in (salvaged.base_sequence..).zip(&salvaged.records) {
            match record {
                Ok(record) => {
                    if run.is_empty() {
                        run_start = sequence;
                    }
                    run.push(*record);
                }
                Err(_) => {
                    if !run.is_empty() {
                        pieces.push(kept(run_start, &run)?);
                        run.clear();
                    }
                    match pieces.last_mut() {
                        Some(Piece::Lost(_, last)) => *last = sequence,
                        _ => pieces.push(Piece::Lost(sequence, sequence)),
                    }
                }
            }
        }
        if !run.is_empty() {
            pieces.push(kept(run_start, &run)?);
        }
        while matches!(pieces.last(), Some(Piece::Lost(..))) {
            pieces.pop();
        }
        Ok(Some((len as u64, pieces)))
    }

    /// Whether every byte from `at` to the end is zero: the clean end of a log, not damage.
    ///
    /// # Errors
    /// I/O errors.
    pub(super) fn zero_from(&mut self, mut at: u64) -> Result<bool> {
        while at < self.len {
            let n = usize::try_from(self.len - at)
                .unwrap_or(usize::MAX)
                .min(WINDOW);
            match self.bytes(at, n)? {
                Some(bytes) if bytes.iter().all(|&b| b == 0) => at += n as u64,
                Some(_) => return Ok(false),
                // The file shrank: `len` is now where it ends.
                None => {}
            }
        }
        Ok(true)
    }

    /// Copy the `len` bytes at `at` into `dst` at `to`, in bounded chunks.
    ///
    /// # Errors
    /// I/O errors.
    pub(super) fn copy(
        &self,
        at: u64,
        len: u64,
        dst: &mut dyn VfsFile,
        dst_path: &Path,
        to: u64,
    ) -> Result<()> {
        copy_range(self.file.as_ref(), &self.path, at, dst, dst_path, to, len)
    }
}

/// Intact records `first..` of a damaged batch, encoded as batch frames of their own.
fn kept(first: u64, records: &[batch_frame::Record<'_>]) -> Result<Piece> {
    let mut encoded = Vec::new();
    encode_records(&mut encoded, first, records)?;
    let hlc = records.iter().map(|r| r.hlc).max().unwrap_or_default();
    Ok(Piece::Kept(
        first,
        first + records.len() as u64 - 1,
        hlc,
        encoded,
    ))
}
