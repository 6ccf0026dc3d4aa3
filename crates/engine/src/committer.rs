//! One committer thread per writer: it owns the [`WalWriter`], takes everything queued,
//! writes it with one write and one fdatasync, then answers the whole group.
//!
//! Callers never block: each request carries a [`Reply`] that the committer calls when the
//! request is as durable as the sync policy promises (or has failed). Sequences are assigned in
//! queue order. A panic inside the writer is caught, poisons the writer and fails the group;
//! it never unwinds out of the thread.
//!
//! The one blocking call, [`Committer::commit_now`], runs on the caller's thread when nothing
//! is queued (the writer sits behind a mutex the committer holds only while it works), so a
//! caller that wants to wait pays no thread hand-off; otherwise it waits its turn in the queue.

use std::ops::RangeInclusive;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread;
use std::time::{Duration, Instant};

mod gather;

use gather::Gather;
pub use gather::{LOCAL, Source};

use crate::error::{Error, Result};
use crate::filename::torn_path;
use crate::scan::TailRepair;
use crate::stats::{CommitStats, StatsReport};
use crate::warning::{self, Kind};
use crate::writer::{IoTotals, NewEntries, NewEntry, SyncPolicy, WalWriter};

/// Called once with the outcome of a request, on the committer thread.
pub type Reply<T> = Box<dyn FnOnce(Result<T>) + Send>;

/// Hears the writer's state each time it changes (a group committed, a sync, a rotation), on
/// the thread that changed it: how a follower learns of commits it did not ask for. It must
/// not block. Held weakly: it hears until its last `Arc` is dropped.
pub type Watcher = Arc<Watch>;

/// What a [`Watcher`] calls.
pub type Watch = dyn Fn(&WriterState) + Send + Sync;

/// The watchers of a log, each held weakly (dropped ones are forgotten as they are met).
#[derive(Default)]
pub struct Watchers(Mutex<Vec<Weak<Watch>>>);

impl Watchers {
    /// Tell `watcher` every state from now on, until it is dropped.
    pub fn add(&self, watcher: &Watcher) {
        lock(&self.0).push(Arc::downgrade(watcher));
    }

    /// Tell every watcher of `state`.
    pub fn tell(&self, state: &WriterState) {
        lock(&self.0).retain(|watcher| watcher.upgrade().map(|watcher| watcher(state)).is_some());
    }
}

impl std::fmt::Debug for Watchers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Watchers")
            .field(&lock(&self.0).len())
            .finish()
    }
}

/// Default bound on the payload bytes a caller queues to a committer before later calls wait:
/// 4 MiB, four groups' worth, so groups are gathered while the last is written. A deeper queue
/// only holds more memory and is slower: 1M `appendSync` of 128 B ran at 5.2M/s with 64 MiB
/// (peak RSS 141 MiB) against 7.8M/s with 4 MiB (74 MiB), since the payloads leave the cache
/// before the committer frames them. The committer does not enforce it; the
/// TypeScript facade's backpressure does, with this default.
pub const DEFAULT_MAX_QUEUE_BYTES: u64 = 4 << 20;

/// Most bytes of payload taken into one group: one write of about this much, so the staging
/// buffer stays warm in cache and small enough to keep. With 1 MiB against 16 MiB, W3 (1M
/// `appendSync` of 128 B) ran at 7.8M against 5.2M rec/s, with a third less RSS.
const MAX_GROUP_BYTES: usize = 1 << 20;

/// Entries to append as one unit, and who to tell their sequences.
pub struct AppendRequest {
    /// The entries; they get contiguous sequences, or all fail together.
    pub entries: NewEntries,
    /// Called with their sequences once committed.
    pub reply: Reply<RangeInclusive<u64>>,
    /// Part of one chain (the batches of `appendSync`, whose caller learns of a failure only
    /// later): once a chained request fails, every later one fails with the same error, so the
    /// log never holds a chained entry after one that was lost.
    pub chained: bool,
}

enum Command {
    /// Requests that arrived together (at that instant, from that source): they join the same
    /// group, each staged on its own.
    Append(Vec<AppendRequest>, Instant, Source),
    Flush {
        reply: Reply<()>,
    },
    Close {
        reply: Reply<()>,
    },
    Exclusive {
        /// Runs on the writer and returns the delivery of its reply, made after the state the
        /// task produced is published.
        task: Box<dyn FnOnce(&mut WalWriter) -> Deliver + Send>,
    },
}

