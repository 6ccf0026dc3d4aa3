//! Sequential, verifying reads of a WAL file, safe to run beside a live writer.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::file_header::{FILE_HEADER_LEN, FileHeader};
use crate::frame::FLAG_CHECKPOINT_WATERMARK;
use crate::io::{OpenMode, Vfs, VfsFile};
use crate::scan::{Frame, FrameCursor, FrameRef, Step, TailRepair, read_file_header};
use crate::seal::Seal;

/// The entry type, at home in [`crate::batch`] (which collects entries) and named here too.
pub use crate::batch::Entry;

/// Reads the entries of a WAL file in order, verifying every checksum, beside a live writer
/// or not.
///
/// It stops at the current end: zeros or bytes a live writer has not finished (a later call
/// reads on from there, so it also sees entries appended since), or a stable torn tail (which
/// it reports but, unlike the writer, never cuts). It fails with `MidLogCorruption` where
/// stable damage hides valid entries, and with `SealedCorruption` where it lies inside the
/// prefix the seal records as durable; after an error it returns nothing more.
#[derive(Debug)]
pub struct WalReader {
    path: PathBuf,
    file: Box<dyn VfsFile>,
    cursor: FrameCursor,
    header: FileHeader,
    failed: bool,
    /// An error met after some entries of a batch: they go first, it comes with the next call.
    deferred: Option<Error>,
    torn_tail: Option<TailRepair>,
}

impl WalReader {
    /// Open the WAL at `path` for reading and check its header.
    ///
    /// # Errors
    /// I/O errors and header errors.
    pub fn open(vfs: &Arc<dyn Vfs>, path: &Path) -> Result<Self> {
        let file = vfs
            .open(path, OpenMode::Read)
            .map_err(|e| Error::io("open", path, e))?;
        let header = read_file_header(file.as_ref(), path)?;
        let len = file.size().map_err(|e| Error::io("stat", path, e))?;
        // Damage inside a prefix the seal says was durable is corruption, never a torn tail.
        let sealed_end =
            Seal::load(vfs.as_ref(), path, file.as_ref(), header, len).map_or(0, |seal| seal.end);
        Ok(Self {
            path: path.to_path_buf(),
            file,
            cursor: FrameCursor::new(len, header)
                .sealed_until(sealed_end)
                .beside_writer(Arc::clone(vfs)),
            header,
            failed: false,
            deferred: None,
            torn_tail: None,
        })
    }

    /// The file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The snapshot sequence in the file header.
    #[must_use]
    pub const fn snapshot_seq(&self) -> u64 {
        self.header.snapshot_seq
    }

    /// End of the prefix the WAL's seal records as fdatasynced (the header's end when no valid
    /// seal names this file): how far a durable follower may read.
    ///
    /// # Errors
    /// I/O errors of the file's size.
    pub fn durable_end(&self, vfs: &dyn Vfs) -> Result<u64> {
        let len = self
            .file
            .size()
            .map_err(|e| Error::io("stat", &self.path, e))?;
        Ok(
            Seal::load(vfs, &self.path, self.file.as_ref(), self.header, len)
                .map_or(FILE_HEADER_LEN as u64, |seal| seal.end),
        )
    }

    /// The torn tail the reader stopped at, once it has reached the end.
    #[must_use]
    pub const fn torn_tail(&self) -> Option<TailRepair> {
        self.torn_tail
    }

    /// The next verified frame with a sequence of at least `from`, payload as stored; `None`
    /// at the current end.
    ///
    /// # Errors
    /// As [`FrameCursor::next`]. After an error the reader returns no more frames.
    pub fn next_frame(&mut self, from: u64) -> Result<Option<Frame>> {
        while !self.failed {
            match self.cursor.next(self.file.as_ref(), &self.path) {
                Ok(Step::Frame(frame)) if frame.sequence >= from => return Ok(Some(frame)),
                Ok(Step::Frame(_)) => {}
                Ok(Step::End) => return Ok(None),
                Ok(Step::Torn(repair)) => {
                    self.torn_tail = Some(repair);
                    return Ok(None);
                }
                Err(e) => {
                    self.failed = true;
                    return Err(e);
                }
            }
        }
        Ok(None)
    }

    /// Hand each verified frame with a sequence of at least `from` to `visit`, in order, until
    /// it returns `Ok(false)` or the current end. Frames go borrowed from the bytes read, without
    /// a copy ([`FrameCursor::next_in_window`], reading on with [`FrameCursor::fill_window`]); a
    /// unit that does not verify there goes to [`Self::next_frame`], which judges it.
    ///
    /// # Errors
    /// As [`Self::next_frame`], and what `visit` returns.
    pub fn visit_frames(
        &mut self,
        from: u64,
        mut visit: impl FnMut(FrameRef<'_>) -> Result<bool>,
    ) -> Result<()> {
        if let Some(error) = self.deferred.take() {
            return Err(error);
        }
        loop {
            let mut more = true;
            if !self.failed {
                self.cursor.next_in_window(|frame| {
                    if frame.sequence >= from {
                        more = visit(frame)?;
                    }
                    Ok::<_, Error>(more)
                })?;
            }
            if !more {
                return Ok(());
            }
            if !self.failed {
                match self.cursor.fill_window(self.file.as_ref(), &self.path) {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => {
                        self.failed = true;
                        return Err(e);
                    }
                }
            }
            let Some(frame) = self.next_frame(from)? else {
                return Ok(());
            };
            if !visit(frame.borrowed())? {
                return Ok(());
            }
        }
    }

    /// Up to `max_entries` entries (or about `max_bytes` of payload) with sequence >= `from`,
    /// checkpoint watermarks only if `watermarks`, collected into a [`Batch`]. An empty batch
    /// means the end.
    ///
    /// # Errors
    /// As [`Self::collect`].
    pub fn next_batch<B: Batch>(
        &mut self,
        from: u64,
        max_entries: usize,
        max_bytes: usize,
        watermarks: bool,
    ) -> Result<B> {
        self.collect(from, max_entries, max_bytes, |frame| {
            watermarks || frame.flags & FLAG_CHECKPOINT_WATERMARK == 0
        })
    }

    /// Up to `max_entries` of the frames with sequence >= `from` that `keep` keeps (or about
    /// `max_bytes` of their payloads), collected into a [`Batch`]: the one body of every
    /// batched read of a WAL. An error after some entries waits for the next call, so every
    /// entry before it is delivered.
    ///
    /// # Errors
    /// As [`Self::visit_frames`] and [`Batch::push_frame`], when the batch is empty.
    pub fn collect<B: Batch>(
        &mut self,
        from: u64,
        max_entries: usize,
        max_bytes: usize,
        mut keep: impl FnMut(&FrameRef<'_>) -> bool,
    ) -> Result<B> {
        let mut batch = B::with_limits(max_entries, max_bytes);
        if max_entries == 0 || max_bytes == 0 {
            return Ok(batch);
        }
        let mut bytes = 0;
        let outcome = self.visit_frames(from, |frame| {
            if keep(&frame) {
                bytes += batch.push_frame(frame)?;
            }
            Ok(batch.len() < max_entries && bytes < max_bytes)
        });
        match outcome {
            Err(error) if !batch.is_empty() => {
                self.deferred = Some(error);
                Ok(batch)
            }
            outcome => outcome.map(|()| batch),
        }
    }
}
