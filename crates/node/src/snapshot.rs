//! `NativeSnapshotReader` and snapshot publication.

use std::path::PathBuf;
use std::sync::Arc;

use napi::bindgen_prelude::{AsyncTask, Buffer};
use napi_derive::napi;
use selene_persist_engine::io::StdFs;
use selene_persist_engine::snapshot::{PublishedSnapshot, SnapshotReader};

use crate::convert::{
    NativePublished, NativeSection, NativeSectionInfo, snapshot_builder, to_f64, to_u64,
};
use crate::task::{Blocking, blocking};

/// An open snapshot file.
#[napi]
pub struct NativeSnapshotReader {
    inner: Arc<SnapshotReader>,
}

impl From<Arc<SnapshotReader>> for NativeSnapshotReader {
    fn from(inner: Arc<SnapshotReader>) -> Self {
        Self { inner }
    }
}

#[napi]
impl NativeSnapshotReader {
    /// Open the snapshot at `path` (header and table checked; call `verify` for the body).
    #[napi(ts_return_type = "Promise<NativeSnapshotReader>")]
    pub fn open(path: String) -> AsyncTask<Blocking<SnapshotReader, NativeSnapshotReader>> {
        let path = PathBuf::from(path);
        blocking(
            move || SnapshotReader::open(StdFs::shared().as_ref(), &path),
            |reader| NativeSnapshotReader {
                inner: Arc::new(reader),
            },
        )
    }

    /// The sequence the snapshot covers.
    #[napi(catch_unwind)]
    pub fn sequence(&self) -> f64 {
        to_f64(self.inner.sequence())
    }

    /// The file's path.
    #[napi(catch_unwind)]
    pub fn path(&self) -> String {
        self.inner.path().display().to_string()
    }

    /// The sections in the order they were added.
    #[napi(catch_unwind)]
    pub fn sections(&self) -> Vec<NativeSectionInfo> {
        self.inner.sections().iter().map(Into::into).collect()
    }

    /// The bytes of section `name`, checksum-verified and decompressed.
    #[napi(catch_unwind, ts_return_type = "Promise<Buffer>")]
    pub fn read(&self, name: String) -> AsyncTask<Blocking<Vec<u8>, Buffer>> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.read(&name), Buffer::from)
    }

    /// Check the body hash.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn verify(&self) -> AsyncTask<Blocking<(), ()>> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.verify(), |()| ())
    }

    /// Publish `sections` as `snapshot.<sequence>.snap` in `dir`.
    #[napi(catch_unwind, ts_return_type = "Promise<NativePublished>")]
    pub fn publish(
        dir: String,
        sequence: f64,
        sections: Vec<NativeSection>,
        level: i32,
    ) -> napi::Result<AsyncTask<Blocking<PublishedSnapshot, NativePublished>>> {
        let builder = snapshot_builder(to_u64("sequence", sequence)?, sections, level)?;
        let dir = PathBuf::from(dir);
        Ok(blocking(
            move || builder.publish(StdFs::shared().as_ref(), &dir),
            NativePublished::from,
        ))
    }
}
