//! Salvage past damage: one driver, one line per kind of damage. Every frame the damage did not
//! touch is recovered with its sequence and payload; nothing is invented; the new log opens.

mod common;

use std::sync::atomic::Ordering;

use common::{entry, fresh_wal, fs, read_all, wal_in};
use selene_persist_engine::Entry;
use selene_persist_engine::inspect::Progress;
use selene_persist_engine::salvage::{damaged_path, salvage_wal, salvage_wal_counted};
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

/// The fixture of these tests: a fresh directory with a log of 200 entries in `wal.log`; its
/// bytes and each frame's (offset, length, sequence).
fn make_log() -> (tempfile::TempDir, Vec<u8>, Vec<(usize, usize, u64)>) {
    let (dir, path) = fresh_wal();
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
    (dir, bytes, frames)
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
    let (dir, bytes, frames) = make_log();
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
    let (dir, bytes, _) = make_log();
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
    let (dir, mut bytes, _) = make_log();
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
    // Each file's damaged bytes, where the report says they are in the new store.
    for (name, file) in &report.files {
        let side = damaged_path(&dest.join(name));
        let damaged = ["wal.21.archive", "wal.log"].contains(&name.as_str());
        assert_eq!(
            file.damaged_file,
            damaged.then(|| side.display().to_string())
        );
        let kept = std::fs::metadata(&side).map_or(0, |m| m.len());
        assert_eq!(kept, file.skipped.iter().map(|(_, n)| n).sum::<u64>());
    }
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

/// One frame of another log: sequence `sequence`, a payload no genuine entry has.
fn foreign_frame(sequence: u64) -> Vec<u8> {
    use selene_persist_engine::frame::{FrameFields, encode_frame};
    let mut out = Vec::new();
    let fields = FrameFields {
        sequence,
        hlc: selene_persist_engine::Hlc::default(),
        origin: selene_persist_engine::Origin::Local,
        principal: None,
        flags: 0,
    };
    encode_frame(&mut out, &fields, b"a frame of another log");
    out
}

/// Splice a frame of another log at `sequence` into a log of `count` entries of `payload`,
/// after entry `after`, and salvage it: every genuine entry comes back with its own sequence,
/// the foreign frame goes to `.damaged`, and the output stays within twice the input.
fn splice(sequence: u64, count: u64, after: u64, payload: fn(u64) -> Vec<u8>) {
    let (dir, path) = fresh_wal();
    let mut writer = WalWriter::open(&fs(), &path, WalOptions::default()).unwrap();
    for n in 1..=count {
        writer.append(&[entry(&payload(n))]).unwrap();
    }
    writer.close().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let offsets = common::frame_offsets(&path);
    let at = offsets
        .get(after as usize)
        .map_or(bytes.len(), |&o| o as usize);
    let foreign = foreign_frame(sequence);
    bytes.splice(at..at, foreign.iter().copied());
    let source = dir.path().join("spliced.log");
    std::fs::write(&source, &bytes).unwrap();
    let dest = dir.path().join("salvaged.log");
    let report = salvage_wal(&fs(), &source, &dest).unwrap();
    let entries = read_all(&dest).unwrap();
    let genuine: Vec<_> = entries.iter().filter(|e| !e.watermark).collect();
    assert_eq!(
        genuine.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        (1..=count).collect::<Vec<_>>(),
        "{report:?}"
    );
    for e in &genuine {
        assert_eq!(e.payload, payload(e.sequence));
    }
    assert!(report.missing.is_empty(), "{report:?}");
    assert_eq!(report.skipped, vec![(at as u64, foreign.len() as u64)]);
    assert_eq!(std::fs::read(damaged_path(&dest)).unwrap(), foreign);
    let out = std::fs::metadata(&dest).unwrap().len();
    assert!(
        out <= 2 * bytes.len() as u64,
        "{out} bytes from {}",
        bytes.len()
    );
}

#[test]
fn a_foreign_frame_at_sequence_1e8_in_a_10_kb_log() {
    splice(100_000_000, 170, 80, common::payload_for);
}

#[test]
fn a_foreign_frame_at_sequence_2_pow_53_at_the_end_of_a_log() {
    splice((1 << 53) - 1, 170, 170, common::payload_for);
}

#[test]
fn a_foreign_frame_at_sequence_5000_after_entry_100_of_200() {
    splice(5000, 200, 100, payload);
}

#[test]
fn a_run_of_foreign_frames_before_the_continuation() {
    let (dir, mut bytes, frames) = make_log();
    let at = frames[100].0;
    let foreign: Vec<u8> = (5000..5003).flat_map(foreign_frame).collect();
    bytes.splice(at..at, foreign.iter().copied());
    let source = dir.path().join("spliced.log");
    std::fs::write(&source, &bytes).unwrap();
    let dest = dir.path().join("salvaged.log");
    let report = salvage_wal(&fs(), &source, &dest).unwrap();
    assert_eq!(report.frames_recovered, 200, "{report:?}");
    assert_eq!(report.skipped, vec![(at as u64, foreign.len() as u64)]);
    assert_eq!(read_all(&dest).unwrap().len(), 200);
}

/// The payload of entry `n` of the large log: 64 KiB, or 9 MiB for entry 500 (more than the
/// window salvage reads the source in, so it spans the window's edge).
fn large_payload(n: u64) -> Vec<u8> {
    let len = if n == 500 { 9 << 20 } else { 64 << 10 };
    let pattern = n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes();
    pattern.iter().copied().cycle().take(len).collect()
}

/// Set to `<source>\n<dest>` for the child process of the bounded-memory test.
const CHILD_ARGS: &str = "SELENE_SALVAGE_CHILD";

/// The child half of `a_large_source_is_salvaged_in_bounded_memory`: salvage in a process of
/// its own, print the report and the process's peak resident set.
#[cfg(target_os = "linux")]
#[test]
#[ignore = "run in a child process by a_large_source_is_salvaged_in_bounded_memory"]
fn salvage_in_a_child_process() {
    let args = std::env::var(CHILD_ARGS).expect("run by its parent test");
    let (source, dest) = args.split_once('\n').unwrap();
    let report = salvage_wal(&fs(), source.as_ref(), dest.as_ref()).unwrap();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let peak = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = peak.split_whitespace().nth(1).unwrap().parse().unwrap();
    println!("REPORT {}", serde_json::to_string(&report).unwrap());
    println!("PEAK_KIB {kib}");
}

/// A 74 MiB log with a 9 MiB entry, a foreign frame within the watermark budget, one far
/// beyond it, and a run of garbage, salvaged by a child process whose peak resident set stays
/// a fraction of the source's size: the source is read in windows and the output streamed.
#[cfg(target_os = "linux")]
#[test]
fn a_large_source_is_salvaged_in_bounded_memory() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("large.log");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&source).unwrap());
    let header = selene_persist_engine::file_header::FileHeader {
        snapshot_seq: 0,
        layout: selene_persist_engine::file_header::Layout::V3,
    };
    out.write_all(&header.encode()).unwrap();
    let mut at = 24;
    let mut frame = Vec::new();
    let mut garbage = 0;
    for n in 1..=1040u64 {
        for foreign in [(300, 100_000_000), (800, 50_000)]
            .iter()
            .filter(|&&(after, _)| after + 1 == n)
        {
            let bytes = foreign_frame(foreign.1);
            out.write_all(&bytes).unwrap();
            at += bytes.len() as u64;
        }
        frame.clear();
        let fields = selene_persist_engine::frame::FrameFields {
            sequence: n,
            hlc: selene_persist_engine::Hlc::default(),
            origin: selene_persist_engine::Origin::Local,
            principal: None,
            flags: 0,
        };
        selene_persist_engine::frame::encode_frame(&mut frame, &fields, &large_payload(n));
        if n == 700 {
            // A run of garbage from the middle of entry 700's payload.
            garbage = at;
            frame[1000..3000].fill(0xa5);
        }
        out.write_all(&frame).unwrap();
        at += frame.len() as u64;
    }
    drop(out);
    assert!(at > 64 << 20);
    let dest = dir.path().join("salvaged.log");
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "salvage_in_a_child_process",
            "--ignored",
            "--nocapture",
        ])
        .env(
            CHILD_ARGS,
            format!("{}\n{}", source.display(), dest.display()),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&child.stdout);
    assert!(
        child.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&child.stderr)
    );
    let line = |prefix: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {stdout}"))
            .to_owned()
    };
    let report: serde_json::Value = serde_json::from_str(&line("REPORT ")).unwrap();
    let peak_kib: u64 = line("PEAK_KIB ").parse().unwrap();
    println!("salvage of {at} bytes: peak resident set {peak_kib} KiB");
    assert_eq!(report["framesRecovered"], 1039, "{report}");
    assert_eq!(report["missing"], serde_json::json!([[700, 700]]));
    assert_eq!(report["skipped"].as_array().unwrap().len(), 3, "{report}");
    assert!(
        report["skipped"][1][0].as_u64().unwrap() == garbage,
        "{report}"
    );
    // Every genuine entry but the damaged one, read back in batches.
    let mut reader = selene_persist_engine::WalReader::open(&fs(), &dest).unwrap();
    let mut next = 1;
    loop {
        let batch = reader
            .next_batch::<Vec<Entry>>(0, 64, 16 << 20, true)
            .unwrap();
        if batch.is_empty() {
            break;
        }
        for e in batch {
            assert_eq!(e.sequence, next);
            assert_eq!(e.watermark, next == 700);
            if !e.watermark {
                assert!(e.payload == large_payload(next), "payload of {next}");
            }
            next += 1;
        }
    }
    assert_eq!(next, 1041);
    // The source is 74 MiB; the salvage holds one buffer (its 4 MiB window, grown once to the
    // 9 MiB frame) and 1 MiB write buffers, in a test process of a few MiB.
    assert!(peak_kib < 24 << 10, "peak resident set {peak_kib} KiB");
}

