//! Crash-state exploration: every crash state of every point of the recorded workloads
//! recovers every entry acknowledged as durable before the crash, and nothing else.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use selene_persist_engine::consumer;
use selene_persist_engine::inspect::{Depth, Progress, examine};
use selene_persist_engine::io::Vfs;
use selene_persist_engine::retention::RetentionPolicy;
use selene_persist_engine::store::Store;
use selene_persist_engine::testing::crash::{RecordingFs, TraceOp, crash_states, materialize};
use selene_persist_engine::{SyncPolicy, WalWriter};

/// A recorded workload: its trace, and after which operation each durability promise held
/// (`(trace length, entries promised durable)`).
struct Recorded {
    trace: Vec<TraceOp>,
    promises: Vec<(usize, u64)>,
}

/// Check every crash state of every crash point; returns (crash points, states) explored.
fn explore(
    recorded: &Recorded,
    check: impl Fn(&Path, u64) -> Result<(), String>,
) -> (usize, usize) {
    let mut states = 0;
    for point in 0..=recorded.trace.len() {
        let promised = recorded
            .promises
            .iter()
            .filter(|(at, _)| *at <= point)
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0);
        for (k, state) in crash_states(&recorded.trace, point).iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            materialize(state, dir.path()).unwrap();
            if let Err(problem) = check(dir.path(), promised) {
                let files: Vec<_> = state
                    .iter()
                    .map(|(name, bytes)| format!("{name} ({} B)", bytes.len()))
                    .collect();
                panic!(
                    "crash point {point} (before {:?}), state {k} {files:?}: {problem}",
                    recorded.trace.get(point)
                );
            }
            states += 1;
        }
    }
    eprintln!(
        "explored {} crash points, {states} crash states",
        recorded.trace.len() + 1
    );
    (recorded.trace.len() + 1, states)
}

/// Recover the WAL in `dir` and check it holds exactly standard entries 1..n with n >= promised.
fn check_wal(dir: &Path, promised: u64) -> Result<(), String> {
    let path = wal_in(dir);
    if !path.exists() {
        return if promised == 0 {
            Ok(())
        } else {
            Err(format!("no WAL, but {promised} entries were promised"))
        };
    }
    let recovered = recover_standard_wal(&path)?;
    if recovered < promised {
        return Err(format!(
            "{recovered} entries recovered, {promised} promised"
        ));
    }
    Ok(())
}

/// [`check_wal`] for [`record_wal`]'s workload, whose entries 5..=7 are one append, so one
/// batch frame: a crash keeps all of it or none.
fn check_group(dir: &Path, promised: u64) -> Result<(), String> {
    check_wal(dir, promised)?;
    let recovered = recover_standard_wal(&wal_in(dir)).unwrap_or(0);
    if (5..7).contains(&recovered) {
        return Err(format!(
            "{recovered} entries recovered: the append of 5..=7 in part"
        ));
    }
    Ok(())
}

fn record_wal(sync: SyncPolicy) -> Recorded {
    let dir = tempfile::tempdir().unwrap();
    let recorder = RecordingFs::new();
    let mut writer =
        WalWriter::open(&recorder.shared(), &wal_in(dir.path()), options(sync)).unwrap();
    let mut promises = Vec::new();
    let promise = |writer: &WalWriter, promises: &mut Vec<(usize, u64)>| {
        if writer.entries_since_fsync() == 0 {
            promises.push((recorder.len(), writer.last_sequence()));
        }
    };
    for seq in 1..=4 {
        writer.append(&[entry(&payload_for(seq))]).unwrap();
        promise(&writer, &mut promises);
    }
    writer
        .append(&[
            entry(&payload_for(5)),
            entry(&payload_for(6)),
            entry(&payload_for(7)),
        ])
        .unwrap();
    promise(&writer, &mut promises);
    for seq in 8..=10 {
        writer.append(&[entry(&payload_for(seq))]).unwrap();
        promise(&writer, &mut promises);
    }
    writer.flush().unwrap();
    promise(&writer, &mut promises);
    drop(writer);
    Recorded {
        trace: recorder.trace(),
        promises,
    }
}

#[test]
fn every_crash_state_of_durable_appends_recovers_every_acknowledged_entry() {
    let (points, states) = explore(&record_wal(SyncPolicy::Always), check_group);
    assert!(
        points > 20 && states > points,
        "{points} points, {states} states"
    );
}

#[test]
fn every_crash_state_of_group_committed_appends_keeps_what_was_synced() {
    let recorded = record_wal(SyncPolicy::EveryN(3));
    assert!(
        recorded.promises.len() >= 3,
        "fdatasync every 3 entries and at flush"
    );
    explore(&recorded, check_group);
}

fn state_of(count: u64) -> Vec<(String, Vec<u8>, bool)> {
    vec![("count".to_owned(), count.to_string().into_bytes(), false)]
}

