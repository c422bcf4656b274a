//! HTTP Basic `apikey:secret`, compared in constant time over SHA-256 digests (so lengths do not
//! leak either).

use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{ApiError, ApiKind};
use crate::config::Credentials;

/// SHA-256 of the apikey and of the secret.
pub(crate) struct AuthDigest {
    apikey: [u8; 32],
    secret: [u8; 32],
}

impl AuthDigest {
    /// The digests of `credentials`.
    pub(crate) fn new(credentials: &Credentials) -> Self {
        Self {
            apikey: Sha256::digest(credentials.apikey.as_bytes()).into(),
            secret: Sha256::digest(credentials.secret.expose().as_bytes()).into(),
        }
    }

    /// `Ok` when `headers` carry the right credentials, else 401 `api.unauthorized`.
    pub(crate) fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if self.accepts(headers) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                ApiKind::Unauthorized,
                "missing or wrong credentials: use HTTP Basic auth with the apikey and secret",
            ))
        }
    }

    /// Whether `headers` carry the right credentials.
    pub(crate) fn accepts(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
        else {
            return false;
        };
        let Some((scheme, token)) = value.trim().split_once(' ') else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case("basic") {
            return false;
        }
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(token.trim()) else {
            return false;
        };
        let Some(split) = decoded.iter().position(|b| *b == b':') else {
            return false;
        };
        let apikey: [u8; 32] = Sha256::digest(&decoded[..split]).into();
        let secret: [u8; 32] = Sha256::digest(&decoded[split + 1..]).into();
        bool::from(apikey.ct_eq(&self.apikey) & secret.ct_eq(&self.secret))
    }
}

impl std::fmt::Debug for AuthDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthDigest(***)")
    }
}
