//! Reading an opened keystore or trust store through its descriptor: `fstat` for the version
//! stamp, then the bytes, then `fstat` again to see that nothing changed during the read.
//!
//! A trust directory is listed through its descriptor, and every entry is opened the way the
//! directory was: beneath the certificate directory for a job-named path, relative to the
//! directory's descriptor for a configured one.

use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fd::OwnedFd;
use rustix::fs::{CWD, FileType, Mode};
use sha2::{Digest, Sha256};

use super::Problem;
use super::open::{READ, Refusal, Roots};

/// Bytes read from one file at most; keystores and trust bundles are kilobytes.
const FILE_LIMIT: u64 = 16 << 20;
/// Bytes read from one trust directory at most, all files together.
const TOTAL_LIMIT: u64 = 64 << 20;
/// Entries of one trust directory looked at, at most.
const ENTRY_LIMIT: usize = 4096;

/// A keystore or trust store opened for reading: the descriptor and what `fstat` said of it.
#[derive(Debug)]
pub(crate) struct Opened {
    shown: PathBuf,
    file: File,
    meta: Metadata,
    entries: Entries,
}

/// The version stamp of an opened file (or directory) and the descriptors to read.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// A digest of device, inode, size and modification time (for a directory, also every
    /// entry's): what identifies the version that is read.
    pub(crate) stamp: [u8; 32],
    shown: PathBuf,
    /// The directory itself, for a trust directory.
    dir: Option<File>,
    /// (name, descriptor); the name is empty for a single file.
    parts: Vec<(String, File)>,
}

/// How the entries of a trust directory are opened.
#[derive(Debug)]
enum Entries {
    /// Relative to the directory's descriptor, following symlinks (a configured path).
    Plain,
    /// Beneath certificate directory `root`, at `relative` + the entry's name.
    Beneath {
        roots: Roots,
        root: usize,
        relative: PathBuf,
    },
}

impl Opened {
    /// A configured keystore or trust store, opened by its path (the operator named it, so it
    /// is not confined and its symlinks are followed).
    pub(crate) fn path(path: &Path) -> Result<Self, Problem> {
        let fd = rustix::fs::openat(CWD, path, READ, Mode::empty())
            .map_err(|error| cannot_read(path, &error.into()))?;
        Self::new(path.to_owned(), fd, Entries::Plain)
    }

    /// A job-named path, opened beneath certificate directory `root` of `roots`.
    pub(crate) fn beneath(
        shown: PathBuf,
        fd: OwnedFd,
        roots: Roots,
        root: usize,
        relative: PathBuf,
    ) -> Result<Self, Problem> {
        let entries = Entries::Beneath {
            roots,
            root,
            relative,
        };
        Self::new(shown, fd, entries)
    }

    fn new(shown: PathBuf, fd: OwnedFd, entries: Entries) -> Result<Self, Problem> {
        let file = File::from(fd);
        let meta = file
            .metadata()
            .map_err(|error| cannot_read(&shown, &error))?;
        Ok(Self {
            shown,
            file,
            meta,
            entries,
        })
    }

    /// The path for messages, logs and cache keys.
    pub(crate) fn shown(&self) -> &Path {
        &self.shown
    }

    /// The stamp and the descriptors to read: a regular file, or (with `directories`) a
    /// directory's regular files.
    pub(crate) fn snapshot(self, directories: bool) -> Result<Snapshot, Problem> {
        let mut sha = Sha256::new();
        add_meta(&mut sha, &self.meta);
        if self.meta.is_file() {
            return Ok(Snapshot {
                stamp: sha.finalize().into(),
                shown: self.shown,
                dir: None,
                parts: vec![(String::new(), self.file)],
            });
        }
        if !(directories && self.meta.is_dir()) {
            return Err(Problem::Unreadable(format!(
                "{} is not a regular file",
                self.shown.display()
            )));
        }
        let parts = self.entries()?;
        for (name, file) in &parts {
            sha.update(name.as_bytes());
            add_meta(&mut sha, &meta_of(&self.shown, file)?);
        }
        Ok(Snapshot {
            stamp: sha.finalize().into(),
            shown: self.shown,
            dir: Some(self.file),
            parts,
        })
    }