/// A reply ready to be sent.
type Deliver = Box<dyn FnOnce() + Send>;

impl Command {
    /// Answer a command that can no longer run: the writer is closed.
    fn refuse(self) {
        match self {
            Self::Append(requests, ..) => {
                for request in requests {
                    (request.reply)(Err(closed()));
                }
            }
            Self::Flush { reply } | Self::Close { reply } => reply(Err(closed())),
            // `submit` answers through its own slot.
            Self::Exclusive { task } => drop(task),
        }
    }
}

/// The writer's state as of the last finished group.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct WriterState {
    /// Sequence of the last committed entry.
    pub last_sequence: u64,
    /// Offset just past it.
    pub committed_offset: u64,
    /// The header's snapshot sequence.
    pub snapshot_seq: u64,
    /// Committed entries not yet fdatasynced.
    pub entries_since_fsync: u64,
    /// Why the writer is poisoned, if it is.
    pub poisoned: Option<String>,
    /// fdatasyncs of the WAL that succeeded since it opened.
    pub fdatasyncs: u64,
    /// What its writes and fdatasyncs have cost since it opened.
    pub io: IoTotals,
}

impl WriterState {
    fn of(writer: &WalWriter) -> Self {
        Self {
            last_sequence: writer.last_sequence(),
            committed_offset: writer.committed_offset(),
            snapshot_seq: writer.snapshot_seq(),
            entries_since_fsync: writer.entries_since_fsync(),
            poisoned: writer.poisoned().map(str::to_owned),
            fdatasyncs: writer.fdatasyncs().0,
            io: writer.io_totals(),
        }
    }
}

/// What the committer thread and [`Committer::commit_now`] share.
#[derive(Debug)]
struct Shared {
    /// The writer; `None` once closed. Held by the committer while it works on a group.
    writer: Mutex<Option<WalWriter>>,
    /// The writer's state as of the last finished group.
    state: Mutex<WriterState>,
    /// Commands sent and not yet finished: while any are, `commit_now` must queue behind them.
    queued: AtomicUsize,
    /// What the groups committed so far add up to.
    stats: Mutex<CommitStats>,
    /// Payload bytes of the appends sent and not yet committed (or refused).
    queued_bytes: AtomicU64,
    /// Callers blocked in [`Committer::wait_for_room`], woken through `room` whenever
    /// `queued_bytes` drops.
    room_waiters: AtomicUsize,
    room: Condvar,
    room_lock: Mutex<()>,
    /// Set once the committer takes no more appends (closed), so no waiter waits for it.
    stopped: AtomicBool,
    /// Why the chain of chained requests broke, if it did (see [`AppendRequest::chained`]).
    chain_broken: Mutex<Option<Error>>,
    /// Who hears of every new state ([`Committer::watch`]); gone ones are dropped.
    watchers: Watchers,
}

impl Shared {
    /// `bytes` of queued payload are done with (committed, refused or failed).
    fn dequeued(&self, bytes: u64) {
        self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        if self.room_waiters.load(Ordering::Acquire) > 0 {
            let _held = lock(&self.room_lock);
            self.room.notify_all();
        }
    }

    /// The committer takes no more appends: no caller may wait for room any longer.
    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.dequeued(0);
    }

    fn publish(&self, writer: &WalWriter) {
        let state = self.set(writer);
        self.watchers.tell(&state);
    }

    /// Make `writer`'s state the one callers see, without telling the watchers yet.
    fn set(&self, writer: &WalWriter) -> WriterState {
        let state = WriterState::of(writer);
        *lock(&self.state) = state.clone();
        state
    }

    /// Count a blocking commit of `entries` called at `called`, if it committed any.
    fn record(
        &self,
        outcome: &Result<Option<RangeInclusive<u64>>>,
        entries: &[NewEntry],
        called: Instant,
    ) {
        if matches!(outcome, Ok(Some(_))) {
            let bytes = entries.iter().map(|e| e.payload.len() as u64).sum();
            lock(&self.stats).record_group(entries.len() as u64, bytes, [called]);
        }
    }
}

