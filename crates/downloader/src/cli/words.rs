//! How the command line names the settings a remedy asks for: its own flags.

use keystore::remedy::{Plain, Setting, Vocabulary};

/// `downloader fetch`'s flags.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FetchWords;

impl Vocabulary for FetchWords {
    fn name(&self, setting: Setting) -> &'static str {
        match setting {
            Setting::StorePassword => "the keystore password (--cert-password)",
            Setting::KeyPassword => "the key password (--key-password)",
            Setting::Alias => "--alias",
            Setting::KdfLimits => "the key-derivation limits (fetch keeps the defaults)",
            Setting::ClientCert => "a client certificate (--cert, with --key for a PEM pair)",
            Setting::TrustStore => "the trust store (--cacert)",
            Setting::TrustMode => "--trust",
            Setting::Insecure => "--insecure",
            Setting::Resolve => "--resolve HOST:PORT:ADDR",
            Setting::Sni => "--sni",
            Setting::TlsVersions => "--tls-min/--tls-max",
            Setting::HttpVersion => "--http1.1 or --http2",
            Setting::Timeout => "--timeout",
            Setting::ConnectTimeout => "--connect-timeout",
            Setting::BodyLimit => "the body limit (fetch keeps the default)",
            Setting::MaxRedirects => "--max-redirects",
            Setting::ProxyCredentials => "proxy credentials (--proxy-user)",
            Setting::EgressDeny => "--egress-deny",
            Setting::EgressAllow => "--egress-allow",
            _ => Plain.name(setting),
        }
    }
}

/// `downloader keystore`'s flags.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct KeystoreWords;

impl Vocabulary for KeystoreWords {
    fn name(&self, setting: Setting) -> &'static str {
        match setting {
            Setting::StorePassword => "the store password (--password)",
            Setting::KeyPassword => "the key password (--key-password)",
            Setting::Alias => "--alias",
            _ => Plain.name(setting),
        }
    }
}
