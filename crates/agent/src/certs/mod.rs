//! Keystores and trust stores on disk: confinement of job-named paths to the certificate
//! directories, and reload on change with "last good" semantics.
//!
//! # Confinement by file descriptor
//!
//! A job-named path is opened beneath a certificate directory's descriptor ([`open`]): the
//! lookup that opens the file is the one that is checked, so no swap of a directory for a
//! symlink between a check and a use can lead a job out. Everything after that — the version
//! stamp, the bytes, the parse — goes through that one descriptor, and the engine gets the
//! bytes, never the path. A path that leads out gets the same message whether or not anything
//! exists there.
//!
//! # Why metadata checks, not a watcher
//!
//! Every use opens the file and `fstat`s the descriptor (device, inode, modification time,
//! size; a directory's entries for a trust directory) and reads it when any of these changed.
//! An open and a stat are microseconds, far below a job's cost; they need no watcher thread,
//! work the same on bind mounts, NFS and Kubernetes ConfigMap symlink swaps (where inotify
//! misses events), and can never miss a change made while the agent was busy. A file is read
//! whole and `fstat`ed again afterwards: if it changed during the read, the read does not
//! count. Whatever fails to load (a half-written file, a wrong password after rotation, a
//! deleted file) leaves the last good version in use; the job result gets a warning and the log
//! says why, once per change.
//!
//! The bytes of the last good version are handed to the engine in memory
//! ([`engine::Source::Bytes`]), so the engine never sees the broken file.

mod cache;
mod open;
mod read;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use keystore::{CertificateInfo, Keystore, Options, Password, TrustAnchors};

use self::cache::{Key, Slot, load, lock};
use self::open::{READ, Refusal, Roots, climbs_out, lexically_inside, normalize};
pub(crate) use self::read::Opened;
use crate::config::CertRef;

/// The certificate directories and everything loaded from disk.
#[derive(Debug)]
pub(crate) struct Certs {
    dirs: Arc<[PathBuf]>,
    identities: Mutex<HashMap<Key, Slot<LoadedIdentity>>>,
    trusts: Mutex<HashMap<Key, Slot<LoadedTrust>>>,
    /// Caps on the key-derivation work of the stores opened (`keystore.too_costly`).
    limits: keystore::Limits,
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
    /// Nothing usable, and why: the job fails with the problem's kind.
    Bad(Problem),
}

/// Why a file does not load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Problem {
    /// The bytes were read but are not a usable keystore or trust store (wrong password,
    /// corrupt, no private key...), with the keystore error's own kind.
    Keystore(keystore::Error),
    /// The file could not be opened or read, or changed while it was read.
    Unreadable(String),
}

/// A job-named path that is not used, with the kind of the job's error.
#[derive(Debug)]
pub(crate) struct Refused {
    /// `keystore.path_not_allowed` (outside the certificate directories, or not there) or
    /// `keystore.unreadable` (inside, but the operating system refused to open it).
    pub(crate) kind: &'static str,
    pub(crate) message: String,
}

impl Certs {
    pub(crate) fn new(dirs: Vec<PathBuf>) -> Self {
        Self {
            dirs: dirs.into(),
            identities: Mutex::new(HashMap::new()),
            trusts: Mutex::new(HashMap::new()),
            limits: keystore::Limits::default(),
        }
    }

