//! `NativeFollower`: a log followed as it grows, read on the libuv thread pool; and the durable
//! consumers of a store directory.

use std::path::PathBuf;

use napi::bindgen_prelude::AsyncTask;
use napi_derive::napi;
use selene_persist_engine::Error;
use selene_persist_engine::consumer::{self, Log, Summary};
use selene_persist_engine::follow::{Follower, Target};
use selene_persist_engine::io::StdFs;

use crate::chunk::Packed;
use crate::convert::{to_f64, to_u64};
use crate::remote::{NativeShipment, Shipped, native_shipment, next_shipment};
use crate::task::{Blocking, ChunkTask, Closable, blocking, next_chunk};

/// A follower of a store directory or a WAL file.
#[napi]
pub struct NativeFollower {
    inner: Closable<Follower>,
}

#[napi]
impl NativeFollower {
    /// Follow `path` (a store directory, or a WAL file) from sequence `from` (default: the first
    /// after the live snapshot); `durable` yields only fdatasynced entries.
    #[napi(ts_return_type = "Promise<NativeFollower>")]
    pub fn open(
        path: String,
        from: Option<f64>,
        durable: bool,
    ) -> napi::Result<AsyncTask<Blocking<Follower, NativeFollower>>> {
        let from = from.map(|f| to_u64("from", f)).transpose()?;
        let path = PathBuf::from(path);
        Ok(blocking(
            move || {
                let vfs = StdFs::shared();
                let dir = vfs.is_dir(&path).map_err(|e| Error::io("stat", &path, e))?;
                let target = if dir {
                    Target::Store(path)
                } else {
                    Target::Wal(path)
                };
                Follower::open(&vfs, target, from, durable)
            },
            |follower| NativeFollower {
                inner: Closable::new(follower),
            },
        ))
    }

    /// The next entries there are now, packed in one chunk; an empty chunk means none yet.
    #[napi(catch_unwind, ts_return_type = "Promise<NativeChunk>")]
    pub fn next_chunk(&self, max_entries: u32, max_bytes: u32) -> ChunkTask {
        next_chunk(
            &self.inner,
            "follower",
            max_entries,
            max_bytes,
            Follower::next_batch::<Packed>,
        )
    }

    /// The next frames there are now (checkpoint watermarks included), as one shipment of node
    /// `node`: up to `maxFrames` frames or about `maxBytes`; `null` when none is there yet.
    #[napi(catch_unwind, ts_return_type = "Promise<NativeShipment | null>")]
    pub fn next_shipment(
        &self,
        node: f64,
        max_frames: u32,
        max_bytes: u32,
    ) -> napi::Result<AsyncTask<Blocking<Option<Shipped>, Option<NativeShipment>>>> {
        let node = to_u64("node", node)?;
        let inner = self.inner.clone();
        let (frames, bytes) = (max_frames.max(1) as usize, max_bytes.max(1) as usize);
        Ok(blocking(
            move || inner.with("follower", |f| next_shipment(f, node, frames, bytes)),
            native_shipment,
        ))
    }

    /// The next sequence it will yield, or `null` once closed.
    #[napi(catch_unwind)]
    pub fn next_sequence(&self) -> Option<f64> {
        self.inner.peek(|f| Some(to_f64(f.next_sequence())))
    }

    /// Release the file it holds.
    #[napi(catch_unwind)]
    pub fn close(&self) {
        self.inner.close();
    }
}

/// Why a consumer's position file cannot be read.
#[napi(object)]
pub struct NativeDamage {
    /// The error's code.
    pub code: String,
    /// Its message, naming the file.
    pub message: String,
}

/// A registered consumer and its position (the last acknowledged sequence).
#[napi(object)]
pub struct NativeConsumer {
    /// Its name.
    pub name: String,
    /// The last sequence it acknowledged (0 when damaged: what retention keeps for it).
    pub position: f64,
    /// Bytes of the log files holding entries after it (an upper bound).
    pub lag_bytes: f64,
    /// Why its file cannot be read, if it cannot.
    pub damaged: Option<NativeDamage>,
}

impl From<Summary> for NativeConsumer {
    fn from(summary: Summary) -> Self {
        Self {
            name: summary.name,
            position: to_f64(summary.position),
            lag_bytes: to_f64(summary.lag_bytes),
            damaged: summary.damage.map(|e| NativeDamage {
                code: e.code().to_owned(),
                message: e.to_string(),
            }),
        }
    }
}

/// Every summary, converted.
pub fn native_consumers(summaries: Vec<Summary>) -> Vec<NativeConsumer> {
    summaries.into_iter().map(Into::into).collect()
}

/// The consumers of a store directory whose writer, if any, runs in another process: a
/// position may go up to what the files record as durable (see the engine's `consumer`).
#[napi]
pub struct NativeConsumers {
    dir: PathBuf,
}

#[napi]
impl NativeConsumers {
    /// The consumers of the store directory `dir`.
    #[napi(constructor)]
    pub fn new(dir: String) -> Self {
        Self {
            dir: PathBuf::from(dir),
        }
    }

    /// The position of consumer `name`, registering it at `start` first if it is new.
    #[napi(catch_unwind, ts_return_type = "Promise<number>")]
    pub fn register(
        &self,
        name: String,
        start: f64,
    ) -> napi::Result<AsyncTask<Blocking<u64, f64>>> {
        let start = to_u64("from", start)?;
        let dir = self.dir.clone();
        Ok(blocking(
            move || consumer::register(StdFs::shared().as_ref(), &dir, &name, start, Log::Files),
            to_f64,
        ))
    }

    /// Acknowledge everything up to `sequence` for consumer `name`; resolves with the position
    /// kept (a lower acknowledgement changes nothing).
    #[napi(catch_unwind, ts_return_type = "Promise<number>")]
    pub fn ack(&self, name: String, sequence: f64) -> napi::Result<AsyncTask<Blocking<u64, f64>>> {
        let sequence = to_u64("sequence", sequence)?;
        let dir = self.dir.clone();
        Ok(blocking(
            move || consumer::ack(StdFs::shared().as_ref(), &dir, &name, sequence, Log::Files),
            to_f64,
        ))
    }

    /// Every registered consumer, by name, with its lag in bytes behind `lastSequence`.
    #[napi(catch_unwind, ts_return_type = "Promise<NativeConsumer[]>")]
    pub fn list(
        &self,
        last_sequence: f64,
    ) -> napi::Result<AsyncTask<Blocking<Vec<Summary>, Vec<NativeConsumer>>>> {
        let last = to_u64("lastSequence", last_sequence)?;
        let dir = self.dir.clone();
        Ok(blocking(
            move || consumer::describe(StdFs::shared().as_ref(), &dir, last),
            native_consumers,
        ))
    }

    /// Forget consumer `name`; resolves with whether it was registered.
    #[napi(catch_unwind, ts_return_type = "Promise<boolean>")]
    pub fn remove(&self, name: String) -> AsyncTask<Blocking<bool, bool>> {
        let dir = self.dir.clone();
        blocking(
            move || consumer::remove(StdFs::shared().as_ref(), &dir, &name),
            |removed| removed,
        )
    }
}
