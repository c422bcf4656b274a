//! Keystores and trust stores on disk: confinement of job-named paths to the certificate
//! directories, and reload on change with "last good" semantics.
//!
//! # Why metadata checks, not a watcher
//!
//! Every use stats the file (device, inode, modification time, size; a directory's entries for a
//! trust directory) and re-reads it when any of these changed. A stat is about a microsecond,
//! far below a job's cost; it needs no watcher thread, works the same on bind mounts, NFS and
//! Kubernetes ConfigMap symlink swaps (where inotify misses events), and can never miss a
//! change made while the agent was busy. A file is read whole and stat'ed again afterwards: if it
//! changed during the read, the read does not count. Whatever fails to load (a half-written file,
//! a wrong password after rotation, a deleted file) leaves the last good version in use; the job
//! result gets a warning and the log says why, once per change.
//!
//! The bytes of the last good version are handed to the engine in memory
//! ([`engine::Source::Bytes`]), so the engine never sees the broken file.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use bytes::Bytes;
use keystore::{CertificateInfo, Keystore, Options, Password, TrustAnchors};
use sha2::{Digest, Sha256};

use crate::config::CertRef;

/// Job-named entries kept at most; configured ones are never dropped.
const JOB_ENTRY_LIMIT: usize = 256;

/// The certificate directories and everything loaded from disk.
#[derive(Debug)]
pub(crate) struct Certs {
    dirs: Vec<PathBuf>,
    identities: Mutex<HashMap<Key, Slot<LoadedIdentity>>>,
    trusts: Mutex<HashMap<Key, Slot<LoadedTrust>>>,
}

/// A client identity that loaded: the keystore bytes and its leaf certificate.
#[derive(Debug)]
pub(crate) struct LoadedIdentity {
    pub(crate) bytes: Bytes,
    pub(crate) leaf: CertificateInfo,
}

/// A trust store that loaded, as a PEM bundle for the engine.
#[derive(Debug)]
pub(crate) struct LoadedTrust {
    pub(crate) anchors: TrustAnchors,
    /// The anchors as a PEM bundle, handed to the engine in memory.
    pub(crate) pem: Bytes,
    pub(crate) expiries: Vec<(String, i64)>,
}

/// The result of asking for a file.
#[derive(Debug)]
pub(crate) enum Loaded<T> {
    /// The current file, or the last good one with a warning saying why.
    Good(Arc<T>, Option<String>),
    /// Nothing usable: the engine reads the file itself and reports the precise error.
    Bad(String),
}

/// A job-named path that may not be used.
#[derive(Debug)]
pub(crate) struct PathNotAllowed {
    pub(crate) message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    path: PathBuf,
    secrets: [u8; 32],
}

#[derive(Debug)]
struct Slot<T> {
    /// What the file looked like when last examined (`None`: it could not be stat'ed).
    stamp: Option<[u8; 32]>,
    /// Why the file as it is now does not load, if it does not.
    broken: Option<String>,
    last_good: Option<(Arc<T>, SystemTime)>,
    /// The label of a configured entry (`default`, `host-rule:...`, `trust`), for metrics.
    label: Option<String>,
}

impl Certs {
    pub(crate) fn new(dirs: Vec<PathBuf>) -> Self {
        Self {
            dirs,
            identities: Mutex::new(HashMap::new()),
            trusts: Mutex::new(HashMap::new()),
        }
    }

    /// The certificate directories.
    pub(crate) fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Resolves a job-named path inside the certificate directories, after symlinks.
    pub(crate) fn confine(&self, requested: &str) -> Result<PathBuf, PathNotAllowed> {
        let refuse = |why: &str| PathNotAllowed {
            message: format!("keystore path '{requested}' is not allowed: {why}"),
        };
        if self.dirs.is_empty() {
            return Err(refuse(
                "no certificate directories are configured (DOWNLOADER_CERT_DIRS)",
            ));
        }
        let requested_path = Path::new(requested);
        let candidates: Vec<PathBuf> = if requested_path.is_absolute() {
            vec![requested_path.to_owned()]
        } else {
            self.dirs
                .iter()
                .map(|dir| dir.join(requested_path))
                .collect()
        };
        for candidate in &candidates {
            match candidate.canonicalize() {
                Ok(real) => {
                    if self.dirs.iter().any(|dir| real.starts_with(dir)) && real.is_file() {
                        return Ok(real);
                    }
                    if !requested_path.is_absolute() {
                        continue;
                    }
                    return Err(refuse("it resolves outside the certificate directories"));
                }
                Err(_) => continue,
            }
        }
        // Nothing exists: say "not found" only for paths that are lexically inside.
        let inside = candidates.iter().any(|candidate| {
            self.dirs
                .iter()
                .any(|dir| normalize(candidate).starts_with(dir))
        });
        if inside {
            Err(PathNotAllowed {
                message: format!(
                    "keystore path '{requested}' does not exist in the certificate directories"
                ),
            })
        } else {
            Err(refuse("it is outside the certificate directories"))
        }
    }

