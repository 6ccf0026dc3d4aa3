//! The snapshot reader over arbitrary file contents: open, verify, read every section.
#![no_main]

use libfuzzer_sys::fuzz_target;
use selene_persist_engine::io::StdFs;
use selene_persist_engine::snapshot::SnapshotReader;

fuzz_target!(|bytes: &[u8]| {
    let dir = std::env::temp_dir().join(format!("selene-persist-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("snapshot.1.snap");
    std::fs::write(&path, bytes).unwrap();
    if let Ok(reader) = SnapshotReader::open(&StdFs, &path) {
        let _ = reader.verify();
        for section in reader.sections().to_vec() {
            let _ = reader.read(&section.name);
        }
    }
});
