//! Every file name of a store directory, from one place: one type, a maker per kind, and the
//! parser that inverts them (in the manner of LevelDB's `db/filename.h`); temp files, whose
//! names come from their targets, have their own pair ([`temp_path`], [`is_temp`]).

use std::path::{Path, PathBuf};

use crate::io::Vfs;

/// A file of a store directory.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum StoreFile {
    /// `wal.log`: the active WAL.
    Wal,
    /// `wal.log.seal`: the seal of the active WAL (see [`seal_path`] for any WAL's).
    Seal,
    /// `snapshot.<N>.snap`: the state after sequence N.
    Snapshot(u64),
    /// `wal.<N>.archive`: the sealed WAL prefix that ended at sequence N.
    Archive(u64),
    /// `MANIFEST`: the commit point.
    Manifest,
    /// `MANIFEST.lock`: the directory lock.
    Lock,
    /// `consumers.lock`: held exclusive while a consumer's position is compared and replaced,
    /// so acknowledgements from every handle and process apply one at a time.
    ConsumerLock,
    /// `wal.log.torn.<offset>`: the bytes an open cut as a torn tail at that offset of the
    /// active WAL (see [`torn_path`] for any WAL's).
    Torn(u64),
    /// `shared.sock`: the socket a shared store's owner serves its clients on (when the path
    /// is short enough; see `shared::path`).
    Socket,
}

const WAL: &str = "wal.log";
const SEAL_SUFFIX: &str = ".seal";
const MANIFEST: &str = "MANIFEST";
const LOCK: &str = "MANIFEST.lock";
const CONSUMER_LOCK: &str = "consumers.lock";
const SOCKET: &str = "shared.sock";
const TEMP_SUFFIX: &str = ".tmp";
const CONSUMER_PREFIX: &str = "consumer.";
const REPLICA_PREFIX: &str = "replica.";
const TORN_INFIX: &str = ".torn.";

impl StoreFile {
    /// The file's name.
    #[must_use]
    pub fn name(self) -> String {
        match self {
            Self::Wal => WAL.to_owned(),
            Self::Seal => format!("{WAL}{SEAL_SUFFIX}"),
            Self::Snapshot(sequence) => format!("snapshot.{sequence}.snap"),
            Self::Archive(sequence) => format!("wal.{sequence}.archive"),
            Self::Manifest => MANIFEST.to_owned(),
            Self::Lock => LOCK.to_owned(),
            Self::ConsumerLock => CONSUMER_LOCK.to_owned(),
            Self::Torn(offset) => format!("{WAL}{TORN_INFIX}{offset}"),
            Self::Socket => SOCKET.to_owned(),
        }
    }

    /// The file's path in `dir`.
    #[must_use]
    pub fn path(self, dir: &Path) -> PathBuf {
        dir.join(self.name())
    }

    /// What a directory entry named `name` is, if it is a store file; the inverse of
    /// [`StoreFile::name`].
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            WAL => return Some(Self::Wal),
            MANIFEST => return Some(Self::Manifest),
            LOCK => return Some(Self::Lock),
            CONSUMER_LOCK => return Some(Self::ConsumerLock),
            SOCKET => return Some(Self::Socket),
            _ => {}
        }
        if name.strip_suffix(SEAL_SUFFIX) == Some(WAL) {
            Some(Self::Seal)
        } else if let Some(offset) = numbered(name, &format!("{WAL}{TORN_INFIX}"), "") {
            Some(Self::Torn(offset))
        } else if let Some(sequence) = numbered(name, "snapshot.", ".snap") {
            Some(Self::Snapshot(sequence))
        } else {
            numbered(name, "wal.", ".archive").map(Self::Archive)
        }
    }
}

/// Where the bytes cut as a torn tail at `offset` of the WAL at `wal` are kept:
/// `<wal>.torn.<offset>`.
#[must_use]
pub fn torn_path(wal: &Path, offset: u64) -> PathBuf {
    let mut name = wal.as_os_str().to_owned();
    name.push(format!("{TORN_INFIX}{offset}"));
    PathBuf::from(name)
}

/// The WAL `path` names: the file itself, or the active WAL of a store directory.
///
/// # Errors
/// The error of asking `vfs` what `path` is.
pub fn wal_of(vfs: &dyn Vfs, path: &Path) -> std::io::Result<PathBuf> {
    Ok(if vfs.is_dir(path)? {
        StoreFile::Wal.path(path)
    } else {
        path.to_path_buf()
    })
}

/// Where the seal of the WAL at `wal` lives: `<wal>.seal`, in a store or not.
#[must_use]
pub fn seal_path(wal: &Path) -> PathBuf {
    let mut name = wal.as_os_str().to_owned();
    name.push(SEAL_SUFFIX);
    PathBuf::from(name)
}

