//! Client identities and server verifiers, parsed once and cached.
//!
//! A cache entry is keyed by what it was made from: for a file its path, device, inode,
//! modification time and size; for in-memory bytes their SHA-256; plus the passwords and alias.
//! A file replaced on disk has a new key, so the next job reads it again; the stale entry for
//! the same path is dropped then. The caches hold a bounded number of bytes ([`cache`]): a job's
//! inline keystore is not kept alive by them beyond a small budget.
//!
//! Parsing runs on the blocking pool, a few parses at a time (as many as there are cores), and
//! counts against the job's deadline: a job whose deadline passes while its keystore is parsed
//! (or waits for a parsing slot) ends with the engine's timeout error. The parse itself is
//! bounded by the engine's [`keystore::Limits`] on key-derivation work, and holds its slot to
//! its end, so that abandoned parses cannot pile up in memory.
//!
//! A file's metadata is looked up again when the last look is more than [`RECHECK`] old: a
//! replacement is seen by the jobs that start a millisecond after it, while a stream of
//! kept-alive jobs (thousands a second) does not pay a `stat` (a path walk in the kernel, a
//! few microseconds for two files) each.

mod cache;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use foldhash::HashMap;
use keystore::{CertificateInfo, Identity, Keystore, Limits, Options, TrustAnchors};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use self::cache::{CACHE_LIMIT, Cache, Digests, Key, Secrets, SourceKey, Sources, lock};
use crate::error::{Error, Material};
use crate::job::{IdentitySource, Source, TrustMode, TrustSource};
use crate::tls::danger::NoVerification;

/// How long a file's metadata is taken as current.
pub(crate) const RECHECK: Duration = Duration::from_millis(1);

/// A parsed client identity with the facts of its leaf certificate.
#[derive(Debug)]
pub(crate) struct LoadedIdentity {
    pub(crate) identity: Identity,
    pub(crate) leaf: CertificateInfo,
    /// SHA-256 over what it was made from (files by identity, bytes, password digests): the
    /// identity part of a pooled connection's key.
    pub(crate) fingerprint: [u8; 32],
}

/// A verifier and the fingerprint of what it trusts (part of a pooled connection's key).
pub(crate) type Verifier = (Arc<dyn ServerCertVerifier>, [u8; 32]);

/// When the job must be done, and the job's timeout that set it (named by the error).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    pub(crate) at: Instant,
    pub(crate) after: Duration,
}

/// The caches of one engine.
#[derive(Debug)]
pub(crate) struct Materials {
    provider: Arc<CryptoProvider>,
    limits: Limits,
    identities: Cache<Key, Arc<LoadedIdentity>>,
    verifiers: Cache<(TrustMode, Option<Key>), Verifier>,
    system_roots: OnceLock<Arc<RootCertStore>>,
    insecure: OnceLock<Verifier>,
    digests: Digests,
    /// Each file's key and when its metadata was last looked up.
    looked: Mutex<HashMap<PathBuf, (Instant, SourceKey)>>,
    /// Slots for parsing on the blocking pool: bounds the memory and cores parses take.
    parsers: Arc<Semaphore>,
}

