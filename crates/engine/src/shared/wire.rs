//! The wire between a shared store's clients and its owner: one codec, encode and decode side
//! by side, under one version.
//!
//! A message is a frame: body length (u32 LE, at most [`MAX_BODY`]), checksum32 of the body
//! (u32 LE), then the body: version ([`WIRE_VERSION`]), kind, request id (u64 LE), then the
//! kind's fields. Integers are little-endian; bytes are length-prefixed. A frame that breaks a
//! cap, fails its checksum or does not decode whole is refused, and the connection with it.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::checksum::checksum32;
use crate::committer::WriterState;
use crate::error::{Code, Error};
use crate::frame::{MAX_PAYLOAD_LEN, MAX_PRINCIPAL_LEN, Origin, Producer};
use crate::hlc::Hlc;
use crate::retention::{PruneOutcome, RetentionPolicy};
use crate::rotation::Rotation;
use crate::snapshot::PublishedSnapshot;
use crate::writer::{NewEntries, NewEntry};

/// The wire's version: the first byte of every body. A peer of another version is refused.
pub const WIRE_VERSION: u8 = 1;
/// Length and checksum before the body.
pub const HEADER_LEN: usize = 8;
/// Largest body: one largest payload and room for its request's fields.
pub const MAX_BODY: usize = MAX_PAYLOAD_LEN + (1 << 20);
/// Most entries in one request.
const MAX_ENTRIES: usize = 1 << 24;

const APPEND: u8 = 1;
const FLUSH: u8 = 2;
const COMMIT_NOW: u8 = 3;
const BEGIN_CHECKPOINT: u8 = 4;
const FINISH_CHECKPOINT: u8 = 5;
const PRUNE: u8 = 6;
const DONE: u8 = 0x80;
const BYE: u8 = 0x81;
const NOTICE: u8 = 0x82;

/// What a [`Done`] carries beside its outcome (one tag byte, then the fields).
const NO_DETAIL: u8 = 0;
const ROTATION: u8 = 1;
const PRUNED: u8 = 2;

const PACKED: u8 = 0;
const LISTED: u8 = 1;

/// What a client asks of the owner.
#[derive(Debug)]
pub enum Request {
    /// Append `entries` as one unit (the engine's `AppendRequest`).
    Append {
        /// The client's id for the request, echoed in the reply.
        id: u64,
        /// Part of a chain of `appendSync` batches.
        chained: bool,
        /// The idempotent producer's stamp, if the request carries one.
        producer: Option<Producer>,
        /// The entries.
        entries: NewEntries,
    },
    /// Make everything committed so far durable.
    Flush {
        /// The client's id for the request.
        id: u64,
    },
    /// Append `entries` (none: just sync) and answer once they are durable, whatever the
    /// policy (`appendDurableSync`, `flushSync`).
    CommitNow {
        /// The client's id for the request.
        id: u64,
        /// The entries.
        entries: Vec<NewEntry>,
    },
    /// Queue a checkpoint watermark behind the client's requests before it; answered with its
    /// sequence.
    BeginCheckpoint {
        /// The client's id for the request.
        id: u64,
    },
    /// Snapshot `sections` at `sequence` (a watermark's) and rotate; answered with the
    /// rotation.
    FinishCheckpoint {
        /// The client's id for the request.
        id: u64,
        /// The watermark's sequence.
        sequence: u64,
        /// The sections: name, bytes, whether to compress.
        sections: Vec<(String, Vec<u8>, bool)>,
    },
    /// Apply `policy` to the store's snapshots and archives; answered with what it did.
    Prune {
        /// The client's id for the request.
        id: u64,
        /// The retention policy.
        policy: RetentionPolicy,
    },
}

/// What an answer carries beside its outcome.
#[derive(Debug, Default, PartialEq, Eq)]
pub enum Detail {
    /// Nothing more.
    #[default]
    None,
    /// What a finished checkpoint did.
    Rotation(Rotation),
    /// What a prune did.
    Pruned(PruneOutcome),
}

/// The owner's answer to one request.
#[derive(Debug)]
pub struct Done {
    /// The request's id.
    pub id: u64,
    /// The writer's state when it was answered.
    pub state: WriterState,
    /// The first sequence the request got (none: a flush, or a sync without entries), or the
    /// code and message of its failure.
    pub outcome: Result<Option<u64>, (Code, String)>,
    /// What a finished checkpoint or a prune did.
    pub detail: Detail,
}

