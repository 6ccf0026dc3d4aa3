//! The directory lock, `MANIFEST.lock`: held exclusive by whoever changes a store's committed
//! state (recovery, rotation, prune) and shared by whoever needs it to stay put meanwhile
//! (readers, backups, inspection, a sidecar being published).

use std::path::Path;

use crate::error::{Error, Result};
use crate::filename::StoreFile;
use crate::io::{LockKind, OpenMode, Vfs, VfsFile};

/// A held lock on a store directory's `MANIFEST.lock`; released on drop.
#[derive(Debug)]
pub struct DirLock {
    _file: Box<dyn VfsFile>,
}

/// Lock `dir`: exclusive for rotation, prune and recovery by the writer; shared for readers
/// and backups. Waits for conflicting holders.
///
/// # Errors
/// I/O errors.
pub fn lock_dir(vfs: &dyn Vfs, dir: &Path, kind: LockKind) -> Result<DirLock> {
    // Never deleted or replaced: a new inode would be a second lock domain.
    let path = StoreFile::Lock.path(dir);
    let file = vfs
        .open(&path, OpenMode::Create)
        .map_err(|e| Error::io("open", &path, e))?;
    file.lock(kind).map_err(|e| Error::io("lock", &path, e))?;
    Ok(DirLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::StdFs;

    #[test]
    fn shared_locks_coexist_and_exclusive_waits() {
        let dir = tempfile::tempdir().unwrap();
        let a = lock_dir(&StdFs, dir.path(), LockKind::Shared).unwrap();
        let _b = lock_dir(&StdFs, dir.path(), LockKind::Shared).unwrap();
        let path = dir.path().to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let _lock = lock_dir(&StdFs, &path, LockKind::Exclusive).unwrap();
            tx.send(()).unwrap();
        });
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(100))
                .is_err(),
            "exclusive got in past readers"
        );
        drop(a);
        drop(_b);
        rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        waiter.join().unwrap();
    }
}
