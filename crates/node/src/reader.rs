//! `NativeReader`: batches of verified entries read on the libuv thread pool.

use std::path::PathBuf;

use napi::bindgen_prelude::AsyncTask;
use napi_derive::napi;
use selene_persist_engine::filename::wal_of;
use selene_persist_engine::io::StdFs;
use selene_persist_engine::{Error, WalReader};

use crate::chunk::{NativeChunk, Packed};
use crate::convert::{NativeTailRepair, to_f64, to_u64};
use crate::prefetch::ReadAhead;
use crate::task::{Blocking, ChunkTask, Closable, blocking};

/// A WAL reader; batches are read ahead on a thread of its own.
#[napi]
pub struct NativeReader {
    ahead: ReadAhead<WalReader>,
}

#[napi]
impl NativeReader {
    /// Open the WAL at `path` (a WAL file, or a store directory's active WAL) for reading.
    #[napi(ts_return_type = "Promise<NativeReader>")]
    pub fn open(path: String) -> AsyncTask<Blocking<WalReader, NativeReader>> {
        let path = PathBuf::from(path);
        blocking(
            move || {
                let vfs = StdFs::shared();
                let wal = wal_of(vfs.as_ref(), &path).map_err(|e| Error::io("stat", &path, e))?;
                WalReader::open(&vfs, &wal)
            },
            |reader| NativeReader {
                ahead: ReadAhead::new(Closable::new(reader), "reader"),
            },
        )
    }

    /// The next entries with sequence >= `from` (checkpoint watermarks only if asked), packed
    /// in one chunk; an empty chunk means the end. Chunks after it are read ahead meanwhile
    /// (with the same arguments).
    #[napi(catch_unwind, ts_return_type = "Promise<NativeChunk>")]
    pub fn next_chunk(
        &self,
        from: f64,
        max_entries: u32,
        max_bytes: u32,
        watermarks: bool,
    ) -> napi::Result<ChunkTask> {
        let from = to_u64("from", from)?;
        let (entries_max, bytes_max) = (max_entries.max(1) as usize, max_bytes.max(1) as usize);
        self.ahead.next(Box::new(move |r: &mut WalReader| {
            r.next_batch::<Packed>(from, entries_max, bytes_max, watermarks)
        }))
    }

    /// A chunk read ahead already, without waiting; `null` if none is ready.
    #[napi(catch_unwind)]
    pub fn take_chunk(&self) -> napi::Result<Option<NativeChunk>> {
        self.ahead.take()
    }

    /// The snapshot sequence in the file header, or `null` once closed.
    #[napi(catch_unwind)]
    pub fn snapshot_seq(&self) -> Option<f64> {
        self.ahead.source().peek(|r| Some(to_f64(r.snapshot_seq())))
    }

    /// The torn tail the reader stopped at, once it reached the end.
    #[napi(catch_unwind)]
    pub fn torn_tail(&self) -> Option<NativeTailRepair> {
        self.ahead
            .source()
            .peek(WalReader::torn_tail)
            .map(Into::into)
    }

    /// Release the file.
    #[napi(catch_unwind)]
    pub fn close(&self) {
        self.ahead.close();
    }
}