/// What the owner sends a client.
#[derive(Debug)]
pub enum Answer {
    /// The answer to one request.
    Done(Box<Done>),
    /// The owner is closing: it read the client's requests up to this id and has answered
    /// every one; later ones it never read, so they may be sent to the next owner as they are.
    Bye(u64),
    /// Unasked: the log's state after a commit, whoever made it (sent when the client connects
    /// and after commits; a client that has not read one gets only the latest).
    Notice(WriterState),
}

impl Answer {
    /// The owner's notice of the log's `state`, as one frame.
    #[must_use]
    pub fn notice(state: &WriterState) -> Bytes {
        let mut body = BytesMut::new();
        start(&mut body, NOTICE, 0);
        put_state(&mut body, state);
        frame(&body)
    }

    /// The owner's goodbye after reading requests up to `last`, as one frame.
    #[must_use]
    pub fn bye(last: u64) -> Bytes {
        let mut body = BytesMut::new();
        start(&mut body, BYE, last);
        frame(&body)
    }

    /// The answer a frame's body holds.
    ///
    /// # Errors
    /// `InvalidArgument` when it is not one whole answer of this version.
    pub fn decode(body: Bytes) -> Result<Self, Error> {
        match body.get(1) {
            Some(&BYE) => {
                let mut at = Reader(body);
                let (_, last) = at.start()?;
                at.end()?;
                Ok(Self::Bye(last))
            }
            Some(&NOTICE) => {
                let mut at = Reader(body);
                at.start()?;
                let state = at.state()?;
                at.end()?;
                Ok(Self::Notice(state))
            }
            _ => Done::decode(body).map(|done| Self::Done(Box::new(done))),
        }
    }
}

impl Request {
    /// The request's id.
    #[must_use]
    pub const fn id(&self) -> u64 {
        match self {
            Self::Append { id, .. }
            | Self::Flush { id }
            | Self::CommitNow { id, .. }
            | Self::BeginCheckpoint { id }
            | Self::FinishCheckpoint { id, .. }
            | Self::Prune { id, .. } => *id,
        }
    }

    /// The request as one frame.
    #[must_use]
    pub fn encode(&self) -> Bytes {
        let mut body = BytesMut::new();
        match self {
            Self::Append {
                id,
                chained,
                producer,
                entries,
            } => {
                start(&mut body, APPEND, *id);
                body.put_u8(u8::from(*chained));
                match producer {
                    None => body.put_u8(0),
                    Some(p) => {
                        body.put_u8(1);
                        body.put_u64_le(p.id);
                        body.put_u32_le(p.epoch);
                        body.put_u64_le(p.seq);
                    }
                }
                put_entries(&mut body, entries);
            }
            Self::Flush { id } => start(&mut body, FLUSH, *id),
            Self::CommitNow { id, entries } => {
                start(&mut body, COMMIT_NOW, *id);
                put_entries(&mut body, &NewEntries::List(entries.clone()));
            }
            Self::BeginCheckpoint { id } => start(&mut body, BEGIN_CHECKPOINT, *id),
            Self::FinishCheckpoint {
                id,
                sequence,
                sections,
            } => {
                start(&mut body, FINISH_CHECKPOINT, *id);
                body.put_u64_le(*sequence);
                body.put_u32_le(u32::try_from(sections.len()).unwrap_or(u32::MAX));
                for (name, bytes, compress) in sections {
                    put_bytes(&mut body, name.as_bytes());
                    put_bytes(&mut body, bytes);
                    body.put_u8(u8::from(*compress));
                }
            }
            Self::Prune { id, policy } => {
                start(&mut body, PRUNE, *id);
                body.put_u32_le(policy.keep_snapshots);
                body.put_u32_le(policy.keep_archives);
                put_option(&mut body, policy.max_bytes, |body, bytes| {
                    body.put_u64_le(bytes);
                });
                put_option(&mut body, policy.max_age, |body, age| {
                    body.put_u64_le(age.as_secs());
                    body.put_u32_le(age.subsec_nanos());
                });
            }
        }
        frame(&body)
    }

