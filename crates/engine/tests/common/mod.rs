//! Helpers shared by the integration tests.
#![allow(dead_code, missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use selene_persist_engine::io::{StdFs, Vfs};
use selene_persist_engine::store::Store;
use selene_persist_engine::testing::fault::{Fault, FaultFs};
use selene_persist_engine::{
    Entry, NewEntry, Result, SyncPolicy, WalOptions, WalReader, WalWriter,
};

pub fn fs() -> Arc<dyn Vfs> {
    StdFs::shared()
}

/// The path of the WAL `wal.log` in `dir`.
pub fn wal_in(dir: impl AsRef<Path>) -> PathBuf {
    dir.as_ref().join("wal.log")
}

/// The payload of event `n` in the store tests' workload.
pub fn event(n: impl std::fmt::Display) -> Vec<u8> {
    format!("event {n}").into_bytes()
}

/// Close a store's committer, whatever the outcome (a test that checks it uses `close_via`).
pub fn close_store(store: Store) {
    drop(close_via(store.committer()));
}

/// A fresh directory and the path of a WAL in it: the set-up most tests open with.
pub fn fresh_wal() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = wal_in(&dir);
    (dir, path)
}

/// A fresh directory with a store open in it, with the default options.
pub fn fresh_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&fs(), dir.path(), WalOptions::default()).unwrap();
    (dir, store)
}

pub fn entry(payload: &[u8]) -> NewEntry {
    NewEntry {
        payload: payload.to_vec().into(),
        ..NewEntry::default()
    }
}

/// The payload of the entry with sequence `seq` in the standard test workload.
pub fn payload_for(seq: u64) -> Vec<u8> {
    format!("entry-{seq:05}-{}", "x".repeat((seq % 17) as usize)).into_bytes()
}

/// `len` incompressible bytes (xorshift from `seed`).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// Writer options with `sync` and a one-page preallocation chunk, so tests cross chunk
/// boundaries often and crash states stay small.
pub fn options(sync: SyncPolicy) -> WalOptions {
    WalOptions {
        sync,
        preallocate: 4096,
        ..WalOptions::default()
    }
}

/// Open a writer, append `count` standard entries one commit each, close it.
pub fn write_entries(path: &Path, count: u64) {
    let mut writer = WalWriter::open(&fs(), path, WalOptions::default()).unwrap();
    for _ in 0..count {
        let next = writer.last_sequence() + 1;
        writer.append(&[entry(&payload_for(next))]).unwrap();
    }
    writer.close().unwrap();
}

/// Every entry of the file, or the first error.
pub fn read_all(path: &Path) -> Result<Vec<Entry>> {
    let mut reader = WalReader::open(&fs(), path)?;
    let mut all = Vec::new();
    loop {
        let batch = reader.next_batch::<Vec<Entry>>(0, 1000, usize::MAX, true)?;
        if batch.is_empty() {
            return Ok(all);
        }
        all.extend(batch);
    }
}

/// Offsets at which each frame starts, from a clean file.
pub fn frame_offsets(path: &Path) -> Vec<u64> {
    let mut reader = WalReader::open(&fs(), path).unwrap();
    let mut offsets = Vec::new();
    while let Some(frame) = reader.next_frame(0).unwrap() {
        offsets.push(frame.offset);
    }
    offsets
}

pub fn assert_standard_entries(entries: &[Entry], first: u64, last: u64) {
    let sequences: Vec<u64> = entries.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, (first..=last).collect::<Vec<_>>());
    for e in entries {
        assert_eq!(
            e.payload,
            payload_for(e.sequence),
            "payload of {}",
            e.sequence
        );
    }
}

/// Append one entry through a committer and wait for its sequence.
pub fn append_via(committer: &selene_persist_engine::Committer, payload: &[u8]) -> Result<u64> {
    let (tx, rx) = std::sync::mpsc::channel();
    committer.append(vec![entry(payload)], Box::new(move |r| drop(tx.send(r))));
    rx.recv().unwrap().map(|range| *range.start())
}

/// Close a committer (its writer's lock is released when this returns).
pub fn close_via(committer: &selene_persist_engine::Committer) -> Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    committer.close(Box::new(move |r| drop(tx.send(r))));
    rx.recv().unwrap()
}

