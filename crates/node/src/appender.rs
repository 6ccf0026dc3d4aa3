//! `NativeAppender`: appends to a WAL through its committer thread, written once for a plain
//! WAL writer (`openWriter`) and a store (`NativeStore.appender`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use bytes::{Bytes, BytesMut};
use napi::Env;
use napi::bindgen_prelude::{AsyncTask, Function, Object, ToNapiValue};
use napi::threadsafe_function::ThreadsafeFunctionCallMode;
use napi_derive::napi;
use selene_persist_engine::io::StdFs;
use selene_persist_engine::{
    AppendRequest, Committer, NewEntries, Result, Sink, WalWriter, Watcher, WriterState,
};

use crate::convert::{
    NativeMeta, NativeOpenOptions, NativeTailRepair, invalid, js_error, new_entry, to_f64, to_u64,
};
use crate::settle::{NativeSettled, Settled, Settler};
use crate::stats::NativeStats;
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
    /// fdatasyncs of the WAL since it opened.
    pub fdatasyncs: f64,
    /// Frame bytes written since it opened.
    pub written_bytes: f64,
    /// Microseconds in writes since it opened.
    pub write_us: f64,
    /// Microseconds in fdatasyncs of the WAL since it opened.
    pub fdatasync_us: f64,
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

/// Appends, flushes and close of one WAL writer, owned by its committer thread. fsync never runs
/// on the JS thread, except in `commitSync`, which blocks on purpose.
#[napi]
pub struct NativeAppender {
    /// Its own committer, or a shared store's handle.
    committer: Arc<dyn Sink>,
    settler: OnceLock<Settler>,
    /// What `watch` registered; dropped at close, which lets go of its JS callback.
    watcher: Mutex<Option<Watcher>>,
}

impl NativeAppender {
    /// An appender over `committer`, delivering nothing until `listen` is called.
    pub const fn new(committer: Arc<dyn Sink>) -> Self {
        Self {
            committer,
            settler: OnceLock::new(),
            watcher: Mutex::new(None),
        }
    }

    fn settler(&self) -> napi::Result<&Settler> {
        self.settler
            .get()
            .ok_or_else(|| invalid("listen must be called before submit".into()))
    }
}

#[napi]
impl NativeAppender {
    /// Open (creating if absent) the WAL at `path` and start its committer thread.
    #[napi(ts_return_type = "Promise<NativeAppender>")]
    pub fn open_writer(
        path: String,
        options: NativeOpenOptions,
    ) -> napi::Result<AsyncTask<Blocking<Committer, NativeAppender>>> {
        let options = options.try_into()?;
        let path = PathBuf::from(path);
        Ok(blocking(
            move || Committer::start(WalWriter::open_alone(&StdFs::shared(), &path, options)?),
            |committer| {
                let committer = Arc::new(committer);
                crate::teardown::register(&committer);
                Self::new(committer)
            },
        ))
    }