/// A unique temp path beside `target`: `<name>.<pid>.<nanos>.tmp`.
#[must_use]
pub fn temp_path(target: &Path) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.{nanos}{TEMP_SUFFIX}", std::process::id()));
    target.with_file_name(name)
}

/// The file holding the position of the durable consumer `consumer`: `consumer.<name>`.
#[must_use]
pub fn consumer_file(consumer: &str) -> String {
    format!("{CONSUMER_PREFIX}{consumer}")
}

/// The consumer whose position file is `name`, if it is one; the inverse of
/// [`consumer_file`] (a temp file of one is not).
#[must_use]
pub fn parse_consumer_file(name: &str) -> Option<&str> {
    name.strip_prefix(CONSUMER_PREFIX)
        .filter(|consumer| !consumer.is_empty() && !is_temp(name))
}

/// The file holding how far a replica has applied each source node of the stream `stream`:
/// `replica.<name>`.
#[must_use]
pub fn replica_file(stream: &str) -> String {
    format!("{REPLICA_PREFIX}{stream}")
}

/// The stream (or name) whose replica positions file is `name`, if it is one; the inverse of
/// [`replica_file`] (a temp file of one is not).
#[must_use]
pub fn parse_replica_file(name: &str) -> Option<&str> {
    name.strip_prefix(REPLICA_PREFIX)
        .filter(|stream| !stream.is_empty() && !is_temp(name))
}

/// A unique staging directory beside `dest`, for building a whole store before it takes the
/// name: `<dest>.<pid>.<nanos>.<what>.tmp` (`what`: `backup`, `salvage`).
#[must_use]
pub fn staging_path(dest: &Path, what: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(format!(
        ".{}.{nanos}.{what}{TEMP_SUFFIX}",
        std::process::id()
    ));
    dest.with_file_name(name)
}

/// Whether `name` is a temp file's (made by [`temp_path`]), left by a publication in progress
/// or interrupted.
#[must_use]
pub fn is_temp(name: &str) -> bool {
    name.ends_with(TEMP_SUFFIX)
}

/// The number in a name of the form `<prefix><decimal digits><suffix>`.
fn numbered(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_inverts_name_for_every_kind() {
        for file in [
            StoreFile::Wal,
            StoreFile::Seal,
            StoreFile::Snapshot(0),
            StoreFile::Snapshot(12),
            StoreFile::Snapshot(u64::MAX),
            StoreFile::Archive(7),
            StoreFile::Archive(u64::MAX),
            StoreFile::Manifest,
            StoreFile::Lock,
            StoreFile::ConsumerLock,
            StoreFile::Torn(0),
            StoreFile::Torn(4096),
            StoreFile::Socket,
        ] {
            assert_eq!(StoreFile::parse(&file.name()), Some(file));
            assert!(!is_temp(&file.name()));
        }
        let temp = temp_path(&StoreFile::Snapshot(3).path(Path::new("/d")));
        let name = temp.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("snapshot.3.snap."), "{name}");
        assert!(is_temp(name));
        assert_eq!(StoreFile::parse(name), None);
        assert_eq!(temp.parent(), Some(Path::new("/d")));
    }

    #[test]
    fn other_names_are_not_store_files() {
        for name in [
            "",
            "wal",
            "wal.log.bak",
            "snapshot..snap",
            "snapshot.-1.snap",
            "snapshot.1x.snap",
            "snapshot.18446744073709551616.snap",
            "wal.1.archive.old",
            "wal.+1.archive",
            "snapshot.+1.snap",
            "snap.1.snap",
            "manifest",
            "other.seal",
        ] {
            assert_eq!(StoreFile::parse(name), None, "{name:?}");
        }
    }

    #[test]
    fn consumer_files_parse_back_to_their_consumer() {
        assert_eq!(
            parse_consumer_file(&consumer_file("relay-1")),
            Some("relay-1")
        );
        assert_eq!(parse_consumer_file("consumer."), None);
        assert_eq!(parse_consumer_file("consumer.relay.123.456.tmp"), None);
        assert_eq!(StoreFile::parse(&consumer_file("relay")), None);
        assert_eq!(parse_consumer_file(&StoreFile::ConsumerLock.name()), None);
    }

    #[test]
    fn a_seal_sits_beside_any_wal() {
        assert_eq!(
            seal_path(Path::new("/x/app.wal")),
            Path::new("/x/app.wal.seal")
        );
        assert_eq!(
            seal_path(&StoreFile::Wal.path(Path::new("/d"))),
            StoreFile::Seal.path(Path::new("/d"))
        );
    }
}
