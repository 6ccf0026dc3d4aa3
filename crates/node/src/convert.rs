//! Conversions between JS values and engine types.

use bytes::Bytes;
use napi::Status;
use napi::bindgen_prelude::Uint8Array;
use napi_derive::napi;
use selene_persist_engine::committer::DEFAULT_MAX_QUEUE_BYTES;
use selene_persist_engine::retention::{PruneOutcome, RetentionPolicy};
use selene_persist_engine::rotation::Rotation;
use selene_persist_engine::snapshot::{
    DEFAULT_COMPRESS_SECTIONS, PublishedSnapshot, SectionInfo, SnapshotBuilder,
};
use selene_persist_engine::{
    Compression, Error, Hlc, MAX_SEQUENCE, NewEntry, Origin, SyncPolicy, TailRepair, WalOptions,
};

/// An engine error as a JS error carrying its stable code.
pub fn js_error(error: &Error) -> napi::Error {
    napi::Error::new(Status::GenericFailure, error_message(error))
}

/// An engine error's message as it crosses to JS: `[selene:CODE] what happened`, then, for an
/// error about a path, a NUL and a JSON object of its fields: `path`, and for an OS failure
/// `syscall` (the operation) and `errno` (negative, as Node's; Unix only, where the OS number
/// is the one libuv negates).
pub fn error_message(error: &Error) -> String {
    let mut message = format!("[selene:{}] {error}", error.code());
    let Some(path) = error.path() else {
        return message;
    };
    let mut fields = serde_json::Map::new();
    fields.insert("path".into(), path.to_string_lossy().into());
    if let Some((op, errno)) = error.os_failure() {
        fields.insert("syscall".into(), op.into());
        if let Some(errno) = errno.filter(|_| cfg!(unix)) {
            fields.insert("errno".into(), (-errno).into());
        }
    }
    message.push('\0');
    message.push_str(&serde_json::Value::Object(fields).to_string());
    message
}

