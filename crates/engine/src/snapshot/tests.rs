use super::*;
use crate::io::StdFs;

fn build(
    dir: &Path,
    sequence: u64,
    sections: &[(&str, Vec<u8>, bool)],
) -> Result<PublishedSnapshot> {
    let mut builder = SnapshotBuilder::new(sequence, 1);
    for (name, bytes, compress) in sections {
        builder.add(name, bytes.clone(), *compress)?;
    }
    builder.publish(&StdFs, dir)
}

fn sample() -> Vec<(&'static str, Vec<u8>, bool)> {
    vec![
        ("users", b"alice,bob,carol".repeat(500), true),
        ("empty", Vec::new(), false),
        ("empty-compressed", Vec::new(), true),
        ("raw", (0..=255u8).collect(), false),
        ("ünïcödé name", b"x".to_vec(), true),
    ]
}

#[test]
fn many_sections_round_trip_compressed_and_not() {
    let dir = tempfile::tempdir().unwrap();
    let published = build(dir.path(), 42, &sample()).unwrap();
    assert!(published.created);
    assert_eq!(published.path, dir.path().join("snapshot.42.snap"));
    let reader = SnapshotReader::open(&StdFs, &published.path).unwrap();
    reader.verify().unwrap();
    assert_eq!(reader.sequence(), 42);
    let names: Vec<_> = reader.sections().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["users", "empty", "empty-compressed", "raw", "ünïcödé name"]
    );
    assert!(reader.sections()[0].compressed && reader.sections()[0].stored_len < 7500);
    assert!(
        !reader.sections()[3].compressed,
        "incompressible data is stored raw"
    );
    for (name, bytes, _) in sample() {
        assert_eq!(reader.read(name).unwrap(), bytes, "{name}");
    }
    assert_eq!(
        reader.read("missing").unwrap_err().code(),
        "SECTION_NOT_FOUND"
    );
    let many: Vec<(String, Vec<u8>, bool)> = (0..1000)
        .map(|i| (format!("s{i}"), vec![i as u8; i % 7], i % 2 == 0))
        .collect();
    let borrowed: Vec<(&str, Vec<u8>, bool)> = many
        .iter()
        .map(|(n, b, c)| (n.as_str(), b.clone(), *c))
        .collect();
    let reader =
        SnapshotReader::open(&StdFs, &build(dir.path(), 43, &borrowed).unwrap().path).unwrap();
    reader.verify().unwrap();
    assert_eq!(reader.read("s999").unwrap(), vec![231u8; 5]);
}

#[test]
fn an_empty_snapshot_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let reader = SnapshotReader::open(&StdFs, &build(dir.path(), 1, &[]).unwrap().path).unwrap();
    reader.verify().unwrap();
    assert!(reader.sections().is_empty());
}

#[test]
fn builder_rejects_duplicates_bad_names_and_oversize() {
    let mut builder = SnapshotBuilder::new(1, 1);
    builder.add("a", vec![1], false).unwrap();
    assert_eq!(
        builder.add("a", vec![2], false).unwrap_err().code(),
        "DUPLICATE_SECTION"
    );
    assert_eq!(
        builder.add("", vec![], false).unwrap_err().code(),
        "INVALID_ARGUMENT"
    );
    assert_eq!(
        builder
            .add(&"n".repeat(256), vec![], false)
            .unwrap_err()
            .code(),
        "INVALID_ARGUMENT"
    );
    builder.add(&"n".repeat(255), vec![], false).unwrap();
    assert_eq!(
        builder
            .add("big", vec![0; MAX_SECTION_LEN + 1], false)
            .unwrap_err()
            .code(),
        "SNAPSHOT_TOO_LARGE"
    );
    let mut full = SnapshotBuilder::new(1, 1);
    for i in 0..MAX_SECTIONS {
        full.add(&i.to_string(), Vec::new(), false).unwrap();
    }
    assert_eq!(
        full.add("one more", Vec::new(), false).unwrap_err().code(),
        "SNAPSHOT_TOO_LARGE"
    );
}

