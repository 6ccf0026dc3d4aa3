//! Typed errors with stable codes shared by every layer above the engine.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::io::Refusal;

/// Result alias used throughout the engine.
pub type Result<T> = std::result::Result<T, Error>;

/// Every failure the engine reports. Each variant maps to one stable [`Error::code`].
///
/// Errors are `Clone` so one failed group commit can reject every append in the group.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another writer (in this or another process) holds the file's exclusive lock.
    #[error("{}: another writer holds the lock", path.display())]
    WriterLockHeld {
        /// The locked file.
        path: PathBuf,
    },
    /// A payload (as given, or after decompression) is larger than the cap.
    #[error("payload of {len} bytes exceeds the cap of {cap} bytes")]
    PayloadTooLarge {
        /// Observed length.
        len: u64,
        /// The cap.
        cap: u64,
    },
    /// A principal is larger than the cap.
    #[error("principal of {len} bytes exceeds the cap of {cap} bytes")]
    PrincipalTooLarge {
        /// Observed length.
        len: u64,
        /// The cap.
        cap: u64,
    },
    /// A damaged frame is followed by valid frames: this is not a torn tail, so nothing is repaired.
    #[error(
        "damaged frame at offset {offset} of {} ({detail}) is followed by a valid frame at offset {next_valid}; the file was left untouched",
        path.display()
    )]
    MidLogCorruption {
        /// The damaged file.
        path: PathBuf,
        /// Offset of the damaged frame.
        offset: u64,
        /// What was wrong with it.
        detail: &'static str,
        /// Offset of the first valid frame found after it.
        next_valid: u64,
    },
    /// A damaged frame inside the prefix the seal records as fdatasynced: bit rot or tampering,
    /// not a torn write, so it is never cut as a tail.
    #[error(
        "damaged frame at offset {offset} of {} ({detail}) lies inside the prefix the seal records as durable (up to offset {sealed_end}); the file was left untouched",
        path.display()
    )]
    SealedCorruption {
        /// The damaged file.
        path: PathBuf,
        /// Offset of the damaged frame.
        offset: u64,
        /// What was wrong with it.
        detail: &'static str,
        /// End of the sealed prefix.
        sealed_end: u64,
    },
    /// A checksum that must hold did not (file header, or a payload read back by offset).
    #[error("checksum mismatch in {what} at offset {offset}")]
    ChecksumMismatch {
        /// The protected region.
        what: &'static str,
        /// Its offset.
        offset: u64,
    },
    /// The file does not start with this format's magic: it is not a selene-persist file.
    #[error("not a selene-persist {expected} file (magic {found:02x?})")]
    MagicMismatch {
        /// The kind of file that was expected.
        expected: &'static str,
        /// The first bytes found.
        found: [u8; 4],
    },
    /// The file is of this format but a version this build does not read.
    #[error("unsupported {what} version {major}.{minor} (this build reads {}.{})", supported.0, supported.1)]
    UnsupportedVersion {
        /// The kind of file.
        what: &'static str,
        /// Major version found.
        major: u16,
        /// Minor version found.
        minor: u16,
        /// The version this build reads.
        supported: (u16, u16),
    },
    /// A checksum-valid frame uses flags or fields this build does not know.
    #[error("frame at offset {offset} is valid but unsupported: {detail}")]
    UnsupportedFrame {
        /// Offset of the frame.
        offset: u64,
        /// What is unsupported.
        detail: String,
    },
    /// The file is shorter than its header.
    #[error("file header truncated: {len} bytes, need {need}")]
    TruncatedHeader {
        /// File length.
        len: u64,
        /// Header length.
        need: u64,
    },
    /// A checksum-valid header has non-zero reserved bytes.
    #[error("reserved bytes at offset {offset} are not zero")]
    ReservedNonZero {
        /// Offset of the reserved field.
        offset: u64,
    },
    /// A valid frame's sequence does not increase.
    #[error("frame at offset {offset} has sequence {found}, not above {previous}")]
    NonMonotonicSequence {
        /// Offset of the frame.
        offset: u64,
        /// The previous sequence.
        previous: u64,
        /// The sequence found.
        found: u64,
    },
    /// A valid frame's sequence skips ahead: entries are missing.
    #[error("frame at offset {offset} has sequence {found}, expected {expected}")]
    SequenceGap {
        /// Offset of the frame.
        offset: u64,
        /// The expected sequence.
        expected: u64,
        /// The sequence found.
        found: u64,
    },
    /// No further sequence can be assigned.
    #[error("sequence space exhausted at {last}")]
    SequenceExhausted {
        /// The last sequence assigned.
        last: u64,
    },
    /// A stored payload passed its checksum but could not be decompressed.
    #[error("payload at offset {offset} could not be decompressed: {detail}")]
    Decompression {
        /// Offset of the frame.
        offset: u64,
        /// Codec message.
        detail: String,
    },
    /// The handle was closed.
    #[error("the {what} is closed")]
    Closed {
        /// What was closed.
        what: &'static str,
    },
    /// An earlier failure left the on-disk state unknown; reopen to recover.
    #[error("the writer is poisoned by an earlier failure ({cause}); reopen it to recover")]
    Poisoned {
        /// The failure that poisoned it.
        cause: String,
    },
    /// A caller-supplied argument is out of range or malformed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The file system has no room (ENOSPC, or a quota: EDQUOT). Nothing acknowledged is
    /// lost; the failed call wrote nothing it reports, and the same writer or store goes on
    /// once space is freed.
    #[error("{op} {}: the disk is full ({source})", path.display())]
    DiskFull {
        /// The operation that failed.
        op: &'static str,
        /// The path it acted on.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: Arc<io::Error>,
    },
    /// An operating-system I/O failure.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The operation that failed.
        op: &'static str,
        /// The path it acted on.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: Arc<io::Error>,
    },
    /// A different file already exists where a snapshot or archive is being published.
    #[error("{} already exists with different contents", path.display())]
    ArtifactConflict {
        /// The existing file.
        path: PathBuf,
    },
    /// A snapshot file's layout is malformed (its header checksum holds).
    #[error("snapshot {}: {detail}", path.display())]
    SnapshotCorrupt {
        /// The snapshot file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A snapshot's body does not match the hash in its header.
    #[error("snapshot {}: body hash mismatch", path.display())]
    BodyHashMismatch {
        /// The snapshot file.
        path: PathBuf,
    },
    /// A snapshot section name was given twice.
    #[error("duplicate snapshot section {0:?}")]
    DuplicateSection(String),
    /// A snapshot section does not exist.
    #[error("no snapshot section {0:?}")]
    SectionNotFound(String),
    /// A snapshot or section is over a cap.
    #[error("{what} of {len} exceeds the cap of {cap}")]
    SnapshotTooLarge {
        /// What is too large.
        what: &'static str,
        /// Observed size.
        len: u64,
        /// The cap.
        cap: u64,
    },
    /// The MANIFEST and the files of a store directory disagree.
    #[error("store {}: {detail}", dir.display())]
    StoreInconsistent {
        /// The store directory.
        dir: PathBuf,
        /// What disagrees.
        detail: String,
    },
    /// A path names a FIFO, socket, device or directory where a regular file belongs.
    #[error("{}: {kind}, not a regular file", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// A path names a file where a directory belongs: a store opened at a file, or a file
    /// among the parents of the directory asked for.
    #[error("{}: a file, not a directory", path.display())]
    NotADirectory {
        /// The file.
        path: PathBuf,
    },
    /// A file the engine writes is a symbolic link, or a sidecar it rewrites in place has a
    /// second hard link: writing it would change a file outside the store.
    #[error("{}: {detail}", path.display())]
    UnsafeLink {
        /// The path.
        path: PathBuf,
        /// What was found.
        detail: String,
    },
    /// A file of a store directory (one its MANIFEST governs: the active WAL, an archive, a
    /// snapshot) opened as a WAL of its own: a write there would break the store, whose files
    /// only the store itself writes.
    #[error(
        "{}: a file of the store at {}; open the store (Store.open) instead of one of its files",
        path.display(),
        dir.display()
    )]
    FileInStore {
        /// The file.
        path: PathBuf,
        /// The store directory.
        dir: PathBuf,
    },
    /// A follower or consumer needs an entry whose file retention deleted.
    #[error("store {}: the entries from sequence {next} on are no longer retained", dir.display())]
    ConsumerBehindRetention {
        /// The store directory.
        dir: PathBuf,
        /// The first sequence the follower needs.
        next: u64,
    },
    /// The owner of a shared store went away (it exited, crashed or was killed) while a
    /// request was in flight: whether that request was made durable is unknown.
    #[error(
        "the owner of the shared store was lost with the request in flight ({detail}); its outcome is unknown"
    )]
    OwnerLost {
        /// How the owner was lost.
        detail: String,
    },
    /// An idempotent producer's stamp carries an epoch older than the producer's latest.
    #[error("producer {id} is fenced: epoch {epoch} is older than its epoch {current}")]
    ProducerFenced {
        /// The producer.
        id: u64,
        /// The epoch given.
        epoch: u32,
        /// Its latest epoch.
        current: u32,
    },
    /// An idempotent producer's sequence skips ahead: the requests between were lost.
    #[error("producer {id} sent sequence {found}, expected {expected}")]
    ProducerGap {
        /// The producer.
        id: u64,
        /// The sequence expected next.
        expected: u64,
        /// The sequence found.
        found: u64,
    },
    /// A bug: an internal invariant failed or a panic was caught.
    #[error("internal error: {0}")]
    Internal(String),
    /// An error the owner of a shared store reported for a client's request: its code and
    /// message as the owner had them.
    #[error("{message}")]
    Remote {
        /// The owner's error's code.
        code: Code,
        /// Its message.
        message: String,
    },
}