/// An `INVALID_ARGUMENT` error.
pub fn invalid(message: String) -> napi::Error {
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

/// Writer options as the caller gave them, checked by the facade; what is absent takes the
/// engine's default ([`WalOptions::default`]; preallocation, the sync policy's
/// [`SyncPolicy::default_preallocate`]).
#[napi(object)]
pub struct NativeOpenOptions {
    /// `always`, `everyN`, `manual` or `interval`.
    pub sync_mode: Option<String>,
    /// N for `everyN`.
    pub every_n: Option<u32>,
    /// Period for `interval`.
    pub interval_ms: Option<u32>,
    /// No payload compression at all.
    pub compression_disabled: Option<bool>,
    /// Compress payloads at least this large.
    pub compression_threshold: Option<u32>,
    /// zstd level.
    pub compression_level: Option<i32>,
    /// Snapshot sequence for a new file.
    pub snapshot_seq: Option<f64>,
    /// Preallocation chunk in bytes; 0 disables.
    pub preallocate: Option<f64>,
}

impl TryFrom<NativeOpenOptions> for WalOptions {
    type Error = napi::Error;

    fn try_from(options: NativeOpenOptions) -> napi::Result<Self> {
        let defaults = Self::default();
        let sync = match (
            options.sync_mode.as_deref(),
            options.every_n,
            options.interval_ms,
        ) {
            (None, ..) => defaults.sync,
            (Some("always"), ..) => SyncPolicy::Always,
            (Some("manual"), ..) => SyncPolicy::Manual,
            (Some("everyN"), Some(n), _) => SyncPolicy::EveryN(n),
            (Some("interval"), _, Some(ms)) => {
                SyncPolicy::Interval(std::time::Duration::from_millis(ms.into()))
            }
            (Some(mode), ..) => return Err(invalid(format!("unknown sync mode {mode:?}"))),
        };
        let compression = if options.compression_disabled == Some(true) {
            Compression::disabled()
        } else {
            Compression {
                threshold: options
                    .compression_threshold
                    .map(|t| t as usize)
                    .or(defaults.compression.threshold),
                level: options
                    .compression_level
                    .unwrap_or(defaults.compression.level),
            }
        };
        Ok(Self {
            sync,
            compression,
            snapshot_seq: options
                .snapshot_seq
                .map_or(Ok(defaults.snapshot_seq), |s| to_u64("snapshotSeq", s))?,
            preallocate: options
                .preallocate
                .map_or(Ok(sync.default_preallocate()), |p| to_u64("preallocate", p))?,
            lock_patience: defaults.lock_patience,
        })
    }
}

/// What a sync policy means for the facade, so that it never compares policy names.
#[napi(object)]
pub struct NativeSyncSemantics {
    /// Appends are acknowledged before they are fdatasynced (every policy but `always`).
    pub acks_before_sync: bool,
    /// fdatasync happens on a timer, after the commit that wrote the entries (`interval`).
    pub syncs_in_background: bool,
}

impl From<SyncPolicy> for NativeSyncSemantics {
    fn from(sync: SyncPolicy) -> Self {
        Self {
            acks_before_sync: !matches!(sync, SyncPolicy::Always),
            syncs_in_background: matches!(sync, SyncPolicy::Interval(_)),
        }
    }
}

/// The engine's defaults, each defined once there: the facade writes none of its own, and the
/// docs are checked against these.
#[napi(object)]
pub struct NativeDefaults {
    /// The sync policy: `always`.
    pub sync_mode: String,
    /// Payloads at least this large are compressed.
    pub compression_threshold: u32,
    /// zstd level of payloads and snapshot sections.
    pub compression_level: i32,
    /// Preallocation chunk in bytes.
    pub preallocate: f64,
    /// Payload bytes queued to the committer before later calls wait.
    pub max_queue_bytes: f64,
    /// Snapshots a prune keeps.
    pub keep_snapshots: u32,
    /// Archives a prune keeps.
    pub keep_archives: u32,
    /// Whether snapshot sections are compressed.
    pub compress_snapshots: bool,
}

impl NativeDefaults {
    /// The defaults of the engine's `Default` impls and constants.
    #[allow(clippy::cast_possible_truncation)]
    pub fn of_engine() -> Self {
        let wal = WalOptions::default();
        let retention = RetentionPolicy::default();
        Self {
            sync_mode: match wal.sync {
                SyncPolicy::Always => "always",
                SyncPolicy::Manual => "manual",
                SyncPolicy::EveryN(_) => "everyN",
                SyncPolicy::Interval(_) => "interval",
            }
            .into(),
            compression_threshold: wal.compression.threshold.unwrap_or(0) as u32,
            compression_level: wal.compression.level,
            preallocate: to_f64(wal.preallocate),
            max_queue_bytes: to_f64(DEFAULT_MAX_QUEUE_BYTES),
            keep_snapshots: retention.keep_snapshots,
            keep_archives: retention.keep_archives,
            compress_snapshots: DEFAULT_COMPRESS_SECTIONS,
        }
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

/// One engine entry from a payload (already copied out of JS) and optional metadata.
pub fn new_entry(payload: Bytes, meta: Option<NativeMeta>) -> napi::Result<NewEntry> {
    let Some(meta) = meta else {
        return Ok(NewEntry {
            payload,
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
        payload,
        principal: meta.principal.map(|p| p.to_vec()),
        origin,
        hlc,
        producer: None,
    })
}

/// A torn tail cut at open.
#[napi(object)]
pub struct NativeTailRepair {
    /// `short-frame` or `corrupt-final-frame`.
    pub reason: String,
    /// Offset of the cut.
    pub offset: f64,
    /// Bytes cut.
    pub discarded_bytes: f64,
    /// How many of them were kept beside the WAL (0: none).
    pub saved_bytes: f64,
    /// The file they were kept in, if they were.
    pub saved_path: Option<String>,
}

impl From<TailRepair> for NativeTailRepair {
    fn from(repair: TailRepair) -> Self {
        Self {
            reason: repair.reason.as_str().to_owned(),
            offset: to_f64(repair.offset),
            discarded_bytes: to_f64(repair.discarded_bytes),
            saved_bytes: to_f64(repair.saved_bytes),
            saved_path: None,
        }
    }
}

fn to_f64s(sequences: Vec<u64>) -> Vec<f64> {
    sequences.into_iter().map(to_f64).collect()
}

/// One snapshot section to write.
#[napi(object)]
pub struct NativeSection {
    /// Unique name.
    pub name: String,
    /// Its bytes.
    pub data: Uint8Array,
    /// Store it zstd-compressed when that makes it smaller.
    pub compress: bool,
}

/// Sections as owned engine tuples (copies the bytes).
pub fn sections(sections: Vec<NativeSection>) -> Vec<(String, Vec<u8>, bool)> {
    sections
        .into_iter()
        .map(|s| (s.name, s.data.to_vec(), s.compress))
        .collect()
}

/// A builder holding `sections`, checked against the caps.
pub fn snapshot_builder(
    sequence: u64,
    sections_in: Vec<NativeSection>,
    level: i32,
) -> napi::Result<SnapshotBuilder> {
    SnapshotBuilder::with_sections(sequence, level, sections(sections_in)).map_err(|e| js_error(&e))
}

/// A section as listed in a snapshot's table.
#[napi(object)]
pub struct NativeSectionInfo {
    /// Name.
    pub name: String,
    /// Length once decompressed.
    pub raw_len: f64,
    /// Length as stored.
    pub stored_len: f64,
    /// Whether it is stored compressed.
    pub compressed: bool,
}

impl From<&SectionInfo> for NativeSectionInfo {
    fn from(info: &SectionInfo) -> Self {
        Self {
            name: info.name.clone(),
            raw_len: to_f64(info.raw_len),
            stored_len: to_f64(info.stored_len),
            compressed: info.compressed,
        }
    }
}

/// A published snapshot.
#[napi(object)]
pub struct NativePublished {
    /// Its path.
    pub path: String,
    /// The sequence it covers.
    pub sequence: f64,
    /// Its size.
    pub bytes: f64,
    /// False when an identical file was already there.
    pub created: bool,
}

impl From<PublishedSnapshot> for NativePublished {
    fn from(p: PublishedSnapshot) -> Self {
        Self {
            path: p.path.display().to_string(),
            sequence: to_f64(p.sequence),
            bytes: to_f64(p.bytes),
            created: p.created,
        }
    }
}

/// What a rotation or checkpoint did.
#[napi(object)]
pub struct NativeRotation {
    /// The sequence the new snapshot covers.
    pub sequence: f64,
    /// The snapshot file.
    pub snapshot_path: String,
    /// Its size.
    pub snapshot_bytes: f64,
    /// The archived WAL prefix.
    pub archive_path: String,
}

impl From<Rotation> for NativeRotation {
    fn from(r: Rotation) -> Self {
        Self {
            sequence: to_f64(r.sequence),
            snapshot_path: r.snapshot.path.display().to_string(),
            snapshot_bytes: to_f64(r.snapshot.bytes),
            archive_path: r.archive_path.display().to_string(),
        }
    }
}

/// A retention policy, normalised by the facade.
#[napi(object)]
pub struct NativePolicy {
    /// Snapshots to keep (the live one always); absent: the engine's default.
    pub keep_snapshots: Option<u32>,
    /// Archives to keep; absent: the engine's default.
    pub keep_archives: Option<u32>,
    /// Byte budget for snapshots and archives.
    pub max_bytes: Option<f64>,
    /// Maximum age in milliseconds.
    pub max_age_ms: Option<f64>,
}

impl TryFrom<NativePolicy> for RetentionPolicy {
    type Error = napi::Error;

    fn try_from(p: NativePolicy) -> napi::Result<Self> {
        let defaults = Self::default();
        Ok(Self {
            keep_snapshots: p.keep_snapshots.unwrap_or(defaults.keep_snapshots),
            keep_archives: p.keep_archives.unwrap_or(defaults.keep_archives),
            max_bytes: p.max_bytes.map(|b| to_u64("maxBytes", b)).transpose()?,
            max_age: p
                .max_age_ms
                .map(|ms| to_u64("maxAgeMs", ms).map(std::time::Duration::from_millis))
                .transpose()?,
        })
    }
}

/// What a prune did.
#[napi(object)]
pub struct NativePruneOutcome {
    /// Snapshots deleted.
    pub deleted_snapshots: Vec<f64>,
    /// Archives deleted.
    pub deleted_archives: Vec<f64>,
    /// Stale temp files deleted.
    pub deleted_temp_files: Vec<String>,
    /// Snapshots kept.
    pub retained_snapshots: Vec<f64>,
    /// Archives kept.
    pub retained_archives: Vec<f64>,
    /// Bytes freed.
    pub bytes_reclaimed: f64,
    /// Consumers a byte budget left behind retention.
    pub consumers_behind: Vec<String>,
    /// Kept torn tails deleted.
    pub deleted_torn_files: Vec<String>,
}

impl From<PruneOutcome> for NativePruneOutcome {
    fn from(o: PruneOutcome) -> Self {
        Self {
            deleted_snapshots: to_f64s(o.deleted_snapshots),
            deleted_archives: to_f64s(o.deleted_archives),
            deleted_temp_files: o.deleted_temp_files,
            retained_snapshots: to_f64s(o.retained_snapshots),
            retained_archives: to_f64s(o.retained_archives),
            bytes_reclaimed: to_f64(o.bytes_reclaimed),
            consumers_behind: o.consumers_behind,
            deleted_torn_files: o.deleted_torn_files,
        }
    }
}
