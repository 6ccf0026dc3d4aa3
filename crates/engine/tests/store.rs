//! The Store: checkpoints, crash at every step of rotation and prune, retention, recovery.

mod common;

use selene_persist_engine::Entry;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::*;
use selene_persist_engine::io::Vfs;
use selene_persist_engine::manifest::Manifest;
use selene_persist_engine::retention::RetentionPolicy;
use selene_persist_engine::store::Store;
use selene_persist_engine::testing::fault::{Fault, FaultFs, FaultPlan, Op};
use selene_persist_engine::{NewEntry, Origin, WalOptions};

/// The application state: every event applied so far, one per line.
fn state_of(events: &[Vec<u8>]) -> Vec<(String, Vec<u8>, bool)> {
    vec![
        ("events".to_owned(), events.join(&b'\n'), true),
        (
            "count".to_owned(),
            events.len().to_string().into_bytes(),
            false,
        ),
    ]
}

/// Recover `dir` and rebuild the event list: snapshot state, then replay.
fn recover(dir: &Path) -> (u64, Vec<Vec<u8>>) {
    let store = Store::open(&fs(), dir, WalOptions::default()).unwrap();
    let mut events: Vec<Vec<u8>> = Vec::new();
    let snapshot_seq = match store.snapshot() {
        Some(snapshot) => {
            let joined = snapshot.read("events").unwrap();
            let count: usize = String::from_utf8(snapshot.read("count").unwrap())
                .unwrap()
                .parse()
                .unwrap();
            if count > 0 {
                events.extend(joined.split(|&b| b == b'\n').map(<[u8]>::to_vec));
            }
            assert_eq!(events.len(), count);
            snapshot.sequence()
        }
        None => 0,
    };
    let mut replay = store.replay(0).unwrap();
    loop {
        let batch = replay.next_batch::<Vec<Entry>>(100, usize::MAX).unwrap();
        if batch.is_empty() {
            break;
        }
        events.extend(batch.into_iter().map(|e| e.payload.to_vec()));
    }
    close_store(store);
    (snapshot_seq, events)
}

/// Open a store over `vfs`, append 10 events, checkpoint, append 5 more. Returns the events.
fn first_epoch(vfs: &Arc<dyn Vfs>, dir: &Path) -> (Store, Vec<Vec<u8>>, u64) {
    let store = Store::open(vfs, dir, WalOptions::default()).unwrap();
    let mut events = Vec::new();
    for n in 0..10 {
        events.push(event(n));
        append_via(store.committer(), &event(n)).unwrap();
    }
    let first = store.checkpoint(state_of(&events)).unwrap().sequence;
    for n in 10..15 {
        events.push(event(n));
        append_via(store.committer(), &event(n)).unwrap();
    }
    (store, events, first)
}

#[test]
fn checkpoint_then_recover_restores_snapshot_plus_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (store, events, first) = first_epoch(&fs(), dir.path());
    assert_eq!(first, 11, "the watermark after 10 entries");
    assert!(dir.path().join("snapshot.11.snap").exists());
    assert!(dir.path().join("wal.11.archive").exists());
    assert_eq!(
        Manifest::read(&*fs(), dir.path())
            .unwrap()
            .unwrap()
            .archives,
        vec![11]
    );
    // The new WAL carries only what came after the checkpoint.
    assert_eq!(store.committer().state().snapshot_seq, 11);
    close_store(store);
    assert_eq!(recover(dir.path()), (11, events));
}

#[test]
fn checkpoints_without_new_entries_still_make_new_epochs() {
    let (dir, store) = fresh_store();
    let a = store.checkpoint(state_of(&[])).unwrap().sequence;
    let b = store.checkpoint(state_of(&[])).unwrap().sequence;
    assert_eq!((a, b), (1, 2));
    close_store(store);
    assert_eq!(recover(dir.path()), (2, Vec::<Vec<u8>>::new()));
}

