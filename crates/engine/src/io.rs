//! The engine's one door to the file system.
//!
//! Every file-system call made by the writer, reader and scan goes through [`Vfs`] and
//! [`VfsFile`], so tests can record operations and inject faults (see [`crate::testing::fault`])
//! without touching format code. [`StdFs`] is the production implementation.

use std::fmt::Debug;
use std::fs::{File, Metadata, OpenOptions, TryLockError};
use std::io;
#[cfg(unix)]
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
#[cfg(windows)]
use std::os::windows::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// Why [`StdFs::open`] refused a path before reading or writing a byte of it. It travels
/// inside the `io::Error` (kind `InvalidInput`), and [`crate::Error::io`] turns it into its own
/// typed error.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// A FIFO, socket, device or directory where a regular file belongs: reading a FIFO would
    /// block forever, so it is opened non-blocking and refused.
    #[error("is a {0}, not a regular file")]
    NotRegular(&'static str),
    /// A symbolic link where the engine writes: writing through it would change a file
    /// outside the directory.
    #[error("is a symbolic link; files the engine writes are never opened through one")]
    Symlink,
    /// A sidecar written in place has more than one name: writing it would change the other.
    #[error("has {0} hard links; a file the engine rewrites in place must have one")]
    HardLinked(u64),
}

impl Refusal {
    /// This refusal as the `io::Error` a [`Vfs`] returns.
    #[must_use]
    pub fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, self)
    }

    /// The refusal carried by `error`, if it is one.
    #[must_use]
    pub fn of(error: &io::Error) -> Option<Self> {
        error.get_ref()?.downcast_ref::<Self>().copied()
    }
}

/// How a file is opened. Every mode refuses what is not a regular file; every mode that can
/// write refuses a symbolic link as the last component (directories above it are followed).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum OpenMode {
    /// Read only; the file must exist.
    Read,
    /// Read and write; the file must exist.
    ReadWrite,
    /// Create a new file for writing (mode 0600); fails if it exists.
    CreateNew,
    /// Open for read and write, creating the file (mode 0600) if it is missing: for the
    /// sidecars rewritten in place (seal, lock), so a file with a second hard link is refused.
    Create,
}

/// A directory entry as [`Vfs::list`] reports it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct DirEntry {
    /// The file name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification time.
    pub modified: std::time::SystemTime,
}

/// What [`Vfs::stat`] reports of a path (following symlinks).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Stat {
    /// Whether it is a directory.
    pub dir: bool,
    /// Its size in bytes.
    pub size: u64,
}

/// How [`VfsFile::lock`] locks.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum LockKind {
    /// Many holders at once (readers, backups).
    Shared,
    /// One holder (rotation, prune).
    Exclusive,
}