/// Handle to a writer owned by its committer thread.
#[derive(Debug)]
pub struct Committer {
    sender: Mutex<Option<Sender<Command>>>,
    shared: Arc<Shared>,
    tail_repair: Option<TailRepair>,
    /// Where the bytes of `tail_repair` were kept, if they were.
    torn_file: Option<PathBuf>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Committer {
    /// Move `writer` onto a new committer thread.
    ///
    /// # Errors
    /// `Io` if the thread cannot be spawned.
    pub fn start(writer: WalWriter) -> Result<Self> {
        let tail_repair = writer.tail_repair();
        let path = writer.path().to_path_buf();
        let torn_file = tail_repair
            .filter(|r| r.saved_bytes > 0)
            .map(|r| torn_path(&path, r.offset));
        let interval = match writer.options().sync {
            SyncPolicy::Interval(d) => Some(d),
            _ => None,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(WriterState::of(&writer)),
            writer: Mutex::new(Some(writer)),
            queued: AtomicUsize::new(0),
            stats: Mutex::new(CommitStats::default()),
            queued_bytes: AtomicU64::new(0),
            room_waiters: AtomicUsize::new(0),
            room: Condvar::new(),
            room_lock: Mutex::new(()),
            stopped: AtomicBool::new(false),
            chain_broken: Mutex::new(None),
            watchers: Watchers::default(),
        });
        let (sender, receiver) = mpsc::channel();
        let theirs = Arc::clone(&shared);
        thread::Builder::new()
            .name("selene-persist-committer".into())
            .spawn(move || run(&theirs, &receiver, interval))
            .map_err(|e| Error::io("spawn committer for", path, e))?;
        Ok(Self {
            sender: Mutex::new(Some(sender)),
            shared,
            tail_repair,
            torn_file,
        })
    }

    /// Queue `entries`; `reply` gets their sequences once they are committed.
    pub fn append(&self, entries: Vec<NewEntry>, reply: Reply<RangeInclusive<u64>>) {
        self.append_all(vec![AppendRequest {
            entries: entries.into(),
            reply,
            chained: false,
        }]);
    }

    /// Queue several requests at once, in order. They are taken into the same group (so one
    /// fdatasync covers them all), but each is staged on its own: one refused request (a cap,
    /// say) fails alone.
    pub fn append_all(&self, requests: Vec<AppendRequest>) {
        self.append_from(LOCAL, requests);
    }

    /// [`Self::append_all`] for `source` (a shared store's client): a group that holds others'
    /// requests may wait briefly for this source's next, once it has learnt its rhythm (see
    /// `gather`).
    pub fn append_from(&self, source: Source, requests: Vec<AppendRequest>) {
        let bytes = payload_bytes(&requests);
        self.shared.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
        if let Err(refused) = self.send(Command::Append(requests, Instant::now(), source)) {
            self.shared.dequeued(bytes);
            refused.refuse();
        }
    }

    /// Block until at most `limit` payload bytes are queued, or the committer takes no more
    /// appends (then `false`): how a synchronous caller that must not hold more than it can
    /// queue waits for room instead.
    pub fn wait_for_room(&self, limit: u64) -> bool {
        let shared = &self.shared;
        shared.room_waiters.fetch_add(1, Ordering::AcqRel);
        let mut held = lock(&shared.room_lock);
        let room = loop {
            if shared.queued_bytes.load(Ordering::Acquire) <= limit {
                break true;
            }
            if shared.stopped.load(Ordering::Acquire) {
                break false;
            }
            // The timeout only bounds a wake-up missed between the check and the wait.
            held = shared
                .room
                .wait_timeout(held, Duration::from_millis(50))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        };
        drop(held);
        shared.room_waiters.fetch_sub(1, Ordering::AcqRel);
        room
    }

    /// Payload bytes of the appends queued and not yet committed or refused: what a caller
    /// bounding its queue counts, without waiting for the replies to reach it.
    #[must_use]
    pub fn queued_bytes(&self) -> u64 {
        self.shared.queued_bytes.load(Ordering::Acquire)
    }

    /// Queue a flush; `reply` is called once everything before it is durable.
    pub fn flush(&self, reply: Reply<()>) {
        if let Err(refused) = self.send(Command::Flush { reply }) {
            refused.refuse();
        }
    }

