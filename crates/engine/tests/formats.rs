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

/// A WAL written by an earlier build (WAL 1.0, format v3 frames) opens in place: a writer reads
/// and appends to it in v3 frames, a reader reads both, and the next rotation with nothing to
/// carry over writes a WAL 2.0 file of batch frames.
#[test]
fn a_format_v3_wal_opens_replays_appends_and_rotates_into_v4() {
    use selene_persist_engine::file_header::Layout;
    use selene_persist_engine::frame::{FrameFields, encode_frame};
    use selene_persist_engine::{Origin, WalOptions, WalWriter};
    let (_dir, path) = common::fresh_wal();
    let mut bytes = FileHeader {
        snapshot_seq: 0,
        layout: Layout::V3,
    }
    .encode()
    .to_vec();
    for sequence in 1..=3 {
        let fields = FrameFields {
            sequence,
            hlc: Hlc {
                seconds: 1_700_000_000,
                subseconds: u32::try_from(sequence).unwrap(),
            },
            origin: Origin::Local,
            principal: None,
            flags: 0,
        };
        encode_frame(&mut bytes, &fields, &common::payload_for(sequence));
    }
    std::fs::write(&path, &bytes).unwrap();
    let mut writer = WalWriter::open(&common::fs(), &path, WalOptions::default()).unwrap();
    assert_eq!(writer.last_sequence(), 3);
    writer
        .append(&[common::entry(&common::payload_for(4))])
        .unwrap();
    // A v3 frame has no room for a producer stamp.
    let stamped = selene_persist_engine::NewEntry {
        producer: Some(selene_persist_engine::Producer {
            id: 1,
            epoch: 0,
            seq: 0,
        }),
        ..common::entry(b"stamped")
    };
    assert_eq!(
        writer.append(&[stamped]).unwrap_err().code(),
        "INVALID_ARGUMENT"
    );
    // Appended as a 40-byte-header frame: the file stays WAL 1.0.
    let len = (bytes.len() + 40 + common::payload_for(4).len()) as u64;
    assert_eq!(writer.committed_offset(), len);
    common::assert_standard_entries(&common::read_all(&path).unwrap(), 1, 4);
    // A rotation at the last entry carries nothing over: the new file is WAL 2.0.
    writer.reset(4, len).unwrap();
    writer
        .append(&[common::entry(&common::payload_for(5))])
        .unwrap();
    writer.close().unwrap();
    let rotated = std::fs::read(&path).unwrap();
    assert_eq!(FileHeader::decode(&rotated).unwrap(), FileHeader::new(4));
    let read = common::read_all(&path).unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].sequence, 5);
    assert_eq!(&read[0].payload[..], &common::payload_for(5)[..]);
}
