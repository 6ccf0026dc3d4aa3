//! A shared store in one process: an owner and clients, each its own `SharedStore` (the
//! writer lock is per open file, so the second open becomes a client). The multi-process
//! cases (kill -9 of the owner, hostile peers) are in `__test__/shared.spec.mjs`.

use std::io::Write;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::mpsc;

use bytes::Bytes;
use selene_persist_engine::Sink;
use selene_persist_engine::io::{StdFs, Vfs};
use selene_persist_engine::retention::RetentionPolicy;
use selene_persist_engine::shared::server::{Backlog, MAX_IN_FLIGHT, MAX_IN_FLIGHT_BYTES};
use selene_persist_engine::shared::wire::Request;
use selene_persist_engine::shared::{SharedOptions, SharedStore};
use selene_persist_engine::store::Store;
use selene_persist_engine::{
    AppendRequest, Entry, NewEntries, Result, WalOptions, Watcher, WriterState,
};

fn open(dir: &std::path::Path, producer: Option<u64>) -> Arc<SharedStore> {
    let vfs: Arc<dyn Vfs> = StdFs::shared();
    SharedStore::open(&vfs, dir, WalOptions::default(), SharedOptions { producer }).unwrap()
}

fn append(sink: &dyn Sink, payload: &'static [u8]) -> mpsc::Receiver<Result<RangeInclusive<u64>>> {
    let (tx, rx) = mpsc::channel();
    sink.append_all(vec![AppendRequest {
        entries: NewEntries::packed(Bytes::from_static(payload), vec![payload.len() as u32])
            .unwrap(),
        reply: Box::new(move |outcome| drop(tx.send(outcome))),
        chained: false,
    }]);
    rx
}

fn close(sink: &dyn Sink) {
    let (tx, rx) = mpsc::channel();
    sink.close(Box::new(move |outcome| drop(tx.send(outcome))));
    rx.recv().unwrap().unwrap();
}

fn payloads(dir: &std::path::Path) -> Vec<(u64, Vec<u8>)> {
    let vfs: Arc<dyn Vfs> = StdFs::shared();
    let store = Store::open(&vfs, dir, WalOptions::default()).unwrap();
    let mut replay = store.replay(0).unwrap();
    let mut out = Vec::new();
    loop {
        let batch = replay.next_batch::<Vec<Entry>>(100, usize::MAX).unwrap();
        if batch.is_empty() {
            return out;
        }
        out.extend(batch.into_iter().map(|e| (e.sequence, e.payload.to_vec())));
    }
}

#[test]
fn a_client_appends_through_the_owner_and_takes_over_when_it_closes() {
    let dir = tempfile::tempdir().unwrap();
    let owner = open(dir.path(), None);
    assert!(owner.is_owner());
    let client = open(dir.path(), Some(9));
    assert!(!client.is_owner());
    let a = append(&*owner, b"a");
    let b = append(&*client, b"b");
    let c = append(&*client, b"c");
    let mut got = [a, b, c].map(|rx| *rx.recv().unwrap().unwrap().start());
    got.sort_unstable();
    assert_eq!(got, [1, 2, 3]);
    // The client's state follows the owner's answers.
    assert_eq!(client.state().last_sequence, 3);
    let synced = client.commit_now(Vec::new()).unwrap();
    assert_eq!(synced, None);
    close(&*owner);
    // The client finds the owner gone and becomes the owner itself.
    let d = append(&*client, b"d").recv().unwrap().unwrap();
    assert_eq!(*d.start(), 4);
    assert!(client.is_owner());
    let later = open(dir.path(), None);
    assert!(!later.is_owner());
    assert_eq!(*append(&*later, b"e").recv().unwrap().unwrap().start(), 5);
    close(&*later);
    close(&*client);
    let log = payloads(dir.path());
    assert_eq!(
        log,
        [b"a", b"b", b"c", b"d", b"e"]
            .iter()
            .enumerate()
            .map(|(i, p)| (i as u64 + 1, p.to_vec()))
            .collect::<Vec<_>>()
    );
}

/// The states a watcher of `sink` hears, as they come.
fn watched(sink: &dyn Sink) -> (Watcher, mpsc::Receiver<u64>) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let watcher: Watcher = Arc::new(move |state: &WriterState| {
        let _ = tx.lock().unwrap().send(state.last_sequence);
    });
    sink.watch(&watcher);
    (watcher, rx)
}

/// Waits for a watcher to hear `sequence`; fails if the watcher is dropped first.
fn hears(rx: &mpsc::Receiver<u64>, sequence: u64) {
    while rx.recv().unwrap() < sequence {}
}

