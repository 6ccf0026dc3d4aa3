//! Crash-safe publication of whole files: write a temp file beside the target, fdatasync it,
//! link (no clobber) or rename (replace) it into place, then fsync the directory. A crash
//! leaves either no target or a complete one; stale temp files are named `*.tmp` for pruning.
//! Whole directories the same way: a [`Staging`] directory renamed into place, removed with
//! what it holds when the operation building it fails; and [`make_dirs`] makes each directory
//! it creates durable.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::dir_lock::lock_dir;
use crate::error::{Error, Result};
use crate::filename::staging_path;
use crate::io::{LockKind, OpenMode, Vfs, VfsFile, read_exact_at};
use crate::warning::{self, Kind};

/// How the temp file takes the target's place.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Placement {
    /// Hard link; an existing target is kept. With `require_identical`, an existing target
    /// that differs from the new contents is an `ArtifactConflict`.
    Link {
        /// Whether an existing target must match byte for byte.
        require_identical: bool,
    },
    /// Rename over the target, replacing it atomically.
    Replace,
}

/// What publication did.
#[derive(Debug)]
pub struct Published {
    /// False when a link found the target already there.
    pub created: bool,
    /// The still-open temp file handle (the target's inode when `created`).
    pub file: Box<dyn VfsFile>,
}

/// The directory holding `path` (`.` for a bare file name).
#[must_use]
pub fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Create `dir` and its missing parents, each made durable (its parent fsynced) before the
/// next is made inside it; returns the directories created, outermost first. On failure the
/// ones already created are removed again.
///
/// # Errors
/// I/O errors naming the directory.
pub fn make_dirs(vfs: &dyn Vfs, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(path) = at.filter(|p| !p.as_os_str().is_empty()) {
        match vfs.stat(path) {
            // The nearest existing ancestor must be a directory: say which file is in the way,
            // not "not a directory" of a path below it.
            Ok(Some(stat)) if !stat.dir => {
                return Err(Error::NotADirectory {
                    path: path.to_path_buf(),
                });
            }
            Ok(Some(_)) => break,
            // A file above `path` (ENOTDIR): the walk up finds it.
            Ok(None) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {}
            Err(e) => return Err(Error::io("stat", path, e)),
        }
        missing.push(path.to_path_buf());
        at = path.parent();
    }
    let mut made = Vec::new();
    for path in missing.into_iter().rev() {
        let parent = dir_of(&path);
        let done = match vfs.create_dir(&path) {
            Ok(()) => {
                made.push(path.clone());
                Ok(())
            }
            // Made by another process meanwhile: not ours to remove, but ours to make durable.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(Error::io("create directory", &path, e)),
        }
        .and_then(|()| {
            vfs.sync_dir(parent)
                .map_err(|e| Error::io("fsync directory", parent, e))
        });
        if let Err(e) = done {
            remove_dirs(vfs, &made);
            return Err(e);
        }
    }
    Ok(made)
}

/// Remove the directories `made` (outermost first) if they are empty, innermost first,
/// logging (not failing) what cannot be removed.
fn remove_dirs(vfs: &dyn Vfs, made: &[PathBuf]) {
    for dir in made.iter().rev() {
        if let Err(e) = vfs.remove_dir(dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warning::report(
                Kind::CleanupFailed,
                dir,
                format_args!("cannot remove the directory: {e}"),
            );
        }
    }
}

/// A directory a whole store is built in before it takes its name (see [`Staging::place`]).
/// Until then, dropping it removes it, its files and the parents of the destination it
/// created: an operation that fails leaves nothing behind. One killed leaves the staging
/// directory, named `*.<what>.tmp`.
#[derive(Debug)]
pub struct Staging {
    vfs: Arc<dyn Vfs>,
    path: PathBuf,
    dest: PathBuf,
    /// The destination's parents created for it, outermost first.
    made: Vec<PathBuf>,
    placed: bool,
}

impl Staging {
    /// Create the staging directory beside `dest` (a `what` in progress), and `dest`'s missing
    /// parents, made durable.
    ///
    /// # Errors
    /// I/O errors (nothing is then left).
    pub fn create(vfs: &Arc<dyn Vfs>, dest: &Path, what: &str) -> Result<Self> {
        let made = make_dirs(vfs.as_ref(), dir_of(dest))?;
        let path = staging_path(dest, what);
        if let Err(e) = vfs.create_dir(&path) {
            remove_dirs(vfs.as_ref(), &made);
            return Err(Error::io("create directory", &path, e));
        }
        Ok(Self {
            vfs: Arc::clone(vfs),
            path,
            dest: dest.to_path_buf(),
            made,
            placed: false,
        })
    }

