//! What the JetStream integration needs of the engine: shipments read from a follower and
//! decoded on receipt, a restore, replica positions, and a snapshot file's bytes.

// napi registers the free functions with Node; test builds of this crate leave that out.
#![cfg_attr(test, allow(dead_code))]

use std::path::PathBuf;

use napi::bindgen_prelude::{AsyncTask, Buffer};
use napi_derive::napi;
use selene_persist_engine::batch::Batch;
use selene_persist_engine::filename::StoreFile;
use selene_persist_engine::frame::FLAG_CHECKPOINT_WATERMARK;
use selene_persist_engine::io::StdFs;
use selene_persist_engine::replica::{self, Positions};
use selene_persist_engine::restore::{Limit, Pushed, Restore};
use selene_persist_engine::scan::Frame;
use selene_persist_engine::snapshot::SnapshotReader;
use selene_persist_engine::{Error, Hlc, Result, shipment};

use crate::chunk::{NativeChunk, Packed};
use crate::convert::{to_f64, to_u64};
use crate::task::{Blocking, Closable, blocking};

/// A shipment read from a follower: consecutive frames, watermarks included.
#[napi(object)]
pub struct NativeShipment {
    /// The encoded shipment.
    pub data: Buffer,
    /// Its first sequence.
    pub first: f64,
    /// Its last sequence.
    pub last: f64,
    /// The checkpoint watermarks in it: sequence, HLC seconds, HLC subseconds, for each.
    pub watermarks: Vec<f64>,
}

/// An encoded shipment and the frames in it.
pub type Shipped = (Vec<u8>, Vec<Frame>);

/// The next shipment of `follower`'s frames for node `node`, or `None` when none is there yet.
pub fn next_shipment(
    follower: &mut selene_persist_engine::follow::Follower,
    node: u64,
    max_frames: usize,
    max_bytes: usize,
) -> Result<Option<Shipped>> {
    let frames = follower.next_frames(max_frames, max_bytes)?;
    if frames.is_empty() {
        return Ok(None);
    }
    Ok(Some((shipment::encode(node, &frames)?, frames)))
}

/// The JS form of a shipment and its frames.
pub fn native_shipment(shipped: Option<Shipped>) -> Option<NativeShipment> {
    shipped.map(|(data, frames)| {
        let first = frames.first().map_or(0, |f| f.sequence);
        let last = frames.last().map_or(0, |f| f.sequence);
        NativeShipment {
            data: Buffer::from(data),
            first: to_f64(first),
            last: to_f64(last),
            watermarks: frames
                .iter()
                .filter(|f| f.flags & FLAG_CHECKPOINT_WATERMARK != 0)
                .flat_map(|f| {
                    let hlc = f.hlc;
                    [
                        to_f64(f.sequence),
                        to_f64(hlc.seconds),
                        f64::from(hlc.subseconds),
                    ]
                })
                .collect(),
        }
    })
}

/// A shipment received: who sent it, its range, and its entries (watermarks flagged).
#[napi(object, object_from_js = false)]
pub struct NativeReceived {
    /// The node whose log it comes from.
    pub node: f64,
    /// Its first sequence.
    pub first: f64,
    /// Its last sequence.
    pub last: f64,
    /// Its entries, checkpoint watermarks included (flag 1).
    pub chunk: NativeChunk,
}

/// Verify and decode a received shipment (every frame's checksums), off the JS thread.
#[napi(catch_unwind, ts_return_type = "Promise<NativeReceived>")]
pub fn decode_shipment(
    data: Buffer,
) -> AsyncTask<Blocking<(shipment::Header, NativeChunk), NativeReceived>> {
    let bytes = data.to_vec();
    blocking(
        move || {
            let (header, frames) = shipment::decode(&bytes)?;
            let mut packed = Packed::with_limits(frames.len(), usize::MAX);
            for frame in frames {
                packed.push_frame(frame.borrowed())?;
            }
            Ok((header, packed.finish()))
        },
        |(header, packed)| NativeReceived {
            node: to_f64(header.node_id),
            first: to_f64(header.first),
            last: to_f64(header.last()),
            chunk: packed,
        },
    )
}

/// A snapshot file's bytes, if it is there.
type SnapshotBytes = Blocking<Option<Vec<u8>>, Option<Buffer>>;

/// The bytes of `snapshot.<sequence>.snap` in the store `dir`, verified in full; `null` when
/// that snapshot is not there.
#[napi(catch_unwind, ts_return_type = "Promise<Buffer | null>")]
pub fn read_snapshot_file(dir: String, sequence: f64) -> napi::Result<AsyncTask<SnapshotBytes>> {
    let sequence = to_u64("sequence", sequence)?;
    let path = StoreFile::Snapshot(sequence).path(&PathBuf::from(dir));
    Ok(blocking(
        move || match SnapshotReader::open(StdFs::shared().as_ref(), &path) {
            Ok(reader) => reader.contents().map(Some),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        },
        |bytes| bytes.map(Buffer::from),
    ))
}

/// What one push of a restore did.
#[napi(object)]
pub struct NativePushed {
    /// The last sequence the new log holds.
    pub last: f64,
    /// Whether the limit was reached.
    pub done: bool,
}

