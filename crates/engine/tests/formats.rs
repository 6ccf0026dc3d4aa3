//! One version constant per format: what each encoder writes is its format's constant, and what
//! each decoder accepts is that constant and nothing else, so raising it changes both at once.

mod common;

use std::path::Path;

use selene_persist_engine::file_header::{FileHeader, Format, WAL_FORMAT};
use selene_persist_engine::hlc::Hlc;
use selene_persist_engine::manifest::{self, Manifest};
use selene_persist_engine::seal::{self, LastFrame, Seal};
use selene_persist_engine::snapshot::{self, SnapshotBuilder, SnapshotReader};

/// `encoded` opens with `format`'s identity; with its major or its minor version raised, the
/// decoder refuses it with the found and the supported versions, and `decode` accepts the
/// original.
fn check(format: Format, encoded: &[u8], decode: &dyn Fn(&[u8]) -> Result<(), String>) {
    assert_eq!(&encoded[0..4], &format.magic, "{}", format.name);
    assert_eq!(
        &encoded[4..6],
        &format.major.to_le_bytes(),
        "{}",
        format.name
    );
    assert_eq!(
        &encoded[6..8],
        &format.minor.to_le_bytes(),
        "{}",
        format.name
    );
    decode(encoded).unwrap_or_else(|e| panic!("{}: {e}", format.name));
    for (at, bumped) in [(4, format.major + 1), (6, format.minor + 1)] {
        let mut newer = encoded.to_vec();
        newer[at..at + 2].copy_from_slice(&bumped.to_le_bytes());
        let error = decode(&newer).expect_err(format.name);
        let reads = format!("reads {}.{}", format.major, format.minor);
        assert!(
            error.contains(&reads) || error == "refused",
            "{}: {error}",
            format.name
        );
    }
}

#[test]
fn the_wal_header_writes_and_reads_wal_format() {
    let encoded = FileHeader::new(7).encode();
    check(WAL_FORMAT, &encoded, &|b| {
        FileHeader::decode(b).map(drop).map_err(|e| e.to_string())
    });
}

#[test]
fn the_manifest_writes_and_reads_its_format() {
    let encoded = Manifest {
        live_snapshot_seq: 4,
        active_wal_seq: 4,
        archives: vec![2, 4],
    }
    .encode();
    check(manifest::FORMAT, &encoded, &|b| {
        Manifest::decode(b, Path::new("MANIFEST"))
            .map(drop)
            .map_err(|e| e.to_string())
    });
}

#[test]
fn the_seal_writes_and_reads_its_format() {
    let encoded = Seal {
        snapshot_seq: 1,
        end: 100,
        last: LastFrame {
            offset: 24,
            sequence: 2,
            header_checksum: 3,
            first_sequence: 2,
        },
        clock: Hlc {
            seconds: 5,
            subseconds: 6,
        },
    }
    .encode();
    // A seal is a hint: a decoder that refuses it says only that.
    check(seal::FORMAT, &encoded, &|b| {
        Seal::decode(b).map(drop).ok_or_else(|| "refused".into())
    });
}

#[test]
fn the_snapshot_writes_and_reads_its_format() {
    let dir = tempfile::tempdir().unwrap();
    let mut builder = SnapshotBuilder::new(3, 1);
    builder.add("s", b"state".to_vec(), false).unwrap();
    let published = builder.publish(common::fs().as_ref(), dir.path()).unwrap();
    let encoded = std::fs::read(&published.path).unwrap();
    let decode = |bytes: &[u8]| {
        let path = dir.path().join("probe.snap");
        std::fs::write(&path, bytes).unwrap();
        SnapshotReader::open(common::fs().as_ref(), &path)
            .map(drop)
            .map_err(|e| e.to_string())
    };
    check(snapshot::FORMAT, &encoded, &decode);
}
