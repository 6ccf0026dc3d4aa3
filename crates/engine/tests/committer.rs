//! The committer thread: queue order, group commit, close, and the interval policy.

mod common;

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use selene_persist_engine::io::Vfs;
use selene_persist_engine::testing::fault::{Fault, FaultFs, FaultPlan, Op};
use selene_persist_engine::warning;
use selene_persist_engine::{
    AppendRequest, Committer, Error, NewEntry, Reply, Result, SyncPolicy, WalOptions, WalWriter,
};

fn reply<T: Send + 'static>() -> (Reply<T>, mpsc::Receiver<Result<T>>) {
    let (tx, rx) = mpsc::channel();
    (Box::new(move |r| tx.send(r).unwrap()), rx)
}

fn start(vfs: &Arc<dyn Vfs>, path: &std::path::Path, sync: SyncPolicy) -> Committer {
    Committer::start(WalWriter::open(vfs, path, options(sync)).unwrap()).unwrap()
}

/// The fixture most tests open with: a committer under `sync` on a fresh WAL over a
/// fault-injecting fs.
fn faulty(sync: SyncPolicy) -> (tempfile::TempDir, std::path::PathBuf, FaultFs, Committer) {
    let (dir, path) = fresh_wal();
    let faults = FaultFs::new();
    let committer = start(&faults.shared(), &path, sync);
    (dir, path, faults, committer)
}

/// Queue one standard entry per sequence in `seqs`; the receivers answer in the same order.
fn queue(
    committer: &Committer,
    seqs: std::ops::RangeInclusive<u64>,
) -> Vec<mpsc::Receiver<Result<std::ops::RangeInclusive<u64>>>> {
    seqs.map(|seq| {
        let (done, rx) = reply();
        committer.append(vec![entry(&payload_for(seq))], done);
        rx
    })
    .collect()
}

/// How many fdatasyncs of `path` the file system has seen.
fn syncs_of(faults: &FaultFs, path: &std::path::Path) -> usize {
    faults
        .log()
        .iter()
        .filter(|op| matches!(op, Op::SyncData(p) if p == path))
        .count()
}

fn close(committer: &Committer) {
    let (done, rx) = reply();
    committer.close(done);
    rx.recv().unwrap().unwrap();
}

#[test]
fn queued_appends_get_sequences_in_queue_order_and_share_fdatasyncs() {
    let (_dir, path, faults, committer) = faulty(SyncPolicy::Always);
    let receivers = queue(&committer, 1..=2000);
    for (i, rx) in receivers.into_iter().enumerate() {
        let range = rx.recv().unwrap().unwrap();
        assert_eq!(range, i as u64 + 1..=i as u64 + 1);
    }
    let syncs = syncs_of(&faults, &path);
    assert!(
        syncs < 2000,
        "2000 durable appends took {syncs} fdatasyncs: no grouping"
    );
    assert_eq!(committer.state().last_sequence, 2000);
    close(&committer);
    assert_standard_entries(&read_all(&path).unwrap(), 1, 2000);
}

#[test]
fn requests_sent_together_share_one_fdatasync_and_a_refused_one_fails_alone() {
    let (_dir, path, faults, committer) = faulty(SyncPolicy::Always);
    let too_big = NewEntry {
        principal: Some(vec![0; 4097]),
        ..entry(b"refused")
    };
    let batches = [
        vec![entry(&payload_for(1))],
        vec![entry(&payload_for(2)), too_big],
        vec![entry(&payload_for(2)), entry(&payload_for(3))],
    ];
    let (requests, receivers): (Vec<_>, Vec<_>) = batches
        .into_iter()
        .map(|entries| {
            let (done, rx) = reply();
            (
                AppendRequest {
                    entries: entries.into(),
                    reply: done,
                    chained: false,
                },
                rx,
            )
        })
        .unzip();
    committer.append_all(requests);
    let outcomes: Vec<_> = receivers.iter().map(|rx| rx.recv().unwrap()).collect();
    assert_eq!(outcomes[0].as_ref().unwrap(), &(1..=1));
    assert!(matches!(outcomes[1], Err(Error::PrincipalTooLarge { .. })));
    assert_eq!(outcomes[2].as_ref().unwrap(), &(2..=3));
    assert_eq!(syncs_of(&faults, &path), 1, "one group, one fdatasync");
    close(&committer);
    assert_standard_entries(&read_all(&path).unwrap(), 1, 3);
}