/// Reopen the WAL at `path` for writing (repairing a torn tail), then check it holds standard
/// entries 1..n exactly; returns n.
pub fn recover_standard_wal(path: &Path) -> std::result::Result<u64, String> {
    WalWriter::open(&fs(), path, WalOptions::default()).map_err(|e| format!("reopen: {e}"))?;
    let entries = read_all(path).map_err(|e| format!("read: {e}"))?;
    for (i, e) in entries.iter().enumerate() {
        if e.sequence != i as u64 + 1 || e.payload != payload_for(e.sequence) {
            return Err(format!(
                "entry {i} is sequence {} with an unexpected payload",
                e.sequence
            ));
        }
    }
    Ok(entries.len() as u64)
}

/// Recover the store in `dir` whose state is a count of events (`event 1`, `event 2`, …): the
/// snapshot's `count`, then every replayed entry, each checked to be the next event; how many.
pub fn recover_counted_events(dir: &Path, options: WalOptions) -> std::result::Result<u64, String> {
    let store = Store::open(&fs(), dir, options).map_err(|e| format!("open: {e}"))?;
    let mut count = match store.snapshot() {
        Some(snapshot) => String::from_utf8(snapshot.read("count").map_err(|e| e.to_string())?)
            .unwrap()
            .parse::<u64>()
            .unwrap(),
        None => 0,
    };
    let mut replay = store.replay(0).map_err(|e| format!("replay: {e}"))?;
    loop {
        let batch = replay
            .next_batch::<Vec<Entry>>(100, usize::MAX)
            .map_err(|e| format!("replay: {e}"))?;
        if batch.is_empty() {
            break;
        }
        for entry in batch {
            count += 1;
            if entry.payload != event(count) {
                return Err(format!(
                    "replayed {:?} where event {count} belongs",
                    String::from_utf8_lossy(&entry.payload)
                ));
            }
        }
    }
    close_via(store.committer()).map_err(|e| format!("close: {e}"))?;
    Ok(count)
}

/// A fault-injecting fs whose operation `op` (counted from 0) fails with `fault`, and no other.
pub fn failing_at(
    op: usize,
    fault: selene_persist_engine::testing::fault::Fault,
) -> selene_persist_engine::testing::fault::FaultFs {
    let faults = selene_persist_engine::testing::fault::FaultFs::new();
    faults.fail_ahead(op, fault);
    faults
}

/// The faults every sweep injects.
pub const FAULTS: [Fault; 3] = [Fault::Eio, Fault::NoSpace, Fault::ShortWrite];

/// Call `run` once per (operation, fault) pair of the workload `probe` recorded: with an fs that
/// fails that operation with that fault, a fresh directory, the fault, and a context naming
/// both. Returns how many runs there were.
pub fn each_single_fault(
    probe: &FaultFs,
    mut run: impl FnMut(&FaultFs, &Path, Fault, &str),
) -> usize {
    let mut runs = 0;
    for op in 0..probe.op_count() {
        for fault in FAULTS {
            let dir = tempfile::tempdir().unwrap();
            let context = format!("{fault:?} at operation {op} ({:?})", probe.log().get(op));
            run(&failing_at(op, fault), dir.path(), fault, &context);
            runs += 1;
        }
    }
    runs
}

/// Check that each directory created in the first `until` operations of `log` was made durable
/// within them: its parent fsynced after its creation.
pub fn directories_made_durable(
    log: &[selene_persist_engine::testing::fault::Op],
    until: usize,
) -> std::result::Result<(), String> {
    use selene_persist_engine::testing::fault::Op;
    let log = &log[..until.min(log.len())];
    for (i, op) in log.iter().enumerate() {
        let Op::CreateDir(dir) = op else { continue };
        let parent = dir.parent().unwrap_or(Path::new("."));
        if !log[i + 1..]
            .iter()
            .any(|later| matches!(later, Op::SyncDir(d) if d == parent))
        {
            return Err(format!(
                "{} was created, but {} was not fsynced after it",
                dir.display(),
                parent.display()
            ));
        }
    }
    Ok(())
}
