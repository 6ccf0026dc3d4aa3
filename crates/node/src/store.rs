//! `NativeStore`: a recovered store directory; appends through its committer.

use std::path::PathBuf;
use std::sync::Arc;

use napi::Env;
use napi::bindgen_prelude::{AsyncTask, Object};
use napi_derive::napi;
use selene_persist_engine::consumer::Summary;
use selene_persist_engine::io::StdFs;
use selene_persist_engine::retention::{PruneOutcome, RetentionPolicy};
use selene_persist_engine::rotation::Rotation;
#[cfg(unix)]
use selene_persist_engine::shared::{SharedOptions, SharedStore};
use selene_persist_engine::store::{Replay, Store};
use selene_persist_engine::{Sink, WalOptions};

use crate::appender::{NativeAppender, promise};
use crate::chunk::{NativeChunk, Packed};
use crate::convert::{
    NativeOpenOptions, NativePolicy, NativePruneOutcome, NativeRotation, NativeSection, js_error,
    sections, to_f64, to_u64,
};
use crate::follow::{NativeConsumer, native_consumers};
use crate::prefetch::ReadAhead;
use crate::snapshot::NativeSnapshotReader;
use crate::task::{Blocking, ChunkTask, Closable, blocking};

/// What recovery found and did.
#[napi(object)]
pub struct NativeRecovery {
    /// Sequence of the live snapshot (0: none).
    pub snapshot_seq: f64,
    /// Whether a rotation interrupted after its commit was finished.
    pub finished_rotation: bool,
    /// Consumers whose position was past the recovered end of the log, set back to it.
    pub capped_consumers: Vec<NativeCappedConsumer>,
}

/// A consumer position found past the end of the log at open, and set back to it.
#[napi(object)]
pub struct NativeCappedConsumer {
    /// The consumer.
    pub name: String,
    /// The position its file held.
    pub position: f64,
    /// The position it holds now: the last sequence of the log.
    pub capped_to: f64,
}

/// An open store: this process's own, or one shared with other processes (this process its
/// owner or a client of the owner).
#[napi]
pub struct NativeStore {
    store: Opened,
}

/// How this process has the store.
#[derive(Clone)]
pub enum Opened {
    /// Its own: no other process may open it.
    Alone(Arc<Store>),
    /// Shared with other processes.
    #[cfg(unix)]
    Shared(Arc<SharedStore>),
}

impl NativeStore {
    /// The store, where this process has it: alone, or as the shared store's owner now.
    fn owned(&self) -> Option<Arc<Store>> {
        match &self.store {
            Opened::Alone(store) => Some(Arc::clone(store)),
            #[cfg(unix)]
            Opened::Shared(shared) => shared.store(),
        }
    }
}