impl Materials {
    pub(crate) fn new(provider: Arc<CryptoProvider>, limits: Limits) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        Self {
            provider,
            limits,
            identities: Cache::new(),
            verifiers: Cache::new(),
            system_roots: OnceLock::new(),
            insecure: OnceLock::new(),
            digests: Digests::default(),
            looked: Mutex::new(HashMap::default()),
            parsers: Arc::new(Semaphore::new(cores.max(2))),
        }
    }

    /// The job's identity, from the cache or freshly parsed.
    pub(crate) async fn identity(
        &self,
        source: &IdentitySource,
        until: Deadline,
    ) -> Result<Arc<LoadedIdentity>, Error> {
        let key = self.identity_key(source)?;
        if let Some(found) = self.identities.get(&key) {
            return Ok(found);
        }
        let owned = source.clone();
        let limits = self.limits;
        let mut loaded = self
            .off_thread(until, "identity loading", move || {
                parse_identity(&owned, limits)
            })
            .await?;
        loaded.fingerprint = key_fingerprint(Some(&key), "identity");
        let weight = chain_weight(loaded.identity.chain());
        let loaded = Arc::new(loaded);
        self.identities.insert(key, loaded.clone(), weight);
        Ok(loaded)
    }

    /// The verifier for the job's trust settings.
    pub(crate) async fn verifier(
        &self,
        mode: TrustMode,
        store: Option<&TrustSource>,
        insecure: bool,
        until: Deadline,
    ) -> Result<Verifier, Error> {
        if insecure {
            let provider = self.provider.clone();
            return Ok(self
                .insecure
                .get_or_init(|| {
                    let verifier: Arc<dyn ServerCertVerifier> =
                        Arc::new(NoVerification::new(provider));
                    (verifier, key_fingerprint(None, "insecure"))
                })
                .clone());
        }
        let store = if mode == TrustMode::System {
            None
        } else {
            store
        };
        let key = match store {
            Some(store) => Some(Key {
                sources: Sources::One(self.source_key(&store.source, Material::Trust)?),
                secrets: Secrets::new(store.password.as_ref(), None),
            }),
            None => None,
        };
        let cache_key = (mode, key);
        if let Some(found) = self.verifiers.get(&cache_key) {
            return Ok(found);
        }
        let custom = match store {
            Some(store) => {
                let owned = store.clone();
                let limits = self.limits;
                let work = move || parse_trust(&owned, limits);
                Some(self.off_thread(until, "trust loading", work).await?)
            }
            None => None,
        };
        let mut roots = match mode {
            TrustMode::Custom => RootCertStore::empty(),
            TrustMode::System | TrustMode::Both => (*self.system_roots(until).await?).clone(),
        };
        if let Some(custom) = custom {
            roots.roots.extend(custom.roots);
        }
        let weight = anchors_weight(&roots);
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|_| Error::Keystore {
                    material: Material::Trust,
                    source: keystore::Error::NoCertificates,
                })?;
        let verifier: Arc<dyn ServerCertVerifier> = verifier;
        let entry = (
            verifier,
            key_fingerprint(cache_key.1.as_ref(), &format!("{mode:?}")),
        );
        self.verifiers.insert(cache_key, entry.clone(), weight);
        Ok(entry)
    }

    /// Runs `work` on the blocking pool in a parsing slot, until the job's deadline: past it
    /// the job ends with the engine's timeout error, while the work (bounded by the keystore
    /// limits) runs to its end in its slot and its result is dropped.
    async fn off_thread<T: Send + 'static>(
        &self,
        until: Deadline,
        what: &'static str,
        work: impl FnOnce() -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let expired = || Error::Timeout {
            phase: "keystore loading",
            after: until.after,
        };
        let deadline = tokio::time::Instant::from_std(until.at);
        let slot = tokio::time::timeout_at(deadline, self.parsers.clone().acquire_owned())
            .await
            .map_err(|_| expired())?
            .map_err(|_| Error::Internal {
                detail: "the parsing slots were closed".into(),
            })?;
        let task = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            work()
        });
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(error)) => Err(Error::Internal {
                detail: format!("{what} task failed: {error}"),
            }),
            Err(_) => Err(expired()),
        }
    }

    /// The operating system's roots, loaded once; Mozilla's (webpki-roots) when the system
    /// has none, so that `system` trust always means something.
    async fn system_roots(&self, until: Deadline) -> Result<Arc<RootCertStore>, Error> {
        if let Some(roots) = self.system_roots.get() {
            return Ok(roots.clone());
        }
        let loaded = self
            .off_thread(until, "system roots", || Ok(load_system_roots()))
            .await?;
        Ok(self.system_roots.get_or_init(|| Arc::new(loaded)).clone())
    }
}