#[test]
fn bad_sections_are_refused_before_anything_is_written() {
    let (_dir, store) = fresh_store();
    let dup = vec![
        ("a".to_owned(), vec![], false),
        ("a".to_owned(), vec![], false),
    ];
    assert_eq!(
        store.checkpoint(dup).unwrap_err().code(),
        "DUPLICATE_SECTION"
    );
    assert_eq!(
        store.committer().state().last_sequence,
        0,
        "no watermark consumed"
    );
    close_store(store);
}

#[test]
fn a_crash_at_every_step_of_a_checkpoint_recovers_the_old_or_the_new_epoch() {
    // Count the operations of the second checkpoint once.
    let probe_dir = tempfile::tempdir().unwrap();
    let probe = FaultFs::new();
    let (store, events, _) = first_epoch(&probe.shared(), probe_dir.path());
    let before = probe.op_count();
    store.checkpoint(state_of(&events)).unwrap();
    let steps = probe.op_count() - before;
    close_store(store);
    assert!(steps > 10, "a checkpoint takes {steps} operations");

    let mut outcomes = [0usize; 2];
    for step in 0..=steps {
        let dir = tempfile::tempdir().unwrap();
        let faults = FaultFs::new();
        let (store, events, first) = first_epoch(&faults.shared(), dir.path());
        faults.set_plan(FaultPlan {
            faults: Vec::new(),
            fail_from: Some((faults.op_count() + step, Fault::Eio)),
        });
        let attempted = store.checkpoint(state_of(&events));
        assert_eq!(
            attempted.is_ok(),
            step == steps,
            "step {step}: {attempted:?}"
        );
        close_store(store);
        let (snapshot_seq, recovered) = recover(dir.path());
        assert_eq!(
            recovered, events,
            "step {step}: every acknowledged event, nothing else"
        );
        let second = first + 5 + 1;
        assert!(
            snapshot_seq == first || snapshot_seq == second,
            "step {step}: snapshot {snapshot_seq}"
        );
        outcomes[usize::from(snapshot_seq == second)] += 1;
        // Whatever survived, the MANIFEST names only files that exist.
        let manifest = Manifest::read(&*fs(), dir.path()).unwrap().unwrap();
        assert!(
            dir.path()
                .join(format!("snapshot.{}.snap", manifest.live_snapshot_seq))
                .exists()
        );
        for seq in manifest.archives {
            assert!(
                dir.path().join(format!("wal.{seq}.archive")).exists(),
                "step {step}: archive {seq}"
            );
        }
    }
    assert!(
        outcomes[0] > 0 && outcomes[1] > 0,
        "both epochs reached: {outcomes:?}"
    );
}

#[test]
fn a_failed_checkpoint_before_its_commit_can_be_retried_on_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultFs::new();
    let (store, mut events, _) = first_epoch(&faults.shared(), dir.path());
    // Fail the snapshot's publication (a few operations in), then retry.
    faults.fail_ahead(4, Fault::NoSpace);
    assert!(store.checkpoint(state_of(&events)).is_err());
    assert!(store.committer().state().poisoned.is_none());
    events.push(event(99));
    append_via(store.committer(), &event(99)).unwrap();
    let retried = store.checkpoint(state_of(&events)).unwrap();
    close_store(store);
    assert_eq!(recover(dir.path()), (retried.sequence, events));
}

#[test]
fn appends_during_a_checkpoint_are_carried_into_the_new_wal() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&fs(), dir.path(), WalOptions::default()).unwrap());
    let writer = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            (0..500)
                .map(|n| append_via(store.committer(), &event(n)).unwrap())
                .collect::<Vec<_>>()
        })
    };
    let mut checkpoints = Vec::new();
    for _ in 0..5 {
        checkpoints.push(store.checkpoint(state_of(&[])).unwrap().sequence);
    }
    let acked = writer.join().unwrap();
    let store = Arc::into_inner(store).unwrap();
    let last_checkpoint = *checkpoints.last().unwrap();
    close_store(store);
    let (snapshot_seq, replayed) = recover(dir.path());
    assert_eq!(snapshot_seq, last_checkpoint);
    // Every event acknowledged after the last checkpoint is replayed, in order.
    let expected: Vec<Vec<u8>> = acked
        .iter()
        .enumerate()
        .filter(|(_, seq)| **seq > last_checkpoint)
        .map(|(n, _)| event(n))
        .collect();
    assert_eq!(replayed, expected);
}

