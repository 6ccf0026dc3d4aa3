//! Conversions between JS values and engine types.

use napi::Status;
use napi::bindgen_prelude::{Buffer, Uint8Array};
use napi_derive::napi;
use selene_persist_engine::{
    Compression, Entry, Error, Hlc, MAX_SEQUENCE, NewEntry, Origin, SyncPolicy, TailRepair,
    WalOptions,
};

/// An engine error as a JS error carrying its stable code.
pub fn js_error(error: &Error) -> napi::Error {
    napi::Error::new(
        Status::GenericFailure,
        format!("[selene:{}] {error}", error.code()),
    )
}

fn invalid(message: String) -> napi::Error {
    js_error(&Error::InvalidArgument(message))
}

/// A JS number that must be an exact non-negative integer no larger than 2^53 - 1.
pub fn to_u64(name: &str, value: f64) -> napi::Result<u64> {
    #[allow(clippy::cast_precision_loss)]
    let max = MAX_SEQUENCE as f64;
    if value.fract() != 0.0 || !(0.0..=max).contains(&value) {
        return Err(invalid(format!(
            "{name} must be an integer from 0 to {MAX_SEQUENCE}, got {value}"
        )));
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(value as u64)
}

/// A u64 the engine produced, as a JS number (exact: values stay below 2^53).
#[allow(clippy::cast_precision_loss)]
pub const fn to_f64(value: u64) -> f64 {
    value as f64
}

/// Writer options, already normalised by the facade.
#[napi(object)]
pub struct NativeOpenOptions {
    /// `always`, `everyN`, `manual` or `interval`.
    pub sync_mode: String,
    /// N for `everyN`.
    pub every_n: Option<u32>,
    /// Period for `interval`.
    pub interval_ms: Option<u32>,
    /// Compress payloads at least this large; absent disables compression.
    pub compression_threshold: Option<u32>,
    /// zstd level.
    pub compression_level: i32,
    /// Snapshot sequence for a new file.
    pub snapshot_seq: f64,
}

impl TryFrom<NativeOpenOptions> for WalOptions {
    type Error = napi::Error;

    fn try_from(options: NativeOpenOptions) -> napi::Result<Self> {
        let sync = match (
            options.sync_mode.as_str(),
            options.every_n,
            options.interval_ms,
        ) {
            ("always", ..) => SyncPolicy::Always,
            ("manual", ..) => SyncPolicy::Manual,
            ("everyN", Some(n), _) => SyncPolicy::EveryN(n),
            ("interval", _, Some(ms)) => {
                SyncPolicy::Interval(std::time::Duration::from_millis(ms.into()))
            }
            (mode, ..) => return Err(invalid(format!("unknown sync mode {mode:?}"))),
        };
        Ok(Self {
            sync,
            compression: Compression {
                threshold: options.compression_threshold.map(|t| t as usize),
                level: options.compression_level,
            },
            snapshot_seq: to_u64("snapshotSeq", options.snapshot_seq)?,
        })
    }
}

/// Per-entry metadata, already normalised by the facade.
#[napi(object)]
pub struct NativeMeta {
    /// Principal bytes.
    pub principal: Option<Uint8Array>,
    /// Source node of a replicated entry.
    pub source_node_id: Option<f64>,
    /// Source sequence of a replicated entry.
    pub source_seq: Option<f64>,
    /// Timestamp seconds.
    pub hlc_seconds: Option<f64>,
    /// Timestamp fraction (1/2^32 s).
    pub hlc_subseconds: Option<u32>,
}

/// One engine entry from a payload and optional metadata; copies the bytes.
pub fn new_entry(payload: &[u8], meta: Option<NativeMeta>) -> napi::Result<NewEntry> {
    let Some(meta) = meta else {
        return Ok(NewEntry {
            payload: payload.to_vec(),
            ..NewEntry::default()
        });
    };
    let origin = match (meta.source_node_id, meta.source_seq) {
        (None, None) => Origin::Local,
        (Some(node), Some(seq)) => Origin::Replicated {
            source_node_id: to_u64("origin.sourceNodeId", node)?,
            source_seq: to_u64("origin.sourceSeq", seq)?,
        },
        _ => {
            return Err(invalid(
                "a replicated origin needs sourceNodeId and sourceSeq".into(),
            ));
        }
    };
    let hlc = match (meta.hlc_seconds, meta.hlc_subseconds) {
        (None, None) => None,
        (Some(seconds), subseconds) => Some(Hlc {
            seconds: to_u64("hlc.seconds", seconds)?,
            subseconds: subseconds.unwrap_or(0),
        }),
        (None, Some(_)) => return Err(invalid("hlc.subseconds needs hlc.seconds".into())),
    };
    Ok(NewEntry {
        payload: payload.to_vec(),
        principal: meta.principal.map(|p| p.to_vec()),
        origin,
        hlc,
    })
}

/// An entry read back.
#[napi(object)]
pub struct NativeEntry {
    /// Sequence.
    pub sequence: f64,
    /// Timestamp seconds.
    pub hlc_seconds: f64,
    /// Timestamp fraction.
    pub hlc_subseconds: u32,
    /// Source node, for replicated entries.
    pub source_node_id: Option<f64>,
    /// Source sequence, for replicated entries.
    pub source_seq: Option<f64>,
    /// Principal bytes.
    pub principal: Option<Buffer>,
    /// Payload bytes.
    pub payload: Buffer,
}

impl From<Entry> for NativeEntry {
    fn from(entry: Entry) -> Self {
        let (source_node_id, source_seq) = match entry.origin {
            Origin::Local => (None, None),
            Origin::Replicated {
                source_node_id,
                source_seq,
            } => (Some(to_f64(source_node_id)), Some(to_f64(source_seq))),
        };
        Self {
            sequence: to_f64(entry.sequence),
            hlc_seconds: to_f64(entry.hlc.seconds),
            hlc_subseconds: entry.hlc.subseconds,
            source_node_id,
            source_seq,
            principal: entry.principal.map(Buffer::from),
            payload: Buffer::from(entry.payload),
        }
    }
}

/// A torn tail cut at open.
#[napi(object)]
pub struct NativeTailRepair {
    /// `short-frame`, `corrupt-final-frame` or `zero-tail`.
    pub reason: String,
    /// Offset of the cut.
    pub offset: f64,
    /// Bytes cut.
    pub discarded_bytes: f64,
}

impl From<TailRepair> for NativeTailRepair {
    fn from(repair: TailRepair) -> Self {
        Self {
            reason: repair.reason.as_str().to_owned(),
            offset: to_f64(repair.offset),
            discarded_bytes: to_f64(repair.discarded_bytes),
        }
    }
}
