//! Opening job-named paths beneath the certificate directories, by file descriptor.
//!
//! Each certificate directory is opened as a directory descriptor, and the job's path is opened
//! relative to it with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`: the kernel refuses
//! any step out of the directory (`..` above it, an absolute symlink, a symlink whose target
//! climbs out), checked on the very lookup that opens the file, so swapping a directory for a
//! symlink between a check and an open cannot work: there is no second open. Symlinks that stay
//! inside (the `..data` symlinks of Kubernetes Secret and ConfigMap volumes) resolve as usual.
//!
//! Where `openat2` is missing (`ENOSYS`: Linux before 5.6, some seccomp profiles), and for
//! what the kernel refuses but we accept (an absolute symlink whose target lexically lies in a
//! certificate directory), a walk does the same one component at a time: every component is
//! opened with `O_NOFOLLOW` relative to the descriptor of its parent, a symlink is read with
//! `readlinkat` and its target spliced into the rest of the path, and `..` returns to the
//! descriptor it came from, never above the certificate directory.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{CWD, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Symlinks followed in one lookup at most (the kernel's own limit).
const LINK_LIMIT: usize = 40;
/// `openat2` tries when the kernel reports a concurrent rename (`EAGAIN`), before walking.
const TRIES: usize = 4;

/// How keystores, trust stores and their directories are opened: read-only, and without
/// blocking on a FIFO or taking a terminal.
pub(crate) const READ: OFlags = OFlags::RDONLY
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOCTTY)
    .union(OFlags::NONBLOCK);

/// Why a path was not opened beneath a certificate directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The path leads out of the certificate directories, lexically or through a symlink
    /// (whether or not anything exists there), or through too many symlinks.
    Outside,
    /// Inside, but nothing is there.
    Missing,
    /// Inside, and the operating system refused (permissions, for instance).
    Failed(Errno),
}

/// The certificate directories, each opened as a directory descriptor.
#[derive(Debug, Clone)]
pub(crate) struct Roots {
    dirs: Arc<[PathBuf]>,
    /// `None` where a directory could not be opened (it was removed, for instance).
    fds: Arc<[Option<OwnedFd>]>,
}

impl Roots {
    /// Opens every certificate directory (they are trusted: the operator named them).
    pub(crate) fn open(dirs: Arc<[PathBuf]>) -> Self {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fds = dirs
            .iter()
            .map(|dir| rustix::fs::openat(CWD, dir, flags, Mode::empty()).ok())
            .collect();
        Self { dirs, fds }
    }

    /// The certificate directories.
    pub(crate) fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Opens `relative` beneath certificate directory `root` with `flags`.
    pub(crate) fn open_beneath(
        &self,
        root: usize,
        relative: &Path,
        flags: OFlags,
    ) -> Result<OwnedFd, Refusal> {
        let fd = self.fd(root)?;
        let how = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        let mut outcome = Err(Errno::AGAIN);
        for _ in 0..TRIES {
            outcome = rustix::fs::openat2(fd, relative, flags, Mode::empty(), how);
            if !matches!(outcome, Err(Errno::AGAIN)) {
                break;
            }
        }
        match outcome {
            Ok(fd) => Ok(fd),
            // No openat2 here; the kernel saw a step out (possibly an absolute symlink that
            // stays inside, which only the walk accepts); or renames kept racing the lookup.
            Err(Errno::NOSYS | Errno::PERM | Errno::XDEV | Errno::AGAIN) => {
                self.walk(root, relative, flags)
            }
            Err(error) => Err(refusal(error)),
        }
    }

