//! Writer behaviour: sequences, reopen, locks, caps, compression, rollback and poisoning.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

use common::*;
use selene_persist_engine::frame::{MAX_PAYLOAD_LEN, MAX_PRINCIPAL_LEN};
use selene_persist_engine::io::Vfs;
use selene_persist_engine::testing::fault::{Fault, FaultFs, FaultPlan, Op};
use selene_persist_engine::{
    Compression, Error, Hlc, NewEntries, NewEntry, Origin, SyncPolicy, WalOptions, WalWriter,
};

#[test]
fn sequences_continue_across_reopen() {
    let (_dir, path) = fresh_wal();
    write_entries(&path, 3);
    write_entries(&path, 4);
    assert_standard_entries(&read_all(&path).unwrap(), 1, 7);
}

#[test]
fn packed_payloads_are_entries_like_listed_ones_and_lengths_must_cover_the_data() {
    let (_dir, path) = fresh_wal();
    let mut writer = WalWriter::open(&fs(), &path, WalOptions::default()).unwrap();
    let payloads: [&[u8]; 4] = [b"one", b"", b"three", &[7u8; 5000]];
    let packed = NewEntries::packed(
        payloads.concat().into(),
        payloads.map(|p| p.len() as u32).to_vec(),
    )
    .unwrap();
    assert_eq!((packed.len(), packed.payload_bytes()), (4, 5008));
    assert_eq!(writer.stage_entries(&packed).unwrap(), 1..=4);
    writer.commit().unwrap();
    writer.append(&[entry(b"listed")]).unwrap();
    writer.close().unwrap();
    let read: Vec<Vec<u8>> = read_all(&path)
        .unwrap()
        .iter()
        .map(|e| e.payload.to_vec())
        .collect();
    assert_eq!(read, [&payloads[..], &[b"listed"]].concat());

    for lengths in [vec![3, 1], vec![3, 0, 5, 5001], vec![]] {
        let refused = NewEntries::packed(payloads.concat().into(), lengths).unwrap_err();
        assert!(matches!(refused, Error::InvalidArgument(_)), "{refused:?}");
    }
}

#[test]
fn snapshot_seq_seeds_a_new_file_and_the_header_wins_on_reopen() {
    let (_dir, path) = fresh_wal();
    let seeded = WalOptions {
        snapshot_seq: 100,
        ..WalOptions::default()
    };
    let mut writer = WalWriter::open(&fs(), &path, seeded).unwrap();
    assert_eq!(writer.snapshot_seq(), 100);
    assert_eq!(writer.append(&[entry(b"a")]).unwrap(), 101..=101);
    writer.close().unwrap();

    let other = WalOptions {
        snapshot_seq: 5,
        ..WalOptions::default()
    };
    let mut writer = WalWriter::open(&fs(), &path, other).unwrap();
    assert_eq!(writer.snapshot_seq(), 100);
    assert_eq!(writer.append(&[entry(b"b")]).unwrap(), 102..=102);
}

#[test]
fn exactly_one_of_many_threads_gets_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = Arc::new(wal_in(&dir));
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (path, barrier) = (Arc::clone(&path), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                let result = WalWriter::open(&fs(), &path, WalOptions::default());
                // Hold the lock until every thread has tried.
                barrier.wait();
                result.map(|_| ()).map_err(|e| e.code())
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .filter_map(|r| r.err())
            .all(|code| code == "WRITER_LOCK_HELD")
    );
    // Released on drop: a new writer can open.
    WalWriter::open(&fs(), &path, WalOptions::default()).unwrap();
}

#[test]
fn a_lock_held_by_a_forked_child_for_an_instant_does_not_refuse_the_next_writer() {
    // A child spawned while a writer is open holds a copy of its file description (and so the
    // lock) until it execs: reopening right after close must wait for it, not refuse.
    let (_dir, path) = fresh_wal();
    let stop = Arc::new(AtomicBool::new(false));
    let spawners: Vec<_> = (0..2)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::process::Command::new("true").status().unwrap();
                }
            })
        })
        .collect();
    let refused = (0..1000)
        .filter(
            |_| match WalWriter::open(&fs(), &path, WalOptions::default()) {
                Ok(writer) => writer.close().map(|()| false).unwrap(),
                Err(e) => e.code() == "WRITER_LOCK_HELD",
            },
        )
        .count();
    stop.store(true, Ordering::Relaxed);
    spawners.into_iter().for_each(|s| s.join().unwrap());
    assert_eq!(refused, 0, "reopens refused while children were spawned");
}

