//! What the I/O layer costs on the hot path: the same 128-byte positional write, directly on
//! `std::fs::File` and through `dyn VfsFile`, in one run. `cargo bench -p selene-persist-engine`.
#![allow(missing_docs)]

use std::fs::File;
use std::hint::black_box;
use std::os::unix::fs::FileExt;

use criterion::{Criterion, criterion_group, criterion_main};
use selene_persist_engine::io::{OpenMode, StdFs, Vfs};

const RECORD: [u8; 128] = [7; 128];
const WRAP: u64 = 64 << 20;

fn writes(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("write_128_bytes");
    let direct = File::create(dir.path().join("direct")).unwrap();
    let mut offset = 0;
    group.bench_function("std::fs::File::write_all_at", |b| {
        b.iter(|| {
            direct.write_all_at(black_box(&RECORD), offset).unwrap();
            offset = (offset + 128) % WRAP;
        });
    });
    let mut layered = StdFs
        .open(&dir.path().join("layered"), OpenMode::CreateNew)
        .unwrap();
    let mut offset = 0;
    group.bench_function("dyn VfsFile::write_all_at", |b| {
        b.iter(|| {
            layered.write_all_at(black_box(&RECORD), offset).unwrap();
            offset = (offset + 128) % WRAP;
        });
    });
    group.finish();
}

criterion_group!(benches, writes);
criterion_main!(benches);
