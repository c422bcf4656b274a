//! Reuse of kept-alive connections: the pool key and a job's attempt over a pooled connection.

use std::time::Instant;

use sha2::{Digest, Sha256};

use super::{Inner, Progress};
use crate::dial::Dialed;
use crate::error::Error;
use crate::job::Job;
use crate::pool::{PoolKey, Pooled};
use crate::proxy::Proxy;

impl Inner {
    /// The request over a pooled connection for `key`, if there is one: `None` when there is
    /// none, or when it turned out dead and the (idempotent) request should go over a fresh
    /// connection; `progress` is then reset.
    pub(super) async fn reuse_pooled(
        &self,
        job: &Job,
        progress: &mut Progress,
        proxy: Option<&Proxy>,
        key: Option<&PoolKey>,
        deadline: Instant,
    ) -> Option<Result<(), Error>> {
        let key = key?;
        let pooled = self.pool.take(key)?;
        let (host, port) = job.host_port();
        if let Some(policy) = &job.egress
            && let Err(error) = crate::egress::admit(policy, (&host, port), proxy, &[pooled.peer])
        {
            return Some(Err(error));
        }
        progress.reuse(&pooled);
        let dialed = Dialed {
            connection: pooled.connection,
            http2: pooled.http2,
            marks: pooled.marks,
            peer: pooled.peer,
        };
        let result = self
            .exchange(job, dialed, proxy, Some(key.clone()), deadline, progress)
            .await;
        let dead = progress.head.is_none()
            && matches!(
                result,
                Err(Error::HttpProtocol { .. } | Error::ClientCertRejected { .. })
            );
        if !(dead && is_idempotent(&job.method)) {
            return Some(result);
        }
        // The server had closed the idle connection: once more on a fresh one.
        let identity = progress.identity.take();
        *progress = Progress::new_at(progress.timeline.job_start);
        progress.identity = identity;
        None
    }
}

impl Progress {
    /// Takes over what the pooled connection's handshake showed.
    fn reuse(&mut self, pooled: &Pooled) {
        self.reused = true;
        self.timeline.net_start = Some(Instant::now());
        self.tls_started = pooled.tls.is_some();
        self.handshake = pooled.tls.clone();
    }
}

/// Everything that authenticated a connection for `job`.
pub(super) fn pool_key(
    job: &Job,
    (host, port): (&str, u16),
    progress: &Progress,
    trust: [u8; 32],
    proxy: Option<&Proxy>,
) -> PoolKey {
    PoolKey {
        https: job.is_tls(),
        pinned: job.pinned(host, port),
        host: host.to_ascii_lowercase(),
        port,
        sni: job.sni.clone(),
        identity: progress.identity.as_ref().map(|loaded| loaded.fingerprint),
        trust,
        tls: (job.tls_min, job.tls_max),
        http: job.http,
        header_limit: job.http_options.response_header_limit,
        proxy: proxy.map(|proxy| {
            let digest = proxy
                .authorization()
                .map(|value| Sha256::digest(value.as_bytes()).into())
                .unwrap_or_default();
            (proxy.address(), digest)
        }),
    }
}

fn is_idempotent(method: &http::Method) -> bool {
    use http::Method;
    [
        Method::GET,
        Method::HEAD,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
        Method::TRACE,
    ]
    .contains(method)
}
