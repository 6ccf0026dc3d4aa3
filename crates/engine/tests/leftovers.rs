//! A failed operation leaves nothing behind: a backup, a restore and a store salvage that fail
//! at any operation (EIO, ENOSPC, a short write) leave neither their staging directory nor the
//! destination nor the destination's parents they created; nor does a backup of a missing
//! source or onto a dangling symlink. And every directory they create is durable (its parent
//! fsynced) before the operation reports success.

mod common;

use std::path::{Path, PathBuf};

use common::{append_via, close_via, directories_made_durable, each_single_fault, fs};
use selene_persist_engine::backup::{Upto, backup};
use selene_persist_engine::follow::{Follower, Target};
use selene_persist_engine::restore::{Limit, Restore};
use selene_persist_engine::salvage::salvage_store;
use selene_persist_engine::store::Store;
use selene_persist_engine::testing::fault::{Fault, FaultFs};
use selene_persist_engine::{Entry, Error, WalOptions, shipment};

/// A closed store in `dir`: 20 events, a checkpoint, 10 more, a consumer.
fn source(dir: &Path) {
    let store = Store::open(&fs(), dir, WalOptions::default()).unwrap();
    for n in 1..=30 {
        if n == 21 {
            store
                .checkpoint(vec![("count".into(), b"20".to_vec(), false)])
                .unwrap();
        }
        append_via(store.committer(), format!("event {n}").as_bytes()).unwrap();
    }
    selene_persist_engine::consumer::write(fs().as_ref(), dir, "relay", 5).unwrap();
    close_via(store.committer()).unwrap();
}

/// The events a store holds: the snapshot's count, then each replayed event in order.
fn events(dir: &Path) -> u64 {
    let store = Store::open(&fs(), dir, WalOptions::default()).unwrap();
    let mut count: u64 = store.snapshot().map_or(0, |s| {
        String::from_utf8(s.read("count").unwrap())
            .unwrap()
            .parse()
            .unwrap()
    });
    let mut replay = store.replay(0).unwrap();
    loop {
        let batch = replay.next_batch::<Vec<Entry>>(100, usize::MAX).unwrap();
        if batch.is_empty() {
            break;
        }
        for e in batch {
            count += 1;
            assert_eq!(e.payload, format!("event {count}").into_bytes());
        }
    }
    drop(replay);
    close_via(store.committer()).unwrap();
    count
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Where each run puts its result: two directories that do not exist yet, in `root`.
fn dest_in(root: &Path) -> PathBuf {
    root.join("out").join("nested").join("copy")
}

/// Run `operation` (into `dest_in(root)`) once per (operation index, fault) pair. After a
/// failure `root` must be empty again; after a success it must hold the destination alone,
/// made durable, and `check` must accept it.
fn sweep(operation: impl Fn(&FaultFs, &Path) -> Result<(), Error>, check: impl Fn(&Path)) -> usize {
    let probe_root = tempfile::tempdir().unwrap();
    let probe = FaultFs::new();
    operation(&probe, &dest_in(probe_root.path())).unwrap();
    check(&dest_in(probe_root.path()));
    directories_made_durable(&probe.log(), probe.op_count()).unwrap();
    let operations = probe.op_count();
    let mut failed = 0;
    each_single_fault(&probe, |faults, root, fault, context| {
        match operation(faults, &dest_in(root)) {
            Ok(()) => {
                assert_eq!(names(root), ["out"], "{context}");
                assert_eq!(names(&root.join("out")), ["nested"], "{context}");
                assert_eq!(names(&root.join("out/nested")), ["copy"], "{context}");
                check(&dest_in(root));
            }
            Err(e) => {
                let code = e.code();
                assert!(matches!(code, "IO" | "DISK_FULL"), "{context}: {e}");
                if fault == Fault::NoSpace {
                    assert_eq!(code, "DISK_FULL", "{context}: {e}");
                }
                assert!(
                    names(root).is_empty(),
                    "{context}: {e} left {:?}",
                    names(root)
                );
                failed += 1;
            }
        }
    });
    eprintln!("{operations} operations, {failed} failed runs left nothing behind");
    failed
}

#[test]
fn a_backup_failing_at_any_operation_leaves_no_staging_and_no_destination() {
    let src = tempfile::tempdir().unwrap();
    source(src.path());
    let failed = sweep(
        |faults, dest| backup(&faults.shared(), src.path(), dest, || Upto::Durable).map(drop),
        |dest| assert_eq!(events(dest), 30),
    );
    assert!(failed > 40, "{failed}");
}

#[test]
fn a_backup_of_a_missing_source_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("no-store");
    let error = backup(&fs(), &missing, &dest_in(root.path()), || Upto::Durable).unwrap_err();
    assert_eq!(error.code(), "IO", "{error}");
    // The OS's own error, so a program sees ENOENT (errno, osCode) as for any missing file.
    let (op, errno) = error.os_failure().unwrap();
    assert_eq!(
        (
            op,
            errno
                .map(std::io::Error::from_raw_os_error)
                .map(|e| e.kind())
        ),
        ("open", Some(std::io::ErrorKind::NotFound)),
        "{error}"
    );
    assert!(names(root.path()).is_empty(), "{:?}", names(root.path()));
    // A directory that is not a store is not written to either.
    std::fs::create_dir(&missing).unwrap();
    let error = backup(&fs(), &missing, &dest_in(root.path()), || Upto::Durable).unwrap_err();
    assert_eq!(error.code(), "IO", "{error}");
    assert_eq!(names(root.path()), ["no-store"]);
    assert!(names(&missing).is_empty(), "{:?}", names(&missing));
}