    /// The request a frame's body holds.
    ///
    /// # Errors
    /// `InvalidArgument` when it is not one whole request of this version.
    pub fn decode(body: Bytes) -> Result<Self, Error> {
        let mut at = Reader(body);
        let (kind, id) = at.start()?;
        let request = match kind {
            APPEND => {
                let chained = at.flag()?;
                let producer = if at.flag()? {
                    Some(Producer {
                        id: at.u64()?,
                        epoch: at.u32()?,
                        seq: at.u64()?,
                    })
                } else {
                    None
                };
                Self::Append {
                    id,
                    chained,
                    producer,
                    entries: at.entries()?,
                }
            }
            FLUSH => Self::Flush { id },
            PRUNE => Self::Prune {
                id,
                policy: RetentionPolicy {
                    keep_snapshots: at.u32()?,
                    keep_archives: at.u32()?,
                    max_bytes: at.option(Reader::u64)?,
                    max_age: at.option(|at| {
                        let secs = at.u64()?;
                        let nanos = at.u32()?;
                        if nanos >= 1_000_000_000 {
                            return Err(bad(&format!("{nanos} nanoseconds")));
                        }
                        Ok(Duration::new(secs, nanos))
                    })?,
                },
            },
            BEGIN_CHECKPOINT => Self::BeginCheckpoint { id },
            FINISH_CHECKPOINT => {
                let sequence = at.u64()?;
                let count = at.count()?;
                let mut sections = Vec::with_capacity(count.min(at.0.remaining()));
                for _ in 0..count {
                    let name = at.string()?;
                    let bytes = at.bytes(MAX_BODY)?.to_vec();
                    sections.push((name, bytes, at.flag()?));
                }
                Self::FinishCheckpoint {
                    id,
                    sequence,
                    sections,
                }
            }
            COMMIT_NOW => match at.entries()? {
                NewEntries::List(entries) => Self::CommitNow { id, entries },
                NewEntries::Packed { .. } => {
                    return Err(bad("a sync request's entries are listed"));
                }
            },
            other => return Err(bad(&format!("unknown request kind {other}"))),
        };
        at.end()?;
        Ok(request)
    }
}

impl Done {
    /// The answer as one frame.
    #[must_use]
    pub fn encode(&self) -> Bytes {
        let mut body = BytesMut::new();
        start(&mut body, DONE, self.id);
        put_state(&mut body, &self.state);
        match &self.outcome {
            Ok(first) => {
                body.put_u8(0);
                body.put_u64_le(first.unwrap_or(0));
            }
            Err((code, message)) => {
                body.put_u8(1);
                put_bytes(&mut body, code.as_str().as_bytes());
                put_bytes(&mut body, message.as_bytes());
            }
        }
        match &self.detail {
            Detail::None => body.put_u8(NO_DETAIL),
            Detail::Rotation(r) => {
                body.put_u8(ROTATION);
                body.put_u64_le(r.sequence);
                body.put_u64_le(r.snapshot.bytes);
                body.put_u8(u8::from(r.snapshot.created));
                put_bytes(&mut body, r.snapshot.path.as_os_str().as_encoded_bytes());
                put_bytes(&mut body, r.archive_path.as_os_str().as_encoded_bytes());
            }
            Detail::Pruned(p) => {
                body.put_u8(PRUNED);
                for list in [
                    &p.deleted_snapshots,
                    &p.deleted_archives,
                    &p.retained_snapshots,
                    &p.retained_archives,
                ] {
                    put_list(&mut body, list, |body, &n| body.put_u64_le(n));
                }
                for list in [
                    &p.deleted_temp_files,
                    &p.consumers_behind,
                    &p.deleted_torn_files,
                ] {
                    put_list(&mut body, list, |body, name| {
                        put_bytes(body, name.as_bytes())
                    });
                }
                body.put_u64_le(p.bytes_reclaimed);
            }
        }
        frame(&body)
    }

    /// The answer a frame's body holds.
    ///
    /// # Errors
    /// `InvalidArgument` when it is not one whole answer of this version.
    pub fn decode(body: Bytes) -> Result<Self, Error> {
        let mut at = Reader(body);
        let (kind, id) = at.start()?;
        if kind != DONE {
            return Err(bad(&format!("unknown answer kind {kind}")));
        }
        let state = at.state()?;
        let outcome = if at.flag()? {
            let name = at.string()?;
            let code = Code::parse(&name).ok_or_else(|| bad(&format!("unknown code {name}")))?;
            Err((code, at.string()?))
        } else {
            Ok(Some(at.u64()?).filter(|&first| first > 0))
        };
        let detail = at.detail()?;
        at.end()?;
        Ok(Self {
            id,
            state,
            outcome,
            detail,
        })
    }
}

