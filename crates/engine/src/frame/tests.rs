use proptest::prelude::*;

use super::*;

fn encode(fields: &FrameFields<'_>, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, fields, payload);
    out
}

fn header_of(bytes: &[u8]) -> Result<FrameHeader, Defect> {
    decode_header(bytes[..FRAME_HEADER_LEN].try_into().unwrap(), 0)
}

/// Fully decode one frame: header, origin, principal, payload.
type Decoded = (FrameHeader, Origin, Option<Vec<u8>>, Vec<u8>);

fn decode(bytes: &[u8]) -> Result<Decoded, Defect> {
    let header = header_of(bytes)?;
    let extent_end = FRAME_HEADER_LEN + header.extent_len();
    let (origin, principal) = decode_extent(&header, &bytes[FRAME_HEADER_LEN..extent_end])?;
    let payload = &bytes[extent_end..];
    verify_payload(&header, payload)?;
    Ok((
        header,
        origin,
        principal.map(<[u8]>::to_vec),
        payload.to_vec(),
    ))
}

fn fields(principal: Option<&[u8]>, origin: Origin) -> FrameFields<'_> {
    FrameFields {
        sequence: 42,
        hlc: Hlc {
            seconds: 1_700_000_000,
            subseconds: 12345,
        },
        origin,
        principal,
        flags: 0,
    }
}

const REPLICATED: Origin = Origin::Replicated {
    source_node_id: 7,
    source_seq: 9,
};

#[test]
fn layout_is_pinned() {
    let bytes = encode(&fields(Some(b"ab"), REPLICATED), b"xyz");
    assert_eq!(bytes.len(), 40 + 16 + 2 + 3);
    assert_eq!(le_u32(&bytes[4..8]), 3);
    assert_eq!(le_u32(&bytes[8..12]), checksum32(b"xyz"));
    assert_eq!(le_u64(&bytes[12..20]), 42);
    assert_eq!(le_u64(&bytes[20..28]), 1_700_000_000);
    assert_eq!(le_u32(&bytes[28..32]), 12345);
    assert_eq!(bytes[32], FLAG_REPLICATED);
    assert_eq!(bytes[33], 0);
    assert_eq!(u16::from_le_bytes([bytes[34], bytes[35]]), 3);
    assert_eq!(le_u32(&bytes[36..40]), checksum32(&bytes[40..58]));
    assert_eq!(le_u64(&bytes[40..48]), 7);
    assert_eq!(le_u64(&bytes[48..56]), 9);
    assert_eq!(&bytes[56..58], b"ab");
    assert_eq!(&bytes[58..], b"xyz");
    assert_eq!(le_u32(&bytes[0..4]), checksum32(&bytes[4..40]));
}

#[test]
fn principal_none_empty_and_some_are_distinct() {
    for principal in [None, Some(&b""[..]), Some(&b"p"[..])] {
        let bytes = encode(&fields(principal, Origin::Local), b"");
        let (_, origin, decoded, payload) = decode(&bytes).unwrap();
        assert_eq!(origin, Origin::Local);
        assert_eq!(decoded.as_deref(), principal);
        assert!(payload.is_empty());
    }
}

#[test]
fn every_header_bit_flip_is_damage() {
    let good = encode(&fields(Some(b"who"), REPLICATED), b"payload");
    for byte in 0..FRAME_HEADER_LEN {
        for bit in 0..8 {
            let mut bytes = good.clone();
            bytes[byte] ^= 1 << bit;
            assert!(
                matches!(
                    header_of(&bytes),
                    Err(Defect::Damaged(Damage::HeaderChecksum))
                ),
                "byte {byte} bit {bit}"
            );
        }
    }
}

#[test]
fn every_extent_and_payload_bit_flip_is_damage() {
    let good = encode(&fields(Some(b"who"), REPLICATED), b"payload");
    for byte in FRAME_HEADER_LEN..good.len() {
        let mut bytes = good.clone();
        bytes[byte] ^= 0x10;
        let expected = if byte < FRAME_HEADER_LEN + 16 + 3 {
            Damage::ExtentChecksum
        } else {
            Damage::PayloadChecksum
        };
        match decode(&bytes) {
            Err(Defect::Damaged(d)) => assert_eq!(d, expected, "byte {byte}"),
            other => panic!("byte {byte}: {other:?}"),
        }
    }
}

