//! The owner's server: a thread accepts clients on the store's socket, and each connection has
//! a reader thread (requests into the committer) and a writer thread (answers out, each sent
//! once the committer has answered: under `'always'`, after the fdatasync that covers it).
//!
//! A peer of another uid is refused (Linux: `SO_PEERCRED`). A frame that breaks the wire's
//! caps or checksum, or that takes longer than its deadline to arrive, drops its connection.
//! Each connection has at most [`MAX_IN_FLIGHT_BYTES`] of payload and [`MAX_IN_FLIGHT`]
//! requests unanswered or unsent: past that its reader stops reading, so a client that stops
//! reading its answers holds the owner's memory to that bound.

use std::collections::HashMap;
use std::io::Write;
use std::ops::RangeInclusive;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use bytes::Bytes;

use super::path::bind;
use super::wire::{Answer, Done, FrameReader, Request};
use crate::committer::{AppendRequest, Committer, Reply};
use crate::error::{Error, Result};
use crate::frame::Producer;
use crate::producer::{Check, ProducerTable};
use crate::rotation::Rotation;
use crate::store::Store;

/// Most payload bytes of one connection's requests not yet answered and sent.
pub const MAX_IN_FLIGHT_BYTES: u64 = 8 << 20;
/// Most requests of one connection not yet answered and sent.
pub const MAX_IN_FLIGHT: u64 = 4096;
/// Most clients connected at once; later ones are turned away.
pub const MAX_CONNECTIONS: usize = 256;
/// How often a reader looks at the clock while a frame arrives (its deadline's resolution).
const READ_TICK: Duration = Duration::from_millis(500);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Hand `request` (stamped `stamp`, if it is) to `committer`, through the producer table: a
/// retry of a request already appended is answered with its sequences, without appending.
pub fn append(
    committer: &Committer,
    producers: &Arc<Mutex<ProducerTable>>,
    request: AppendRequest,
    stamp: Option<Producer>,
) {
    let Some(stamp) = stamp else {
        return committer.append_all(vec![request]);
    };
    let count = request.entries.len() as u64;
    let mut table = lock(producers);
    match table.check(stamp) {
        Ok(Check::Append) => {
            table.reserve(stamp);
            drop(table);
            let producers = Arc::clone(producers);
            let AppendRequest {
                entries,
                reply,
                chained,
            } = request;
            committer.append_all(vec![AppendRequest {
                // The stamp goes to disk with the request's last entry: the next owner's table.
                entries: entries.stamped(stamp),
                reply: Box::new(move |outcome: Result<RangeInclusive<u64>>| {
                    if let Ok(range) = &outcome {
                        lock(&producers).record(stamp, *range.end());
                    }
                    reply(outcome);
                }),
                chained,
            }]);
        }
        Ok(Check::Duplicate(last)) => {
            drop(table);
            (request.reply)(Ok(last.saturating_sub(count.saturating_sub(1))..=last));
        }
        Err(e) => {
            drop(table);
            (request.reply)(Err(e));
        }
    }
}

/// The owner's side of the socket; stops (and removes its socket) on drop.
#[derive(Debug)]
pub struct Server {
    path: PathBuf,
    /// The socket file's identity, so only ours is removed.
    inode: (u64, u64),
    stopping: Arc<AtomicBool>,
    connections: Arc<Mutex<HashMap<u64, UnixStream>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl Server {
    /// Bind the socket at `path` (see [`bind`]: call while holding the writer lock) and serve
    /// `store`'s clients.
    ///
    /// # Errors
    /// As [`bind`]; `Io` if the thread cannot be spawned.
    pub fn start(
        path: &Path,
        store: Arc<Store>,
        producers: Arc<Mutex<ProducerTable>>,
    ) -> Result<Self> {
        let listener = bind(path)?;
        let meta = std::fs::symlink_metadata(path).map_err(|e| Error::io("stat", path, e))?;
        let stopping = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(HashMap::new()));
        let acceptor = {
            let stopping = Arc::clone(&stopping);
            let connections = Arc::clone(&connections);
            thread::Builder::new()
                .name("selene-persist-owner".into())
                .spawn(move || accept(&listener, &stopping, &connections, &store, &producers))
                .map_err(|e| Error::io("spawn owner for", path, e))?
        };
        Ok(Self {
            path: path.to_path_buf(),
            inode: (meta.dev(), meta.ino()),
            stopping,
            connections,
            acceptor: Some(acceptor),
        })
    }
}

