//! Redirects: when to follow, what the next request is, and what it may carry.
//!
//! The rules:
//! - GET and HEAD follow by default, other methods do not (re-posting is a risk); the job's
//!   `follow_redirects` overrides that in both directions.
//! - 301, 302, 303, 307 and 308 with a `Location` are followed; 303 turns the request into a
//!   GET without a body (HEAD stays HEAD); the others keep method and body.
//! - Credentials (the headers whose values the job marks sensitive: `Authorization`,
//!   `Proxy-Authorization`, `Cookie`, `X-Api-Key`, `Api-Key`, `X-Auth-Token` and the
//!   `Authorization` made from URL credentials; one list, in `job.rs`) go only to the scheme,
//!   host and port of the job's URL, and so does the job's client certificate. A hop to any
//!   other one carries no credentials, and a client certificate only when one of the job's
//!   host rules ([`JobBuilder::identity_for`], [`JobBuilder::identity_for_hosts`]) matches the
//!   hop's host and port: the most specific rule wins (see [`HostPattern`]), and its keystore
//!   is loaded only then. No match, no certificate. Proxies are chosen per hop by the job's
//!   proxy rules.
//! - More than `max_redirects` hops (default 10), or a request seen before (a loop), end the
//!   job with `redirect.limit`.

use http::{HeaderMap, Method, StatusCode, header};
use serde::Serialize;
use url::Url;

use crate::error::Error;
use crate::host_pattern::HostPattern;
use crate::job::{IdentitySource, Job, JobBuilder};
use crate::outcome::Metrics;

/// One redirect the job followed: the response that redirected and its own timings.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Redirect {
    /// The URL that answered with the redirect.
    pub url: String,
    /// The method used for it.
    pub method: String,
    /// The redirect status (301, 302, 303, 307, 308).
    pub status_code: u16,
    /// The `Location`, resolved against `url`.
    pub location: String,
    /// Whether a client identity was offered on this hop: the job's own on its URL's host,
    /// else the one a host rule selected for the hop's host.
    pub identity: bool,
    /// The timings of this hop.
    pub metrics: Metrics,
}

impl JobBuilder {
    /// Whether to follow redirects, for any method (default: GET and HEAD only).
    pub fn follow_redirects(mut self, follow: bool) -> Self {
        self.http_options.follow_redirects = Some(follow);
        self
    }

    /// The most redirects followed (default 10); one more ends in `redirect.limit`.
    pub fn max_redirects(mut self, limit: u32) -> Self {
        self.http_options.max_redirects = limit;
        self
    }

    /// The client identity to present when a redirect leads to exactly `host:port` (another
    /// host than the job's URL). The same as [`JobBuilder::identity_for_hosts`] with
    /// [`HostPattern::exact`].
    pub fn identity_for(
        self,
        host: impl Into<String>,
        port: u16,
        identity: IdentitySource,
    ) -> Self {
        self.identity_for_hosts(HostPattern::exact(&host.into(), port), identity)
    }

    /// The client identity to present when a redirect leads to a host `hosts` matches. Without
    /// a matching rule, a hop to another host than the job's URL presents no certificate; with
    /// several, the most specific wins (the first among equals). The identity is loaded only
    /// when a hop matches.
    pub fn identity_for_hosts(mut self, hosts: HostPattern, identity: IdentitySource) -> Self {
        self.http_options.host_identities.push((hosts, identity));
        self
    }
}

/// Whether `job` follows a redirect at all.
pub(crate) fn follows(job: &Job) -> bool {
    job.http_options
        .follow_redirects
        .unwrap_or(matches!(job.method, Method::GET | Method::HEAD))
}

/// The `Location` of a redirect response, resolved against the URL that answered.
pub(crate) fn location(status: StatusCode, headers: &HeaderMap, base: &Url) -> Option<Url> {
    if !matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let text = headers.get(header::LOCATION)?.to_str().ok()?;
    let next = base.join(text.trim()).ok()?;
    matches!(next.scheme(), "http" | "https").then_some(next)
}

/// The request for the next hop: `original` is the job as given, `current` the hop that
/// was redirected.
pub(crate) fn next(
    original: &Job,
    current: &Job,
    status: StatusCode,
    to: Url,
    hops: usize,
    seen: &[(Method, Url)],
) -> Result<Job, Error> {
    let limit = original.http_options.max_redirects;
    if hops >= limit as usize {
        return Err(Error::RedirectLimit {
            limit,
            looped: false,
        });
    }
    let mut job = current.clone();
    if status == StatusCode::SEE_OTHER && job.method != Method::HEAD {
        job.method = Method::GET;
        job.body = bytes::Bytes::new();
        job.headers.remove(header::CONTENT_TYPE);
        job.headers.remove(header::CONTENT_LENGTH);
    }
    if seen
        .iter()
        .any(|(method, url)| *method == job.method && *url == to)
    {
        return Err(Error::RedirectLimit {
            limit,
            looped: true,
        });
    }
    let same_origin = same_authority(&original.url, &to);
    job.headers = original.headers.clone();
    if job.method != original.method {
        job.headers.remove(header::CONTENT_TYPE);
        job.headers.remove(header::CONTENT_LENGTH);
    }
    job.headers.remove(header::HOST);
    if same_origin {
        job.identity = original.identity.clone();
        job.sni = original.sni.clone();
    } else {
        drop_credentials(&mut job.headers);
        let (host, port) = host_port(&to);
        let rules = original
            .http_options
            .host_identities
            .iter()
            .map(|(pattern, identity)| (pattern, identity));
        job.identity =
            HostPattern::most_specific(rules, &host, port).map(|(_, identity)| identity.clone());
        job.sni = None;
    }
    job.url = to;
    Ok(job)
}