#[test]
fn every_process_hears_every_commit_pushed_not_polled() {
    let dir = tempfile::tempdir().unwrap();
    let owner = open(dir.path(), None);
    let client = open(dir.path(), None);
    let other = open(dir.path(), None);
    // The first notice arrives with the connection: a new client knows the log's end.
    assert_eq!(client.state().last_sequence, 0);
    let heard_at_open = client.sharing().notices_heard;
    assert_eq!(heard_at_open, 1);
    let (_c, at_client) = watched(&*client);
    let (_o, at_owner) = watched(&*owner);
    // Another client's appends reach this client's watcher, though it asked nothing.
    for payload in [&b"x"[..], b"y", b"z"] {
        append(&*other, payload).recv().unwrap().unwrap();
    }
    hears(&at_client, 3);
    hears(&at_owner, 3);
    assert_eq!(client.state().last_sequence, 3);
    let sharing = client.sharing();
    assert!(!sharing.owner);
    // At least one notice per wake it had, none asked for: the only way it heard.
    assert!(sharing.notices_heard > heard_at_open);
    assert_eq!(client.stats().entries, 0, "the client appended nothing");
    let owner_sharing = owner.sharing();
    assert!(owner_sharing.owner);
    assert_eq!(owner_sharing.backlog.clients, 2);
    assert!(owner_sharing.backlog.notices >= sharing.notices_heard);
    // The owner's own appends too.
    append(&*owner, b"w").recv().unwrap().unwrap();
    hears(&at_client, 4);
    // A client that takes over keeps telling its watchers (through its new committer).
    close(&*owner);
    append(&*other, b"v").recv().unwrap().unwrap();
    hears(&at_client, 5);
    close(&*other);
    close(&*client);
}

#[test]
fn a_client_hears_its_own_commits_from_its_answers_not_from_notices_too() {
    let dir = tempfile::tempdir().unwrap();
    let owner = open(dir.path(), None);
    let client = open(dir.path(), None);
    let (_c, at_client) = watched(&*client);
    for _ in 0..20 {
        append(&*client, b"own").recv().unwrap().unwrap();
    }
    // Its watcher was woken by the answers' state...
    hears(&at_client, 20);
    // ...and the owner sent no notice of a state an answer had told: only the one at connect.
    assert_eq!(client.sharing().notices_heard, 1);
    assert_eq!(owner.sharing().backlog.notices, 1);
    // A commit it did not ask for is still told by a notice.
    append(&*owner, b"owner's").recv().unwrap().unwrap();
    hears(&at_client, 21);
    assert_eq!(client.sharing().notices_heard, 2);
    close(&*client);
    close(&*owner);
}

#[test]
fn a_client_replays_reads_the_snapshot_and_prunes() {
    let dir = tempfile::tempdir().unwrap();
    let owner = open(dir.path(), None);
    let client = open(dir.path(), None);
    assert!(client.snapshot().unwrap().is_none());
    for round in 0..3u8 {
        append(&*client, b"a").recv().unwrap().unwrap();
        let (tx, rx) = mpsc::channel();
        client.begin_checkpoint(Box::new(move |outcome| drop(tx.send(outcome))));
        let sequence = rx.recv().unwrap().unwrap();
        let rotation = client
            .finish_checkpoint(vec![("s".into(), vec![round], false)], sequence)
            .unwrap();
        assert_eq!(rotation.sequence, sequence);
    }
    append(&*owner, b"after").recv().unwrap().unwrap();
    let snapshot = client.snapshot().unwrap().unwrap();
    assert_eq!(snapshot.sequence(), 6);
    assert_eq!(snapshot.read("s").unwrap(), vec![2]);
    let mut replay = client.replay(0).unwrap();
    let batch: Vec<Entry> = replay.next_batch(100, usize::MAX).unwrap();
    assert_eq!(
        batch
            .iter()
            .map(|e| (e.sequence, e.payload.to_vec()))
            .collect::<Vec<_>>(),
        [(7, b"after".to_vec())]
    );
    let pruned = client
        .prune(&RetentionPolicy {
            keep_snapshots: 1,
            keep_archives: 1,
            ..RetentionPolicy::default()
        })
        .unwrap();
    assert_eq!(pruned.deleted_snapshots, [2, 4]);
    assert_eq!(pruned.retained_snapshots, [6]);
    assert_eq!(pruned.deleted_archives.len(), 2);
    close(&*client);
    close(&*owner);
}

