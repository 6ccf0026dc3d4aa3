//! `NativeReader`: batches of verified entries read on the libuv thread pool.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use napi::bindgen_prelude::AsyncTask;
use napi::{Env, Task};
use napi_derive::napi;
use selene_persist_engine::io::StdFs;
use selene_persist_engine::{Entry, Error, WalReader};

use crate::convert::{NativeEntry, NativeTailRepair, js_error, to_u64};

/// A WAL reader; each batch is read off the JS thread.
#[napi]
pub struct NativeReader {
    inner: Arc<Mutex<Option<WalReader>>>,
}

/// Opens a reader on the thread pool.
pub struct OpenReader {
    path: PathBuf,
}

impl Task for OpenReader {
    type Output = WalReader;
    type JsValue = NativeReader;

    fn compute(&mut self) -> napi::Result<WalReader> {
        WalReader::open(&StdFs::shared(), &self.path).map_err(|e| js_error(&e))
    }

    fn resolve(&mut self, _env: Env, reader: WalReader) -> napi::Result<NativeReader> {
        Ok(NativeReader {
            inner: Arc::new(Mutex::new(Some(reader))),
        })
    }
}

/// Reads one batch on the thread pool.
pub struct ReadBatch {
    inner: Arc<Mutex<Option<WalReader>>>,
    from: u64,
    max_entries: usize,
    max_bytes: usize,
}

impl Task for ReadBatch {
    type Output = Vec<Entry>;
    type JsValue = Vec<NativeEntry>;

    fn compute(&mut self) -> napi::Result<Vec<Entry>> {
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let reader = guard
            .as_mut()
            .ok_or_else(|| js_error(&Error::Closed { what: "reader" }))?;
        reader
            .next_batch(self.from, self.max_entries, self.max_bytes)
            .map_err(|e| js_error(&e))
    }

    fn resolve(&mut self, _env: Env, batch: Vec<Entry>) -> napi::Result<Vec<NativeEntry>> {
        Ok(batch.into_iter().map(NativeEntry::from).collect())
    }
}

#[napi]
impl NativeReader {
    /// Open the WAL at `path` for reading.
    #[napi(ts_return_type = "Promise<NativeReader>")]
    pub fn open(path: String) -> AsyncTask<OpenReader> {
        AsyncTask::new(OpenReader {
            path: PathBuf::from(path),
        })
    }

    /// The next entries with sequence >= `from`; an empty array means the end.
    #[napi(catch_unwind, ts_return_type = "Promise<NativeEntry[]>")]
    pub fn next_batch(
        &self,
        from: f64,
        max_entries: u32,
        max_bytes: u32,
    ) -> napi::Result<AsyncTask<ReadBatch>> {
        Ok(AsyncTask::new(ReadBatch {
            inner: Arc::clone(&self.inner),
            from: to_u64("from", from)?,
            max_entries: max_entries.max(1) as usize,
            max_bytes: max_bytes.max(1) as usize,
        }))
    }

    /// The snapshot sequence in the file header, or `null` once closed.
    #[napi(catch_unwind)]
    pub fn snapshot_seq(&self) -> Option<f64> {
        let guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        guard
            .as_ref()
            .map(|r| crate::convert::to_f64(r.snapshot_seq()))
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