fn start(body: &mut BytesMut, kind: u8, id: u64) {
    body.put_u8(WIRE_VERSION);
    body.put_u8(kind);
    body.put_u64_le(id);
}

fn frame(body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER_LEN + body.len());
    // Encoders are fed what the caps allow: a body over MAX_BODY is refused by the decoder.
    out.put_u32_le(u32::try_from(body.len()).unwrap_or(u32::MAX));
    out.put_u32_le(checksum32(body));
    out.put_slice(body);
    out.freeze()
}

/// The writer's state as answers and notices carry it.
fn put_state(body: &mut BytesMut, s: &WriterState) {
    for value in [
        s.last_sequence,
        s.committed_offset,
        s.snapshot_seq,
        s.entries_since_fsync,
        s.fdatasyncs,
    ] {
        body.put_u64_le(value);
    }
    put_bytes(body, s.poisoned.as_deref().unwrap_or("").as_bytes());
}

fn put_option<T: Copy>(body: &mut BytesMut, value: Option<T>, put: impl Fn(&mut BytesMut, T)) {
    match value {
        None => body.put_u8(0),
        Some(value) => {
            body.put_u8(1);
            put(body, value);
        }
    }
}

fn put_list<T>(body: &mut BytesMut, list: &[T], put: impl Fn(&mut BytesMut, &T)) {
    body.put_u32_le(u32::try_from(list.len()).unwrap_or(u32::MAX));
    for item in list {
        put(body, item);
    }
}

