//! Durable consumers: a position never passes the durable end of the log, an acknowledgement
//! never moves one backwards whatever handle makes it, a closed store does nothing, and a
//! damaged position file is named and kept safe without halting the others.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use selene_persist_engine::SyncPolicy;
use selene_persist_engine::backup::{Upto, backup};
use selene_persist_engine::consumer::{self, Log};
use selene_persist_engine::inspect::{Depth, Progress, examine};
use selene_persist_engine::retention::RetentionPolicy;
use selene_persist_engine::salvage::salvage_store;
use selene_persist_engine::store::Store;

fn open(dir: &Path, sync: SyncPolicy) -> Store {
    Store::open(&fs(), dir, options(sync)).unwrap()
}

/// The fixture of these tests: a store under `sync` in a fresh directory, holding `n` entries.
fn store_with(sync: SyncPolicy, n: u64) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), sync);
    append_n(&store, n);
    (dir, store)
}

fn append_n(store: &Store, n: u64) {
    for _ in 0..n {
        append_via(store.committer(), b"entry").unwrap();
    }
}

#[test]
fn a_position_past_the_last_sequence_is_refused_and_nothing_is_written() {
    let (dir, store) = store_with(SyncPolicy::Always, 10);
    assert_eq!(store.consumer("relay", 0).unwrap(), 0);
    assert_eq!(
        store.ack("relay", 1000).unwrap_err().code(),
        "INVALID_ARGUMENT"
    );
    assert_eq!(
        store.ack("relay", 11).unwrap_err().code(),
        "INVALID_ARGUMENT"
    );
    assert_eq!(
        store.consumer("far", 99_999).unwrap_err().code(),
        "INVALID_ARGUMENT"
    );
    assert_eq!(consumer::read(&*fs(), dir.path(), "far").unwrap(), None);
    assert_eq!(
        consumer::read(&*fs(), dir.path(), "relay").unwrap(),
        Some(0)
    );
    assert_eq!(store.ack("relay", 10).unwrap(), 10);
    assert_eq!(store.consumer("next", 10).unwrap(), 10);
    close_via(store.committer()).unwrap();
}

#[test]
fn under_every_lazy_policy_an_ack_flushes_what_it_acknowledges_first() {
    for sync in [
        SyncPolicy::Manual,
        SyncPolicy::EveryN(1000),
        SyncPolicy::Interval(std::time::Duration::from_secs(3600)),
    ] {
        let (dir, store) = store_with(sync, 5);
        store.consumer("relay", 0).unwrap();
        assert_eq!(store.committer().state().entries_since_fsync, 5, "{sync:?}");
        assert_eq!(consumer::durable_end(&*fs(), dir.path()).unwrap(), 0);
        assert_eq!(store.ack("relay", 3).unwrap(), 3);
        assert_eq!(store.committer().state().entries_since_fsync, 0, "{sync:?}");
        assert_eq!(consumer::durable_end(&*fs(), dir.path()).unwrap(), 5);
        close_via(store.committer()).unwrap();
    }
}

#[test]
fn another_process_acknowledges_only_what_the_files_record_as_durable() {
    let (dir, store) = store_with(SyncPolicy::Manual, 5);
    let files =
        |name: &str, position: u64| consumer::ack(&*fs(), dir.path(), name, position, Log::Files);
    assert_eq!(
        consumer::register(&*fs(), dir.path(), "tail", 0, Log::Files).unwrap(),
        0
    );
    let refused = files("tail", 3).unwrap_err();
    assert_eq!(refused.code(), "INVALID_ARGUMENT");
    assert!(refused.to_string().contains("durable up to 0"), "{refused}");
    assert_eq!(
        consumer::register(&*fs(), dir.path(), "late", 4, Log::Files)
            .unwrap_err()
            .code(),
        "INVALID_ARGUMENT"
    );
    store.committer().commit_now(Vec::new()).unwrap();
    assert_eq!(files("tail", 3).unwrap(), 3);
    // Through a checkpoint: the archive and the new WAL's seal are durable too.
    store.checkpoint(Vec::new()).unwrap();
    append_n(&store, 2);
    store.committer().commit_now(Vec::new()).unwrap();
    assert_eq!(files("tail", 8).unwrap(), 8);
    assert_eq!(files("tail", 2).unwrap(), 8, "a lower ack changes nothing");
    close_via(store.committer()).unwrap();
}

