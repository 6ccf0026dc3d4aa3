//! Retention: delete the snapshots and archives a policy no longer needs, MANIFEST first.
//!
//! The live snapshot and the active WAL are never deleted, nor an archive a registered
//! consumer has not acknowledged all of (only a byte budget can force that, and the prune then
//! names the consumers it left behind). Orphans of an unfinished rotation (a snapshot newer
//! than the live one, an archive the MANIFEST does not list) and stale temp files are always
//! deleted. When the retained archives change, the MANIFEST is rewritten
//! (the commit point) before any file goes, so a crash never leaves it naming a missing file.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::consumer;
use crate::dir_lock::lock_dir;
use crate::error::{Error, Result};
use crate::filename::{StoreFile, is_temp};
use crate::io::{DirEntry, LockKind, Vfs};
use crate::manifest::Manifest;
use crate::publish::remove_quietly;

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
    /// Consumers a byte budget forced an archive they still need out from under: their next
    /// read fails with `ConsumerBehindRetention`.
    pub consumers_behind: Vec<String>,
    /// Names of the kept torn tails deleted (`wal.log.torn.<offset>`): the newest
    /// `keep_archives` of them are kept, none older than `max_age`.
    pub deleted_torn_files: Vec<String>,
}

#[derive(Clone, Debug)]
struct Artifact {
    sequence: u64,
    snapshot: bool,
    entry: DirEntry,
}

impl Artifact {
    /// Whether it is the live snapshot, which no policy deletes.
    fn is_live(&self, live: u64) -> bool {
        self.snapshot && self.sequence == live
    }
}

/// What a prune will do, decided from the directory listing, the MANIFEST, the policy and the
/// time alone: [`plan`] makes it without touching the file system, [`apply`] carries it out.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct PrunePlan {
    /// The MANIFEST to write before anything is deleted, when the retained archives change.
    pub manifest: Option<Manifest>,
    /// Names of the files to delete: snapshots, archives, orphans and stale temp files.
    pub delete: Vec<String>,
    /// What the prune reports once applied.
    pub outcome: PruneOutcome,
}

/// Decide what `policy` deletes from a store directory holding `listing`, whose MANIFEST is
/// `manifest` and whose registered consumers are at `consumers` (name, last acknowledged
/// sequence), as of `now`. The live snapshot and the active WAL are never deleted; orphans of
/// an unfinished rotation and temp files always are; an archive a consumer still needs (one
/// ending after its position) is kept whatever the counts and the age; then the newest
/// snapshots and archives are kept up to the counts, the age and the byte budget.
#[must_use]
pub fn plan(
    listing: Vec<DirEntry>,
    manifest: &Manifest,
    consumers: &[(String, u64)],
    policy: &RetentionPolicy,
    now: SystemTime,
) -> PrunePlan {
    let live = manifest.live_snapshot_seq;
    let cutoff = policy.max_age.and_then(|age| now.checked_sub(age));
    let Listing {
        candidates,
        mut delete,
        temps,
        torn,
    } = classify(listing, manifest);
    let mut retained = retain(candidates, live, consumers, policy, cutoff, &mut delete);
    if let Some(budget) = policy.max_bytes {
        fit_budget(&mut retained, live, budget, &mut delete);
    }
    let old_torn = old_torn(torn, policy.keep_archives, cutoff);
    let mut outcome = PruneOutcome {
        consumers_behind: consumers_behind(consumers, manifest, &delete),
        retained_snapshots: sequences(&retained, true),
        retained_archives: sequences(&retained, false),
        deleted_snapshots: sequences(&delete, true),
        deleted_archives: sequences(&delete, false),
        deleted_torn_files: old_torn.iter().map(|t| t.name.clone()).collect(),
        ..PruneOutcome::default()
    };
    let manifest = manifest_after(manifest, &outcome.retained_archives);
    let mut names = Vec::new();
    for entry in delete
        .into_iter()
        .map(|a| a.entry)
        .chain(temps.iter().cloned())
        .chain(old_torn)
    {
        outcome.bytes_reclaimed += entry.size;
        names.push(entry.name);
    }
    outcome.deleted_temp_files = temps.into_iter().map(|t| t.name).collect();
    PrunePlan {
        manifest,
        delete: names,
        outcome,
    }
}

