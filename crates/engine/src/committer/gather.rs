//! How long a group waits for the appends of other sources (a shared store's clients) that are
//! about to arrive: a commit delay with siblings, as PostgreSQL's `commit_delay` and
//! `commit_siblings`, but learnt rather than set.
//!
//! Each group costs a write and, under `'always'`, an fdatasync, whose CPU (on a virtual disk,
//! mostly the kernel's I/O submission) is paid per group, not per entry. One process's writers
//! all answer in one turn of its event loop, so their next appends arrive together and fill
//! one group. Several processes answer and re-send each on its own clock: a committer that
//! commits whatever has arrived makes one group per process turn, several times the syncs for
//! the same appends (4 processes x 16 writers: groups of 17 against 64 in one process).
//!
//! So the committer learns each source's rhythm: the gap between the groups it appears in. A
//! group that holds some sources waits for each other source that is *due*: it was last seen
//! less than two of its gaps ago (so it has not gone quiet) and its next request is expected
//! before the wait's end. The wait never exceeds what a commit has cost lately (an average of
//! the last commits' write and fdatasync; under a policy that does not sync, a write, so
//! hardly any wait), nor [`MAX_DELAY`]: at worst a group's latency doubles, and every sibling
//! that arrives in that time rides on the same fdatasync instead of paying its own. A store
//! written by one process has one source and never waits.

use std::time::{Duration, Instant};

/// Who sent an append: the committer's own process, or one client connection of a shared
/// store's owner.
pub type Source = u64;

/// The source of appends made in the committer's own process.
pub const LOCAL: Source = 0;

/// Longest wait for siblings, whatever a commit costs.
pub const MAX_DELAY: Duration = Duration::from_millis(1);

/// A source quiet for this long is forgotten.
const FORGET: Duration = Duration::from_secs(1);

/// Most sources remembered (a shared store's connections, and the local one).
const MAX_SOURCES: usize = 1024;

/// One source's rhythm.
#[derive(Clone, Copy, Debug)]
struct Rhythm {
    source: Source,
    /// When its request of the last group it was in was made.
    last: Instant,
    /// Its usual gap between groups (an average), once it has been seen twice.
    gap: Option<Duration>,
}

/// What the committer knows of its sources and of its commits' cost.
#[derive(Debug, Default)]
pub struct Gather {
    rhythms: Vec<Rhythm>,
    /// Average cost of a commit (write and fdatasync), in µs, once one is made.
    commit_us: Option<u64>,
}

impl Gather {
    /// `source`'s first request in the group being gathered was made at `at`.
    pub fn arrived(&mut self, source: Source, at: Instant) {
        if let Some(rhythm) = self.rhythms.iter_mut().find(|r| r.source == source) {
            let gap = at.saturating_duration_since(rhythm.last);
            rhythm.gap = Some(rhythm.gap.map_or(gap, |old| (old * 3 + gap) / 4));
            rhythm.last = rhythm.last.max(at);
            return;
        }
        self.rhythms
            .retain(|r| at.saturating_duration_since(r.last) < FORGET);
        if self.rhythms.len() < MAX_SOURCES {
            self.rhythms.push(Rhythm {
                source,
                last: at,
                gap: None,
            });
        }
    }

    /// A commit took `cost`.
    pub fn committed(&mut self, cost: Duration) {
        let us = u64::try_from(cost.as_micros()).unwrap_or(u64::MAX);
        self.commit_us = Some(self.commit_us.map_or(us, |old| (old * 3 + us) / 4));
    }

    /// Until when a group begun at `start`, holding requests of the sources in `seen`, should
    /// wait for more at `now`: `None` when no other source is due before the wait would end.
    #[must_use]
    pub fn wait_until(&self, seen: &[Source], start: Instant, now: Instant) -> Option<Instant> {
        let delay = Duration::from_micros(self.commit_us.unwrap_or(0)).min(MAX_DELAY);
        let end = start + delay;
        if now >= end {
            return None;
        }
        let due = |r: &&Rhythm| {
            r.gap.is_some_and(|gap| {
                now < r.last + gap * 2 && r.last + gap <= end && !seen.contains(&r.source)
            })
        };
        self.rhythms.iter().find(due).map(|_| end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    /// A gather whose commits cost `commit` µs, having seen each source in `seen` at the
    /// given µs offsets from `t0`.
    fn gather(t0: Instant, commit: u64, seen: &[(Source, &[u64])]) -> Gather {
        let mut gather = Gather::default();
        gather.committed(us(commit));
        for (source, times) in seen {
            for t in *times {
                gather.arrived(*source, t0 + us(*t));
            }
        }
        gather
    }

    #[test]
    fn one_source_never_waits() {
        let t0 = Instant::now();
        let g = gather(t0, 500, &[(LOCAL, &[0, 400, 800])]);
        assert_eq!(g.wait_until(&[LOCAL], t0 + us(1200), t0 + us(1200)), None);
    }

    #[test]
    fn a_due_sibling_is_waited_for_at_most_one_commit() {
        let t0 = Instant::now();
        let g = gather(t0, 500, &[(1, &[0, 400, 800]), (2, &[100, 500, 900])]);
        let start = t0 + us(1200);
        assert_eq!(g.wait_until(&[1], start, start), Some(start + us(500)));
        // Once both are in, or once the wait is over, nothing more.
        assert_eq!(g.wait_until(&[1, 2], start, start + us(10)), None);
        assert_eq!(g.wait_until(&[1], start, start + us(500)), None);
    }

    #[test]
    fn the_wait_is_capped_whatever_a_commit_costs() {
        let t0 = Instant::now();
        let g = gather(t0, 50_000, &[(1, &[0, 400]), (2, &[100, 500])]);
        let start = t0 + us(800);
        assert_eq!(g.wait_until(&[1], start, start), Some(start + MAX_DELAY));
    }

    #[test]
    fn a_source_seen_once_has_no_rhythm_yet() {
        let t0 = Instant::now();
        let g = gather(t0, 500, &[(1, &[0, 400]), (2, &[700])]);
        let start = t0 + us(800);
        assert_eq!(g.wait_until(&[1], start, start), None);
    }

    #[test]
    fn a_quiet_source_is_not_waited_for() {
        let t0 = Instant::now();
        // Source 2's gap is 400 µs and it was last seen 1000 µs before the group: gone quiet.
        let g = gather(t0, 500, &[(1, &[0, 400, 800, 1200]), (2, &[0, 400])]);
        let start = t0 + us(1400);
        assert_eq!(g.wait_until(&[1], start, start), None);
    }

    #[test]
    fn a_source_not_due_before_the_wait_ends_is_not_waited_for() {
        let t0 = Instant::now();
        // Source 2 appends every 5 ms; the wait would end long before its next.
        let g = gather(t0, 500, &[(1, &[4000, 4400]), (2, &[0, 5000])]);
        let start = t0 + us(5400);
        assert_eq!(g.wait_until(&[1], start, start), None);
    }

    #[test]
    fn a_policy_that_does_not_sync_hardly_waits() {
        let t0 = Instant::now();
        let g = gather(t0, 0, &[(1, &[0, 400]), (2, &[100, 500])]);
        let start = t0 + us(800);
        assert_eq!(g.wait_until(&[1], start, start), None);
    }

    #[test]
    fn sources_quiet_for_long_are_forgotten() {
        let t0 = Instant::now();
        let mut g = gather(t0, 500, &[(1, &[0, 400])]);
        g.arrived(2, t0 + FORGET + us(1000));
        assert_eq!(g.rhythms.len(), 1);
        assert_eq!(g.rhythms[0].source, 2);
    }
}