#[test]
fn a_backup_onto_a_dangling_symlink_leaves_nothing_and_keeps_the_link() {
    let src = tempfile::tempdir().unwrap();
    source(src.path());
    let root = tempfile::tempdir().unwrap();
    let dest = root.path().join("copy");
    std::os::unix::fs::symlink(root.path().join("nowhere"), &dest).unwrap();
    // The name is taken: the staging directory cannot be renamed onto it.
    let error = backup(&fs(), src.path(), &dest, || Upto::Durable).unwrap_err();
    assert_eq!(error.code(), "IO", "{error}");
    assert_eq!(names(root.path()), ["copy"]);
    assert!(std::fs::symlink_metadata(&dest).unwrap().is_symlink());
}

/// The origin's snapshot bytes and its shipments of 7 frames after the snapshot.
fn shipments(dir: &Path) -> (Vec<u8>, Vec<Vec<u8>>) {
    source(dir);
    let store = Store::open(&fs(), dir, WalOptions::default()).unwrap();
    let snapshot = std::fs::read(store.snapshot().unwrap().path()).unwrap();
    close_via(store.committer()).unwrap();
    let mut follower =
        Follower::open(&fs(), Target::Store(dir.to_path_buf()), Some(21), true).unwrap();
    let mut out = Vec::new();
    loop {
        let frames = follower.next_frames(7, usize::MAX).unwrap();
        if frames.is_empty() {
            return (snapshot, out);
        }
        out.push(shipment::encode(3, &frames).unwrap());
    }
}

#[test]
fn a_restore_failing_at_any_operation_leaves_no_staging_and_no_destination() {
    let origin = tempfile::tempdir().unwrap();
    let (snapshot, shipped) = shipments(origin.path());
    let failed = sweep(
        |faults, dest| {
            let mut restore =
                Restore::begin(&faults.shared(), dest, Some(&snapshot), Limit::default())?;
            for s in &shipped {
                restore.push(s)?;
            }
            restore.finish().map(drop)
        },
        |dest| assert_eq!(events(dest), 30),
    );
    assert!(failed > 10, "{failed}");
}

#[test]
fn a_restore_refused_or_abandoned_leaves_nothing() {
    let origin = tempfile::tempdir().unwrap();
    let (snapshot, shipped) = shipments(origin.path());
    let root = tempfile::tempdir().unwrap();
    let dest = dest_in(root.path());
    let mut damaged = snapshot.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    let error = Restore::begin(&fs(), &dest, Some(&damaged), Limit::default()).unwrap_err();
    assert_eq!(error.code(), "BODY_HASH_MISMATCH", "{error}");
    assert!(names(root.path()).is_empty(), "{:?}", names(root.path()));
    // A shipment past a hole is refused, and the restore given up.
    let mut restore = Restore::begin(&fs(), &dest, Some(&snapshot), Limit::default()).unwrap();
    let error = restore.push(&shipped[1]).unwrap_err();
    assert_eq!(error.code(), "SEQUENCE_GAP", "{error}");
    drop(restore);
    assert!(names(root.path()).is_empty(), "{:?}", names(root.path()));
}

#[test]
fn a_store_salvage_failing_at_any_operation_leaves_no_staging_and_no_destination() {
    let src = tempfile::tempdir().unwrap();
    source(src.path());
    let failed = sweep(
        |faults, dest| salvage_store(&faults.shared(), src.path(), dest).map(drop),
        |dest| assert_eq!(events(dest), 30),
    );
    assert!(failed > 20, "{failed}");
}
