//! Torn tails are cut exactly; damage with valid data behind it is refused untouched.
//!
//! One driver, one line a case (etcd's `repair_test.go` shape): how the tail of a log of five
//! standard entries is damaged, and what survives: the entries kept (cut or clean), or the
//! typed error that refuses the file without touching it.

mod common;

use common::*;
use selene_persist_engine::filename::{seal_path, torn_path};
use selene_persist_engine::{TailReason, WalOptions, WalWriter};

const ENTRIES: u64 = 5;

/// The undamaged log (closed, its seal removed, as after a crash before anything was sealed:
/// the open scans every frame) and where each frame starts.
struct Log {
    bytes: Vec<u8>,
    offsets: Vec<u64>,
}

impl Log {
    fn new() -> Self {
        let (_dir, path) = fresh_wal();
        write_entries(&path, ENTRIES);
        std::fs::remove_file(seal_path(&path)).unwrap();
        Log {
            bytes: std::fs::read(&path).unwrap(),
            offsets: frame_offsets(&path),
        }
    }

    /// Where the last frame starts.
    fn last(&self) -> usize {
        *self.offsets.last().unwrap() as usize
    }

    /// Where the log of the first `entries` entries ends.
    fn end_of(&self, entries: u64) -> usize {
        self.offsets
            .get(entries as usize)
            .map_or(self.bytes.len(), |&o| o as usize)
    }

    /// The log with each byte of `range` in turn xor-ed with `mask`: one file a byte.
    fn flip_each(&self, range: std::ops::Range<usize>, mask: u8) -> Vec<Vec<u8>> {
        range
            .map(|byte| {
                let mut damaged = self.bytes.clone();
                damaged[byte] ^= mask;
                damaged
            })
            .collect()
    }

    /// The log cut at every byte of its last frame: one file a cut.
    fn cut_each_byte_of_last(&self) -> Vec<Vec<u8>> {
        (self.last() + 1..self.bytes.len())
            .map(|cut| self.bytes[..cut].to_vec())
            .collect()
    }

    /// The log with the frame of entry `n + 1` zeroed (`n` = 5: none), then `pad` zeros.
    fn zeroed(&self, n: u64, pad: usize) -> Vec<u8> {
        let mut damaged = self.bytes.clone();
        damaged[self.end_of(n)..self.end_of(n + 1)].fill(0);
        damaged.resize(damaged.len() + pad, 0);
        damaged
    }

    /// The log's first `cut` bytes, then `tail`, then zeros up to `size` bytes.
    fn cut_then(&self, cut: usize, tail: &[u8], size: usize) -> Vec<u8> {
        let mut damaged = [&self.bytes[..cut], tail].concat();
        damaged.resize(size.max(damaged.len()), 0);
        damaged
    }
}