/// A frame header whose checksums hold but whose payload, `len` bytes claimed, does not
/// match: verifying it means reading and hashing `len` bytes.
fn hollow_header(sequence: u64, len: u32) -> [u8; 40] {
    use selene_persist_engine::checksum::checksum32;
    let mut header = [0u8; 40];
    header[4..8].copy_from_slice(&len.to_le_bytes());
    header[8..12].copy_from_slice(&0xdead_beef_u32.to_le_bytes());
    header[12..20].copy_from_slice(&sequence.to_le_bytes());
    header[36..40].copy_from_slice(&checksum32(&[]).to_le_bytes());
    let sum = checksum32(&header[4..]);
    header[0..4].copy_from_slice(&sum.to_le_bytes());
    header
}

/// Frame headers that hold, with payloads that do not, each cost the hashing of what it
/// claims: the bytes verified are bounded by a multiple of the source's size, and the frames
/// before them come back. (Unbounded, this salvage took 59 s, and 8 MiB of such headers more
/// than five minutes: work quadratic in the size. A bound on work is not asserted, being a
/// timing; the test finishing is the check.)
#[test]
fn headers_claiming_the_rest_of_the_file_cost_linear_work() {
    // 4 MiB of frame headers, each claiming a payload to the end of the file: verifying every
    // one of them would hash 200 GiB.
    let (dir, path) = fresh_wal();
    common::write_entries(&path, 50);
    let mut bytes = std::fs::read(&path).unwrap();
    let genuine = bytes.len();
    let end = genuine + (4 << 20) / 40 * 40;
    for sequence in 51.. {
        let claim = (end - bytes.len() - 40) as u32;
        bytes.extend_from_slice(&hollow_header(sequence, claim));
        if bytes.len() == end {
            break;
        }
    }
    let source = dir.path().join("hollow.log");
    std::fs::write(&source, &bytes).unwrap();
    let dest = dir.path().join("salvaged.log");
    let report = salvage_wal(&fs(), &source, &dest).unwrap();
    common::assert_standard_entries(&read_all(&dest).unwrap(), 1, 50);
    assert_eq!(
        report.skipped,
        vec![(genuine as u64, (bytes.len() - genuine) as u64)]
    );
}