    /// A client identity, reloaded when the file changed; the last good one when the change
    /// does not load.
    pub(crate) async fn identity(
        &self,
        cert: &CertRef,
        label: Option<&str>,
    ) -> Loaded<LoadedIdentity> {
        let key = Key {
            path: cert.path.clone(),
            secrets: keystore::secrets_digest(
                &[cert.password.as_ref(), cert.key_password.as_ref()],
                cert.alias.as_deref(),
            ),
        };
        let owned = cert.clone();
        load(&self.identities, key, label, "client identity", move || {
            load_identity(&owned)
        })
        .await
    }

    /// A trust store (file or directory), reloaded when it changed.
    pub(crate) async fn trust(
        &self,
        path: &Path,
        password: Option<&Password>,
        label: Option<&str>,
    ) -> Loaded<LoadedTrust> {
        let key = Key {
            path: path.to_owned(),
            secrets: keystore::secrets_digest(&[password], None),
        };
        let owned = (path.to_owned(), password.cloned());
        load(&self.trusts, key, label, "trust store", move || {
            load_trust(&owned.0, owned.1.as_ref())
        })
        .await
    }

    /// Expiry (Unix seconds) of every configured identity and trust anchor:
    /// (kind, label, subject, not_after).
    pub(crate) fn expiries(&self) -> Vec<(&'static str, String, String, i64)> {
        let mut out = Vec::new();
        for slot in lock(&self.identities).values() {
            if let (Some(label), Some((good, _))) = (&slot.label, &slot.last_good) {
                out.push((
                    "identity",
                    label.clone(),
                    good.leaf.subject.clone(),
                    good.leaf.not_after_unix,
                ));
            }
        }
        for slot in lock(&self.trusts).values() {
            if let (Some(label), Some((good, _))) = (&slot.label, &slot.last_good) {
                for (subject, not_after) in &good.expiries {
                    out.push(("trust_anchor", label.clone(), subject.clone(), *not_after));
                }
            }
        }
        out.sort();
        out
    }
}

async fn load<T: Send + Sync + 'static>(
    map: &Mutex<HashMap<Key, Slot<T>>>,
    key: Key,
    label: Option<&str>,
    what: &str,
    parse: impl FnOnce() -> Result<([u8; 32], T), String> + Send + 'static,
) -> Loaded<T> {
    let now = stamp(&key.path);
    {
        let slots = lock(map);
        if let Some(slot) = slots.get(&key)
            && now.is_ok()
            && slot.stamp == now.as_ref().ok().copied()
        {
            return answer(slot, &key.path, what);
        }
    }
    let parsed = match now {
        Ok(_) => tokio::task::spawn_blocking(parse)
            .await
            .unwrap_or_else(|error| Err(format!("loading task failed: {error}"))),
        Err(detail) => Err(detail),
    };
    let mut slots = lock(map);
    if slots.len() >= JOB_ENTRY_LIMIT {
        slots.retain(|_, slot| slot.label.is_some());
    }
    let slot = slots.entry(key.clone()).or_insert_with(|| Slot {
        stamp: None,
        broken: None,
        last_good: None,
        label: None,
    });
    if let Some(label) = label {
        slot.label = Some(label.to_owned());
    }
    match parsed {
        Ok((stamp, value)) => {
            if slot.last_good.is_some() {
                tracing::info!(path = %key.path.display(), "{what} reloaded: the file changed on disk");
            }
            slot.stamp = Some(stamp);
            slot.broken = None;
            slot.last_good = Some((Arc::new(value), SystemTime::now()));
        }
        Err(detail) => {
            if slot.last_good.is_some() && slot.broken.as_deref() != Some(detail.as_str()) {
                tracing::warn!(
                    path = %key.path.display(),
                    problem = %detail,
                    "{what} changed on disk but does not load; keeping the last good version"
                );
            }
            slot.stamp = stamp(&key.path).ok();
            slot.broken = Some(detail);
        }
    }
    answer(slot, &key.path, what)
}

