//! Putting loose certificates in chain order, leaf first, by issuer and subject names.

use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Raw DER subject and issuer names of a certificate.
pub(crate) fn names(cert: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let (_, parsed) = X509Certificate::from_der(cert).ok()?;
    Some((
        parsed.subject().as_raw().to_vec(),
        parsed.issuer().as_raw().to_vec(),
    ))
}

/// Orders certificates from `pool` after `leaf`, each issuing the one before, stopping at a
/// self-issued certificate or when no issuer is found. Returns the chain and the indexes of the
/// pool certificates it used.
pub(crate) fn build(
    leaf: &CertificateDer<'static>,
    pool: &[CertificateDer<'static>],
) -> (Vec<CertificateDer<'static>>, Vec<usize>) {
    let pool_names: Vec<_> = pool.iter().map(|cert| names(cert)).collect();
    let mut chain = vec![leaf.clone()];
    let mut used = Vec::new();
    let Some((mut subject, mut issuer)) = names(leaf) else {
        return (chain, used);
    };
    while subject != issuer && chain.len() <= pool.len() {
        let next = pool_names.iter().enumerate().find(|(index, candidate)| {
            !used.contains(index)
                && pool[*index] != *leaf
                && candidate.as_ref().is_some_and(|(s, _)| *s == issuer)
        });
        let Some((index, Some((next_subject, next_issuer)))) = next else {
            break;
        };
        used.push(index);
        chain.push(pool[index].clone());
        subject = next_subject.clone();
        issuer = next_issuer.clone();
    }
    (chain, used)
}
