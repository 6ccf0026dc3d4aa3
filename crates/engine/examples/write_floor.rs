//! The disk's floor for bulk ingest (W3): write BYTES in 1 MiB writes as fast as the page
//! cache takes them, then one fdatasync; once with no hint, once starting each MiB's
//! writeback as it is written (the writer's own call under deferred policies). No framing, no
//! checksums, no JS: what is left is the kernel and the disk. Prints JSON, in milliseconds.
//! `cargo run --release --example write_floor -- DIR [BYTES]`
#![allow(missing_docs)]

use std::path::Path;
use std::time::Instant;

use selene_persist_engine::io::{OpenMode, StdFs, Vfs};

const CHUNK: usize = 1 << 20;

fn write_then_sync(path: &Path, bytes: u64, writeback: bool) -> f64 {
    let mut file = StdFs.open(path, OpenMode::CreateNew).unwrap();
    let chunk = vec![7u8; CHUNK];
    let start = Instant::now();
    let mut at = 0u64;
    while at < bytes {
        let len = (bytes - at).min(CHUNK as u64);
        file.write_all_at(&chunk[..len as usize], at).unwrap();
        if writeback {
            file.start_writeback(at, len).unwrap();
        }
        at += len;
    }
    file.sync_data().unwrap();
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    StdFs.remove(path).unwrap();
    ms
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = Path::new(args.get(1).expect("DIR"));
    let bytes: u64 = args.get(2).map_or(168 << 20, |n| n.parse().unwrap());
    let burst = write_then_sync(&dir.join("floor-burst"), bytes, false);
    let writeback = write_then_sync(&dir.join("floor-writeback"), bytes, true);
    println!("{{\"burst\":{burst:.1},\"writeback\":{writeback:.1}}}");
}
