//! inspect and verify: what is in a store, and every problem with its file, offset and code.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use selene_persist_engine::inspect::{Depth, Progress, Report, Severity, examine};

/// A store with three checkpoints and a few entries after the last.
fn store_dir() -> tempfile::TempDir {
    let (dir, store) = fresh_store();
    for round in 0..3 {
        for n in 0..10 {
            append_via(store.committer(), &vec![b'a' + round; 5000 + n]).unwrap();
        }
        store
            .checkpoint(vec![("state".into(), vec![round; 100], true)])
            .unwrap();
    }
    append_via(store.committer(), b"after").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    store
        .committer()
        .close(Box::new(move |r| tx.send(r).unwrap()));
    rx.recv().unwrap().unwrap();
    dir
}

fn verify(path: &Path) -> Report {
    examine(&fs(), path, Depth::Verify, &Progress::default()).unwrap()
}

fn codes(report: &Report) -> Vec<(Severity, String)> {
    report
        .problems
        .iter()
        .map(|p| (p.severity, p.code.clone()))
        .collect()
}

fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_clean_store_verifies_with_no_problems_and_is_not_modified() {
    let dir = store_dir();
    let before = contents(dir.path());
    let progress = Progress::default();
    let report = examine(&fs(), dir.path(), Depth::Verify, &progress).unwrap();
    assert_eq!(report.problems, vec![], "{report:#?}");
    assert_eq!(report.kind, "store");
    let manifest = report.manifest.as_ref().unwrap();
    assert_eq!(manifest.live_snapshot_seq, 33);
    assert_eq!(manifest.archives, vec![11, 22, 33]);
    assert_eq!(
        report
            .snapshots
            .iter()
            .map(|s| (s.sequence, s.live))
            .collect::<Vec<_>>(),
        vec![(11, false), (22, false), (33, true)]
    );
    assert_eq!(report.snapshots[2].sections[0].name, "state");
    let wal = report.wal.as_ref().unwrap();
    assert_eq!(
        (
            wal.snapshot_seq,
            wal.first_sequence,
            wal.last_sequence,
            wal.entries
        ),
        (33, Some(34), Some(34), 1)
    );
    let archive = &report.archives[1].wal;
    assert_eq!(
        (
            archive.snapshot_seq,
            archive.first_sequence,
            archive.last_sequence
        ),
        (11, Some(12), Some(22))
    );
    assert_eq!((archive.entries, archive.watermarks), (11, 1));
    assert_eq!(archive.compressed_entries, 10);
    assert!(
        archive.raw_payload_bytes > 10 * archive.stored_payload_bytes,
        "{archive:?}"
    );
    assert_eq!(
        progress.done.load(std::sync::atomic::Ordering::Relaxed),
        progress.total.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert_eq!(contents(dir.path()), before);
}

#[test]
fn damage_in_each_file_is_reported_with_its_file_offset_and_code() {
    let dir = store_dir();
    let archive = dir.path().join("wal.22.archive");
    let mut bytes = std::fs::read(&archive).unwrap();
    bytes[30] ^= 1; // inside the first frame's header, at offset 24
    std::fs::write(&archive, &bytes).unwrap();
    let snapshot = dir.path().join("snapshot.22.snap");
    let mut bytes = std::fs::read(&snapshot).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&snapshot, &bytes).unwrap();
    let report = verify(dir.path());
    let mid_log = report
        .problems
        .iter()
        .find(|p| p.code == "MID_LOG_CORRUPTION")
        .expect("archive damage");
    assert!(
        mid_log.file.ends_with("wal.22.archive") && mid_log.offset == Some(24),
        "{mid_log:?}"
    );
    let hash = report
        .problems
        .iter()
        .find(|p| p.code == "BODY_HASH_MISMATCH")
        .expect("snapshot damage");
    assert!(hash.file.ends_with("snapshot.22.snap"));
    assert!(report.has_errors());
    // inspect reads headers and the frame chain: it sees the archive damage but not the body.
    let shallow = examine(&fs(), dir.path(), Depth::Inspect, &Progress::default()).unwrap();
    assert!(codes(&shallow).contains(&(Severity::Error, "MID_LOG_CORRUPTION".into())));
    assert!(
        !codes(&shallow)
            .iter()
            .any(|(_, c)| c == "BODY_HASH_MISMATCH")
    );
}