    /// The component-by-component lookup with `O_NOFOLLOW` (see the module documentation).
    pub(crate) fn walk(
        &self,
        root: usize,
        relative: &Path,
        flags: OFlags,
    ) -> Result<OwnedFd, Refusal> {
        let mut root = root;
        // The directories opened below the root, innermost last.
        let mut below: Vec<OwnedFd> = Vec::new();
        // What is left to look up, next last.
        let mut pending: Vec<OsString> = Vec::new();
        push_components(&mut pending, relative);
        let mut links = 0;
        while let Some(name) = pending.pop() {
            if name == ".." {
                below.pop().ok_or(Refusal::Outside)?;
                continue;
            }
            let parent = match below.last() {
                Some(fd) => fd.as_fd(),
                None => self.fd(root)?,
            };
            let last = pending.is_empty();
            let how = if last {
                flags | OFlags::NOFOLLOW
            } else {
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
            };
            let error = match rustix::fs::openat(parent, &name, how, Mode::empty()) {
                Ok(fd) if last => return Ok(fd),
                Ok(fd) => {
                    below.push(fd);
                    continue;
                }
                Err(error) => error,
            };
            // `O_NOFOLLOW` on a symlink: ELOOP (last component) or ENOTDIR (with O_DIRECTORY).
            if !matches!(error, Errno::LOOP | Errno::NOTDIR) {
                return Err(refusal(error));
            }
            let target = match rustix::fs::readlinkat(parent, &name, Vec::new()) {
                Ok(target) => PathBuf::from(OsString::from_vec(target.into_bytes())),
                Err(Errno::INVAL) => return Err(refusal(error)),
                Err(other) => return Err(refusal(other)),
            };
            links += 1;
            if links > LINK_LIMIT {
                return Err(Refusal::Outside);
            }
            if target.is_absolute() {
                let (index, rest) =
                    lexically_inside(&self.dirs, &target).ok_or(Refusal::Outside)?;
                root = index;
                below.clear();
                push_components(&mut pending, &rest);
            } else {
                push_components(&mut pending, &target);
            }
        }
        // The path named a directory itself (`.`, `sub/..`, a symlink to a directory).
        let at = match below.last() {
            Some(fd) => fd.as_fd(),
            None => self.fd(root)?,
        };
        rustix::fs::openat(at, ".", flags, Mode::empty()).map_err(refusal)
    }

    fn fd(&self, root: usize) -> Result<BorrowedFd<'_>, Refusal> {
        match self.fds.get(root) {
            Some(Some(fd)) => Ok(fd.as_fd()),
            _ => Err(Refusal::Missing),
        }
    }
}

/// The certificate directory an absolute path lexically starts with, and the rest of the path;
/// `None` when it starts with none of them or its `..` climbs out.
pub(crate) fn lexically_inside(dirs: &[PathBuf], path: &Path) -> Option<(usize, PathBuf)> {
    dirs.iter().enumerate().find_map(|(index, dir)| {
        let rest = path.strip_prefix(dir).ok()?;
        (!climbs_out(rest)).then(|| (index, rest.to_owned()))
    })
}

/// Whether a relative path's `..` components climb above where it starts (lexically).
pub(crate) fn climbs_out(path: &Path) -> bool {
    let mut depth = 0usize;
    for component in path.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::ParentDir => match depth.checked_sub(1) {
                Some(up) => depth = up,
                None => return true,
            },
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return true,
        }
    }
    false
}

/// `path` without `.` and with `..` applied lexically (for messages and cache keys).
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Pushes the components of a relative path so that the first is popped first.
fn push_components(pending: &mut Vec<OsString>, path: &Path) {
    let start = pending.len();
    for component in path.components() {
        match component {
            Component::Normal(name) => pending.push(name.to_owned()),
            Component::ParentDir => pending.push("..".into()),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    pending[start..].reverse();
}

fn refusal(error: Errno) -> Refusal {
    match error {
        Errno::NOENT | Errno::NOTDIR => Refusal::Missing,
        // Out of the directory, a magic link, or a symlink loop: all "not allowed".
        Errno::XDEV | Errno::LOOP => Refusal::Outside,
        other => Refusal::Failed(other),
    }
}

#[cfg(test)]
mod tests;
