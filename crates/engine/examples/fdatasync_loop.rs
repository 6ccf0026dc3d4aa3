//! The physical limit for one durable append at a time: write N records of SIZE bytes with an
//! fdatasync after each, to a growing file and to a preallocated one. Prints JSON: each loop's
//! rate, and the median time of one `pwrite` + `fdatasync` in the preallocated file (W2's
//! group-commit limit is 64 records per such round trip).
//! `cargo run --release --example fdatasync_loop -- DIR [N] [SIZE]`
#![allow(missing_docs)]

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::time::Instant;

/// The loop's rate, per second, and the median time of one write and fdatasync, microseconds.
fn rate(file: &File, count: u64, size: usize) -> (f64, f64) {
    let record = vec![7u8; size];
    let mut each = Vec::with_capacity(count as usize);
    let start = Instant::now();
    for i in 0..count {
        let t = Instant::now();
        file.write_all_at(&record, i * size as u64).unwrap();
        file.sync_data().unwrap();
        each.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let rate = count as f64 / start.elapsed().as_secs_f64();
    each.sort_by(f64::total_cmp);
    (rate, each[each.len() / 2])
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).expect("DIR"));
    let count: u64 = args.get(2).map_or(2000, |n| n.parse().unwrap());
    let size: usize = args.get(3).map_or(128, |n| n.parse().unwrap());
    let open = |name: &str| {
        OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(dir.join(name))
            .unwrap()
    };
    let growing = open("raw-growing");
    let (appending, _) = rate(&growing, count, size);
    let preallocated_file = open("raw-preallocated");
    preallocated_file
        .write_all_at(&vec![0u8; count as usize * size], 0)
        .unwrap();
    preallocated_file.sync_all().unwrap();
    let (preallocated, p50_us) = rate(&preallocated_file, count, size);
    let fallocated_file = open("raw-fallocated");
    rustix::fs::fallocate(
        &fallocated_file,
        rustix::fs::FallocateFlags::empty(),
        0,
        count * size as u64,
    )
    .unwrap();
    fallocated_file.sync_all().unwrap();
    let (fallocated, _) = rate(&fallocated_file, count, size);
    println!(
        "{{\"appending\":{appending:.0},\"preallocated\":{preallocated:.0},\"fallocated\":{fallocated:.0},\"p50_us\":{p50_us:.1}}}"
    );
}
