//! Client identities and server verifiers, parsed once and cached.
//!
//! A cache entry is keyed by what it was made from: for a file its path, device, inode,
//! modification time and size; for in-memory bytes their SHA-256; plus the passwords and alias.
//! A file replaced on disk has a new key, so the next job reads it again; the stale entry for
//! the same path is dropped then. Parsing runs on the blocking pool.
//!
//! A file's metadata is looked up again when the last look is more than [`RECHECK`] old: a
//! replacement is seen by the jobs that start a millisecond after it, while a stream of
//! kept-alive jobs (thousands a second) does not pay a `stat` (a path walk in the kernel, a
//! few microseconds for two files) each.

use foldhash::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use keystore::{CertificateInfo, Identity, Keystore, Options, TrustAnchors};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use sha2::{Digest, Sha256};

use crate::error::{Error, Material};
use crate::job::{IdentitySource, Source, TrustMode, TrustSource};
use crate::tls::danger::NoVerification;

/// More entries than this and the cache starts over (jobs rarely use more than a few).
const CACHE_LIMIT: usize = 256;

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

/// Verifiers by trust mode and custom store.
type Verifiers = HashMap<(TrustMode, Option<Key>), Verifier>;

/// A verifier and the fingerprint of what it trusts (part of a pooled connection's key).
pub(crate) type Verifier = (Arc<dyn ServerCertVerifier>, [u8; 32]);

/// The caches of one engine.
#[derive(Debug)]
pub(crate) struct Materials {
    provider: Arc<CryptoProvider>,
    identities: Mutex<HashMap<Key, Arc<LoadedIdentity>>>,
    verifiers: Mutex<Verifiers>,
    system_roots: OnceLock<Arc<RootCertStore>>,
    insecure: OnceLock<Verifier>,
    digests: Digests,
    /// Each file's key and when its metadata was last looked up.
    looked: Mutex<HashMap<PathBuf, (Instant, SourceKey)>>,
}

/// SHA-256 of in-memory keystores by buffer, so that jobs handing over the same `Bytes` (clones
/// of one buffer, as the agent's certificate cache gives) hash it once. Each entry holds its
/// buffer, so the address cannot be freed and reused for other bytes while the entry exists.
#[derive(Debug, Default)]
struct Digests(Mutex<HashMap<BufferAt, (Bytes, [u8; 32])>>);

/// A buffer's address and length.
type BufferAt = (usize, usize);

impl Digests {
    fn of(&self, bytes: &Bytes) -> [u8; 32] {
        let at = (bytes.as_ptr() as usize, bytes.len());
        if let Some((_, digest)) = lock(&self.0).get(&at) {
            return *digest;
        }
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        let mut known = lock(&self.0);
        if known.len() >= CACHE_LIMIT {
            known.clear();
        }
        known.insert(at, (bytes.clone(), digest));
        digest
    }
}

/// What a cached value was made from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    sources: Sources,
    secrets: Secrets,
}

/// The one or two files (or buffers) a value was made from: kept inline, as a lookup builds
/// one for every job.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Sources {
    One(SourceKey),
    Two([SourceKey; 2]),
}

impl Sources {
    fn as_slice(&self) -> &[SourceKey] {
        match self {
            Self::One(source) => std::slice::from_ref(source),
            Self::Two(sources) => sources,
        }
    }
}

/// The passwords and alias a value was opened with, compared as they are: a digest of them
/// per lookup (SHA-256) cost more than the rest of a kept-alive job's bookkeeping. They stay
/// in memory only as long as the cache entry (wiped on drop, redacted in `Debug`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Secrets {
    passwords: [Option<keystore::Password>; 2],
    alias: Option<String>,
}

impl Secrets {
    fn new(first: Option<&keystore::Password>, second: Option<&keystore::Password>) -> Self {
        Self {
            passwords: [first.cloned(), second.cloned()],
            alias: None,
        }
    }

    fn digest(&self) -> [u8; 32] {
        let [first, second] = &self.passwords;
        keystore::secrets_digest(&[first.as_ref(), second.as_ref()], self.alias.as_deref())
    }
}

/// Where a cached value's bytes came from. Paths are hashed and compared as bytes (`Path`'s
/// own `Hash` walks its components, which costs more than the rest of the lookup).
#[derive(Debug, Clone)]
enum SourceKey {
    File {
        /// Shared: the key is copied for every lookup.
        path: Arc<Path>,
        device: u64,
        inode: u64,
        modified_ns: i128,
        size: u64,
    },
    Memory([u8; 32]),
}

/// A source key as plain values: path bytes, (device, inode, size), mtime, memory digest.
type SourceParts<'a> = (Option<&'a [u8]>, [u64; 3], i128, Option<&'a [u8; 32]>);

impl SourceKey {
    fn parts(&self) -> SourceParts<'_> {
        use std::os::unix::ffi::OsStrExt;
        match self {
            Self::File {
                path,
                device,
                inode,
                modified_ns,
                size,
            } => (
                Some(path.as_os_str().as_bytes()),
                [*device, *inode, *size],
                *modified_ns,
                None,
            ),
            Self::Memory(digest) => (None, [0; 3], 0, Some(digest)),
        }
    }
}