/// A store directory's files as a prune sorts them.
struct Listing {
    /// Snapshots up to the live one and the archives the MANIFEST lists: kept or not by the
    /// policy.
    candidates: Vec<Artifact>,
    /// Orphans of an unfinished rotation: a snapshot newer than the live one, an archive the
    /// MANIFEST does not list.
    delete: Vec<Artifact>,
    /// Stale temp files.
    temps: Vec<DirEntry>,
    /// Kept torn tails.
    torn: Vec<DirEntry>,
}

/// Sort `listing` against `manifest`; files that are none of these (the active WAL, the
/// MANIFEST, its lock, sidecars) are left out.
fn classify(listing: Vec<DirEntry>, manifest: &Manifest) -> Listing {
    let live = manifest.live_snapshot_seq;
    let mut sorted = Listing {
        candidates: Vec::new(),
        delete: Vec::new(),
        temps: Vec::new(),
        torn: Vec::new(),
    };
    for entry in listing {
        if is_temp(&entry.name) {
            sorted.temps.push(entry);
            continue;
        }
        if matches!(StoreFile::parse(&entry.name), Some(StoreFile::Torn(_))) {
            sorted.torn.push(entry);
            continue;
        }
        let (sequence, snapshot, wanted) = match StoreFile::parse(&entry.name) {
            Some(StoreFile::Snapshot(sequence)) => (sequence, true, sequence <= live),
            Some(StoreFile::Archive(sequence)) => {
                (sequence, false, manifest.archives.contains(&sequence))
            }
            _ => continue,
        };
        let artifact = Artifact {
            sequence,
            snapshot,
            entry,
        };
        if wanted {
            sorted.candidates.push(artifact);
        } else {
            sorted.delete.push(artifact);
        }
    }
    sorted
}

/// The candidates kept, newest first: the live snapshot, every archive a consumer still needs
/// (one ending after its position), then the newest up to the counts and younger than
/// `cutoff`; the rest go onto `delete`.
fn retain(
    mut candidates: Vec<Artifact>,
    live: u64,
    consumers: &[(String, u64)],
    policy: &RetentionPolicy,
    cutoff: Option<SystemTime>,
    delete: &mut Vec<Artifact>,
) -> Vec<Artifact> {
    // Newest first; the live snapshot sorts first among snapshots and is never dropped.
    candidates.sort_by(|a, b| {
        b.sequence
            .cmp(&a.sequence)
            .then(b.snapshot.cmp(&a.snapshot))
    });
    let needed = |a: &Artifact| !a.snapshot && consumers.iter().any(|(_, p)| *p < a.sequence);
    let (mut snapshots, mut archives) = (0u32, 0u32);
    let mut retained = Vec::new();
    for artifact in candidates {
        let (counter, limit) = if artifact.snapshot {
            (&mut snapshots, policy.keep_snapshots)
        } else {
            (&mut archives, policy.keep_archives)
        };
        let too_old = cutoff.is_some_and(|cutoff| artifact.entry.modified < cutoff);
        if artifact.is_live(live) || needed(&artifact) || (*counter < limit && !too_old) {
            *counter += 1;
            retained.push(artifact);
        } else {
            delete.push(artifact);
        }
    }
    retained
}

/// Move the oldest of `retained` (never the live snapshot) onto `delete` until the rest fit
/// in `budget` bytes.
fn fit_budget(retained: &mut Vec<Artifact>, live: u64, budget: u64, delete: &mut Vec<Artifact>) {
    let mut total: u64 = retained.iter().map(|a| a.entry.size).sum();
    while total > budget {
        let Some(index) = retained.iter().rposition(|a| !a.is_live(live)) else {
            break;
        };
        let artifact = retained.remove(index);
        total -= artifact.entry.size;
        delete.push(artifact);
    }
}

