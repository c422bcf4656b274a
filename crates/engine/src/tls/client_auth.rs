//! A client-certificate resolver that records the server's CertificateRequest.

use std::sync::Arc;

use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;

use crate::tls::{Recorder, name_text};

/// Answers a CertificateRequest with the job's identity (if any), recording that the server
/// asked, which CA names it sent, and whether we presented our certificate.
#[derive(Debug)]
pub(crate) struct RecordingResolver {
    identity: Option<Arc<CertifiedKey>>,
    recorder: Recorder,
}

impl RecordingResolver {
    pub(crate) fn new(identity: Option<Arc<CertifiedKey>>, recorder: Recorder) -> Self {
        Self { identity, recorder }
    }
}

impl ResolvesClientCert for RecordingResolver {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let issuers = root_hint_subjects
            .iter()
            .map(|der| name_text(der))
            .collect();
        // rustls sends our certificate only when the key can sign with a scheme the server
        // offers; record what will really happen.
        let usable = self
            .identity
            .as_ref()
            .filter(|key| key.key.choose_scheme(sigschemes).is_some())
            .cloned();
        let presented = usable.is_some();
        self.recorder.update(|observed| {
            observed.requested = true;
            observed.acceptable_issuers = issuers;
            observed.presented = presented;
        });
        usable
    }

    fn has_certs(&self) -> bool {
        self.identity.is_some()
    }
}
