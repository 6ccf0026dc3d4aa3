//! A batched read (frames verified in the bytes already read, borrowed) returns exactly what
//! reading frame by frame returns: the same entries, the same error, the same torn tail, on
//! clean logs and damaged ones, whatever the limits and wherever the frames cross a read.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use common::fs;
use proptest::prelude::*;
use selene_persist_engine::{
    Compression, Entry, Hlc, NewEntry, Origin, Result, WalOptions, WalReader, WalWriter,
};

/// One entry to write: payload length, principal, replicated, a watermark after it, and
/// whether it is committed with the entries before it (one batch frame) or starts a group.
type Spec = (usize, bool, bool, bool, bool);

/// What a read saw: its entries, then how it ended (the error's code, if one), and the torn
/// tail it stopped at.
type Seen = (Vec<Entry>, Option<&'static str>, Option<u64>);

fn write(path: &Path, specs: &[Spec]) {
    let options = WalOptions {
        compression: Compression {
            threshold: Some(2048),
            level: 1,
        },
        ..WalOptions::default()
    };
    let mut writer = WalWriter::open(&fs(), path, options).unwrap();
    let mut group = Vec::new();
    for (i, &(len, principal, replicated, watermark, joins)) in specs.iter().enumerate() {
        if !joins && !group.is_empty() {
            writer.append(&std::mem::take(&mut group)).unwrap();
        }
        // Half of each payload repeats, so big ones compress.
        let payload: Vec<u8> = (0..len)
            .map(|j| if j % 2 == 0 { (i * 7 + j) as u8 } else { 3 })
            .collect();
        let entry = NewEntry {
            payload: payload.into(),
            principal: principal.then(|| format!("user-{i}").into_bytes()),
            origin: if replicated {
                Origin::Replicated {
                    source_node_id: 9,
                    source_seq: i as u64 + 1,
                }
            } else {
                Origin::Local
            },
            hlc: replicated.then_some(Hlc {
                seconds: 1_000 + i as u64,
                subseconds: 5,
            }),
            producer: None,
        };
        group.push(entry);
        if watermark {
            writer.append(&std::mem::take(&mut group)).unwrap();
            writer.append_watermark().unwrap();
        }
    }
    if !group.is_empty() {
        writer.append(&group).unwrap();
    }
    writer.close().unwrap();
}

fn ended<T>(outcome: Result<T>) -> std::result::Result<T, &'static str> {
    outcome.map_err(|e| e.code())
}

/// Read in batches of at most `max_entries` entries or about `max_bytes`.
fn batched(path: &Path, from: u64, max_entries: usize, max_bytes: usize, marks: bool) -> Seen {
    let mut reader = WalReader::open(&fs(), path).unwrap();
    let mut all = Vec::new();
    loop {
        match ended(reader.next_batch::<Vec<Entry>>(from, max_entries, max_bytes, marks)) {
            Ok(batch) if batch.is_empty() => break,
            Ok(batch) => all.extend(batch),
            Err(code) => return (all, Some(code), None),
        }
    }
    (all, None, reader.torn_tail().map(|t| t.offset))
}

/// Read frame by frame, the path every damaged or partly read frame takes.
fn one_by_one(path: &Path, from: u64, marks: bool) -> Seen {
    let mut reader = WalReader::open(&fs(), path).unwrap();
    let mut all = Vec::new();
    loop {
        match ended(reader.next_frame(from)) {
            Ok(Some(frame)) => match ended(Entry::from_frame(frame.borrowed())) {
                Ok(entry) if entry.watermark && !marks => {}
                Ok(entry) => all.push(entry),
                Err(code) => return (all, Some(code), None),
            },
            Ok(None) => break,
            Err(code) => return (all, Some(code), None),
        }
    }
    (all, None, reader.torn_tail().map(|t| t.offset))
}

/// Damage to the written file: none, a byte flipped, or the file cut short (each at a
/// fraction of its length, in thousandths).
#[derive(Clone, Copy, Debug)]
enum Damage {
    None,
    Flip(u64),
    Cut(u64),
}

fn damage(path: &Path, damage: Damage) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let len = file.metadata().unwrap().len();
    // Past the 24-byte file header: damage there fails the open, for both reads alike.
    let at = |per_mille: u64| 24 + (len - 24) * per_mille / 1000;
    match damage {
        Damage::None => {}
        Damage::Flip(per_mille) => {
            let offset = at(per_mille).min(len - 1);
            let mut byte = [0u8];
            file.read_exact_at(&mut byte, offset).unwrap();
            file.write_all_at(&[byte[0] ^ 0x40], offset).unwrap();
        }
        Damage::Cut(per_mille) => file.set_len(at(per_mille)).unwrap(),
    }
}

fn specs() -> impl Strategy<Value = Vec<Spec>> {
    // Up to 40 KB a payload: a 256 KiB read holds a few, so frames cross reads often; most
    // entries join a group, so batches of many records are split by a read's limits.
    let len = prop_oneof![0..200usize, 0..40_000usize];
    let joins = proptest::bool::weighted(0.7);
    proptest::collection::vec(
        (len, any::<bool>(), any::<bool>(), any::<bool>(), joins),
        1..40,
    )
}

fn damages() -> impl Strategy<Value = Damage> {
    prop_oneof![
        Just(Damage::None),
        (0..1000u64).prop_map(Damage::Flip),
        (0..1000u64).prop_map(Damage::Cut),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_batched_read_sees_what_a_frame_by_frame_read_sees(
        specs in specs(),
        hurt in damages(),
        from in 0..30u64,
        max_entries in 1..12usize,
        max_bytes in prop_oneof![Just(usize::MAX), 1..100_000usize],
        marks in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        write(&path, &specs);
        damage(&path, hurt);
        let expected = one_by_one(&path, from, marks);
        prop_assert_eq!(batched(&path, from, max_entries, max_bytes, marks), expected);
    }
}
