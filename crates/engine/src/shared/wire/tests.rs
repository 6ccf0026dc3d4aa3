use std::io::{Cursor, Write};

use super::*;

fn body_of(frame: &Bytes) -> Bytes {
    FrameReader::new(Cursor::new(frame.to_vec()))
        .next_frame()
        .unwrap()
        .unwrap()
}

#[test]
fn requests_and_answers_decode_to_what_was_encoded() {
    let packed = NewEntries::packed(Bytes::from_static(b"abcdef"), vec![1, 0, 5]).unwrap();
    let append = Request::Append {
        id: 7,
        chained: true,
        producer: Some(Producer {
            id: 3,
            epoch: 2,
            seq: 9,
        }),
        entries: packed,
    };
    match Request::decode(body_of(&append.encode())).unwrap() {
        Request::Append {
            id: 7,
            chained: true,
            producer: Some(p),
            entries: NewEntries::Packed { data, lengths },
        } => {
            assert_eq!((p.id, p.epoch, p.seq), (3, 2, 9));
            assert_eq!((&data[..], lengths), (&b"abcdef"[..], vec![1, 0, 5]));
        }
        other => panic!("{other:?}"),
    }
    let entry = NewEntry {
        payload: Bytes::from_static(b"x"),
        principal: Some(b"me".to_vec()),
        origin: Origin::Replicated {
            source_node_id: 4,
            source_seq: 5,
        },
        hlc: Some(Hlc {
            seconds: 6,
            subseconds: 7,
        }),
        producer: None,
    };
    let sync = Request::CommitNow {
        id: 8,
        entries: vec![entry.clone()],
    };
    match Request::decode(body_of(&sync.encode())).unwrap() {
        Request::CommitNow { id: 8, entries } => assert_eq!(entries, vec![entry]),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        Request::decode(body_of(&Request::Flush { id: 9 }.encode())).unwrap(),
        Request::Flush { id: 9 }
    ));
    let state = WriterState {
        last_sequence: 10,
        committed_offset: 11,
        snapshot_seq: 2,
        entries_since_fsync: 1,
        fdatasyncs: 4,
        poisoned: Some("why".into()),
        ..WriterState::default()
    };
    for outcome in [
        Ok(Some(5)),
        Ok(None),
        Err((Code::PayloadTooLarge, "too big".to_owned())),
    ] {
        let done = Done {
            id: 1,
            state: state.clone(),
            outcome: outcome.clone(),
            detail: Detail::None,
        };
        let back = Done::decode(body_of(&done.encode())).unwrap();
        assert_eq!(
            (back.id, back.state, back.outcome),
            (1, state.clone(), outcome)
        );
    }
    let rotation = Rotation {
        sequence: 12,
        snapshot: PublishedSnapshot {
            path: "/s/snapshot.12.snap".into(),
            sequence: 12,
            bytes: 99,
            created: true,
        },
        archive_path: "/s/wal.12.archive".into(),
    };
    let done = Done {
        id: 2,
        state: state.clone(),
        outcome: Ok(Some(12)),
        detail: Detail::Rotation(rotation.clone()),
    };
    assert_eq!(
        Done::decode(body_of(&done.encode())).unwrap().detail,
        Detail::Rotation(rotation)
    );
    let pruned = PruneOutcome {
        deleted_snapshots: vec![3, 5],
        deleted_archives: vec![5],
        deleted_temp_files: vec!["x.tmp".into()],
        retained_snapshots: vec![12],
        retained_archives: vec![],
        bytes_reclaimed: 77,
        consumers_behind: vec!["relay".into()],
        deleted_torn_files: vec!["wal.log.torn.9".into()],
    };
    let done = Done {
        id: 4,
        state: state.clone(),
        outcome: Ok(None),
        detail: Detail::Pruned(pruned.clone()),
    };
    assert_eq!(
        Done::decode(body_of(&done.encode())).unwrap().detail,
        Detail::Pruned(pruned)
    );
    match Answer::decode(body_of(&Answer::notice(&state))).unwrap() {
        Answer::Notice(back) => assert_eq!(back, state),
        other => panic!("{other:?}"),
    }
    let policy = RetentionPolicy {
        keep_snapshots: 1,
        keep_archives: 0,
        max_bytes: Some(1 << 30),
        max_age: Some(Duration::new(60, 5)),
    };
    match Request::decode(body_of(&Request::Prune { id: 5, policy }.encode())).unwrap() {
        Request::Prune {
            id: 5,
            policy: back,
        } => assert_eq!(back, policy),
        other => panic!("{other:?}"),
    }
    let sections = vec![
        ("a".to_owned(), b"xyz".to_vec(), true),
        ("b".to_owned(), vec![], false),
    ];
    let finish = Request::FinishCheckpoint {
        id: 3,
        sequence: 12,
        sections: sections.clone(),
    };
    match Request::decode(body_of(&finish.encode())).unwrap() {
        Request::FinishCheckpoint {
            id: 3,
            sequence: 12,
            sections: back,
        } => assert_eq!(back, sections),
        other => panic!("{other:?}"),
    }
}