    /// The regular files of a directory (after symlinks), opened, sorted by name.
    fn entries(&self) -> Result<Vec<(String, File)>, Problem> {
        let listing = rustix::fs::Dir::read_from(&self.file)
            .map_err(|error| cannot_read(&self.shown, &error.into()))?;
        let mut parts = Vec::new();
        for entry in listing.take(ENTRY_LIMIT) {
            let entry = entry.map_err(|error| cannot_read(&self.shown, &error.into()))?;
            let name = std::ffi::OsStr::from_bytes(entry.file_name().to_bytes());
            if name == "." || name == ".." || entry.file_type() == FileType::Directory {
                continue;
            }
            let opened = match &self.entries {
                Entries::Plain => rustix::fs::openat(&self.file, name, READ, Mode::empty())
                    .map_err(|error| match error {
                        rustix::io::Errno::NOENT => Refusal::Missing,
                        other => Refusal::Failed(other),
                    }),
                Entries::Beneath {
                    roots,
                    root,
                    relative,
                } => roots.open_beneath(*root, &relative.join(name), READ),
            };
            let shown = self.shown.join(name);
            let file = match opened {
                Ok(fd) => File::from(fd),
                // A dangling symlink, or an entry removed since the listing.
                Err(Refusal::Missing) => continue,
                Err(Refusal::Outside) => {
                    return Err(Problem::Unreadable(format!(
                        "{} is not allowed: it leads outside the certificate directories",
                        shown.display()
                    )));
                }
                Err(Refusal::Failed(error)) => return Err(cannot_read(&shown, &error.into())),
            };
            if meta_of(&shown, &file)?.is_file() {
                parts.push((name.to_string_lossy().into_owned(), file));
            }
        }
        parts.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(parts)
    }
}

impl Snapshot {
    /// Reads every file through its descriptor; fails when any of them (or the directory)
    /// changed during the read, so a half-written file is never taken for a new version.
    pub(crate) fn read(self) -> Result<Vec<(String, Vec<u8>)>, Problem> {
        let mut total = 0u64;
        let mut out = Vec::with_capacity(self.parts.len());
        for (name, file) in &self.parts {
            let size = meta_of(&self.shown, file)?.len();
            total = total.saturating_add(size);
            let limit = if size > FILE_LIMIT {
                FILE_LIMIT
            } else {
                TOTAL_LIMIT
            };
            if total > limit {
                return Err(Problem::Unreadable(format!(
                    "{} is too large for a keystore or trust store (over {} MiB)",
                    self.shown.display(),
                    limit >> 20
                )));
            }
            let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            file.take(FILE_LIMIT + 1)
                .read_to_end(&mut bytes)
                .map_err(|error| cannot_read(&self.shown, &error))?;
            out.push((name.clone(), bytes));
        }
        let mut sha = Sha256::new();
        if let Some(dir) = &self.dir {
            add_meta(&mut sha, &meta_of(&self.shown, dir)?);
        }
        for (name, file) in &self.parts {
            if self.dir.is_some() {
                sha.update(name.as_bytes());
            }
            add_meta(&mut sha, &meta_of(&self.shown, file)?);
        }
        if <[u8; 32]>::from(sha.finalize()) != self.stamp {
            let what = if self.dir.is_some() {
                "directory"
            } else {
                "file"
            };
            return Err(Problem::Unreadable(format!(
                "the {what} changed while it was read"
            )));
        }
        Ok(out)
    }
}

fn meta_of(shown: &Path, file: &File) -> Result<Metadata, Problem> {
    file.metadata().map_err(|error| cannot_read(shown, &error))
}

fn add_meta(sha: &mut Sha256, meta: &Metadata) {
    for n in [
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime() as u64,
        meta.mtime_nsec() as u64,
    ] {
        sha.update(n.to_le_bytes());
    }
}

pub(crate) fn cannot_read(path: &Path, error: &std::io::Error) -> Problem {
    Problem::Unreadable(format!("cannot read {}: {error}", path.display()))
}
