//! The one recording wrapper the test file systems share: it runs every operation on the real
//! file system ([`StdFs`]) and tells a [`Watcher`] about each one that can change it, before
//! (to fail it) and after (to record what it did).

use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::io::{DirEntry, LockKind, OpenMode, Stat, StdFs, Vfs, VfsFile};

/// An operation that can change the file system.
#[derive(Clone, Copy, Debug)]
pub enum Event<'a> {
    /// A file opened in a mode that can change it; `existed` says whether it was there before.
    Open {
        /// The path.
        path: &'a Path,
        /// The mode.
        mode: OpenMode,
        /// Whether the file existed before the open.
        existed: bool,
    },
    /// Bytes written at an offset.
    Write {
        /// The file's path.
        path: &'a Path,
        /// Where.
        offset: u64,
        /// What.
        data: &'a [u8],
    },
    /// File data synced.
    SyncData {
        /// The file's path.
        path: &'a Path,
    },
    /// Writeback of a range started (a hint; durability is unchanged).
    StartWriteback {
        /// The file's path.
        path: &'a Path,
        /// Where the range starts.
        offset: u64,
        /// Its length.
        len: u64,
    },
    /// The length set.
    SetLen {
        /// The file's path.
        path: &'a Path,
        /// The new length.
        len: u64,
    },
    /// The file extended (preallocated) to at least a length.
    Allocate {
        /// The file's path.
        path: &'a Path,
        /// The length asked for.
        len: u64,
    },
    /// A hard link made.
    Link {
        /// Existing name.
        from: &'a Path,
        /// New name.
        to: &'a Path,
    },
    /// A rename.
    Rename {
        /// Old name.
        from: &'a Path,
        /// New name.
        to: &'a Path,
    },
    /// A directory created.
    CreateDir {
        /// The directory.
        dir: &'a Path,
    },
    /// An empty directory removed.
    RemoveDir {
        /// The directory.
        dir: &'a Path,
    },
    /// A file removed.
    Remove {
        /// The path.
        path: &'a Path,
    },
    /// A directory synced.
    SyncDir {
        /// The directory.
        dir: &'a Path,
    },
}

/// What happens to an operation a watcher was told about before it ran.
#[derive(Debug)]
pub enum Verdict {
    /// It runs.
    Run,
    /// It fails with this error and does nothing.
    Fail(io::Error),
    /// A write stores only its first `bytes`, then fails with `error`.
    Torn {
        /// How many bytes land.
        bytes: usize,
        /// The error returned.
        error: io::Error,
    },
}

/// Told about every operation of a [`Watched`] file system that can change it.
pub trait Watcher: Clone + Send + Sync + Debug + 'static {
    /// What a watcher keeps per open file.
    type File: Send + Sync + Debug;

    /// Before the operation runs.
    fn before(&self, event: &Event<'_>) -> Verdict {
        let _ = event;
        Verdict::Run
    }

    /// After a file was opened (in any mode): what to keep with it.
    fn opened(&self, event: &Event<'_>) -> Self::File;

    /// After an operation ran and succeeded; `file` is the open file's own state and handle,
    /// for operations on one.
    fn after(&self, event: &Event<'_>, file: Option<(&Self::File, &dyn VfsFile)>) {
        let _ = (event, file);
    }
}

/// The real file system, watched by `W`. Clones share the watcher's state.
#[derive(Clone, Debug, Default)]
pub struct Watched<W: Watcher> {
    /// The watcher.
    pub watcher: W,
}

impl<W: Watcher> Watched<W> {
    /// This file system as a shared `Vfs` handle.
    #[must_use]
    pub fn shared(&self) -> Arc<dyn Vfs> {
        Arc::new(self.clone())
    }

    /// Tell the watcher, run `op` unless it fails the operation, then tell it again.
    fn run<T>(&self, event: &Event<'_>, op: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        match self.watcher.before(event) {
            Verdict::Run => {}
            Verdict::Fail(error) | Verdict::Torn { error, .. } => return Err(error),
        }
        let done = op()?;
        self.watcher.after(event, None);
        Ok(done)
    }
}

impl<W: Watcher> Vfs for Watched<W> {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn VfsFile>> {
        let event = Event::Open {
            path,
            mode,
            existed: StdFs.stat(path)?.is_some(),
        };
        if mode != OpenMode::Read
            && let Verdict::Fail(error) | Verdict::Torn { error, .. } = self.watcher.before(&event)
        {
            return Err(error);
        }
        let inner = StdFs.open(path, mode)?;
        let file = self.watcher.opened(&event);
        Ok(Box::new(WatchedFile {
            watcher: self.watcher.clone(),
            path: path.to_path_buf(),
            file,
            inner,
        }))
    }

    fn link(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.run(&Event::Link { from, to }, || StdFs.link(from, to))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.run(&Event::Rename { from, to }, || StdFs.rename(from, to))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        StdFs.list(dir)
    }

    fn stat(&self, path: &Path) -> io::Result<Option<Stat>> {
        StdFs.stat(path)
    }

    fn create_dir(&self, dir: &Path) -> io::Result<()> {
        self.run(&Event::CreateDir { dir }, || StdFs.create_dir(dir))
    }

    fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        self.run(&Event::RemoveDir { dir }, || StdFs.remove_dir(dir))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.run(&Event::Remove { path }, || StdFs.remove(path))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.run(&Event::SyncDir { dir }, || StdFs.sync_dir(dir))
    }
}

#[derive(Debug)]
struct WatchedFile<W: Watcher> {
    watcher: W,
    path: PathBuf,
    file: W::File,
    inner: Box<dyn VfsFile>,
}

impl<W: Watcher> WatchedFile<W> {
    /// Tell the watcher, run `op` on the file unless it fails the operation, then tell it again.
    fn run(
        &mut self,
        event: &Event<'_>,
        op: impl FnOnce(&mut dyn VfsFile) -> io::Result<()>,
    ) -> io::Result<()> {
        match self.watcher.before(event) {
            Verdict::Run => {}
            Verdict::Fail(error) => return Err(error),
            Verdict::Torn { bytes, error } => {
                if let Event::Write { data, offset, .. } = event {
                    self.inner
                        .write_all_at(&data[..bytes.min(data.len())], *offset)?;
                }
                return Err(error);
            }
        }
        op(self.inner.as_mut())?;
        self.watcher
            .after(event, Some((&self.file, self.inner.as_ref())));
        Ok(())
    }
}

impl<W: Watcher> VfsFile for WatchedFile<W> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }

    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let path = self.path.clone();
        let event = Event::Write {
            path: &path,
            offset,
            data: buf,
        };
        self.run(&event, |f| f.write_all_at(buf, offset))
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let path = self.path.clone();
        self.run(&Event::SyncData { path: &path }, |f| f.sync_data())
    }

    fn start_writeback(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let path = self.path.clone();
        let event = Event::StartWriteback {
            path: &path,
            offset,
            len,
        };
        self.run(&event, |f| f.start_writeback(offset, len))
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let path = self.path.clone();
        self.run(&Event::SetLen { path: &path, len }, |f| f.set_len(len))
    }

    fn allocate(&mut self, len: u64) -> io::Result<()> {
        let path = self.path.clone();
        self.run(&Event::Allocate { path: &path, len }, |f| f.allocate(len))
    }

    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }

    fn try_lock(&self) -> io::Result<bool> {
        self.inner.try_lock()
    }

    fn lock(&self, kind: LockKind) -> io::Result<()> {
        self.inner.lock(kind)
    }
}
