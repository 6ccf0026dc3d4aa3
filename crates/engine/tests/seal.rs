//! The seal lets an open skip the durable prefix it names; any seal it cannot trust costs a full
//! scan and never data; damage behind a seal is found on read and by verify, and damage in its
//! last frame is corruption, never a torn tail.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use common::*;
use selene_persist_engine::Entry;
use selene_persist_engine::file_header::FILE_HEADER_LEN;
use selene_persist_engine::filename::seal_path;
use selene_persist_engine::inspect::{Depth, Progress, examine};
use selene_persist_engine::warning;
use selene_persist_engine::{SyncPolicy, TailReason, WalWriter};

const ENTRIES: u64 = 40;
const HEADER: u64 = FILE_HEADER_LEN as u64;

fn sealed_wal() -> (tempfile::TempDir, std::path::PathBuf) {
    let (dir, path) = fresh_wal();
    write_entries(&path, ENTRIES);
    (dir, path)
}

fn reopen(path: &Path) -> WalWriter {
    WalWriter::open(&fs(), path, options(SyncPolicy::Always)).unwrap()
}

#[test]
fn an_open_after_a_clean_close_scans_nothing_and_carries_on() {
    let (_dir, path) = sealed_wal();
    let size = std::fs::metadata(&path).unwrap().len();
    let last_hlc = read_all(&path).unwrap().last().unwrap().hlc;
    let mut writer = reopen(&path);
    assert_eq!(writer.scanned_from(), size);
    assert_eq!(writer.committed_offset(), size);
    assert_eq!(writer.last_sequence(), ENTRIES);
    writer.append(&[entry(&payload_for(ENTRIES + 1))]).unwrap();
    writer.close().unwrap();
    let entries = read_all(&path).unwrap();
    assert_standard_entries(&entries, 1, ENTRIES + 1);
    assert!(
        entries.last().unwrap().hlc > last_hlc,
        "the clock resumes past the prefix"
    );
}

#[test]
fn a_seal_that_cannot_be_trusted_costs_a_full_scan_never_data() {
    let (dir, path) = sealed_wal();
    let seal = std::fs::read(seal_path(&path)).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let other = dir.path().join("other.log");
    write_entries(&other, 3);
    let foreign = std::fs::read(seal_path(&other)).unwrap();
    let mut flipped = seal.clone();
    flipped[20] ^= 1;
    // The same length of WAL, different frames where the seal's last frame was.
    let rewritten = dir.path().join("rewritten.log");
    let mut writer = WalWriter::open(&fs(), &rewritten, options(SyncPolicy::Always)).unwrap();
    for seq in 1..=ENTRIES {
        let mut payload = payload_for(seq);
        payload[0] = b'E';
        writer.append(&[entry(&payload)]).unwrap();
    }
    drop(writer);
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        ("torn seal", seal[..40].to_vec(), bytes.clone()),
        ("flipped seal", flipped, bytes.clone()),
        ("another WAL's seal", foreign, bytes.clone()),
        (
            "WAL shorter than the seal",
            seal.clone(),
            bytes[..bytes.len() - 1].to_vec(),
        ),
        ("other frames at the sealed offset", seal.clone(), {
            let mut other = std::fs::read(&rewritten).unwrap();
            other.truncate(bytes.len());
            other
        }),
    ];
    let heard = Arc::new(Mutex::new(Vec::new()));
    let into = Arc::clone(&heard);
    let sealed = seal_path(&path);
    let _listening = warning::subscribe(Arc::new(move |w: &warning::Warning| {
        if w.path == sealed {
            into.lock().unwrap().push((w.kind, w.detail.clone()));
        }
    }));
    for (case, seal_bytes, wal_bytes) in cases {
        std::fs::write(seal_path(&path), &seal_bytes).unwrap();
        std::fs::write(&path, &wal_bytes).unwrap();
        let writer = reopen(&path);
        assert_eq!(writer.scanned_from(), HEADER, "{case}");
        let said = heard.lock().unwrap().drain(..).collect::<Vec<_>>();
        assert_eq!(said.len(), 1, "{case}: one warning");
        assert_eq!(said[0].0, warning::Kind::SealIgnored, "{case}");
        assert!(said[0].1.contains("the whole file was scanned"), "{case}");
        drop(writer);
        let entries = read_all(&path).unwrap();
        assert!(!entries.is_empty(), "{case}");
    }
}