#[test]
fn garbage_is_refused_whole() {
    // A checksum that fails.
    let mut frame = Request::Flush { id: 1 }.encode().to_vec();
    *frame.last_mut().unwrap() ^= 1;
    let error = FrameReader::new(Cursor::new(frame))
        .next_frame()
        .unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    // Bodies that check but do not decode: wrong version, unknown kind, bytes left over,
    // a count past what follows, a flag that is not one.
    let good = Request::Flush { id: 1 }.encode();
    let body = body_of(&good);
    let mut version = body.to_vec();
    version[0] = WIRE_VERSION + 1;
    let mut kind = body.to_vec();
    kind[1] = 99;
    let mut extra = body.to_vec();
    extra.push(0);
    let mut lying = BytesMut::new();
    start(&mut lying, APPEND, 1);
    lying.put_u8(0);
    lying.put_u8(0);
    lying.put_u8(PACKED);
    lying.put_u32_le(1000);
    let mut flag = BytesMut::new();
    start(&mut flag, APPEND, 1);
    flag.put_u8(2);
    for bad in [version, kind, extra, lying.to_vec(), flag.to_vec(), vec![]] {
        let error = Request::decode(Bytes::from(bad)).unwrap_err();
        assert_eq!(error.code(), "INVALID_ARGUMENT", "{error}");
    }
    assert!(Done::decode(body).is_err(), "a request is not an answer");
    assert!(matches!(
        Answer::decode(body_of(&Answer::bye(41))).unwrap(),
        Answer::Bye(41)
    ));
}

#[test]
fn a_huge_length_is_refused_before_anything_is_read_for_it() {
    let mut frame = Vec::new();
    frame.extend_from_slice(&u32::MAX.to_le_bytes());
    frame.extend_from_slice(&[0; 4]);
    let mut reader = FrameReader::new(Cursor::new(frame));
    let error = reader.next_frame().unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    assert!(reader.buf.capacity() < 1 << 21, "{}", reader.buf.capacity());
}

#[test]
fn a_truncated_frame_is_an_early_end_and_a_clean_end_is_none() {
    let frame = Request::Flush { id: 1 }.encode();
    let mut two = frame.to_vec();
    two.extend_from_slice(&frame[..frame.len() - 1]);
    let mut reader = FrameReader::new(Cursor::new(two));
    assert!(reader.next_frame().unwrap().is_some());
    assert_eq!(
        reader.next_frame().unwrap_err().kind(),
        io::ErrorKind::UnexpectedEof
    );
    let mut clean = FrameReader::new(Cursor::new(frame.to_vec()));
    assert!(clean.next_frame().unwrap().is_some());
    assert!(clean.next_frame().unwrap().is_none());
    // A frame that arrives a byte at a time is whole in the end.
    struct Trickle(Vec<u8>, usize);
    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.1 == self.0.len() {
                return Ok(0);
            }
            buf[0] = self.0[self.1];
            self.1 += 1;
            Ok(1)
        }
    }
    let mut trickle = FrameReader::new(Trickle(frame.to_vec(), 0));
    assert_eq!(trickle.next_frame().unwrap().unwrap(), body_of(&frame));
}

#[test]
fn a_peer_that_sends_nothing_is_given_up_on_when_asked() {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    ours.set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    let mut frames = FrameReader::new(&ours);
    let error = frames
        .next_frame_within(Duration::from_millis(50))
        .unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    // A frame that comes is read as ever.
    (&theirs)
        .write_all(&Request::Flush { id: 4 }.encode())
        .unwrap();
    let body = frames
        .next_frame_within(Duration::from_secs(60))
        .unwrap()
        .unwrap();
    assert_eq!(Request::decode(body).unwrap().id(), 4);
}
