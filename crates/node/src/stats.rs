//! A writer's figures (`stats()`) in JS form.

use napi_derive::napi;
use selene_persist_engine::stats::StatsReport;

use crate::convert::to_f64;

/// What a writer has done since it opened (see the engine's `stats` module).
#[napi(object)]
pub struct NativeStats {
    /// Entries committed.
    pub entries: f64,
    /// Payload bytes committed.
    pub bytes: f64,
    /// Groups committed (one write each).
    pub groups: f64,
    /// fdatasyncs of the WAL.
    pub fdatasyncs: f64,
    /// Entries per group: median, 99th percentile, largest.
    pub group_size: Vec<f64>,
    /// Microseconds from hand-over to answer: median, 99th percentile, largest.
    pub commit_latency_us: Vec<f64>,
    /// Milliseconds since the last fdatasync, if any.
    pub since_fdatasync_ms: Option<f64>,
    /// Torn tails cut at open.
    pub tail_repairs: f64,
}

impl From<StatsReport> for NativeStats {
    fn from(report: StatsReport) -> Self {
        let quantiles = |q: selene_persist_engine::stats::Quantiles| {
            vec![to_f64(q.p50), to_f64(q.p99), to_f64(q.max)]
        };
        Self {
            entries: to_f64(report.entries),
            bytes: to_f64(report.bytes),
            groups: to_f64(report.groups),
            fdatasyncs: to_f64(report.fdatasyncs),
            group_size: quantiles(report.group_size),
            commit_latency_us: quantiles(report.commit_latency_us),
            since_fdatasync_ms: report.since_fdatasync.map(|d| d.as_secs_f64() * 1000.0),
            tail_repairs: to_f64(report.tail_repairs),
        }
    }
}