    /// Queue a close: everything queued before it is committed and (unless the policy is
    /// manual) made durable, the lock is released, then `reply` is called. Later requests fail
    /// with `Closed`.
    pub fn close(&self, reply: Reply<()>) {
        let sender = lock(&self.sender).take();
        match sender {
            Some(sender) => {
                self.shared.queued.fetch_add(1, Ordering::AcqRel);
                if let Err(mpsc::SendError(Command::Close { reply })) =
                    sender.send(Command::Close { reply })
                {
                    self.shared.queued.fetch_sub(1, Ordering::AcqRel);
                    reply(Err(closed()));
                }
            }
            None => reply(Err(closed())),
        }
    }

    /// Append `entries` (none: just make what is committed durable) after everything queued
    /// before this call, and return once they and everything before them are durable, whatever
    /// the sync policy. Returns their sequences.
    ///
    /// Blocks the calling thread for the write and the fdatasync. When nothing is queued they
    /// run right here, with no hand-off to the committer thread; otherwise this waits for the
    /// queue to drain.
    ///
    /// # Errors
    /// `Closed`, and as [`WalWriter::stage`] and [`WalWriter::commit_durably`]; on error none
    /// of `entries` was committed.
    pub fn commit_now(&self, entries: Vec<NewEntry>) -> Result<Option<RangeInclusive<u64>>> {
        if self.is_closed() {
            return Err(closed());
        }
        {
            let mut writer = lock(&self.shared.writer);
            // Everything sent before this call is finished: the committer counts a command
            // down only after answering it, while it still holds the writer.
            if self.shared.queued.load(Ordering::Acquire) == 0 {
                let writer = writer.as_mut().ok_or_else(closed)?;
                let called = Instant::now();
                let outcome = shielded(writer, |w| commit_durably(w, &entries));
                self.shared.publish(writer);
                self.shared.record(&outcome, &entries, called);
                return outcome;
            }
        }
        let called = Instant::now();
        let shared = Arc::clone(&self.shared);
        self.call(move |w| {
            let outcome = commit_durably(w, &entries);
            shared.record(&outcome, &entries, called);
            outcome
        })
    }

    /// Queue `task` to run on the committer thread after everything queued before it;
    /// `reply` gets its result (a panic in it becomes `Internal` and poisons the writer).
    pub fn submit<T: Send + 'static>(
        &self,
        task: impl FnOnce(&mut WalWriter) -> Result<T> + Send + 'static,
        reply: Reply<T>,
    ) {
        let slot = Arc::new(Mutex::new(Some(reply)));
        let runner = Arc::clone(&slot);
        let task = Box::new(move |writer: &mut WalWriter| -> Deliver {
            let result = shielded(writer, task);
            let reply = lock(&runner).take();
            Box::new(move || {
                if let Some(reply) = reply {
                    reply(result);
                }
            })
        });
        if self.send(Command::Exclusive { task }).is_err()
            && let Some(reply) = lock(&slot).take()
        {
            reply(Err(closed()));
        }
    }

    /// [`Self::submit`], waiting for the result. Blocks: call it from a worker thread, never
    /// the JS thread.
    ///
    /// # Errors
    /// `Closed`, or what `task` returns.
    pub fn call<T: Send + 'static>(
        &self,
        task: impl FnOnce(&mut WalWriter) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = mpsc::channel();
        self.submit(task, Box::new(move |result| drop(tx.send(result))));
        rx.recv().unwrap_or_else(|_| Err(closed()))
    }

    /// Whether `close` has been called.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        lock(&self.sender).is_none()
    }

    /// Tell `watcher` every new state from now on, until it is dropped.
    pub fn watch(&self, watcher: &Watcher) {
        self.shared.watchers.add(watcher);
    }

    /// The state as of the last finished group.
    #[must_use]
    pub fn state(&self) -> WriterState {
        lock(&self.shared.state).clone()
    }

    /// What the writer has done since it opened.
    #[must_use]
    pub fn stats(&self) -> StatsReport {
        let (fdatasyncs, last) = lock(&self.shared.writer)
            .as_ref()
            .map_or((0, None), WalWriter::fdatasyncs);
        lock(&self.shared.stats).report(fdatasyncs, last, u64::from(self.tail_repair.is_some()))
    }

    /// The torn tail cut when the writer was opened.
    #[must_use]
    pub const fn tail_repair(&self) -> Option<TailRepair> {
        self.tail_repair
    }

    /// Where the bytes of the torn tail cut at open were kept, if they were.
    #[must_use]
    pub fn torn_file(&self) -> Option<&Path> {
        self.torn_file.as_deref()
    }

    /// Queue `command`, or hand it back if the writer is closed.
    fn send(&self, command: Command) -> std::result::Result<(), Command> {
        match lock(&self.sender).as_ref() {
            Some(sender) => {
                self.shared.queued.fetch_add(1, Ordering::AcqRel);
                sender.send(command).map_err(|mpsc::SendError(command)| {
                    self.shared.queued.fetch_sub(1, Ordering::AcqRel);
                    command
                })
            }
            None => Err(command),
        }
    }
}

