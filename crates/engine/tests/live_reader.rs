//! A reader beside a live writer never takes unfinished bytes for damage (issue 12, item 1).

mod common;

use selene_persist_engine::Entry;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use common::{entry, fresh_wal, fs, payload_for};
use selene_persist_engine::io::{DirEntry, LockKind, OpenMode, Stat, StdFs, Vfs, VfsFile};
use selene_persist_engine::{Error, SyncPolicy, WalOptions, WalReader, WalWriter};

fn writer(path: &std::path::Path) -> WalWriter {
    WalWriter::open(
        &fs(),
        path,
        WalOptions {
            sync: SyncPolicy::Always,
            ..WalOptions::default()
        },
    )
    .unwrap()
}

/// The fixture of these tests: a writer under 'always' that appended `count` standard entries,
/// and a reader open on its log.
fn live(count: u64) -> (tempfile::TempDir, WalWriter, WalReader) {
    let (dir, path) = fresh_wal();
    let mut w = writer(&path);
    append(&mut w, count);
    let reader = WalReader::open(&fs(), &path).unwrap();
    (dir, w, reader)
}

fn append(writer: &mut WalWriter, count: u64) {
    for _ in 0..count {
        let next = writer.last_sequence() + 1;
        writer.append(&[entry(&payload_for(next))]).unwrap();
    }
}

/// Read everything the reader can see now; panics on an error.
fn drain(reader: &mut WalReader) -> Vec<u64> {
    let mut sequences = Vec::new();
    loop {
        let batch = reader
            .next_batch::<Vec<Entry>>(0, 100, usize::MAX, false)
            .unwrap();
        if batch.is_empty() {
            return sequences;
        }
        sequences.extend(batch.iter().map(|e| e.sequence));
    }
}

#[test]
fn entries_appended_after_the_reader_cached_the_zero_tail_are_read_not_corruption() {
    let (_dir, mut w, mut reader) = live(1024);
    // The first batch reads a window that reaches into the preallocated zeros.
    let first = reader
        .next_batch::<Vec<Entry>>(0, 10, usize::MAX, false)
        .unwrap();
    assert_eq!(first.len(), 10);
    append(&mut w, 2);
    let rest = drain(&mut reader);
    assert_eq!(rest, (11..=1026).collect::<Vec<_>>());
    // And on: the reader resumes from its end when more arrives.
    append(&mut w, 3);
    assert_eq!(drain(&mut reader), vec![1027, 1028, 1029]);
    assert_eq!(reader.torn_tail(), None);
}

#[test]
fn a_writer_cutting_its_zero_tail_at_close_ends_the_reader_cleanly() {
    let (_dir, mut w, mut reader) = live(50);
    assert_eq!(
        reader
            .next_batch::<Vec<Entry>>(0, 10, usize::MAX, false)
            .unwrap()
            .len(),
        10
    );
    append(&mut w, 1);
    w.close().unwrap();
    assert_eq!(drain(&mut reader), (11..=51).collect::<Vec<_>>());
    assert_eq!(reader.torn_tail(), None);
}

#[test]
fn a_frame_still_being_written_is_waited_for_then_read() {
    let (dir, path) = fresh_wal();
    let mut w = writer(&path);
    append(&mut w, 5);
    let end = w.committed_offset();
    // What the next frame will look like, from a copy of the file.
    let copy = dir.path().join("copy.log");
    std::fs::copy(&path, &copy).unwrap();
    let mut other = WalWriter::open(&fs(), &copy, WalOptions::default()).unwrap();
    other.append(&[entry(b"the sixth entry")]).unwrap();
    let frame =
        std::fs::read(&copy).unwrap()[end as usize..other.committed_offset() as usize].to_vec();
    // Half of it lands now, past the live writer's committed end; the rest in 30 ms.
    let raw = OpenOptions::new().write(true).open(&path).unwrap();
    let half = frame.len() / 2;
    raw.write_all_at(&frame[..half], end).unwrap();
    let mut reader = WalReader::open(&fs(), &path).unwrap();
    let finisher = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        raw.write_all_at(&frame[half..], end + half as u64).unwrap();
    });
    let all = drain(&mut reader);
    finisher.join().unwrap();
    assert_eq!(all, (1..=6).collect::<Vec<_>>());
    assert_eq!(reader.torn_tail(), None);
    drop(w);
}