#[test]
fn a_failed_group_rejects_every_member_and_consumes_no_sequence() {
    let (_dir, path, faults, committer) = faulty(SyncPolicy::Always);
    // Every write fails from now on.
    faults.set_plan(FaultPlan {
        faults: Vec::new(),
        fail_from: Some((faults.op_count(), Fault::NoSpace)),
    });
    let receivers = queue(&committer, 1..=50);
    for rx in receivers {
        assert_eq!(rx.recv().unwrap().unwrap_err().code(), "DISK_FULL");
    }
    assert_eq!(committer.state().last_sequence, 0);
    faults.set_plan(FaultPlan::default());
    drop(committer);
    assert!(read_all(&path).unwrap().is_empty());
}

/// Send `seq` as its own chained request (or not), waiting for its answer.
fn send_one(
    committer: &Committer,
    seq: u64,
    chained: bool,
) -> Result<std::ops::RangeInclusive<u64>> {
    let (done, rx) = reply();
    committer.append_all(vec![AppendRequest {
        entries: vec![entry(&payload_for(seq))].into(),
        reply: done,
        chained,
    }]);
    rx.recv().unwrap()
}

#[test]
fn once_a_chained_request_fails_every_later_chained_one_does_and_the_others_go_on() {
    let (_dir, path, faults, committer) = faulty(SyncPolicy::Manual);
    assert_eq!(send_one(&committer, 1, true).unwrap(), 1..=1);
    // The disk fills for one write: the chained request in that group fails...
    faults.fail_ahead(0, Fault::NoSpace);
    assert_eq!(
        send_one(&committer, 2, true).unwrap_err().code(),
        "DISK_FULL"
    );
    // ...and, with room again, every later chained request fails the same way, in its own
    // group, so the log never holds a chained entry after one that was lost.
    for seq in 3..=5 {
        assert_eq!(
            send_one(&committer, seq, true).unwrap_err().code(),
            "DISK_FULL"
        );
    }
    // Appends outside the chain are not affected.
    assert_eq!(send_one(&committer, 2, false).unwrap(), 2..=2);
    close(&committer);
    let payloads: Vec<_> = read_all(&path)
        .unwrap()
        .into_iter()
        .map(|e| e.payload)
        .collect();
    assert_eq!(payloads, vec![payload_for(1), payload_for(2)]);
}

#[test]
fn close_commits_the_queue_releases_the_lock_then_refuses() {
    let (_dir, path) = fresh_wal();
    let committer = start(&fs(), &path, SyncPolicy::Manual);
    let receivers = queue(&committer, 1..=10);
    close(&committer);
    for rx in receivers {
        rx.recv().unwrap().unwrap();
    }
    // The lock is free as soon as close has answered.
    WalWriter::open(&fs(), &path, WalOptions::default()).unwrap();
    let (done, rx) = reply();
    committer.append(vec![entry(b"late")], done);
    assert_eq!(rx.recv().unwrap().unwrap_err().code(), "CLOSED");
    let (done, rx) = reply();
    committer.close(done);
    assert_eq!(rx.recv().unwrap().unwrap_err().code(), "CLOSED");
    assert_standard_entries(&read_all(&path).unwrap(), 1, 10);
}

