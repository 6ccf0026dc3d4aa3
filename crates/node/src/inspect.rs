//! `NativeProgress`: inspect, verify, salvage or back up off the JS thread, with progress that
//! JS polls (no callback crosses threads).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use napi::bindgen_prelude::AsyncTask;
use napi_derive::napi;
use selene_persist_engine::Error;
use selene_persist_engine::backup::{Upto, backup_counted};
use selene_persist_engine::inspect::{Depth, Progress, Report, examine};
use selene_persist_engine::io::StdFs;
use selene_persist_engine::salvage;

use crate::convert::to_f64;
use crate::task::{Blocking, blocking};

/// One long task (an examination, a salvage, a backup) and its progress.
#[napi]
pub struct NativeProgress {
    progress: Arc<Progress>,
}

#[napi]
impl NativeProgress {
    /// A new task, not yet started.
    #[napi(constructor)]
    pub fn new() -> Self {
        Self {
            progress: Arc::new(Progress::default()),
        }
    }

    /// Examine `path` (a store directory or one file); `verify` also checks every hash,
    /// payload and cross-file rule. Resolves with the report as JSON.
    #[napi(catch_unwind, ts_return_type = "Promise<string>")]
    pub fn examine(&self, path: String, verify: bool) -> AsyncTask<Blocking<Report, String>> {
        let progress = Arc::clone(&self.progress);
        let depth = if verify {
            Depth::Verify
        } else {
            Depth::Inspect
        };
        blocking(
            move || examine(&StdFs::shared(), &PathBuf::from(path), depth, &progress),
            |report| serde_json::to_string(&report).unwrap_or_default(),
        )
    }

    /// Salvage `source` (a WAL file, or a store directory) into `dest` (which must not exist):
    /// every frame that verifies, past damage. Resolves with the report as JSON: the engine's
    /// `SalvageReport` with `"kind": "wal"`, or its `StoreSalvage` with `"kind": "store"`.
    #[napi(catch_unwind, ts_return_type = "Promise<string>")]
    pub fn salvage(
        &self,
        source: String,
        dest: String,
    ) -> AsyncTask<Blocking<serde_json::Value, String>> {
        let progress = Arc::clone(&self.progress);
        blocking(
            move || {
                let vfs = StdFs::shared();
                let (source, dest) = (Path::new(&source), Path::new(&dest));
                let is_dir = vfs
                    .is_dir(source)
                    .map_err(|e| Error::io("stat", source, e))?;
                let (kind, report) = if is_dir {
                    (
                        "store",
                        serde_json::to_value(salvage::salvage_store_counted(
                            &vfs, source, dest, &progress,
                        )?),
                    )
                } else {
                    (
                        "wal",
                        serde_json::to_value(salvage::salvage_wal_counted(
                            &vfs, source, dest, &progress,
                        )?),
                    )
                };
                let mut report = report.map_err(|e| Error::Internal(e.to_string()))?;
                report["kind"] = kind.into();
                Ok(report)
            },
            |report| report.to_string(),
        )
    }

    /// Back up the store in `dir`, whose writer may be running in another process, to `dest`
    /// (which must not exist): its active WAL as far as the seal records it durable. Resolves
    /// with the last sequence the backup holds.
    #[napi(catch_unwind, ts_return_type = "Promise<number>")]
    pub fn backup(&self, dir: String, dest: String) -> AsyncTask<Blocking<u64, f64>> {
        let progress = Arc::clone(&self.progress);
        blocking(
            move || {
                backup_counted(
                    &StdFs::shared(),
                    &PathBuf::from(dir),
                    &PathBuf::from(dest),
                    || Upto::Durable,
                    &progress,
                )
            },
            to_f64,
        )
    }

    /// `[bytes done, bytes in all]` so far.
    #[napi(catch_unwind)]
    pub fn progress(&self) -> Vec<f64> {
        vec![
            to_f64(self.progress.done.load(Ordering::Relaxed)),
            to_f64(self.progress.total.load(Ordering::Relaxed)),
        ]
    }
}

impl Default for NativeProgress {
    fn default() -> Self {
        Self::new()
    }
}