/// A file system: the operations on paths.
pub trait Vfs: Send + Sync + Debug {
    /// Open `path` in `mode`.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn VfsFile>>;
    /// Hard-link `from` to `to`; fails with `AlreadyExists` rather than replace `to`.
    fn link(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Rename `from` to `to`, replacing `to` atomically.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// The regular files in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<DirEntry>>;
    /// What `path` is, or `None` if nothing is there.
    fn stat(&self, path: &Path) -> io::Result<Option<Stat>>;
    /// Whether `path` is a directory.
    fn is_dir(&self, path: &Path) -> io::Result<bool> {
        Ok(self.stat(path)?.is_some_and(|s| s.dir))
    }
    /// Create the directory `dir`, whose parent must exist; `AlreadyExists` if anything is
    /// there.
    fn create_dir(&self, dir: &Path) -> io::Result<()>;
    /// Remove the empty directory `dir`.
    fn remove_dir(&self, dir: &Path) -> io::Result<()>;
    /// Remove a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Make the directory's entries (creations, links, renames) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// An open file: positional I/O, so no operation depends on a hidden cursor.
pub trait VfsFile: Send + Sync + Debug {
    /// Read into `buf` at `offset`; returns the bytes read (0 at end of file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Write all of `buf` at `offset`.
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Flush file data (and the metadata needed to read it) to stable storage.
    fn sync_data(&mut self) -> io::Result<()>;
    /// Start writing the `len` bytes at `offset` back to storage, without waiting: a hint that
    /// leaves a later [`Self::sync_data`] less to write. Promises nothing about durability;
    /// where the platform has no such call it does nothing.
    fn start_writeback(&mut self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }
    /// Truncate or extend the file to `len` bytes.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Extend the file to at least `len` bytes of zeros that are really written, so later
    /// writes inside that length overwrite allocated, initialised blocks: an fdatasync after
    /// them flushes data and no metadata.
    fn allocate(&mut self, len: u64) -> io::Result<()>;
    /// Current length in bytes.
    fn size(&self) -> io::Result<u64>;
    /// Take an exclusive advisory lock without waiting; `Ok(false)` if another holder has it.
    fn try_lock(&self) -> io::Result<bool>;
    /// Take an advisory lock, waiting for conflicting holders to release theirs.
    fn lock(&self, kind: LockKind) -> io::Result<()>;
}

/// Fill `buf` from `offset`, failing with `UnexpectedEof` if the file ends first.
pub fn read_exact_at(file: &dyn VfsFile, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Read into `buf` from `offset` until it is full or the file ends; returns the bytes read. A
/// reader beside a live writer uses it: the writer may cut its zero tail at any moment.
pub fn read_up_to(file: &dyn VfsFile, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct StdFs;

impl StdFs {
    /// A shared handle to the real file system.
    #[must_use]
    pub fn shared() -> Arc<dyn Vfs> {
        Arc::new(Self)
    }
}

impl Vfs for StdFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn VfsFile>> {
        let mut options = OpenOptions::new();
        match mode {
            OpenMode::Read => options.read(true),
            OpenMode::ReadWrite => options.read(true).write(true),
            OpenMode::CreateNew => options.read(true).write(true).create_new(true),
            OpenMode::Create => options.read(true).write(true).create(true).truncate(false),
        };
        #[cfg(unix)]
        {
            use rustix::fs::OFlags;
            // A FIFO must not block the open (it is refused below); regular files ignore it.
            let mut flags = OFlags::NONBLOCK;
            if mode != OpenMode::Read {
                flags |= OFlags::NOFOLLOW;
            }
            options.custom_flags(i32::try_from(flags.bits()).unwrap_or(0));
            // New files are private to the owner, like the data in them.
            if matches!(mode, OpenMode::CreateNew | OpenMode::Create) {
                options.mode(0o600);
            }
        }
        let file = options.open(path).map_err(|e| followed_link(e, mode))?;
        check_kind(&file.metadata()?, mode)?;
        Ok(Box::new(StdFile(file)))
    }

    fn link(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::hard_link(from, to)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if let (true, Some(name)) = (meta.is_file(), entry.file_name().to_str()) {
                entries.push(DirEntry {
                    name: name.to_owned(),
                    size: meta.len(),
                    modified: meta.modified()?,
                });
            }
        }
        Ok(entries)
    }

    fn stat(&self, path: &Path) -> io::Result<Option<Stat>> {
        match std::fs::metadata(path) {
            Ok(meta) => Ok(Some(Stat {
                dir: meta.is_dir(),
                size: meta.len(),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn create_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir(dir)
    }

    fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::remove_dir(dir)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    #[cfg(unix)]
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    /// Windows cannot open a directory for flushing; NTFS journals directory entries itself.
    #[cfg(windows)]
    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
}

/// O_NOFOLLOW makes opening a symlink fail with ELOOP: say why.
fn followed_link(error: io::Error, mode: OpenMode) -> io::Error {
    #[cfg(unix)]
    if mode != OpenMode::Read
        && error.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
    {
        return Refusal::Symlink.into_io();
    }
    #[cfg(not(unix))]
    let _ = mode;
    error
}

/// Refuse what is not a regular file, and a rewritten-in-place sidecar with a second name.
fn check_kind(meta: &Metadata, mode: OpenMode) -> io::Result<()> {
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "directory"
        } else {
            special_kind(&kind)
        };
        return Err(Refusal::NotRegular(what).into_io());
    }
    #[cfg(unix)]
    if mode == OpenMode::Create && meta.nlink() > 1 {
        return Err(Refusal::HardLinked(meta.nlink()).into_io());
    }
    #[cfg(not(unix))]
    let _ = mode;
    Ok(())
}

#[cfg(unix)]
fn special_kind(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_fifo() {
        "FIFO"
    } else if kind.is_socket() {
        "socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "device"
    } else {
        "special file"
    }
}

#[cfg(not(unix))]
fn special_kind(_kind: &std::fs::FileType) -> &'static str {
    "special file"
}

#[derive(Debug)]
struct StdFile(File);

/// What `allocate` writes, a piece at a time.
static ZEROS: [u8; 256 << 10] = [0; 256 << 10];

impl VfsFile for StdFile {
    #[cfg(unix)]
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.read_at(buf, offset)
    }

    #[cfg(windows)]
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.seek_read(buf, offset)
    }

    #[cfg(unix)]
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    #[cfg(windows)]
    fn write_all_at(&mut self, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.0.seek_write(buf, offset)?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            buf = &buf[n..];
            offset += n as u64;
        }
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }

    // The one call rustix does not wrap.
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    fn start_writeback(&mut self, offset: u64, len: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return Ok(());
        };
        // SAFETY: a plain syscall on an open descriptor this file owns; no memory is passed.
        let done = unsafe {
            libc::sync_file_range(self.0.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
        };
        if done == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    /// Writes the zeros rather than calling fallocate: ext4 (like XFS) marks fallocated
    /// blocks unwritten, and the first write into each one makes the next fdatasync commit an
    /// extent conversion to the journal, which costs about as much as growing the file (the
    /// `fdatasync_loop` example measures both).
    fn allocate(&mut self, len: u64) -> io::Result<()> {
        let mut at = self.0.metadata()?.len();
        while at < len {
            let n = usize::try_from(len - at).map_or(ZEROS.len(), |left| left.min(ZEROS.len()));
            self.write_all_at(&ZEROS[..n], at)?;
            at += n as u64;
        }
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn try_lock(&self) -> io::Result<bool> {
        match self.0.try_lock() {
            Ok(()) => Ok(true),
            Err(TryLockError::WouldBlock) => Ok(false),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    fn lock(&self, kind: LockKind) -> io::Result<()> {
        match kind {
            LockKind::Shared => self.0.lock_shared(),
            LockKind::Exclusive => self.0.lock(),
        }
    }
}