    /// The staging directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Give the staging directory (its files already published) the destination's name: fsync
    /// it, rename it, fsync the parent. Before the rename nothing is at the destination; after
    /// the parent's fsync the directory is there for good. If that fsync fails, the directory
    /// is taken back and removed.
    ///
    /// # Errors
    /// I/O errors (nothing is then left).
    pub fn place(mut self) -> Result<()> {
        let vfs = self.vfs.as_ref();
        vfs.sync_dir(&self.path)
            .map_err(|e| Error::io("fsync directory", &self.path, e))?;
        vfs.rename(&self.path, &self.dest)
            .map_err(|e| Error::io("rename", &self.dest, e))?;
        let parent = dir_of(&self.dest);
        if let Err(e) = vfs.sync_dir(parent) {
            if let Err(back) = vfs.rename(&self.dest, &self.path) {
                warning::report(
                    Kind::CleanupFailed,
                    &self.dest,
                    format_args!("cannot take the directory back: {back}"),
                );
            }
            return Err(Error::io("fsync directory", parent, e));
        }
        self.placed = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.placed {
            return;
        }
        let vfs = self.vfs.as_ref();
        match vfs.list(&self.path) {
            Ok(entries) => {
                for entry in entries {
                    remove_quietly(vfs, &self.path.join(entry.name));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                warning::report(
                    Kind::CleanupFailed,
                    &self.path,
                    format_args!("cannot list the directory: {e}"),
                );
            }
        }
        remove_dirs(vfs, std::slice::from_ref(&self.path));
        remove_dirs(vfs, &self.made);
    }
}

/// Copy the whole file `from` to `to` durably (published: temp file, fdatasync, rename,
/// directory fsync).
///
/// # Errors
/// I/O errors naming either path.
pub fn copy_file(vfs: &dyn Vfs, from: &Path, to: &Path) -> Result<()> {
    let source = vfs
        .open(from, OpenMode::Read)
        .map_err(|e| Error::io("open", from, e))?;
    let len = source.size().map_err(|e| Error::io("stat", from, e))?;
    publish(vfs, to, Placement::Replace, |file, temp| {
        copy_range(source.as_ref(), from, 0, file, temp, 0, len)
    })
    .map(drop)
}

/// Refuse `dest` if anything is there: what builds a new file or store never replaces one.
///
/// # Errors
/// `InvalidArgument` naming `what`; the error of asking.
pub fn require_absent(vfs: &dyn Vfs, dest: &Path, what: &str) -> Result<()> {
    match vfs.stat(dest) {
        Ok(Some(_)) => Err(Error::InvalidArgument(format!(
            "the {what} destination {} exists",
            dest.display()
        ))),
        // A file above `dest` (ENOTDIR): absent; making its parents names that file.
        Ok(None) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Ok(()),
        Err(e) => Err(Error::io("stat", dest, e)),
    }
}

/// Remove `path`, logging (not failing) anything but "not found".
pub fn remove_quietly(vfs: &dyn Vfs, path: &Path) {
    if let Err(e) = vfs.remove(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        warning::report(
            Kind::CleanupFailed,
            path,
            format_args!("cannot remove the file: {e}"),
        );
    }
}

/// Publish `target` with the contents `fill` writes into a fresh temp file.
///
/// # Errors
/// I/O errors, `ArtifactConflict`, and whatever `fill` returns. The temp file is removed on
/// every failure.
pub fn publish(
    vfs: &dyn Vfs,
    target: &Path,
    placement: Placement,
    fill: impl FnOnce(&mut dyn VfsFile, &Path) -> Result<()>,
) -> Result<Published> {
    let temp = crate::filename::temp_path(target);
    let placed = (|| {
        let mut file = vfs
            .open(&temp, OpenMode::CreateNew)
            // The target, not the temp name: the path the caller gave (its directory may be missing).
            .map_err(|e| Error::io("create", target, e))?;
        fill(file.as_mut(), &temp)?;
        file.sync_data()
            .map_err(|e| Error::io("fdatasync", &temp, e))?;
        let created = match placement {
            Placement::Replace => {
                vfs.rename(&temp, target)
                    .map_err(|e| Error::io("rename", target, e))?;
                true
            }
            Placement::Link { require_identical } => match vfs.link(&temp, target) {
                Ok(()) => true,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if require_identical && !same_contents(vfs, file.as_ref(), target)? {
                        return Err(Error::ArtifactConflict {
                            path: target.to_path_buf(),
                        });
                    }
                    false
                }
                Err(e) => return Err(Error::io("link", target, e)),
            },
        };
        Ok(Published { created, file })
    })();
    remove_quietly(vfs, &temp);
    let published = placed?;
    let dir = dir_of(target);
    vfs.sync_dir(dir)
        .map_err(|e| Error::io("fsync directory", dir, e))?;
    Ok(published)
}

