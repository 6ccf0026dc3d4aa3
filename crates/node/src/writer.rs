//! `NativeWriter`: a WAL writer owned by its committer thread, with Promise-returning calls.

use std::path::PathBuf;

use napi::bindgen_prelude::{AsyncTask, Object, Uint8Array};
use napi::{Env, Task};
use napi_derive::napi;
use selene_persist_engine::io::StdFs;
use selene_persist_engine::{Committer, NewEntry, Result, WalOptions, WalWriter};

use crate::convert::{
    NativeMeta, NativeOpenOptions, NativeTailRepair, js_error, new_entry, to_f64,
};

/// The writer's state after its last commit.
#[napi(object)]
pub struct NativeWriterState {
    /// Last committed sequence.
    pub last_sequence: f64,
    /// Offset just past it.
    pub committed_offset: f64,
    /// Snapshot sequence in the header.
    pub snapshot_seq: f64,
    /// Committed entries not yet fdatasynced.
    pub entries_since_fsync: f64,
    /// Why the writer is poisoned, if it is.
    pub poisoned: Option<String>,
    /// Whether close has been called.
    pub closed: bool,
}

/// A WAL writer. Appends are queued to its committer thread; fsync never runs on the JS thread.
#[napi]
pub struct NativeWriter {
    committer: Committer,
}

/// Opens a writer on the libuv thread pool (the open scans the file).
pub struct OpenWriter {
    path: PathBuf,
    options: WalOptions,
}

impl Task for OpenWriter {
    type Output = Committer;
    type JsValue = NativeWriter;

    fn compute(&mut self) -> napi::Result<Committer> {
        WalWriter::open(&StdFs::shared(), &self.path, self.options)
            .and_then(Committer::start)
            .map_err(|e| js_error(&e))
    }

    fn resolve(&mut self, _env: Env, committer: Committer) -> napi::Result<NativeWriter> {
        Ok(NativeWriter { committer })
    }
}

/// A Promise settled from the committer thread.
fn promise<T, R>(
    env: &Env,
    map: fn(T) -> R,
    submit: impl FnOnce(Box<dyn FnOnce(Result<T>) + Send>),
) -> napi::Result<Object<'_>>
where
    T: Send + 'static,
    R: napi::bindgen_prelude::ToNapiValue + 'static,
{
    let (deferred, promise) = env.create_deferred()?;
    submit(Box::new(move |outcome: Result<T>| match outcome {
        Ok(value) => deferred.resolve(move |_| Ok(map(value))),
        Err(error) => deferred.reject(js_error(&error)),
    }));
    Ok(promise)
}

#[napi]
impl NativeWriter {
    /// Open (creating if absent) the WAL at `path`.
    #[napi(ts_return_type = "Promise<NativeWriter>")]
    pub fn open(path: String, options: NativeOpenOptions) -> napi::Result<AsyncTask<OpenWriter>> {
        Ok(AsyncTask::new(OpenWriter {
            path: PathBuf::from(path),
            options: options.try_into()?,
        }))
    }

    /// Queue one entry; resolves with its sequence once as durable as the policy promises.
    #[napi(catch_unwind, ts_return_type = "Promise<number>")]
    pub fn append<'env>(
        &self,
        env: &'env Env,
        payload: Uint8Array,
        meta: Option<NativeMeta>,
    ) -> napi::Result<Object<'env>> {
        let entry = new_entry(&payload, meta)?;
        promise(
            env,
            |range: std::ops::RangeInclusive<u64>| to_f64(*range.start()),
            |reply| {
                self.committer.append(vec![entry], reply);
            },
        )
    }

    /// Queue many entries as one commit; resolves with the first sequence (they are contiguous).
    #[napi(catch_unwind, ts_return_type = "Promise<number>")]
    pub fn append_batch<'env>(
        &self,
        env: &'env Env,
        payloads: Vec<Uint8Array>,
    ) -> napi::Result<Object<'env>> {
        let entries: Vec<NewEntry> = payloads
            .iter()
            .map(|p| new_entry(p, None))
            .collect::<napi::Result<_>>()?;
        promise(
            env,
            |range: std::ops::RangeInclusive<u64>| to_f64(*range.start()),
            |reply| {
                self.committer.append(entries, reply);
            },
        )
    }

    /// Make everything committed so far durable.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn flush<'env>(&self, env: &'env Env) -> napi::Result<Object<'env>> {
        promise(env, |()| (), |reply| self.committer.flush(reply))
    }

    /// Commit what is queued, make it durable (unless manual), release the lock.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn close<'env>(&self, env: &'env Env) -> napi::Result<Object<'env>> {
        promise(env, |()| (), |reply| self.committer.close(reply))
    }

    /// The state after the last commit.
    #[napi(catch_unwind)]
    pub fn state(&self) -> NativeWriterState {
        let state = self.committer.state();
        NativeWriterState {
            last_sequence: to_f64(state.last_sequence),
            committed_offset: to_f64(state.committed_offset),
            snapshot_seq: to_f64(state.snapshot_seq),
            entries_since_fsync: to_f64(state.entries_since_fsync),
            poisoned: state.poisoned,
            closed: self.committer.is_closed(),
        }
    }

    /// The torn tail cut at open, if any.
    #[napi(catch_unwind)]
    pub fn tail_repair(&self) -> Option<NativeTailRepair> {
        self.committer.tail_repair().map(Into::into)
    }
}
