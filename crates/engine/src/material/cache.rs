//! What cached values are keyed by, and caches that hold a bounded number of bytes.
//!
//! In-memory sources (keystores carried by jobs) are keyed by their SHA-256. The digest of a
//! buffer is remembered by its address for the jobs that hand over the same `Bytes` (the
//! agent's certificate cache gives clones of one buffer), which keeps that buffer alive: at
//! most [`PINNED_BYTES`] of buffers are kept so, and larger ones are never kept. Parsed values
//! are weighed too ([`Cache`]), so that jobs with large inline keystores leave at most a
//! bounded amount behind, and their memory returns once the job ends.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use foldhash::HashMap;
use sha2::{Digest, Sha256};

use crate::job::TrustMode;

/// More entries than this and a cache starts over (jobs rarely use more than a few).
pub(super) const CACHE_LIMIT: usize = 256;

/// The most bytes of job buffers kept alive to remember their digests by address.
pub(super) const PINNED_BYTES: usize = 16 << 20;

/// The most bytes of parsed values (chains, trust anchors) one cache holds.
pub(super) const CACHED_BYTES: usize = 64 << 20;

/// What a cached value was made from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Key {
    pub(super) sources: Sources,
    pub(super) secrets: Secrets,
}

/// The one or two files (or buffers) a value was made from: kept inline, as a lookup builds
/// one for every job.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Sources {
    One(SourceKey),
    Two([SourceKey; 2]),
}

impl Sources {
    pub(super) fn as_slice(&self) -> &[SourceKey] {
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
pub(super) struct Secrets {
    pub(super) passwords: [Option<keystore::Password>; 2],
    pub(super) alias: Option<String>,
}

impl Secrets {
    pub(super) fn new(
        first: Option<&keystore::Password>,
        second: Option<&keystore::Password>,
    ) -> Self {
        Self {
            passwords: [first.cloned(), second.cloned()],
            alias: None,
        }
    }

    pub(super) fn digest(&self) -> [u8; 32] {
        let [first, second] = &self.passwords;
        keystore::secrets_digest(&[first.as_ref(), second.as_ref()], self.alias.as_deref())
    }
}

/// Where a cached value's bytes came from. Paths are hashed and compared as bytes (`Path`'s
/// own `Hash` walks its components, which costs more than the rest of the lookup).
#[derive(Debug, Clone)]
pub(super) enum SourceKey {
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

/// SHA-256 of in-memory keystores by buffer, so that jobs handing over the same `Bytes` hash it
/// once. Each entry holds its buffer, so the address cannot be freed and reused for other
/// bytes while the entry exists; the entries hold at most [`PINNED_BYTES`] in all.
#[derive(Debug, Default)]
pub(super) struct Digests(Mutex<Pinned>);

#[derive(Debug, Default)]
struct Pinned {
    by_address: HashMap<BufferAt, (Bytes, [u8; 32])>,
    bytes: usize,
}

/// A buffer's address and length.
type BufferAt = (usize, usize);

impl Digests {
    pub(super) fn of(&self, bytes: &Bytes) -> [u8; 32] {
        let at = (bytes.as_ptr() as usize, bytes.len());
        if let Some((_, digest)) = lock(&self.0).by_address.get(&at) {
            return *digest;
        }
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        if bytes.len() > PINNED_BYTES {
            return digest;
        }
        let mut pinned = lock(&self.0);
        if pinned.by_address.len() >= CACHE_LIMIT || pinned.bytes + bytes.len() > PINNED_BYTES {
            pinned.by_address.clear();
            pinned.bytes = 0;
        }
        if pinned
            .by_address
            .insert(at, (bytes.clone(), digest))
            .is_none()
        {
            pinned.bytes += bytes.len();
        }
        digest
    }

    /// How many bytes of buffers are kept alive.
    #[cfg(test)]
    pub(super) fn pinned(&self) -> usize {
        lock(&self.0).bytes
    }
}

/// Parsed values by what they were made from, holding at most [`CACHE_LIMIT`] entries and
/// [`CACHED_BYTES`] by the weight given with each.
#[derive(Debug)]
pub(super) struct Cache<K, V>(Mutex<Weighed<K, V>>);

#[derive(Debug)]
struct Weighed<K, V> {
    map: HashMap<K, (V, usize)>,
    bytes: usize,
}

impl<K: KeyedBySources + Eq + std::hash::Hash, V: Clone> Cache<K, V> {
    pub(super) fn new() -> Self {
        Self(Mutex::new(Weighed {
            map: HashMap::default(),
            bytes: 0,
        }))
    }

    pub(super) fn get(&self, key: &K) -> Option<V> {
        lock(&self.0).map.get(key).map(|(value, _)| value.clone())
    }

    /// Keeps `value` (about `weight` bytes); one over the whole budget is not kept.
    pub(super) fn insert(&self, key: K, value: V, weight: usize) {
        if weight > CACHED_BYTES {
            return;
        }
        let mut cache = lock(&self.0);
        let cache = &mut *cache;
        evict_same_files(&mut cache.map, key.sources());
        cache.bytes = cache.map.values().map(|(_, weight)| weight).sum();
        if cache.map.len() >= CACHE_LIMIT || cache.bytes + weight > CACHED_BYTES {
            cache.map.clear();
            cache.bytes = 0;
        }
        if let Some((_, old)) = cache.map.insert(key, (value, weight)) {
            cache.bytes -= old;
        }
        cache.bytes += weight;
    }

    /// How many bytes the entries weigh.
    #[cfg(test)]
    pub(super) fn weight(&self) -> usize {
        lock(&self.0).bytes
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another job panicked while inserting: the map is still a map.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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

pub(super) trait KeyedBySources {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_kept_for_their_digests_stay_within_the_budget() {
        let digests = Digests::default();
        let mut buffers = Vec::new();
        for round in 0..40u8 {
            let buffer = Bytes::from(vec![round; 1 << 20]);
            let first = digests.of(&buffer);
            assert_eq!(digests.of(&buffer), first);
            assert!(digests.pinned() <= PINNED_BYTES);
            buffers.push(buffer);
        }
        let large = Bytes::from(vec![0; PINNED_BYTES + 1]);
        let digest = digests.of(&large);
        assert_eq!(digests.of(&large), digest);
        assert!(large.is_unique(), "a buffer over the budget is never kept");
    }

    #[test]
    fn parsed_values_stay_within_the_budget() {
        let cache: Cache<Key, usize> = Cache::new();
        let key = |n: u8| Key {
            sources: Sources::One(SourceKey::Memory([n; 32])),
            secrets: Secrets::new(None, None),
        };
        for n in 0..20 {
            cache.insert(key(n), usize::from(n), 10 << 20);
            assert!(cache.weight() <= CACHED_BYTES);
            assert_eq!(cache.get(&key(n)), Some(usize::from(n)));
        }
        cache.insert(key(99), 99, CACHED_BYTES + 1);
        assert_eq!(cache.get(&key(99)), None);
        cache.insert(key(1), 1, 10);
        cache.insert(key(1), 1, 20);
        assert!(cache.weight() <= CACHED_BYTES);
    }
}