    /// Deliver append outcomes to `callback`; call once, before `submit`.
    #[napi(
        catch_unwind,
        ts_args_type = "callback: (settled: Float64Array, failures: string[]) => void"
    )]
    pub fn listen(&self, callback: Function<'_, Settled, ()>) -> napi::Result<()> {
        self.settler
            .set(Settler::new(&callback)?)
            .map_err(|_| invalid("listen was already called".into()))
    }

    /// Call `callback` (on the JS thread) whenever the log changes, whoever committed to it
    /// (another process of a shared store included): at most one call is queued at a time, so a
    /// burst of commits costs one. Weak: it does not keep the process alive. Until close.
    #[napi(catch_unwind)]
    pub fn watch(&self, callback: Function<'_, (), ()>) -> napi::Result<()> {
        let queued = Arc::new(AtomicBool::new(false));
        let taken = Arc::clone(&queued);
        let deliver = callback
            .build_threadsafe_function::<()>()
            .callee_handled::<false>()
            .weak::<true>()
            .build_callback(move |_| {
                taken.store(false, Ordering::Release);
                Ok(())
            })?;
        let watcher: Watcher = Arc::new(move |_: &WriterState| {
            if !queued.swap(true, Ordering::AcqRel) {
                // Fails only while the environment is being torn down.
                let _ = deliver.call((), ThreadsafeFunctionCallMode::NonBlocking);
            }
        });
        self.committer.watch(&watcher);
        *self.watcher.lock().unwrap_or_else(PoisonError::into_inner) = Some(watcher);
        Ok(())
    }

    /// Queue the appends gathered in one JS tick as one message to the committer, so they join
    /// one group. `data` holds their payloads back to back (in one buffer, or in several: a
    /// large request passes its caller's buffers, uncopied by the facade), `lengths` each
    /// payload's length, and `requests` `(ticket, count)` pairs, each taking the next `count`
    /// payloads as one unit; `metas`, when given, holds one per request (only for single-entry
    /// requests).
    /// Everything is copied before this returns. Each request is answered through the
    /// `listen` callback under its ticket; one whose metadata does not convert fails alone.
    /// `chained`: the requests are `appendSync` batches, which fail from the first that does
    /// on (the engine's `AppendRequest::chained`).
    #[napi(catch_unwind)]
    pub fn submit(
        &self,
        data: Vec<&[u8]>,
        lengths: &[u32],
        requests: &[f64],
        metas: Option<Vec<Option<NativeMeta>>>,
        chained: Option<bool>,
    ) -> napi::Result<()> {
        let chained = chained.unwrap_or(false);
        let settler = self.settler()?;
        let counts = request_counts(requests, lengths.len())?;
        let total: u64 = lengths.iter().map(|&l| u64::from(l)).sum();
        if total != data.iter().map(|d| d.len() as u64).sum::<u64>() {
            return Err(malformed());
        }
        // One copy out of JS memory for the whole call, the only one: each request holds a
        // slice of it, its payloads are split only as the committer frames them, and a large
        // one is written from it (see the engine's `WalWriter::stage`).
        let all = copied(&data);
        let mut metas = metas.map(Vec::into_iter);
        let (mut rest, mut at) = (lengths, 0usize);
        let mut batch = Vec::with_capacity(counts.len());
        for (ticket, count) in counts {
            let (mine, after) = rest.split_at(count);
            rest = after;
            let end = at + mine.iter().map(|&l| l as usize).sum::<usize>();
            let payloads = all.slice(at..end);
            at = end;
            let entries = match metas.as_mut().and_then(Iterator::next).flatten() {
                Some(meta) if count == 1 => {
                    new_entry(payloads, Some(meta)).map(|e| NewEntries::from(vec![e]))
                }
                Some(_) => Err(invalid("metadata applies to single appends only".into())),
                None => NewEntries::packed(payloads, mine.to_vec()).map_err(|e| js_error(&e)),
            };
            match entries {
                Ok(entries) => batch.push(AppendRequest {
                    entries,
                    reply: settler.reply(ticket),
                    chained,
                }),
                Err(error) => settler.settle(ticket, Err(error.reason)),
            }
        }
        self.committer.append_all(batch);
        Ok(())
    }

    /// Append `payload` (with `meta`) behind everything queued, or with no payload just make
    /// everything committed durable, on this thread: blocks for the fdatasync. Returns the
    /// payload's sequence. Outcomes of earlier appends it waited for are left for
    /// `takeSettled`.
    #[napi(catch_unwind)]
    pub fn commit_sync(
        &self,
        payload: Option<&[u8]>,
        meta: Option<NativeMeta>,
    ) -> napi::Result<Option<f64>> {
        let entries = match payload {
            Some(payload) => vec![new_entry(Bytes::copy_from_slice(payload), meta)?],
            None if meta.is_some() => return Err(invalid("metadata needs a payload".into())),
            None => Vec::new(),
        };
        self.committer
            .commit_now(entries)
            .map(|range| range.map(|range| to_f64(*range.start())))
            .map_err(|e| js_error(&e))
    }

    /// The append outcomes that arrived and were not yet delivered to the `listen` callback
    /// (none before `listen`).
    #[napi(catch_unwind)]
    pub fn take_settled(&self) -> NativeSettled {
        self.settler.get().map_or_else(
            || NativeSettled {
                settled: Vec::new().into(),
                failures: Vec::new(),
            },
            Settler::drain,
        )
    }

    /// Make everything committed so far durable.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn flush<'env>(&self, env: &'env Env) -> napi::Result<Object<'env>> {
        promise(env, |()| (), |reply| self.committer.flush(reply))
    }

    /// Commit what is queued, make it durable (unless manual), release the file and its lock,
    /// whatever failed before.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn close<'env>(&self, env: &'env Env) -> napi::Result<Object<'env>> {
        // Close answers after every append: then nothing more is delivered to `listen`.
        let settler = self.settler.get().cloned();
        drop(
            self.watcher
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        promise(
            env,
            |()| (),
            |reply| {
                self.committer.close(Box::new(move |outcome| {
                    reply(outcome);
                    if let Some(settler) = settler {
                        settler.release();
                    }
                }));
            },
        )
    }

    /// What the writer has done since it opened.
    #[napi(catch_unwind)]
    pub fn stats(&self) -> NativeStats {
        NativeStats::from(self.committer.stats())
    }

    /// Payload bytes sent and not yet committed or refused, as the committer counts them.
    #[napi(catch_unwind)]
    pub fn queued_bytes(&self) -> f64 {
        to_f64(self.committer.queued_bytes())
    }

    /// Block this thread until at most `limit` payload bytes are queued; `false` if the
    /// committer takes no more appends.
    #[napi(catch_unwind)]
    pub fn wait_for_room(&self, limit: f64) -> napi::Result<bool> {
        Ok(self.committer.wait_for_room(to_u64("limit", limit)?))
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
            fdatasyncs: to_f64(state.fdatasyncs),
            written_bytes: to_f64(state.io.written_bytes),
            write_us: to_f64(state.io.write_us),
            fdatasync_us: to_f64(state.io.fdatasync_us),
        }
    }

    /// The torn tail cut at open, if any.
    #[napi(catch_unwind)]
    pub fn tail_repair(&self) -> Option<NativeTailRepair> {
        self.committer.tail_repair().map(|repair| NativeTailRepair {
            saved_path: self
                .committer
                .torn_file()
                .map(|p| p.to_string_lossy().into_owned()),
            ..repair.into()
        })
    }
}

/// The bytes of `parts`, back to back, in one buffer of their own.
fn copied(parts: &[&[u8]]) -> Bytes {
    if let [one] = parts {
        return Bytes::copy_from_slice(one);
    }
    let mut all = BytesMut::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        all.extend_from_slice(part);
    }
    all.freeze()
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
