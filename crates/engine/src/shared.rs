//! A store shared by any number of processes: the first to open it takes the writer lock and
//! becomes the **owner** (its committer groups the appends of every process into one write
//! and one fdatasync, and a [`server`] thread serves the others on a local socket); the later
//! ones are **clients**, whose appends cross the socket ([`client`], [`wire`]) and are answered
//! once the owner's committer has (under `'always'`, after the fdatasync that covers them).
//!
//! **Failover.** When a client's connection breaks (the owner closed, exited or was killed),
//! it takes the lock if it can (recovering the store as any open does) and becomes the owner,
//! else connects to whichever process did. A request that was in flight fails with
//! `OwnerLost` (its outcome unknown), unless it carries an idempotent producer's stamp: then it
//! is sent again, and the new owner's [`ProducerTable`] answers a retry of one it already
//! appended with the sequences it got. The stamp is on disk with the request's last entry, and
//! each owner rebuilds the table from the log it recovers, so a stamped request the dead owner
//! made durable but did not answer lands once.
//!
//! **Following.** Every commit of the owner's committer, whoever asked for it, is told to the
//! watchers of every process ([`Sink::watch`]): the owner's through its committer, a client's
//! through the owner's notices on the socket. Nothing polls.
//!
//! [`SharedStore`] is a [`Sink`], as a [`Committer`] is: what a binding appends through.

pub mod client;
pub mod path;
pub mod server;
pub mod wire;

use std::fmt::Debug;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

use crate::backup::{self, Upto};
use crate::committer::{AppendRequest, LOCAL, Reply, Watcher, Watchers, WriterState};
use crate::consumer::{self, Log, Summary};
use crate::error::{Error, Result};
use crate::filename::StoreFile;
use crate::frame::Producer;
use crate::io::Vfs;
use crate::producer::{self, ProducerTable};
use crate::publish::make_dirs;
use crate::reader::WalReader;
use crate::retention::{PruneOutcome, RetentionPolicy};
use crate::rotation::Rotation;
use crate::scan::TailRepair;
use crate::sink::Sink;
use crate::snapshot::SnapshotReader;
use crate::stats::{CommitStats, StatsReport};
use crate::store::{self, Replay, Store};
use crate::writer::{NewEntries, NewEntry, WalOptions};
use client::{Connection, Pending};
use server::{Backlog, Server};

/// How long a client tries to take over or reach a new owner before it gives up.
pub const TAKEOVER_PATIENCE: Duration = Duration::from_secs(30);

/// How a shared store is opened.
#[derive(Clone, Copy, Debug, Default)]
pub struct SharedOptions {
    /// Stamp this handle's appends as the idempotent producer with this id (its epoch the
    /// time of opening, so a later incarnation fences an earlier one), so they are retried
    /// across a failover instead of failing with `OwnerLost`.
    pub producer: Option<u64>,
}

/// What this process is to the store now.
enum Role {
    Owner {
        store: Arc<Store>,
        producers: Arc<Mutex<ProducerTable>>,
        server: Server,
        /// Hands the committer's states to this handle's watchers.
        _relay: Watcher,
    },
    Client(Arc<Connection>),
    /// Taking over: calls wait here, in order.
    Between(Vec<Queued>),
    /// Taking over failed: every call fails with this.
    Lost(Error),
    Closed,
}

/// A call waiting for a role.
enum Queued {
    Append(AppendRequest, Option<Producer>),
    Flush(Reply<()>),
}

