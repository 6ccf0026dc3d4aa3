//! `NativeWriter`: a WAL writer owned by its committer thread, with Promise-returning calls.
//! The committer operations are free functions so `NativeStore` shares them.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;

use napi::Env;
use napi::bindgen_prelude::{AsyncTask, Object, ToNapiValue, Uint8Array};
use napi_derive::napi;
use selene_persist_engine::io::StdFs;
use selene_persist_engine::publish::dir_of;
use selene_persist_engine::retention::{PruneOutcome, prune};
use selene_persist_engine::rotation::{Anchor, Rotation, rotate};
use selene_persist_engine::{Committer, NewEntry, Result, WalWriter};

use crate::convert::{
    NativeMeta, NativeOpenOptions, NativePolicy, NativePruneOutcome, NativeRotation, NativeSection,
    NativeTailRepair, js_error, new_entry, snapshot_builder, to_f64, to_u64,
};
use crate::task::{Blocking, blocking};

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

/// A Promise settled from the committer thread.
pub fn promise<'env, T, R>(
    env: &'env Env,
    map: fn(T) -> R,
    submit: impl FnOnce(Box<dyn FnOnce(Result<T>) + Send>),
) -> napi::Result<Object<'env>>
where
    T: Send + 'static,
    R: ToNapiValue + 'static,
{
    let (deferred, promise) = env.create_deferred()?;
    submit(Box::new(move |outcome: Result<T>| match outcome {
        Ok(value) => deferred.resolve(move |_| Ok(map(value))),
        Err(error) => deferred.reject(js_error(&error)),
    }));
    Ok(promise)
}

fn first(range: RangeInclusive<u64>) -> f64 {
    to_f64(*range.start())
}

/// Queue one entry on `committer`.
pub fn append<'env>(
    env: &'env Env,
    committer: &Committer,
    payload: &[u8],
    meta: Option<NativeMeta>,
) -> napi::Result<Object<'env>> {
    let entry = new_entry(payload, meta)?;
    promise(env, first, |reply| committer.append(vec![entry], reply))
}

/// Queue many entries on `committer` as one commit.
pub fn append_batch<'env>(
    env: &'env Env,
    committer: &Committer,
    payloads: &[Uint8Array],
) -> napi::Result<Object<'env>> {
    let entries: Vec<NewEntry> = payloads
        .iter()
        .map(|p| new_entry(p, None))
        .collect::<napi::Result<_>>()?;
    promise(env, first, |reply| committer.append(entries, reply))
}

/// Flush `committer`'s writer.
pub fn flush<'env>(env: &'env Env, committer: &Committer) -> napi::Result<Object<'env>> {
    promise(env, |()| (), |reply| committer.flush(reply))
}

/// Close `committer`'s writer.
pub fn close<'env>(env: &'env Env, committer: &Committer) -> napi::Result<Object<'env>> {
    promise(env, |()| (), |reply| committer.close(reply))
}

/// `committer`'s writer state.
pub fn state(committer: &Committer) -> NativeWriterState {
    let state = committer.state();
    NativeWriterState {
        last_sequence: to_f64(state.last_sequence),
        committed_offset: to_f64(state.committed_offset),
        snapshot_seq: to_f64(state.snapshot_seq),
        entries_since_fsync: to_f64(state.entries_since_fsync),
        poisoned: state.poisoned,
        closed: committer.is_closed(),
    }
}

/// A WAL writer. Appends are queued to its committer thread; fsync never runs on the JS thread.
#[napi]
pub struct NativeWriter {
    committer: Arc<Committer>,
    path: PathBuf,
}

#[napi]
impl NativeWriter {
    /// Open (creating if absent) the WAL at `path`.
    #[napi(ts_return_type = "Promise<NativeWriter>")]
    pub fn open(
        path: String,
        options: NativeOpenOptions,
    ) -> napi::Result<AsyncTask<Blocking<(Committer, PathBuf), NativeWriter>>> {
        let options = options.try_into()?;
        let path = PathBuf::from(path);
        Ok(blocking(
            move || {
                Ok((
                    Committer::start(WalWriter::open(&StdFs::shared(), &path, options)?)?,
                    path,
                ))
            },
            |(committer, path)| NativeWriter {
                committer: Arc::new(committer),
                path,
            },
        ))
    }

    /// Queue one entry; resolves with its sequence once as durable as the policy promises.
    #[napi(catch_unwind, ts_return_type = "Promise<number>")]
    pub fn append<'env>(
        &self,
        env: &'env Env,
        payload: Uint8Array,
        meta: Option<NativeMeta>,
    ) -> napi::Result<Object<'env>> {
        append(env, &self.committer, &payload, meta)
    }

    /// Queue many entries as one commit; resolves with the first sequence (they are contiguous).
    #[napi(catch_unwind, ts_return_type = "Promise<number>")]
    pub fn append_batch<'env>(
        &self,
        env: &'env Env,
        payloads: Vec<Uint8Array>,
    ) -> napi::Result<Object<'env>> {
        append_batch(env, &self.committer, &payloads)
    }

    /// Make everything committed so far durable.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn flush<'env>(&self, env: &'env Env) -> napi::Result<Object<'env>> {
        flush(env, &self.committer)
    }

    /// Commit what is queued, make it durable (unless manual), release the lock.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn close<'env>(&self, env: &'env Env) -> napi::Result<Object<'env>> {
        close(env, &self.committer)
    }

    /// The state after the last commit.
    #[napi(catch_unwind)]
    pub fn state(&self) -> NativeWriterState {
        state(&self.committer)
    }

    /// The torn tail cut at open, if any.
    #[napi(catch_unwind)]
    pub fn tail_repair(&self) -> Option<NativeTailRepair> {
        self.committer.tail_repair().map(Into::into)
    }

    /// Snapshot `sections` at the last sequence `sequence` and rotate through the MANIFEST.
    #[napi(catch_unwind, ts_return_type = "Promise<NativeRotation>")]
    pub fn rotate_with_manifest(
        &self,
        sequence: f64,
        sections: Vec<NativeSection>,
        level: i32,
    ) -> napi::Result<AsyncTask<Blocking<Rotation, NativeRotation>>> {
        let sequence = to_u64("sequence", sequence)?;
        let builder = snapshot_builder(sequence, sections, level)?;
        let (committer, path) = (Arc::clone(&self.committer), self.path.clone());
        Ok(blocking(
            move || {
                rotate(
                    &committer,
                    &StdFs::shared(),
                    &path,
                    builder,
                    Anchor::LastSequence(sequence),
                )
            },
            NativeRotation::from,
        ))
    }

    /// Apply a retention policy to the WAL's directory.
    #[napi(catch_unwind, ts_return_type = "Promise<NativePruneOutcome>")]
    pub fn prune(
        &self,
        policy: NativePolicy,
    ) -> napi::Result<AsyncTask<Blocking<PruneOutcome, NativePruneOutcome>>> {
        let policy = policy.try_into()?;
        let dir = dir_of(&self.path).to_path_buf();
        Ok(blocking(
            move || {
                prune(
                    StdFs::shared().as_ref(),
                    &dir,
                    &policy,
                    std::time::SystemTime::now(),
                )
            },
            NativePruneOutcome::from,
        ))
    }
}