#[test]
fn principals_origins_and_timestamps_round_trip() {
    let (_dir, path) = fresh_wal();
    let mut writer = WalWriter::open(&fs(), &path, WalOptions::default()).unwrap();
    let replicated = Origin::Replicated {
        source_node_id: u64::MAX,
        source_seq: 0,
    };
    let given = Hlc {
        seconds: 12,
        subseconds: 34,
    };
    let entries = vec![
        NewEntry {
            payload: b"one".to_vec().into(),
            principal: Some(b"alice".to_vec()),
            origin: replicated,
            hlc: Some(given),
            producer: None,
        },
        NewEntry {
            payload: Vec::new().into(),
            principal: Some(Vec::new()),
            ..NewEntry::default()
        },
        NewEntry {
            payload: b"three".to_vec().into(),
            ..NewEntry::default()
        },
    ];
    assert_eq!(writer.append(&entries).unwrap(), 1..=3);
    writer.close().unwrap();
    let read = read_all(&path).unwrap();
    assert_eq!(read.len(), 3);
    for (got, want) in read.iter().zip(&entries) {
        assert_eq!(got.payload, want.payload);
        assert_eq!(got.principal, want.principal);
        assert_eq!(got.origin, want.origin);
    }
    assert_eq!(read[0].hlc, given);
    // Generated timestamps are wall-clock based and strictly increasing.
    assert!(read[1].hlc > given && read[2].hlc > read[1].hlc);
}

#[test]
fn generated_timestamps_stay_monotonic_across_reopen() {
    let (_dir, path) = fresh_wal();
    let future = Hlc {
        seconds: u64::from(u32::MAX) * 4,
        subseconds: 0,
    };
    let mut writer = WalWriter::open(&fs(), &path, WalOptions::default()).unwrap();
    writer
        .append(&[NewEntry {
            hlc: Some(future),
            ..entry(b"from the future")
        }])
        .unwrap();
    writer.close().unwrap();
    let mut writer = WalWriter::open(&fs(), &path, WalOptions::default()).unwrap();
    writer.append(&[entry(b"now")]).unwrap();
    writer.close().unwrap();
    let read = read_all(&path).unwrap();
    assert!(read[1].hlc > future);
}

#[test]
fn caps_are_enforced_at_and_over_the_limit_without_consuming_sequences() {
    let (_dir, path) = fresh_wal();
    let options = WalOptions {
        compression: Compression::disabled(),
        ..WalOptions::default()
    };
    let mut writer = WalWriter::open(&fs(), &path, options).unwrap();
    let at = NewEntry {
        principal: Some(vec![1; MAX_PRINCIPAL_LEN]),
        ..entry(b"p")
    };
    assert_eq!(writer.append(&[at]).unwrap(), 1..=1);
    let over = NewEntry {
        principal: Some(vec![1; MAX_PRINCIPAL_LEN + 1]),
        ..entry(b"p")
    };
    assert_eq!(
        writer.append(&[over]).unwrap_err().code(),
        "PRINCIPAL_TOO_LARGE"
    );

    let len_before = std::fs::metadata(&path).unwrap().len();
    let too_big = entry(&vec![0; MAX_PAYLOAD_LEN + 1]);
    // One bad entry fails the whole batch, and nothing of it is written.
    assert_eq!(
        writer.append(&[entry(b"ok"), too_big]).unwrap_err().code(),
        "PAYLOAD_TOO_LARGE"
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len_before);
    assert_eq!(writer.last_sequence(), 1);

    let max = entry(&vec![7; MAX_PAYLOAD_LEN]);
    assert_eq!(writer.append(&[max]).unwrap(), 2..=2);
    writer.close().unwrap();
    let read = read_all(&path).unwrap();
    assert_eq!(read[1].payload.len(), MAX_PAYLOAD_LEN);
}

#[test]
fn compression_threshold_is_inclusive_and_round_trips() {
    let (_dir, path) = fresh_wal();
    let options = WalOptions {
        compression: Compression {
            threshold: Some(1000),
            level: 3,
        },
        ..WalOptions::default()
    };
    let mut writer = WalWriter::open(&fs(), &path, options).unwrap();
    let below = vec![b'z'; 999];
    let at = vec![b'z'; 1000];
    let before = writer.committed_offset();
    writer.append(&[entry(&below)]).unwrap();
    let below_len = writer.committed_offset() - before;
    writer.append(&[entry(&at)]).unwrap();
    let at_len = writer.committed_offset() - before - below_len;
    // A batch of one: a 32-byte head, a 3-byte length-table entry (1004 << 5 | flags), a
    // 1-byte HLC delta, a 2-byte check.
    assert_eq!(below_len, 38 + 999, "stored as is below the threshold");
    assert!(at_len < 100, "compressed at the threshold: {at_len} bytes");
    writer.close().unwrap();
    let read = read_all(&path).unwrap();
    assert_eq!(read[0].payload, below);
    assert_eq!(read[1].payload, at);
}