/// Removes every header that carries a credential: the values the job marked sensitive (see
/// `is_secret_header`), and any other header of a secret name, whatever its value's flag.
fn drop_credentials(headers: &mut HeaderMap) {
    let secret: Vec<header::HeaderName> = headers
        .iter()
        .filter(|(name, value)| value.is_sensitive() || crate::job::is_secret_header(name))
        .map(|(name, _)| name.clone())
        .collect();
    for name in secret {
        headers.remove(name);
    }
}

fn same_authority(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme() && host_port(a) == host_port(b)
}

fn host_port(url: &Url) -> (String, u16) {
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    (host, url.port_or_known_default().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(method: &str, url: &str) -> Job {
        Job::builder(method, url)
            .header("Authorization", "Bearer x")
            .header("Cookie", "a=b")
            .header("X-Api-Key", "k")
            .header("Api-Key", "k")
            .header("X-Auth-Token", "t")
            .header("Proxy-Authorization", "Basic eA==")
            .header("X-Trace", "t-1")
            .body("data")
            .build()
            .expect("job")
    }

    #[test]
    fn get_and_head_follow_by_default_and_post_does_not() {
        assert!(follows(&job("GET", "https://a.test/")));
        assert!(follows(&job("HEAD", "https://a.test/")));
        assert!(!follows(&job("POST", "https://a.test/")));
        let forced = Job::builder("POST", "https://a.test/")
            .follow_redirects(true)
            .build()
            .expect("job");
        assert!(follows(&forced));
    }

    #[test]
    fn see_other_becomes_get_and_credentials_stay_home() {
        let original = job("POST", "https://a.test/x");
        let to = Url::parse("https://b.test/y").expect("url");
        let next = next(&original, &original, StatusCode::SEE_OTHER, to, 0, &[]).expect("hop");
        assert_eq!(next.method, Method::GET);
        assert!(next.body.is_empty());
        assert!(!next.headers.contains_key(header::AUTHORIZATION));
        assert!(!next.headers.contains_key(header::COOKIE));
        assert!(!next.headers.contains_key("x-api-key"));
        assert!(!next.headers.contains_key("api-key"));
        assert!(!next.headers.contains_key("x-auth-token"));
        assert!(!next.headers.contains_key(header::PROXY_AUTHORIZATION));
        assert_eq!(next.headers["x-trace"], "t-1", "other headers go on");
        let to = Url::parse("https://a.test/z").expect("url");
        let same = super::next(
            &original,
            &original,
            StatusCode::TEMPORARY_REDIRECT,
            to,
            0,
            &[],
        )
        .expect("hop");
        assert_eq!(same.method, Method::POST);
        assert_eq!(&same.body[..], b"data");
        assert!(same.headers.contains_key(header::AUTHORIZATION));
        assert!(same.headers.contains_key("x-api-key"));
    }

    fn store(name: &str) -> IdentitySource {
        IdentitySource::Keystore {
            source: crate::job::Source::Path(name.into()),
            password: None,
            key_password: None,
            alias: None,
        }
    }

    fn chosen(job: &Job) -> Option<String> {
        match &job.identity {
            Some(IdentitySource::Keystore {
                source: crate::job::Source::Path(path),
                ..
            }) => Some(path.display().to_string()),
            _ => None,
        }
    }

    #[test]
    fn hops_to_other_hosts_get_the_most_specific_rule_or_nothing() {
        let pattern = |text: &str| HostPattern::parse(text).expect("pattern");
        let original = Job::builder("GET", "https://a.test/x")
            .identity(store("own"))
            .identity_for_hosts(pattern("*.example.test"), store("wide"))
            .identity_for_hosts(pattern("*.eu.example.test"), store("narrow"))
            .identity_for("API.eu.example.test", 8443, store("exact"))
            .build()
            .expect("job");
        let hop = |to: &str| {
            let to = Url::parse(to).expect("url");
            next(&original, &original, StatusCode::FOUND, to, 0, &[]).expect("hop")
        };
        let cases = [
            ("https://a.test/back", Some("own")),
            ("https://a.test:8443/", None),
            ("http://a.test/", None),
            ("https://x.example.test/", Some("wide")),
            ("https://x.eu.example.test/", Some("narrow")),
            ("https://api.eu.example.test:8443/", Some("exact")),
            ("https://api.eu.example.test/", Some("narrow")),
            ("https://example.test/", None),
            ("https://other.test/", None),
        ];
        for (to, expected) in cases {
            assert_eq!(chosen(&hop(to)).as_deref(), expected, "{to}");
        }
        let debug = format!("{original:?}");
        assert!(debug.contains("*.eu.example.test"), "{debug}");
    }

    #[test]
    fn the_limit_and_loops_end_the_job() {
        let original = job("GET", "https://a.test/x");
        let to = Url::parse("https://a.test/x").expect("url");
        let error =
            next(&original, &original, StatusCode::FOUND, to.clone(), 10, &[]).expect_err("limit");
        assert_eq!(error.kind(), "redirect.limit");
        let seen = [(Method::GET, to.clone())];
        let error = next(&original, &original, StatusCode::FOUND, to, 1, &seen).expect_err("loop");
        assert_eq!(error.kind(), "redirect.limit");
    }
}