/// Publish `bytes` as the file `name` of the store directory `dir`, replacing it: a small
/// sidecar (a consumer's or a replica's positions), written under the directory lock held
/// shared, since prune deletes stale temp files under the exclusive lock: not this one while it
/// is being written.
///
/// # Errors
/// I/O errors (the old file then stays).
pub fn publish_sidecar(vfs: &dyn Vfs, dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let _lock = lock_dir(vfs, dir, LockKind::Shared)?;
    publish(vfs, &dir.join(name), Placement::Replace, |file, temp| {
        write_all(file, temp, bytes)
    })
    .map(drop)
}

/// The first `max` bytes of the sidecar at `path` and its whole length, or `None` when nothing
/// is there.
///
/// # Errors
/// I/O errors.
pub fn read_sidecar(vfs: &dyn Vfs, path: &Path, max: u64) -> Result<Option<(Vec<u8>, u64)>> {
    let file = match vfs.open(path, OpenMode::Read) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("open", path, e)),
    };
    let len = file.size().map_err(|e| Error::io("stat", path, e))?;
    let mut bytes = vec![0u8; usize::try_from(len.min(max)).unwrap_or(0)];
    read_exact_at(file.as_ref(), &mut bytes, 0).map_err(|e| Error::io("read", path, e))?;
    Ok(Some((bytes, len)))
}

/// Write `bytes` at the start of `file`.
///
/// # Errors
/// I/O errors, naming `path`.
pub fn write_all(file: &mut dyn VfsFile, path: &Path, bytes: &[u8]) -> Result<()> {
    file.write_all_at(bytes, 0)
        .map_err(|e| Error::io("write", path, e))
}

/// Copy `len` bytes from `src` at `from` into `dst` at `to`, in 1 MiB chunks.
///
/// # Errors
/// I/O errors naming `src_path` or `dst_path`.
pub fn copy_range(
    src: &dyn VfsFile,
    src_path: &Path,
    from: u64,
    dst: &mut dyn VfsFile,
    dst_path: &Path,
    to: u64,
    len: u64,
) -> Result<()> {
    let mut buf = vec![0u8; usize::try_from(len.min(1 << 20)).unwrap_or(1 << 20)];
    let mut done = 0;
    while done < len {
        let n = usize::try_from((len - done).min(buf.len() as u64)).unwrap_or(buf.len());
        read_exact_at(src, &mut buf[..n], from + done)
            .map_err(|e| Error::io("read", src_path, e))?;
        dst.write_all_at(&buf[..n], to + done)
            .map_err(|e| Error::io("write", dst_path, e))?;
        done += n as u64;
    }
    Ok(())
}

fn same_contents(vfs: &dyn Vfs, ours: &dyn VfsFile, other: &Path) -> Result<bool> {
    let theirs = vfs
        .open(other, OpenMode::Read)
        .map_err(|e| Error::io("open", other, e))?;
    let len = ours.size().map_err(|e| Error::io("stat", other, e))?;
    if theirs.size().map_err(|e| Error::io("stat", other, e))? != len {
        return Ok(false);
    }
    let (mut a, mut b) = (vec![0u8; 64 << 10], vec![0u8; 64 << 10]);
    let mut pos = 0;
    while pos < len {
        let n = usize::try_from((len - pos).min(a.len() as u64)).unwrap_or(a.len());
        read_exact_at(ours, &mut a[..n], pos).map_err(|e| Error::io("read", other, e))?;
        read_exact_at(theirs.as_ref(), &mut b[..n], pos)
            .map_err(|e| Error::io("read", other, e))?;
        if a[..n] != b[..n] {
            return Ok(false);
        }
        pos += n as u64;
    }
    Ok(true)
}
