//! The owner's server: a thread accepts clients on the store's socket, and each connection has
//! a reader thread (requests into the committer) and a writer thread (answers out, each sent
//! once the committer has answered: under `'always'`, after the fdatasync that covers it).
//!
//! A peer of another uid is refused (Linux: `SO_PEERCRED`). A frame that breaks the wire's
//! caps or checksum, or that takes longer than its deadline to arrive, drops its connection.
//! Each connection has at most [`MAX_IN_FLIGHT_BYTES`] of payload and [`MAX_IN_FLIGHT`]
//! requests unanswered or unsent: past that its reader stops reading, so a client that stops
//! reading its answers holds the owner's memory to that bound ([`Backlog`] counts it).
//!
//! After every commit (whoever's) the writer thread of each connection sends a notice of the
//! log's state, which wakes the client's followers. Notices are coalesced: a connection holds
//! at most one unsent, the latest, so a client that reads slowly costs one state, not a queue.

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
use super::wire::{Answer, Detail, Done, FrameReader, Request};
use crate::committer::{AppendRequest, Committer, Reply, Source, Watcher, WriterState};
use crate::error::{Error, Result};
use crate::frame::Producer;
use crate::producer::{Check, ProducerTable};
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

/// Hand `request` of `source` (stamped `stamp`, if it is) to `committer`, through the
/// producer table: a retry of a request already appended is answered with its sequences,
/// without appending.
pub fn append(
    committer: &Committer,
    producers: &Arc<Mutex<ProducerTable>>,
    source: Source,
    request: AppendRequest,
    stamp: Option<Producer>,
) {
    let Some(stamp) = stamp else {
        return committer.append_from(source, vec![request]);
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
            committer.append_from(
                source,
                vec![AppendRequest {
                    // The stamp goes to disk with the request's last entry: the next owner's table.
                    entries: entries.stamped(stamp),
                    reply: Box::new(move |outcome: Result<RangeInclusive<u64>>| {
                        if let Ok(range) = &outcome {
                            lock(&producers).record(stamp, *range.end());
                        }
                        reply(outcome);
                    }),
                    chained,
                }],
            );
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
    connections: Arc<Connections>,
    acceptor: Option<JoinHandle<()>>,
}

/// The connections being served, by id: each one's stream (to stop it) and what it holds.
type Connections = Mutex<HashMap<u64, (UnixStream, Arc<InFlight>)>>;

/// What the owner holds for its clients now: bounded by [`MAX_CONNECTIONS`] times the
/// per-connection bounds, however the clients behave.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Backlog {
    /// Clients connected.
    pub clients: u64,
    /// Requests read and not yet answered and sent.
    pub requests: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// Notices of the log's state written to clients since the server started.
    pub notices: u64,
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
        let connections = Arc::new(Connections::default());
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

impl Server {
    /// What the owner holds for its clients now.
    #[must_use]
    pub fn backlog(&self) -> Backlog {
        let connections = lock(&self.connections);
        let mut backlog = Backlog {
            clients: connections.len() as u64,
            ..Backlog::default()
        };
        for (_, in_flight) in connections.values() {
            let counts = lock(&in_flight.counts);
            backlog.requests += counts.0;
            backlog.bytes += counts.1;
            backlog.notices += in_flight.notices.load(Ordering::Relaxed);
        }
        backlog
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
        for (stream, _) in lock(&self.connections).values() {
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
    connections: &Arc<Connections>,
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
        let in_flight = Arc::new(InFlight::default());
        lock(connections).insert(id, (kept, Arc::clone(&in_flight)));
        let (store, producers, listed) = (
            Arc::clone(store),
            Arc::clone(producers),
            Arc::clone(connections),
        );
        let spawned = thread::Builder::new()
            .name("selene-persist-client".into())
            .spawn(move || {
                // Source 0 is the owner's own process.
                serve(stream, id + 1, &store, &producers, in_flight);
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
#[derive(Debug, Default)]
struct InFlight {
    /// Requests, and their payload bytes.
    counts: Mutex<(u64, u64)>,
    drained: Condvar,
    /// Notices written.
    notices: AtomicU64,
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

    /// `requests` answered and sent, with `bytes` of payload.
    fn done(&self, requests: u64, bytes: u64) {
        let mut counts = lock(&self.counts);
        counts.0 -= requests;
        counts.1 -= bytes;
        self.drained.notify_all();
    }
}

/// What a connection's writer thread sends.
enum Out {
    /// An answer's frame, the payload bytes of its request, and the log's state it carries.
    Answer(Bytes, u64, WriterState),
    /// The notice in the connection's slot (see [`Notices`]).
    Notice,
}

/// A connection's unsent notice: the latest state only. The writer thread is told when the
/// slot fills, so at most one [`Out::Notice`] is ever queued.
#[derive(Default)]
struct Notices(Mutex<Option<WriterState>>);

impl Notices {
    /// Keep `state` as the one to send; whether the writer must be told.
    fn put(&self, state: &WriterState) -> bool {
        lock(&self.0).replace(state.clone()).is_none()
    }

    fn take(&self) -> Option<WriterState> {
        lock(&self.0).take()
    }
}

/// One client: read its requests until it goes or breaks the wire, then stop.
fn serve(
    stream: UnixStream,
    source: Source,
    store: &Arc<Store>,
    producers: &Arc<Mutex<ProducerTable>>,
    in_flight: Arc<InFlight>,
) {
    let Ok(out) = stream.try_clone() else { return };
    if stream.set_read_timeout(Some(READ_TICK)).is_err() {
        return;
    }
    let notices = Arc::new(Notices::default());
    let (tx, rx) = mpsc::channel::<Out>();
    let writer = {
        let (in_flight, notices) = (Arc::clone(&in_flight), Arc::clone(&notices));
        thread::Builder::new()
            .name("selene-persist-answers".into())
            .spawn(move || write_answers(out, &rx, &in_flight, &notices))
    };
    let Ok(writer) = writer else { return };
    // The state now, then every new one: the client's followers wake on them.
    let watcher: Watcher = {
        let (notices, tx) = (Arc::clone(&notices), tx.clone());
        Arc::new(move |state: &WriterState| {
            if notices.put(state) {
                let _ = tx.send(Out::Notice);
            }
        })
    };
    store.committer().watch(&watcher);
    watcher(&store.committer().state());
    let mut frames = FrameReader::new(&stream);
    let mut last = 0;
    while let Ok(Some(body)) = frames.next_frame() {
        let Ok(request) = Request::decode(body) else {
            break;
        };
        last = request.id();
        dispatch(request, source, store, producers, &in_flight, &tx);
    }
    // Whatever ended it, nothing more is read; the answers go out as the committer gives
    // them, then the goodbye that says which requests were read.
    let _ = stream.shutdown(std::net::Shutdown::Read);
    drop(watcher);
    drop(tx);
    if let Ok(Some(mut out)) = writer.join() {
        let _ = out.write_all(&Answer::bye(last));
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Send each answer and notice as it comes, several in one write when they queue up; hands
/// the stream back once every answer is sent (none if a write failed). A notice of the state
/// the last answer carried is not sent: the client heard it with the answer (the committer
/// answers a group before it tells of its state).
fn write_answers(
    mut out: UnixStream,
    rx: &Receiver<Out>,
    in_flight: &InFlight,
    notices: &Notices,
) -> Option<UnixStream> {
    let mut bytes = Vec::new();
    let (mut answers, mut payloads) = (0, 0);
    let mut told = None;
    while let Ok(first) = rx.recv() {
        for next in std::iter::once(first).chain(rx.try_iter()) {
            match next {
                Out::Answer(frame, payload, state) => {
                    bytes.extend_from_slice(&frame);
                    answers += 1;
                    payloads += payload;
                    told = Some(state);
                }
                Out::Notice => {
                    if let Some(state) = notices.take().filter(|s| told.as_ref() != Some(s)) {
                        told = Some(state.clone());
                        bytes.extend_from_slice(&Answer::notice(&state));
                        in_flight.notices.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        let sent = out.write_all(&bytes);
        bytes.clear();
        in_flight.done(answers, payloads);
        (answers, payloads) = (0, 0);
        if sent.is_err() {
            let _ = out.shutdown(std::net::Shutdown::Both);
            // Drain the rest so the reader's bound is released; nothing more is sent.
            for next in rx.iter() {
                if let Out::Answer(_, payload, _) = next {
                    in_flight.done(1, payload);
                }
            }
            return None;
        }
    }
    Some(out)
}

/// The answer to request `id`, with the committer's state now.
fn answer(
    committer: &Committer,
    tx: &Sender<Out>,
    id: u64,
    payload: u64,
    outcome: Result<Option<u64>>,
) {
    answer_detail(
        committer,
        tx,
        id,
        payload,
        outcome.map(|first| (first, Detail::None)),
    );
}

/// [`answer`], with what a finished checkpoint or a prune did.
fn answer_detail(
    committer: &Committer,
    tx: &Sender<Out>,
    id: u64,
    payload: u64,
    outcome: Result<(Option<u64>, Detail)>,
) {
    let (outcome, detail) = match outcome {
        Ok((first, detail)) => (Ok(first), detail),
        Err(e) => (Err((e.kind(), e.to_string())), Detail::None),
    };
    let state = committer.state();
    let done = Done {
        id,
        state: state.clone(),
        outcome,
        detail,
    };
    let _ = tx.send(Out::Answer(done.encode(), payload, state));
}

/// Run `task` (it blocks: a snapshot written, files deleted) on a thread of its own, so this
/// client's later requests go on meanwhile, as the owner's own do; answer `id` with what it
/// gives.
fn off_thread(
    store: &Arc<Store>,
    tx: &Sender<Out>,
    id: u64,
    payload: u64,
    task: impl FnOnce(&Store) -> Result<(Option<u64>, Detail)> + Send + 'static,
) {
    let (theirs, answers) = (Arc::clone(store), tx.clone());
    let spawned = thread::Builder::new()
        .name("selene-persist-maintenance".into())
        .spawn(move || {
            let outcome = task(&theirs);
            answer_detail(theirs.committer(), &answers, id, payload, outcome);
        });
    if let Err(e) = spawned {
        let failed = Error::io("spawn maintenance for", store.dir(), e);
        answer(store.committer(), tx, id, payload, Err(failed));
    }
}

fn dispatch(
    request: Request,
    source: Source,
    store: &Arc<Store>,
    producers: &Arc<Mutex<ProducerTable>>,
    in_flight: &Arc<InFlight>,
    tx: &Sender<Out>,
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
                source,
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
            off_thread(store, tx, id, payload, move |store| {
                let rotation = store.finish_checkpoint(store.builder(sections)?, sequence)?;
                Ok((Some(rotation.sequence), Detail::Rotation(rotation)))
            });
        }
        Request::Prune { policy, .. } => {
            in_flight.add(0);
            off_thread(store, tx, id, 0, move |store| {
                Ok((None, Detail::Pruned(store.prune(&policy)?)))
            });
        }
    }
}
