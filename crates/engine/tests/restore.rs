//! Ship a store's log as shipments and restore it elsewhere: the same entries with the same
//! sequences, timestamps, origins and principals, and the same snapshot; point-in-time limits;
//! overlapping shipments skipped; a hole refused.

mod common;

use common::{append_via, close_via, fresh_store, fs};
use selene_persist_engine::follow::{Follower, Target};
use selene_persist_engine::restore::{Limit, Restore};
use selene_persist_engine::shipment;
use selene_persist_engine::store::Store;
use selene_persist_engine::{Entry, WalOptions};

/// Every entry of the store in `dir` after its live snapshot, and the snapshot's bytes.
fn contents(dir: &std::path::Path) -> (Vec<Entry>, Option<Vec<u8>>) {
    let store = Store::open(&fs(), dir, WalOptions::default()).unwrap();
    let snapshot = store.snapshot().map(|s| std::fs::read(s.path()).unwrap());
    let mut replay = store.replay(0).unwrap();
    let mut all = Vec::new();
    loop {
        let batch = replay.next_batch::<Vec<Entry>>(100, usize::MAX).unwrap();
        if batch.is_empty() {
            break;
        }
        all.extend(batch);
    }
    drop(replay);
    close_via(store.committer()).unwrap();
    (all, snapshot)
}

/// The fixture of these tests: in a fresh directory, a store of 30 entries with a checkpoint after
/// the 10th, closed; its shipments of `per` frames each, from the first sequence after `from`.
fn shipped_store(from: u64, per: usize) -> (tempfile::TempDir, Vec<Vec<u8>>) {
    let (dir, store) = fresh_store();
    for n in 0..10 {
        append_via(store.committer(), format!("before {n}").as_bytes()).unwrap();
    }
    store
        .checkpoint(vec![("state".into(), b"ten".to_vec(), true)])
        .unwrap();
    for n in 0..20 {
        append_via(store.committer(), format!("after {n}").as_bytes()).unwrap();
    }
    close_via(store.committer()).unwrap();
    let mut follower = Follower::open(
        &fs(),
        Target::Store(dir.path().to_path_buf()),
        Some(from),
        true,
    )
    .unwrap();
    let mut out = Vec::new();
    loop {
        let frames = follower.next_frames(per, usize::MAX).unwrap();
        if frames.is_empty() {
            return (dir, out);
        }
        out.push(shipment::encode(3, &frames).unwrap());
    }
}

fn restore(
    dest: &std::path::Path,
    snapshot: Option<&[u8]>,
    shipments: &[Vec<u8>],
    limit: Limit,
) -> u64 {
    let mut restore = Restore::begin(&fs(), dest, snapshot, limit).unwrap();
    for s in shipments {
        if restore.push(s).unwrap().done {
            break;
        }
    }
    restore.finish().unwrap()
}

#[test]
fn a_restored_store_replays_as_the_origin() {
    let (origin, shipments) = shipped_store(12, 7);
    let (entries, snapshot) = contents(origin.path());
    let snapshot = snapshot.expect("the checkpoint's snapshot");
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("restored");
    // Shipments overlap after a shipper restarts: a repeated run is skipped.
    let mut overlapping = shipments.clone();
    overlapping.insert(2, shipments[1].clone());
    let last = restore(&dest, Some(&snapshot), &overlapping, Limit::default());
    assert_eq!(last, 31, "30 entries and the checkpoint's watermark");
    let (restored, restored_snapshot) = contents(&dest);
    assert_eq!(restored_snapshot.as_deref(), Some(snapshot.as_slice()));
    let key = |e: &Entry| {
        (
            e.sequence,
            e.hlc,
            e.origin,
            e.principal.clone(),
            e.payload.clone(),
        )
    };
    assert_eq!(
        restored.iter().map(key).collect::<Vec<_>>(),
        entries.iter().map(key).collect::<Vec<_>>()
    );
}

#[test]
fn a_restore_ends_at_a_sequence_or_a_time() {
    let (origin, shipments) = shipped_store(1, 4);
    let (_, _) = contents(origin.path());
    let out = tempfile::tempdir().unwrap();
    let to_seq = out.path().join("to-seq");
    assert_eq!(
        restore(
            &to_seq,
            None,
            &shipments,
            Limit {
                to_sequence: Some(17),
                to_hlc: None
            }
        ),
        17
    );
    let (entries, _) = contents(&to_seq);
    assert_eq!(entries.last().map(|e| e.sequence), Some(17));
    // By time: everything stamped at or before the 5th entry's timestamp.
    let all = tempfile::tempdir().unwrap();
    restore(&all.path().join("all"), None, &shipments, Limit::default());
    let (every, _) = contents(&all.path().join("all"));
    let at = every[4].hlc;
    let to_time = out.path().join("to-time");
    assert_eq!(
        restore(
            &to_time,
            None,
            &shipments,
            Limit {
                to_sequence: None,
                to_hlc: Some(at)
            }
        ),
        5
    );
}

#[test]
fn a_hole_in_the_shipments_is_refused_and_leaves_nothing() {
    let (origin, mut shipments) = shipped_store(1, 5);
    shipments.remove(1);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("restored");
    let mut restore = Restore::begin(&fs(), &dest, None, Limit::default()).unwrap();
    restore.push(&shipments[0]).unwrap();
    let err = restore.push(&shipments[1]).unwrap_err();
    assert_eq!(err.code(), "SEQUENCE_GAP");
    drop(restore);
    assert!(!dest.exists(), "nothing at the destination");
    // A destination that exists is refused.
    assert_eq!(
        Restore::begin(&fs(), origin.path(), None, Limit::default())
            .unwrap_err()
            .code(),
        "INVALID_ARGUMENT"
    );
    // A damaged snapshot is refused.
    assert_eq!(
        Restore::begin(
            &fs(),
            &out.path().join("x"),
            Some(b"not a snapshot"),
            Limit::default()
        )
        .unwrap_err()
        .code(),
        "MAGIC_MISMATCH"
    );
}
