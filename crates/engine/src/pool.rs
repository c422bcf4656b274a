//! Kept-alive connections for jobs that ask for `keep_alive`, keyed by everything that
//! authenticated them.
//!
//! The key is the scheme, host, port, pinned address, SNI name, identity fingerprint, trust
//! fingerprint (mode, verification and custom store), TLS versions, HTTP version, response
//! header limit and proxy. A
//! connection made with certificate A is never handed to a job that asked for certificate B
//! or for none, because their keys differ. A connection is used by one job at a time and goes
//! back to the pool only after its response was read completely. Idle connections expire
//! after the job's `keep_alive_idle` (default 30 s).

use foldhash::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::exchange::Connection;
use crate::job::{HttpVersion, JobBuilder, TlsVersion};
use crate::run::Handshake;

/// How long an idle connection is kept, unless the job says otherwise.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The most idle connections kept per key.
const PER_KEY: usize = 16;

/// Everything that authenticated a connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    /// `https` (else `http`).
    pub(crate) https: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) pinned: Option<std::net::SocketAddr>,
    pub(crate) sni: Option<String>,
    pub(crate) identity: Option<[u8; 32]>,
    pub(crate) trust: [u8; 32],
    pub(crate) tls: (TlsVersion, TlsVersion),
    pub(crate) http: HttpVersion,
    /// The response header limit the connection was set up with (hyper applies it per
    /// connection).
    pub(crate) header_limit: usize,
    /// The proxy's address and a digest of its credentials.
    pub(crate) proxy: Option<(String, [u8; 32])>,
}

/// An idle connection and what its handshake showed (reported again on reuse).
#[derive(Debug)]
pub(crate) struct Pooled {
    pub(crate) connection: Connection,
    pub(crate) http2: bool,
    pub(crate) tls: Option<Arc<Handshake>>,
    pub(crate) marks: Arc<crate::timing::IoMarks>,
    pub(crate) idle_since: Instant,
    /// How long it may stay idle (the job's `keep_alive_idle`).
    pub(crate) idle_limit: Duration,
    /// The address it is connected to, checked against the egress policy of the job that
    /// reuses it (the key does not hold the policy).
    pub(crate) peer: std::net::SocketAddr,
}

/// The idle connections of one engine.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    idle: Mutex<HashMap<PoolKey, Vec<Pooled>>>,
}

impl JobBuilder {
    /// Reuses a kept-alive connection made for exactly the same host, identity, trust and
    /// proxy, and keeps this job's connection for the next such job.
    pub fn keep_alive(mut self, keep: bool) -> Self {
        self.http_options.keep_alive = keep;
        self
    }

    /// How long this job's connection may wait idle in the pool for the next job (default
    /// 30 s).
    pub fn keep_alive_idle(mut self, limit: Duration) -> Self {
        self.http_options.idle_limit = limit;
        self
    }
}

impl Pool {
    /// A live idle connection for `key`, most recently used first; expired and closed ones
    /// are dropped on the way.
    pub(crate) fn take(&self, key: &PoolKey) -> Option<Pooled> {
        let mut idle = self.lock();
        let list = idle.get_mut(key)?;
        let now = Instant::now();
        while let Some(pooled) = list.pop() {
            if now.duration_since(pooled.idle_since) < pooled.idle_limit
                && pooled.connection.is_open()
            {
                return Some(pooled);
            }
        }
        idle.remove(key);
        None
    }

    /// Keeps `pooled` for the next job with the same key.
    pub(crate) fn put(&self, key: PoolKey, mut pooled: Pooled) {
        if !pooled.connection.is_open() {
            return;
        }
        pooled.idle_since = Instant::now();
        let mut idle = self.lock();
        let now = Instant::now();
        idle.retain(|_, list| {
            list.retain(|p| now.duration_since(p.idle_since) < p.idle_limit);
            !list.is_empty()
        });
        let list = idle.entry(key).or_default();
        if list.len() >= PER_KEY {
            list.remove(0);
        }
        list.push(pooled);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PoolKey, Vec<Pooled>>> {
        // A poisoned lock only means a job panicked while holding it: the map is still valid.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
