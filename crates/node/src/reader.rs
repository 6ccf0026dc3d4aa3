//! `NativeReader`: batches of verified entries read on the libuv thread pool.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use napi::bindgen_prelude::AsyncTask;
use napi_derive::napi;
use selene_persist_engine::io::StdFs;
use selene_persist_engine::{Entry, Error, WalReader};

use crate::convert::{NativeEntry, NativeTailRepair, entries, to_f64, to_u64};
use crate::task::{Blocking, blocking};

/// A WAL reader; each batch is read off the JS thread.
#[napi]
pub struct NativeReader {
    inner: Arc<Mutex<Option<WalReader>>>,
}

#[napi]
impl NativeReader {
    /// Open the WAL at `path` for reading.
    #[napi(ts_return_type = "Promise<NativeReader>")]
    pub fn open(path: String) -> AsyncTask<Blocking<WalReader, NativeReader>> {
        let path = PathBuf::from(path);
        blocking(
            move || WalReader::open(&StdFs::shared(), &path),
            |reader| NativeReader {
                inner: Arc::new(Mutex::new(Some(reader))),
            },
        )
    }

    /// The next entries with sequence >= `from`; an empty array means the end.
    #[napi(catch_unwind, ts_return_type = "Promise<NativeEntry[]>")]
    pub fn next_batch(
        &self,
        from: f64,
        max_entries: u32,
        max_bytes: u32,
    ) -> napi::Result<AsyncTask<Blocking<Vec<Entry>, Vec<NativeEntry>>>> {
        let from = to_u64("from", from)?;
        let inner = Arc::clone(&self.inner);
        Ok(blocking(
            move || {
                let mut guard = inner.lock().unwrap_or_else(PoisonError::into_inner);
                let reader = guard.as_mut().ok_or(Error::Closed { what: "reader" })?;
                reader.next_batch(from, max_entries.max(1) as usize, max_bytes.max(1) as usize)
            },
            entries,
        ))
    }

    /// The snapshot sequence in the file header, or `null` once closed.
    #[napi(catch_unwind)]
    pub fn snapshot_seq(&self) -> Option<f64> {
        let guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        guard.as_ref().map(|r| to_f64(r.snapshot_seq()))
    }

    /// The torn tail the reader stopped at, once it reached the end.
    #[napi(catch_unwind)]
    pub fn torn_tail(&self) -> Option<NativeTailRepair> {
        let guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        guard
            .as_ref()
            .and_then(WalReader::torn_tail)
            .map(Into::into)
    }

    /// Release the file.
    #[napi(catch_unwind)]
    pub fn close(&self) {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}