#[test]
fn recovery_refuses_a_corrupt_live_snapshot_instead_of_falling_back() {
    let dir = tempfile::tempdir().unwrap();
    let (store, events, _) = first_epoch(&fs(), dir.path());
    let second = store.checkpoint(state_of(&events)).unwrap();
    close_store(store);
    let mut bytes = std::fs::read(&second.snapshot.path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&second.snapshot.path, &bytes).unwrap();
    assert_eq!(
        Store::open(&fs(), dir.path(), WalOptions::default())
            .unwrap_err()
            .code(),
        "BODY_HASH_MISMATCH"
    );
    std::fs::remove_file(&second.snapshot.path).unwrap();
    assert_eq!(
        Store::open(&fs(), dir.path(), WalOptions::default())
            .unwrap_err()
            .code(),
        "STORE_INCONSISTENT"
    );
}

#[test]
fn a_file_that_is_not_what_the_manifest_says_is_refused() {
    // (what, copied file, file it is copied over): (checkpoint index, snapshot or archive).
    let cases = [
        ("older snapshot over the live one", (2, "snap"), (5, "snap")),
        (
            "later archive over an earlier one",
            (4, "archive"),
            (3, "archive"),
        ),
        ("a snapshot over an archive", (1, "snap"), (2, "archive")),
    ];
    for (what, from, over) in cases {
        let (dir, checkpoints, _) = six_epoch_store();
        let path = |(i, kind): (usize, &str)| match kind {
            "snap" => dir.path().join(format!("snapshot.{}.snap", checkpoints[i])),
            _ => dir.path().join(format!("wal.{}.archive", checkpoints[i])),
        };
        std::fs::copy(path(from), path(over)).unwrap();
        let opened = Store::open(&fs(), dir.path(), WalOptions::default()).map(close_store);
        assert_eq!(
            opened.map_err(|e| e.code()),
            Err("STORE_INCONSISTENT"),
            "{what}"
        );
    }
}

#[test]
fn replay_skips_watermarks_and_repeated_replicated_entries() {
    let (_dir, store) = fresh_store();
    let replicated = |n: u64, seq: u64| NewEntry {
        payload: format!("r{n}-{seq}").into_bytes().into(),
        origin: Origin::Replicated {
            source_node_id: n,
            source_seq: seq,
        },
        ..NewEntry::default()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let batch = vec![
        replicated(1, 1),
        replicated(1, 2),
        replicated(1, 1),
        replicated(2, 1),
        entry(b"local"),
    ];
    store
        .committer()
        .append(batch, Box::new(move |r| tx.send(r).unwrap()));
    rx.recv().unwrap().unwrap();
    let mut replay = store.replay(0).unwrap();
    let payloads: Vec<_> = replay
        .next_batch::<Vec<Entry>>(100, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|e| e.payload)
        .collect();
    assert_eq!(
        payloads,
        vec![
            b"r1-1".to_vec(),
            b"r1-2".to_vec(),
            b"r2-1".to_vec(),
            b"local".to_vec()
        ]
    );
    close_store(store);
}

/// A store with six checkpoints, an event appended before each.
/// The fixture of the retention tests: a fresh directory holding six epochs (see `six_epochs`).
fn six_epoch_store() -> (tempfile::TempDir, Vec<u64>, Vec<Vec<u8>>) {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoints, events) = six_epochs(dir.path());
    (dir, checkpoints, events)
}

fn six_epochs(dir: &Path) -> (Vec<u64>, Vec<Vec<u8>>) {
    let store = Store::open(&fs(), dir, WalOptions::default()).unwrap();
    let mut events = Vec::new();
    let mut checkpoints = Vec::new();
    for n in 0..6 {
        events.push(event(n));
        append_via(store.committer(), &event(n)).unwrap();
        checkpoints.push(store.checkpoint(state_of(&events)).unwrap().sequence);
    }
    events.push(event(6));
    append_via(store.committer(), &event(6)).unwrap();
    close_store(store);
    (checkpoints, events)
}

