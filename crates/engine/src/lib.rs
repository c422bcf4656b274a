//! `engine` performs one HTTP(S) job and returns exactly one [`Outcome`]: the response with
//! phase timings and TLS facts, or a typed [`Error`] with a stable kind and a hint built from
//! what the handshake revealed.
//!
//! It is not a general HTTP client: by default every job uses a fresh connection (full
//! handshake, complete metrics). A job may follow redirects (GET and HEAD by default;
//! credentials only for the URL's own host, a client certificate for it and for the hosts the
//! job's [`HostPattern`] rules select), go through an HTTP proxy or a CONNECT tunnel chosen by
//! the reference system's selector rules, send URL-encoded or multipart forms, and — with
//! `keep_alive` — reuse a connection made with exactly the same identity, trust and proxy.
//! Response bodies are decoded (gzip, deflate, br) when the engine itself asked for an
//! encoding. It reads keystore and trust-store files named by a job (through the `keystore`
//! crate) and caches what it parsed, keyed by file identity, so a replaced file is read again by
//! the next job (a file's identity is looked up at most once a millisecond).
//!
//! # Brief overview
//!
//! - [`Job`] is built with a [`JobBuilder`] (the agent parses its job schema into one) and checked
//!   before it runs: a bad URL or a header with CR/LF never reaches the network.
//! - [`Engine::run`] resolves, connects, handshakes (rustls with the aws-lc-rs provider) and
//!   speaks HTTP/1.1 or HTTP/2 (hyper, chosen by ALPN), timing each phase with a monotonic clock.
//! - [`Outcome`] serializes to the result schema (camelCase JSON). Passwords, key bytes and
//!   `Authorization`/`Cookie` values never appear in it, nor in any `Debug` output.
//!
//! ```no_run
//! use engine::{Engine, Job};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::new();
//! let job = Job::builder("GET", "https://localhost:8443/").build()?;
//! let outcome = engine.run(job).await;
//! println!("{}", serde_json::to_string_pretty(&outcome)?);
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

mod classify;
mod connect;
mod decode;
mod dial;
mod egress;
mod error;
mod exchange;
mod form;
mod hint;
mod host_pattern;
mod job;
mod material;
mod options;
mod outcome;
mod pool;
mod proxy;
mod redirect;
mod report;
mod run;
mod timing;
pub mod tls;

pub use egress::{Decision, EgressPolicy, EgressRule, EgressRuleError};
pub use error::{Error, HandshakeFacts, JobError, Material};
pub use exchange::{Body, Headers};
pub use form::{EncodedBody, Part, multipart, urlencoded};
pub use host_pattern::{HostPattern, PatternError, Specificity};
pub use job::{
    DEFAULT_BODY_LIMIT, DEFAULT_HEADER_LIMIT, DEFAULT_MAX_REDIRECTS, HttpVersion, IdentitySource,
    Job, JobBuilder, MAX_HEADER_COUNT, MAX_KEEP_ALIVE_IDLE, MAX_REDIRECTS_LIMIT, MAX_TIMEOUT,
    Source, TlsVersion, TrustMode, TrustSource, is_secret_header_name, parse_resolve,
    seconds_to_duration,
};
pub use outcome::{
    ClientCertificate, ErrorInfo, Metrics, Outcome, RequestInfo, Response, ServerCertificate,
    TlsInfo, redact_url,
};
pub use proxy::{Proxy, ProxyRules};
pub use redirect::Redirect;
pub use run::Engine;