fn put_bytes(body: &mut BytesMut, bytes: &[u8]) {
    body.put_u32_le(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
    body.put_slice(bytes);
}

fn put_entries(body: &mut BytesMut, entries: &NewEntries) {
    match entries {
        NewEntries::Packed { data, lengths } => {
            body.put_u8(PACKED);
            body.put_u32_le(u32::try_from(lengths.len()).unwrap_or(u32::MAX));
            for &len in lengths {
                body.put_u32_le(len);
            }
            body.put_slice(data);
        }
        NewEntries::List(list) => {
            body.put_u8(LISTED);
            body.put_u32_le(u32::try_from(list.len()).unwrap_or(u32::MAX));
            for entry in list {
                put_bytes(body, &entry.payload);
                match &entry.principal {
                    None => body.put_u8(0),
                    Some(p) => {
                        body.put_u8(1);
                        put_bytes(body, p);
                    }
                }
                match entry.origin {
                    Origin::Local => body.put_u8(0),
                    Origin::Replicated {
                        source_node_id,
                        source_seq,
                    } => {
                        body.put_u8(1);
                        body.put_u64_le(source_node_id);
                        body.put_u64_le(source_seq);
                    }
                }
                match entry.hlc {
                    None => body.put_u8(0),
                    Some(hlc) => {
                        body.put_u8(1);
                        body.put_u64_le(hlc.seconds);
                        body.put_u32_le(hlc.subseconds);
                    }
                }
            }
        }
    }
}

fn bad(detail: &str) -> Error {
    Error::InvalidArgument(format!("malformed shared-store message: {detail}"))
}

/// A body being decoded; every read is bounds-checked.
struct Reader(Bytes);

impl Reader {
    fn need(&self, len: usize) -> Result<(), Error> {
        if self.0.remaining() < len {
            return Err(bad("truncated"));
        }
        Ok(())
    }

    fn start(&mut self) -> Result<(u8, u64), Error> {
        self.need(10)?;
        let version = self.0.get_u8();
        if version != WIRE_VERSION {
            return Err(bad(&format!(
                "version {version}, this build speaks {WIRE_VERSION}"
            )));
        }
        Ok((self.0.get_u8(), self.0.get_u64_le()))
    }

    fn flag(&mut self) -> Result<bool, Error> {
        self.need(1)?;
        match self.0.get_u8() {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(bad(&format!("flag {other}"))),
        }
    }

    fn u32(&mut self) -> Result<u32, Error> {
        self.need(4)?;
        Ok(self.0.get_u32_le())
    }

    fn u64(&mut self) -> Result<u64, Error> {
        self.need(8)?;
        Ok(self.0.get_u64_le())
    }

    fn bytes(&mut self, cap: usize) -> Result<Bytes, Error> {
        let len = self.u32()? as usize;
        if len > cap {
            return Err(bad(&format!("{len} bytes over the cap of {cap}")));
        }
        self.need(len)?;
        Ok(self.0.split_to(len))
    }

    fn string(&mut self) -> Result<String, Error> {
        String::from_utf8(self.bytes(MAX_PAYLOAD_LEN)?.to_vec()).map_err(|_| bad("not UTF-8"))
    }

    fn state(&mut self) -> Result<WriterState, Error> {
        let mut state = WriterState {
            last_sequence: self.u64()?,
            committed_offset: self.u64()?,
            snapshot_seq: self.u64()?,
            entries_since_fsync: self.u64()?,
            fdatasyncs: self.u64()?,
            ..WriterState::default()
        };
        let poisoned = self.string()?;
        state.poisoned = (!poisoned.is_empty()).then_some(poisoned);
        Ok(state)
    }

    fn option<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, Error>,
    ) -> Result<Option<T>, Error> {
        if self.flag()? {
            read(self).map(Some)
        } else {
            Ok(None)
        }
    }

    fn list<T>(&mut self, read: impl Fn(&mut Self) -> Result<T, Error>) -> Result<Vec<T>, Error> {
        let count = self.count()?;
        let mut list = Vec::with_capacity(count.min(self.0.remaining()));
        for _ in 0..count {
            list.push(read(self)?);
        }
        Ok(list)
    }

    fn detail(&mut self) -> Result<Detail, Error> {
        self.need(1)?;
        Ok(match self.0.get_u8() {
            NO_DETAIL => Detail::None,
            ROTATION => {
                let sequence = self.u64()?;
                let bytes = self.u64()?;
                let created = self.flag()?;
                let path = self.string()?.into();
                Detail::Rotation(Rotation {
                    sequence,
                    snapshot: PublishedSnapshot {
                        path,
                        sequence,
                        bytes,
                        created,
                    },
                    archive_path: self.string()?.into(),
                })
            }
            PRUNED => Detail::Pruned(PruneOutcome {
                deleted_snapshots: self.list(Self::u64)?,
                deleted_archives: self.list(Self::u64)?,
                retained_snapshots: self.list(Self::u64)?,
                retained_archives: self.list(Self::u64)?,
                deleted_temp_files: self.list(Self::string)?,
                consumers_behind: self.list(Self::string)?,
                deleted_torn_files: self.list(Self::string)?,
                bytes_reclaimed: self.u64()?,
            }),
            other => return Err(bad(&format!("detail kind {other}"))),
        })
    }

    fn count(&mut self) -> Result<usize, Error> {
        let count = self.u32()? as usize;
        if count > MAX_ENTRIES {
            return Err(bad(&format!("{count} entries")));
        }
        Ok(count)
    }

    fn entries(&mut self) -> Result<NewEntries, Error> {
        self.need(1)?;
        match self.0.get_u8() {
            PACKED => {
                let count = self.count()?;
                self.need(count * 4)?;
                let lengths: Vec<u32> = (0..count).map(|_| self.0.get_u32_le()).collect();
                let total = lengths.iter().map(|&l| l as usize).sum::<usize>();
                self.need(total)?;
                NewEntries::packed(self.0.split_to(total), lengths)
            }
            LISTED => {
                let count = self.count()?;
                let mut list = Vec::with_capacity(count.min(self.0.remaining()));
                for _ in 0..count {
                    let payload = self.bytes(MAX_PAYLOAD_LEN)?;
                    let principal = if self.flag()? {
                        Some(self.bytes(MAX_PRINCIPAL_LEN)?.to_vec())
                    } else {
                        None
                    };
                    let origin = if self.flag()? {
                        Origin::Replicated {
                            source_node_id: self.u64()?,
                            source_seq: self.u64()?,
                        }
                    } else {
                        Origin::Local
                    };
                    let hlc = if self.flag()? {
                        Some(Hlc {
                            seconds: self.u64()?,
                            subseconds: self.u32()?,
                        })
                    } else {
                        None
                    };
                    // A request's producer stamp travels beside its entries (`producer`).
                    list.push(NewEntry {
                        payload,
                        principal,
                        origin,
                        hlc,
                        producer: None,
                    });
                }
                Ok(NewEntries::List(list))
            }
            other => Err(bad(&format!("entries kind {other}"))),
        }
    }

    fn end(&self) -> Result<(), Error> {
        if self.0.has_remaining() {
            return Err(bad("bytes after the message"));
        }
        Ok(())
    }
}