#[test]
fn bad_options_are_invalid_arguments() {
    let (_dir, path) = fresh_wal();
    let bad = [
        options(SyncPolicy::EveryN(0)),
        options(SyncPolicy::Interval(std::time::Duration::ZERO)),
        WalOptions {
            snapshot_seq: 1 << 53,
            ..WalOptions::default()
        },
        WalOptions {
            compression: Compression {
                threshold: Some(1),
                level: 0,
            },
            ..WalOptions::default()
        },
    ];
    for options in bad {
        assert_eq!(
            WalWriter::open(&fs(), &path, options).unwrap_err().code(),
            "INVALID_ARGUMENT"
        );
    }
    assert!(!path.exists(), "a refused open creates nothing");
}

#[test]
fn the_sequence_space_ends_at_2_pow_53_minus_1() {
    let (_dir, path) = fresh_wal();
    let options = WalOptions {
        snapshot_seq: (1 << 53) - 2,
        ..WalOptions::default()
    };
    let mut writer = WalWriter::open(&fs(), &path, options).unwrap();
    assert_eq!(
        writer.append(&[entry(b"last")]).unwrap(),
        (1 << 53) - 1..=(1 << 53) - 1
    );
    assert_eq!(
        writer.append(&[entry(b"one too many")]).unwrap_err().code(),
        "SEQUENCE_EXHAUSTED"
    );
}

#[test]
fn a_missing_directory_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/wal.log");
    assert_eq!(
        WalWriter::open(&fs(), &path, WalOptions::default())
            .unwrap_err()
            .code(),
        "IO"
    );
}

/// The fixture of the fault tests: a fresh WAL over a fault-injecting fs, opened with `options`
/// and holding standard entries 1 and 2.
fn faulty_writer(
    options: WalOptions,
) -> (tempfile::TempDir, std::path::PathBuf, FaultFs, WalWriter) {
    let (dir, path) = fresh_wal();
    let faults = FaultFs::new();
    let mut writer = WalWriter::open(&faults.shared(), &path, options).unwrap();
    writer
        .append(&[entry(&payload_for(1)), entry(&payload_for(2))])
        .unwrap();
    (dir, path, faults, writer)
}

/// After a rejected commit the faulty writer still holds entries 1 and 2, is not poisoned, and
/// gives the next entry sequence 3.
fn goes_on_after_a_rejected_commit(mut writer: WalWriter, path: &std::path::Path) {
    assert_eq!(writer.last_sequence(), 2);
    assert!(writer.poisoned().is_none());
    assert_eq!(writer.append(&[entry(&payload_for(3))]).unwrap(), 3..=3);
    writer.close().unwrap();
    assert_standard_entries(&read_all(path).unwrap(), 1, 3);
}

/// `options(sync)` with compression off, so a payload's frame is as large as the payload.
fn uncompressed(sync: SyncPolicy) -> WalOptions {
    WalOptions {
        compression: Compression::disabled(),
        ..options(sync)
    }
}

#[test]
fn a_failed_write_is_cut_back_and_the_writer_stays_usable() {
    for fault in [Fault::Eio, Fault::NoSpace, Fault::ShortWrite] {
        let (_dir, path, faults, mut writer) = faulty_writer(options(SyncPolicy::Always));
        let committed = writer.committed_offset();
        faults.fail_ahead(0, fault);
        let err = writer
            .append(&[entry(b"doomed"), entry(b"doomed too")])
            .unwrap_err();
        let code = if fault == Fault::NoSpace {
            "DISK_FULL"
        } else {
            "IO"
        };
        assert_eq!(err.code(), code, "{fault:?}");
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            committed,
            "{fault:?}"
        );
        goes_on_after_a_rejected_commit(writer, &path);
    }
}

