//! Files that are not what their names say: FIFOs, symlinks and hard links planted in a store
//! directory get a typed error and never hang, and nothing is written through them (issue 12,
//! items 6 and 7). One driver; each case is a planted file and the code expected.

mod common;

use std::path::Path;
use std::process::Command;

use common::fs;
use selene_persist_engine::inspect::{Depth, Progress, Severity, examine};
use selene_persist_engine::store::Store;
use selene_persist_engine::{Error, WalOptions, WalReader, WalWriter};

/// What a case does to the directory after a store has been made and closed in it.
#[derive(Clone, Copy)]
enum Plant {
    Fifo(&'static str),
    SymlinkToVictim(&'static str),
    HardLinkToVictim(&'static str),
}

/// What is opened afterwards.
#[derive(Clone, Copy)]
enum Open {
    Writer,
    Reader,
    Store,
    Examine,
}

const VICTIM: &[u8] = b"a file outside the store that must not change";

/// A store with one checkpoint, closed; returns the live snapshot's file name.
fn make_store(dir: &Path) -> String {
    let store = Store::open(&fs(), dir, WalOptions::default()).unwrap();
    common::append_via(store.committer(), b"one").unwrap();
    let rotation = store
        .checkpoint(vec![("state".into(), b"s".to_vec(), false)])
        .unwrap();
    common::append_via(store.committer(), b"two").unwrap();
    common::close_via(store.committer()).unwrap();
    rotation
        .snapshot
        .path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Plant, open, and return the error code (or "ok"), checking the victim is unchanged.
fn run(plant: Plant, open: Open) -> String {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let snapshot = make_store(&store_dir);
    let victim = dir.path().join("victim");
    std::fs::write(&victim, VICTIM).unwrap();
    let name = |n: &'static str| {
        if n == "SNAPSHOT" {
            snapshot.clone()
        } else {
            n.to_owned()
        }
    };
    match plant {
        Plant::Fifo(n) => {
            let target = store_dir.join(name(n));
            drop(std::fs::remove_file(&target));
            let made = Command::new("mkfifo").arg(&target).status().unwrap();
            assert!(made.success());
        }
        Plant::SymlinkToVictim(n) => {
            let target = store_dir.join(name(n));
            drop(std::fs::remove_file(&target));
            std::os::unix::fs::symlink(&victim, &target).unwrap();
        }
        Plant::HardLinkToVictim(n) => {
            let target = store_dir.join(name(n));
            drop(std::fs::remove_file(&target));
            std::fs::hard_link(&victim, &target).unwrap();
        }
    }
    let wal = store_dir.join("wal.log");
    let outcome: Result<(), Error> = match open {
        Open::Writer => WalWriter::open(&fs(), &wal, WalOptions::default()).and_then(|mut w| {
            w.append(&[common::entry(b"three")])?;
            w.close()
        }),
        Open::Reader => WalReader::open(&fs(), &wal).and_then(|mut r| r.next_frame(0).map(drop)),
        Open::Store => Store::open(&fs(), &store_dir, WalOptions::default()).and_then(|store| {
            common::append_via(store.committer(), b"three")?;
            common::close_via(store.committer())
        }),
        Open::Examine => {
            let report = examine(&fs(), &store_dir, Depth::Verify, &Progress::default()).unwrap();
            match report
                .problems
                .iter()
                .find(|p| p.severity == Severity::Error)
            {
                Some(problem) => Err(Error::Internal(problem.code.clone())),
                None => Ok(()),
            }
        }
    };
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        VICTIM,
        "the victim changed"
    );
    match outcome {
        Ok(()) => "ok".into(),
        Err(Error::Internal(code)) => code,
        Err(e) => e.code().into(),
    }
}

#[test]
fn fifos_are_refused_and_never_block() {
    assert_eq!(run(Plant::Fifo("wal.log"), Open::Reader), "NOT_A_FILE");
    assert_eq!(run(Plant::Fifo("wal.log"), Open::Writer), "NOT_A_FILE");
    assert_eq!(run(Plant::Fifo("wal.log"), Open::Store), "NOT_A_FILE");
    assert_eq!(run(Plant::Fifo("MANIFEST"), Open::Store), "NOT_A_FILE");
    assert_eq!(run(Plant::Fifo("SNAPSHOT"), Open::Store), "NOT_A_FILE");
    assert_eq!(run(Plant::Fifo("MANIFEST.lock"), Open::Store), "NOT_A_FILE");
    assert_eq!(run(Plant::Fifo("wal.log"), Open::Examine), "NOT_A_FILE");
    assert_eq!(run(Plant::Fifo("MANIFEST"), Open::Examine), "NOT_A_FILE");
    assert_eq!(run(Plant::Fifo("SNAPSHOT"), Open::Examine), "NOT_A_FILE");
    // The seal is a hint: a FIFO there is ignored (a full scan instead), never read.
    assert_eq!(run(Plant::Fifo("wal.log.seal"), Open::Reader), "ok");
    assert_eq!(run(Plant::Fifo("wal.log.seal"), Open::Store), "ok");
}

#[test]
fn nothing_is_written_through_a_symlink() {
    assert_eq!(
        run(Plant::SymlinkToVictim("wal.log"), Open::Writer),
        "UNSAFE_LINK"
    );
    assert_eq!(
        run(Plant::SymlinkToVictim("wal.log"), Open::Store),
        "UNSAFE_LINK"
    );
    assert_eq!(
        run(Plant::SymlinkToVictim("MANIFEST.lock"), Open::Store),
        "UNSAFE_LINK"
    );
    // The seal is best effort: the writer goes on without one and leaves the victim alone.
    assert_eq!(
        run(Plant::SymlinkToVictim("wal.log.seal"), Open::Writer),
        "ok"
    );
    assert_eq!(
        run(Plant::SymlinkToVictim("wal.log.seal"), Open::Store),
        "ok"
    );
}

#[test]
fn a_sidecar_with_a_second_hard_link_is_not_rewritten() {
    assert_eq!(
        run(Plant::HardLinkToVictim("wal.log.seal"), Open::Writer),
        "ok"
    );
    assert_eq!(
        run(Plant::HardLinkToVictim("MANIFEST.lock"), Open::Store),
        "UNSAFE_LINK"
    );
}

#[test]
fn a_symlinked_lock_creates_nothing_at_its_target() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    std::fs::create_dir(&store_dir).unwrap();
    let target = dir.path().join("created-by-the-engine");
    std::os::unix::fs::symlink(&target, store_dir.join("MANIFEST.lock")).unwrap();
    let error = Store::open(&fs(), &store_dir, WalOptions::default()).unwrap_err();
    assert_eq!(error.code(), "UNSAFE_LINK");
    assert!(!target.exists());
}

/// A batch frame head whose checksum holds but whose numbers are hostile, after two valid
/// entries: `count` records of `record_len` bytes each, claimed.
fn hostile_batch_after_two_entries(
    count: u16,
    record_len: u64,
) -> (tempfile::TempDir, std::path::PathBuf) {
    let (dir, path) = common::fresh_wal();
    common::write_entries(&path, 2);
    let mut head = vec![0u8; 32];
    head[4] = 4;
    head[6..8].copy_from_slice(&count.to_le_bytes());
    head[12..20].copy_from_slice(&3u64.to_le_bytes());
    for _ in 0..count {
        let mut value = record_len << 5;
        while value >= 0x80 {
            head.push(value as u8 | 0x80);
            value >>= 7;
        }
        head.push(value as u8);
    }
    let sum = selene_persist_engine::checksum::checksum32(&head[4..]);
    head[0..4].copy_from_slice(&sum.to_le_bytes());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&head);
    std::fs::write(&path, &bytes).unwrap();
    (dir, path)
}

/// A checksum-valid batch head claiming 65535 records of 256 MiB (16 TiB) is a batch cut short
/// by the end of the file: read past, cut by the writer, and nothing is allocated for what it
/// claims. One claiming records longer than any record can be is refused, never cut.
#[test]
fn hostile_batch_heads_are_a_torn_tail_or_refused_and_allocate_nothing_they_claim() {
    let (_dir, path) = hostile_batch_after_two_entries(u16::MAX, 256 << 20);
    assert_eq!(common::read_all(&path).unwrap().len(), 2);
    let writer = WalWriter::open(&fs(), &path, WalOptions::default()).unwrap();
    assert_eq!(writer.last_sequence(), 2);
    assert!(writer.tail_repair().is_some());
    drop(writer);
    let (_dir, path) = hostile_batch_after_two_entries(3, 1 << 40);
    let before = std::fs::read(&path).unwrap();
    let code = |e: Error| e.code();
    assert_eq!(
        common::read_all(&path).map_err(code).unwrap_err(),
        "UNSUPPORTED_FRAME"
    );
    assert_eq!(
        WalWriter::open(&fs(), &path, WalOptions::default())
            .map_err(code)
            .unwrap_err(),
        "UNSUPPORTED_FRAME"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before, "nothing was cut");
}
