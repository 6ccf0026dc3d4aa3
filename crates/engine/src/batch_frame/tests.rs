use proptest::prelude::*;

use super::*;

fn hlc(ticks: u128) -> Hlc {
    Hlc::from_ticks(ticks)
}

/// Owned record fields, for generated groups.
#[derive(Clone, Debug)]
struct Owned {
    ticks: u128,
    origin: Origin,
    principal: Option<Vec<u8>>,
    stored: Vec<u8>,
    compressed: bool,
    watermark: bool,
}

impl Owned {
    fn view(&self) -> Record<'_> {
        Record {
            hlc: hlc(self.ticks),
            origin: self.origin,
            principal: self.principal.as_deref(),
            producer: None,
            stored: &self.stored,
            compressed: self.compressed,
            watermark: self.watermark,
        }
    }
}

fn encode(base: u64, owned: &[Owned]) -> Vec<u8> {
    let records: Vec<_> = owned.iter().map(Owned::view).collect();
    let mut out = Vec::new();
    encode_batch(&mut out, base, &records).unwrap();
    out
}

/// A small, varied group: every flag, both origins, a principal, HLCs out of order.
fn sample() -> Vec<Owned> {
    let t0 = 1_700_000_000u128 << 32;
    (0..6u8)
        .map(|i| Owned {
            ticks: t0 + [5, 0, 6, 4_295_000, 1, 7][usize::from(i)],
            origin: if i % 2 == 1 {
                Origin::Replicated {
                    source_node_id: 7,
                    source_seq: 1000 + u64::from(i),
                }
            } else {
                Origin::Local
            },
            principal: (i % 3 == 0).then(|| b"alice".to_vec()),
            stored: if i == 4 {
                Vec::new()
            } else {
                vec![i; 9 + usize::from(i) * 3]
            },
            compressed: i == 2,
            watermark: i == 4,
        })
        .collect()
}

