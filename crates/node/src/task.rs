//! One generic off-thread task: run engine work on the libuv pool, map the result on the JS
//! thread. A panic in the work becomes an `INTERNAL` error instead of reaching Node.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use napi::bindgen_prelude::{AsyncTask, ToNapiValue, TypeName};
use napi::{Env, Task};
use selene_persist_engine::{Error, Result};

use crate::chunk::{NativeChunk, Packed};
use crate::convert::js_error;

type Work<T> = Box<dyn FnOnce() -> Result<T> + Send>;

/// Engine work returning `T`, delivered to JS as `R`.
pub struct Blocking<T, R> {
    work: Option<Work<T>>,
    map: fn(T) -> R,
}

/// Run `work` on the thread pool; the Promise resolves with `map` of its result.
pub fn blocking<T, R>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
    map: fn(T) -> R,
) -> AsyncTask<Blocking<T, R>>
where
    T: Send + 'static,
    R: ToNapiValue + TypeName,
{
    AsyncTask::new(Blocking {
        work: Some(Box::new(work)),
        map,
    })
}

impl<T: Send + 'static, R: ToNapiValue + TypeName> Task for Blocking<T, R> {
    type Output = T;
    type JsValue = R;

    fn compute(&mut self) -> napi::Result<T> {
        let work = self
            .work
            .take()
            .ok_or_else(|| js_error(&Error::Internal("task ran twice".into())))?;
        match catch_unwind(AssertUnwindSafe(work)) {
            Ok(result) => result.map_err(|e| js_error(&e)),
            Err(_) => Err(js_error(&Error::Internal(
                "panic in a background task".into(),
            ))),
        }
    }

    fn resolve(&mut self, _env: Env, output: T) -> napi::Result<R> {
        Ok((self.map)(output))
    }
}

/// An engine handle that JS can close while background tasks hold a reference to it.
pub struct Closable<T>(Arc<Mutex<Option<T>>>);

impl<T> Clone for Closable<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T> Closable<T> {
    /// Wrap an open handle.
    pub fn new(inner: T) -> Self {
        Self(Arc::new(Mutex::new(Some(inner))))
    }

    fn guard(&self) -> MutexGuard<'_, Option<T>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Run `f` on the handle, or fail with `Closed { what }`.
    pub fn with<R>(&self, what: &'static str, f: impl FnOnce(&mut T) -> Result<R>) -> Result<R> {
        self.guard().as_mut().map_or(Err(Error::Closed { what }), f)
    }

    /// `f` of the handle, or `None` once closed.
    pub fn peek<R>(&self, f: impl FnOnce(&T) -> Option<R>) -> Option<R> {
        self.guard().as_ref().and_then(f)
    }

    /// Take the handle out, leaving it closed; `None` if it already was.
    pub fn take(&self) -> Option<T> {
        self.guard().take()
    }

    /// Release the handle.
    pub fn close(&self) {
        self.guard().take();
    }
}

/// The read of one chunk: packed on the thread pool, wrapped on the JS thread.
pub type ChunkTask = AsyncTask<Blocking<NativeChunk, NativeChunk>>;

/// The next entries of `inner` as one chunk, read by `batch` on the thread pool (`what` names
/// the handle in a `Closed` error): the one body of every `nextChunk` of a batched reader.
pub fn next_chunk<T: Send + 'static>(
    inner: &Closable<T>,
    what: &'static str,
    max_entries: u32,
    max_bytes: u32,
    batch: fn(&mut T, usize, usize) -> Result<Packed>,
) -> ChunkTask {
    let inner = inner.clone();
    let (entries_max, bytes_max) = (max_entries.max(1) as usize, max_bytes.max(1) as usize);
    blocking(
        move || {
            inner.with(what, |r| {
                batch(r, entries_max, bytes_max).map(Packed::finish)
            })
        },
        std::convert::identity,
    )
}
