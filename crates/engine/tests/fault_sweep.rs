//! Fault injection: EIO, ENOSPC and a short write at every operation of two workloads. The
//! failing call returns a typed error, and after reopening exactly the acknowledged entries
//! are there.

mod common;

use std::path::Path;

use common::*;
use selene_persist_engine::retention::RetentionPolicy;
use selene_persist_engine::store::Store;
use selene_persist_engine::testing::fault::FaultFs;
use selene_persist_engine::{Error, SyncPolicy, WalOptions, WalWriter};

/// Errors a fault may surface as: the I/O error itself, or refusal by a poisoned writer.
fn expected(error: &Error) -> bool {
    matches!(error.code(), "IO" | "DISK_FULL" | "POISONED")
}

/// Append `rounds` batches of `size(round)` entries of `payload(sequence)`; a batch a fault
/// rejects is expected, and the next one starts at the same sequence. How many were acknowledged.
fn append_rounds(
    writer: &mut WalWriter,
    rounds: u64,
    size: impl Fn(u64) -> u64,
    payload: fn(u64) -> Vec<u8>,
) -> Result<u64, String> {
    let mut acked = 0u64;
    for round in 0..rounds {
        let batch: Vec<_> = (1..=size(round))
            .map(|i| entry(&payload(acked + i)))
            .collect();
        match writer.append(&batch) {
            Ok(range) => acked = *range.end(),
            Err(e) if expected(&e) => {}
            Err(e) => return Err(format!("append: {e}")),
        }
    }
    Ok(acked)
}

/// Appends under `policy`, retrying the same entry after a failure, then a flush; the caller
/// reopens and compares.
fn wal_workload(faults: &FaultFs, dir: &Path, policy: SyncPolicy) -> Result<u64, String> {
    let path = wal_in(dir);
    let mut writer = match WalWriter::open(&faults.shared(), &path, options(policy)) {
        Ok(writer) => writer,
        Err(e) if expected(&e) => return Ok(0),
        Err(e) => return Err(format!("open: {e}")),
    };
    let acked = append_rounds(&mut writer, 8, |round| 1 + round % 3, payload_for)?;
    match writer.flush() {
        Ok(()) => {}
        Err(e) if expected(&e) => {}
        Err(e) => return Err(format!("flush: {e}")),
    }
    drop(writer);
    Ok(acked)
}

/// No WAL after a failure: right only if nothing was acknowledged.
fn no_wal(acked: u64) -> Result<(), String> {
    if acked == 0 {
        Ok(())
    } else {
        Err("WAL missing".into())
    }
}

fn check_wal(dir: &Path, acked: u64) -> Result<(), String> {
    let path = wal_in(dir);
    if !path.exists() {
        return no_wal(acked);
    }
    let recovered = recover_standard_wal(&path)?;
    if recovered == acked {
        Ok(())
    } else {
        Err(format!(
            "{recovered} entries recovered, exactly {acked} acknowledged"
        ))
    }
}

/// Appends, checkpoints and a prune on a store; returns how many events were acknowledged.
fn store_workload(faults: &FaultFs, dir: &Path) -> Result<u64, String> {
    let store = match Store::open(&faults.shared(), dir, WalOptions::default()) {
        Ok(store) => store,
        Err(e) if expected(&e) => return Ok(0),
        Err(e) => return Err(format!("open: {e}")),
    };
    let mut acked = 0u64;
    for step in 0..12 {
        match step {
            4 | 8 => match store.checkpoint(vec![(
                "count".into(),
                acked.to_string().into_bytes(),
                false,
            )]) {
                Ok(_) => {}
                Err(e) if expected(&e) => {}
                Err(e) => return Err(format!("checkpoint: {e}")),
            },
            10 => match store.prune(&RetentionPolicy {
                keep_snapshots: 1,
                keep_archives: 1,
                ..RetentionPolicy::default()
            }) {
                Ok(_) => {}
                Err(e) if expected(&e) => {}
                Err(e) => return Err(format!("prune: {e}")),
            },
            _ => match append_via(store.committer(), &event(acked + 1)).map(drop) {
                Ok(()) => acked += 1,
                Err(e) if expected(&e) => {}
                Err(e) => return Err(format!("append: {e}")),
            },
        }
    }
    close_store(store);
    Ok(acked)
}