/// What a shared store's handle holds (as the owner) or has heard (as a client) now.
#[napi(object)]
pub struct NativeSharing {
    /// Clients connected (as the owner).
    pub clients: f64,
    /// Requests read from clients and not yet answered and sent (as the owner).
    pub in_flight_requests: f64,
    /// Their payload bytes.
    pub in_flight_bytes: f64,
    /// Notices of the log's state: written to clients (as the owner), or heard (as a client).
    pub notices: f64,
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
            |store| {
                crate::teardown::register(store.committer());
                NativeStore {
                    store: Opened::Alone(Arc::new(store)),
                }
            },
        ))
    }

    /// Open the store in `dir` shared with other processes: as its owner if none holds it,
    /// else as a client of the one that does. `producer`: stamp this handle's appends as that
    /// idempotent producer, so a failover retries them instead of failing them.
    #[napi(ts_return_type = "Promise<NativeStore>")]
    pub fn open_shared(
        dir: String,
        options: NativeOpenOptions,
        producer: Option<f64>,
    ) -> napi::Result<AsyncTask<Blocking<Opened, NativeStore>>> {
        let options = options.try_into()?;
        let producer = producer.map(|id| to_u64("producer", id)).transpose()?;
        let dir = PathBuf::from(dir);
        Ok(blocking(
            move || open_shared(&dir, options, producer),
            |store| NativeStore { store },
        ))
    }

    /// Whether this process is the owner of the store now (always, for a store not shared).
    #[napi(catch_unwind)]
    pub fn is_owner(&self) -> bool {
        self.owned().is_some()
    }

    /// What a shared store's handle holds or has heard now; `null` for a store not shared.
    #[napi(catch_unwind)]
    pub fn sharing(&self) -> Option<NativeSharing> {
        match &self.store {
            Opened::Alone(_) => None,
            #[cfg(unix)]
            Opened::Shared(shared) => {
                let sharing = shared.sharing();
                Some(NativeSharing {
                    clients: to_f64(sharing.backlog.clients),
                    in_flight_requests: to_f64(sharing.backlog.requests),
                    in_flight_bytes: to_f64(sharing.backlog.bytes),
                    notices: to_f64(if sharing.owner {
                        sharing.backlog.notices
                    } else {
                        sharing.notices_heard
                    }),
                })
            }
        }
    }

    /// The appender of the store's WAL: appends, flushes and close go through it.
    #[napi(catch_unwind)]
    pub fn appender(&self) -> NativeAppender {
        match &self.store {
            Opened::Alone(store) => {
                NativeAppender::new(Arc::clone(store.committer()) as Arc<dyn Sink>)
            }
            #[cfg(unix)]
            Opened::Shared(shared) => NativeAppender::new(Arc::clone(shared) as Arc<dyn Sink>),
        }
    }

    /// What recovery found and did (a client of a shared store: nothing, its owner recovered).
    #[napi(catch_unwind)]
    pub fn recovery(&self) -> NativeRecovery {
        let Some(store) = self.owned() else {
            return NativeRecovery {
                snapshot_seq: 0.0,
                finished_rotation: false,
                capped_consumers: Vec::new(),
            };
        };
        let recovery = store.recovery();
        NativeRecovery {
            snapshot_seq: to_f64(recovery.snapshot_seq),
            finished_rotation: recovery.finished_rotation,
            capped_consumers: recovery
                .capped_consumers
                .iter()
                .map(|c| NativeCappedConsumer {
                    name: c.name.clone(),
                    position: to_f64(c.position),
                    capped_to: to_f64(c.capped_to),
                })
                .collect(),
        }
    }

    /// The live snapshot, if any (a client of a shared store reads the one its MANIFEST names).
    #[napi(catch_unwind)]
    pub fn snapshot(&self) -> napi::Result<Option<NativeSnapshotReader>> {
        let snapshot = match &self.store {
            Opened::Alone(store) => store.snapshot(),
            #[cfg(unix)]
            Opened::Shared(shared) => shared.snapshot().map_err(|e| js_error(&e))?,
        };
        Ok(snapshot.map(Into::into))
    }

    /// A replay of the entries after the live snapshot, from `from` on.
    #[napi(catch_unwind, ts_return_type = "Promise<NativeReplay>")]
    pub fn replay(&self, from: f64) -> napi::Result<AsyncTask<Blocking<Replay, NativeReplay>>> {
        let from = to_u64("from", from)?;
        let store = self.store.clone();
        Ok(blocking(
            move || store.replay(from),
            |replay| NativeReplay {
                ahead: ReadAhead::new(Closable::new(replay), "replay"),
            },
        ))
    }

    /// Queue a checkpoint watermark now; resolves with its sequence. The sections later given
    /// to `finishCheckpoint` must hold the state after every append queued before this.
    #[napi(catch_unwind, ts_return_type = "Promise<number>")]
    pub fn begin_checkpoint<'env>(&self, env: &'env Env) -> napi::Result<Object<'env>> {
        promise(env, to_f64, |reply| self.store.begin_checkpoint(reply))
    }

    /// Snapshot `sections` at the sequence `beginCheckpoint` returned and rotate.
    #[napi(catch_unwind, ts_return_type = "Promise<NativeRotation>")]
    pub fn finish_checkpoint(
        &self,
        sequence: f64,
        sections_in: Vec<NativeSection>,
    ) -> napi::Result<AsyncTask<Blocking<Rotation, NativeRotation>>> {
        let sequence = to_u64("sequence", sequence)?;
        let store = self.store.clone();
        let sections = sections(sections_in);
        Ok(blocking(
            move || store.finish_checkpoint(sections, sequence),
            NativeRotation::from,
        ))
    }

    /// Back up the store to `dest` (which must not exist) while appends go on; resolves with
    /// the last sequence the backup holds.
    #[napi(catch_unwind, ts_return_type = "Promise<number>")]
    pub fn backup(&self, dest: String) -> napi::Result<AsyncTask<Blocking<u64, f64>>> {
        let store = self.store.clone();
        Ok(blocking(move || store.backup(&PathBuf::from(dest)), to_f64))
    }

    /// The position of the durable consumer `name`, registering it at `start` if it is new.
    #[napi(catch_unwind, ts_return_type = "Promise<number>")]
    pub fn register_consumer(
        &self,
        name: String,
        start: f64,
    ) -> napi::Result<AsyncTask<Blocking<u64, f64>>> {
        let start = to_u64("from", start)?;
        let store = self.store.clone();
        Ok(blocking(move || store.consumer(&name, start), to_f64))
    }

    /// Acknowledge everything up to `sequence` for consumer `name` (flushing first what is not
    /// yet durable); resolves with the position kept.
    #[napi(catch_unwind, ts_return_type = "Promise<number>")]
    pub fn ack_consumer(
        &self,
        name: String,
        sequence: f64,
    ) -> napi::Result<AsyncTask<Blocking<u64, f64>>> {
        let sequence = to_u64("sequence", sequence)?;
        let store = self.store.clone();
        Ok(blocking(move || store.ack(&name, sequence), to_f64))
    }

    /// Every registered consumer, damaged ones included, with its lag in bytes.
    #[napi(catch_unwind, ts_return_type = "Promise<NativeConsumer[]>")]
    pub fn consumers(
        &self,
    ) -> napi::Result<AsyncTask<Blocking<Vec<Summary>, Vec<NativeConsumer>>>> {
        let store = self.store.clone();
        Ok(blocking(move || store.consumers(), native_consumers))
    }

    /// Forget consumer `name`; resolves with whether it was registered.
    #[napi(catch_unwind, ts_return_type = "Promise<boolean>")]
    pub fn remove_consumer(&self, name: String) -> napi::Result<AsyncTask<Blocking<bool, bool>>> {
        let store = self.store.clone();
        Ok(blocking(
            move || store.remove_consumer(&name),
            |removed| removed,
        ))
    }

    /// Apply a retention policy.
    #[napi(catch_unwind, ts_return_type = "Promise<NativePruneOutcome>")]
    pub fn prune(
        &self,
        policy: NativePolicy,
    ) -> napi::Result<AsyncTask<Blocking<PruneOutcome, NativePruneOutcome>>> {
        let policy = policy.try_into()?;
        let store = self.store.clone();
        Ok(blocking(
            move || store.prune(&policy),
            NativePruneOutcome::from,
        ))
    }
}

