//! A client's connection to the owner: requests go out through a writer thread (the caller
//! never blocks on the socket), answers come back on a reader thread, which settles each
//! request by id and hands on the owner's notices of the log's state (the first is read before
//! `connect` returns, so a new client knows the log's end). When the connection breaks, the
//! requests still unanswered are handed to whoever asked to hear of it (the shared store,
//! which takes over).

use std::collections::HashMap;
use std::io::Write;
use std::ops::RangeInclusive;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use bytes::Bytes;

use super::wire::{Answer, Detail, FrameReader, Request};
use crate::committer::{Reply, WriterState};
use crate::error::{Error, Result};
use crate::frame::Producer;
use crate::retention::PruneOutcome;
use crate::rotation::Rotation;
use crate::writer::NewEntries;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A request sent and not yet answered.
pub enum Pending {
    /// An append, kept whole: sent again if it never left, or if it carries a stamp.
    Append {
        /// Who to tell its sequences.
        reply: Reply<RangeInclusive<u64>>,
        /// Its entries.
        entries: NewEntries,
        /// Part of a chain of `appendSync` batches.
        chained: bool,
        /// Its idempotent producer's stamp.
        stamp: Option<Producer>,
    },
    /// A flush.
    Flush(Reply<()>),
    /// A blocking sync or durable append.
    Sync(mpsc::Sender<Result<Option<u64>>>),
    /// A checkpoint's watermark.
    Begin(Reply<u64>),
    /// A checkpoint's finish.
    Finish(mpsc::Sender<Result<Rotation>>),
    /// A prune.
    Prune(mpsc::Sender<Result<PruneOutcome>>),
}

impl Pending {
    /// Answer it with `outcome`.
    pub fn settle(self, outcome: Result<Option<u64>>) {
        self.settle_with(outcome, Detail::None);
    }

    /// Answer it with `outcome` and what a finished checkpoint or a prune did.
    fn settle_with(self, outcome: Result<Option<u64>>, detail: Detail) {
        let missing = || Error::Internal("the owner's answer lacks its result".into());
        match self {
            Self::Begin(reply) => reply(outcome.and_then(|s| s.ok_or_else(missing))),
            Self::Finish(tx) => drop(tx.send(outcome.and_then(|_| match detail {
                Detail::Rotation(rotation) => Ok(rotation),
                _ => Err(missing()),
            }))),
            Self::Prune(tx) => drop(tx.send(outcome.and_then(|_| match detail {
                Detail::Pruned(pruned) => Ok(pruned),
                _ => Err(missing()),
            }))),
            Self::Append { reply, entries, .. } => reply(outcome.and_then(|first| {
                let count = entries.len() as u64;
                let first = first
                    .ok_or_else(|| Error::Internal("an append answered with no sequence".into()))?;
                Ok(first..=first + count.saturating_sub(1))
            })),
            Self::Flush(reply) => reply(outcome.map(|_| ())),
            Self::Sync(tx) => drop(tx.send(outcome)),
        }
    }
}

/// Hears the owner's state: with each answer (`false`), and each unasked notice (`true`).
pub type OnState = Box<dyn Fn(WriterState, bool) + Send>;

/// Called once when the connection ends, with the requests left unanswered that the owner
/// may have read (their outcome unknown), those it said it never read (a goodbye's), and why.
pub type OnLost = Box<dyn FnOnce(Vec<Pending>, Vec<Pending>, String) + Send>;

/// A live connection to the owner.
pub struct Connection {
    out: Mutex<Option<mpsc::Sender<Bytes>>>,
    stream: UnixStream,
    /// `None` once the connection broke: its requests were handed on.
    pending: Arc<Mutex<Option<HashMap<u64, Pending>>>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").finish_non_exhaustive()
    }
}