impl PartialEq for SourceKey {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for SourceKey {}

impl std::hash::Hash for SourceKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

impl Materials {
    pub(crate) fn new(provider: Arc<CryptoProvider>) -> Self {
        Self {
            provider,
            identities: Mutex::new(HashMap::default()),
            verifiers: Mutex::new(HashMap::default()),
            system_roots: OnceLock::new(),
            insecure: OnceLock::new(),
            digests: Digests::default(),
            looked: Mutex::new(HashMap::default()),
        }
    }

    /// The job's identity, from the cache or freshly parsed.
    pub(crate) async fn identity(
        &self,
        source: &IdentitySource,
    ) -> Result<Arc<LoadedIdentity>, Error> {
        let key = self.identity_key(source)?;
        if let Some(found) = lock(&self.identities).get(&key) {
            return Ok(found.clone());
        }
        let owned = source.clone();
        let mut loaded = tokio::task::spawn_blocking(move || parse_identity(&owned))
            .await
            .map_err(|error| Error::Internal {
                detail: format!("identity loading task failed: {error}"),
            })??;
        loaded.fingerprint = key_fingerprint(Some(&key), "identity");
        let loaded = Arc::new(loaded);
        insert(&self.identities, key, loaded.clone());
        Ok(loaded)
    }

    /// The verifier for the job's trust settings.
    pub(crate) async fn verifier(
        &self,
        mode: TrustMode,
        store: Option<&TrustSource>,
        insecure: bool,
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
        if let Some(found) = lock(&self.verifiers).get(&cache_key) {
            return Ok(found.clone());
        }
        let custom = match store {
            Some(store) => {
                let owned = store.clone();
                Some(
                    tokio::task::spawn_blocking(move || parse_trust(&owned))
                        .await
                        .map_err(|error| Error::Internal {
                            detail: format!("trust loading task failed: {error}"),
                        })??,
                )
            }
            None => None,
        };
        let mut roots = match mode {
            TrustMode::Custom => RootCertStore::empty(),
            TrustMode::System | TrustMode::Both => (*self.system_roots().await?).clone(),
        };
        if let Some(custom) = custom {
            roots.roots.extend(custom.roots);
        }
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
        insert(&self.verifiers, cache_key, entry.clone());
        Ok(entry)
    }

    /// The operating system's roots, loaded once; Mozilla's (webpki-roots) when the system
    /// has none, so that `system` trust always means something.
    async fn system_roots(&self) -> Result<Arc<RootCertStore>, Error> {
        if let Some(roots) = self.system_roots.get() {
            return Ok(roots.clone());
        }
        let loaded = tokio::task::spawn_blocking(load_system_roots)
            .await
            .map_err(|error| Error::Internal {
                detail: format!("system roots task failed: {error}"),
            })?;
        Ok(self.system_roots.get_or_init(|| Arc::new(loaded)).clone())
    }
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

fn parse_identity(source: &IdentitySource) -> Result<LoadedIdentity, Error> {
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
                ..Options::default()
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
                ..Options::default()
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

fn parse_trust(store: &TrustSource) -> Result<RootCertStore, Error> {
    let bytes = read(&store.source, Material::Trust)?;
    let anchors =
        TrustAnchors::parse(&bytes, store.password.as_ref()).map_err(|source| Error::Keystore {
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

fn lock<K, V>(map: &Mutex<HashMap<K, V>>) -> std::sync::MutexGuard<'_, HashMap<K, V>> {
    // A poisoned lock only means another job panicked while inserting: the map is still a map.
    map.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn insert<K: KeyedBySources + Eq + std::hash::Hash, V>(
    map: &Mutex<HashMap<K, V>>,
    key: K,
    value: V,
) {
    let mut map = lock(map);
    evict_same_files(&mut map, key.sources());
    if map.len() >= CACHE_LIMIT {
        map.clear();
    }
    map.insert(key, value);
}

fn evict_same_files<K: KeyedBySources, V>(map: &mut HashMap<K, V>, sources: &[SourceKey]) {
    let paths: Vec<&Arc<Path>> = sources
        .iter()
        .filter_map(|source| match source {
            SourceKey::File { path, .. } => Some(path),
            SourceKey::Memory(_) => None,
        })
        .collect();
    if paths.is_empty() {
        return;
    }
    map.retain(|key, _| {
        !key.sources().iter().any(|source| match source {
            SourceKey::File { path, .. } => paths.contains(&path),
            SourceKey::Memory(_) => false,
        })
    });
}

trait KeyedBySources {
    fn sources(&self) -> &[SourceKey];
}

impl KeyedBySources for Key {
    fn sources(&self) -> &[SourceKey] {
        self.sources.as_slice()
    }
}

impl KeyedBySources for (TrustMode, Option<Key>) {
    fn sources(&self) -> &[SourceKey] {
        self.1
            .as_ref()
            .map(|key| key.sources.as_slice())
            .unwrap_or_default()
    }
}