/// The calls a shared store forwards to its owner or makes on the files itself.
impl Opened {
    fn replay(&self, from: u64) -> selene_persist_engine::Result<Replay> {
        match self {
            Self::Alone(store) => store.replay(from),
            #[cfg(unix)]
            Self::Shared(shared) => shared.replay(from),
        }
    }

    fn prune(&self, policy: &RetentionPolicy) -> selene_persist_engine::Result<PruneOutcome> {
        match self {
            Self::Alone(store) => store.prune(policy),
            #[cfg(unix)]
            Self::Shared(shared) => shared.prune(policy),
        }
    }

    fn begin_checkpoint(&self, reply: selene_persist_engine::Reply<u64>) {
        match self {
            Self::Alone(store) => store.begin_checkpoint(reply),
            #[cfg(unix)]
            Self::Shared(shared) => shared.begin_checkpoint(reply),
        }
    }

    fn finish_checkpoint(
        &self,
        sections: Vec<(String, Vec<u8>, bool)>,
        sequence: u64,
    ) -> selene_persist_engine::Result<Rotation> {
        match self {
            Self::Alone(store) => store.finish_checkpoint(store.builder(sections)?, sequence),
            #[cfg(unix)]
            Self::Shared(shared) => shared.finish_checkpoint(sections, sequence),
        }
    }

