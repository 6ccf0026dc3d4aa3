//! Torn tails are cut exactly; damage with valid data behind it is refused untouched.

mod common;

use common::*;
use selene_persist_engine::filename::{seal_path, torn_path};
use selene_persist_engine::{TailReason, WalOptions, WalWriter};

const ENTRIES: u64 = 5;

fn fixture() -> (tempfile::TempDir, std::path::PathBuf, Vec<u8>, Vec<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let path = wal_in(&dir);
    write_entries(&path, ENTRIES);
    // As after a crash before anything was sealed: the open scans every frame.
    std::fs::remove_file(seal_path(&path)).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let offsets = frame_offsets(&path);
    (dir, path, bytes, offsets)
}

fn reopen(path: &std::path::Path) -> selene_persist_engine::Result<WalWriter> {
    WalWriter::open(&fs(), path, WalOptions::default())
}

#[test]
fn clean_log_reports_no_repair() {
    let (_dir, path, bytes, _) = fixture();
    let writer = reopen(&path).unwrap();
    assert_eq!(writer.tail_repair(), None);
    assert_eq!(writer.last_sequence(), ENTRIES);
    assert_eq!(writer.committed_offset(), bytes.len() as u64);
}

#[test]
fn truncating_the_last_frame_at_every_byte_is_repaired() {
    let (_dir, path, bytes, offsets) = fixture();
    let last_start = *offsets.last().unwrap() as usize;
    for cut in last_start + 1..bytes.len() {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        // The reader stops cleanly before the torn frame without touching the file.
        assert_standard_entries(&read_all(&path).unwrap(), 1, ENTRIES - 1);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), cut as u64);

        let writer = reopen(&path).unwrap();
        let repair = writer.tail_repair().expect("a repair");
        assert_eq!(repair.reason, TailReason::ShortFrame, "cut at {cut}");
        assert_eq!(repair.offset, last_start as u64);
        // Counted to the torn write's last non-zero byte: trailing zeros are free space.
        let written = bytes[last_start..cut]
            .iter()
            .rposition(|&b| b != 0)
            .unwrap()
            + 1;
        assert_eq!(repair.discarded_bytes, written as u64);
        assert_eq!(writer.last_sequence(), ENTRIES - 1);
        drop(writer);
        assert_eq!(std::fs::read(&path).unwrap(), &bytes[..last_start]);
    }
}

#[test]
fn a_bit_flip_anywhere_in_the_last_frame_is_repaired() {
    let (_dir, path, bytes, offsets) = fixture();
    let last_start = *offsets.last().unwrap() as usize;
    for byte in last_start..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[byte] ^= 0x40;
        std::fs::write(&path, &damaged).unwrap();
        let writer = reopen(&path).unwrap();
        let repair = writer.tail_repair().expect("a repair");
        assert_eq!(repair.reason, TailReason::CorruptFinalFrame, "byte {byte}");
        assert_eq!(repair.offset, last_start as u64);
        drop(writer);
        assert_standard_entries(&read_all(&path).unwrap(), 1, ENTRIES - 1);
    }
}

#[test]
fn a_zero_filled_tail_is_the_clean_end_and_close_cuts_it() {
    let (_dir, path, bytes, _) = fixture();
    for zeros in [1usize, 39, 40, 128, 70_000, 5 << 20] {
        let mut padded = bytes.clone();
        padded.resize(bytes.len() + zeros, 0);
        std::fs::write(&path, &padded).unwrap();
        let writer = reopen(&path).unwrap();
        assert_eq!(writer.tail_repair(), None, "{zeros} zeros");
        assert_eq!(writer.committed_offset(), bytes.len() as u64);
        assert_eq!(writer.last_sequence(), ENTRIES);
        writer.close().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{zeros} zeros");
    }
}

#[test]
fn a_zeroed_last_frame_is_the_end_of_the_log() {
    let (_dir, path, mut bytes, offsets) = fixture();
    let last_start = *offsets.last().unwrap() as usize;
    bytes[last_start..].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    let writer = reopen(&path).unwrap();
    assert_eq!(writer.tail_repair(), None);
    assert_eq!(writer.last_sequence(), ENTRIES - 1);
    assert_eq!(writer.committed_offset(), last_start as u64);
}

