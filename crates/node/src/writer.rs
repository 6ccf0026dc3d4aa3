//! `NativeWriter`: a WAL writer owned by its committer thread, with Promise-returning calls.
//! The committer operations are free functions so `NativeStore` shares them.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use napi::Env;
use napi::bindgen_prelude::{AsyncTask, Function, Object, ToNapiValue};
use napi_derive::napi;
use selene_persist_engine::io::StdFs;
use selene_persist_engine::publish::dir_of;
use selene_persist_engine::retention::{PruneOutcome, prune};
use selene_persist_engine::rotation::{Anchor, Rotation, rotate};
use selene_persist_engine::{AppendRequest, Committer, Result, WalWriter};

use crate::convert::{
    NativeMeta, NativeOpenOptions, NativePolicy, NativePruneOutcome, NativeRotation, NativeSection,
    NativeTailRepair, invalid, js_error, new_entry, snapshot_builder, to_f64, to_u64,
};
use crate::settle::{NativeSettled, Settled, Settler};
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

/// Start delivering append outcomes to `callback`; once per writer, before any `submit`.
pub fn listen(
    settler: &OnceLock<Settler>,
    callback: &Function<'_, Settled, ()>,
) -> napi::Result<()> {
    settler
        .set(Settler::new(callback)?)
        .map_err(|_| invalid("listen was already called".into()))
}

/// Queue the appends gathered in one JS tick as one message to `committer`, so they join one
/// group. `data` holds their payloads back to back, `lengths` each payload's length, and
/// `requests` `(ticket, count)` pairs, each taking the next `count` payloads as one unit;
/// `metas`, when given, holds one per request (only for single-entry requests). Everything is
/// copied before this returns. Each request is answered through the settler under its ticket;
/// a request whose metadata does not convert fails alone.
pub fn submit(
    committer: &Committer,
    settler: &OnceLock<Settler>,
    data: &[u8],
    lengths: &[u32],
    requests: &[f64],
    metas: Option<Vec<Option<NativeMeta>>>,
) -> napi::Result<()> {
    let settler = settler
        .get()
        .ok_or_else(|| invalid("listen must be called before submit".into()))?;
    let counts = request_counts(requests, lengths.len())?;
    let payloads = split(data, lengths)?;
    let mut metas = metas.map(Vec::into_iter);
    let mut rest = payloads.as_slice();
    let mut batch = Vec::with_capacity(counts.len());
    for (ticket, count) in counts {
        let (mine, after) = rest.split_at(count);
        rest = after;
        let entries = match metas.as_mut().and_then(Iterator::next).flatten() {
            Some(meta) if count == 1 => new_entry(mine[0], Some(meta)).map(|e| vec![e]),
            Some(_) => Err(invalid("metadata applies to single appends only".into())),
            None => mine.iter().map(|p| new_entry(p, None)).collect(),
        };
        match entries {
            Ok(entries) => batch.push(AppendRequest {
                entries,
                reply: settler.reply(ticket),
            }),
            Err(error) => settler.settle(ticket, Err(error.reason)),
        }
    }
    committer.append_all(batch);
    Ok(())
}

fn malformed() -> napi::Error {
    invalid("a submit's requests, lengths and data do not match".into())
}

/// The `(ticket, count)` pairs of `requests`, checked to take exactly `payloads` payloads.
fn request_counts(requests: &[f64], payloads: usize) -> napi::Result<Vec<(f64, usize)>> {
    if !requests.len().is_multiple_of(2) {
        return Err(malformed());
    }
    let counts = requests
        .chunks_exact(2)
        .map(|pair| match usize::try_from(to_u64("count", pair[1])?) {
            Ok(count) if count > 0 => Ok((pair[0], count)),
            _ => Err(malformed()),
        })
        .collect::<napi::Result<Vec<_>>>()?;
    if counts.iter().map(|&(_, count)| count).sum::<usize>() != payloads {
        return Err(malformed());
    }
    Ok(counts)
}

/// `data` cut into payloads of `lengths`, which must cover it exactly.
fn split<'a>(data: &'a [u8], lengths: &[u32]) -> napi::Result<Vec<&'a [u8]>> {
    let mut rest = data;
    let payloads = lengths
        .iter()
        .map(|&length| {
            let length = usize::try_from(length).map_err(|_| malformed())?;
            if length > rest.len() {
                return Err(malformed());
            }
            let (payload, after) = rest.split_at(length);
            rest = after;
            Ok(payload)
        })
        .collect::<napi::Result<Vec<_>>>()?;
    if rest.is_empty() {
        Ok(payloads)
    } else {
        Err(malformed())
    }
}

/// Append `payload` (with `meta`) behind everything queued, or with no payload just make
/// everything committed durable, on the calling (JS) thread: blocks for the fdatasync. Returns
/// the payload's sequence. Outcomes of earlier appends it waited for are left in the mailbox
/// for [`settled`].
pub fn commit_sync(
    committer: &Committer,
    payload: Option<&[u8]>,
    meta: Option<NativeMeta>,
) -> napi::Result<Option<f64>> {
    let entries = match payload {
        Some(payload) => vec![new_entry(payload, meta)?],
        None if meta.is_some() => return Err(invalid("metadata needs a payload".into())),
        None => Vec::new(),
    };
    committer
        .commit_now(entries)
        .map(|range| range.map(|range| to_f64(*range.start())))
        .map_err(|e| js_error(&e))
}

/// The outcomes waiting in the mailbox, taken now (empty before `listen`).
pub fn settled(settler: &OnceLock<Settler>) -> NativeSettled {
    settler.get().map_or_else(
        || NativeSettled {
            settled: Vec::new().into(),
            failures: Vec::new(),
        },
        Settler::drain,
    )
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
    settler: OnceLock<Settler>,
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
                settler: OnceLock::new(),
                path,
            },
        ))
    }

    /// Deliver append outcomes to `callback`; call once, before `submit`.
    #[napi(
        catch_unwind,
        ts_args_type = "callback: (settled: Float64Array, failures: string[]) => void"
    )]
    pub fn listen(&self, callback: Function<'_, Settled, ()>) -> napi::Result<()> {
        listen(&self.settler, &callback)
    }

    /// Queue one tick's appends: payloads back to back in `data`, their `lengths`,
    /// `(ticket, count)` pairs and optional metadata per request. Outcomes arrive through the
    /// `listen` callback.
    #[napi(catch_unwind)]
    pub fn submit(
        &self,
        data: &[u8],
        lengths: &[u32],
        requests: &[f64],
        metas: Option<Vec<Option<NativeMeta>>>,
    ) -> napi::Result<()> {
        submit(
            &self.committer,
            &self.settler,
            data,
            lengths,
            requests,
            metas,
        )
    }

    /// Append `payload` behind everything queued (or, with none, make everything committed
    /// durable) and fdatasync on this thread: blocks. Returns the payload's sequence.
    #[napi(catch_unwind)]
    pub fn commit_sync(
        &self,
        payload: Option<&[u8]>,
        meta: Option<NativeMeta>,
    ) -> napi::Result<Option<f64>> {
        commit_sync(&self.committer, payload, meta)
    }

    /// The append outcomes that arrived and were not yet delivered to the `listen` callback.
    #[napi(catch_unwind)]
    pub fn take_settled(&self) -> NativeSettled {
        settled(&self.settler)
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