/// Whether `error` says the file system has no room: ENOSPC or a quota (EDQUOT).
fn is_disk_full(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::StorageFull || error.kind() == io::ErrorKind::QuotaExceeded
}

/// Defines [`Code`] and its complete list from one table, so the list cannot miss a code.
macro_rules! codes {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// The stable machine-readable code of an [`Error`], one per variant.
        #[derive(Clone, Copy, Debug, Eq, PartialEq, Hash)]
        pub enum Code {
            $(
                #[doc = $name]
                $variant,
            )*
        }

        impl Code {
            /// Every code, in the order of [`Error`]'s variants.
            pub const ALL: &'static [Self] = &[$(Self::$variant),*];

            /// The code named `name`, if there is one: the inverse of [`Code::as_str`].
            #[must_use]
            pub fn parse(name: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|code| code.as_str() == name)
            }

            /// The code as it crosses to JS, e.g. `WRITER_LOCK_HELD`.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name),*
                }
            }
        }
    };
}

codes! {
    WriterLockHeld => "WRITER_LOCK_HELD",
    PayloadTooLarge => "PAYLOAD_TOO_LARGE",
    PrincipalTooLarge => "PRINCIPAL_TOO_LARGE",
    MidLogCorruption => "MID_LOG_CORRUPTION",
    SealedCorruption => "SEALED_CORRUPTION",
    ChecksumMismatch => "CHECKSUM_MISMATCH",
    MagicMismatch => "MAGIC_MISMATCH",
    UnsupportedVersion => "UNSUPPORTED_VERSION",
    UnsupportedFrame => "UNSUPPORTED_FRAME",
    TruncatedHeader => "TRUNCATED_HEADER",
    ReservedNonZero => "RESERVED_NON_ZERO",
    NonMonotonicSequence => "NON_MONOTONIC_SEQUENCE",
    SequenceGap => "SEQUENCE_GAP",
    SequenceExhausted => "SEQUENCE_EXHAUSTED",
    Decompression => "DECOMPRESSION_FAILED",
    Closed => "CLOSED",
    Poisoned => "POISONED",
    InvalidArgument => "INVALID_ARGUMENT",
    DiskFull => "DISK_FULL",
    Io => "IO",
    ArtifactConflict => "ARTIFACT_CONFLICT",
    SnapshotCorrupt => "SNAPSHOT_CORRUPT",
    BodyHashMismatch => "BODY_HASH_MISMATCH",
    DuplicateSection => "DUPLICATE_SECTION",
    SectionNotFound => "SECTION_NOT_FOUND",
    SnapshotTooLarge => "SNAPSHOT_TOO_LARGE",
    StoreInconsistent => "STORE_INCONSISTENT",
    NotAFile => "NOT_A_FILE",
    NotADirectory => "NOT_A_DIRECTORY",
    UnsafeLink => "UNSAFE_LINK",
    FileInStore => "FILE_IN_STORE",
    ConsumerBehindRetention => "CONSUMER_BEHIND_RETENTION",
    OwnerLost => "OWNER_LOST",
    ProducerFenced => "PRODUCER_FENCED",
    ProducerGap => "PRODUCER_GAP",
    Internal => "INTERNAL",
    // Raised by the facade, never by the engine: by its JetStream integration
    // (`selene-persist/jetstream`), and when the addon itself or an optional peer package
    // cannot be loaded. Listed here so every code has one home.
    RemoteUnavailable => "REMOTE_UNAVAILABLE",
    RemoteFenced => "REMOTE_FENCED",
    RemoteIncomplete => "REMOTE_INCOMPLETE",
    NativeMissing => "NATIVE_MISSING",
    OptionalDependencyMissing => "OPTIONAL_DEPENDENCY_MISSING",
}

