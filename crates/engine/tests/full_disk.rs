//! A real full disk: a size-limited tmpfs mounted by the test (root only; skipped with a
//! message otherwise). A preallocation that does not fit leaves no zeros behind, an append that
//! fits still succeeds, one that does not fails alone, and freeing space lets the same writer
//! go on (issue 12, item 8). A backup onto a disk too small for it fails with `DISK_FULL` and
//! leaves the disk as it found it (issue 26, item 7).

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use common::{append_via, close_via, entry, fresh_store, fs, noise};
use selene_persist_engine::Entry;
use selene_persist_engine::{WalOptions, WalReader, WalWriter};

/// A tmpfs of `size` mounted on a temp dir, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
    /// One disk test at a time: another test's `mount` or `umount` child, between its fork and
    /// its exec, holds a copy of every descriptor of this process, so a file this test removed
    /// could keep its space a moment longer and the free-space comparison would fail.
    _alone: MutexGuard<'static, ()>,
}

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let alone = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let dir = tempfile::tempdir().ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .is_ok_and(|out| out.status.success());
        if !mounted {
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        Some(Self { dir, _alone: alone })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn free(&self) -> u64 {
        let stat = rustix::fs::statvfs(self.path()).unwrap();
        stat.f_bavail * stat.f_frsize
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        drop(Command::new("umount").arg(self.dir.path()).status());
    }
}

#[test]
fn an_append_that_fits_is_never_refused_for_the_preallocation_ahead_of_it() {
    let Some(disk) = Tmpfs::mount("1m") else {
        return;
    };
    let filler = disk.path().join("filler");
    std::fs::write(&filler, vec![1u8; 400 << 10]).unwrap();
    let wal = disk.path().join("wal.log");
    // The default preallocation chunk (1 MiB) is larger than the whole disk.
    let mut writer = WalWriter::open(&fs(), &wal, WalOptions::default()).unwrap();
    let payload = |n: u64| {
        let mut bytes = format!("entry {n} ").into_bytes();
        bytes.resize(3000, b'x' + (n % 3) as u8);
        bytes
    };
    for n in 1..=10 {
        assert_eq!(writer.append(&[entry(&payload(n))]).unwrap(), n..=n);
    }
    // No partial chunk of zeros is left holding the space.
    assert_eq!(
        std::fs::metadata(&wal).unwrap().len(),
        writer.committed_offset()
    );
    assert!(disk.free() > 500 << 10, "free: {}", disk.free());
    // Fill the disk: appends that do not fit fail alone, and nothing acknowledged is lost.
    let mut acknowledged = 10;
    let error = loop {
        match writer.append(&[entry(&payload(acknowledged + 1))]) {
            Ok(_) => acknowledged += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(error.code(), "DISK_FULL", "{error}");
    assert!(writer.poisoned().is_none());
    // Space freed: the same writer goes on, with no reopen.
    std::fs::remove_file(&filler).unwrap();
    let next = acknowledged + 1;
    assert_eq!(
        writer.append(&[entry(&payload(next))]).unwrap(),
        next..=next
    );
    writer.close().unwrap();
    let mut reader = WalReader::open(&fs(), &wal).unwrap();
    let entries = reader
        .next_batch::<Vec<Entry>>(0, 10_000, usize::MAX, false)
        .unwrap();
    assert_eq!(entries.len() as u64, next);
    for e in &entries {
        assert_eq!(e.payload, payload(e.sequence));
    }
}

#[test]
fn a_backup_onto_a_full_disk_fails_as_disk_full_and_leaves_the_disk_as_it_was() {
    let Some(disk) = Tmpfs::mount("1m") else {
        return;
    };
    // A 600 KiB snapshot that fits, then a WAL of 600 KiB more that does not.
    let (_src, store) = fresh_store();
    // Incompressible bytes, so neither the snapshot nor the WAL shrinks.
    store
        .checkpoint(vec![("state".into(), noise(1, 600 << 10), false)])
        .unwrap();
    for n in 0..60 {
        append_via(store.committer(), &noise(n, 10 << 10)).unwrap();
    }
    let free = disk.free();
    let error = store.backup(&disk.path().join("copy")).unwrap_err();
    close_via(store.committer()).unwrap();
    assert_eq!(error.code(), "DISK_FULL", "{error}");
    let left: Vec<_> = std::fs::read_dir(disk.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(disk.free(), free);
}
