//! `NativeStore`: a recovered store directory; appends through its committer.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use napi::Env;
use napi::bindgen_prelude::{AsyncTask, Function, Object};
use napi_derive::napi;
use selene_persist_engine::Entry;
use selene_persist_engine::io::StdFs;
use selene_persist_engine::retention::PruneOutcome;
use selene_persist_engine::rotation::Rotation;
use selene_persist_engine::store::{Replay, Store};

use crate::convert::{
    NativeChunk, NativeMeta, NativeOpenOptions, NativePolicy, NativePruneOutcome, NativeRotation,
    NativeSection, NativeTailRepair, chunk, js_error, sections, to_f64, to_u64,
};
use crate::settle::{NativeSettled, Settled, Settler};
use crate::snapshot::NativeSnapshotReader;
use crate::task::{Blocking, Closable, blocking};
use crate::writer::{self, NativeWriterState};

/// What recovery found and did.
#[napi(object)]
pub struct NativeRecovery {
    /// Sequence of the live snapshot (0: none).
    pub snapshot_seq: f64,
    /// Whether a rotation interrupted after its commit was finished.
    pub finished_rotation: bool,
}

/// An open store.
#[napi]
pub struct NativeStore {
    store: Arc<Store>,
    settler: OnceLock<Settler>,
}

#[napi]
impl NativeStore {
    /// Create or recover the store in `dir`.
    #[napi(ts_return_type = "Promise<NativeStore>")]
    pub fn open(
        dir: String,
        options: NativeOpenOptions,
    ) -> napi::Result<AsyncTask<Blocking<Store, NativeStore>>> {
        let options = options.try_into()?;
        let dir = PathBuf::from(dir);
        Ok(blocking(
            move || Store::open(&StdFs::shared(), &dir, options),
            |store| NativeStore {
                store: Arc::new(store),
                settler: OnceLock::new(),
            },
        ))
    }

    /// Deliver append outcomes to `callback`; call once, before `submit`.
    #[napi(
        catch_unwind,
        ts_args_type = "callback: (settled: Float64Array, failures: string[]) => void"
    )]
    pub fn listen(&self, callback: Function<'_, Settled, ()>) -> napi::Result<()> {
        writer::listen(&self.settler, &callback)
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
        writer::submit(
            self.store.committer(),
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
        writer::commit_sync(self.store.committer(), payload, meta)
    }

    /// The append outcomes that arrived and were not yet delivered to the `listen` callback.
    #[napi(catch_unwind)]
    pub fn take_settled(&self) -> NativeSettled {
        writer::settled(&self.settler)
    }

    /// Make everything committed so far durable.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn flush<'env>(&self, env: &'env Env) -> napi::Result<Object<'env>> {
        writer::flush(env, self.store.committer())
    }

    /// Commit what is queued, make it durable (unless manual), release the locks.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn close<'env>(&self, env: &'env Env) -> napi::Result<Object<'env>> {
        writer::close(env, self.store.committer())
    }

    /// The WAL writer's state.
    #[napi(catch_unwind)]
    pub fn state(&self) -> NativeWriterState {
        writer::state(self.store.committer())
    }

    /// The torn tail cut at open, if any.
    #[napi(catch_unwind)]
    pub fn tail_repair(&self) -> Option<NativeTailRepair> {
        self.store.committer().tail_repair().map(Into::into)
    }

    /// What recovery found and did.
    #[napi(catch_unwind)]
    pub fn recovery(&self) -> NativeRecovery {
        let recovery = self.store.recovery();
        NativeRecovery {
            snapshot_seq: to_f64(recovery.snapshot_seq),
            finished_rotation: recovery.finished_rotation,
        }
    }

    /// The live snapshot, if any.
    #[napi(catch_unwind)]
    pub fn snapshot(&self) -> Option<NativeSnapshotReader> {
        self.store.snapshot().map(Into::into)
    }

    /// A replay of the entries after the live snapshot, from `from` on.
    #[napi(catch_unwind, ts_return_type = "Promise<NativeReplay>")]
    pub fn replay(&self, from: f64) -> napi::Result<AsyncTask<Blocking<Replay, NativeReplay>>> {
        let from = to_u64("from", from)?;
        let store = Arc::clone(&self.store);
        Ok(blocking(
            move || store.replay(from),
            |replay| NativeReplay {
                inner: Closable::new(replay),
            },
        ))
    }

    /// Queue a checkpoint watermark now; resolves with its sequence. The sections later given
    /// to `finishCheckpoint` must hold the state after every append queued before this.
    #[napi(catch_unwind, ts_return_type = "Promise<number>")]
    pub fn begin_checkpoint<'env>(&self, env: &'env Env) -> napi::Result<Object<'env>> {
        writer::promise(env, to_f64, |reply| self.store.begin_checkpoint(reply))
    }

    /// Snapshot `sections` at the sequence `beginCheckpoint` returned and rotate.
    #[napi(catch_unwind, ts_return_type = "Promise<NativeRotation>")]
    pub fn finish_checkpoint(
        &self,
        sequence: f64,
        sections_in: Vec<NativeSection>,
    ) -> napi::Result<AsyncTask<Blocking<Rotation, NativeRotation>>> {
        let sequence = to_u64("sequence", sequence)?;
        let builder = self
            .store
            .builder(sections(sections_in))
            .map_err(|e| js_error(&e))?;
        let store = Arc::clone(&self.store);
        Ok(blocking(
            move || store.finish_checkpoint(builder, sequence),
            NativeRotation::from,
        ))
    }

    /// Apply a retention policy.
    #[napi(catch_unwind, ts_return_type = "Promise<NativePruneOutcome>")]
    pub fn prune(
        &self,
        policy: NativePolicy,
    ) -> napi::Result<AsyncTask<Blocking<PruneOutcome, NativePruneOutcome>>> {
        let policy = policy.try_into()?;
        let store = Arc::clone(&self.store);
        Ok(blocking(
            move || store.prune(&policy),
            NativePruneOutcome::from,
        ))
    }
}

/// Batches of replayed entries.
#[napi]
pub struct NativeReplay {
    inner: Closable<Replay>,
}

#[napi]
impl NativeReplay {
    /// The next entries, packed in one chunk; an empty chunk means the end.
    #[napi(catch_unwind, ts_return_type = "Promise<NativeChunk>")]
    pub fn next_chunk(
        &self,
        max_entries: u32,
        max_bytes: u32,
    ) -> AsyncTask<Blocking<Vec<Entry>, NativeChunk>> {
        let inner = self.inner.clone();
        let (entries_max, bytes_max) = (max_entries.max(1) as usize, max_bytes.max(1) as usize);
        blocking(
            move || inner.with("replay", |r| r.next_batch(entries_max, bytes_max)),
            chunk,
        )
    }

    /// Release the file.
    #[napi(catch_unwind)]
    pub fn close(&self) {
        self.inner.close();
    }
}