#[test]
fn a_torn_tail_after_the_sealed_prefix_is_still_cut_exactly() {
    let (_dir, path) = sealed_wal();
    let sealed = std::fs::metadata(&path).unwrap().len();
    // Never fdatasynced, so the seal (rewritten after each fdatasync) still names the first 40.
    let mut writer = WalWriter::open(&fs(), &path, options(SyncPolicy::Manual)).unwrap();
    for seq in ENTRIES + 1..=ENTRIES + 5 {
        writer.append(&[entry(&payload_for(seq))]).unwrap();
    }
    let end = writer.committed_offset();
    // Killed: no close.
    drop(writer);
    let offsets = frame_offsets(&path);
    let last = *offsets.last().unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(end - 3)
        .unwrap();
    let writer = reopen(&path);
    assert_eq!(writer.scanned_from(), sealed);
    let repair = writer.tail_repair().expect("a repair");
    assert_eq!(repair.reason, TailReason::ShortFrame);
    assert_eq!(repair.offset, last);
    assert_eq!(writer.last_sequence(), ENTRIES + 4);
    drop(writer);
    assert_standard_entries(&read_all(&path).unwrap(), 1, ENTRIES + 4);
}

#[test]
fn damage_behind_the_seal_is_not_reread_on_open_but_reading_and_verify_report_it() {
    let (_dir, path) = sealed_wal();
    let offsets = frame_offsets(&path);
    let mut bytes = std::fs::read(&path).unwrap();
    // A payload byte of the third frame: its header is intact.
    bytes[usize::try_from(offsets[2]).unwrap() + 45] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let writer = reopen(&path);
    assert_eq!(writer.scanned_from(), bytes.len() as u64);
    drop(writer);
    assert_eq!(
        read_all(&path).unwrap_err().code(),
        "MID_LOG_CORRUPTION",
        "a reader verifies every payload"
    );
    let report = examine(&fs(), &path, Depth::Verify, &Progress::default()).unwrap();
    assert!(report.has_errors(), "{report:#?}");
}

#[test]
fn damage_in_the_last_sealed_frame_is_corruption_never_a_torn_tail() {
    let (_dir, path) = sealed_wal();
    let offsets = frame_offsets(&path);
    let mut bytes = std::fs::read(&path).unwrap();
    // A payload byte of the last frame: its header, which the seal names, is intact.
    bytes[usize::try_from(*offsets.last().unwrap()).unwrap() + 45] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let error = WalWriter::open(&fs(), &path, options(SyncPolicy::Always)).unwrap_err();
    assert_eq!(error.code(), "SEALED_CORRUPTION", "{error}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the file is untouched"
    );
    assert_eq!(read_all(&path).unwrap_err().code(), "SEALED_CORRUPTION");
    let report = examine(&fs(), &path, Depth::Verify, &Progress::default()).unwrap();
    assert!(report.has_errors(), "{report:#?}");
    // Without the seal nothing says the frame was durable: it is a torn tail, cut on open.
    std::fs::remove_file(seal_path(&path)).unwrap();
    let writer = reopen(&path);
    assert_eq!(
        writer.tail_repair().map(|r| r.reason),
        Some(TailReason::CorruptFinalFrame)
    );
    assert_eq!(writer.last_sequence(), ENTRIES - 1);
}