#[test]
fn a_deferred_sync_starts_writeback_every_mib_and_a_failed_hint_loses_nothing() {
    let (_dir, path, faults, mut writer) = faulty_writer(uncompressed(SyncPolicy::Manual));
    let big = vec![9u8; 300 << 10];
    let started = |faults: &FaultFs| {
        faults
            .log()
            .into_iter()
            .filter_map(|op| match op {
                Op::StartWriteback(_, offset, len) => Some((offset, len)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    for _ in 0..3 {
        writer.append(&[entry(&big)]).unwrap();
    }
    assert!(
        started(&faults).is_empty(),
        "under 1 MiB, nothing is started"
    );
    // The fourth commit passes 1 MiB: writeback starts for everything not yet synced, once,
    // and it may fail without a trace.
    faults.fail_ahead(2, Fault::Eio);
    writer.append(&[entry(&big)]).unwrap();
    let ranges = started(&faults);
    assert_eq!(ranges.len(), 1);
    let (offset, len) = ranges[0];
    assert_eq!(offset + len, writer.committed_offset());
    assert!(len >= 1 << 20);
    assert!(writer.poisoned().is_none());
    writer.append(&[entry(b"after")]).unwrap();
    // A sync covers what writeback had not reached: the next range starts where it ended.
    writer.flush().unwrap();
    for _ in 0..4 {
        writer.append(&[entry(&big)]).unwrap();
    }
    let ranges = started(&faults);
    assert_eq!(ranges.len(), 2);
    assert!(ranges[1].0 > offset + len, "{ranges:?}");
    writer.close().unwrap();
    assert_eq!(read_all(&path).unwrap().len(), 2 + 4 + 1 + 4);
}

#[test]
fn a_failed_preallocation_rejects_the_commit_writes_nothing_and_the_writer_goes_on() {
    // Uncompressed, so the 5000-byte frame really crosses the 4 KiB chunk.
    let (_dir, path, faults, mut writer) = faulty_writer(uncompressed(SyncPolicy::Always));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 4096);
    // The first operation of the next commit is the preallocation.
    faults.fail_ahead(0, Fault::Eio);
    let big = vec![7u8; 5000];
    assert_eq!(writer.append(&[entry(&big)]).unwrap_err().code(), "IO");
    assert!(
        matches!(faults.log().last(), Some(Op::SetLen(_, 4096))),
        "{:?}",
        faults.log()
    );
    goes_on_after_a_rejected_commit(writer, &path);
}

#[test]
fn no_room_to_preallocate_cuts_the_partial_chunk_and_the_write_grows_the_file() {
    let (_dir, path, faults, mut writer) = faulty_writer(uncompressed(SyncPolicy::Always));
    faults.fail_ahead(0, Fault::NoSpace);
    let big = vec![7u8; 5000];
    assert_eq!(writer.append(&[entry(&big)]).unwrap(), 3..=3);
    let log = faults.log();
    // The seal is rewritten after the fdatasync.
    let tail: Vec<_> = log.iter().rev().take(5).rev().collect();
    assert!(
        matches!(
            tail.as_slice(),
            [
                Op::Allocate(_, 8192),
                Op::SetLen(_, 4096),
                Op::Write(..),
                Op::SyncData(_),
                Op::Write(..)
            ]
        ),
        "{tail:?}"
    );
    // The file is exactly as long as its frames: no zeros were left to take the space.
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        writer.committed_offset()
    );
    assert_eq!(writer.append(&[entry(&payload_for(4))]).unwrap(), 4..=4);
    writer.close().unwrap();
    assert_eq!(read_all(&path).unwrap().len(), 4);
}

#[test]
fn a_failed_fdatasync_rejects_the_group_and_poisons() {
    let (_dir, path, faults, mut writer) = faulty_writer(options(SyncPolicy::Always));
    let committed = writer.committed_offset();
    // Operation after the write is the fdatasync.
    faults.fail_ahead(1, Fault::Eio);
    assert_eq!(
        writer.append(&[entry(b"unsynced")]).unwrap_err().code(),
        "IO"
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), committed);
    assert_eq!(
        writer.append(&[entry(b"refused")]).unwrap_err().code(),
        "POISONED"
    );
    assert_eq!(writer.flush().unwrap_err().code(), "POISONED");
    drop(writer);
    // Reopen recovers exactly the acknowledged entries.
    assert_standard_entries(&read_all(&path).unwrap(), 1, 2);
    let writer = WalWriter::open(&fs(), &path, WalOptions::default()).unwrap();
    assert_eq!(writer.last_sequence(), 2);
}

#[test]
fn a_failed_cut_back_poisons() {
    let (_dir, path, faults, mut writer) = faulty_writer(options(SyncPolicy::Always));
    // The short write leaves half a frame; the truncate that should remove it fails too.
    let next = faults.op_count();
    faults.set_plan(FaultPlan {
        faults: vec![(next, Fault::ShortWrite), (next + 1, Fault::Eio)],
        fail_from: None,
    });
    assert_eq!(writer.append(&[entry(b"torn")]).unwrap_err().code(), "IO");
    assert!(writer.poisoned().is_some());
    assert_eq!(
        writer.append(&[entry(b"x")]).unwrap_err().code(),
        "POISONED"
    );
    drop(writer);
    // The half frame is a torn tail; reopening cuts it and keeps the acknowledged entries.
    let writer = WalWriter::open(&fs(), &path, WalOptions::default()).unwrap();
    assert!(writer.tail_repair().is_some());
    assert_eq!(writer.last_sequence(), 2);
}

#[test]
fn sync_policies_fdatasync_when_they_promise() {
    let count_syncs = |faults: &FaultFs| {
        faults
            .log()
            .iter()
            .filter(|op| matches!(op, Op::SyncData(_)))
            .count()
    };
    // (policy, fdatasyncs over 10 appends, entries left unsynced)
    for (policy, syncs, unsynced) in [
        (SyncPolicy::Always, 10, 0),
        (SyncPolicy::EveryN(4), 2, 2),
        (SyncPolicy::Manual, 0, 10),
        (
            SyncPolicy::Interval(std::time::Duration::from_secs(60)),
            0,
            10,
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let faults = FaultFs::new();
        let vfs = faults.shared();
        let mut writer = WalWriter::open(&vfs, &wal_in(&dir), options(policy)).unwrap();
        let before = count_syncs(&faults);
        for i in 0..10 {
            writer.append(&[entry(&payload_for(i))]).unwrap();
        }
        assert_eq!(count_syncs(&faults) - before, syncs, "{policy:?}");
        assert_eq!(writer.entries_since_fsync(), unsynced, "{policy:?}");
        writer.flush().unwrap();
        assert_eq!(writer.entries_since_fsync(), 0);
    }
}

#[test]
fn creating_a_wal_is_atomic_and_durable() {
    let (dir, path) = fresh_wal();
    let faults = FaultFs::new();
    let vfs = faults.shared();
    WalWriter::open(&vfs, &path, WalOptions::default()).unwrap();
    let log = faults.log();
    let link = log
        .iter()
        .position(|op| matches!(op, Op::Link(_, to) if *to == path))
        .expect("linked into place");
    let synced = log
        .iter()
        .position(|op| matches!(op, Op::SyncData(p) if p != &path))
        .expect("temp synced");
    let dir_synced = log
        .iter()
        .position(|op| matches!(op, Op::SyncDir(_)))
        .expect("directory synced");
    assert!(synced < link && link < dir_synced, "{log:?}");
    // Private to its owner.
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    // Nothing but the WAL is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("wal.log")]);
}

#[test]
fn a_failed_create_leaves_no_wal() {
    let (_dir, path) = fresh_wal();
    for step in 0..4 {
        let faults = failing_at(step, Fault::Eio);
        let vfs: Arc<dyn Vfs> = Arc::new(faults.clone());
        assert_eq!(
            WalWriter::open(&vfs, &path, WalOptions::default())
                .unwrap_err()
                .code(),
            "IO",
            "step {step}"
        );
        assert!(!path.exists(), "step {step}");
    }
}

#[test]
fn allocate_appends_written_zeros_and_never_touches_what_is_there() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grown");
    let mut file = fs()
        .open(&path, selene_persist_engine::io::OpenMode::Create)
        .unwrap();
    file.write_all_at(b"frames", 0).unwrap();
    // More than one piece of the zero buffer, and not a multiple of it.
    let len = (600 << 10) + 3;
    file.allocate(len).unwrap();
    file.allocate(10).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len() as u64, len);
    assert_eq!(&bytes[..6], b"frames");
    assert!(bytes[6..].iter().all(|&b| b == 0));
}

/// An idempotent producer's stamp is stored with its entry and read back exactly, beside
/// entries without one in the same batch; a v3 WAL, which has no room for it, refuses it.
#[test]
fn a_producer_stamp_reads_back_exactly() {
    use selene_persist_engine::Producer;
    let (_dir, path) = fresh_wal();
    let stamp = |seq| Producer {
        id: u64::MAX - 3,
        epoch: u32::MAX,
        seq,
    };
    let mut writer = WalWriter::open(&fs(), &path, WalOptions::default()).unwrap();
    let entries: Vec<NewEntry> = (0..4u64)
        .map(|i| NewEntry {
            producer: (i != 2).then(|| stamp(i * 1000)),
            ..entry(&payload_for(i + 1))
        })
        .collect();
    writer.append(&entries).unwrap();
    writer.close().unwrap();
    let read = read_all(&path).unwrap();
    let stamps: Vec<_> = read.iter().map(|e| e.producer).collect();
    assert_eq!(
        stamps,
        vec![Some(stamp(0)), Some(stamp(1000)), None, Some(stamp(3000))]
    );
    assert_standard_entries(&read, 1, 4);
}