#[test]
fn zero_header_is_its_own_damage() {
    assert!(matches!(
        header_of(&[0u8; 40]),
        Err(Defect::Damaged(Damage::ZeroHeader))
    ));
}

/// Rewrite header bytes and fix up the header checksum, to forge a valid-but-odd header.
fn forge(mut bytes: Vec<u8>, edit: impl Fn(&mut [u8])) -> Vec<u8> {
    edit(&mut bytes[..FRAME_HEADER_LEN]);
    let sum = checksum32(&bytes[4..FRAME_HEADER_LEN]);
    bytes[0..4].copy_from_slice(&sum.to_le_bytes());
    bytes
}

fn invalid_code(bytes: &[u8]) -> &'static str {
    match header_of(bytes) {
        Err(Defect::Invalid(e)) => e.code(),
        other => panic!("expected an invalid header, got {other:?}"),
    }
}

#[test]
fn unknown_flags_in_a_valid_header_are_unsupported_not_damage() {
    let good = encode(&fields(None, Origin::Local), b"x");
    for bit in 3..8 {
        let bytes = forge(good.clone(), |h| h[32] |= 1 << bit);
        assert_eq!(invalid_code(&bytes), "UNSUPPORTED_FRAME");
    }
}

#[test]
fn reserved_byte_must_be_zero() {
    let bytes = forge(encode(&fields(None, Origin::Local), b"x"), |h| h[33] = 1);
    assert_eq!(invalid_code(&bytes), "RESERVED_NON_ZERO");
}

#[test]
fn caps_at_and_over_the_limit() {
    let at = forge(encode(&fields(None, Origin::Local), b""), |h| {
        h[34..36].copy_from_slice(&(MAX_PRINCIPAL_LEN as u16 + 1).to_le_bytes());
        h[4..8].copy_from_slice(&(MAX_PAYLOAD_LEN as u32).to_le_bytes());
    });
    let header = header_of(&at).unwrap();
    assert_eq!(header.principal_len, Some(MAX_PRINCIPAL_LEN));
    assert_eq!(header.payload_len as usize, MAX_PAYLOAD_LEN);

    let principal_over = forge(at.clone(), |h| {
        h[34..36].copy_from_slice(&(MAX_PRINCIPAL_LEN as u16 + 2).to_le_bytes());
    });
    assert_eq!(invalid_code(&principal_over), "UNSUPPORTED_FRAME");
    let payload_over = forge(at, |h| {
        h[4..8].copy_from_slice(&(MAX_PAYLOAD_LEN as u32 + 1).to_le_bytes());
    });
    assert_eq!(invalid_code(&payload_over), "UNSUPPORTED_FRAME");
}

fn origin_strategy() -> impl Strategy<Value = Origin> {
    prop_oneof![
        Just(Origin::Local),
        (any::<u64>(), any::<u64>()).prop_map(|(n, s)| Origin::Replicated {
            source_node_id: n,
            source_seq: s
        }),
    ]
}

proptest! {
    #[test]
    fn round_trips_bit_for_bit(
        sequence in 1u64..,
        seconds in any::<u64>(),
        subseconds in any::<u32>(),
        origin in origin_strategy(),
        principal in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..=MAX_PRINCIPAL_LEN)),
        payload in proptest::collection::vec(any::<u8>(), 0..512),
        compressed in any::<bool>(),
    ) {
        let hlc = Hlc { seconds, subseconds };
        let flags = if compressed { FLAG_COMPRESSED } else { 0 };
        let f = FrameFields { sequence, hlc, origin, principal: principal.as_deref(), flags };
        let bytes = encode(&f, &payload);
        let (header, o, p, body) = decode(&bytes).unwrap();
        prop_assert_eq!(header.sequence, sequence);
        prop_assert_eq!(header.hlc, hlc);
        prop_assert_eq!(header.flags & FLAG_COMPRESSED != 0, compressed);
        prop_assert_eq!(header.frame_len(), bytes.len() as u64);
        prop_assert_eq!(o, origin);
        prop_assert_eq!(&p, &principal);
        prop_assert_eq!(&body, &payload);
        let mut again = Vec::new();
        encode_frame(&mut again, &f, &body);
        prop_assert_eq!(again, bytes);
    }
}