/// Run as a process of its own by [`a_client_that_never_reads_holds_the_owner_to_its_bound`]:
/// sends `Append` requests to the socket in `SELENE_FLOOD_SOCKET` and never reads an answer.
#[test]
#[ignore = "a child process of another test"]
fn flood_child() {
    let Ok(socket) = std::env::var("SELENE_FLOOD_SOCKET") else {
        return;
    };
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    let frame = Request::Append {
        id: 1,
        chained: false,
        producer: None,
        entries: NewEntries::packed(Bytes::from_static(b"f"), vec![1]).unwrap(),
    }
    .encode();
    // Blocks once the owner stops reading; killed by the parent.
    loop {
        if stream.write_all(&frame).is_err() {
            return;
        }
    }
}

/// Polls `condition` (the owner's counters have no event to wait on), for a bounded time.
fn eventually(what: &str, condition: impl Fn() -> bool) {
    for _ in 0..60_000 {
        if condition() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    panic!("never: {what}");
}

#[test]
fn a_client_that_never_reads_holds_the_owner_to_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let owner = open(dir.path(), None);
    let mut flood = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["flood_child", "--exact", "--ignored", "--nocapture"])
        .env("SELENE_FLOOD_SOCKET", owner.socket())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Its answers fill the socket, then its in-flight bound: the owner stops reading it.
    eventually("the flood reaches its bound", || {
        owner.sharing().backlog.requests == MAX_IN_FLIGHT
    });
    // What it got in is committed once a flush queued behind it is done.
    let (tx, rx) = mpsc::channel();
    owner.flush(Box::new(move |outcome| drop(tx.send(outcome))));
    rx.recv().unwrap().unwrap();
    let stopped_at = owner.state().last_sequence;
    // Another client goes on meanwhile. The flooder may still get in as many requests as the
    // answers it never reads have room for in its socket (the bound counts a request until
    // its answer is written), and no more.
    let other = open(dir.path(), None);
    for _ in 0..100 {
        append(&*other, b"o").recv().unwrap().unwrap();
    }
    let last = owner.state().last_sequence;
    assert!(last >= stopped_at + 100, "{last} {stopped_at}");
    let backlog = owner.sharing().backlog;
    assert_eq!(backlog.clients, 2);
    assert!(backlog.requests <= MAX_IN_FLIGHT + 1, "{backlog:?}");
    assert!(backlog.bytes <= MAX_IN_FLIGHT_BYTES, "{backlog:?}");
    // Whatever the flooder sent, the owner read a bounded part of it.
    assert!(last - 100 < 4 * MAX_IN_FLIGHT, "{last}");
    flood.kill().unwrap();
    flood.wait().unwrap();
    eventually("the flooder's connection is let go", || {
        owner.sharing().backlog
            == Backlog {
                clients: 1,
                notices: owner.sharing().backlog.notices,
                ..Backlog::default()
            }
    });
    close(&*other);
    close(&*owner);
}

/// Takeover on a long log: how long a new owner's open takes (recovery and the producer table
/// rebuilt from the stamps after the live snapshot). A measurement, not a check:
/// `SELENE_TAKEOVER_ENTRIES=100000 cargo test --release -p selene-persist-engine --test shared takeover_time -- --ignored --nocapture`
#[test]
#[ignore = "a measurement"]
fn takeover_time() {
    let entries: usize =
        std::env::var("SELENE_TAKEOVER_ENTRIES").map_or(100_000, |n| n.parse().unwrap());
    let size: usize = std::env::var("SELENE_TAKEOVER_BYTES").map_or(4200, |n| n.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    {
        let writer = open(dir.path(), Some(1));
        let payload: Vec<u8> = (0..size).map(|i| b"{\"k\":\"value\"}"[i % 13]).collect();
        let mut pending = Vec::new();
        for _ in 0..entries / 100 {
            let data: Vec<u8> = payload.iter().copied().cycle().take(size * 100).collect();
            let (tx, rx) = mpsc::channel();
            writer.append_all(vec![AppendRequest {
                entries: NewEntries::packed(Bytes::from(data), vec![size as u32; 100]).unwrap(),
                reply: Box::new(move |outcome| drop(tx.send(outcome))),
                chained: false,
            }]);
            pending.push(rx);
        }
        for rx in pending {
            rx.recv().unwrap().unwrap();
        }
        close(&*writer);
    }
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let owner = open(dir.path(), None);
        times.push(started.elapsed());
        close(&*owner);
    }
    times.sort();
    println!(
        "takeover open of {entries} entries of {size} B: median {:?} (of {times:?})",
        times[2]
    );
}