    /// The same, opening stores with `limits` on their key-derivation work.
    pub(crate) fn with_limits(mut self, limits: keystore::Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The certificate directories.
    pub(crate) fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Opens a job-named path (`what`: "keystore", "trust store") beneath a certificate
    /// directory: relative paths in each directory in turn, absolute ones only when they
    /// lexically start with a certificate directory (and then relative to it).
    pub(crate) fn confine(&self, requested: &str, what: &str) -> Result<Opened, Refused> {
        let not_allowed = |why: &str| Refused {
            kind: "keystore.path_not_allowed",
            message: format!("{what} path '{requested}' is not allowed: {why}"),
        };
        // One message for every way out, whether or not anything exists there.
        let outside = || not_allowed("it is outside the certificate directories");
        if self.dirs.is_empty() {
            return Err(not_allowed(
                "no certificate directories are configured (DOWNLOADER_CERT_DIRS)",
            ));
        }
        let path = Path::new(requested);
        let candidates: Vec<(usize, PathBuf)> = if path.is_absolute() {
            vec![lexically_inside(&self.dirs, path).ok_or_else(outside)?]
        } else if climbs_out(path) {
            return Err(outside());
        } else {
            (0..self.dirs.len())
                .map(|root| (root, path.to_owned()))
                .collect()
        };
        let roots = Roots::open(self.dirs.clone());
        let mut escaped = false;
        for (root, relative) in candidates {
            match roots.open_beneath(root, &relative, READ) {
                Ok(fd) => {
                    let shown = roots.dirs()[root].join(normalize(&relative));
                    return Opened::beneath(shown, fd, roots, root, relative).map_err(|problem| {
                        Refused {
                            kind: problem.kind(),
                            message: format!("{what} path '{requested}': {problem}"),
                        }
                    });
                }
                Err(Refusal::Missing) => {}
                Err(Refusal::Outside) => escaped = true,
                Err(Refusal::Failed(error)) => {
                    return Err(Refused {
                        kind: "keystore.unreadable",
                        message: format!(
                            "{what} path '{requested}' cannot be opened: {}",
                            std::io::Error::from(error)
                        ),
                    });
                }
            }
        }
        if escaped {
            return Err(outside());
        }
        Err(Refused {
            kind: "keystore.path_not_allowed",
            message: format!(
                "{what} path '{requested}' does not exist in the certificate directories"
            ),
        })
    }

    /// A configured client identity, reloaded when the file changed; the last good one when
    /// the change does not load.
    pub(crate) async fn identity(
        &self,
        cert: &CertRef,
        label: Option<&str>,
    ) -> Loaded<LoadedIdentity> {
        self.identity_in(Opened::path(&cert.path), cert, label, false)
            .await
    }

    /// A job-named client identity from the file [`Certs::confine`] opened (`cert.path` is
    /// the path it showed).
    pub(crate) async fn job_identity(
        &self,
        file: Opened,
        cert: &CertRef,
    ) -> Loaded<LoadedIdentity> {
        self.identity_in(Ok(file), cert, None, true).await
    }

    async fn identity_in(
        &self,
        file: Result<Opened, Problem>,
        cert: &CertRef,
        label: Option<&str>,
        confined: bool,
    ) -> Loaded<LoadedIdentity> {
        let key = Key {
            path: cert.path.clone(),
            secrets: keystore::secrets_digest(
                &[cert.password.as_ref(), cert.key_password.as_ref()],
                cert.alias.as_deref(),
            ),
            confined,
        };
        let owned = cert.clone();
        let limits = self.limits;
        let snapshot = file.and_then(|file| file.snapshot(false));
        load(
            &self.identities,
            key,
            label,
            "client identity",
            snapshot,
            move |parts| parse_identity(parts, &owned, limits),
        )
        .await
    }

    /// A configured trust store (file or directory), reloaded when it changed.
    pub(crate) async fn trust(
        &self,
        path: &Path,
        password: Option<&Password>,
        label: Option<&str>,
    ) -> Loaded<LoadedTrust> {
        self.trust_in(Opened::path(path), path, password, label, false)
            .await
    }

    /// A job-named trust store (file or directory) from the file [`Certs::confine`] opened.
    pub(crate) async fn job_trust(
        &self,
        file: Opened,
        password: Option<&Password>,
    ) -> Loaded<LoadedTrust> {
        let path = file.shown().to_owned();
        self.trust_in(Ok(file), &path, password, None, true).await
    }

    async fn trust_in(
        &self,
        file: Result<Opened, Problem>,
        path: &Path,
        password: Option<&Password>,
        label: Option<&str>,
        confined: bool,
    ) -> Loaded<LoadedTrust> {
        let key = Key {
            path: path.to_owned(),
            secrets: keystore::secrets_digest(&[password], None),
            confined,
        };
        let password = password.cloned();
        let limits = self.limits;
        let snapshot = file.and_then(|file| file.snapshot(true));
        load(
            &self.trusts,
            key,
            label,
            "trust store",
            snapshot,
            move |parts| parse_trust(parts, password.as_ref(), limits),
        )
        .await
    }

    /// Expiry (Unix seconds) of every configured identity and trust anchor:
    /// (kind, label, subject, not_after).
    pub(crate) fn expiries(&self) -> Vec<(&'static str, String, String, i64)> {
        let mut out = Vec::new();
        for slot in lock(&self.identities).values() {
            if let (Some(label), Some(good)) = (&slot.label, slot.last_good()) {
                out.push((
                    "identity",
                    label.clone(),
                    good.leaf.subject.clone(),
                    good.leaf.not_after_unix,
                ));
            }
        }
        for slot in lock(&self.trusts).values() {
            if let (Some(label), Some(good)) = (&slot.label, slot.last_good()) {
                for (subject, not_after) in &good.expiries {
                    out.push(("trust_anchor", label.clone(), subject.clone(), *not_after));
                }
            }
        }
        out.sort();
        out
    }
}

impl Problem {
    /// The kind of the job's error: the keystore error's own, or `keystore.unreadable`.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Keystore(error) => error.kind(),
            Self::Unreadable(_) => "keystore.unreadable",
        }
    }

    /// What to do about it.
    pub(crate) fn hint(&self) -> String {
        match self {
            Self::Keystore(error) => error.hint(),
            Self::Unreadable(_) => "check the path and the file's permissions".into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Keystore(error) => error.fmt(f),
            Self::Unreadable(detail) => f.write_str(detail),
        }
    }
}