/// The codes only the facade raises, last in [`Code::ALL`]: no engine error has them.
pub const FACADE_ONLY: &[Code] = &[
    Code::RemoteUnavailable,
    Code::RemoteFenced,
    Code::RemoteIncomplete,
    Code::NativeMissing,
    Code::OptionalDependencyMissing,
];

impl Error {
    /// The stable machine-readable code for this error, e.g. `WRITER_LOCK_HELD`.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        self.kind().as_str()
    }

    /// Which [`Code`] this error has: every variant maps to exactly one.
    #[must_use]
    pub const fn kind(&self) -> Code {
        match self {
            Self::WriterLockHeld { .. } => Code::WriterLockHeld,
            Self::PayloadTooLarge { .. } => Code::PayloadTooLarge,
            Self::PrincipalTooLarge { .. } => Code::PrincipalTooLarge,
            Self::MidLogCorruption { .. } => Code::MidLogCorruption,
            Self::SealedCorruption { .. } => Code::SealedCorruption,
            Self::ChecksumMismatch { .. } => Code::ChecksumMismatch,
            Self::MagicMismatch { .. } => Code::MagicMismatch,
            Self::UnsupportedVersion { .. } => Code::UnsupportedVersion,
            Self::UnsupportedFrame { .. } => Code::UnsupportedFrame,
            Self::TruncatedHeader { .. } => Code::TruncatedHeader,
            Self::ReservedNonZero { .. } => Code::ReservedNonZero,
            Self::NonMonotonicSequence { .. } => Code::NonMonotonicSequence,
            Self::SequenceGap { .. } => Code::SequenceGap,
            Self::SequenceExhausted { .. } => Code::SequenceExhausted,
            Self::Decompression { .. } => Code::Decompression,
            Self::Closed { .. } => Code::Closed,
            Self::Poisoned { .. } => Code::Poisoned,
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::DiskFull { .. } => Code::DiskFull,
            Self::Io { .. } => Code::Io,
            Self::ArtifactConflict { .. } => Code::ArtifactConflict,
            Self::SnapshotCorrupt { .. } => Code::SnapshotCorrupt,
            Self::BodyHashMismatch { .. } => Code::BodyHashMismatch,
            Self::DuplicateSection(_) => Code::DuplicateSection,
            Self::SectionNotFound(_) => Code::SectionNotFound,
            Self::SnapshotTooLarge { .. } => Code::SnapshotTooLarge,
            Self::StoreInconsistent { .. } => Code::StoreInconsistent,
            Self::NotAFile { .. } => Code::NotAFile,
            Self::NotADirectory { .. } => Code::NotADirectory,
            Self::UnsafeLink { .. } => Code::UnsafeLink,
            Self::FileInStore { .. } => Code::FileInStore,
            Self::ConsumerBehindRetention { .. } => Code::ConsumerBehindRetention,
            Self::OwnerLost { .. } => Code::OwnerLost,
            Self::ProducerFenced { .. } => Code::ProducerFenced,
            Self::ProducerGap { .. } => Code::ProducerGap,
            Self::Internal(_) => Code::Internal,
            Self::Remote { code, .. } => *code,
        }
    }

    /// The file offset the error is about, where there is one.
    #[must_use]
    pub const fn offset(&self) -> Option<u64> {
        match self {
            Self::MidLogCorruption { offset, .. }
            | Self::SealedCorruption { offset, .. }
            | Self::ChecksumMismatch { offset, .. }
            | Self::UnsupportedFrame { offset, .. }
            | Self::ReservedNonZero { offset }
            | Self::NonMonotonicSequence { offset, .. }
            | Self::SequenceGap { offset, .. }
            | Self::Decompression { offset, .. } => Some(*offset),
            _ => None,
        }
    }

    /// The path the error is about, where there is one.
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::WriterLockHeld { path }
            | Self::DiskFull { path, .. }
            | Self::Io { path, .. }
            | Self::ArtifactConflict { path }
            | Self::SnapshotCorrupt { path, .. }
            | Self::BodyHashMismatch { path }
            | Self::NotAFile { path, .. }
            | Self::NotADirectory { path }
            | Self::UnsafeLink { path, .. }
            | Self::FileInStore { path, .. }
            | Self::MidLogCorruption { path, .. }
            | Self::SealedCorruption { path, .. } => Some(path),
            Self::StoreInconsistent { dir, .. } | Self::ConsumerBehindRetention { dir, .. } => {
                Some(dir)
            }
            _ => None,
        }
    }

    /// The system call that failed, by the name Node's own errors give it (`mkdir`, `flock`,
    /// ...), and the OS error number, for an error the OS reported (`Io`, `DiskFull`); the
    /// number is absent where the failure was not the OS's. The message keeps the operation.
    #[must_use]
    pub fn os_failure(&self) -> Option<(&'static str, Option<i32>)> {
        match self {
            Self::Io { op, source, .. } | Self::DiskFull { op, source, .. } => {
                Some((syscall_of(op), source.raw_os_error()))
            }
            _ => None,
        }
    }

    /// Wrap an OS error with the operation and path it came from; a [`Refusal`] becomes its
    /// own typed error, and so does a directory where a file belongs (`EISDIR`).
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        match Refusal::of(&source) {
            Some(Refusal::NotRegular(kind)) => Self::NotAFile { path, kind },
            None if source.kind() == io::ErrorKind::IsADirectory => Self::NotAFile {
                path,
                kind: "directory",
            },
            Some(refusal @ (Refusal::Symlink | Refusal::HardLinked(_))) => Self::UnsafeLink {
                path,
                detail: refusal.to_string(),
            },
            None if is_disk_full(&source) => Self::DiskFull {
                op,
                path,
                source: Arc::new(source),
            },
            None => Self::Io {
                op,
                path,
                source: Arc::new(source),
            },
        }
    }
}

