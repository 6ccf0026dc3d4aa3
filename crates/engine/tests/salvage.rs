//! Salvage past damage: one driver, one line per kind of damage. Every frame the damage did not
//! touch is recovered with its sequence and payload; nothing is invented; the new log opens.

mod common;

use common::{entry, fs, read_all, wal_in};
use selene_persist_engine::Entry;
use selene_persist_engine::salvage::{damaged_path, salvage_wal};
use selene_persist_engine::{WalOptions, WalWriter};

/// A small deterministic generator (xorshift), so a failure names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Clone, Copy, Debug)]
enum Damage {
    /// Flip one byte.
    Byte,
    /// Overwrite a run of up to 300 bytes with garbage.
    Run,
    /// Zero an aligned 512-byte sector.
    ZeroSector,
    /// Lose an aligned 4 KiB page (the bytes after it move up).
    LosePage,
}

/// Payload `n`: mixed sizes, some compressible and over the threshold.
fn payload(n: u64) -> Vec<u8> {
    let len = [12, 200, 6000, 900][(n % 4) as usize];
    let mut bytes = format!("payload {n} ").into_bytes();
    bytes.resize(len, b'a' + (n % 26) as u8);
    bytes
}

/// A log of 200 entries; returns its bytes and each frame's (offset, length, sequence).
fn make_log(dir: &tempfile::TempDir) -> (Vec<u8>, Vec<(usize, usize, u64)>) {
    let path = wal_in(dir);
    let mut writer = WalWriter::open(&fs(), &path, WalOptions::default()).unwrap();
    for n in 1..=200 {
        writer.append(&[entry(&payload(n))]).unwrap();
    }
    writer.close().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let offsets = common::frame_offsets(&path);
    let mut frames = Vec::new();
    for (i, &start) in offsets.iter().enumerate() {
        let end = offsets.get(i + 1).copied().unwrap_or(bytes.len() as u64);
        frames.push((start as usize, (end - start) as usize, i as u64 + 1));
    }
    (bytes, frames)
}

/// Damage a copy of `bytes`; returns it and the byte range of the original it touched.
fn damage(bytes: &[u8], kind: Damage, rng: &mut Rng) -> (Vec<u8>, std::ops::Range<usize>) {
    let mut out = bytes.to_vec();
    let len = bytes.len() as u64;
    let range = match kind {
        Damage::Byte => {
            let at = 24 + rng.below(len - 24) as usize;
            out[at] ^= 0x5a;
            at..at + 1
        }
        Damage::Run => {
            let at = 24 + rng.below(len - 24) as usize;
            let end = (at + 1 + rng.below(300) as usize).min(out.len());
            for b in &mut out[at..end] {
                *b = rng.next() as u8;
            }
            at..end
        }
        Damage::ZeroSector => {
            let at = (rng.below(len / 512) as usize) * 512;
            let end = (at + 512).min(out.len());
            out[at..end].fill(0);
            at..end
        }
        Damage::LosePage => {
            let at = (rng.below(len / 4096) as usize) * 4096;
            let end = (at + 4096).min(out.len());
            out.drain(at..end);
            at..end
        }
    };
    (out, range)
}

/// Salvage `rounds` logs damaged by `kind` and check what came back.
fn check(kind: Damage, rounds: u64) {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, frames) = make_log(&dir);
    for seed in 1..=rounds {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let (damaged, hit) = damage(&bytes, kind, &mut rng);
        let source = dir.path().join(format!("damaged-{seed}.log"));
        std::fs::write(&source, &damaged).unwrap();
        let dest = dir.path().join(format!("salvaged-{seed}.log"));
        let report = salvage_wal(&fs(), &source, &dest).unwrap();
        let recovered = read_all(&dest).unwrap_or_else(|e| panic!("{kind:?} seed {seed}: {e}"));
        let entries: Vec<_> = recovered.iter().filter(|e| !e.watermark).collect();
        for e in &entries {
            assert_eq!(
                e.payload,
                payload(e.sequence),
                "{kind:?} seed {seed}: invented {}",
                e.sequence
            );
        }
        let untouched = frames
            .iter()
            .filter(|(at, len, _)| at + len <= hit.start || *at >= hit.end)
            .map(|&(_, _, seq)| seq);
        for seq in untouched {
            assert!(
                entries.iter().any(|e| e.sequence == seq),
                "{kind:?} seed {seed}: lost untouched frame {seq} (report {report:?})"
            );
        }
        assert_eq!(
            report.frames_recovered as usize,
            entries.len(),
            "{kind:?} seed {seed}"
        );
        assert_eq!(report.damaged_file.is_some(), !report.skipped.is_empty());
        if let Some(side) = &report.damaged_file {
            let kept = std::fs::read(side).unwrap();
            assert_eq!(
                kept.len() as u64,
                report.skipped.iter().map(|(_, n)| n).sum::<u64>()
            );
            assert_eq!(side, &damaged_path(&dest).display().to_string());
        }
        // The salvaged log opens for writing and goes on.
        let mut writer = WalWriter::open(&fs(), &dest, WalOptions::default()).unwrap();
        assert!(writer.tail_repair().is_none(), "{kind:?} seed {seed}");
        writer.append(&[entry(b"after")]).unwrap();
    }
}

#[test]
fn a_flipped_byte() {
    check(Damage::Byte, 40);
}

#[test]
fn a_run_of_garbage() {
    check(Damage::Run, 40);
}

#[test]
fn a_zeroed_sector() {
    check(Damage::ZeroSector, 30);
}

#[test]
fn a_lost_page() {
    check(Damage::LosePage, 20);
}