#[test]
fn stable_damage_beside_a_live_writer_is_still_corruption() {
    let (_dir, path) = fresh_wal();
    let mut w = writer(&path);
    append(&mut w, 20);
    let offsets = common::frame_offsets(&path);
    let raw = OpenOptions::new().write(true).open(&path).unwrap();
    raw.write_all_at(&[0xFF], offsets[5] + 2).unwrap();
    let mut reader = WalReader::open(&fs(), &path).unwrap();
    let error = loop {
        match reader.next_batch::<Vec<Entry>>(0, 100, usize::MAX, false) {
            Ok(batch) if batch.is_empty() => panic!("damage read as the end"),
            Ok(_) => {}
            Err(e) => break e,
        }
    };
    assert!(matches!(error, Error::MidLogCorruption { .. }), "{error}");
    drop(w);
}

#[test]
fn a_torn_tail_left_by_a_dead_writer_is_reported() {
    let (_dir, path) = fresh_wal();
    common::write_entries(&path, 3);
    let len = std::fs::metadata(&path).unwrap().len();
    let raw = OpenOptions::new().write(true).open(&path).unwrap();
    raw.write_all_at(&[7; 20], len).unwrap();
    let mut reader = WalReader::open(&fs(), &path).unwrap();
    assert_eq!(drain(&mut reader), vec![1, 2, 3]);
    assert!(reader.torn_tail().is_some());
}

/// A file whose first `lagging` reads covering `at` see zeros from `at` on: a reader that read
/// before a writer (since dead) wrote there.
#[derive(Debug)]
struct LaggingFile {
    inner: Box<dyn VfsFile>,
    at: u64,
    lagging: AtomicUsize,
}

impl VfsFile for LaggingFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let n = self.inner.read_at(buf, offset)?;
        let covers = offset <= self.at && self.at < offset + n as u64;
        if covers
            && self
                .lagging
                .fetch_update(SeqCst, SeqCst, |l| l.checked_sub(1))
                .is_ok()
        {
            buf[usize::try_from(self.at - offset).unwrap()..n].fill(0);
        }
        Ok(n)
    }
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.inner.write_all_at(buf, offset)
    }
    fn sync_data(&mut self) -> std::io::Result<()> {
        self.inner.sync_data()
    }
    fn set_len(&mut self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }
    fn allocate(&mut self, len: u64) -> std::io::Result<()> {
        self.inner.allocate(len)
    }
    fn size(&self) -> std::io::Result<u64> {
        self.inner.size()
    }
    fn try_lock(&self) -> std::io::Result<bool> {
        self.inner.try_lock()
    }
    fn lock(&self, kind: LockKind) -> std::io::Result<()> {
        self.inner.lock(kind)
    }
}

/// The real file system, with the WAL at `path` opened as a [`LaggingFile`] (once).
#[derive(Debug)]
struct LaggingFs {
    path: std::path::PathBuf,
    at: u64,
    used: AtomicUsize,
}

impl Vfs for LaggingFs {
    fn open(&self, path: &Path, mode: OpenMode) -> std::io::Result<Box<dyn VfsFile>> {
        let inner = StdFs.open(path, mode)?;
        if path != self.path || self.used.fetch_add(1, SeqCst) > 0 {
            return Ok(inner);
        }
        Ok(Box::new(LaggingFile {
            inner,
            at: self.at,
            lagging: AtomicUsize::new(2),
        }))
    }
    fn link(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        StdFs.link(from, to)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        StdFs.rename(from, to)
    }
    fn list(&self, dir: &Path) -> std::io::Result<Vec<DirEntry>> {
        StdFs.list(dir)
    }
    fn stat(&self, path: &Path) -> std::io::Result<Option<Stat>> {
        StdFs.stat(path)
    }
    fn create_dir(&self, dir: &Path) -> std::io::Result<()> {
        StdFs.create_dir(dir)
    }
    fn remove_dir(&self, dir: &Path) -> std::io::Result<()> {
        StdFs.remove_dir(dir)
    }
    fn remove(&self, path: &Path) -> std::io::Result<()> {
        StdFs.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        StdFs.sync_dir(dir)
    }
}

#[test]
fn frames_a_writer_finished_between_two_reads_before_it_died_are_read_not_corruption() {
    let (_dir, path) = fresh_wal();
    common::write_entries(&path, 5);
    let fourth = common::frame_offsets(&path)[3];
    // Frame 4 reads as zeros twice (the window, then the fresh re-read), then as written; by
    // then frame 5 has been seen too, and no writer holds the lock.
    let vfs: Arc<dyn Vfs> = Arc::new(LaggingFs {
        path: path.clone(),
        at: fourth,
        used: AtomicUsize::new(0),
    });
    let mut reader = WalReader::open(&vfs, &path).unwrap();
    assert_eq!(drain(&mut reader), vec![1, 2, 3, 4, 5]);
}