impl Drop for Committer {
    /// Dropped without `close`: the thread still commits what is queued and closes the writer.
    fn drop(&mut self) {
        if !self.is_closed() {
            self.close(Box::new(|_| {}));
        }
    }
}

/// The payload bytes of `requests`.
fn payload_bytes(requests: &[AppendRequest]) -> u64 {
    requests
        .iter()
        .map(|r| r.entries.payload_bytes() as u64)
        .sum()
}

fn closed() -> Error {
    Error::Closed { what: "writer" }
}

/// Stage `entries` (if any) and commit them durably.
fn commit_durably(
    writer: &mut WalWriter,
    entries: &[NewEntry],
) -> Result<Option<RangeInclusive<u64>>> {
    let range = if entries.is_empty() {
        None
    } else {
        Some(writer.stage(entries)?)
    };
    writer.commit_durably()?;
    Ok(range)
}

/// Run `f` on the writer; a panic becomes `Internal` and poisons the writer.
fn shielded<T>(writer: &mut WalWriter, f: impl FnOnce(&mut WalWriter) -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(|| f(writer))) {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            let error = Error::Internal(format!("panic in WAL writer: {message}"));
            writer.poison(&error);
            Err(error)
        }
    }
}

fn run(shared: &Shared, receiver: &Receiver<Command>, interval: Option<Duration>) {
    let mut dirty_since: Option<Instant> = None;
    let mut gather = Gather::default();
    loop {
        let first = match (interval, dirty_since) {
            (Some(period), Some(since)) => {
                match receiver.recv_timeout(period.saturating_sub(since.elapsed())) {
                    Ok(command) => command,
                    Err(RecvTimeoutError::Timeout) => {
                        background_flush(shared);
                        dirty_since = None;
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            _ => match receiver.recv() {
                Ok(command) => command,
                Err(_) => break,
            },
        };
        let mut guard = lock(&shared.writer);
        let Some(writer) = guard.as_mut() else {
            if let Command::Append(requests, ..) = &first {
                shared.dequeued(payload_bytes(requests));
            }
            first.refuse();
            continue;
        };
        let (close, taken) = process_group(writer, first, receiver, shared, &mut gather);
        if writer.entries_since_fsync() > 0 {
            dirty_since.get_or_insert_with(Instant::now);
        } else {
            dirty_since = None;
        }
        if let Some(reply) = close {
            let outcome = shielded(writer, WalWriter::wind_down);
            shared.publish(writer);
            // Release the lock before answering, so the caller can reopen at once.
            drop(guard.take());
            shared.stop();
            shared.queued.fetch_sub(taken, Ordering::AcqRel);
            drop(guard);
            reply(outcome);
            return;
        }
        shared.queued.fetch_sub(taken, Ordering::AcqRel);
    }
    shared.stop();
    if let Some(writer) = lock(&shared.writer).take() {
        let path = writer.path().to_path_buf();
        if let Err(e) = writer.close() {
            warning::report(Kind::CloseFailed, &path, e);
        }
    }
}

/// The interval policy's fdatasync, when nothing has made the writer durable since.
fn background_flush(shared: &Shared) {
    let mut guard = lock(&shared.writer);
    let Some(writer) = guard.as_mut().filter(|w| w.entries_since_fsync() > 0) else {
        return;
    };
    let failed = shielded(writer, WalWriter::flush).err();
    shared.publish(writer);
    // Told once the state says poisoned, so whoever hears it finds the writer so.
    if let Some(e) = failed {
        warning::report(Kind::BackgroundSyncFailed, writer.path(), e);
    }
}

/// A request staged in a group: its reply, its sequences, when it was called, whether chained.
type Staged = (
    Reply<RangeInclusive<u64>>,
    RangeInclusive<u64>,
    Instant,
    bool,
);

/// Stage `first` and everything else queued (waiting briefly for due siblings, see `gather`),
/// commit once, publish the state, then answer. Returns a pending close and how many commands
/// were taken.
fn process_group(
    writer: &mut WalWriter,
    first: Command,
    receiver: &Receiver<Command>,
    shared: &Shared,
    gather: &mut Gather,
) -> (Option<Reply<()>>, usize) {
    let start = Instant::now();
    let mut seen: Vec<Source> = Vec::new();
    let mut pending: Vec<Staged> = Vec::new();
    let mut staged_bytes = 0u64;
    let mut taken_bytes = 0u64;
    let mut flushes: Vec<Reply<()>> = Vec::new();
    let mut close = None;
    let mut exclusive = None;
    let mut bytes = 0usize;
    let mut taken = 0;
    let mut next = Some(first);
    while let Some(command) = next.take() {
        taken += 1;
        match command {
            Command::Append(requests, called, source) => {
                if !seen.contains(&source) {
                    seen.push(source);
                    gather.arrived(source, called);
                }
                for AppendRequest {
                    entries,
                    reply,
                    chained,
                } in requests
                {
                    let payload = entries.payload_bytes();
                    taken_bytes += payload as u64;
                    if chained && let Some(broken) = lock(&shared.chain_broken).clone() {
                        reply(Err(broken));
                        continue;
                    }
                    bytes += payload;
                    match shielded(writer, |w| w.stage_entries(&entries)) {
                        Ok(range) => {
                            staged_bytes += payload as u64;
                            pending.push((reply, range, called, chained));
                        }
                        Err(e) => {
                            if chained {
                                lock(&shared.chain_broken).get_or_insert_with(|| e.clone());
                            }
                            reply(Err(e));
                        }
                    }
                }
            }
            Command::Flush { reply } => flushes.push(reply),
            Command::Close { reply } => {
                close = Some(reply);
                break;
            }
            Command::Exclusive { task } => {
                exclusive = Some(task);
                break;
            }
        }
        if bytes < MAX_GROUP_BYTES {
            next = receiver.try_recv().ok();
            if next.is_none()
                && flushes.is_empty()
                && let Some(until) = gather.wait_until(&seen, start, Instant::now())
            {
                next = receiver
                    .recv_timeout(until.saturating_duration_since(Instant::now()))
                    .ok();
            }
        }
    }
    let began = Instant::now();
    let committed = shielded(writer, WalWriter::commit);
    if !pending.is_empty() {
        gather.committed(began.elapsed());
    }
    let flushed = (!flushes.is_empty()).then(|| shielded(writer, WalWriter::flush));
    // Callers that see their reply must also see the state it produced. The watchers hear of
    // it after the replies: a shared store's owner then sends a client its answers before the
    // notice of the same state, which the answers make needless.
    let state = shared.set(writer);
    shared.dequeued(taken_bytes);
    match &committed {
        Ok(()) if !pending.is_empty() => {
            let entries = pending
                .iter()
                .map(|(_, r, _, _)| r.end() - r.start() + 1)
                .sum();
            let calls = pending.iter().map(|(_, _, called, _)| *called);
            lock(&shared.stats).record_group(entries, staged_bytes, calls);
        }
        Err(e) if pending.iter().any(|(_, _, _, chained)| *chained) => {
            lock(&shared.chain_broken).get_or_insert_with(|| e.clone());
        }
        _ => {}
    }
    for (reply, range, _, _) in pending {
        reply(committed.clone().map(|()| range));
    }
    if let Some(flushed) = flushed {
        for reply in flushes {
            reply(flushed.clone());
        }
    }
    shared.watchers.tell(&state);
    if let Some(task) = exclusive {
        let deliver = task(writer);
        shared.publish(writer);
        deliver();
    }
    (close, taken)
}