#[test]
fn missing_files_and_broken_chains_are_store_inconsistencies() {
    let dir = store_dir();
    std::fs::remove_file(dir.path().join("wal.22.archive")).unwrap();
    std::fs::remove_file(dir.path().join("snapshot.33.snap")).unwrap();
    let report = verify(dir.path());
    let messages: Vec<&str> = report
        .problems
        .iter()
        .filter(|p| p.code == "STORE_INCONSISTENT")
        .map(|p| p.message.as_str())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("live snapshot 33 is missing")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("wal.22.archive is missing")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("starts after 22, but the previous archive ends at 11")),
        "{messages:?}"
    );
}

#[test]
fn torn_tails_orphans_and_temp_files_are_warnings() {
    let dir = store_dir();
    let mut wal = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("wal.log"))
        .unwrap();
    // A torn write: garbage, then the zeros of preallocated space (not counted as torn).
    std::io::Write::write_all(&mut wal, &[0xA5; 100]).unwrap();
    std::io::Write::write_all(&mut wal, &[0; 4096]).unwrap();
    std::fs::write(dir.path().join("snapshot.99.snap.1.2.tmp"), b"x").unwrap();
    std::fs::copy(
        dir.path().join("snapshot.33.snap"),
        dir.path().join("snapshot.40.snap"),
    )
    .unwrap();
    let report = verify(dir.path());
    assert!(!report.has_errors(), "{report:#?}");
    let warnings = codes(&report);
    for code in ["TORN_TAIL", "STALE_TEMP_FILE", "ORPHAN"] {
        assert!(
            warnings.contains(&(Severity::Warning, code.into())),
            "{code}: {warnings:?}"
        );
    }
    let torn = report.wal.unwrap().torn_tail.unwrap();
    assert_eq!(torn.discarded_bytes, 100);
}

#[test]
fn single_files_are_examined_by_their_magic() {
    let dir = store_dir();
    let wal = verify(&dir.path().join("wal.11.archive"));
    assert_eq!((wal.kind.as_str(), wal.wal.unwrap().entries), ("wal", 11));
    let snapshot = verify(&dir.path().join("snapshot.11.snap"));
    assert_eq!(
        (snapshot.kind.as_str(), snapshot.snapshots.len()),
        ("snapshot", 1)
    );
    let manifest = verify(&dir.path().join("MANIFEST"));
    assert_eq!(manifest.manifest.unwrap().archives, vec![11, 22, 33]);
    let foreign = dir.path().join("notes.txt");
    std::fs::write(&foreign, b"hello, not a WAL").unwrap();
    assert_eq!(
        codes(&verify(&foreign)),
        vec![(Severity::Error, "MAGIC_MISMATCH".into())]
    );
    let missing = examine(
        &fs(),
        &dir.path().join("absent"),
        Depth::Verify,
        &Progress::default(),
    );
    assert_eq!(missing.unwrap_err().code(), "IO");
}

#[test]
fn the_report_serialises_to_camel_case_json() {
    let json = serde_json::to_value(verify(store_dir().path())).unwrap();
    assert_eq!(json["manifest"]["liveSnapshotSeq"], 33);
    assert_eq!(json["wal"]["lastSequence"], 34);
    assert!(json["problems"].as_array().unwrap().is_empty());
}

#[test]
fn an_archive_must_end_at_the_sequence_in_its_name() {
    let dir = store_dir();
    std::fs::copy(
        dir.path().join("wal.11.archive"),
        dir.path().join("wal.12.archive"),
    )
    .unwrap();
    let report = verify(dir.path());
    let wrong: Vec<_> = report
        .problems
        .iter()
        .filter(|p| p.file.ends_with("wal.12.archive"))
        .map(|p| (p.severity, p.code.as_str(), p.message.as_str()))
        .collect();
    assert_eq!(
        wrong,
        vec![
            (
                Severity::Warning,
                "ORPHAN",
                "not listed in the MANIFEST; prune deletes it"
            ),
            (
                Severity::Error,
                "STORE_INCONSISTENT",
                "archive ends at 11, not at 12"
            ),
        ]
    );
}