impl Queued {
    fn fail(self, error: Error) {
        match self {
            Self::Append(request, _) => (request.reply)(Err(error)),
            Self::Flush(reply) => reply(Err(error)),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The producer table a store's log gives: the stamps on the entries after its live snapshot
/// (each stamped entry ends the request it stamps). Only the frames' stamps are read: their
/// checksums verified, their payloads neither decompressed nor copied. A retry of a request
/// from before the live snapshot is not known to it.
fn producers_of(vfs: &Arc<dyn Vfs>, store: &Store) -> Result<ProducerTable> {
    let after = store.snapshot().map_or(0, |s| s.sequence()) + 1;
    let mut reader = WalReader::open(vfs, &StoreFile::Wal.path(store.dir()))?;
    let mut stamps = Vec::new();
    reader.visit_frames(after, |frame| {
        if let Some(stamp) = frame.producer {
            stamps.push((stamp, frame.sequence));
        }
        Ok(true)
    })?;
    Ok(ProducerTable::rebuild(stamps))
}

fn closed() -> Error {
    Error::Closed { what: "writer" }
}

/// A store opened with sharing: see the module documentation.
pub struct SharedStore {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    socket: PathBuf,
    options: WalOptions,
    /// This handle's producer id and epoch, when it stamps its appends.
    stamp: Option<(u64, u32)>,
    next_seq: AtomicU64,
    /// Stamped requests sent and not yet answered (at most [`producer::WINDOW`]), and who
    /// waits for one to be answered.
    stamped: Mutex<usize>,
    answered: Condvar,
    role: Mutex<Role>,
    closed: AtomicBool,
    /// Payload bytes appended and not yet answered, and who waits for them to drop.
    queued: Mutex<u64>,
    room: Condvar,
    /// The owner's state with its last answer (as a client).
    heard: Mutex<WriterState>,
    /// This handle's appends as it saw them answered (as a client).
    stats: Mutex<CommitStats>,
    /// Who hears of every new state of the log ([`Sink::watch`]).
    watchers: Watchers,
    /// Notices heard from owners (as a client).
    notices: AtomicU64,
    me: Weak<Self>,
}

/// What a shared store's handle holds or has heard now ([`SharedStore::sharing`]).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Sharing {
    /// Whether this process is the owner now.
    pub owner: bool,
    /// As the owner: what it holds for its clients (their notices the ones it wrote).
    pub backlog: Backlog,
    /// As a client: the owners' notices of the log's state it has heard.
    pub notices_heard: u64,
}

impl Debug for SharedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedStore")
            .field("dir", &self.dir)
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl SharedStore {
    /// Open the store at `dir` shared: as its owner if no process holds it, else as a client
    /// of the one that does.
    ///
    /// # Errors
    /// As [`Store::open`]; `Io` when the owner cannot be reached within [`TAKEOVER_PATIENCE`].
    pub fn open(
        vfs: &Arc<dyn Vfs>,
        dir: &Path,
        options: WalOptions,
        shared: SharedOptions,
    ) -> Result<Arc<Self>> {
        make_dirs(vfs.as_ref(), dir)?;
        let dir = std::fs::canonicalize(dir).map_err(|e| Error::io("resolve", dir, e))?;
        let socket = path::socket_path(&dir)?;
        let epoch = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
        let this = Arc::new_cyclic(|me| Self {
            vfs: Arc::clone(vfs),
            dir,
            socket,
            options,
            stamp: shared.producer.map(|id| (id, epoch)),
            next_seq: AtomicU64::new(0),
            stamped: Mutex::new(0),
            answered: Condvar::new(),
            role: Mutex::new(Role::Between(Vec::new())),
            closed: AtomicBool::new(false),
            queued: Mutex::new(0),
            room: Condvar::new(),
            heard: Mutex::new(WriterState::default()),
            stats: Mutex::new(CommitStats::default()),
            watchers: Watchers::default(),
            notices: AtomicU64::new(0),
            me: me.clone(),
        });
        let role = this.establish()?;
        *lock(&this.role) = role;
        Ok(this)
    }

    /// The store, while this process is its owner.
    #[must_use]
    pub fn store(&self) -> Option<Arc<Store>> {
        match &*lock(&self.role) {
            Role::Owner { store, .. } => Some(Arc::clone(store)),
            _ => None,
        }
    }

    /// Whether this process is the owner now.
    #[must_use]
    pub fn is_owner(&self) -> bool {
        self.store().is_some()
    }

    /// The store's directory, canonical.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The socket the owner serves on.
    #[must_use]
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// What this handle holds (as the owner) or has heard (as a client) now.
    #[must_use]
    pub fn sharing(&self) -> Sharing {
        let backlog = match &*lock(&self.role) {
            Role::Owner { server, .. } => Some(server.backlog()),
            _ => None,
        };
        Sharing {
            owner: backlog.is_some(),
            backlog: backlog.unwrap_or_default(),
            notices_heard: self.notices.load(Ordering::Relaxed),
        }
    }

    /// Tell this handle's watchers of the log's `state`.
    fn changed(&self, state: &WriterState) {
        self.watchers.tell(state);
    }

    /// Become the owner (the lock is free) or a client of the owner, trying for up to
    /// [`TAKEOVER_PATIENCE`].
    fn establish(&self) -> Result<Role> {
        let deadline = Instant::now() + TAKEOVER_PATIENCE;
        loop {
            // No waiting for a held lock: its holder is an owner to connect to.
            let options = WalOptions {
                lock_patience: Duration::ZERO,
                ..self.options
            };
            match Store::open(&self.vfs, &self.dir, options) {
                Ok(store) => {
                    let store = Arc::new(store);
                    let producers = Arc::new(Mutex::new(producers_of(&self.vfs, &store)?));
                    let server =
                        Server::start(&self.socket, Arc::clone(&store), Arc::clone(&producers))?;
                    let me = self.me.clone();
                    let relay: Watcher = Arc::new(move |state: &WriterState| {
                        if let Some(me) = me.upgrade() {
                            me.changed(state);
                        }
                    });
                    store.committer().watch(&relay);
                    // What the last owner committed and this one recovered is news here too.
                    self.changed(&store.committer().state());
                    return Ok(Role::Owner {
                        store,
                        producers,
                        server,
                        _relay: relay,
                    });
                }
                Err(Error::WriterLockHeld { .. }) => {}
                Err(e) => return Err(e),
            }
            let (heard, lost) = (self.me.clone(), self.me.clone());
            let connected = Connection::connect(
                &self.socket,
                deadline.saturating_duration_since(Instant::now()),
                // Answers carry the state too, and the owner sends no notice of a state an
                // answer told: either wakes this process's followers when it is new.
                Box::new(move |state, notice| {
                    if let Some(me) = heard.upgrade() {
                        if notice {
                            me.notices.fetch_add(1, Ordering::Relaxed);
                        }
                        let new = std::mem::replace(&mut *lock(&me.heard), state.clone()) != state;
                        if new {
                            me.changed(&state);
                        }
                    }
                }),
                Box::new(move |pending, unread, why| {
                    if let Some(me) = lost.upgrade() {
                        me.take_over(pending, unread, &why);
                    } else {
                        fail_pending(pending.into_iter().chain(unread), &why);
                    }
                }),
            );
            match connected {
                Ok(connection) => return Ok(Role::Client(connection)),
                // The owner has the lock but not yet its socket, or has just died.
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }

    /// The connection ended with `pending` unanswered (the owner may have read them) and
    /// `unread` (it said it did not): send again the unread ones and the stamped ones, fail
    /// the rest with `OwnerLost`, and find the new owner (or become it).
    fn take_over(&self, pending: Vec<Pending>, unread: Vec<Pending>, why: &str) {
        let mut retries = Vec::new();
        let unread = unread.into_iter().map(|p| (p, true));
        for (request, resend) in pending.into_iter().map(|p| (p, false)).chain(unread) {
            match request {
                Pending::Append {
                    reply,
                    entries,
                    chained,
                    stamp,
                } if resend || stamp.is_some() => retries.push(Queued::Append(
                    AppendRequest {
                        entries,
                        reply,
                        chained,
                    },
                    stamp,
                )),
                Pending::Flush(reply) if resend => retries.push(Queued::Flush(reply)),
                other => other.settle(Err(owner_lost(why))),
            }
        }
        {
            let mut role = lock(&self.role);
            match &mut *role {
                Role::Client(_) => *role = Role::Between(retries),
                Role::Between(queued) => {
                    retries.append(queued);
                    *queued = retries;
                }
                // A connection of an earlier role, or a store closed meanwhile.
                Role::Owner { .. } | Role::Lost(_) | Role::Closed => {
                    for queued in retries {
                        self.route(&mut role, queued);
                    }
                    return;
                }
            }
        }
        let established = self.establish();
        let mut role = lock(&self.role);
        let queued = match std::mem::replace(&mut *role, Role::Closed) {
            Role::Between(queued) => queued,
            // Closed meanwhile: the new role is dropped (an owner's server stops, its
            // committer closes).
            _ => return drop(established),
        };
        *role = match established {
            Ok(new) => new,
            Err(e) => Role::Lost(owner_lost(&format!("{why}; no new owner: {e}"))),
        };
        for call in queued {
            self.route(&mut role, call);
        }
    }

    /// Hand `call` to whatever `role` is now.
    fn route(&self, role: &mut Role, call: Queued) {
        match role {
            Role::Owner {
                store, producers, ..
            } => match call {
                Queued::Append(request, stamp) => {
                    server::append(store.committer(), producers, LOCAL, request, stamp);
                }
                Queued::Flush(reply) => store.committer().flush(reply),
            },
            Role::Client(connection) => {
                let sent = match call {
                    Queued::Append(request, stamp) => {
                        let AppendRequest {
                            entries,
                            reply,
                            chained,
                        } = request;
                        let out = entries.clone();
                        connection.send(
                            move |id| wire::Request::Append {
                                id,
                                chained,
                                producer: stamp,
                                entries: out,
                            },
                            Pending::Append {
                                reply,
                                entries,
                                chained,
                                stamp,
                            },
                        )
                    }
                    Queued::Flush(reply) => {
                        connection.send(|id| wire::Request::Flush { id }, Pending::Flush(reply))
                    }
                };
                // Never sent: the connection had broken; it waits for the next role.
                if let Err(unsent) = sent {
                    *role = Role::Between(vec![match unsent {
                        Pending::Append {
                            reply,
                            entries,
                            chained,
                            stamp,
                        } => Queued::Append(
                            AppendRequest {
                                entries,
                                reply,
                                chained,
                            },
                            stamp,
                        ),
                        Pending::Flush(reply) => Queued::Flush(reply),
                        other => return other.settle(Err(owner_lost("the connection broke"))),
                    }]);
                }
            }
            Role::Between(queued) => queued.push(call),
            Role::Lost(e) => call.fail(e.clone()),
            Role::Closed => call.fail(closed()),
        }
    }

    /// `request`'s reply, counting its bytes out of the queue and its answer into the stats.
    fn tracked(&self, request: AppendRequest) -> AppendRequest {
        let bytes = request.entries.payload_bytes() as u64;
        *lock(&self.queued) += bytes;
        let me = self.me.clone();
        let called = Instant::now();
        let reply = request.reply;
        AppendRequest {
            reply: Box::new(move |outcome: Result<RangeInclusive<u64>>| {
                if let Some(me) = me.upgrade() {
                    if let Ok(range) = &outcome {
                        let entries = range.end() - range.start() + 1;
                        lock(&me.stats).record_group(entries, bytes, [called]);
                    }
                    *lock(&me.queued) -= bytes;
                    me.room.notify_all();
                }
                reply(outcome);
            }),
            ..request
        }
    }

    /// Wait until fewer than [`producer::WINDOW`] stamped requests are unanswered (so a retry
    /// after a failover is always one the next owner remembers), then count `request` among
    /// them until it is answered. `None` (the request failed) when the store closes first.
    fn stamp_slot(&self, request: AppendRequest) -> Option<AppendRequest> {
        let Some(mut stamped) = self.wait_until(lock(&self.stamped), &self.answered, |n| {
            *n < producer::WINDOW
        }) else {
            (request.reply)(Err(closed()));
            return None;
        };
        *stamped += 1;
        drop(stamped);
        let me = self.me.clone();
        let reply = request.reply;
        Some(AppendRequest {
            reply: Box::new(move |outcome| {
                if let Some(me) = me.upgrade() {
                    *lock(&me.stamped) -= 1;
                    me.answered.notify_one();
                }
                reply(outcome);
            }),
            ..request
        })
    }

    /// `guard` once `ready` holds for what it guards, waiting on `signal` meanwhile; `None`
    /// if the store closes first (nothing signals a close: the wait wakes to look every 50 ms).
    fn wait_until<'a, T>(
        &self,
        mut guard: MutexGuard<'a, T>,
        signal: &Condvar,
        ready: impl Fn(&T) -> bool,
    ) -> Option<MutexGuard<'a, T>> {
        while !ready(&guard) {
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            guard = signal
                .wait_timeout(guard, Duration::from_millis(50))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        Some(guard)
    }

    fn next_stamp(&self) -> Option<Producer> {
        self.stamp.map(|(id, epoch)| Producer {
            id,
            epoch,
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
        })
    }
}

/// What the owner does with its store, and a client does itself on the files (a client's own
/// appends made durable first, over the socket, so what it has seen acknowledged is sealed).
impl SharedStore {
    /// Everything this handle appended is durable.
    fn flushed(&self) -> Result<()> {
        let (tx, rx) = std::sync::mpsc::channel();
        Sink::flush(self, Box::new(move |outcome| drop(tx.send(outcome))));
        rx.recv().unwrap_or_else(|_| Err(closed()))
    }

    /// [`Store::begin_checkpoint`]: the watermark follows this handle's appends made before.
    pub fn begin_checkpoint(&self, reply: Reply<u64>) {
        let role = lock(&self.role);
        match &*role {
            Role::Owner { store, .. } => store.begin_checkpoint(reply),
            Role::Client(connection) => {
                let sent = connection.send(
                    |id| wire::Request::BeginCheckpoint { id },
                    Pending::Begin(reply),
                );
                if let Err(unsent) = sent {
                    unsent.settle(Err(owner_lost("the connection broke")));
                }
            }
            Role::Between(_) => reply(Err(owner_lost("a new owner is being found"))),
            Role::Lost(e) => reply(Err(e.clone())),
            Role::Closed => reply(Err(closed())),
        }
    }

    /// [`Store::finish_checkpoint`], with the sections as given (the owner builds the
    /// snapshot). Blocks.
    ///
    /// # Errors
    /// As [`Store::finish_checkpoint`]; `OwnerLost` when the owner goes meanwhile.
    pub fn finish_checkpoint(
        &self,
        sections: Vec<(String, Vec<u8>, bool)>,
        sequence: u64,
    ) -> Result<Rotation> {
        self.ask(
            |store| store.finish_checkpoint(store.builder(sections.clone())?, sequence),
            |id| wire::Request::FinishCheckpoint {
                id,
                sequence,
                sections: sections.clone(),
            },
            Pending::Finish,
        )
    }

    /// [`Store::prune`]: the owner applies `policy`, whoever asks. Blocks.
    ///
    /// # Errors
    /// As [`Store::prune`]; `OwnerLost` when the owner goes meanwhile.
    pub fn prune(&self, policy: &RetentionPolicy) -> Result<PruneOutcome> {
        let policy = *policy;
        self.ask(
            |store| store.prune(&policy),
            |id| wire::Request::Prune { id, policy },
            Pending::Prune,
        )
    }

    /// Do `own` with the store as its owner, or send the request `make` makes as a client and
    /// wait for its answer (`pending` wraps where it goes). Blocks.
    fn ask<T>(
        &self,
        own: impl FnOnce(&Store) -> Result<T>,
        make: impl FnOnce(u64) -> wire::Request,
        pending: impl FnOnce(std::sync::mpsc::Sender<Result<T>>) -> Pending,
    ) -> Result<T> {
        let role = lock(&self.role);
        let connection = match &*role {
            Role::Owner { store, .. } => {
                let store = Arc::clone(store);
                drop(role);
                return own(&store);
            }
            Role::Client(connection) => Arc::clone(connection),
            Role::Between(_) => return Err(owner_lost("a new owner is being found")),
            Role::Lost(e) => return Err(e.clone()),
            Role::Closed => return Err(closed()),
        };
        drop(role);
        let (tx, rx) = std::sync::mpsc::channel();
        connection
            .send(make, pending(tx))
            .map_err(|_| owner_lost("the connection broke"))?;
        rx.recv()
            .unwrap_or_else(|_| Err(owner_lost("the connection broke")))
    }

    /// [`Store::snapshot`]; a client reads the one the MANIFEST names live now.
    ///
    /// # Errors
    /// As reading a MANIFEST and opening a snapshot.
    pub fn snapshot(&self) -> Result<Option<Arc<SnapshotReader>>> {
        if let Some(store) = self.store() {
            return Ok(store.snapshot());
        }
        store::live_snapshot(&self.vfs, &self.dir).map(|found| found.map(Arc::new))
    }

    /// [`Store::replay`]; a client reads the files, beside the owner's writes (entries the owner
    /// has committed, as the owner's own replay does).
    ///
    /// # Errors
    /// As [`Store::replay`].
    pub fn replay(&self, from: u64) -> Result<Replay> {
        if let Some(store) = self.store() {
            return store.replay(from);
        }
        let floor = store::live_snapshot(&self.vfs, &self.dir)?.map_or(0, |s| s.sequence());
        Replay::open(&self.vfs, &self.dir, floor, from)
    }

    /// [`Store::backup`]; a client's backup holds what the files record as durable.
    ///
    /// # Errors
    /// As [`Store::backup`]; `OwnerLost` for a client's flush.
    pub fn backup(&self, dest: &Path) -> Result<u64> {
        if let Some(store) = self.store() {
            return store.backup(dest);
        }
        self.flushed()?;
        backup::backup(&self.vfs, &self.dir, dest, || Upto::Durable)
    }

    /// [`Store::consumer`].
    ///
    /// # Errors
    /// As [`Store::consumer`]; `OwnerLost` for a client's flush.
    pub fn consumer(&self, name: &str, start: u64) -> Result<u64> {
        if let Some(store) = self.store() {
            return store.consumer(name, start);
        }
        self.flushed()?;
        consumer::register(self.vfs.as_ref(), &self.dir, name, start, Log::Files)
    }

    /// [`Store::ack`].
    ///
    /// # Errors
    /// As [`Store::ack`]; `OwnerLost` for a client's flush.
    pub fn ack(&self, name: &str, position: u64) -> Result<u64> {
        if let Some(store) = self.store() {
            return store.ack(name, position);
        }
        self.flushed()?;
        consumer::ack(self.vfs.as_ref(), &self.dir, name, position, Log::Files)
    }

    /// [`Store::consumers`].
    ///
    /// # Errors
    /// As [`Store::consumers`].
    pub fn consumers(&self) -> Result<Vec<Summary>> {
        if let Some(store) = self.store() {
            return store.consumers();
        }
        consumer::describe(
            self.vfs.as_ref(),
            &self.dir,
            Sink::state(self).last_sequence,
        )
    }

    /// [`Store::remove_consumer`].
    ///
    /// # Errors
    /// As [`Store::remove_consumer`].
    pub fn remove_consumer(&self, name: &str) -> Result<bool> {
        if let Some(store) = self.store() {
            return store.remove_consumer(name);
        }
        consumer::remove(self.vfs.as_ref(), &self.dir, name)
    }
}

/// Payload bytes up to which requests of one call are joined ([`joined`]), each and in all.
const JOIN_MAX_BYTES: usize = 64 << 10;

/// The requests of one call (the appends a process made in one turn), joined where that
/// changes nothing but their number: consecutive unchained requests of packed payloads (no
/// metadata, so nothing a committer could refuse in one alone), up to [`JOIN_MAX_BYTES`] in
/// all, become one, whose answer is split among them. A request's entries land together or
/// not at all, as a group's do. So a client sends a turn's appends as one request, under one
/// stamp, and hears one answer: per request, a client and its owner each pay a frame, two
/// thread hand-offs and a wake of the JS thread.
fn joined(requests: Vec<AppendRequest>) -> Vec<AppendRequest> {
    let joinable = |r: &AppendRequest| {
        !r.chained
            && !r.entries.is_empty()
            && matches!(r.entries, NewEntries::Packed { .. })
            && r.entries.payload_bytes() <= JOIN_MAX_BYTES
    };
    let mut out = Vec::with_capacity(requests.len());
    let mut run: Vec<AppendRequest> = Vec::new();
    let mut run_bytes = 0;
    for request in requests {
        let bytes = request.entries.payload_bytes();
        if !joinable(&request) || run_bytes + bytes > JOIN_MAX_BYTES {
            out.extend(join(std::mem::take(&mut run)));
            run_bytes = 0;
        }
        if joinable(&request) {
            run_bytes += bytes;
            run.push(request);
        } else {
            out.push(request);
        }
    }
    out.extend(join(run));
    out
}

/// `run` (packed, unchained) as one request, if there is any.
fn join(run: Vec<AppendRequest>) -> Option<AppendRequest> {
    if run.len() < 2 {
        return run.into_iter().next();
    }
    let mut data = Vec::with_capacity(run.iter().map(|r| r.entries.payload_bytes()).sum());
    let mut lengths = Vec::new();
    let mut parts = Vec::with_capacity(run.len());
    for AppendRequest { entries, reply, .. } in run {
        parts.push((entries.len() as u64, reply));
        if let NewEntries::Packed {
            data: part,
            lengths: mine,
        } = entries
        {
            data.extend_from_slice(&part);
            lengths.extend(mine);
        }
    }
    Some(AppendRequest {
        entries: NewEntries::Packed {
            data: data.into(),
            lengths,
        },
        reply: Box::new(move |outcome: Result<RangeInclusive<u64>>| {
            let mut next = outcome.as_ref().map_or(0, |range| *range.start());
            for (count, reply) in parts {
                reply(outcome.as_ref().map_err(Clone::clone).map(|_| {
                    let first = next;
                    next += count;
                    first..=first + count.saturating_sub(1)
                }));
            }
        }),
        chained: false,
    })
}

fn owner_lost(why: &str) -> Error {
    Error::OwnerLost {
        detail: why.to_owned(),
    }
}

/// Fail every request of a connection whose store is gone.
fn fail_pending(pending: impl IntoIterator<Item = Pending>, why: &str) {
    for request in pending {
        request.settle(Err(owner_lost(why)));
    }
}

impl Sink for SharedStore {
    fn append_all(&self, requests: Vec<AppendRequest>) {
        for request in joined(requests) {
            let mut request = self.tracked(request);
            if self.stamp.is_some() {
                match self.stamp_slot(request) {
                    Some(held) => request = held,
                    None => continue,
                }
            }
            let mut role = lock(&self.role);
            let call = Queued::Append(request, self.next_stamp());
            self.route(&mut role, call);
        }
    }

    fn flush(&self, reply: Reply<()>) {
        let mut role = lock(&self.role);
        self.route(&mut role, Queued::Flush(reply));
    }

    fn close(&self, reply: Reply<()>) {
        self.closed.store(true, Ordering::Release);
        self.room.notify_all();
        let role = std::mem::replace(&mut *lock(&self.role), Role::Closed);
        match role {
            Role::Owner { store, server, .. } => {
                drop(server);
                store.committer().close(reply);
            }
            Role::Client(connection) => {
                let theirs = Arc::clone(&connection);
                // An owner that goes meanwhile leaves nothing of this handle's to flush: its
                // appends were answered, or failed on their own.
                let flushed = connection.send(
                    |id| wire::Request::Flush { id },
                    Pending::Flush(Box::new(move |outcome: Result<()>| {
                        theirs.shut();
                        reply(outcome.or_else(|e| match e {
                            Error::OwnerLost { .. } => Ok(()),
                            other => Err(other),
                        }));
                    })),
                );
                if let Err(unsent) = flushed {
                    unsent.settle(Ok(None));
                }
            }
            Role::Between(queued) => {
                for call in queued {
                    call.fail(closed());
                }
                reply(Ok(()));
            }
            Role::Lost(_) | Role::Closed => reply(Ok(())),
        }
    }

    fn commit_now(&self, entries: Vec<NewEntry>) -> Result<Option<RangeInclusive<u64>>> {
        let role = lock(&self.role);
        let connection = match &*role {
            Role::Owner { store, .. } => {
                let committer = Arc::clone(store.committer());
                drop(role);
                return committer.commit_now(entries);
            }
            Role::Client(connection) => Arc::clone(connection),
            Role::Between(_) => return Err(owner_lost("a new owner is being found")),
            Role::Lost(e) => return Err(e.clone()),
            Role::Closed => return Err(closed()),
        };
        drop(role);
        let count = entries.len() as u64;
        let (tx, rx) = std::sync::mpsc::channel();
        connection
            .send(
                |id| wire::Request::CommitNow { id, entries },
                Pending::Sync(tx),
            )
            .map_err(|_| owner_lost("the connection broke"))?;
        let first = rx
            .recv()
            .unwrap_or_else(|_| Err(owner_lost("the connection broke")))?;
        Ok(first.map(|first| first..=first + count.saturating_sub(1)))
    }

    fn watch(&self, watcher: &Watcher) {
        self.watchers.add(watcher);
    }

    fn state(&self) -> WriterState {
        self.store()
            .map_or_else(|| lock(&self.heard).clone(), |s| s.committer().state())
    }

    fn stats(&self) -> StatsReport {
        self.store().map_or_else(
            || lock(&self.stats).report(lock(&self.heard).fdatasyncs, None, 0),
            |s| s.committer().stats(),
        )
    }

    fn queued_bytes(&self) -> u64 {
        *lock(&self.queued)
    }

    fn wait_for_room(&self, limit: u64) -> bool {
        self.wait_until(lock(&self.queued), &self.room, |queued| *queued <= limit)
            .is_some()
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn tail_repair(&self) -> Option<TailRepair> {
        self.store().and_then(|s| s.committer().tail_repair())
    }

    fn torn_file(&self) -> Option<PathBuf> {
        self.store()
            .and_then(|s| s.committer().torn_file().map(Path::to_path_buf))
    }
}

impl Drop for SharedStore {
    fn drop(&mut self) {
        if !self.is_closed() {
            Sink::close(self, Box::new(|_| {}));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use bytes::Bytes;

    use super::*;

    type Heard = mpsc::Receiver<(usize, Result<RangeInclusive<u64>>)>;

    /// A request of `count` payloads of `len` bytes, whose answer goes to `tx` as `id`.
    fn request(
        id: usize,
        count: u32,
        len: u32,
        chained: bool,
        tx: &mpsc::Sender<(usize, Result<RangeInclusive<u64>>)>,
    ) -> AppendRequest {
        let tx = tx.clone();
        AppendRequest {
            entries: NewEntries::packed(
                Bytes::from(vec![id as u8; (count * len) as usize]),
                vec![len; count as usize],
            )
            .unwrap(),
            reply: Box::new(move |outcome| tx.send((id, outcome)).unwrap()),
            chained,
        }
    }

    fn heard(
        rx: &Heard,
    ) -> Vec<(
        usize,
        std::result::Result<RangeInclusive<u64>, &'static str>,
    )> {
        rx.try_iter()
            .map(|(id, outcome)| (id, outcome.map_err(|e| e.code())))
            .collect()
    }

    #[test]
    fn a_calls_small_unchained_requests_go_as_one_and_its_answer_is_split_in_order() {
        let (tx, rx) = mpsc::channel();
        let requests = vec![
            request(0, 2, 10, false, &tx),
            request(1, 3, 10, false, &tx),
            // Chained (appendSync batches) and large requests go alone, and end a run.
            request(2, 1, 10, true, &tx),
            request(3, 1, 10, false, &tx),
            request(4, 1, JOIN_MAX_BYTES as u32 + 1, false, &tx),
            request(5, 1, 10, false, &tx),
        ];
        let mut joined = joined(requests).into_iter();
        let first = joined.next().unwrap();
        assert_eq!(first.entries.len(), 5);
        assert_eq!(first.entries.payload_bytes(), 50);
        (first.reply)(Ok(10..=14));
        assert_eq!(heard(&rx), vec![(0, Ok(10..=11)), (1, Ok(12..=14))]);
        let rest: Vec<_> = joined.collect();
        assert_eq!(
            rest.iter().map(|r| r.entries.len()).collect::<Vec<_>>(),
            vec![1, 1, 1, 1]
        );
        assert!(rest[0].chained);
        for request in rest {
            (request.reply)(Err(closed()));
        }
        assert_eq!(
            heard(&rx),
            (2..=5).map(|id| (id, Err("CLOSED"))).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_failed_joined_request_fails_each_of_its_parts() {
        let (tx, rx) = mpsc::channel();
        let joined = joined(vec![
            request(0, 1, 5, false, &tx),
            request(1, 4, 5, false, &tx),
        ]);
        assert_eq!(joined.len(), 1);
        let request = joined.into_iter().next().unwrap();
        assert_eq!(request.entries.payload_bytes(), 25);
        (request.reply)(Err(closed()));
        assert_eq!(heard(&rx), vec![(0, Err("CLOSED")), (1, Err("CLOSED"))]);
    }
}