#[test]
fn the_interval_policy_syncs_in_the_background() {
    let (_dir, path) = fresh_wal();
    let committer = start(
        &fs(),
        &path,
        SyncPolicy::Interval(Duration::from_millis(20)),
    );
    let (done, rx) = reply();
    committer.append(vec![entry(b"soon durable")], done);
    rx.recv().unwrap().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while committer.state().entries_since_fsync > 0 {
        assert!(
            Instant::now() < deadline,
            "no background fdatasync within 10 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    close(&committer);
}

#[test]
fn dropping_the_handle_still_commits_and_closes() {
    let (_dir, path) = fresh_wal();
    let committer = start(&fs(), &path, SyncPolicy::EveryN(100));
    let (done, rx) = reply();
    committer.append(vec![entry(&payload_for(1))], done);
    drop(committer);
    rx.recv().unwrap().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let writer = loop {
        match WalWriter::open(&fs(), &path, WalOptions::default()) {
            Ok(writer) => break writer,
            Err(e) if e.code() == "WRITER_LOCK_HELD" && Instant::now() < deadline => {
                std::thread::yield_now()
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(writer.last_sequence(), 1);
}

#[test]
fn a_panic_in_the_writer_fails_the_group_poisons_and_keeps_the_thread_answering() {
    let (_dir, path, faults, committer) = faulty(SyncPolicy::Always);
    let (done, rx) = reply();
    committer.append(vec![entry(&payload_for(1))], done);
    rx.recv().unwrap().unwrap();
    faults.fail_ahead(0, Fault::Panic);
    let (done, rx) = reply();
    committer.append(vec![entry(b"boom")], done);
    assert_eq!(rx.recv().unwrap().unwrap_err().code(), "INTERNAL");
    assert!(committer.state().poisoned.is_some());
    let (done, rx) = reply();
    committer.append(vec![entry(b"after")], done);
    assert_eq!(rx.recv().unwrap().unwrap_err().code(), "POISONED");
    close(&committer);
    drop(committer);
    // The acknowledged entry is intact; the panicked write left at most a torn tail.
    let writer = WalWriter::open(&fs(), &path, WalOptions::default()).unwrap();
    assert_eq!(writer.last_sequence(), 1);
}

#[test]
fn an_exclusive_task_replies_after_the_state_it_produced_is_published() {
    let dir = tempfile::tempdir().unwrap();
    let committer = Arc::new(start(&fs(), &wal_in(&dir), SyncPolicy::Always));
    for round in 1..=20u64 {
        let (tx, rx) = mpsc::channel();
        let observer = Arc::clone(&committer);
        committer.submit(
            move |w| {
                w.append(&[entry(&payload_for(round))])
                    .map(|range| *range.end())
            },
            Box::new(move |result| tx.send((result, observer.state().last_sequence)).unwrap()),
        );
        let (result, seen) = rx.recv().unwrap();
        assert_eq!(seen, result.unwrap(), "the reply saw a stale state");
    }
    close(&committer);
}

#[test]
fn commit_now_waits_behind_the_queue_and_makes_everything_durable_whatever_the_policy() {
    let (_dir, path, faults, committer) = faulty(SyncPolicy::Manual);
    let receivers = queue(&committer, 1..=100);
    let range = committer.commit_now(vec![entry(&payload_for(101))]);
    assert_eq!(range.unwrap(), Some(101..=101));
    // Everything queued before it was answered before it returned.
    for (i, rx) in receivers.into_iter().enumerate() {
        assert_eq!(rx.try_recv().unwrap().unwrap(), i as u64 + 1..=i as u64 + 1);
    }
    let state = committer.state();
    assert_eq!((state.last_sequence, state.entries_since_fsync), (101, 0));
    let syncs = syncs_of(&faults, &path);
    assert!(syncs >= 1, "a manual writer's commit_now did not fdatasync");
    // Nothing left to make durable: no fdatasync.
    assert_eq!(committer.commit_now(Vec::new()).unwrap(), None);
    assert_eq!(syncs_of(&faults, &path), syncs);
    // Entries appended under the manual policy are made durable by an empty commit_now.
    for rx in queue(&committer, 102..=110) {
        rx.recv().unwrap().unwrap();
    }
    assert_eq!(committer.state().entries_since_fsync, 9);
    assert_eq!(committer.commit_now(Vec::new()).unwrap(), None);
    assert_eq!(syncs_of(&faults, &path), syncs + 1);
    assert_eq!(committer.state().entries_since_fsync, 0);
    close(&committer);
    assert_standard_entries(&read_all(&path).unwrap(), 1, 110);
}

#[test]
fn a_commit_now_whose_fdatasync_fails_leaves_none_of_its_entries_and_poisons() {
    let (_dir, path, faults, committer) = faulty(SyncPolicy::Manual);
    assert_eq!(
        committer.commit_now(vec![entry(&payload_for(1))]).unwrap(),
        Some(1..=1)
    );
    // The next commit writes, then fdatasyncs: fail the fdatasync.
    faults.fail_ahead(1, Fault::Eio);
    let error = committer
        .commit_now(vec![entry(&payload_for(2)), entry(&payload_for(3))])
        .unwrap_err();
    assert_eq!(error.code(), "IO");
    assert!(error.to_string().contains("fdatasync"), "{error}");
    let state = committer.state();
    assert_eq!(state.last_sequence, 1);
    assert!(state.poisoned.is_some());
    assert_eq!(
        committer
            .commit_now(vec![entry(b"after")])
            .unwrap_err()
            .code(),
        "POISONED"
    );
    close(&committer);
    assert_standard_entries(&read_all(&path).unwrap(), 1, 1);
}

#[test]
fn commit_now_refuses_bad_entries_alone_and_a_closed_writer() {
    let (_dir, path) = fresh_wal();
    let committer = start(&fs(), &path, SyncPolicy::Always);
    let too_big = NewEntry {
        principal: Some(vec![0; 4097]),
        ..entry(b"refused")
    };
    let error = committer
        .commit_now(vec![entry(b"good"), too_big])
        .unwrap_err();
    assert!(matches!(error, Error::PrincipalTooLarge { .. }), "{error}");
    assert_eq!(
        committer.commit_now(vec![entry(&payload_for(1))]).unwrap(),
        Some(1..=1)
    );
    close(&committer);
    assert_eq!(
        committer
            .commit_now(vec![entry(b"late")])
            .unwrap_err()
            .code(),
        "CLOSED"
    );
    assert_standard_entries(&read_all(&path).unwrap(), 1, 1);
}

#[test]
fn close_releases_the_lock_after_every_kind_of_failure() {
    // Operations of the next commit (within the preallocated chunk): 0 write, 1 fdatasync, and
    // after a failed write, 1 is the cut back.
    let cases: [(&str, &[(usize, Fault)]); 4] = [
        ("failed write, cut back", &[(0, Fault::Eio)]),
        ("failed fdatasync, poisoned", &[(1, Fault::Eio)]),
        (
            "failed write and cut back, poisoned",
            &[(0, Fault::Eio), (1, Fault::Eio)],
        ),
        ("panic, poisoned", &[(0, Fault::Panic)]),
    ];
    for (what, faults_at) in cases {
        let (_dir, path) = fresh_wal();
        let faults = FaultFs::new();
        let committer = start(&faults.shared(), &path, SyncPolicy::Always);
        append_via(&committer, &payload_for(1)).unwrap();
        let now = faults.op_count();
        faults.set_plan(FaultPlan {
            faults: faults_at.iter().map(|&(k, f)| (now + k, f)).collect(),
            fail_from: None,
        });
        assert!(append_via(&committer, b"fails").is_err(), "{what}");
        faults.set_plan(FaultPlan::default());
        // Closed whatever failed: the lock is free for the next writer at once.
        drop(close_via(&committer));
        let writer = WalWriter::open(&fs(), &path, WalOptions::default())
            .unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
        assert_eq!(writer.last_sequence(), 1, "{what}");
    }
}

#[test]
fn wait_for_room_returns_once_the_queue_has_drained_to_the_limit() {
    let (_dir, path) = fresh_wal();
    let vfs = fs();
    let committer = start(&vfs, &path, SyncPolicy::Always);
    let receivers = queue(&committer, 1..=500);
    assert!(committer.wait_for_room(0));
    assert_eq!(committer.queued_bytes(), 0);
    assert!(receivers.into_iter().all(|rx| rx.recv().unwrap().is_ok()));
    close(&committer);
    // Closed, it takes no more appends: a wait never blocks on it.
    assert!(committer.wait_for_room(0));
}

#[test]
fn a_failed_background_fdatasync_is_a_warning_and_poisons_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = wal_in(&dir);
    let faults = FaultFs::new();
    let vfs = faults.shared();
    let (heard, warnings) = mpsc::channel();
    let ours = path.clone();
    let _listening = warning::subscribe(Arc::new(move |w: &warning::Warning| {
        if w.path == ours {
            let _ = heard.send((w.kind, w.detail.clone()));
        }
    }));
    let committer = start(&vfs, &path, SyncPolicy::Interval(Duration::from_millis(20)));
    let (done, rx) = reply();
    committer.append(vec![entry(b"acknowledged before its fdatasync")], done);
    rx.recv().unwrap().unwrap();
    // The next change to the file system is the background fdatasync.
    faults.fail_ahead(0, Fault::Eio);
    let (kind, detail) = warnings.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(kind, warning::Kind::BackgroundSyncFailed);
    assert!(detail.contains("fdatasync"), "{detail}");
    assert!(committer.state().poisoned.is_some());
    assert!(matches!(
        faults.log().last(),
        Some(Op::SyncData(p)) if *p == path
    ));
}
