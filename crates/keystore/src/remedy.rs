//! Remedies name settings, not flags: a hint from this crate or the engine says *what* to change
//! ([`Setting`]), and each surface says it in its own words ([`Vocabulary`]): `fetch` names its
//! flags, the job API its config fields, the agent's logs its environment settings.

/// A setting a hint asks the user to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Setting {
    /// The keystore's (store) password.
    StorePassword,
    /// The private key's own password.
    KeyPassword,
    /// Which private-key entry of a keystore to use.
    Alias,
    /// The caps on key-derivation work of the stores the process opens.
    KdfLimits,
    /// A client certificate (identity) for the request.
    ClientCert,
    /// CAs to trust for the server's certificate.
    TrustStore,
    /// Which roots are used (system, custom, both).
    TrustMode,
    /// Skipping server verification.
    Insecure,
    /// Pinning a host to an address.
    Resolve,
    /// The TLS server name sent and verified.
    Sni,
    /// The lowest and highest TLS versions.
    TlsVersions,
    /// Forcing HTTP/1.1 or HTTP/2.
    HttpVersion,
    /// The whole request's time limit.
    Timeout,
    /// The TCP connect and TLS handshake limit.
    ConnectTimeout,
    /// The largest response body kept.
    BodyLimit,
    /// The largest response head accepted.
    HeaderLimit,
    /// How many redirects are followed.
    MaxRedirects,
    /// Credentials for the proxy.
    ProxyCredentials,
    /// The egress deny list.
    EgressDeny,
    /// The egress allow list.
    EgressAllow,
}

/// How a surface names [`Setting`]s in its hints.
pub trait Vocabulary {
    /// The words for `setting`, as they fit after "set"/"raise"/"give" in a sentence.
    fn name(&self, setting: Setting) -> &'static str;
}

/// Words that name no surface: for library callers and `Display`-only uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct Plain;

impl Vocabulary for Plain {
    fn name(&self, setting: Setting) -> &'static str {
        match setting {
            Setting::StorePassword => "the keystore password",
            Setting::KeyPassword => "the key password",
            Setting::Alias => "the key alias",
            Setting::KdfLimits => "the key-derivation limits",
            Setting::ClientCert => "a client certificate",
            Setting::TrustStore => "the trust store",
            Setting::TrustMode => "the trust mode",
            Setting::Insecure => "skipping verification",
            Setting::Resolve => "an address pin",
            Setting::Sni => "the TLS server name",
            Setting::TlsVersions => "the TLS version range",
            Setting::HttpVersion => "the HTTP version",
            Setting::Timeout => "the time limit",
            Setting::ConnectTimeout => "the connect limit",
            Setting::BodyLimit => "the body limit",
            Setting::HeaderLimit => "the response header limit",
            Setting::MaxRedirects => "the redirect limit",
            Setting::ProxyCredentials => "proxy credentials",
            Setting::EgressDeny => "the egress deny list",
            Setting::EgressAllow => "the egress allow list",
        }
    }
}