#[test]
fn a_torn_write_into_preallocated_space_is_cut_to_its_last_valid_frame() {
    let (_dir, path, bytes, offsets) = fixture();
    let last_start = *offsets.last().unwrap() as usize;
    // The last frame half written, then the rest of a preallocated chunk.
    let torn_end = last_start + (bytes.len() - last_start) / 2;
    let mut damaged = bytes[..torn_end].to_vec();
    damaged.resize(1 << 20, 0);
    std::fs::write(&path, &damaged).unwrap();
    let writer = reopen(&path).unwrap();
    let repair = writer.tail_repair().expect("a repair");
    assert_eq!(repair.reason, TailReason::CorruptFinalFrame);
    assert_eq!(repair.offset, last_start as u64);
    assert!(repair.discarded_bytes <= (torn_end - last_start) as u64);
    assert_eq!(writer.last_sequence(), ENTRIES - 1);
    writer.close().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), bytes[..last_start]);
}

#[test]
fn a_zeroed_frame_with_valid_frames_after_it_is_mid_log_corruption() {
    let (_dir, path, mut bytes, offsets) = fixture();
    let (start, end) = (offsets[1] as usize, offsets[2] as usize);
    bytes[start..end].fill(0);
    bytes.resize(bytes.len() + 8192, 0);
    std::fs::write(&path, &bytes).unwrap();
    let error = reopen(&path).unwrap_err();
    assert_eq!(error.code(), "MID_LOG_CORRUPTION", "{error}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn damage_before_valid_frames_is_refused_and_leaves_the_file_untouched() {
    let (_dir, path, bytes, offsets) = fixture();
    // Every byte of every frame but the last: header, extent and payload.
    let end_of_middle = *offsets.last().unwrap() as usize;
    for byte in offsets[0] as usize..end_of_middle {
        let mut damaged = bytes.clone();
        damaged[byte] ^= 0x01;
        std::fs::write(&path, &damaged).unwrap();
        let err = reopen(&path).unwrap_err();
        assert_eq!(err.code(), "MID_LOG_CORRUPTION", "byte {byte}: {err}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            damaged,
            "file changed after byte {byte}"
        );
        assert_eq!(read_all(&path).unwrap_err().code(), "MID_LOG_CORRUPTION");
    }
}

#[test]
fn a_zeroed_frame_followed_by_data_is_refused() {
    let (_dir, path, mut bytes, offsets) = fixture();
    bytes[offsets[1] as usize..offsets[2] as usize].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(reopen(&path).unwrap_err().code(), "MID_LOG_CORRUPTION");
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn a_missing_middle_frame_is_a_sequence_gap() {
    let (_dir, path, bytes, offsets) = fixture();
    let mut spliced = bytes[..offsets[1] as usize].to_vec();
    spliced.extend_from_slice(&bytes[offsets[2] as usize..]);
    std::fs::write(&path, &spliced).unwrap();
    assert_eq!(reopen(&path).unwrap_err().code(), "SEQUENCE_GAP");
    assert_eq!(std::fs::read(&path).unwrap(), spliced);
}

#[test]
fn a_repeated_frame_is_a_non_monotonic_sequence() {
    let (_dir, path, bytes, offsets) = fixture();
    let mut doubled = bytes[..offsets[2] as usize].to_vec();
    doubled.extend_from_slice(&bytes[offsets[1] as usize..]);
    std::fs::write(&path, &doubled).unwrap();
    assert_eq!(reopen(&path).unwrap_err().code(), "NON_MONOTONIC_SEQUENCE");
    assert_eq!(
        read_all(&path).unwrap_err().code(),
        "NON_MONOTONIC_SEQUENCE"
    );
}

#[test]
fn header_damage_is_typed_and_untouched() {
    let (_dir, path, bytes, _) = fixture();
    let mut damaged = bytes.clone();
    damaged[10] ^= 1;
    std::fs::write(&path, &damaged).unwrap();
    assert_eq!(reopen(&path).unwrap_err().code(), "CHECKSUM_MISMATCH");
    assert_eq!(std::fs::read(&path).unwrap(), damaged);

    std::fs::write(&path, b"SQLite format 3\0 and the rest of some database").unwrap();
    assert_eq!(reopen(&path).unwrap_err().code(), "MAGIC_MISMATCH");
    std::fs::write(&path, b"").unwrap();
    assert_eq!(reopen(&path).unwrap_err().code(), "TRUNCATED_HEADER");
    assert_eq!(std::fs::read(&path).unwrap(), b"");
}

#[test]
fn the_bytes_a_repair_cuts_are_kept_beside_the_log() {
    let (_dir, path, bytes, offsets) = fixture();
    let last = *offsets.last().unwrap();
    // A torn final frame followed by junk, as a crash mid-write can leave.
    let mut torn = bytes[..bytes.len() - 3].to_vec();
    torn.extend_from_slice(b"\x01\x02junk");
    std::fs::write(&path, &torn).unwrap();
    let writer = reopen(&path).unwrap();
    let repair = writer.tail_repair().expect("a repair");
    assert_eq!(repair.offset, last);
    assert_eq!(repair.saved_bytes, repair.discarded_bytes);
    let kept = std::fs::read(torn_path(&path, last)).unwrap();
    assert_eq!(kept, &torn[usize::try_from(last).unwrap()..]);
    // The log itself is cut to its last whole frame.
    assert_eq!(writer.committed_offset(), last);
}

#[test]
fn prune_keeps_only_the_newest_kept_torn_tails() {
    let dir = tempfile::tempdir().unwrap();
    let store = selene_persist_engine::store::Store::open(&fs(), dir.path(), WalOptions::default())
        .unwrap();
    append_via(store.committer(), b"x").unwrap();
    store
        .checkpoint(vec![("s".into(), b"s".to_vec(), false)])
        .unwrap();
    close_via(store.committer()).unwrap();
    for (offset, age) in [(100, 30), (200, 20), (300, 10)] {
        let file = dir.path().join(format!("wal.log.torn.{offset}"));
        std::fs::write(&file, b"torn").unwrap();
        let modified = std::time::SystemTime::now() - std::time::Duration::from_secs(age);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(modified)
            .unwrap();
    }
    let outcome = selene_persist_engine::retention::prune(
        fs().as_ref(),
        dir.path(),
        &selene_persist_engine::retention::RetentionPolicy {
            keep_archives: 2,
            ..Default::default()
        },
        std::time::SystemTime::now(),
    )
    .unwrap();
    assert_eq!(
        outcome.deleted_torn_files,
        vec!["wal.log.torn.100".to_owned()]
    );
    assert!(dir.path().join("wal.log.torn.300").exists());
}

#[test]
fn prune_before_the_first_checkpoint_deletes_old_torn_tails_and_stale_temp_files() {
    use selene_persist_engine::retention::RetentionPolicy;
    use selene_persist_engine::store::Store;
    let dir = tempfile::tempdir().unwrap();
    let path = wal_in(&dir);
    // Three crashes in the middle of a write, each cut as a torn tail by the next open.
    let mut torn = Vec::new();
    for round in 0..3u64 {
        let store = Store::open(&fs(), dir.path(), WalOptions::default()).unwrap();
        if let Some(repair) = store.committer().tail_repair() {
            torn.push(repair.offset);
        }
        for n in 0..2 {
            append_via(store.committer(), format!("{round}.{n}").as_bytes()).unwrap();
        }
        close_via(store.committer()).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"\x01\x02junk");
        std::fs::write(&path, &bytes).unwrap();
    }
    let store = Store::open(&fs(), dir.path(), WalOptions::default()).unwrap();
    torn.push(store.committer().tail_repair().unwrap().offset);
    assert_eq!(torn.len(), 3, "{torn:?}");
    // Oldest first, a second apart.
    for (age, offset) in torn.iter().rev().enumerate() {
        let modified = std::time::SystemTime::now() - std::time::Duration::from_secs(age as u64);
        std::fs::File::options()
            .write(true)
            .open(torn_path(&path, *offset))
            .unwrap()
            .set_modified(modified)
            .unwrap();
    }
    let stale = dir.path().join("wal.log.123.456.tmp");
    std::fs::write(&stale, b"stale").unwrap();
    assert!(!dir.path().join("MANIFEST").exists(), "no checkpoint yet");
    let outcome = store
        .prune(&RetentionPolicy {
            keep_archives: 1,
            ..RetentionPolicy::default()
        })
        .unwrap();
    let name = |offset: &u64| format!("wal.log.torn.{offset}");
    let mut deleted = outcome.deleted_torn_files.clone();
    deleted.sort();
    let mut expected: Vec<String> = torn[..2].iter().map(name).collect();
    expected.sort();
    assert_eq!(deleted, expected);
    assert_eq!(outcome.deleted_temp_files, ["wal.log.123.456.tmp"]);
    assert!(!stale.exists());
    assert!(torn_path(&path, torn[2]).exists());
    for offset in &torn[..2] {
        assert!(!torn_path(&path, *offset).exists());
    }
    assert_eq!(store.committer().state().last_sequence, 6);
    close_via(store.committer()).unwrap();
}
