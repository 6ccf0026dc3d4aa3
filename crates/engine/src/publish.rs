//! Crash-safe publication of whole files: write a temp file beside the target, fdatasync it,
//! link (no clobber) or rename (replace) it into place, then fsync the directory. A crash
//! leaves either no target or a complete one; stale temp files are named `*.tmp` for pruning.

use std::path::Path;

use crate::error::{Error, Result};
use crate::io::{LockKind, OpenMode, Vfs, VfsFile, read_exact_at};
use crate::manifest::lock_dir;

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

/// Give the whole directory `staging` (its files already published) the name `dest`: fsync
/// it, rename it, fsync the parent. Before the rename nothing is at `dest`; after the parent's
/// fsync the directory is there for good.
///
/// # Errors
/// I/O errors.
pub fn place_dir(vfs: &dyn Vfs, staging: &Path, dest: &Path) -> Result<()> {
    vfs.sync_dir(staging)
        .map_err(|e| Error::io("fsync directory", staging, e))?;
    vfs.rename(staging, dest)
        .map_err(|e| Error::io("rename", dest, e))?;
    let parent = dir_of(dest);
    vfs.sync_dir(parent)
        .map_err(|e| Error::io("fsync directory", parent, e))
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
    match vfs.stat(dest).map_err(|e| Error::io("stat", dest, e))? {
        Some(_) => Err(Error::InvalidArgument(format!(
            "the {what} destination {} exists",
            dest.display()
        ))),
        None => Ok(()),
    }
}

/// Remove `path`, logging (not failing) anything but "not found".
pub fn remove_quietly(vfs: &dyn Vfs, path: &Path) {
    if let Err(e) = vfs.remove(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove file");
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
            .map_err(|e| Error::io("create", &temp, e))?;
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