impl Drop for Server {
    /// Stop accepting and stop reading every connection: each is answered what it sent up to
    /// now (as the committer answers it), then told which requests were read (the rest go to
    /// the next owner), then closed. Removes the socket if it is still ours.
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        // Wakes the acceptor, which sees `stopping`.
        drop(UnixStream::connect(&self.path));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for stream in lock(&self.connections).values() {
            let _ = stream.shutdown(std::net::Shutdown::Read);
        }
        if let Ok(meta) = std::fs::symlink_metadata(&self.path)
            && (meta.dev(), meta.ino()) == self.inode
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn accept(
    listener: &UnixListener,
    stopping: &AtomicBool,
    connections: &Arc<Mutex<HashMap<u64, UnixStream>>>,
    store: &Arc<Store>,
    producers: &Arc<Mutex<ProducerTable>>,
) {
    let ids = AtomicU64::new(0);
    for stream in listener.incoming() {
        if stopping.load(Ordering::Acquire) {
            return;
        }
        let Ok(stream) = stream else { continue };
        if !same_user(&stream) || lock(connections).len() >= MAX_CONNECTIONS {
            continue;
        }
        let id = ids.fetch_add(1, Ordering::Relaxed);
        let Ok(kept) = stream.try_clone() else {
            continue;
        };
        lock(connections).insert(id, kept);
        let (store, producers, listed) = (
            Arc::clone(store),
            Arc::clone(producers),
            Arc::clone(connections),
        );
        let spawned = thread::Builder::new()
            .name("selene-persist-client".into())
            .spawn(move || {
                serve(stream, &store, &producers);
                lock(&listed).remove(&id);
            });
        if spawned.is_err() {
            lock(connections).remove(&id);
        }
    }
}

/// Whether the peer runs as this process's user (where the OS says; elsewhere the socket's
/// mode and directory are the guard).
fn same_user(stream: &UnixStream) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        rustix::net::sockopt::socket_peercred(stream)
            .is_ok_and(|peer| peer.uid == rustix::process::getuid())
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = stream;
        true
    }
}

/// What is in flight on one connection, and who waits for it to drop.
#[derive(Default)]
struct InFlight {
    counts: Mutex<(u64, u64)>,
    drained: Condvar,
}

impl InFlight {
    fn add(&self, bytes: u64) {
        let mut counts = lock(&self.counts);
        while counts.0 >= MAX_IN_FLIGHT || counts.1 >= MAX_IN_FLIGHT_BYTES {
            counts = self
                .drained
                .wait(counts)
                .unwrap_or_else(PoisonError::into_inner);
        }
        counts.0 += 1;
        counts.1 += bytes;
    }

    fn done(&self, bytes: u64) {
        let mut counts = lock(&self.counts);
        counts.0 -= 1;
        counts.1 -= bytes;
        self.drained.notify_all();
    }
}