#[test]
fn a_salvage_counts_every_byte_of_its_source_once_damaged_or_not() {
    let (dir, bytes, frames) = make_log();
    let mut damaged = bytes.clone();
    damaged[frames[50].0 + 3] ^= 0xff;
    let source = dir.path().join("damaged.log");
    std::fs::write(&source, &damaged).unwrap();
    let progress = Progress::default();
    let out = dir.path().join("out.log");
    let report = salvage_wal_counted(&fs(), &source, &out, &progress).unwrap();
    assert!(!report.skipped.is_empty());
    let len = bytes.len() as u64;
    assert_eq!(progress.total.load(Ordering::Relaxed), len);
    assert_eq!(progress.done.load(Ordering::Relaxed), len);
}

/// A damaged record of a batch frame costs that record alone: one append of 16 entries with a
/// payload byte of the 6th flipped salvages the other 15 with their own sequences, the 6th
/// filled with a watermark; the batch's bytes are kept as damage.
#[test]
fn a_damaged_record_costs_its_record_alone() {
    let (dir, path) = fresh_wal();
    let mut writer = WalWriter::open(&fs(), &path, WalOptions::default()).unwrap();
    writer.append(&[entry(b"before")]).unwrap();
    let group: Vec<_> = (2..=17).map(|n| entry(&payload(n * 4))).collect();
    writer.append(&group).unwrap();
    writer.append(&[entry(b"after")]).unwrap();
    writer.close().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let mut offsets = common::frame_offsets(&path);
    offsets.dedup();
    let (batch, next) = (offsets[1] as usize, offsets[2] as usize);
    // Entry 7's payload is the only one holding "payload 28 ".
    let needle = b"payload 28 ";
    let at = batch
        + bytes[batch..next]
            .windows(needle.len())
            .position(|w| w == needle)
            .unwrap();
    bytes[at + 3] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let dest = dir.path().join("out.log");
    let report = salvage_wal(&fs(), &path, &dest).unwrap();
    assert_eq!(report.frames_recovered, 17, "{report:?}");
    assert_eq!(report.missing, vec![(7, 7)]);
    assert_eq!(report.skipped, vec![(batch as u64, (next - batch) as u64)]);
    let read = read_all(&dest).unwrap();
    assert_eq!(read.len(), 18);
    for e in &read {
        assert_eq!(e.watermark, e.sequence == 7, "entry {}", e.sequence);
        if (2..=17).contains(&e.sequence) && e.sequence != 7 {
            assert_eq!(e.payload, payload(e.sequence * 4), "entry {}", e.sequence);
        }
    }
}
