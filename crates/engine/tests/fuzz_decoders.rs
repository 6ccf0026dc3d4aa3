//! Fuzzing on the stable toolchain: arbitrary bytes, and mutations of the committed seed corpus
//! (`tests/corpus/`), fed to every decoder and to the open-time scan. Each must return a value
//! or a typed error: never panic, allocate past a cap, or hang. `PROPTEST_CASES` sets the
//! budget (256 per target by default).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use proptest::prelude::*;
use selene_persist_engine::Entry;
use selene_persist_engine::batch_frame::{decode_batch, salvage_batch};
use selene_persist_engine::file_header::{FILE_HEADER_LEN, FileHeader};
use selene_persist_engine::frame::{FRAME_HEADER_LEN, decode_extent, decode_header};
use selene_persist_engine::manifest::Manifest;
use selene_persist_engine::snapshot::SnapshotReader;
use selene_persist_engine::{WalOptions, WalReader, WalWriter};

fn corpus(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A valid file mutated: bytes flipped, a range cut or repeated, garbage appended.
fn mutated(seed: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = seed.len().max(1);
    (
        proptest::collection::vec((0..len, any::<u8>()), 0..8),
        proptest::option::of((0..len, 0..len)),
        proptest::collection::vec(any::<u8>(), 0..64),
        any::<bool>(),
    )
        .prop_map(move |(flips, cut, tail, repeat)| {
            let mut bytes = seed.clone();
            for (at, mask) in flips {
                if let Some(b) = bytes.get_mut(at) {
                    *b ^= mask;
                }
            }
            if let Some((a, b)) = cut {
                let (a, b) = (a.min(b).min(bytes.len()), a.max(b).min(bytes.len()));
                if repeat {
                    let copy = bytes[a..b].to_vec();
                    bytes.splice(b..b, copy);
                } else {
                    bytes.drain(a..b);
                }
            }
            bytes.extend(tail);
            bytes
        })
}

fn bytes_or_mutant(seed: &str) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        mutated(corpus(seed))
    ]
}

/// Open a WAL for writing and read it back; both must end in a value or a typed error.
fn scan(dir: &Path, bytes: &[u8]) {
    let path = dir.join("wal.log");
    std::fs::write(&path, bytes).unwrap();
    let read = (|| {
        let mut reader = WalReader::open(&fs(), &path)?;
        while !reader
            .next_batch::<Vec<Entry>>(0, 64, 1 << 20, true)?
            .is_empty()
        {}
        Ok::<_, selene_persist_engine::Error>(())
    })();
    let before = std::fs::read(&path).unwrap();
    match WalWriter::open(&fs(), &path, WalOptions::default()) {
        Ok(writer) => {
            // A repair only ever cuts a tail: what is left is a prefix of what was there.
            let after = std::fs::read(&path).unwrap();
            assert!(before.starts_with(&after));
            assert_eq!(after.len() as u64, writer.committed_offset());
        }
        Err(e) => {
            assert!(!e.code().is_empty());
            assert_eq!(
                std::fs::read(&path).unwrap(),
                before,
                "a refused open changed the file ({e})"
            );
        }
    }
    drop(read);
}

proptest! {
    #[test]
    fn file_headers(bytes in bytes_or_mutant("wal.log")) {
        let _ = FileHeader::decode(&bytes);
    }

    #[test]
    fn frame_headers_and_extents(bytes in bytes_or_mutant("wal-v3.log")) {
        for window in bytes.windows(FRAME_HEADER_LEN).take(64) {
            if let Ok(header) = decode_header(window.try_into().unwrap(), 0) {
                let extent: Vec<u8> = bytes.iter().copied().take(header.extent_len()).collect();
                if extent.len() == header.extent_len() {
                    let _ = decode_extent(&header, &extent);
                }
            }
        }
    }

    #[test]
    fn batch_frames(bytes in bytes_or_mutant("wal.log")) {
        for at in [0, FILE_HEADER_LEN] {
            if let Some(rest) = bytes.get(at..) {
                let _ = decode_batch(rest, at as u64);
                let _ = salvage_batch(rest, at as u64);
            }
        }
    }

    #[test]
    fn the_open_time_scan_of_a_v3_wal(bytes in bytes_or_mutant("wal-v3.log")) {
        let dir = tempfile::tempdir().unwrap();
        scan(dir.path(), &bytes);
    }

    #[test]
    fn manifests(bytes in bytes_or_mutant("MANIFEST")) {
        let _ = Manifest::decode(&bytes, Path::new("MANIFEST"));
    }

    #[test]
    fn snapshots(bytes in bytes_or_mutant("snapshot.12.snap")) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot.12.snap");
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(reader) = SnapshotReader::open(&*fs(), &path) {
            let _ = reader.verify();
            for section in reader.sections().to_vec() {
                let _ = reader.read(&section.name);
            }
        }
    }

    #[test]
    fn the_open_time_scan(bytes in bytes_or_mutant("wal.log")) {
        let dir = tempfile::tempdir().unwrap();
        scan(dir.path(), &bytes);
    }
}

/// Regenerates the seed corpus; run with `--ignored` after a format change.
#[test]
#[ignore = "writes tests/corpus"]
fn regenerate_corpus() {
    let (dir, store) = fresh_store();
    let (tx, rx) = std::sync::mpsc::channel();
    let batch = vec![
        entry(b"first"),
        selene_persist_engine::NewEntry {
            principal: Some(b"alice".to_vec()),
            ..entry(&[7; 5000])
        },
        selene_persist_engine::NewEntry {
            origin: selene_persist_engine::Origin::Replicated {
                source_node_id: 3,
                source_seq: 9,
            },
            ..entry(b"replicated")
        },
    ];
    store
        .committer()
        .append(batch, Box::new(move |r| tx.send(r).unwrap()));
    rx.recv().unwrap().unwrap();
    store
        .checkpoint(vec![
            ("a".into(), vec![1; 3000], true),
            ("b".into(), b"raw".to_vec(), false),
        ])
        .unwrap();
    for n in 0..8 {
        let (tx, rx) = std::sync::mpsc::channel();
        store.committer().append(
            vec![entry(format!("after {n}").as_bytes())],
            Box::new(move |r| tx.send(r).unwrap()),
        );
        rx.recv().unwrap().unwrap();
    }
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    for (from, to) in [
        ("wal.4.archive", "wal.log"),
        ("snapshot.4.snap", "snapshot.12.snap"),
        ("MANIFEST", "MANIFEST"),
    ] {
        std::fs::copy(dir.path().join(from), out.join(to)).unwrap();
    }
}