/// Recover the store in `dir`: events 1..n from the snapshot's count, then replay.
fn check_store(dir: &Path, promised: u64) -> Result<(), String> {
    let count = recover_counted_events(dir, options(SyncPolicy::Always))?;
    if count < promised {
        return Err(format!("{count} events recovered, {promised} promised"));
    }
    // The live snapshot matches the MANIFEST, and the MANIFEST names only files that exist.
    let report =
        examine(&fs(), dir, Depth::Verify, &Progress::default()).map_err(|e| e.to_string())?;
    match report
        .problems
        .iter()
        .find(|p| p.severity == selene_persist_engine::inspect::Severity::Error)
    {
        Some(p) => Err(format!("after recovery: {} {}", p.code, p.message)),
        None => Ok(()),
    }
}

#[test]
fn every_crash_state_of_checkpoints_and_prunes_recovers_the_old_or_new_epoch_whole() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = RecordingFs::new();
    let store = Store::open(&recorder.shared(), dir.path(), options(SyncPolicy::Always)).unwrap();
    let mut promises = Vec::new();
    let mut count = 0;
    let mut add = |store: &Store, promises: &mut Vec<(usize, u64)>| {
        count += 1;
        append_via(store.committer(), &event(count)).unwrap();
        promises.push((recorder.len(), count));
        count
    };
    for _ in 0..3 {
        add(&store, &mut promises);
    }
    store.checkpoint(state_of(3)).unwrap();
    for _ in 0..2 {
        add(&store, &mut promises);
    }
    store.checkpoint(state_of(5)).unwrap();
    store
        .prune(&RetentionPolicy {
            keep_snapshots: 1,
            keep_archives: 1,
            ..RetentionPolicy::default()
        })
        .unwrap();
    add(&store, &mut promises);
    let (tx, rx) = std::sync::mpsc::channel();
    store
        .committer()
        .close(Box::new(move |r| tx.send(r).unwrap()));
    rx.recv().unwrap().unwrap();
    let recorded = Recorded {
        trace: recorder.trace(),
        promises,
    };
    let (points, states) = explore(&recorded, check_store);
    assert!(
        points > 60 && states > points,
        "{points} points, {states} states"
    );
}

#[test]
fn every_crash_state_of_manual_and_interval_appends_keeps_what_was_flushed() {
    for policy in [
        SyncPolicy::Manual,
        SyncPolicy::Interval(std::time::Duration::from_secs(3600)),
    ] {
        let recorded = record_wal(policy);
        // Only the final flush promises anything.
        assert_eq!(recorded.promises.len(), 1, "{policy:?}");
        explore(&recorded, check_group);
    }
}

#[test]
fn every_crash_state_of_blocking_durable_commits_keeps_each_one_acknowledged() {
    // What `appendDurableSync` and `flushSync` run: under the manual policy, only the
    // durable commits promise anything, and each promises everything before it too.
    let dir = tempfile::tempdir().unwrap();
    let recorder = RecordingFs::new();
    let path = wal_in(dir.path());
    let mut writer =
        WalWriter::open(&recorder.shared(), &path, options(SyncPolicy::Manual)).unwrap();
    let mut promises = Vec::new();
    let mut durably = |writer: &mut WalWriter, seqs: &[u64]| {
        let entries: Vec<_> = seqs.iter().map(|&seq| entry(&payload_for(seq))).collect();
        if !entries.is_empty() {
            writer.stage(&entries).unwrap();
        }
        writer.commit_durably().unwrap();
        promises.push((recorder.len(), writer.last_sequence()));
    };
    for seq in 1..=3 {
        writer.append(&[entry(&payload_for(seq))]).unwrap();
    }
    durably(&mut writer, &[4]);
    writer.append(&[entry(&payload_for(5))]).unwrap();
    durably(&mut writer, &[6, 7]);
    writer.append(&[entry(&payload_for(8))]).unwrap();
    durably(&mut writer, &[]);
    drop(writer);
    let recorded = Recorded {
        trace: recorder.trace(),
        promises,
    };
    assert_eq!(
        recorded.promises.iter().map(|p| p.1).collect::<Vec<_>>(),
        [4, 7, 8]
    );
    explore(&recorded, check_wal);
}

/// Appends and acknowledgements of consumer `relay` through a store under `sync`, each
/// acknowledgement made by `ack`: promises are the positions acknowledged.
fn record_acks(sync: SyncPolicy, ack: impl Fn(&Store, &Arc<dyn Vfs>, u64) -> u64) -> Recorded {
    let dir = tempfile::tempdir().unwrap();
    let recorder = RecordingFs::new();
    let vfs = recorder.shared();
    let store = Store::open(&vfs, dir.path(), options(sync)).unwrap();
    store.consumer("relay", 0).unwrap();
    let mut promises = Vec::new();
    let mut last = 0;
    for round in 1..=3 {
        for _ in 0..round {
            last = append_via(store.committer(), &payload_for(last + 1)).unwrap();
        }
        let kept = ack(&store, &vfs, last);
        promises.push((recorder.len(), kept));
        // A lower acknowledgement changes nothing.
        ack(&store, &vfs, last - 1);
    }
    append_via(store.committer(), &payload_for(last + 1)).unwrap();
    drop(store);
    Recorded {
        trace: recorder.trace(),
        promises,
    }
}

