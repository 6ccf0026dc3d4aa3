use super::*;
use crate::batch_frame::Record;
use crate::frame::Origin;
use crate::hlc::Hlc;
use crate::scan::encode_records;

/// Entries `first..first + n` as a writer's commit of them holds them: a local entry with a
/// principal, a replicated one, and a watermark, in turn.
fn frames(first: u64, n: u64) -> (Vec<u8>, Vec<Frame>) {
    let payloads: Vec<String> = (first..first + n).map(|s| format!("entry {s}")).collect();
    let records: Vec<Record<'_>> = (first..first + n)
        .zip(&payloads)
        .map(|(sequence, payload)| Record {
            hlc: Hlc {
                seconds: sequence,
                subseconds: 7,
            },
            origin: if sequence % 3 == 1 {
                Origin::Replicated {
                    source_node_id: 9,
                    source_seq: sequence * 10,
                }
            } else {
                Origin::Local
            },
            principal: (sequence % 3 == 0).then_some(b"alice".as_slice()),
            producer: (sequence % 2 == 0).then_some(crate::frame::Producer {
                id: 77,
                epoch: 2,
                seq: sequence,
            }),
            stored: if sequence % 3 == 2 {
                b""
            } else {
                payload.as_bytes()
            },
            compressed: false,
            watermark: sequence % 3 == 2,
        })
        .collect();
    // As a shipment holds them: the last entry a batch of its own.
    let mut wal = Vec::new();
    let (last, before) = records.split_last().unwrap();
    encode_records(&mut wal, first, before).unwrap();
    encode_records(&mut wal, first + n - 1, std::slice::from_ref(last)).unwrap();
    let mut parsed = Vec::new();
    let mut at = 0;
    while at < wal.len() {
        let (batch, len) = batch_in(&wal, at).expect("valid batch");
        at += len;
        parsed.extend(batch);
    }
    (wal, parsed)
}

#[test]
fn frames_travel_byte_for_byte_and_decode_back() {
    let (wal, parsed) = frames(41, 6);
    let shipped = encode(7, &parsed).unwrap();
    assert_eq!(
        &shipped[HEADER_LEN..],
        &wal[..],
        "the frames as the WAL holds them"
    );
    let (header, back) = decode(&shipped).unwrap();
    assert_eq!(
        header,
        Header {
            node_id: 7,
            first: 41,
            count: 6
        }
    );
    assert_eq!(header.last(), 46);
    for (a, b) in back.iter().zip(&parsed) {
        assert_eq!(
            (
                a.sequence,
                a.hlc,
                a.flags,
                a.origin,
                &a.principal,
                a.producer,
                &a.stored
            ),
            (
                b.sequence,
                b.hlc,
                b.flags,
                b.origin,
                &b.principal,
                b.producer,
                &b.stored
            )
        );
    }
}

#[test]
fn every_damaged_byte_is_refused() {
    let (_, parsed) = frames(1, 3);
    let shipped = encode(1, &parsed).unwrap();
    for at in 0..shipped.len() {
        let mut bad = shipped.clone();
        bad[at] ^= 0x20;
        assert!(decode(&bad).is_err(), "a flipped byte at {at} was accepted");
    }
    for cut in 0..shipped.len() {
        assert!(
            decode(&shipped[..cut]).is_err(),
            "cut at {cut} was accepted"
        );
    }
    let mut longer = shipped.clone();
    longer.push(0);
    assert_eq!(decode(&longer).unwrap_err().code(), "CHECKSUM_MISMATCH");
}

#[test]
fn the_version_is_checked_before_anything_else() {
    let (_, parsed) = frames(1, 1);
    let mut shipped = encode(1, &parsed).unwrap();
    shipped[4] = 3;
    assert_eq!(decode(&shipped).unwrap_err().code(), "UNSUPPORTED_VERSION");
    shipped[0] = b'X';
    assert_eq!(decode(&shipped).unwrap_err().code(), "MAGIC_MISMATCH");
}

#[test]
fn frames_out_of_order_are_refused_both_ways() {
    let (_, mut parsed) = frames(1, 3);
    parsed.swap(1, 2);
    assert_eq!(encode(1, &parsed).unwrap_err().code(), "INVALID_ARGUMENT");
    assert_eq!(encode(1, &[]).unwrap_err().code(), "INVALID_ARGUMENT");
    // A header that claims another first sequence than its frames carry.
    let (_, parsed) = frames(5, 2);
    let mut shipped = encode(1, &parsed).unwrap();
    shipped[16..24].copy_from_slice(&4u64.to_le_bytes());
    let sum = checksum32(&shipped[0..28]);
    shipped[28..32].copy_from_slice(&sum.to_le_bytes());
    assert_eq!(decode(&shipped).unwrap_err().code(), "SEQUENCE_GAP");
}

#[test]
fn a_shipment_ends_with_the_bytes_of_a_shipment_of_its_last_entry_alone() {
    let (_, parsed) = frames(1, 9);
    let shipped = encode(3, &parsed).unwrap();
    let alone = encode(3, &parsed[8..]).unwrap();
    let tail = &alone[HEADER_LEN..];
    assert_eq!(&shipped[shipped.len() - tail.len()..], tail);
}