/// The consumers an archive on `delete` still ends after: the byte budget left them behind.
fn consumers_behind(
    consumers: &[(String, u64)],
    manifest: &Manifest,
    delete: &[Artifact],
) -> Vec<String> {
    consumers
        .iter()
        .filter(|(_, position)| {
            delete.iter().any(|a| {
                !a.snapshot && manifest.archives.contains(&a.sequence) && a.sequence > *position
            })
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// The MANIFEST to write first: `manifest` listing only the `retained` archives, or `None`
/// when that changes nothing.
fn manifest_after(manifest: &Manifest, retained: &[u64]) -> Option<Manifest> {
    let listed: Vec<u64> = manifest
        .archives
        .iter()
        .copied()
        .filter(|s| retained.contains(s))
        .collect();
    (listed != manifest.archives).then(|| Manifest {
        archives: listed,
        ..manifest.clone()
    })
}

/// The kept torn tails to delete: all but the newest `keep`, and any older than `cutoff`.
fn old_torn(mut torn: Vec<DirEntry>, keep: u32, cutoff: Option<SystemTime>) -> Vec<DirEntry> {
    torn.sort_by_key(|t| std::cmp::Reverse(t.modified));
    torn.into_iter()
        .enumerate()
        .filter(|(i, t)| *i >= keep as usize || cutoff.is_some_and(|c| t.modified < c))
        .map(|(_, t)| t)
        .collect()
}

/// Carry out `plan` in `dir`: the MANIFEST first (the commit point, so a crash never leaves it
/// naming a missing file), then the deletions, then a directory fsync.
///
/// # Errors
/// I/O errors of the MANIFEST write and the fsync. Deleting a file is best effort: a failure
/// is logged, not returned.
pub fn apply(vfs: &dyn Vfs, dir: &Path, plan: &PrunePlan) -> Result<()> {
    if let Some(manifest) = &plan.manifest {
        manifest.write(vfs, dir)?;
    }
    for name in &plan.delete {
        remove_quietly(vfs, &dir.join(name));
    }
    vfs.sync_dir(dir)
        .map_err(|e| Error::io("fsync directory", dir, e))
}

/// Apply `policy` to the store directory `dir`, as of `now`, under the directory lock.
///
/// # Errors
/// As [`apply`], and reading the directory and the MANIFEST.
pub fn prune(
    vfs: &dyn Vfs,
    dir: &Path,
    policy: &RetentionPolicy,
    now: SystemTime,
) -> Result<PruneOutcome> {
    let _lock = lock_dir(vfs, dir, LockKind::Exclusive)?;
    let mut listing = vfs.list(dir).map_err(|e| Error::io("list", dir, e))?;
    let manifest = Manifest::read(vfs, dir)?.unwrap_or_else(|| {
        listing.retain(|entry| {
            is_temp(&entry.name)
                || matches!(StoreFile::parse(&entry.name), Some(StoreFile::Torn(_)))
        });
        Manifest::default()
    });
    let consumers = consumer::retention_positions(vfs, dir)?;
    let plan = plan(listing, &manifest, &consumers, policy, now);
    apply(vfs, dir, &plan)?;
    Ok(plan.outcome)
}

/// The sequences of the snapshots (or, if not `snapshot`, the archives) among `artifacts`,
/// ascending.
fn sequences(artifacts: &[Artifact], snapshot: bool) -> Vec<u64> {
    let mut v: Vec<u64> = artifacts
        .iter()
        .filter(|a| a.snapshot == snapshot)
        .map(|a| a.sequence)
        .collect();
    v.sort_unstable();
    v
}

/// The plan alone, with no file system.
#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + 1000 * HOUR
    }

    /// A file of `size` bytes last modified `age` ago.
    fn file(name: &str, size: u64, age: Duration) -> DirEntry {
        DirEntry {
            name: name.into(),
            size,
            modified: now() - age,
        }
    }

    /// Snapshots and archives at 10, 20, ... 60 (live 60), an hour apart, the oldest first,
    /// plus the active WAL, the MANIFEST and its lock.
    fn store() -> (Vec<DirEntry>, Manifest) {
        let mut listing = vec![
            file("wal.log", 5, Duration::ZERO),
            file("MANIFEST", 1, Duration::ZERO),
            file("MANIFEST.lock", 0, Duration::ZERO),
        ];
        for (i, seq) in (10..=60).step_by(10).enumerate() {
            let age = HOUR * (6 - i as u32);
            listing.push(file(&StoreFile::Snapshot(seq).name(), 100, age));
            listing.push(file(&StoreFile::Archive(seq).name(), 10, age));
        }
        let manifest = Manifest {
            live_snapshot_seq: 60,
            active_wal_seq: 60,
            archives: (10..=60).step_by(10).collect(),
        };
        (listing, manifest)
    }

    #[test]
    fn default_policy_keeps_two_snapshots_and_four_archives_and_rewrites_the_manifest() {
        let (listing, manifest) = store();
        let plan = plan(listing, &manifest, &[], &RetentionPolicy::default(), now());
        assert_eq!(plan.outcome.retained_snapshots, vec![50, 60]);
        assert_eq!(plan.outcome.retained_archives, vec![30, 40, 50, 60]);
        assert_eq!(plan.outcome.deleted_snapshots, vec![10, 20, 30, 40]);
        assert_eq!(plan.outcome.deleted_archives, vec![10, 20]);
        assert_eq!(plan.outcome.bytes_reclaimed, 4 * 100 + 2 * 10);
        assert_eq!(plan.manifest.unwrap().archives, vec![30, 40, 50, 60]);
        assert!(
            !plan
                .delete
                .iter()
                .any(|n| n == "wal.log" || n.starts_with("MANIFEST"))
        );
    }

    #[test]
    fn the_live_snapshot_survives_every_limit_and_an_unchanged_manifest_is_not_rewritten() {
        let (listing, manifest) = store();
        let policy = RetentionPolicy {
            keep_snapshots: 0,
            keep_archives: 6,
            max_bytes: Some(0),
            max_age: Some(Duration::ZERO),
        };
        let plan = plan(listing.clone(), &manifest, &[], &policy, now());
        assert_eq!(plan.outcome.retained_snapshots, vec![60]);
        assert!(plan.outcome.retained_archives.is_empty());
        let everything = RetentionPolicy {
            keep_snapshots: 6,
            keep_archives: 6,
            ..RetentionPolicy::default()
        };
        let kept = super::plan(listing, &manifest, &[], &everything, now());
        assert!(kept.delete.is_empty());
        assert_eq!(kept.manifest, None);
    }

    #[test]
    fn age_and_byte_budget_drop_the_oldest_first() {
        let (listing, manifest) = store();
        let by_age = RetentionPolicy {
            keep_snapshots: 6,
            keep_archives: 6,
            max_age: Some(HOUR * 2 + Duration::from_secs(1)),
            max_bytes: None,
        };
        let plan_age = plan(listing.clone(), &manifest, &[], &by_age, now());
        assert_eq!(plan_age.outcome.retained_snapshots, vec![50, 60]);
        assert_eq!(plan_age.outcome.retained_archives, vec![50, 60]);
        let by_bytes = RetentionPolicy {
            keep_snapshots: 6,
            keep_archives: 6,
            max_bytes: Some(230),
            max_age: None,
        };
        let plan_bytes = plan(listing, &manifest, &[], &by_bytes, now());
        // 60 (100) + archive 60 (10) + 50 (100) + archive 50 (10) = 220; the next would pass 230.
        assert_eq!(plan_bytes.outcome.retained_snapshots, vec![50, 60]);
        assert_eq!(plan_bytes.outcome.retained_archives, vec![50, 60]);
    }

    #[test]
    fn orphans_and_temp_files_always_go() {
        let (mut listing, manifest) = store();
        listing.push(file(&StoreFile::Snapshot(70).name(), 100, Duration::ZERO));
        listing.push(file(&StoreFile::Archive(5).name(), 10, Duration::ZERO));
        listing.push(file("snapshot.70.snap.12.34.tmp", 7, Duration::ZERO));
        listing.push(file("notes.txt", 3, Duration::ZERO));
        let everything = RetentionPolicy {
            keep_snapshots: 9,
            keep_archives: 9,
            ..RetentionPolicy::default()
        };
        let plan = plan(listing, &manifest, &[], &everything, now());
        assert_eq!(plan.outcome.deleted_snapshots, vec![70]);
        assert_eq!(plan.outcome.deleted_archives, vec![5]);
        assert_eq!(
            plan.outcome.deleted_temp_files,
            vec!["snapshot.70.snap.12.34.tmp"]
        );
        assert!(!plan.delete.iter().any(|n| n == "notes.txt"));
        assert_eq!(plan.manifest, None);
    }

    #[test]
    fn a_consumer_keeps_the_archives_it_still_needs_unless_a_byte_budget_forces_them() {
        let (listing, manifest) = store();
        let consumers = [("relay".to_owned(), 25), ("audit".to_owned(), 55)];
        let keep_one = RetentionPolicy {
            keep_archives: 1,
            ..RetentionPolicy::default()
        };
        let kept = plan(listing.clone(), &manifest, &consumers, &keep_one, now());
        // relay acknowledged 25: it needs the archives ending at 30 and after.
        assert_eq!(kept.outcome.retained_archives, vec![30, 40, 50, 60]);
        assert!(kept.outcome.consumers_behind.is_empty());
        // Kept by the counts and consumers: 200 B of snapshots, 40 B of archives.
        let budget = RetentionPolicy {
            max_bytes: Some(225),
            ..keep_one
        };
        let forced = plan(listing, &manifest, &consumers, &budget, now());
        assert_eq!(forced.outcome.retained_archives, vec![50, 60]);
        assert_eq!(forced.outcome.consumers_behind, vec!["relay".to_owned()]);
    }
}
