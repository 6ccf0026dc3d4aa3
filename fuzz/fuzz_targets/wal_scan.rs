//! The open-time scan and the reader over arbitrary file contents: a value or a typed error,
//! a refused open leaves the file unchanged, a repair only cuts a tail, and only zeros are
//! left past the last frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use selene_persist_engine::io::StdFs;
use selene_persist_engine::{WalOptions, WalReader, WalWriter};

fuzz_target!(|bytes: &[u8]| {
    let dir = tempfile_dir();
    let path = dir.join("wal.log");
    std::fs::write(&path, bytes).unwrap();
    let vfs = StdFs::shared();
    if let Ok(mut reader) = WalReader::open(&vfs, &path) {
        while let Ok(batch) = reader.next_batch::<Vec<selene_persist_engine::Entry>>(0, 64, 1 << 20, true) {
            if batch.is_empty() {
                break;
            }
        }
    }
    match WalWriter::open(&vfs, &path, WalOptions::default()) {
        Ok(writer) => {
            // Only a tail may go; what stays past the last frame is zeros, kept as
            // preallocated space until close.
            let after = std::fs::read(&path).unwrap();
            assert!(bytes.starts_with(&after));
            let committed = usize::try_from(writer.committed_offset()).unwrap();
            assert!(after[committed..].iter().all(|&b| b == 0));
        }
        Err(_) => assert_eq!(std::fs::read(&path).unwrap(), bytes),
    }
});

/// One directory per process, reused: the fuzzer runs iterations one after another.
fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("selene-persist-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
