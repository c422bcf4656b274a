//! TLS configuration per job, and the hooks that record what the handshake revealed.
//!
//! Every job gets its own `rustls::ClientConfig` (cheap: the parsed identity and the verifier's
//! root store are cached) whose verifier and client-certificate resolver write into one
//! [`Recorder`], so the server chain, the CertificateRequest and the certificate we presented
//! are known even when the handshake fails.

mod client_auth;
pub mod danger;
mod verify;

use std::sync::{Arc, Mutex};

use rustls::ClientConfig;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::CertificateDer;

pub(crate) use client_auth::RecordingResolver;
pub(crate) use verify::RecordingVerifier;

use crate::job::{HttpVersion, TlsVersion};
use crate::material::LoadedIdentity;

/// What one handshake revealed, written by the verifier and the resolver.
#[derive(Debug, Default, Clone)]
pub(crate) struct Observed {
    /// The chain the server presented, leaf first.
    pub(crate) server_chain: Vec<CertificateDer<'static>>,
    /// Whether the chain passed verification (false in insecure mode).
    pub(crate) verified: bool,
    /// Whether the server sent a CertificateRequest.
    pub(crate) requested: bool,
    /// The CA names in the CertificateRequest, as text.
    pub(crate) acceptable_issuers: Vec<String>,
    /// Whether we answered with our certificate.
    pub(crate) presented: bool,
    /// `server_chain` parsed, once per connection (kept with a pooled connection).
    pub(crate) chain_info: Option<Arc<Vec<keystore::CertificateInfo>>>,
}

impl Observed {
    /// The server chain parsed; parsed now unless it was already.
    pub(crate) fn chain_info(&self) -> Arc<Vec<keystore::CertificateInfo>> {
        self.chain_info.clone().unwrap_or_else(|| {
            Arc::new(
                self.server_chain
                    .iter()
                    .filter_map(|der| keystore::CertificateInfo::from_der(der).ok())
                    .collect(),
            )
        })
    }
}

/// Shared slot for [`Observed`], one per job.
#[derive(Debug, Clone, Default)]
pub(crate) struct Recorder(Arc<Mutex<Observed>>);

impl Recorder {
    pub(crate) fn update(&self, change: impl FnOnce(&mut Observed)) {
        if let Ok(mut observed) = self.0.lock() {
            change(&mut observed);
        }
    }

    pub(crate) fn snapshot(&self) -> Observed {
        self.0
            .lock()
            .map(|observed| observed.clone())
            .unwrap_or_default()
    }
}

/// Everything a job's TLS configuration is made of.
#[derive(Debug)]
pub(crate) struct Settings<'a> {
    pub(crate) provider: &'a Arc<CryptoProvider>,
    pub(crate) verifier: Arc<dyn ServerCertVerifier>,
    /// False in insecure mode.
    pub(crate) verifies: bool,
    pub(crate) identity: Option<&'a LoadedIdentity>,
    pub(crate) min: TlsVersion,
    pub(crate) max: TlsVersion,
    pub(crate) http: HttpVersion,
}

/// Builds the job's client configuration; `recorder` receives what the handshake reveals.
pub(crate) fn client_config(
    settings: Settings<'_>,
    recorder: &Recorder,
) -> Result<ClientConfig, rustls::Error> {
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
        (TlsVersion::Tls13, &rustls::version::TLS13),
        (TlsVersion::Tls12, &rustls::version::TLS12),
    ]
    .into_iter()
    .filter(|(version, _)| (settings.min..=settings.max).contains(version))
    .map(|(_, supported)| supported)
    .collect();
    let verifier = RecordingVerifier::new(settings.verifier, settings.verifies, recorder.clone());
    let resolver = RecordingResolver::new(
        settings
            .identity
            .map(|loaded| loaded.identity.certified_key()),
        recorder.clone(),
    );
    // `dangerous()` is how rustls accepts any custom verifier; ours wraps WebPki (or, in
    // insecure mode, `danger::NoVerification`) only to record the chain it sees.
    let mut config = ClientConfig::builder_with_provider(settings.provider.clone())
        .with_protocol_versions(&versions)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = match settings.http {
        HttpVersion::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        HttpVersion::Http1 => vec![b"http/1.1".to_vec()],
        HttpVersion::Http2 => vec![b"h2".to_vec()],
    };
    // Every job measures a full handshake.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// A DER distinguished name as text (`CN=x, O=y`), or hex when it does not parse.
pub(crate) fn name_text(der: &[u8]) -> String {
    use x509_parser::prelude::FromDer;
    match x509_parser::x509::X509Name::from_der(der) {
        Ok((_, name)) => name.to_string(),
        Err(_) => keystore::hex(der),
    }
}