#[test]
fn the_source_is_never_modified_and_an_existing_destination_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, _) = make_log(&dir);
    let source = wal_in(&dir);
    let dest = dir.path().join("out.log");
    let report = salvage_wal(&fs(), &source, &dest).unwrap();
    assert_eq!(report.frames_recovered, 200);
    assert!(report.skipped.is_empty() && report.missing.is_empty());
    assert_eq!(std::fs::read(&source).unwrap(), bytes);
    assert_eq!(
        salvage_wal(&fs(), &source, &dest).unwrap_err().code(),
        "INVALID_ARGUMENT"
    );
}

#[test]
fn a_damaged_file_header_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let (mut bytes, _) = make_log(&dir);
    bytes[0..8].fill(0xff);
    let source = dir.path().join("bad-header.log");
    std::fs::write(&source, &bytes).unwrap();
    let dest = dir.path().join("out.log");
    let report = salvage_wal(&fs(), &source, &dest).unwrap();
    assert!(report.header_replaced);
    assert_eq!(report.frames_recovered, 200);
    assert_eq!(read_all(&dest).unwrap().len(), 200);
}

#[test]
fn a_damaged_store_salvages_into_a_store_that_opens() {
    use selene_persist_engine::follow::{Follower, Target};
    use selene_persist_engine::salvage::salvage_store;
    use selene_persist_engine::store::Store;
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("store");
    let store = Store::open(&fs(), &source, WalOptions::default()).unwrap();
    let mut n = 0;
    for round in 0..3 {
        for _ in 0..20 {
            n += 1;
            common::append_via(store.committer(), &payload(n)).unwrap();
        }
        store
            .checkpoint(vec![("round".into(), vec![round], false)])
            .unwrap();
    }
    for _ in 0..20 {
        n += 1;
        common::append_via(store.committer(), &payload(n)).unwrap();
    }
    common::close_via(store.committer()).unwrap();
    drop(store);
    // One byte of a frame in the middle of the first archive, and of the active WAL.
    for file in ["wal.21.archive", "wal.log"] {
        let path = source.join(file);
        let offsets = common::frame_offsets(&path);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[offsets[offsets.len() / 2] as usize + 41] ^= 0x40;
        std::fs::write(&path, bytes).unwrap();
    }
    let dest = dir.path().join("salvaged");
    let report = salvage_store(&fs(), &source, &dest).unwrap();
    assert_eq!(report.snapshot_seq, 63);
    let missing: Vec<_> = report
        .files
        .iter()
        .flat_map(|(_, r)| r.missing.clone())
        .collect();
    assert_eq!(missing.len(), 2, "{report:?}");
    let reopened = Store::open(&fs(), &dest, WalOptions::default()).unwrap();
    assert_eq!(reopened.snapshot().unwrap().read("round").unwrap(), vec![2]);
    common::close_via(reopened.committer()).unwrap();
    drop(reopened);
    let mut follower = Follower::open(&fs(), Target::Store(dest), Some(1), false).unwrap();
    let mut seen = Vec::new();
    loop {
        let batch = follower.next_batch::<Vec<Entry>>(100, 1 << 20).unwrap();
        if batch.is_empty() {
            break;
        }
        seen.extend(batch);
    }
    // Every entry but the two damaged ones, each with its own payload.
    assert_eq!(seen.len(), 80 - 2);
    for e in &seen {
        let k = e.payload.split(|&b| b == b' ').nth(1).unwrap();
        let k: u64 = std::str::from_utf8(k).unwrap().parse().unwrap();
        assert_eq!(e.payload, payload(k));
    }
}

#[test]
fn a_store_whose_live_snapshot_is_damaged_is_rebuilt_from_the_one_before() {
    use selene_persist_engine::salvage::salvage_store;
    use selene_persist_engine::store::{Replay, Store};
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("store");
    let store = Store::open(&fs(), &source, WalOptions::default()).unwrap();
    let mut n = 0;
    let mut checkpoints = Vec::new();
    for round in 0..3u8 {
        for _ in 0..10 {
            n += 1;
            common::append_via(store.committer(), &payload(n)).unwrap();
        }
        let rotation = store
            .checkpoint(vec![("round".into(), vec![round], false)])
            .unwrap();
        checkpoints.push(rotation.sequence);
    }
    for _ in 0..5 {
        n += 1;
        common::append_via(store.committer(), &payload(n)).unwrap();
    }
    common::close_via(store.committer()).unwrap();
    drop(store);
    // The live snapshot's body is damaged: a store open refuses it.
    let live = source.join(format!("snapshot.{}.snap", checkpoints[2]));
    let mut bytes = std::fs::read(&live).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&live, bytes).unwrap();
    assert!(Store::open(&fs(), &source, WalOptions::default()).is_err());
    let dest = dir.path().join("salvaged");
    let report = salvage_store(&fs(), &source, &dest).unwrap();
    assert_eq!(report.snapshot_seq, checkpoints[1]);
    assert_eq!(report.damaged_snapshot, Some(checkpoints[2]));
    // It opens on the snapshot before, and replays every entry after it: the third round's
    // ten and the five after the last checkpoint.
    let reopened = Store::open(&fs(), &dest, WalOptions::default()).unwrap();
    assert_eq!(reopened.snapshot().unwrap().read("round").unwrap(), vec![1]);
    let mut replay: Replay = reopened.replay(0).unwrap();
    let entries = replay.next_batch::<Vec<Entry>>(100, 1 << 20).unwrap();
    let payloads: Vec<_> = entries.iter().map(|e| e.payload.clone()).collect();
    assert_eq!(payloads, (21..=35).map(payload).collect::<Vec<_>>());
    common::close_via(reopened.committer()).unwrap();
}
