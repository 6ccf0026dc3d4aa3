//! Where a shared store's socket lives, and how the owner puts it there.
//!
//! The socket is `shared.sock` in the store directory when that path fits the address of a
//! Unix socket (108 bytes on Linux, 104 on macOS, with its NUL); otherwise it is
//! `<hash>.sock`, named by a hash of the store's canonical path, in a directory of the user's
//! own (`$XDG_RUNTIME_DIR/selene-persist`, else `<temp>/selene-persist-<uid>`), made mode 0700
//! and refused unless it is a real directory, the user's, that no one else may enter.
//!
//! Only the holder of the store's writer lock binds it: a socket left at the path by a dead
//! owner (or a symbolic link planted there) is removed, never followed, and the new socket is
//! bound under a temporary name, made 0600 and renamed into place.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::filename::{StoreFile, temp_path};

/// Longest socket path used: under macOS's 104 bytes, NUL included.
pub const MAX_SOCKET_PATH: usize = 100;

/// The socket of the store at `dir` (canonical: every process must name it alike).
///
/// # Errors
/// `UnsafeLink` when the private directory is not the user's alone; `Io` when it cannot be
/// made; `InvalidArgument` when even it gives too long a path.
pub fn socket_path(dir: &Path) -> Result<PathBuf> {
    let beside = StoreFile::Socket.path(dir);
    if beside.as_os_str().len() <= MAX_SOCKET_PATH {
        return Ok(beside);
    }
    let private = private_dir()?;
    let hash = xxhash_rust::xxh3::xxh3_64(dir.as_os_str().as_encoded_bytes());
    let path = private.join(format!("{hash:016x}.sock"));
    if path.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(Error::InvalidArgument(format!(
            "no socket path for {} fits in {MAX_SOCKET_PATH} bytes: {}",
            dir.display(),
            path.display()
        )));
    }
    Ok(path)
}

/// The user's own directory for sockets, made 0700 if absent and checked if present.
fn private_dir() -> Result<PathBuf> {
    let uid = rustix::process::getuid().as_raw();
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(runtime) if runtime.is_absolute() && runtime.is_dir() => {
            runtime.join("selene-persist")
        }
        _ => std::env::temp_dir().join(format!("selene-persist-{uid}")),
    };
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io("create directory", &dir, e)),
    }
    let meta = fs::symlink_metadata(&dir).map_err(|e| Error::io("stat", &dir, e))?;
    let unsafe_dir = |detail: &str| Error::UnsafeLink {
        path: dir.clone(),
        detail: detail.to_owned(),
    };
    if !meta.file_type().is_dir() {
        return Err(unsafe_dir("the socket directory is not a directory"));
    }
    if meta.uid() != uid {
        return Err(unsafe_dir("the socket directory belongs to another user"));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(unsafe_dir("the socket directory is open to other users"));
    }
    Ok(dir)
}

/// Bind the owner's socket at `path`: whatever is there (a socket left by a dead owner, a
/// symbolic link) is removed first, the new socket made 0600 under a temporary name and
/// renamed into place. Call only while holding the store's writer lock.
///
/// # Errors
/// `NotAFile` when a regular file or directory is at `path`; I/O errors.
pub fn bind(path: &Path) -> Result<UnixListener> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_dir() || meta.file_type().is_file() => {
            return Err(Error::NotAFile {
                path: path.to_path_buf(),
                kind: if meta.is_dir() {
                    "directory"
                } else {
                    "regular file"
                },
            });
        }
        // A stale socket, or a link: removed, never followed.
        Ok(_) => fs::remove_file(path).map_err(|e| Error::io("remove", path, e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("stat", path, e)),
    }
    let temp = short_temp(path);
    let listener = UnixListener::bind(&temp).map_err(|e| Error::io("bind", &temp, e))?;
    let placed = fs::set_permissions(&temp, fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io("chmod", &temp, e))
        .and_then(|()| fs::rename(&temp, path).map_err(|e| Error::io("rename", path, e)));
    if let Err(e) = placed {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    Ok(listener)
}

/// A temporary name beside `path` that still fits a socket address.
fn short_temp(path: &Path) -> PathBuf {
    let temp = temp_path(path);
    if temp.as_os_str().len() <= MAX_SOCKET_PATH + 7 {
        return temp;
    }
    path.with_extension(format!("{}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_short_store_path_keeps_its_socket_beside_it() {
        let dir = Path::new("/s/store");
        assert_eq!(socket_path(dir).unwrap(), dir.join("shared.sock"));
    }

    #[test]
    fn a_long_store_path_gets_a_private_directory_by_hash() {
        let long = PathBuf::from(format!("/{}", "d".repeat(200)));
        let a = socket_path(&long).unwrap();
        assert!(a.as_os_str().len() <= MAX_SOCKET_PATH, "{}", a.display());
        assert_eq!(a, socket_path(&long).unwrap(), "stable");
        assert_ne!(a, socket_path(&long.join("other")).unwrap());
        let private = a.parent().unwrap();
        let meta = fs::symlink_metadata(private).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn bind_replaces_a_stale_socket_and_a_link_but_never_follows_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.sock");
        drop(UnixListener::bind(&path).unwrap());
        let listener = bind(&path).unwrap();
        let mode = fs::symlink_metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        UnixStream::connect(&path).unwrap();
        drop(listener);
        let target = dir.path().join("target");
        fs::write(&target, b"keep").unwrap();
        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let _listener = bind(&path).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"keep");
        assert!(fs::symlink_metadata(&path).unwrap().file_type().is_socket());
        fs::remove_file(&path).unwrap();
        fs::write(&path, b"x").unwrap();
        assert_eq!(bind(&path).unwrap_err().code(), "NOT_A_FILE");
    }
}