fn check_store(dir: &Path, acked: u64) -> Result<(), String> {
    let count = recover_counted_events(dir, WalOptions::default())?;
    if count == acked {
        Ok(())
    } else {
        Err(format!(
            "{count} events recovered, exactly {acked} acknowledged"
        ))
    }
}

/// Run `workload` once per (operation, fault) pair; returns how many faults were injected.
fn sweep(
    workload: impl Fn(&FaultFs, &Path) -> Result<u64, String>,
    check: fn(&Path, u64) -> Result<(), String>,
) -> usize {
    let probe_dir = tempfile::tempdir().unwrap();
    let probe = FaultFs::new();
    workload(&probe, probe_dir.path()).unwrap();
    let injected = each_single_fault(&probe, |faults, dir, _, context| {
        if let Err(problem) = workload(faults, dir).and_then(|acked| check(dir, acked)) {
            panic!("{context}: {problem}");
        }
    });
    let operations = probe.op_count();
    eprintln!(
        "{operations} operations x {} faults = {injected} runs survived",
        FAULTS.len()
    );
    injected
}

#[test]
fn every_fault_at_every_operation_of_appends_loses_nothing_acknowledged() {
    for policy in [
        SyncPolicy::Always,
        SyncPolicy::EveryN(3),
        SyncPolicy::Manual,
    ] {
        assert!(
            sweep(|faults, dir| wal_workload(faults, dir, policy), check_wal) > 20,
            "{policy:?}"
        );
    }
}

#[test]
fn every_fault_at_every_operation_of_checkpoints_and_prunes_loses_nothing_acknowledged() {
    assert!(sweep(store_workload, check_store) > 150);
}

/// The payload of sequence `seq` in the large workload: past 1 MiB for every other entry (so
/// it is written from its own buffer, between the frame bytes around it), and incompressible
/// enough that it is stored as it is.
fn large_payload_for(seq: u64) -> Vec<u8> {
    let len = if seq.is_multiple_of(2) {
        (1 << 20) + 17 * seq as usize
    } else {
        40
    };
    noise(seq, len)
}

/// Batches of large and small entries, each batch one commit of several writes.
fn large_workload(faults: &FaultFs, dir: &Path) -> Result<u64, String> {
    let options = WalOptions {
        compression: selene_persist_engine::Compression::disabled(),
        ..options(SyncPolicy::Always)
    };
    let mut writer = match WalWriter::open(&faults.shared(), &wal_in(dir), options) {
        Ok(writer) => writer,
        Err(e) if expected(&e) => return Ok(0),
        Err(e) => return Err(format!("open: {e}")),
    };
    let acked = append_rounds(&mut writer, 3, |_| 3, large_payload_for)?;
    drop(writer);
    Ok(acked)
}

fn check_large(dir: &Path, acked: u64) -> Result<(), String> {
    let path = wal_in(dir);
    if !path.exists() {
        return no_wal(acked);
    }
    WalWriter::open(&fs(), &path, WalOptions::default()).map_err(|e| format!("reopen: {e}"))?;
    let entries = read_all(&path).map_err(|e| format!("read: {e}"))?;
    for (i, e) in entries.iter().enumerate() {
        if e.sequence != i as u64 + 1 || e.payload != large_payload_for(e.sequence) {
            return Err(format!(
                "entry {i} is sequence {} with an unexpected payload",
                e.sequence
            ));
        }
    }
    if entries.len() as u64 == acked {
        Ok(())
    } else {
        Err(format!(
            "{} entries recovered, exactly {acked} acknowledged",
            entries.len()
        ))
    }
}

#[test]
fn every_fault_at_every_write_of_large_payloads_loses_nothing_acknowledged() {
    assert!(sweep(large_workload, check_large) > 30);
}
