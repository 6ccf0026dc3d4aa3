//! Following a store's log: every entry once, in order, across checkpoints, rotations and
//! prunes, beside a writer appending at full speed; durable followers wait for fdatasync.

mod common;

use selene_persist_engine::Entry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{append_via, close_via, fresh_store, fs};
use selene_persist_engine::follow::{Follower, Target};
use selene_persist_engine::retention::RetentionPolicy;
use selene_persist_engine::store::Store;
use selene_persist_engine::{Committer, NewEntry, SyncPolicy, WalOptions};

/// Payload `n`: mixed sizes, some over the compression threshold.
fn payload(n: u64) -> Vec<u8> {
    let len = [10, 300, 5000, 70][(n % 4) as usize];
    let mut bytes = format!("entry {n} ").into_bytes();
    bytes.resize(len, b'a' + (n % 26) as u8);
    bytes
}

fn append_batch(committer: &Committer, from: u64, count: u64) {
    let (tx, rx) = std::sync::mpsc::channel();
    let entries = (from..from + count)
        .map(|n| NewEntry {
            payload: payload(n).into(),
            ..NewEntry::default()
        })
        .collect();
    committer.append(entries, Box::new(move |r| drop(tx.send(r))));
    rx.recv().unwrap().unwrap();
}

/// Drain what the follower can read now; check each payload names its position among the
/// appended entries (watermarks take sequences, so `seen` counts entries, not sequences).
fn drain(follower: &mut Follower, seen: &mut Vec<u64>) {
    loop {
        let batch = follower.next_batch::<Vec<Entry>>(100, 1 << 20).unwrap();
        if batch.is_empty() {
            return;
        }
        for entry in batch {
            let n = seen.len() as u64 + 1;
            assert_eq!(
                entry.payload,
                payload(n),
                "entry {n} (sequence {})",
                entry.sequence
            );
            assert!(!entry.watermark);
            seen.push(entry.sequence);
        }
    }
}

fn checkpoint(store: &Store, n: u64) {
    store
        .checkpoint(vec![("state".into(), n.to_string().into_bytes(), true)])
        .unwrap();
}

#[test]
fn a_follower_sees_every_entry_once_across_checkpoints_and_prunes() {
    let (dir, store) = fresh_store();
    let mut follower =
        Follower::open(&fs(), Target::Store(dir.path().into()), None, false).unwrap();
    let mut seen = Vec::new();
    let mut appended = 0;
    for round in 0..8 {
        append_batch(store.committer(), appended + 1, 50);
        appended += 50;
        if round % 2 == 0 {
            drain(&mut follower, &mut seen);
        }
        checkpoint(&store, appended);
        append_batch(store.committer(), appended + 1, 7);
        appended += 7;
        if round % 3 == 0 {
            store.prune(&RetentionPolicy::default()).unwrap();
        }
    }
    drain(&mut follower, &mut seen);
    assert_eq!(seen.len() as u64, appended);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order, each once");
    close_via(store.committer()).unwrap();
}

#[test]
fn a_follower_in_another_thread_keeps_up_with_a_writer_at_full_speed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        Store::open(
            &fs(),
            dir.path(),
            WalOptions {
                sync: SyncPolicy::Manual,
                ..WalOptions::default()
            },
        )
        .unwrap(),
    );
    let done = Arc::new(AtomicBool::new(false));
    let (writer, finished) = (Arc::clone(&store), Arc::clone(&done));
    let total = 6000;
    let appending = std::thread::spawn(move || {
        for chunk in 0..60 {
            append_batch(writer.committer(), chunk * 100 + 1, 100);
            if chunk % 10 == 9 {
                checkpoint(&writer, chunk);
            }
        }
        finished.store(true, Ordering::SeqCst);
    });
    let mut follower =
        Follower::open(&fs(), Target::Store(dir.path().into()), Some(1), false).unwrap();
    let mut seen = Vec::new();
    while !done.load(Ordering::SeqCst) {
        drain(&mut follower, &mut seen);
    }
    appending.join().unwrap();
    drain(&mut follower, &mut seen);
    assert_eq!(seen.len() as u64, total);
    close_via(store.committer()).unwrap();
}

#[test]
fn a_durable_follower_waits_for_fdatasync() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        &fs(),
        dir.path(),
        WalOptions {
            sync: SyncPolicy::Manual,
            ..WalOptions::default()
        },
    )
    .unwrap();
    let mut durable = Follower::open(&fs(), Target::Store(dir.path().into()), None, true).unwrap();
    let mut eager = Follower::open(&fs(), Target::Store(dir.path().into()), None, false).unwrap();
    append_batch(store.committer(), 1, 10);
    let (mut seen_durable, mut seen_eager) = (Vec::new(), Vec::new());
    drain(&mut durable, &mut seen_durable);
    drain(&mut eager, &mut seen_eager);
    assert_eq!((seen_durable.len(), seen_eager.len()), (0, 10));
    let (tx, rx) = std::sync::mpsc::channel();
    store.committer().flush(Box::new(move |r| drop(tx.send(r))));
    rx.recv().unwrap().unwrap();
    drain(&mut durable, &mut seen_durable);
    assert_eq!(seen_durable.len(), 10);
    // A rotation retires the active WAL: what it held after the checkpoint is durable too.
    append_batch(store.committer(), 11, 5);
    checkpoint(&store, 15);
    append_batch(store.committer(), 16, 5);
    drain(&mut durable, &mut seen_durable);
    assert_eq!(
        seen_durable.len(),
        15,
        "the checkpoint made 11..15 durable; 16..20 are not"
    );
    close_via(store.committer()).unwrap();
}

#[test]
fn entries_retention_deleted_are_consumer_behind_retention() {
    let (dir, store) = fresh_store();
    for n in 1..=6 {
        append_via(store.committer(), &payload(n)).unwrap();
        checkpoint(&store, n);
    }
    store
        .prune(&RetentionPolicy {
            keep_archives: 1,
            ..RetentionPolicy::default()
        })
        .unwrap();
    let mut follower =
        Follower::open(&fs(), Target::Store(dir.path().into()), Some(1), false).unwrap();
    let error = follower.next_batch::<Vec<Entry>>(10, 1 << 20).unwrap_err();
    assert_eq!(error.code(), "CONSUMER_BEHIND_RETENTION", "{error}");
    // From the live snapshot on, nothing is missing.
    let mut live = Follower::open(&fs(), Target::Store(dir.path().into()), None, false).unwrap();
    assert!(
        live.next_batch::<Vec<Entry>>(10, 1 << 20)
            .unwrap()
            .is_empty()
    );
    close_via(store.committer()).unwrap();
}
