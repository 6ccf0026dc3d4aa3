//! Retention: delete the snapshots and archives a policy no longer needs, MANIFEST first.
//!
//! The live snapshot and the active WAL are never deleted. Orphans of an unfinished rotation
//! (a snapshot newer than the live one, an archive the MANIFEST does not list) and stale temp
//! files are always deleted. When the retained archives change, the MANIFEST is rewritten
//! (the commit point) before any file goes, so a crash never leaves it naming a missing file.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};
use crate::io::{DirEntry, LockKind, Vfs};
use crate::manifest::{Manifest, lock_dir};
use crate::publish::remove_quietly;
use crate::rotation::parse_archive_file_name;
use crate::snapshot;

/// What to keep.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct RetentionPolicy {
    /// Snapshots to keep, the live one included (it is kept even at 0).
    pub keep_snapshots: u32,
    /// Archived WAL prefixes to keep.
    pub keep_archives: u32,
    /// Total bytes of snapshots and archives to stay under, oldest deleted first.
    pub max_bytes: Option<u64>,
    /// Delete snapshots and archives older than this.
    pub max_age: Option<Duration>,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            keep_snapshots: 2,
            keep_archives: 4,
            max_bytes: None,
            max_age: None,
        }
    }
}

/// What a prune did.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct PruneOutcome {
    /// Sequences of the snapshots deleted.
    pub deleted_snapshots: Vec<u64>,
    /// Sequences of the archives deleted.
    pub deleted_archives: Vec<u64>,
    /// Names of stale temp files deleted.
    pub deleted_temp_files: Vec<String>,
    /// Sequences of the snapshots kept.
    pub retained_snapshots: Vec<u64>,
    /// Sequences of the archives kept.
    pub retained_archives: Vec<u64>,
    /// Bytes freed.
    pub bytes_reclaimed: u64,
}

#[derive(Clone, Debug)]
struct Artifact {
    sequence: u64,
    snapshot: bool,
    entry: DirEntry,
}

/// Apply `policy` to the store directory `dir`, as of `now`.
///
/// # Errors
/// I/O and MANIFEST errors. Deleting a file is best effort: a failure is logged, not returned.
pub fn prune(
    vfs: &dyn Vfs,
    dir: &Path,
    policy: &RetentionPolicy,
    now: SystemTime,
) -> Result<PruneOutcome> {
    let _lock = lock_dir(vfs, dir, LockKind::Exclusive)?;
    let Some(manifest) = Manifest::read(vfs, dir)? else {
        return Ok(PruneOutcome::default());
    };
    let live = manifest.live_snapshot_seq;
    let mut outcome = PruneOutcome::default();
    let mut keep = Vec::new();
    let mut delete = Vec::new();
    let mut temps = Vec::new();
    for entry in vfs.list(dir).map_err(|e| Error::io("list", dir, e))? {
        if entry.name.ends_with(".tmp") {
            temps.push(entry);
        } else if let Some(sequence) = snapshot::parse_file_name(&entry.name) {
            let artifact = Artifact {
                sequence,
                snapshot: true,
                entry,
            };
            if sequence > live {
                delete.push(artifact)
            } else {
                keep.push(artifact)
            }
        } else if let Some(sequence) = parse_archive_file_name(&entry.name) {
            let artifact = Artifact {
                sequence,
                snapshot: false,
                entry,
            };
            if manifest.archives.contains(&sequence) {
                keep.push(artifact)
            } else {
                delete.push(artifact)
            }
        }
    }
    // Newest first; the live snapshot sorts first among snapshots and is never dropped.
    keep.sort_by(|a, b| {
        b.sequence
            .cmp(&a.sequence)
            .then(b.snapshot.cmp(&a.snapshot))
    });
    let is_live = |a: &Artifact| a.snapshot && a.sequence == live;
    let (mut snapshots, mut archives) = (0u32, 0u32);
    let mut total: u64 = 0;
    let cutoff = policy.max_age.and_then(|age| now.checked_sub(age));
    let mut retained = Vec::new();
    for artifact in keep {
        let counter = if artifact.snapshot {
            &mut snapshots
        } else {
            &mut archives
        };
        let limit = if artifact.snapshot {
            policy.keep_snapshots
        } else {
            policy.keep_archives
        };
        let too_old = cutoff.is_some_and(|cutoff| artifact.entry.modified < cutoff);
        if is_live(&artifact) || (*counter < limit && !too_old) {
            *counter += 1;
            total += artifact.entry.size;
            retained.push(artifact);
        } else {
            delete.push(artifact);
        }
    }
    if let Some(budget) = policy.max_bytes {
        // Oldest first, never the live snapshot.
        while total > budget {
            let Some(index) = retained.iter().rposition(|a| !is_live(a)) else {
                break;
            };
            let artifact = retained.remove(index);
            total -= artifact.entry.size;
            delete.push(artifact);
        }
    }
    outcome.retained_snapshots = sorted(retained.iter().filter(|a| a.snapshot).map(|a| a.sequence));
    outcome.retained_archives = sorted(retained.iter().filter(|a| !a.snapshot).map(|a| a.sequence));
    let listed: Vec<u64> = manifest
        .archives
        .iter()
        .copied()
        .filter(|s| outcome.retained_archives.contains(s))
        .collect();
    if listed != manifest.archives {
        Manifest {
            archives: listed,
            ..manifest
        }
        .write(vfs, dir)?;
    }
    for artifact in delete {
        remove_quietly(vfs, &dir.join(&artifact.entry.name));
        outcome.bytes_reclaimed += artifact.entry.size;
        let list = if artifact.snapshot {
            &mut outcome.deleted_snapshots
        } else {
            &mut outcome.deleted_archives
        };
        list.push(artifact.sequence);
    }
    for temp in temps {
        remove_quietly(vfs, &dir.join(&temp.name));
        outcome.bytes_reclaimed += temp.size;
        outcome.deleted_temp_files.push(temp.name);
    }
    outcome.deleted_snapshots.sort_unstable();
    outcome.deleted_archives.sort_unstable();
    vfs.sync_dir(dir)
        .map_err(|e| Error::io("fsync directory", dir, e))?;
    Ok(outcome)
}

fn sorted(sequences: impl Iterator<Item = u64>) -> Vec<u64> {
    let mut v: Vec<u64> = sequences.collect();
    v.sort_unstable();
    v
}