/// What survives a damaged tail.
#[derive(Debug)]
enum Survives {
    /// The open repairs nothing: the log ends after this many entries, and close cuts any zeros after them.
    Clean(u64),
    /// The open cuts the tail after this many entries, for this reason (`None`: either), keeping the cut bytes beside the log.
    Cut(Option<TailReason>, u64),
    /// The open and a reader refuse the file with this code and leave it as it was.
    Refused(&'static str),
}
use Survives::{Clean, Cut, Refused};

/// How a case damages the log: one file, or one a byte for a sweep.
type Damage = fn(&Log) -> Vec<Vec<u8>>;

#[rustfmt::skip]
const CASES: &[(&str, Damage, Survives)] = &[
    ("untouched", |l| vec![l.bytes.clone()], Clean(ENTRIES)),
    ("the last frame cut at every byte", |l| l.cut_each_byte_of_last(), Cut(Some(TailReason::ShortFrame), ENTRIES - 1)),
    ("a bit flipped anywhere in the last frame but its record count", |l| [l.flip_each(l.last()..l.last() + 6, 0x40), l.flip_each(l.last() + 8..l.bytes.len(), 0x40)].concat(), Cut(Some(TailReason::CorruptFinalFrame), ENTRIES - 1)),
    // A larger count claims a length table past the end of the file: as torn as a short batch.
    ("a bit flipped in the last batch's record count", |l| l.flip_each(l.last() + 6..l.last() + 8, 0x40), Cut(None, ENTRIES - 1)),
    ("zeros after the log, 1 byte to 5 MiB", |l| [1, 39, 40, 128, 70_000, 5 << 20].map(|pad| l.zeroed(ENTRIES, pad)).to_vec(), Clean(ENTRIES)),
    ("the last frame zeroed", |l| vec![l.zeroed(ENTRIES - 1, 0)], Clean(ENTRIES - 1)),
    ("the last frame half written into 1 MiB preallocated", |l| vec![l.cut_then((l.last() + l.bytes.len()) / 2, &[], 1 << 20)], Cut(Some(TailReason::CorruptFinalFrame), ENTRIES - 1)),
    ("junk after a torn last frame", |l| vec![l.cut_then(l.bytes.len() - 3, b"\x01\x02junk", 0)], Cut(Some(TailReason::CorruptFinalFrame), ENTRIES - 1)),
    ("a bit flipped in any byte before the last frame", |l| l.flip_each(l.end_of(0)..l.last(), 0x01), Refused("MID_LOG_CORRUPTION")),
    ("a frame zeroed, valid frames after it", |l| vec![l.zeroed(1, 0)], Refused("MID_LOG_CORRUPTION")),
    ("a frame zeroed, valid frames and zeros after it", |l| vec![l.zeroed(1, 8192)], Refused("MID_LOG_CORRUPTION")),
    ("a middle frame missing", |l| vec![l.cut_then(l.end_of(1), &l.bytes[l.end_of(2)..], 0)], Refused("SEQUENCE_GAP")),
    ("a frame repeated", |l| vec![l.cut_then(l.end_of(2), &l.bytes[l.end_of(1)..], 0)], Refused("NON_MONOTONIC_SEQUENCE")),
    ("a bit flipped in the file header", |l| l.flip_each(10..11, 1), Refused("CHECKSUM_MISMATCH")),
    ("another format's file", |_| vec![b"SQLite format 3\0 and the rest of some database".to_vec()], Refused("MAGIC_MISMATCH")),
    ("an empty file", |_| vec![Vec::new()], Refused("TRUNCATED_HEADER")),
];

#[test]
fn every_damaged_tail_is_cut_or_refused_as_its_case_says() {
    let log = Log::new();
    for (name, damage, survives) in CASES {
        for (variant, damaged) in damage(&log).iter().enumerate() {
            let (_dir, path) = fresh_wal();
            std::fs::write(&path, damaged).unwrap();
            check(
                &log,
                &path,
                damaged,
                survives,
                &format!("{name}, file {variant}"),
            );
        }
    }
}

/// Open the damaged file at `path` with a reader, then a writer, and check what survives.
fn check(log: &Log, path: &std::path::Path, damaged: &[u8], survives: &Survives, at: &str) {
    let untouched = || {
        assert!(
            std::fs::read(path).unwrap() == damaged,
            "{at}: the file changed"
        )
    };
    // A reader cuts nothing: it stops before a torn tail, or refuses as the writer does.
    match (survives, read_all(path)) {
        (Refused(code), Err(error)) => assert_eq!(error.code(), *code, "{at}: {error}"),
        (Clean(entries) | Cut(_, entries), Ok(read)) => {
            assert_eq!(read.len() as u64, *entries, "{at}: the reader's entries");
            assert_standard_entries(&read, 1, *entries);
        }
        (_, read) => panic!("{at}: the reader read {:?}", read.map(|r| r.len())),
    }
    untouched();
    let writer = match (
        survives,
        WalWriter::open(&fs(), path, WalOptions::default()),
    ) {
        (Refused(code), Err(error)) => {
            assert_eq!(error.code(), *code, "{at}: {error}");
            return untouched();
        }
        (Refused(_), Ok(writer)) => panic!("{at}: opened, repair {:?}", writer.tail_repair()),
        (_, opened) => opened.unwrap_or_else(|e| panic!("{at}: {e}")),
    };
    let (Clean(entries) | Cut(_, entries)) = survives else {
        unreachable!()
    };
    let end = log.end_of(*entries);
    assert_eq!(writer.last_sequence(), *entries, "{at}");
    assert_eq!(writer.committed_offset(), end as u64, "{at}");
    match survives {
        Cut(reason, _) => {
            let repair = writer
                .tail_repair()
                .unwrap_or_else(|| panic!("{at}: no repair"));
            assert_eq!(
                (reason.unwrap_or(repair.reason), repair.offset),
                (repair.reason, end as u64),
                "{at}"
            );
            // Counted to the torn write's last non-zero byte: trailing zeros are free space.
            let written = damaged[end..]
                .iter()
                .rposition(|&b| b != 0)
                .map_or(0, |i| i + 1);
            assert_eq!(repair.discarded_bytes, written as u64, "{at}");
            assert_eq!(repair.saved_bytes, repair.discarded_bytes, "{at}");
            let kept = std::fs::read(torn_path(path, end as u64)).unwrap();
            assert!(
                kept == damaged[end..end + written],
                "{at}: the bytes kept beside the log"
            );
            // The repair itself cut the log: no close needed.
            drop(writer);
        }
        _ => {
            assert_eq!(writer.tail_repair(), None, "{at}");
            // Close cuts the zeros after the last entry.
            writer.close().unwrap();
        }
    }
    assert!(
        std::fs::read(path).unwrap() == log.bytes[..end],
        "{at}: not cut to the last whole frame"
    );
    assert_standard_entries(&read_all(path).unwrap(), 1, *entries);
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
    let (dir, path) = fresh_wal();
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