fn answer<T>(slot: &Slot<T>, path: &Path, what: &str) -> Loaded<T> {
    match (&slot.broken, &slot.last_good) {
        (None, Some((good, _))) => Loaded::Good(good.clone(), None),
        (Some(problem), Some((good, since))) => {
            let since = time::OffsetDateTime::from(*since)
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            Loaded::Good(
                good.clone(),
                Some(format!(
                    "{what} {} changed on disk but does not load ({problem}); using the last good \
                     version, loaded at {since}",
                    path.display()
                )),
            )
        }
        (Some(problem), None) => Loaded::Bad(problem.clone()),
        (None, None) => Loaded::Bad("not loaded".into()),
    }
}

fn load_identity(cert: &CertRef) -> Result<([u8; 32], LoadedIdentity), String> {
    let (stamp, bytes) = read_stable(&cert.path)?;
    let options = Options {
        store_password: cert.password.clone(),
        key_password: cert.key_password.clone(),
        ..Options::default()
    };
    let identity = Keystore::open(&bytes, &options)
        .and_then(|store| store.identity(cert.alias.as_deref()))
        .map_err(|error| error.to_string())?;
    let leaf = identity
        .chain()
        .first()
        .ok_or_else(|| "the identity has no certificate".to_owned())
        .and_then(|der| CertificateInfo::from_der(der).map_err(|error| error.to_string()))?;
    Ok((
        stamp,
        LoadedIdentity {
            bytes: Bytes::from(bytes),
            leaf,
        },
    ))
}

fn load_trust(path: &Path, password: Option<&Password>) -> Result<([u8; 32], LoadedTrust), String> {
    let (stamp, anchors) = if path.is_dir() {
        let before = stamp(path)?;
        let mut files = Vec::new();
        let entries = std::fs::read_dir(path).map_err(|error| error.to_string())?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_file() {
                files.push((
                    name,
                    std::fs::read(entry.path()).map_err(|error| error.to_string())?,
                ));
            }
        }
        files.sort();
        let anchors = TrustAnchors::from_directory(
            files
                .iter()
                .map(|(name, bytes)| (name.as_str(), bytes.as_slice())),
        )
        .map_err(|error| error.to_string())?;
        if stamp(path)? != before {
            return Err("the directory changed while it was read".into());
        }
        (before, anchors)
    } else {
        let (stamp, bytes) = read_stable(path)?;
        let anchors = TrustAnchors::parse(&bytes, password).map_err(|error| error.to_string())?;
        (stamp, anchors)
    };
    let expiries = anchors
        .certificates()
        .iter()
        .filter_map(|der| CertificateInfo::from_der(der).ok())
        .map(|info| (info.subject, info.not_after_unix))
        .collect();
    let pem = Bytes::from(keystore::trust_to_pem(&anchors));
    Ok((
        stamp,
        LoadedTrust {
            anchors,
            pem,
            expiries,
        },
    ))
}

/// Reads a file whole; fails when it changed during the read.
fn read_stable(path: &Path) -> Result<([u8; 32], Vec<u8>), String> {
    let before = stamp(path)?;
    let bytes = std::fs::read(path).map_err(|error| error.to_string())?;
    if stamp(path)? != before {
        return Err("the file changed while it was read".into());
    }
    Ok((before, bytes))
}

/// A digest of what identifies a file's version: device, inode, mtime, size (for a directory,
/// also every entry's).
fn stamp(path: &Path) -> Result<[u8; 32], String> {
    let meta = std::fs::metadata(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let mut sha = Sha256::new();
    add_meta(&mut sha, &meta);
    if meta.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .map_err(|error| error.to_string())?
            .flatten()
            .filter_map(|entry| Some((entry.file_name(), std::fs::metadata(entry.path()).ok()?)))
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, meta) in entries {
            sha.update(name.as_encoded_bytes());
            add_meta(&mut sha, &meta);
        }
    }
    Ok(sha.finalize().into())
}

fn add_meta(sha: &mut Sha256, meta: &std::fs::Metadata) {
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

/// Removes `.` and resolves `..` lexically (for paths that do not exist).
fn normalize(path: &Path) -> PathBuf {
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

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means a task panicked while holding it; the map is still usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