/// One client: read its requests until it goes or breaks the wire, then stop.
fn serve(stream: UnixStream, store: &Arc<Store>, producers: &Arc<Mutex<ProducerTable>>) {
    let Ok(out) = stream.try_clone() else { return };
    if stream.set_read_timeout(Some(READ_TICK)).is_err() {
        return;
    }
    let in_flight = Arc::new(InFlight::default());
    let (tx, rx) = mpsc::channel::<(Bytes, u64)>();
    let writer = {
        let in_flight = Arc::clone(&in_flight);
        thread::Builder::new()
            .name("selene-persist-answers".into())
            .spawn(move || write_answers(out, &rx, &in_flight))
    };
    let Ok(writer) = writer else { return };
    let mut frames = FrameReader::new(&stream);
    let mut last = 0;
    while let Ok(Some(body)) = frames.next_frame() {
        let Ok(request) = Request::decode(body) else {
            break;
        };
        last = request.id();
        dispatch(request, store, producers, &in_flight, &tx);
    }
    // Whatever ended it, nothing more is read; the answers go out as the committer gives
    // them, then the goodbye that says which requests were read.
    let _ = stream.shutdown(std::net::Shutdown::Read);
    drop(tx);
    if let Ok(Some(mut out)) = writer.join() {
        let _ = out.write_all(&Answer::bye(last));
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Send each answer as it comes, several in one write when they queue up; hands the stream
/// back once every answer is sent (none if a write failed).
fn write_answers(
    mut out: UnixStream,
    rx: &Receiver<(Bytes, u64)>,
    in_flight: &InFlight,
) -> Option<UnixStream> {
    let mut batch = Vec::new();
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while let Ok(next) = rx.try_recv() {
            batch.push(next);
        }
        let bytes: Vec<u8> = batch
            .iter()
            .flat_map(|(frame, _)| frame.iter().copied())
            .collect();
        let sent = out.write_all(&bytes);
        for (_, payload) in batch.drain(..) {
            in_flight.done(payload);
        }
        if sent.is_err() {
            let _ = out.shutdown(std::net::Shutdown::Both);
            // Drain the rest so the reader's bound is released; nothing more is sent.
            for (_, payload) in rx.iter() {
                in_flight.done(payload);
            }
            return None;
        }
    }
    Some(out)
}

/// The answer to request `id`, with the committer's state now.
fn answer(
    committer: &Committer,
    tx: &Sender<(Bytes, u64)>,
    id: u64,
    payload: u64,
    outcome: Result<Option<u64>>,
) {
    answer_rotation(
        committer,
        tx,
        id,
        payload,
        outcome.map(|first| (first, None)),
    );
}

/// [`answer`], with what a finished checkpoint did.
fn answer_rotation(
    committer: &Committer,
    tx: &Sender<(Bytes, u64)>,
    id: u64,
    payload: u64,
    outcome: Result<(Option<u64>, Option<Rotation>)>,
) {
    let (outcome, rotation) = match outcome {
        Ok((first, rotation)) => (Ok(first), rotation),
        Err(e) => (Err((e.kind(), e.to_string())), None),
    };
    let done = Done {
        id,
        state: committer.state(),
        outcome,
        rotation,
    };
    let _ = tx.send((done.encode(), payload));
}

fn dispatch(
    request: Request,
    store: &Arc<Store>,
    producers: &Arc<Mutex<ProducerTable>>,
    in_flight: &Arc<InFlight>,
    tx: &Sender<(Bytes, u64)>,
) {
    let committer = store.committer();
    let id = request.id();
    match request {
        Request::Append {
            chained,
            producer,
            entries,
            ..
        } => {
            let payload = entries.payload_bytes() as u64;
            in_flight.add(payload);
            if entries.is_empty() {
                let refused = Error::InvalidArgument("an append of no entries".into());
                return answer(committer, tx, id, payload, Err(refused));
            }
            let (theirs, tx) = (Arc::clone(committer), tx.clone());
            let reply: Reply<RangeInclusive<u64>> = Box::new(move |outcome| {
                answer(&theirs, &tx, id, payload, outcome.map(|r| Some(*r.start())));
            });
            append(
                committer,
                producers,
                AppendRequest {
                    entries,
                    reply,
                    chained,
                },
                producer,
            );
        }
        Request::Flush { .. } => {
            in_flight.add(0);
            let (theirs, tx) = (Arc::clone(committer), tx.clone());
            committer.flush(Box::new(move |outcome| {
                answer(&theirs, &tx, id, 0, outcome.map(|()| None));
            }));
        }
        Request::CommitNow { entries, .. } => {
            in_flight.add(0);
            let outcome = committer
                .commit_now(entries)
                .map(|range| range.map(|r| *r.start()));
            answer(committer, tx, id, 0, outcome);
        }
        Request::BeginCheckpoint { .. } => {
            in_flight.add(0);
            let (theirs, tx) = (Arc::clone(committer), tx.clone());
            store.begin_checkpoint(Box::new(move |outcome| {
                answer(&theirs, &tx, id, 0, outcome.map(Some));
            }));
        }
        Request::FinishCheckpoint {
            sequence, sections, ..
        } => {
            let payload = sections.iter().map(|(_, b, _)| b.len() as u64).sum();
            in_flight.add(payload);
            // It blocks (a snapshot written, the WAL rotated): on a thread of its own, so this
            // client's later appends go on meanwhile, as the owner's own do.
            let (theirs, answers) = (Arc::clone(store), tx.clone());
            let finished = thread::Builder::new()
                .name("selene-persist-checkpoint".into())
                .spawn(move || {
                    let outcome = theirs
                        .builder(sections)
                        .and_then(|builder| theirs.finish_checkpoint(builder, sequence))
                        .map(|rotation| (Some(rotation.sequence), Some(rotation)));
                    answer_rotation(theirs.committer(), &answers, id, payload, outcome);
                });
            if let Err(e) = finished {
                let failed = Error::io("spawn checkpoint for", store.dir(), e);
                answer(committer, tx, id, payload, Err(failed));
            }
        }
    }
}