/// How long a frame may take to arrive once its first byte has: a base, plus a second per MiB
/// it declares. A peer that is slower (or sends part of a frame and stops) is dropped.
#[must_use]
pub fn frame_deadline(declared: usize) -> Duration {
    Duration::from_secs(5) + Duration::from_secs((declared >> 20) as u64)
}

/// Bytes a [`FrameReader`] asks the stream for at least, whatever the frame it waits for needs.
const READ_AHEAD: usize = 16 << 10;

/// Reads frames off a stream whose read timeout is set (the owner's sockets: a timeout with no
/// frame begun is waited through; one in the middle of a frame counts against its deadline).
pub struct FrameReader<R> {
    stream: R,
    buf: BytesMut,
    /// When the frame in `buf` began arriving.
    begun: Option<Instant>,
    /// How long idleness between frames is waited through (none: for ever).
    idle_until: Option<Instant>,
}

impl<R: Read> FrameReader<R> {
    /// Frames from `stream`.
    pub fn new(stream: R) -> Self {
        Self {
            stream,
            buf: BytesMut::new(),
            begun: None,
            idle_until: None,
        }
    }

    /// The stream read from.
    pub const fn get_ref(&self) -> &R {
        &self.stream
    }

    /// [`Self::next_frame`], but `TimedOut` if no frame has begun to arrive within `limit`.
    ///
    /// # Errors
    /// As [`Self::next_frame`].
    pub fn next_frame_within(&mut self, limit: Duration) -> io::Result<Option<Bytes>> {
        self.idle_until = Some(Instant::now() + limit);
        let next = self.next_frame();
        self.idle_until = None;
        next
    }

    /// The next frame's body, checked against its length cap and checksum; `None` at a clean
    /// end of the stream (between frames).
    ///
    /// # Errors
    /// `InvalidData` for a length over the cap or a checksum that fails, `UnexpectedEof` for a
    /// stream that ends inside a frame, `TimedOut` for a frame past its deadline, and the
    /// stream's own errors.
    pub fn next_frame(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            if self.buf.len() >= HEADER_LEN {
                let len = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]])
                    as usize;
                if len > MAX_BODY {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("frame of {len} bytes over the cap of {MAX_BODY}"),
                    ));
                }
                if self.buf.len() >= HEADER_LEN + len {
                    let sum =
                        u32::from_le_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]);
                    self.buf.advance(HEADER_LEN);
                    let body = self.buf.split_to(len).freeze();
                    self.begun = (!self.buf.is_empty()).then(Instant::now);
                    if checksum32(&body) != sum {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "frame checksum mismatch",
                        ));
                    }
                    return Ok(Some(body));
                }
            }
            if let Fill::End = self.fill()? {
                return Ok(None);
            }
        }
    }

    /// Read what the stream has.
    fn fill(&mut self) -> io::Result<Fill> {
        let declared = if self.buf.len() >= 4 {
            u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize
        } else {
            0
        };
        // At least a few frames' worth: a frame at a time cost two reads (header, body) a frame.
        let want = (HEADER_LEN + declared)
            .saturating_sub(self.buf.len())
            .clamp(READ_AHEAD, 1 << 20);
        let have = self.buf.len();
        self.buf.resize(have + want, 0);
        let read = self.stream.read(&mut self.buf[have..]);
        self.buf.truncate(have + *read.as_ref().unwrap_or(&0));
        match read {
            Ok(0) if have == 0 => Ok(Fill::End),
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the stream ended inside a frame",
            )),
            Ok(_) => {
                self.begun.get_or_insert_with(Instant::now);
                Ok(Fill::More)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                match self.begun {
                    Some(begun) if have > 0 && begun.elapsed() > frame_deadline(declared) => Err(
                        io::Error::new(io::ErrorKind::TimedOut, "a frame took too long to arrive"),
                    ),
                    _ if have == 0
                        && self.idle_until.is_some_and(|until| Instant::now() > until) =>
                    {
                        Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "no frame arrived in time",
                        ))
                    }
                    // Idle between frames, or still within the frame's deadline.
                    _ => Ok(Fill::Idle),
                }
            }
            Err(e) => Err(e),
        }
    }
}

/// What one read gave.
enum Fill {
    More,
    Idle,
    End,
}

#[cfg(test)]
mod tests;