/// About the memory a parsed identity holds: its chain (twice: as DER and in the signing
/// identity) and the key.
fn chain_weight(chain: &[rustls_pki_types::CertificateDer<'_>]) -> usize {
    4096 + 2 * chain.iter().map(|cert| cert.len()).sum::<usize>()
}

/// About the memory a verifier's anchors hold.
fn anchors_weight(roots: &RootCertStore) -> usize {
    1024 + roots
        .roots
        .iter()
        .map(|anchor| {
            anchor.subject.len()
                + anchor.subject_public_key_info.len()
                + anchor.name_constraints.as_ref().map_or(0, |nc| nc.len())
        })
        .sum::<usize>()
}

fn load_system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    if added == 0 {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    roots
}

fn parse_identity(source: &IdentitySource, limits: Limits) -> Result<LoadedIdentity, Error> {
    let fail = |source| Error::Keystore {
        material: Material::Identity,
        source,
    };
    let identity = match source {
        IdentitySource::Keystore {
            source,
            password,
            key_password,
            alias,
        } => {
            let bytes = read(source, Material::Identity)?;
            let options = Options {
                store_password: password.clone(),
                key_password: key_password.clone(),
                limits,
            };
            Keystore::open(&bytes, &options)
                .and_then(|store| store.identity(alias.as_deref()))
                .map_err(fail)?
        }
        IdentitySource::Pair {
            certificates,
            key,
            key_password,
        } => {
            let cert_bytes = read(certificates, Material::Identity)?;
            let key_bytes = read(key, Material::Identity)?;
            let options = Options {
                store_password: None,
                key_password: key_password.clone(),
                limits,
            };
            Keystore::open_pair(&cert_bytes, &key_bytes, &options)
                .and_then(|store| store.identity(None))
                .map_err(fail)?
        }
    };
    let leaf_der = identity.chain().first().ok_or_else(|| {
        fail(keystore::Error::NoCertificate {
            alias: identity.alias().map(str::to_owned),
        })
    })?;
    let leaf = CertificateInfo::from_der(leaf_der).map_err(fail)?;
    Ok(LoadedIdentity {
        identity,
        leaf,
        fingerprint: [0; 32],
    })
}

/// A digest of what a cached value was made from, secrets included (as their digest): the
/// identity and trust parts of a pooled connection's key. Made once per cache entry.
fn key_fingerprint(key: Option<&Key>, label: &str) -> [u8; 32] {
    let mut sha = Sha256::new();
    sha.update(label.as_bytes());
    if let Some(key) = key {
        sha.update(format!("{:?}", key.sources).as_bytes());
        sha.update(key.secrets.digest());
    }
    sha.finalize().into()
}

fn parse_trust(store: &TrustSource, limits: Limits) -> Result<RootCertStore, Error> {
    let bytes = read(&store.source, Material::Trust)?;
    let options = Options {
        store_password: store.password.clone(),
        limits,
        ..Options::default()
    };
    let anchors = TrustAnchors::open(&bytes, &options).map_err(|source| Error::Keystore {
        material: Material::Trust,
        source,
    })?;
    let (roots, _ignored) = anchors.root_store();
    if roots.is_empty() {
        return Err(Error::Keystore {
            material: Material::Trust,
            source: keystore::Error::NoCertificates,
        });
    }
    Ok(roots)
}

fn read(source: &Source, material: Material) -> Result<Bytes, Error> {
    match source {
        Source::Bytes(bytes) => Ok(bytes.clone()),
        Source::Path(path) => std::fs::read(path)
            .map(Bytes::from)
            .map_err(|error| unreadable(material, path, &error)),
    }
}

fn unreadable(material: Material, path: &Path, error: &std::io::Error) -> Error {
    Error::Unreadable {
        material,
        path: path.to_owned(),
        detail: error.to_string(),
    }
}

impl Materials {
    fn identity_key(&self, source: &IdentitySource) -> Result<Key, Error> {
        Ok(match source {
            IdentitySource::Keystore {
                source,
                password,
                key_password,
                alias,
            } => Key {
                sources: Sources::One(self.source_key(source, Material::Identity)?),
                secrets: Secrets {
                    alias: alias.clone(),
                    ..Secrets::new(password.as_ref(), key_password.as_ref())
                },
            },
            IdentitySource::Pair {
                certificates,
                key,
                key_password,
            } => Key {
                sources: Sources::Two([
                    self.source_key(certificates, Material::Identity)?,
                    self.source_key(key, Material::Identity)?,
                ]),
                secrets: Secrets::new(key_password.as_ref(), None),
            },
        })
    }

    fn source_key(&self, source: &Source, material: Material) -> Result<SourceKey, Error> {
        match source {
            Source::Bytes(bytes) => Ok(SourceKey::Memory(self.digests.of(bytes))),
            Source::Path(path) => {
                let now = Instant::now();
                if let Some((at, key)) = lock(&self.looked).get(path)
                    && now.saturating_duration_since(*at) < RECHECK
                {
                    return Ok(key.clone());
                }
                let meta =
                    std::fs::metadata(path).map_err(|error| unreadable(material, path, &error))?;
                let key = SourceKey::File {
                    path: Arc::from(path.as_path()),
                    device: meta.dev(),
                    inode: meta.ino(),
                    modified_ns: i128::from(meta.mtime()) * 1_000_000_000
                        + i128::from(meta.mtime_nsec()),
                    size: meta.len(),
                };
                let mut looked = lock(&self.looked);
                if looked.len() >= CACHE_LIMIT {
                    looked.clear();
                }
                looked.insert(path.clone(), (now, key.clone()));
                Ok(key)
            }
        }
    }
}