    fn backup(&self, dest: &std::path::Path) -> selene_persist_engine::Result<u64> {
        match self {
            Self::Alone(store) => store.backup(dest),
            #[cfg(unix)]
            Self::Shared(shared) => shared.backup(dest),
        }
    }

    fn consumer(&self, name: &str, start: u64) -> selene_persist_engine::Result<u64> {
        match self {
            Self::Alone(store) => store.consumer(name, start),
            #[cfg(unix)]
            Self::Shared(shared) => shared.consumer(name, start),
        }
    }

    fn ack(&self, name: &str, position: u64) -> selene_persist_engine::Result<u64> {
        match self {
            Self::Alone(store) => store.ack(name, position),
            #[cfg(unix)]
            Self::Shared(shared) => shared.ack(name, position),
        }
    }

    fn consumers(&self) -> selene_persist_engine::Result<Vec<Summary>> {
        match self {
            Self::Alone(store) => store.consumers(),
            #[cfg(unix)]
            Self::Shared(shared) => shared.consumers(),
        }
    }

    fn remove_consumer(&self, name: &str) -> selene_persist_engine::Result<bool> {
        match self {
            Self::Alone(store) => store.remove_consumer(name),
            #[cfg(unix)]
            Self::Shared(shared) => shared.remove_consumer(name),
        }
    }
}

/// Open the store at `dir` shared (see `NativeStore.openShared`).
#[cfg(unix)]
fn open_shared(
    dir: &std::path::Path,
    options: WalOptions,
    producer: Option<u64>,
) -> selene_persist_engine::Result<Opened> {
    SharedStore::open(&StdFs::shared(), dir, options, SharedOptions { producer })
        .map(Opened::Shared)
}

/// Shared stores need a Unix domain socket; Windows named pipes are not built yet.
#[cfg(not(unix))]
fn open_shared(
    _dir: &std::path::Path,
    _options: WalOptions,
    _producer: Option<u64>,
) -> selene_persist_engine::Result<Opened> {
    Err(selene_persist_engine::Error::InvalidArgument(
        "a shared store needs a Unix domain socket: not available on this platform yet".into(),
    ))
}

/// Batches of replayed entries, read ahead on a thread of their own.
#[napi]
pub struct NativeReplay {
    ahead: ReadAhead<Replay>,
}

#[napi]
impl NativeReplay {
    /// The next entries, packed in one chunk; an empty chunk means the end. Chunks after it
    /// are read ahead meanwhile (with the same limits).
    #[napi(catch_unwind, ts_return_type = "Promise<NativeChunk>")]
    pub fn next_chunk(&self, max_entries: u32, max_bytes: u32) -> napi::Result<ChunkTask> {
        let (entries_max, bytes_max) = (max_entries.max(1) as usize, max_bytes.max(1) as usize);
        self.ahead.next(Box::new(move |r: &mut Replay| {
            r.next_batch::<Packed>(entries_max, bytes_max)
        }))
    }

    /// A chunk read ahead already, without waiting; `null` if none is ready.
    #[napi(catch_unwind)]
    pub fn take_chunk(&self) -> napi::Result<Option<NativeChunk>> {
        self.ahead.take()
    }

    /// Stop reading and release the file.
    #[napi(catch_unwind)]
    pub fn close(&self) {
        self.ahead.close();
    }
}