#[test]
fn a_position_past_the_end_is_capped_at_open_and_refused_from_another_process() {
    let (dir, store) = store_with(SyncPolicy::Always, 10);
    close_via(store.committer()).unwrap();
    // What a power loss that took acknowledged entries leaves, or a file copied in.
    consumer::write(&*fs(), dir.path(), "relay", 20).unwrap();
    consumer::write(&*fs(), dir.path(), "fine", 7).unwrap();
    let refused = consumer::register(&*fs(), dir.path(), "relay", 0, Log::Files).unwrap_err();
    assert_eq!(refused.code(), "STORE_INCONSISTENT");
    assert!(refused.to_string().contains("consumer.relay"), "{refused}");

    let store = open(dir.path(), SyncPolicy::Always);
    let capped = &store.recovery().capped_consumers;
    assert_eq!(capped.len(), 1);
    assert_eq!(
        (
            capped[0].name.as_str(),
            capped[0].position,
            capped[0].capped_to
        ),
        ("relay", 20, 10)
    );
    assert_eq!(store.consumer("relay", 0).unwrap(), 10);
    assert_eq!(store.consumer("fine", 0).unwrap(), 7);
    close_via(store.committer()).unwrap();
    let store = open(dir.path(), SyncPolicy::Always);
    assert!(store.recovery().capped_consumers.is_empty());
    close_via(store.committer()).unwrap();
}

#[test]
fn concurrent_acknowledgements_from_every_kind_of_handle_never_move_a_position_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path(), SyncPolicy::Always));
    append_n(&store, 200);
    store.consumer("relay", 0).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let path = dir.path().to_path_buf();
    let observer = {
        let (done, path) = (Arc::clone(&done), path.clone());
        std::thread::spawn(move || {
            let mut seen = 0;
            while !done.load(Ordering::Acquire) {
                let now = consumer::read(&*fs(), &path, "relay").unwrap().unwrap();
                assert!(now >= seen, "position went from {seen} back to {now}");
                seen = now;
            }
        })
    };
    // One handle through the store (the writer's), one as another process would: each acks
    // its own half of the sequences, up from wherever the other left the position.
    let through_store = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            for n in (2..=200).step_by(2) {
                assert!(store.ack("relay", n).unwrap() >= n);
            }
        })
    };
    for n in (1..=199).step_by(2) {
        assert!(consumer::ack(&*fs(), &path, "relay", n, Log::Files).unwrap() >= n);
    }
    through_store.join().unwrap();
    done.store(true, Ordering::Release);
    observer.join().unwrap();
    assert_eq!(store.consumer("relay", 0).unwrap(), 200);
    close_via(store.committer()).unwrap();
}

#[test]
fn a_closed_store_reads_and_changes_nothing() {
    let (dir, store) = store_with(SyncPolicy::Always, 3);
    store.consumer("relay", 0).unwrap();
    close_via(store.committer()).unwrap();
    let backup = dir.path().with_extension("backup");
    let codes = [
        store.consumer("late", 0).map(drop),
        store.ack("relay", 3).map(drop),
        store.consumers().map(drop),
        store.remove_consumer("relay").map(drop),
        store.prune(&RetentionPolicy::default()).map(drop),
        store.replay(0).map(drop),
        store.backup(&backup).map(drop),
    ]
    .map(|r| r.unwrap_err().code());
    assert_eq!(codes, ["CLOSED"; 7]);
    assert!(!backup.exists());
    assert_eq!(
        consumer::list(&*fs(), dir.path()).unwrap(),
        [("relay".to_owned(), 0)]
    );
}