#[test]
fn every_body_byte_flip_is_a_hash_mismatch_and_section_reads_catch_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let path = build(dir.path(), 7, &sample()).unwrap().path;
    let good = std::fs::read(&path).unwrap();
    let reader = SnapshotReader::open(&StdFs, &path).unwrap();
    assert_eq!(
        reader.contents().unwrap(),
        good,
        "contents: the file, byte for byte"
    );
    for byte in HEADER_LEN..good.len() {
        let mut bad = good.clone();
        bad[byte] ^= 0x04;
        std::fs::write(&path, &bad).unwrap();
        match SnapshotReader::open(&StdFs, &path) {
            // Table damage may already be caught as a malformed layout.
            Err(e) => assert_eq!(e.code(), "SNAPSHOT_CORRUPT", "byte {byte}"),
            Ok(reader) => {
                assert_eq!(
                    reader.verify().unwrap_err().code(),
                    "BODY_HASH_MISMATCH",
                    "byte {byte}"
                );
                assert_eq!(
                    reader.contents().unwrap_err().code(),
                    "BODY_HASH_MISMATCH",
                    "contents, byte {byte}"
                );
            }
        }
    }
    let mut bad = good.clone();
    *bad.last_mut().unwrap() ^= 1;
    std::fs::write(&path, &bad).unwrap();
    let reader = SnapshotReader::open(&StdFs, &path).unwrap();
    assert_eq!(
        reader.read("ünïcödé name").unwrap_err().code(),
        "CHECKSUM_MISMATCH"
    );
}

#[test]
fn header_damage_foreign_files_and_truncation_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let path = build(dir.path(), 7, &sample()).unwrap().path;
    let good = std::fs::read(&path).unwrap();
    for byte in 8..HEADER_LEN {
        let mut bad = good.clone();
        bad[byte] ^= 0x80;
        std::fs::write(&path, &bad).unwrap();
        assert_eq!(
            SnapshotReader::open(&StdFs, &path).unwrap_err().code(),
            "CHECKSUM_MISMATCH",
            "byte {byte}"
        );
    }
    let mut newer = good.clone();
    newer[4] = 2;
    std::fs::write(&path, &newer).unwrap();
    assert_eq!(
        SnapshotReader::open(&StdFs, &path).unwrap_err().code(),
        "UNSUPPORTED_VERSION"
    );
    std::fs::write(&path, b"SPWL is a WAL, not a snapshot").unwrap();
    assert_eq!(
        SnapshotReader::open(&StdFs, &path).unwrap_err().code(),
        "MAGIC_MISMATCH"
    );
    for len in [0, 3, 10, 47] {
        std::fs::write(&path, &good[..len]).unwrap();
        let code = SnapshotReader::open(&StdFs, &path).unwrap_err().code();
        assert_eq!(code, "TRUNCATED_HEADER", "length {len}");
    }
    for len in [HEADER_LEN, HEADER_LEN + 10, good.len() - 1] {
        std::fs::write(&path, &good[..len]).unwrap();
        let outcome = SnapshotReader::open(&StdFs, &path).and_then(|r| r.verify());
        assert!(
            matches!(
                outcome.unwrap_err().code(),
                "SNAPSHOT_CORRUPT" | "BODY_HASH_MISMATCH"
            ),
            "length {len}"
        );
    }
}

#[test]
fn publishing_never_clobbers_a_different_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 9, &sample()).unwrap();
    let again = build(dir.path(), 9, &sample()).unwrap();
    assert!(
        !again.created,
        "identical content is accepted as already published"
    );
    let err = build(dir.path(), 9, &[("other", vec![1], false)]).unwrap_err();
    assert_eq!(err.code(), "ARTIFACT_CONFLICT");
    let reader = SnapshotReader::open(&StdFs, &dir.path().join("snapshot.9.snap")).unwrap();
    assert_eq!(reader.sections().len(), sample().len());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no temp files left: {leftovers:?}");
}