/// A store being restored from a snapshot and shipments.
#[napi]
pub struct NativeRestore {
    inner: Closable<Restore>,
    snapshot_seq: f64,
}

#[napi]
impl NativeRestore {
    /// Begin restoring into `dest` (which must not exist) from a snapshot file's bytes (or
    /// none), ending at `toSequence` and at the timestamp `toHlc` ([seconds, subseconds]).
    #[napi(ts_return_type = "Promise<NativeRestore>")]
    pub fn begin(
        dest: String,
        snapshot: Option<Buffer>,
        to_sequence: Option<f64>,
        to_hlc: Option<Vec<f64>>,
    ) -> napi::Result<AsyncTask<Blocking<Restore, NativeRestore>>> {
        let to_sequence = to_sequence.map(|s| to_u64("toSequence", s)).transpose()?;
        let to_hlc = match to_hlc.as_deref() {
            None => None,
            Some(&[seconds, subseconds]) => Some(Hlc {
                seconds: to_u64("toTime seconds", seconds)?,
                subseconds: u32::try_from(to_u64("toTime subseconds", subseconds)?)
                    .unwrap_or(u32::MAX),
            }),
            Some(_) => {
                return Err(crate::convert::js_error(&Error::InvalidArgument(
                    "toHlc is [seconds, subseconds]".into(),
                )));
            }
        };
        let snapshot = snapshot.map(|b| b.to_vec());
        let dest = PathBuf::from(dest);
        Ok(blocking(
            move || {
                Restore::begin(
                    &StdFs::shared(),
                    &dest,
                    snapshot.as_deref(),
                    Limit {
                        to_sequence,
                        to_hlc,
                    },
                )
            },
            |restore| NativeRestore {
                snapshot_seq: to_f64(restore.snapshot_seq()),
                inner: Closable::new(restore),
            },
        ))
    }

    /// The sequence the snapshot covers (0: none).
    #[napi(getter)]
    pub fn snapshot_seq(&self) -> f64 {
        self.snapshot_seq
    }

    /// Append the frames of a shipment that continue the log, up to the limit.
    #[napi(catch_unwind, ts_return_type = "Promise<NativePushed>")]
    pub fn push(&self, data: Buffer) -> AsyncTask<Blocking<Pushed, NativePushed>> {
        let inner = self.inner.clone();
        let bytes = data.to_vec();
        blocking(
            move || inner.with("restore", |r| r.push(&bytes)),
            |pushed| NativePushed {
                last: to_f64(pushed.last),
                done: pushed.done,
            },
        )
    }

    /// Make the new store durable and give it its name; resolves with its last sequence.
    #[napi(catch_unwind, ts_return_type = "Promise<number>")]
    pub fn finish(&self) -> AsyncTask<Blocking<u64, f64>> {
        let inner = self.inner.clone();
        blocking(
            move || {
                let restore = inner.take().ok_or(Error::Closed { what: "restore" })?;
                restore.finish()
            },
            to_f64,
        )
    }

    /// Abandon the restore (its staging directory stays, nothing is at the destination).
    #[napi(catch_unwind)]
    pub fn close(&self) {
        self.inner.close();
    }
}

/// How far a replica has applied each source node.
#[napi(object)]
pub struct NativePositions {
    /// The replica's own last sequence when these positions held.
    pub anchor: f64,
    /// The stream sequence of the last message applied.
    pub stream_seq: f64,
    /// Source node ids.
    pub nodes: Vec<f64>,
    /// The last sequence applied of each of `nodes`.
    pub sequences: Vec<f64>,
}

/// The positions of replica `name` in the store `dir`, or `null` if it has none yet.
#[napi(catch_unwind, ts_return_type = "Promise<NativePositions | null>")]
pub fn read_replica_positions(
    dir: String,
    name: String,
) -> AsyncTask<Blocking<Option<Positions>, Option<NativePositions>>> {
    blocking(
        move || replica::read(StdFs::shared().as_ref(), &PathBuf::from(dir), &name),
        |positions| {
            positions.map(|p| NativePositions {
                anchor: to_f64(p.anchor),
                stream_seq: to_f64(p.stream_seq),
                nodes: p.nodes.keys().map(|&n| to_f64(n)).collect(),
                sequences: p.nodes.values().map(|&s| to_f64(s)).collect(),
            })
        },
    )
}

/// Record the positions of replica `name` in the store `dir`, durably.
#[napi(catch_unwind, ts_return_type = "Promise<void>")]
pub fn write_replica_positions(
    dir: String,
    name: String,
    positions: NativePositions,
) -> napi::Result<AsyncTask<Blocking<(), ()>>> {
    let mut nodes = std::collections::BTreeMap::new();
    for (&node, &seq) in positions.nodes.iter().zip(&positions.sequences) {
        nodes.insert(to_u64("node", node)?, to_u64("sequence", seq)?);
    }
    let positions = Positions {
        anchor: to_u64("anchor", positions.anchor)?,
        stream_seq: to_u64("streamSeq", positions.stream_seq)?,
        nodes,
    };
    Ok(blocking(
        move || {
            replica::write(
                StdFs::shared().as_ref(),
                &PathBuf::from(dir),
                &name,
                &positions,
            )
        },
        |()| (),
    ))
}