fn prune_with(
    dir: &Path,
    policy: RetentionPolicy,
    now: SystemTime,
) -> selene_persist_engine::retention::PruneOutcome {
    selene_persist_engine::retention::prune(&*fs(), dir, &policy, now).unwrap()
}

#[test]
fn default_retention_keeps_two_snapshots_and_four_archives_and_recovery_is_unchanged() {
    let (dir, checkpoints, events) = six_epoch_store();
    let before = recover(dir.path());
    let outcome = prune_with(dir.path(), RetentionPolicy::default(), SystemTime::now());
    assert_eq!(outcome.retained_snapshots, checkpoints[4..].to_vec());
    assert_eq!(outcome.retained_archives, checkpoints[2..].to_vec());
    assert_eq!(outcome.deleted_snapshots, checkpoints[..4].to_vec());
    assert_eq!(outcome.deleted_archives, checkpoints[..2].to_vec());
    assert!(outcome.bytes_reclaimed > 0);
    assert_eq!(
        Manifest::read(&*fs(), dir.path())
            .unwrap()
            .unwrap()
            .archives,
        checkpoints[2..].to_vec()
    );
    assert_eq!(recover(dir.path()), before);
    assert_eq!(before.1, events);
    // Idempotent.
    let again = prune_with(dir.path(), RetentionPolicy::default(), SystemTime::now());
    assert!(again.deleted_snapshots.is_empty() && again.deleted_archives.is_empty());
}

#[test]
fn each_policy_field_applies_and_the_live_snapshot_always_survives() {
    let live_only = |outcome: &selene_persist_engine::retention::PruneOutcome,
                     checkpoints: &[u64]| {
        assert_eq!(
            outcome.retained_snapshots,
            vec![*checkpoints.last().unwrap()]
        );
    };
    let zero = RetentionPolicy {
        keep_snapshots: 0,
        keep_archives: 0,
        ..RetentionPolicy::default()
    };
    let budget = RetentionPolicy {
        max_bytes: Some(1),
        ..RetentionPolicy::default()
    };
    for policy in [zero, budget] {
        let (dir, checkpoints, _) = six_epoch_store();
        let outcome = prune_with(dir.path(), policy, SystemTime::now());
        live_only(&outcome, &checkpoints);
        assert!(outcome.retained_archives.is_empty(), "{policy:?}");
    }

    let (dir, checkpoints, _) = six_epoch_store();
    let aged = RetentionPolicy {
        max_age: Some(Duration::from_secs(3600)),
        keep_snapshots: 10,
        keep_archives: 10,
        max_bytes: None,
    };
    let fresh = prune_with(dir.path(), aged, SystemTime::now());
    assert_eq!(
        fresh.retained_snapshots, checkpoints,
        "nothing is an hour old yet"
    );
    let later = prune_with(
        dir.path(),
        aged,
        SystemTime::now() + Duration::from_secs(7200),
    );
    live_only(&later, &checkpoints);
    assert!(later.retained_archives.is_empty());
    let before_budget = recover(dir.path());
    assert_eq!(before_budget.0, *checkpoints.last().unwrap());
}

#[test]
fn prune_deletes_orphans_and_stale_temp_files() {
    let (dir, checkpoints, _) = six_epoch_store();
    let live = *checkpoints.last().unwrap();
    std::fs::write(
        dir.path().join(format!("snapshot.{}.snap", live + 100)),
        b"orphan",
    )
    .unwrap();
    std::fs::write(dir.path().join("wal.5000.archive"), b"untracked").unwrap();
    std::fs::write(dir.path().join("snapshot.9.snap.123.456.tmp"), b"stale").unwrap();
    let outcome = prune_with(
        dir.path(),
        RetentionPolicy {
            keep_snapshots: 10,
            keep_archives: 10,
            ..RetentionPolicy::default()
        },
        SystemTime::now(),
    );
    assert_eq!(outcome.deleted_snapshots, vec![live + 100]);
    assert_eq!(outcome.deleted_archives, vec![5000]);
    assert_eq!(
        outcome.deleted_temp_files,
        vec!["snapshot.9.snap.123.456.tmp".to_owned()]
    );
    assert!(dir.path().join("wal.log").exists() && dir.path().join("MANIFEST.lock").exists());
}