fn parse_identity(
    parts: Vec<(String, Vec<u8>)>,
    cert: &CertRef,
    limits: keystore::Limits,
) -> Result<LoadedIdentity, Problem> {
    let bytes = parts
        .into_iter()
        .next()
        .map(|(_, bytes)| bytes)
        .unwrap_or_default();
    let options = Options {
        store_password: cert.password.clone(),
        key_password: cert.key_password.clone(),
        limits,
    };
    let identity = Keystore::open(&bytes, &options)
        .and_then(|store| store.identity(cert.alias.as_deref()))
        .map_err(Problem::Keystore)?;
    let leaf = identity
        .chain()
        .first()
        .ok_or(keystore::Error::NoCertificate {
            alias: cert.alias.clone(),
        })
        .and_then(|der| CertificateInfo::from_der(der))
        .map_err(Problem::Keystore)?;
    Ok(LoadedIdentity {
        bytes: Bytes::from(bytes),
        leaf,
    })
}

fn parse_trust(
    parts: Vec<(String, Vec<u8>)>,
    password: Option<&Password>,
    limits: keystore::Limits,
) -> Result<LoadedTrust, Problem> {
    let options = Options {
        store_password: password.cloned(),
        limits,
        ..Options::default()
    };
    let anchors = match parts.as_slice() {
        [(name, bytes)] if name.is_empty() => TrustAnchors::open(bytes, &options),
        files => TrustAnchors::from_directory(
            files
                .iter()
                .map(|(name, bytes)| (name.as_str(), bytes.as_slice())),
        ),
    }
    .map_err(Problem::Keystore)?;
    let expiries = anchors
        .certificates()
        .iter()
        .filter_map(|der| CertificateInfo::from_der(der).ok())
        .map(|info| (info.subject, info.not_after_unix))
        .collect();
    let pem = Bytes::from(keystore::trust_to_pem(&anchors));
    Ok(LoadedTrust {
        anchors,
        pem,
        expiries,
    })
}
