//! A writer's options and their defaults: the sync policy, compression, the snapshot sequence
//! of a new file, and preallocation.

use std::time::Duration;

use super::MAX_SEQUENCE;
use crate::compression::Compression;
use crate::error::{Error, Result};

/// Default preallocation chunk under a policy that fdatasyncs as it commits: the active WAL
/// grows 1 MiB of written zeros at a time (the first fdatasync after a growth flushes that MiB,
/// so a larger chunk makes a larger stall). See [`SyncPolicy::default_preallocate`].
pub const DEFAULT_PREALLOCATE: u64 = 1 << 20;

/// When appended entries are made durable.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum SyncPolicy {
    /// fdatasync before every commit is acknowledged: durable on ack (the default).
    Always,
    /// fdatasync once at least N entries are unsynced (group commit); N >= 1.
    EveryN(u32),
    /// Only on an explicit flush.
    Manual,
    /// fdatasync in the background at most this long after the first unsynced write.
    Interval(Duration),
}

/// Options for opening a writer.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct WalOptions {
    /// When entries become durable.
    pub sync: SyncPolicy,
    /// Payload compression.
    pub compression: Compression,
    /// Snapshot sequence written into a new file's header; an existing file's header wins.
    pub snapshot_seq: u64,
    /// Grow the file this many bytes of zeros at a time ahead of the writes, so an
    /// fdatasync flushes data without a file-size change; 0 grows it write by write. The
    /// unused zero tail is cut at close and is the clean end of the log after a crash.
    pub preallocate: u64,
    /// How long `open` waits for a held writer lock before refusing: [`LOCK_PATIENCE`], for a
    /// lock a forked child holds a moment past the writer's close. Zero for an opener that
    /// has somewhere else to go when the lock is held (a shared store's client).
    pub lock_patience: Duration,
}

/// How long `open` waits for a held writer lock before refusing, by default. The lock belongs
/// to the open file description, and a child process forked (to run another program) while
/// this process has the WAL open holds a copy of it until it execs: a writer closed just then
/// leaves the lock held for a few microseconds to milliseconds more. A real second writer holds
/// it for good.
pub const LOCK_PATIENCE: Duration = Duration::from_millis(100);

impl Default for WalOptions {
    fn default() -> Self {
        let sync = SyncPolicy::Always;
        Self {
            sync,
            compression: Compression::default(),
            snapshot_seq: 0,
            preallocate: sync.default_preallocate(),
            lock_patience: LOCK_PATIENCE,
        }
    }
}

impl SyncPolicy {
    /// The preallocation a writer under this policy gets unless told otherwise.
    ///
    /// Written zeros pay off where fdatasyncs are frequent: each one then flushes data and no
    /// metadata. So `Always` and `EveryN` preallocate [`DEFAULT_PREALLOCATE`] at a time.
    /// `Manual` and `Interval` fdatasync seldom, and zeros there would only double every byte
    /// through the page cache. Without them, 1M `appendSync` of 128 B under `Manual` ran at
    /// 8.7M against 7.6M rec/s (medians of 5).
    #[must_use]
    pub const fn default_preallocate(self) -> u64 {
        match self {
            Self::Always | Self::EveryN(_) => DEFAULT_PREALLOCATE,
            Self::Manual | Self::Interval(_) => 0,
        }
    }
}

impl WalOptions {
    /// Check the options: a sync count or interval of at least 1, a snapshot sequence within
    /// [`MAX_SEQUENCE`], a zstd level of 1 to 22.
    ///
    /// # Errors
    /// `InvalidArgument`.
    pub(super) fn validate(&self) -> Result<()> {
        match self.sync {
            SyncPolicy::EveryN(0) => {
                return Err(Error::InvalidArgument(
                    "sync.everyN must be at least 1".into(),
                ));
            }
            SyncPolicy::Interval(d) if d.is_zero() => {
                return Err(Error::InvalidArgument(
                    "sync.intervalMs must be at least 1".into(),
                ));
            }
            _ => {}
        }
        if self.snapshot_seq > MAX_SEQUENCE {
            return Err(Error::InvalidArgument(format!(
                "snapshotSeq must be at most {MAX_SEQUENCE}"
            )));
        }
        if !(1..=22).contains(&self.compression.level) {
            return Err(Error::InvalidArgument(
                "compression.level must be 1 to 22".into(),
            ));
        }
        Ok(())
    }
}
