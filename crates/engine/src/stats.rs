//! What a writer has done since it opened, for `stats()`: entries and bytes committed, groups
//! and their sizes, commit latency (from the call to its answer), and what the writer itself
//! counts (fdatasyncs, the last one's time, a torn tail cut at open).
//!
//! The committer records once per group, under one lock, so the counting costs nothing per
//! entry. Histograms keep 2 significant digits: a p99 is exact to 1%.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Significant digits kept by the histograms.
const DIGITS: u8 = 2;
/// The largest value a histogram tells apart (larger ones count as it): 2^40 entries, or
/// microseconds (12 days).
const HIGHEST: u64 = 1 << 40;

/// Counters and histograms of the groups a committer answered.
#[derive(Clone, Debug)]
pub struct CommitStats {
    entries: u64,
    bytes: u64,
    groups: u64,
    group_sizes: Histogram<u64>,
    latencies_us: Histogram<u64>,
}

impl Default for CommitStats {
    fn default() -> Self {
        let histogram = || {
            Histogram::new_with_bounds(1, HIGHEST, DIGITS)
                .unwrap_or_else(|_| unreachable!("valid bounds"))
        };
        Self {
            entries: 0,
            bytes: 0,
            groups: 0,
            group_sizes: histogram(),
            latencies_us: histogram(),
        }
    }
}

impl CommitStats {
    /// A group of `entries` (`bytes` of payload) committed, whose requests were made at `calls`.
    pub fn record_group(
        &mut self,
        entries: u64,
        bytes: u64,
        calls: impl IntoIterator<Item = Instant>,
    ) {
        self.entries += entries;
        self.bytes += bytes;
        self.groups += 1;
        self.group_sizes.saturating_record(entries);
        let now = Instant::now();
        for call in calls {
            let us =
                u64::try_from(now.saturating_duration_since(call).as_micros()).unwrap_or(u64::MAX);
            self.latencies_us.saturating_record(us);
        }
    }

    /// These figures with the writer's own.
    #[must_use]
    pub fn report(
        &self,
        fdatasyncs: u64,
        last_fdatasync: Option<Instant>,
        tail_repairs: u64,
    ) -> StatsReport {
        StatsReport {
            entries: self.entries,
            bytes: self.bytes,
            groups: self.groups,
            fdatasyncs,
            group_size: Quantiles::of(&self.group_sizes),
            commit_latency_us: Quantiles::of(&self.latencies_us),
            since_fdatasync: last_fdatasync.map(|at| at.elapsed()),
            tail_repairs,
        }
    }
}

/// The 50th and 99th percentiles and the largest value of a histogram (0 when empty).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Quantiles {
    /// The median.
    pub p50: u64,
    /// The 99th percentile.
    pub p99: u64,
    /// The largest value recorded.
    pub max: u64,
}

impl Quantiles {
    fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        // The lowest value of each one's bucket: exact counts (a group of 1000) read exactly.
        let at = |q: f64| histogram.lowest_equivalent(histogram.value_at_quantile(q));
        Self {
            p50: at(0.5),
            p99: at(0.99),
            max: histogram.lowest_equivalent(histogram.max()),
        }
    }
}

/// A writer's figures since it opened.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct StatsReport {
    /// Entries committed.
    pub entries: u64,
    /// Payload bytes committed (before compression).
    pub bytes: u64,
    /// Groups committed (one write each).
    pub groups: u64,
    /// fdatasyncs of the WAL that succeeded.
    pub fdatasyncs: u64,
    /// Entries per group.
    pub group_size: Quantiles,
    /// Microseconds from a request's call to its answer.
    pub commit_latency_us: Quantiles,
    /// Time since the last fdatasync (`None`: none yet).
    pub since_fdatasync: Option<Duration>,
    /// Torn tails cut when the WAL was opened (0 or 1 per WAL opened).
    pub tail_repairs: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_entries_and_latencies_are_counted() {
        let mut stats = CommitStats::default();
        assert_eq!(stats.report(0, None, 0), StatsReport::default());
        let long_ago = Instant::now()
            .checked_sub(Duration::from_millis(5))
            .unwrap();
        stats.record_group(3, 30, [Instant::now(), Instant::now(), long_ago]);
        stats.record_group(1, 7, [Instant::now()]);
        stats.record_group(5000, 0, []);
        let report = stats.report(2, Some(Instant::now()), 1);
        assert_eq!(
            (
                report.entries,
                report.bytes,
                report.groups,
                report.fdatasyncs,
                report.tail_repairs
            ),
            (5004, 37, 3, 2, 1)
        );
        // Two significant digits: within 1% below.
        assert!((4950..=5000).contains(&report.group_size.max));
        assert_eq!(report.group_size.p50, 3);
        // The request made 5 ms before its group committed.
        assert!(report.commit_latency_us.max >= 4_950);
        assert!(report.commit_latency_us.p50 < 5_000);
        assert!(report.since_fdatasync.is_some());
    }
}