/// The system call behind an operation named in an I/O error, as Node names it on its own
/// errors (`err.syscall`); an operation that is one already keeps its name.
fn syscall_of(op: &'static str) -> &'static str {
    match op {
        "create" => "open",
        "create directory" => "mkdir",
        "fsync directory" => "fsync",
        "list" => "scandir",
        "lock" => "flock",
        "preallocate" => "fallocate",
        "remove" => "unlink",
        "spawn committer for" => "spawn",
        "truncate" => "ftruncate",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One error of every variant (the match in `kind` is exhaustive, so a new variant that is
    /// not added here still has a code; this checks each has its own, and that it is listed).
    fn one_of_each() -> Vec<Error> {
        let path = PathBuf::from("p");
        vec![
            Error::WriterLockHeld { path: path.clone() },
            Error::PayloadTooLarge { len: 2, cap: 1 },
            Error::PrincipalTooLarge { len: 2, cap: 1 },
            Error::MidLogCorruption {
                path: path.clone(),
                offset: 0,
                detail: "d",
                next_valid: 1,
            },
            Error::SealedCorruption {
                path: path.clone(),
                offset: 0,
                detail: "d",
                sealed_end: 1,
            },
            Error::ChecksumMismatch {
                what: "w",
                offset: 0,
            },
            Error::MagicMismatch {
                expected: "e",
                found: [0; 4],
            },
            Error::UnsupportedVersion {
                what: "w",
                major: 2,
                minor: 0,
                supported: (1, 0),
            },
            Error::UnsupportedFrame {
                offset: 0,
                detail: "d".into(),
            },
            Error::TruncatedHeader { len: 1, need: 2 },
            Error::ReservedNonZero { offset: 0 },
            Error::NonMonotonicSequence {
                offset: 0,
                previous: 2,
                found: 1,
            },
            Error::SequenceGap {
                offset: 0,
                expected: 2,
                found: 3,
            },
            Error::SequenceExhausted { last: 1 },
            Error::Decompression {
                offset: 0,
                detail: "d".into(),
            },
            Error::Closed { what: "writer" },
            Error::Poisoned { cause: "c".into() },
            Error::InvalidArgument("a".into()),
            Error::io(
                "op",
                path.clone(),
                io::Error::from(io::ErrorKind::StorageFull),
            ),
            Error::io("op", path.clone(), io::Error::other("x")),
            Error::ArtifactConflict { path: path.clone() },
            Error::SnapshotCorrupt {
                path: path.clone(),
                detail: "d".into(),
            },
            Error::BodyHashMismatch { path: path.clone() },
            Error::DuplicateSection("s".into()),
            Error::SectionNotFound("s".into()),
            Error::SnapshotTooLarge {
                what: "w",
                len: 2,
                cap: 1,
            },
            Error::StoreInconsistent {
                dir: path.clone(),
                detail: "d".into(),
            },
            Error::NotAFile {
                path: path.clone(),
                kind: "FIFO",
            },
            Error::NotADirectory { path: path.clone() },
            Error::UnsafeLink {
                path: path.clone(),
                detail: "d".into(),
            },
            Error::FileInStore {
                path: path.clone(),
                dir: path.clone(),
            },
            Error::ConsumerBehindRetention { dir: path, next: 1 },
            Error::OwnerLost { detail: "d".into() },
            Error::ProducerFenced {
                id: 1,
                epoch: 0,
                current: 1,
            },
            Error::ProducerGap {
                id: 1,
                expected: 1,
                found: 2,
            },
            Error::Internal("i".into()),
        ]
    }

    #[test]
    fn every_error_has_its_own_listed_code() {
        let kinds: Vec<Code> = one_of_each().iter().map(Error::kind).collect();
        let engine = &Code::ALL[..Code::ALL.len() - FACADE_ONLY.len()];
        assert_eq!(&Code::ALL[engine.len()..], FACADE_ONLY);
        assert_eq!(
            kinds, engine,
            "one error per code, in the order of the list"
        );
        let mut names: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        assert!(
            names
                .iter()
                .all(|n| n.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
        );
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Code::ALL.len(), "codes are unique");
    }

    #[test]
    fn refusals_become_their_own_errors() {
        let fifo = Error::io("open", "p", Refusal::NotRegular("FIFO").into_io());
        assert_eq!(fifo.code(), "NOT_A_FILE");
        let link = Error::io("open", "p", Refusal::Symlink.into_io());
        assert_eq!(link.code(), "UNSAFE_LINK");
        assert_eq!(Error::io("open", "p", io::Error::other("x")).code(), "IO");
        let dir = Error::io("open", "p", io::Error::from(io::ErrorKind::IsADirectory));
        assert_eq!(dir.code(), "NOT_A_FILE");
        assert_eq!(dir.to_string(), "p: directory, not a regular file");
    }

    #[test]
    fn os_failures_keep_the_operation_number_and_path() {
        let error = Error::io("open", "p", io::Error::from_raw_os_error(2));
        assert_eq!(error.os_failure(), Some(("open", Some(2))));
        let mkdir = Error::io("create directory", "/x", io::Error::from_raw_os_error(13));
        assert_eq!(mkdir.os_failure(), Some(("mkdir", Some(13))));
        assert!(mkdir.to_string().contains("create directory"), "{mkdir}");
        for (op, syscall) in [
            ("fsync directory", "fsync"),
            ("lock", "flock"),
            ("list", "scandir"),
            ("truncate", "ftruncate"),
            ("remove", "unlink"),
            ("rename", "rename"),
            ("fdatasync", "fdatasync"),
        ] {
            assert_eq!(syscall_of(op), syscall);
        }
        assert_eq!(error.path(), Some(Path::new("p")));
        let full = Error::io("write", "q", io::Error::from_raw_os_error(28));
        assert_eq!(
            (full.code(), full.os_failure()),
            ("DISK_FULL", Some(("write", Some(28))))
        );
        assert_eq!(Error::Closed { what: "writer" }.os_failure(), None);
    }
}