fn assert_same(decoded: &[Record<'_>], owned: &[Owned]) {
    let expected: Vec<_> = owned.iter().map(Owned::view).collect();
    assert_eq!(decoded, expected.as_slice());
}

fn record_strategy() -> impl Strategy<Value = Owned> {
    let gap = prop_oneof![
        Just(0u128),
        0..128u128,
        0..(1u128 << 32),
        (any::<u64>(), any::<u32>()).prop_map(|(s, f)| (u128::from(s) << 32) | u128::from(f)),
    ];
    let origin = prop_oneof![
        Just(Origin::Local),
        (any::<u64>(), any::<u64>()).prop_map(|(source_node_id, source_seq)| Origin::Replicated {
            source_node_id,
            source_seq
        }),
    ];
    let principal = prop::option::of(prop::collection::vec(any::<u8>(), 0..=MAX_PRINCIPAL_LEN));
    let stored = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        prop::collection::vec(any::<u8>(), 0..4096),
    ];
    (gap, origin, principal, stored, any::<bool>(), any::<bool>()).prop_map(
        |(gap, origin, principal, stored, compressed, watermark)| Owned {
            // Gaps from a base, so the group's HLCs are in any order and may span all 96 bits.
            ticks: gap.min(MAX_HLC_TICKS),
            origin,
            principal,
            stored,
            compressed,
            watermark,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_group_round_trips(
        owned in prop::collection::vec(record_strategy(), 1..300),
        base in 0..u64::MAX - 300,
        prefix in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        let records: Vec<_> = owned.iter().map(Owned::view).collect();
        let mut out = prefix.clone();
        let range = encode_batch(&mut out, base, &records).unwrap();
        prop_assert_eq!(range.start, prefix.len());
        prop_assert_eq!(range.end, out.len());
        // Trailing bytes are not part of the frame.
        out.extend_from_slice(&[0xAB; 5]);
        let batch = decode_batch(&out[range.start..], 0).unwrap();
        prop_assert_eq!(batch.len, range.len());
        prop_assert_eq!(batch.base_sequence, base);
        prop_assert_eq!(batch.sequences(), base..=base + owned.len() as u64 - 1);
        assert_same(&batch.records, &owned);
        let salvaged = salvage_batch(&out[range.start..], 0).unwrap();
        prop_assert_eq!(salvaged.len, Some(range.len()));
        let intact: Vec<_> = salvaged.records.into_iter().map(std::result::Result::unwrap).collect();
        assert_same(&intact, &owned);
    }

    #[test]
    fn arbitrary_bytes_never_panic_nor_outgrow_the_input(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        if let Ok(batch) = decode_batch(&bytes, 0) {
            prop_assert!(batch.len <= bytes.len());
        }
        if let Ok(salvaged) = salvage_batch(&bytes, 0) {
            prop_assert!(salvaged.records.len() <= bytes.len());
        }
    }
}

#[test]
fn every_truncation_is_short_and_salvage_never_returns_an_unwritten_record() {
    let owned = sample();
    let full = encode(41, &owned);
    let batch = decode_batch(&full, 0).unwrap();
    let ends: Vec<usize> = {
        // Where each record's bytes end: the frame length minus the records after it.
        let head = read_head(&full, 0).unwrap();
        head.records().map(|(_, range)| range.end).collect()
    };
    assert_eq!(*ends.last().unwrap(), batch.len);
    for cut in 0..full.len() {
        let torn = &full[..cut];
        assert!(
            matches!(decode_batch(torn, 0), Err(Defect::Damaged(Damage::Short))),
            "cut at {cut}"
        );
        if let Ok(salvaged) = salvage_batch(torn, 0) {
            assert_eq!(salvaged.len, None);
            for (i, record) in salvaged.records.iter().enumerate() {
                match record {
                    Ok(record) => {
                        assert!(ends[i] <= cut, "record {i} returned from a cut at {cut}");
                        assert_eq!(*record, owned[i].view());
                    }
                    Err(defect) => {
                        assert!(ends[i] > cut, "record {i} lost at cut {cut}");
                        assert!(matches!(defect, Defect::Damaged(Damage::Short)));
                    }
                }
            }
        }
    }
    // A zero-filled header is the clean end, not damage.
    assert!(matches!(
        decode_batch(&[0; 64], 0),
        Err(Defect::Damaged(Damage::ZeroHeader))
    ));
}

#[test]
fn every_flipped_bit_is_detected_and_costs_its_record_at_most() {
    let owned = sample();
    let good = encode(41, &owned);
    let head = read_head(&good, 0).unwrap();
    let ranges: Vec<_> = head.records().map(|(_, range)| range).collect();
    let mut collisions = 0;
    for bit in 0..good.len() * 8 {
        let mut bad = good.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        assert!(
            decode_batch(&bad, 0).is_err(),
            "flip of bit {bit} not detected"
        );
        let byte = bit / 8;
        let Some(hit) = ranges.iter().position(|r| r.contains(&byte)) else {
            // In the head: the batch is lost as a whole and no record is offered.
            assert!(salvage_batch(&bad, 0).is_err(), "head flip at bit {bit}");
            continue;
        };
        let salvaged = salvage_batch(&bad, 0).unwrap();
        if salvaged
            .records
            .iter()
            .all(|r| matches!(r, Err(Defect::Damaged(Damage::BodyChecksum))))
        {
            // The damaged record's 16-bit check collided: the batch is refused whole.
            collisions += 1;
            continue;
        }
        for (i, record) in salvaged.records.iter().enumerate() {
            if i == hit {
                assert!(
                    matches!(record, Err(Defect::Damaged(Damage::RecordChecksum))),
                    "bit {bit} in record {i}: {record:?}"
                );
            } else {
                assert_eq!(record.as_ref().unwrap(), &owned[i].view(), "bit {bit}");
            }
        }
    }
    // The 16-bit check collides about once in 65536 flips; this group has ~1400 record bits.
    assert_eq!(collisions, 0);
}

/// A batch frame built by hand: `head` bytes 4..32 as given, then `table`, then `body`, with a
/// valid head checksum, so the checks after the checksum can be reached.
fn with_head_checksum(fixed: [u8; BATCH_HEADER_LEN], table: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = fixed.to_vec();
    out.extend_from_slice(table);
    let sum = checksum32(&out[4..]);
    out[0..4].copy_from_slice(&sum.to_le_bytes());
    out.extend_from_slice(body);
    out
}

fn fixed(version: u8, flags: u8, count: u16, base_sequence: u64) -> [u8; BATCH_HEADER_LEN] {
    let mut head = [0u8; BATCH_HEADER_LEN];
    head[4] = version;
    head[5] = flags;
    head[6..8].copy_from_slice(&count.to_le_bytes());
    head[12..20].copy_from_slice(&base_sequence.to_le_bytes());
    head
}

fn unsupported(result: std::result::Result<Batch<'_>, Defect>) -> String {
    match result {
        Err(Defect::Invalid(error)) => error.code().to_owned(),
        other => panic!("expected a typed refusal, got {other:?}"),
    }
}

#[test]
fn hostile_heads_fail_within_the_input() {
    // A count the bytes cannot hold: short at once, nothing allocated for it.
    let bytes = fixed(FRAME_VERSION, 0, u16::MAX, 1);
    let mut bytes = bytes.to_vec();
    bytes[0] = 1;
    assert!(matches!(
        decode_batch(&bytes, 0),
        Err(Defect::Damaged(Damage::Short))
    ));
    // Record lengths up to u64::MAX (10-byte varints), checksum valid: refused, not allocated.
    let mut table = vec![0xff; 9];
    table.push(0x01);
    let huge = with_head_checksum(fixed(FRAME_VERSION, 0, 1, 1), &table, &[]);
    assert_eq!(unsupported(decode_batch(&huge, 0)), "UNSUPPORTED_FRAME");
    // An 11-byte varint: no checksum can be computed over a table that does not parse.
    let mut table = vec![0xff; 10];
    table.push(0x01);
    let overlong = with_head_checksum(fixed(FRAME_VERSION, 0, 1, 1), &table, &[]);
    assert!(matches!(
        decode_batch(&overlong, 0),
        Err(Defect::Damaged(Damage::HeaderChecksum))
    ));
    // Many maximal records whose lengths pass every cap but not the bytes given: short.
    let max_entry = {
        let mut entry = Vec::new();
        put_varint(&mut entry, (MAX_RECORD_LEN as u64) << RECORD_FLAG_BITS);
        entry
    };
    let table: Vec<u8> = max_entry
        .iter()
        .copied()
        .cycle()
        .take(max_entry.len() * 100)
        .collect();
    let big = with_head_checksum(fixed(FRAME_VERSION, 0, 100, 1), &table, &[1, 2, 3]);
    assert!(matches!(
        decode_batch(&big, 0),
        Err(Defect::Damaged(Damage::Short))
    ));
    let salvaged = salvage_batch(&big, 0).unwrap();
    assert!(
        salvaged
            .records
            .iter()
            .all(|r| matches!(r, Err(Defect::Damaged(Damage::Short))))
    );
    // Checksum-valid but refused, each with its stable code.
    let one = [3 << RECORD_FLAG_BITS];
    let cases = [
        (fixed(5, 0, 1, 1), "UNSUPPORTED_VERSION"),
        (
            fixed(FRAME_VERSION, BATCH_FLAG_ENCRYPTED, 1, 1),
            "UNSUPPORTED_FRAME",
        ),
        (fixed(FRAME_VERSION, 0x80, 1, 1), "UNSUPPORTED_FRAME"),
        (fixed(FRAME_VERSION, 0, 2, u64::MAX), "UNSUPPORTED_FRAME"),
    ];
    for (head, code) in cases {
        let count = usize::from(u16::from_le_bytes([head[6], head[7]]));
        let bytes = with_head_checksum(head, &one.repeat(count), &[0; 16]);
        assert_eq!(unsupported(decode_batch(&bytes, 0)), code);
    }
    let empty = with_head_checksum(fixed(FRAME_VERSION, 0, 0, 1), &[], &[]);
    assert_eq!(unsupported(decode_batch(&empty, 0)), "UNSUPPORTED_FRAME");
}

#[test]
fn a_record_whose_check_holds_but_whose_fields_overrun_is_refused() {
    // A principal length past the record, sealed with a valid check and body checksum.
    let content = [0u8, 0xff, 0x0f, 1, 2];
    let hash = xxh3_64_with_seed(&content, 1);
    let mut body = content.to_vec();
    body.extend_from_slice(&check16(hash).to_le_bytes());
    let mut head = fixed(FRAME_VERSION, 0, 1, 1);
    head[8..12].copy_from_slice(&checksum32(&hash.to_le_bytes()).to_le_bytes());
    let mut entry = Vec::new();
    put_varint(
        &mut entry,
        ((body.len() as u64) << RECORD_FLAG_BITS) | u64::from(FLAG_PRINCIPAL),
    );
    let bytes = with_head_checksum(head, &entry, &body);
    assert_eq!(unsupported(decode_batch(&bytes, 0)), "UNSUPPORTED_FRAME");
}

#[test]
fn the_encoder_refuses_what_it_cannot_frame() {
    let mut out = vec![9];
    let code = |r: Result<Range<usize>>| r.unwrap_err().code();
    assert_eq!(code(encode_batch(&mut out, 1, &[])), "INVALID_ARGUMENT");
    let many = vec![Record::default(); MAX_BATCH_RECORDS + 1];
    assert_eq!(code(encode_batch(&mut out, 1, &many)), "INVALID_ARGUMENT");
    assert_eq!(
        code(encode_batch(&mut out, u64::MAX, &many[..2])),
        "SEQUENCE_EXHAUSTED"
    );
    let principal = vec![0; MAX_PRINCIPAL_LEN + 1];
    let record = Record {
        principal: Some(&principal),
        ..Record::default()
    };
    assert_eq!(
        code(encode_batch(&mut out, 1, &[record])),
        "PRINCIPAL_TOO_LARGE"
    );
    assert_eq!(out, [9]);
    // The largest batch is accepted.
    let range = encode_batch(&mut out, 1, &many[..MAX_BATCH_RECORDS]).unwrap();
    assert_eq!(
        decode_batch(&out[range], 0).unwrap().records.len(),
        MAX_BATCH_RECORDS
    );
}

/// The overhead goal of issue 29: at most 40 bytes for a group of one 128-byte entry, at most 8
/// a entry from 16 on (v3: 40 a entry). Printed for the report (`--nocapture`).
#[test]
fn bytes_per_entry_meet_the_goal() {
    let payload = [b'x'; 128];
    let t0 = 1_764_000_000u128 << 32;
    for (label, spacing) in [
        ("one append (consecutive ticks)", 1),
        ("separate appends 1 us apart", 4295),
    ] {
        for n in [1u128, 16, 64, 256] {
            let owned: Vec<Owned> = (0..n)
                .map(|i| Owned {
                    ticks: t0 + i * spacing,
                    origin: Origin::Local,
                    principal: None,
                    stored: payload.to_vec(),
                    compressed: false,
                    watermark: false,
                })
                .collect();
            let bytes = encode(1, &owned);
            #[allow(clippy::cast_precision_loss)]
            let per_entry = (bytes.len() - 128 * n as usize) as f64 / n as f64;
            println!("{label}: group of {n:>3} x 128 B: {per_entry:.2} B/entry overhead (v3: 40)");
            if spacing == 1 {
                assert!(if n == 1 {
                    per_entry <= 40.0
                } else {
                    per_entry <= 8.0
                });
            }
        }
    }
}

#[test]
fn a_damaged_record_whose_check_collides_is_caught_by_the_body_checksum() {
    let owned = sample();
    let good = encode(41, &owned);
    let head = read_head(&good, 0).unwrap();
    let (sequence, range) = head.records().nth(3).unwrap();
    let check_at = range.end - CHECK_LEN;
    // Search two payload bytes of record 3 for a change its 16-bit check does not see.
    let mut bad = good.clone();
    let found = (1..=u16::MAX).any(|change| {
        bad[check_at - 2..check_at].copy_from_slice(&change.to_le_bytes());
        bad[check_at - 2..check_at] != good[check_at - 2..check_at]
            && record_hash(&bad[range.clone()], sequence).is_some()
    });
    assert!(found, "no colliding change in 65535 tries");
    assert!(matches!(
        decode_batch(&bad, 0),
        Err(Defect::Damaged(Damage::BodyChecksum))
    ));
    // No record can be told intact: none is offered.
    let salvaged = salvage_batch(&bad, 0).unwrap();
    assert!(
        salvaged
            .records
            .iter()
            .all(|r| matches!(r, Err(Defect::Damaged(Damage::BodyChecksum))))
    );
}

#[test]
fn a_record_moved_to_another_sequence_fails_its_check() {
    // Two records of the same length and flags, swapped: each check is seeded by its sequence.
    let mut owned = sample();
    owned.truncate(2);
    owned[1] = Owned {
        origin: Origin::Local,
        principal: owned[0].principal.clone(),
        stored: vec![7; owned[0].stored.len()],
        ..owned[0].clone()
    };
    let good = encode(41, &owned);
    let head = read_head(&good, 0).unwrap();
    let ranges: Vec<_> = head.records().map(|(_, range)| range).collect();
    assert_eq!(ranges[0].len(), ranges[1].len());
    let mut swapped = good[..ranges[0].start].to_vec();
    swapped.extend_from_slice(&good[ranges[1].clone()]);
    swapped.extend_from_slice(&good[ranges[0].clone()]);
    assert!(matches!(
        decode_batch(&swapped, 0),
        Err(Defect::Damaged(Damage::RecordChecksum))
    ));
}

#[test]
fn a_zero_filled_record_never_passes_its_check() {
    // A lost sector reads back as zeros: whatever the record's length and sequence, zeros are
    // never taken for an intact record (no encoder writes a zero check).
    for len in MIN_RECORD_LEN..12 {
        let zeros = vec![0; len];
        for sequence in 0..20_000 {
            assert_eq!(
                record_hash(&zeros, sequence),
                None,
                "len {len}, seq {sequence}"
            );
        }
    }
}

#[test]
fn a_producer_stamp_round_trips_and_its_damage_costs_its_record() {
    let producer = Some(Producer {
        id: 1 << 40,
        epoch: 7,
        seq: 0,
    });
    let records = [
        Record {
            producer,
            stored: b"stamped",
            ..Record::default()
        },
        Record {
            stored: b"plain",
            ..Record::default()
        },
    ];
    let mut out = Vec::new();
    encode_batch(&mut out, 10, &records).unwrap();
    let batch = decode_batch(&out, 0).unwrap();
    assert_eq!(batch.records, records);
    assert_eq!(batch.records[0].flags() & FLAG_PRODUCER, FLAG_PRODUCER);
    // A byte of the first record's stamp flipped: salvage keeps the second record.
    let stamp_at = out.len() - (2 + 5 + 1) - (2 + 7 + 3);
    out[stamp_at] ^= 1;
    let salvaged = salvage_batch(&out, 0).unwrap();
    assert!(salvaged.records[0].is_err());
    assert_eq!(salvaged.records[1].as_ref().unwrap().stored, b"plain");
}

#[test]
fn a_spliced_batch_is_the_batch_with_its_payloads_left_out() {
    let owned = sample();
    let records: Vec<_> = owned.iter().map(Owned::view).collect();
    let whole = encode(5, &owned);
    let mut out = Vec::new();
    let mut spliced = Vec::new();
    encode_batch_spliced(&mut out, 5, &records, 12, &mut spliced).unwrap();
    assert!(!spliced.is_empty() && spliced.len() < records.len());
    let mut joined = Vec::new();
    let mut from = 0;
    for &(at, index) in &spliced {
        joined.extend_from_slice(&out[from..at]);
        joined.extend_from_slice(records[index].stored);
        from = at;
    }
    joined.extend_from_slice(&out[from..]);
    assert_eq!(joined, whole);
}
