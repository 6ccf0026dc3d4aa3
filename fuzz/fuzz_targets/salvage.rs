//! Salvage over arbitrary file contents: it never fails on the source's damage, the source is
//! left unchanged, the new log opens and reads back whole, with no torn tail, and is at most
//! twice the source's size. (That nothing
//! is invented is checked against known logs in the engine's tests/salvage.rs.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use selene_persist_engine::io::StdFs;
use selene_persist_engine::salvage::{damaged_path, salvage_wal};
use selene_persist_engine::WalReader;

fuzz_target!(|bytes: &[u8]| {
    let dir = std::env::temp_dir().join(format!("selene-persist-fuzz-salvage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (source, dest) = (dir.join("source.log"), dir.join("salvaged.log"));
    drop(std::fs::remove_file(&dest));
    drop(std::fs::remove_file(damaged_path(&dest)));
    std::fs::write(&source, bytes).unwrap();
    let vfs = StdFs::shared();
    let report = salvage_wal(&vfs, &source, &dest).expect("salvage never fails on damage");
    assert_eq!(std::fs::read(&source).unwrap(), bytes, "the source is never modified");
    let mut reader = WalReader::open(&vfs, &dest).expect("the salvaged log opens");
    let mut recovered = 0;
    loop {
        let batch = reader.next_batch::<Vec<selene_persist_engine::Entry>>(0, 64, 1 << 20, true).expect("the salvaged log reads back whole");
        if batch.is_empty() {
            break;
        }
        recovered += batch.len() as u64;
    }
    // Every frame kept, plus one watermark per missing sequence.
    let filled: u64 = report.missing.iter().map(|(first, last)| last - first + 1).sum();
    assert_eq!(recovered, report.frames_recovered + filled);
    assert!(reader.torn_tail().is_none());
    // Whatever sequences the file holds: its frames, at most one 40-byte watermark per 40 bytes
    // of it, and a header.
    let out = std::fs::metadata(&dest).unwrap().len();
    assert!(out <= 2 * bytes.len() as u64 + 24, "{out} bytes from {}", bytes.len());
});