#[test]
fn a_damaged_position_file_is_named_and_keeps_every_archive_without_halting_the_others() {
    let (dir, store) = fresh_store();
    store.consumer("good", 0).unwrap();
    for _ in 0..3 {
        append_n(&store, 1);
        store.checkpoint(Vec::new()).unwrap();
    }
    let last = store.committer().state().last_sequence;
    store.ack("good", last).unwrap();
    std::fs::write(dir.path().join("consumer.long"), [7u8; 40]).unwrap();
    std::fs::write(dir.path().join("consumer.short"), [7u8; 10]).unwrap();
    std::fs::write(dir.path().join("consumer.foreign"), [b'x'; 24]).unwrap();

    let listed = store.consumers().unwrap();
    let damage = |name: &str| {
        let summary = listed.iter().find(|s| s.name == name).unwrap();
        assert_eq!(summary.position, 0);
        summary.damage.clone().unwrap()
    };
    for (name, says) in [
        ("long", "longer"),
        ("short", "shorter"),
        ("foreign", "MAGIC_MISMATCH"),
    ] {
        let error = damage(name);
        assert_eq!(error.code(), "STORE_INCONSISTENT");
        let message = error.to_string();
        assert!(message.contains(&format!("consumer.{name}")), "{message}");
        assert!(message.contains(says), "{message}");
        assert!(!message.contains("truncated"), "{message}");
    }
    assert!(
        listed
            .iter()
            .any(|s| s.name == "good" && s.damage.is_none())
    );
    assert_eq!(
        consumer::list(&*fs(), dir.path()).unwrap_err().code(),
        "STORE_INCONSISTENT"
    );

    let policy = RetentionPolicy {
        keep_snapshots: 1,
        keep_archives: 1,
        ..RetentionPolicy::default()
    };
    let kept = store.prune(&policy).unwrap();
    assert!(kept.deleted_archives.is_empty());
    assert_eq!(kept.retained_archives.len(), 3);
    assert_eq!(
        store.ack("long", 1).unwrap_err().code(),
        "STORE_INCONSISTENT"
    );
    for name in ["long", "short", "foreign"] {
        assert!(store.remove_consumer(name).unwrap());
    }
    assert_eq!(store.prune(&policy).unwrap().retained_archives.len(), 1);
    close_via(store.committer()).unwrap();
}

#[test]
fn a_damaged_position_file_is_carried_by_a_backup_named_by_inspect_and_restarted_by_salvage() {
    let (dir, store) = store_with(SyncPolicy::Always, 3);
    store.consumer("good", 0).unwrap();
    store.ack("good", 2).unwrap();
    let damaged = [7u8; 40];
    std::fs::write(dir.path().join("consumer.broken"), damaged).unwrap();

    let report = examine(&fs(), dir.path(), Depth::Inspect, &Progress::default()).unwrap();
    let names: Vec<_> = report
        .consumers
        .iter()
        .map(|c| (c.name.as_str(), c.position))
        .collect();
    assert_eq!(names, [("good", 2)]);
    let problem = report
        .problems
        .iter()
        .find(|p| p.file.ends_with("consumer.broken"))
        .expect("the damaged file is named");
    assert_eq!(problem.code, "STORE_INCONSISTENT");

    let dest = tempfile::tempdir().unwrap();
    let copy = dest.path().join("copy");
    let last = backup(&fs(), dir.path(), &copy, || Upto::Durable).unwrap();
    assert_eq!(last, 3);
    assert_eq!(
        std::fs::read(copy.join("consumer.broken")).unwrap(),
        damaged
    );
    assert_eq!(consumer::read(&*fs(), &copy, "good").unwrap(), Some(2));

    // Salvage cannot know the damaged position: its consumer starts over (at least once).
    let salvaged = dest.path().join("salvaged");
    salvage_store(&fs(), dir.path(), &salvaged).unwrap();
    assert_eq!(
        consumer::read(&*fs(), &salvaged, "broken").unwrap(),
        Some(0)
    );
    assert_eq!(consumer::read(&*fs(), &salvaged, "good").unwrap(), Some(2));
    close_via(store.committer()).unwrap();
}