#[test]
fn the_seal_names_only_what_was_fdatasynced() {
    let (_dir, path) = fresh_wal();
    let mut writer = WalWriter::open(&fs(), &path, options(SyncPolicy::Manual)).unwrap();
    for seq in 1..=3 {
        writer.append(&[entry(&payload_for(seq))]).unwrap();
    }
    writer.flush().unwrap();
    let flushed = writer.committed_offset();
    writer.append(&[entry(&payload_for(4))]).unwrap();
    // Manual: close does not fdatasync, so entry 4 is not sealed.
    writer.close().unwrap();
    let writer = reopen(&path);
    assert_eq!(writer.scanned_from(), flushed);
    assert_eq!(writer.last_sequence(), 4);
}

#[test]
fn a_writer_killed_after_a_megabyte_of_durable_appends_left_a_seal() {
    let (_dir, path) = fresh_wal();
    let mut writer = WalWriter::open(&fs(), &path, options(SyncPolicy::Always)).unwrap();
    let payload = vec![b'p'; 1000];
    for _ in 0..1100 {
        writer.append(&[entry(&payload)]).unwrap();
    }
    let end = writer.committed_offset();
    drop(writer);
    let writer = reopen(&path);
    assert!(
        writer.scanned_from() >= 1 << 20 && writer.scanned_from() <= end,
        "scanned from {}",
        writer.scanned_from()
    );
    assert_eq!(writer.last_sequence(), 1100);
}

#[test]
fn frames_past_the_seal_are_made_durable_and_sealed_at_open() {
    // A writer that died after writing frames and before sealing them: the seal names an older
    // prefix (or there is none). Readers serve those frames from the open on, so the open
    // fdatasyncs and seals them; a durable follower then reads them without a later commit.
    for case in ["older seal", "no seal"] {
        let (dir, path) = sealed_wal();
        let old_seal = std::fs::read(seal_path(&path)).unwrap();
        let mut writer = reopen(&path);
        for seq in ENTRIES + 1..=ENTRIES + 5 {
            writer.append(&[entry(&payload_for(seq))]).unwrap();
        }
        writer.close().unwrap();
        if case == "older seal" {
            std::fs::write(seal_path(&path), &old_seal).unwrap();
        } else {
            std::fs::remove_file(seal_path(&path)).unwrap();
        }
        let size = std::fs::metadata(&path).unwrap().len();
        let writer = reopen(&path);
        let reader = selene_persist_engine::WalReader::open(&fs(), &path).unwrap();
        assert_eq!(reader.durable_end(fs().as_ref()).unwrap(), size, "{case}");
        let mut follower = selene_persist_engine::follow::Follower::open(
            &fs(),
            selene_persist_engine::follow::Target::Wal(path.clone()),
            None,
            true,
        )
        .unwrap();
        let seen = follower.next_batch::<Vec<Entry>>(100, usize::MAX).unwrap();
        assert_eq!(seen.len() as u64, ENTRIES + 5, "{case}");
        drop(writer);
        drop(dir);
    }
}

#[test]
fn a_seal_that_cannot_be_written_is_warned_about_under_its_own_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal.log");
    // A directory where the seal goes: the writer carries on without one.
    std::fs::create_dir(seal_path(&path)).unwrap();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let into = Arc::clone(&heard);
    let wal_dir = dir.path().to_path_buf();
    let _listening = warning::subscribe(Arc::new(move |w: &warning::Warning| {
        if w.path.starts_with(&wal_dir) {
            into.lock()
                .unwrap()
                .push((w.kind, w.path.clone(), w.detail.clone()));
        }
    }));
    let mut writer = WalWriter::open(&fs(), &path, options(SyncPolicy::Always)).unwrap();
    for _ in 0..5 {
        writer.append(&[entry(b"x")]).unwrap();
    }
    drop(writer);
    let said = heard.lock().unwrap().clone();
    // Said once while it keeps failing, not at every commit.
    assert_eq!(said.len(), 1, "{said:?}");
    for (kind, at, detail) in said {
        assert_eq!(kind, warning::Kind::SealWriteFailed);
        assert_eq!(
            at,
            seal_path(&path),
            "the seal's path, as seal-ignored gives it"
        );
        assert!(
            detail.contains(&*seal_path(&path).to_string_lossy()),
            "{detail}"
        );
    }
}