/// The consumer position a crash left in `dir` (before any open), and the store's recovery of it:
/// (position on disk, last recovered sequence, position after open, what open capped).
fn recover_consumer(dir: &Path) -> Result<(Option<u64>, u64, Option<u64>, usize), String> {
    let on_disk = consumer::read(&*fs(), dir, "relay").map_err(|e| format!("read: {e}"))?;
    let store =
        Store::open(&fs(), dir, options(SyncPolicy::Always)).map_err(|e| format!("open: {e}"))?;
    let last = store.committer().state().last_sequence;
    let capped = store.recovery().capped_consumers.len();
    let after = consumer::read(&*fs(), dir, "relay").map_err(|e| format!("read: {e}"))?;
    common::close_via(store.committer()).map_err(|e| format!("close: {e}"))?;
    Ok((on_disk, last, after, capped))
}

#[test]
fn every_crash_state_of_consumer_acks_under_every_policy_keeps_the_position_within_the_log() {
    for sync in [
        SyncPolicy::Always,
        SyncPolicy::EveryN(3),
        SyncPolicy::Manual,
        SyncPolicy::Interval(std::time::Duration::from_secs(3600)),
    ] {
        let recorded = record_acks(sync, |store, _, n| store.ack("relay", n).unwrap());
        let (points, states) = explore(&recorded, |dir, promised| {
            let (on_disk, last, after, capped) = recover_consumer(dir)?;
            let position = on_disk.unwrap_or(0);
            if position > last || capped > 0 || after != on_disk {
                return Err(format!(
                    "position {position} on disk, {last} recovered, {after:?} after open"
                ));
            }
            if position < promised {
                return Err(format!("position {position}, {promised} acknowledged"));
            }
            Ok(())
        });
        eprintln!("{sync:?}: {points} crash points, {states} crash states");
        assert!(
            points > 40 && states > points,
            "{sync:?}: {points} points, {states} states"
        );
    }
}

#[test]
fn every_crash_state_of_acks_that_do_not_flush_first_is_capped_at_open_and_reported() {
    // The old acknowledgement: the position published without the entries' fdatasync. The
    // exploration finds the states it leaves past the end, and open caps each one.
    let recorded = record_acks(SyncPolicy::EveryN(1000), |store, vfs, n| {
        let kept = consumer::read(vfs.as_ref(), store.dir(), "relay")
            .unwrap()
            .unwrap();
        if n > kept {
            consumer::write(vfs.as_ref(), store.dir(), "relay", n).unwrap();
        }
        n.max(kept)
    });
    let past_end = std::sync::atomic::AtomicUsize::new(0);
    explore(&recorded, |dir, _| {
        let (on_disk, last, after, capped) = recover_consumer(dir)?;
        if on_disk.unwrap_or(0) <= last {
            return Ok(());
        }
        past_end.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if capped == 1 && after == Some(last) {
            Ok(())
        } else {
            Err(format!(
                "{on_disk:?} past {last}: after open {after:?}, {capped} capped"
            ))
        }
    });
    assert!(
        past_end.into_inner() > 0,
        "no crash state put the position past the end"
    );
}

#[test]
fn every_crash_state_of_a_store_created_in_missing_directories_keeps_every_acknowledged_entry() {
    // The store directory and two parents do not exist: each acknowledgement depends on all
    // three being durable, not only on the files inside.
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("a").join("b").join("store");
    let recorder = RecordingFs::new();
    let store = Store::open(&recorder.shared(), &dir, options(SyncPolicy::Always)).unwrap();
    let mut promises = Vec::new();
    for n in 1..=3 {
        append_via(store.committer(), &event(n)).unwrap();
        promises.push((recorder.len(), n));
    }
    let (tx, rx) = std::sync::mpsc::channel();
    store
        .committer()
        .close(Box::new(move |r| tx.send(r).unwrap()));
    rx.recv().unwrap().unwrap();
    let trace = recorder.trace();
    let created = trace
        .iter()
        .filter(|op| matches!(op, TraceOp::CreateDir { .. }))
        .count();
    assert!(created > 0, "the directories' creation is recorded");
    let (points, states) = explore(&Recorded { trace, promises }, check_store);
    assert!(
        points > 10 && states > points,
        "{points} points, {states} states"
    );
}