#[test]
fn a_crash_at_every_step_of_a_prune_leaves_recovery_unchanged() {
    let template = tempfile::tempdir().unwrap();
    six_epochs(template.path());
    let expected = recover(template.path());
    let policy = RetentionPolicy {
        keep_snapshots: 1,
        keep_archives: 1,
        ..RetentionPolicy::default()
    };
    let copy = |to: &Path| {
        for entry in std::fs::read_dir(template.path()).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    };
    let probe_dir = tempfile::tempdir().unwrap();
    copy(probe_dir.path());
    let probe = FaultFs::new();
    selene_persist_engine::retention::prune(&probe, probe_dir.path(), &policy, SystemTime::now())
        .unwrap();
    let steps = probe.op_count();
    for step in 0..=steps {
        let dir = tempfile::tempdir().unwrap();
        copy(dir.path());
        let faults = FaultFs::new();
        faults.set_plan(FaultPlan {
            faults: Vec::new(),
            fail_from: Some((step, Fault::Eio)),
        });
        drop(selene_persist_engine::retention::prune(
            &faults,
            dir.path(),
            &policy,
            SystemTime::now(),
        ));
        assert_eq!(recover(dir.path()), expected, "step {step}");
        let manifest = Manifest::read(&*fs(), dir.path()).unwrap().unwrap();
        for seq in manifest.archives {
            assert!(
                dir.path().join(format!("wal.{seq}.archive")).exists(),
                "step {step}: archive {seq}"
            );
        }
    }
}

#[test]
fn a_second_store_on_the_same_directory_is_refused() {
    let (dir, store) = fresh_store();
    assert_eq!(
        Store::open(&fs(), dir.path(), WalOptions::default())
            .unwrap_err()
            .code(),
        "WRITER_LOCK_HELD"
    );
    close_store(store);
}

#[test]
fn checkpoints_begun_before_an_earlier_one_finishes_archive_the_right_bytes() {
    let (dir, store) = fresh_store();
    let begin = |store: &Store| {
        let (tx, rx) = std::sync::mpsc::channel();
        store.begin_checkpoint(Box::new(move |r| tx.send(r).unwrap()));
        rx.recv().unwrap().unwrap()
    };
    let events: Vec<Vec<u8>> = (0..8).map(event).collect();
    for e in &events[..3] {
        append_via(store.committer(), e).unwrap();
    }
    let a = begin(&store);
    for e in &events[3..6] {
        append_via(store.committer(), e).unwrap();
    }
    let b = begin(&store);
    for e in &events[6..] {
        append_via(store.committer(), e).unwrap();
    }
    store
        .finish_checkpoint(store.builder(state_of(&events[..3])).unwrap(), a)
        .unwrap();
    let second = store
        .finish_checkpoint(store.builder(state_of(&events[..6])).unwrap(), b)
        .unwrap();
    // The second archive holds exactly the frames after the first epoch, up to its watermark.
    let archived: Vec<u64> = read_all(&second.archive_path)
        .unwrap()
        .iter()
        .map(|e| e.sequence)
        .collect();
    assert_eq!(archived, (a + 1..=b).collect::<Vec<_>>());
    // Finishing an epoch already sealed is refused rather than rolling the store back.
    let stale = store.finish_checkpoint(store.builder(state_of(&[])).unwrap(), a);
    assert_eq!(stale.unwrap_err().code(), "INVALID_ARGUMENT");
    close_store(store);
    assert_eq!(recover(dir.path()), (b, events));
}

