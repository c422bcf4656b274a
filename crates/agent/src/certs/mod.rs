//! Keystores and trust stores on disk: confinement of job-named paths to the certificate
//! directories, and reload on change with "last good" semantics.
//!
//! # Confinement by file descriptor
//!
//! A job-named path is opened beneath a certificate directory's descriptor ([`open`]): the
//! lookup that opens the file is the one that is checked, so no swap of a directory for a
//! symlink between a check and a use can lead a job out. Everything after that — the version
//! stamp and the bytes — goes through that one descriptor, on the blocking pool, and the engine
//! gets the bytes, never the path; it parses them in its slots within the job's deadline (the
//! agent parses only configured stores, and a job-named trust directory's certificates). A path that leads out gets the same message whether or not anything
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

/// Job trust stores parsed by the agent at the same time, at most.
const PARSERS: usize = 2;

/// The certificate directories and everything loaded from disk.
#[derive(Debug)]
pub(crate) struct Certs {
    dirs: Arc<[PathBuf]>,
    identities: Mutex<HashMap<Key, Slot<LoadedIdentity>>>,
    trusts: Mutex<HashMap<Key, Slot<LoadedTrust>>>,
    /// Caps on the key-derivation work of the stores opened (`keystore.too_costly`).
    limits: keystore::Limits,
    /// Slots for parsing a job's trust store that must be merged with the configured one.
    parsers: Arc<tokio::sync::Semaphore>,
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

/// A job-named file, read (not parsed).
#[derive(Debug)]
pub(crate) struct JobFile {
    /// The file's bytes, or a trust directory's certificates as a PEM bundle.
    pub(crate) bytes: Bytes,
    /// Whether `bytes` is a bundle made from a directory (it has no password then).
    pub(crate) bundle: bool,
}

/// Why a job-named file is not used.
#[derive(Debug)]
pub(crate) enum JobRefusal {
    /// The path is not allowed or could not be opened.
    Refused(Refused),
    /// It was opened but could not be read (or, for a directory, holds no certificates).
    Unusable(PathBuf, Problem),
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
            parsers: Arc::new(tokio::sync::Semaphore::new(PARSERS)),
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
    /// directory and reads it, all on the blocking pool: the bytes of a file, or (with
    /// `directories`) a trust directory's certificates as one PEM bundle. Nothing is parsed
    /// here but a directory's certificates (no key derivation): a keystore or trust store file
    /// goes to the engine as bytes, which parses it in its slots within the job's deadline.
    pub(crate) async fn read_job(
        &self,
        requested: String,
        what: &'static str,
        directories: bool,
    ) -> Result<JobFile, JobRefusal> {
        let dirs = self.dirs.clone();
        tokio::task::spawn_blocking(move || {
            let opened = confine(&dirs, &requested, what).map_err(JobRefusal::Refused)?;
            let shown = opened.shown().to_owned();
            let fail = |problem| JobRefusal::Unusable(shown.clone(), problem);
            let snapshot = opened.snapshot(directories).map_err(fail)?;
            let parts = snapshot.read().map_err(fail)?;
            let bytes = match parts.as_slice() {
                [(name, bytes)] if name.is_empty() => Bytes::from(bytes.clone()),
                files => {
                    let files = files.iter().map(|(n, b)| (n.as_str(), b.as_slice()));
                    let anchors = TrustAnchors::from_directory(files)
                        .map_err(|error| fail(Problem::Keystore(error)))?;
                    return Ok(JobFile {
                        bytes: Bytes::from(keystore::trust_to_pem(&anchors)),
                        bundle: true,
                    });
                }
            };
            Ok(JobFile {
                bytes,
                bundle: false,
            })
        })
        .await
        .unwrap_or_else(|error| {
            Err(JobRefusal::Refused(Refused {
                kind: "internal",
                message: format!("the task reading the {what} failed: {error}"),
            }))
        })
    }

    /// Parses a job's trust store (to merge it with the configured one) on the blocking pool,
    /// a few at a time, its key derivations bounded by `limits`; `None` when the task failed.
    pub(crate) async fn job_trust_anchors(
        &self,
        bytes: Bytes,
        password: Option<Password>,
        limits: keystore::Limits,
    ) -> Option<Result<TrustAnchors, keystore::Error>> {
        let slot = self.parsers.clone().acquire_owned().await.ok()?;
        let options = Options {
            store_password: password,
            limits,
            ..Options::default()
        };
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            TrustAnchors::open(&bytes, &options)
        })
        .await
        .ok()
    }

    /// A configured client identity, reloaded when the file changed; the last good one when
    /// the change does not load.
    pub(crate) async fn identity(
        &self,
        cert: &CertRef,
        label: Option<&str>,
    ) -> Loaded<LoadedIdentity> {
        let file = Opened::path(&cert.path);
        let key = Key {
            path: cert.path.clone(),
            secrets: keystore::secrets_digest(
                &[cert.password.as_ref(), cert.key_password.as_ref()],
                cert.alias.as_deref(),
            ),
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
        let key = Key {
            path: path.to_owned(),
            secrets: keystore::secrets_digest(&[password], None),
        };
        let password = password.cloned();
        let limits = self.limits;
        // A trust directory is listed and its entries opened: on the blocking pool.
        let owned = path.to_owned();
        let snapshot = tokio::task::spawn_blocking(move || Opened::path(&owned)?.snapshot(true))
            .await
            .unwrap_or_else(|error| {
                Err(Problem::Unreadable(format!(
                    "the listing task failed: {error}"
                )))
            });
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

    /// What to do about it, in a job-API client's words.
    pub(crate) fn hint(&self) -> String {
        match self {
            Self::Keystore(error) => error.hint_in(&crate::api::words::JobWords),
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

/// Opens a job-named path (`what`: "keystore", "trust store") beneath a certificate
/// directory: relative paths in each directory in turn, absolute ones only when they
/// lexically start with a certificate directory (and then relative to it).
fn confine(dirs: &Arc<[PathBuf]>, requested: &str, what: &str) -> Result<Opened, Refused> {
    let not_allowed = |why: &str| Refused {
        kind: "keystore.path_not_allowed",
        message: format!("{what} path '{requested}' is not allowed: {why}"),
    };
    // One message for every way out, whether or not anything exists there.
    let outside = || not_allowed("it is outside the certificate directories");
    if dirs.is_empty() {
        return Err(not_allowed(
            "no certificate directories are configured (DOWNLOADER_CERT_DIRS)",
        ));
    }
    let path = Path::new(requested);
    let candidates: Vec<(usize, PathBuf)> = if path.is_absolute() {
        vec![lexically_inside(dirs, path).ok_or_else(outside)?]
    } else if climbs_out(path) {
        return Err(outside());
    } else {
        (0..dirs.len())
            .map(|root| (root, path.to_owned()))
            .collect()
    };
    let roots = Roots::open(dirs.clone());
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
        message: format!("{what} path '{requested}' does not exist in the certificate directories"),
    })
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
