//! Where a salvage writes as it goes: the new log through a bounded buffer, and the damaged
//! bytes into `<dest>.damaged`, created at the first of them.

use std::path::{Path, PathBuf};

use crate::batch_frame::Record;
use crate::error::{Error, Result};
use crate::filename::temp_path;
use crate::hlc::Hlc;
use crate::io::{OpenMode, Vfs, VfsFile};
use crate::publish::remove_quietly;
use crate::scan::{BATCH_RECORDS_CAP, encode_records};

use super::source::Source;

/// Bytes gathered before a write.
const BUFFER: usize = 1 << 20;

/// The new log's temp file, written front to back from `start`.
pub(super) struct Output<'a> {
    file: &'a mut dyn VfsFile,
    path: &'a Path,
    written: u64,
    buffer: Vec<u8>,
}

impl<'a> Output<'a> {
    /// Write into `file` (at `path`) from offset `start`.
    pub(super) fn new(file: &'a mut dyn VfsFile, path: &'a Path, start: u64) -> Self {
        Self {
            file,
            path,
            written: start,
            buffer: Vec::with_capacity(BUFFER),
        }
    }

    /// Append `bytes`.
    ///
    /// # Errors
    /// I/O errors.
    pub(super) fn push(&mut self, bytes: &[u8]) -> Result<()> {
        if self.buffer.len() + bytes.len() > BUFFER {
            self.flush()?;
        }
        if bytes.len() >= BUFFER {
            return self.write(bytes);
        }
        self.buffer.extend_from_slice(bytes);
        Ok(())
    }

    /// Append a checkpoint watermark (no payload, skipped by replay) for each of `sequences`.
    ///
    /// # Errors
    /// I/O errors.
    pub(super) fn watermarks(&mut self, sequences: std::ops::Range<u64>, hlc: Hlc) -> Result<()> {
        let watermark = Record {
            hlc,
            watermark: true,
            ..Record::default()
        };
        let mut first = sequences.start;
        while first < sequences.end {
            let n = usize::try_from(sequences.end - first)
                .unwrap_or(usize::MAX)
                .min(BATCH_RECORDS_CAP);
            encode_records(&mut self.buffer, first, &vec![watermark; n])?;
            first += n as u64;
            if self.buffer.len() >= BUFFER {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Write out what is buffered, then `header` at the start.
    ///
    /// # Errors
    /// I/O errors.
    pub(super) fn finish(mut self, header: &[u8]) -> Result<()> {
        self.flush()?;
        self.file
            .write_all_at(header, 0)
            .map_err(|e| Error::io("write", self.path, e))
    }

    fn flush(&mut self) -> Result<()> {
        let buffer = std::mem::take(&mut self.buffer);
        self.write(&buffer)?;
        self.buffer = buffer;
        self.buffer.clear();
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all_at(bytes, self.written)
            .map_err(|e| Error::io("write", self.path, e))?;
        self.written += bytes.len() as u64;
        Ok(())
    }
}

/// `<dest>.damaged`: a temp file opened at the first damaged byte, renamed into place by
/// [`Self::finish`], removed if the salvage fails first.
pub(super) struct Sidecar<'a> {
    vfs: &'a dyn Vfs,
    target: PathBuf,
    open: Option<(Box<dyn VfsFile>, PathBuf)>,
    written: u64,
}

impl<'a> Sidecar<'a> {
    /// The sidecar `target`, not yet created.
    pub(super) const fn new(vfs: &'a dyn Vfs, target: PathBuf) -> Self {
        Self {
            vfs,
            target,
            open: None,
            written: 0,
        }
    }

    /// Append the `len` bytes of `source` at `at`.
    ///
    /// # Errors
    /// I/O errors.
    pub(super) fn append(&mut self, source: &Source, at: u64, len: u64) -> Result<()> {
        if self.open.is_none() {
            let temp = temp_path(&self.target);
            let file = self
                .vfs
                .open(&temp, OpenMode::CreateNew)
                .map_err(|e| Error::io("create", &self.target, e))?;
            self.open = Some((file, temp));
        }
        if let Some((file, temp)) = &mut self.open {
            source.copy(at, len, file.as_mut(), temp, self.written)?;
        }
        self.written += len;
        Ok(())
    }

    /// Make the sidecar durable under its name; its path, or `None` when nothing was damaged.
    /// (The rename is durable with the directory's next fsync: the new log's publication.)
    ///
    /// # Errors
    /// I/O errors.
    pub(super) fn finish(mut self) -> Result<Option<PathBuf>> {
        let Some((mut file, temp)) = self.open.take() else {
            return Ok(None);
        };
        let placed = file
            .sync_data()
            .map_err(|e| Error::io("fdatasync", &temp, e))
            .and_then(|()| {
                self.vfs
                    .rename(&temp, &self.target)
                    .map_err(|e| Error::io("rename", &self.target, e))
            });
        if placed.is_err() {
            remove_quietly(self.vfs, &temp);
        }
        placed.map(|()| Some(std::mem::take(&mut self.target)))
    }
}

impl Drop for Sidecar<'_> {
    fn drop(&mut self) {
        if let Some((_, temp)) = self.open.take() {
            remove_quietly(self.vfs, &temp);
        }
    }
}