impl Connection {
    /// Connect to the owner at `path` and read its first notice; `on_state` hears the
    /// writer's state with every answer and notice (the first included), `on_lost` the
    /// requests left when the connection breaks.
    ///
    /// # Errors
    /// `Io` when no owner listens there, or it does not send its notice within `patience`
    /// (a process that holds the socket but does not serve: stopped, or hung), or the threads
    /// cannot be spawned.
    pub fn connect(
        path: &Path,
        patience: Duration,
        on_state: OnState,
        on_lost: OnLost,
    ) -> Result<Arc<Self>> {
        let stream = UnixStream::connect(path).map_err(|e| Error::io("connect", path, e))?;
        let mut frames = FrameReader::new(
            stream
                .try_clone()
                .map_err(|e| Error::io("connect", path, e))?,
        );
        // A tick for the wait's deadline; answers are then waited for as long as they take.
        let first = stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .and_then(|()| frames.next_frame_within(patience))
            .and_then(|first| stream.set_read_timeout(None).map(|()| first))
            .map_err(|e| Error::io("connect", path, e))?
            .map(Answer::decode);
        let Some(Ok(Answer::Notice(state))) = first else {
            let gone = std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "the owner went before its first notice",
            );
            return Err(Error::io("connect", path, gone));
        };
        on_state(state, true);
        let writer = stream
            .try_clone()
            .map_err(|e| Error::io("connect", path, e))?;
        let (tx, rx) = mpsc::channel();
        let pending = Arc::new(Mutex::new(Some(HashMap::new())));
        let theirs = Arc::clone(&pending);
        thread::Builder::new()
            .name("selene-persist-requests".into())
            .spawn(move || send_all(writer, &rx))
            .map_err(|e| Error::io("spawn client for", path, e))?;
        thread::Builder::new()
            .name("selene-persist-answers".into())
            .spawn(move || receive(frames, &theirs, &*on_state, on_lost))
            .map_err(|e| Error::io("spawn client for", path, e))?;
        Ok(Arc::new(Self {
            out: Mutex::new(Some(tx)),
            stream,
            pending,
            next_id: AtomicU64::new(1),
        }))
    }

    /// Send a request made by `make` (given its id), to be answered through `pending`; hands
    /// `pending` back if the connection has broken (its requests were handed on already).
    ///
    /// # Errors
    /// The pending request, when the connection is gone.
    pub fn send(
        &self,
        make: impl FnOnce(u64) -> Request,
        pending: Pending,
    ) -> std::result::Result<(), Pending> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = make(id).encode();
        {
            let mut table = lock(&self.pending);
            let Some(table) = table.as_mut() else {
                return Err(pending);
            };
            table.insert(id, pending);
        }
        let sent = lock(&self.out)
            .as_ref()
            .is_some_and(|out| out.send(frame).is_ok());
        if !sent {
            // The writer is gone: the reader finds the connection broken and hands it on.
            let _ = self.stream.shutdown(std::net::Shutdown::Both);
        }
        Ok(())
    }

    /// Close the connection: requests still unanswered are handed on as if it broke.
    pub fn shut(&self) {
        lock(&self.out).take();
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// Write each request as it comes, several in one write when they queue up.
fn send_all(mut stream: UnixStream, rx: &Receiver<Bytes>) {
    let mut batch = Vec::new();
    while let Ok(first) = rx.recv() {
        batch.extend_from_slice(&first);
        while let Ok(next) = rx.try_recv() {
            batch.extend_from_slice(&next);
        }
        if stream.write_all(&batch).is_err() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return;
        }
        batch.clear();
    }
}

/// Settle each answer by id until the connection ends, then hand on what is left.
fn receive(
    mut frames: FrameReader<UnixStream>,
    pending: &Mutex<Option<HashMap<u64, Pending>>>,
    on_state: &dyn Fn(WriterState, bool),
    on_lost: OnLost,
) {
    let mut read_up_to = u64::MAX;
    let why = loop {
        let body = match frames.next_frame() {
            Ok(Some(body)) => body,
            Ok(None) => break "the owner closed the connection".to_owned(),
            Err(e) => break e.to_string(),
        };
        let done = match Answer::decode(body) {
            Ok(Answer::Done(done)) => *done,
            Ok(Answer::Bye(last)) => {
                read_up_to = last;
                break "the owner closed".to_owned();
            }
            Ok(Answer::Notice(state)) => {
                on_state(state, true);
                continue;
            }
            Err(e) => break e.to_string(),
        };
        on_state(done.state, false);
        let request = lock(pending).as_mut().and_then(|t| t.remove(&done.id));
        if let Some(request) = request {
            let outcome = done
                .outcome
                .map_err(|(code, message)| Error::Remote { code, message });
            request.settle_with(outcome, done.detail);
        }
    };
    let _ = frames.get_ref().shutdown(std::net::Shutdown::Both);
    let mut left: Vec<(u64, Pending)> = lock(pending)
        .take()
        .unwrap_or_default()
        .into_iter()
        .collect();
    left.sort_by_key(|(id, _)| *id);
    let (unknown, unread): (Vec<_>, Vec<_>) =
        left.into_iter().partition(|(id, _)| *id <= read_up_to);
    on_lost(
        unknown.into_iter().map(|(_, p)| p).collect(),
        unread.into_iter().map(|(_, p)| p).collect(),
        why,
    );
}