#[test]
fn without_a_manifest_the_snapshot_named_by_the_wal_header_is_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal.log");
    let mut writer = selene_persist_engine::WalWriter::open(
        &fs(),
        &wal,
        WalOptions {
            snapshot_seq: 5,
            ..WalOptions::default()
        },
    )
    .unwrap();
    writer.append(&[entry(&event(5))]).unwrap();
    writer.close().unwrap();
    // No snapshot 5 yet: the header names a state that is not there.
    assert_eq!(
        Store::open(&fs(), dir.path(), WalOptions::default())
            .unwrap_err()
            .code(),
        "STORE_INCONSISTENT"
    );
    let mut builder = selene_persist_engine::snapshot::SnapshotBuilder::new(5, 1);
    let (name, bytes, compress) = state_of(&(0..5).map(event).collect::<Vec<_>>()).remove(0);
    builder.add(&name, bytes, compress).unwrap();
    builder.add("count", b"5".to_vec(), false).unwrap();
    builder.publish(&*fs(), dir.path()).unwrap();
    let (snapshot_seq, events) = recover(dir.path());
    assert_eq!(snapshot_seq, 5);
    assert_eq!(events, (0..6).map(event).collect::<Vec<_>>());
    let manifest = Manifest::read(&*fs(), dir.path()).unwrap().unwrap();
    assert_eq!(
        (manifest.live_snapshot_seq, manifest.active_wal_seq),
        (5, 5)
    );
}

#[test]
fn opening_a_store_in_missing_directories_makes_each_durable_before_the_first_acknowledgement() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("a").join("b").join("store");
    let faults = FaultFs::new();
    let store = Store::open(&faults.shared(), &dir, WalOptions::default()).unwrap();
    append_via(store.committer(), b"first").unwrap();
    let acknowledged = faults.op_count();
    close_store(store);
    let log = faults.log();
    let log = &log[..acknowledged];
    for made in [root.path().join("a"), root.path().join("a/b"), dir.clone()] {
        let created = log
            .iter()
            .position(|op| *op == Op::CreateDir(made.clone()))
            .unwrap_or_else(|| panic!("{} was not created on its own: {log:?}", made.display()));
        let parent = made.parent().unwrap().to_path_buf();
        assert!(
            log[created..].contains(&Op::SyncDir(parent.clone())),
            "{} was not fsynced after {} was created",
            parent.display(),
            made.display()
        );
    }
    directories_made_durable(log, log.len()).unwrap();
}

#[test]
fn a_store_whose_directories_cannot_be_made_leaves_none_of_them() {
    let probe_root = tempfile::tempdir().unwrap();
    let probe = FaultFs::new();
    let store = Store::open(
        &probe.shared(),
        &probe_root.path().join("a/b/store"),
        WalOptions::default(),
    )
    .unwrap();
    close_store(store);
    // The operations up to the last one making a directory durable.
    let made = probe
        .log()
        .iter()
        .rposition(|op| matches!(op, Op::SyncDir(d) if d == &probe_root.path().join("a/b")))
        .unwrap();
    for op in 0..=made {
        for fault in [Fault::Eio, Fault::NoSpace] {
            let root = tempfile::tempdir().unwrap();
            let faults = failing_at(op, fault);
            let dir = root.path().join("a/b/store");
            let error = Store::open(&faults.shared(), &dir, WalOptions::default()).unwrap_err();
            assert!(matches!(error.code(), "IO" | "DISK_FULL"), "{error}");
            let left: Vec<_> = std::fs::read_dir(root.path()).unwrap().collect();
            assert!(left.is_empty(), "{fault:?} at {op}: {error} left {left:?}");
        }
    }
}

#[test]
fn a_store_at_a_file_or_below_one_is_not_a_directory_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a store").unwrap();
    let vfs: Arc<dyn Vfs> = fs();
    for at in [file.clone(), file.join("store"), file.join("deeper/store")] {
        let error = Store::open(&vfs, &at, WalOptions::default()).unwrap_err();
        assert_eq!(error.code(), "NOT_A_DIRECTORY", "{}", at.display());
        assert_eq!(error.path(), Some(file.as_path()), "{}", at.display());
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"not a store");
}
