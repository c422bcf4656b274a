//! The HTTP options of a job beyond the request: redirects, proxies, connection reuse and
//! size limits (the builder methods for each live with their concept: `redirect`, `proxy`,
//! `pool`, `decode`; the header limits are here).

use std::fmt;

use crate::host_pattern::HostPattern;
use crate::job::{IdentitySource, JobBuilder};

/// The HTTP options of a job beyond the request itself: redirects, proxies, connection reuse
/// and size limits. Set through [`JobBuilder`].
#[derive(Clone)]
pub(crate) struct HttpOptions {
    /// `None`: follow for GET and HEAD only (the reference system's rule).
    pub(crate) follow_redirects: Option<bool>,
    pub(crate) max_redirects: u32,
    /// Identities for redirect hops to hosts other than the URL's, in the order given: the
    /// most specific matching pattern selects one (nothing is loaded before that).
    pub(crate) host_identities: Vec<(HostPattern, IdentitySource)>,
    pub(crate) proxy: Option<crate::proxy::ProxyRules>,
    pub(crate) keep_alive: bool,
    pub(crate) idle_limit: std::time::Duration,
    pub(crate) decoded_limit: u64,
    pub(crate) response_header_limit: usize,
    /// Whether the engine added `Accept-Encoding` (and so decodes the body).
    pub(crate) decodes: bool,
}

impl JobBuilder {
    /// The largest request head (URL and headers), checked when the job is built (default
    /// [`crate::DEFAULT_HEADER_LIMIT`]).
    pub fn request_header_limit(mut self, bytes: usize) -> Self {
        self.request_header_limit = bytes;
        self
    }

    /// The largest response head accepted; a larger one ends in `http.headers_too_large`
    /// (default [`crate::DEFAULT_HEADER_LIMIT`]; HTTP/1.1 never goes below 8 KiB).
    pub fn response_header_limit(mut self, bytes: usize) -> Self {
        self.http_options.response_header_limit = bytes;
        self
    }
}

impl fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hosts: Vec<String> = self
            .host_identities
            .iter()
            .map(|(pattern, _)| pattern.to_string())
            .collect();
        f.debug_struct("HttpOptions")
            .field("follow_redirects", &self.follow_redirects)
            .field("max_redirects", &self.max_redirects)
            .field("host_identities", &hosts)
            .field("proxy", &self.proxy)
            .field("keep_alive", &self.keep_alive)
            .field("idle_limit", &self.idle_limit)
            .field("decoded_limit", &self.decoded_limit)
            .field("response_header_limit", &self.response_header_limit)
            .field("decodes", &self.decodes)
            .finish()
    }
}
