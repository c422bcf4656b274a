//! Credentials in a job: which headers hold secrets, and URL userinfo made into Basic
//! authorization.

use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue};
use url::Url;

/// Headers whose values are credentials (names in lower case, as [`HeaderName`] keeps them).
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "x-auth-token",
];

/// Whether a header named `name` (any case) holds a credential, for surfaces that show
/// headers given as text (command-line arguments).
pub fn is_secret_header_name(name: &str) -> bool {
    let name = name.trim();
    SECRET_HEADERS
        .iter()
        .any(|secret| secret.eq_ignore_ascii_case(name))
}

/// Headers whose values are credentials: never shown, never logged, and never sent to another
/// origin on a redirect (their values are marked sensitive, which is what redirects check).
pub(crate) fn is_secret_header(name: &HeaderName) -> bool {
    SECRET_HEADERS.contains(&name.as_str())
}

/// Percent-decodes URL userinfo exactly as RFC 3986 says: `%XX` is the byte XX, everything
/// else (`+` included) is itself, and a `%` not followed by two hex digits stays a `%`.
pub(crate) fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let hex = |offset: usize| {
            bytes
                .get(at + offset)
                .and_then(|byte| char::from(*byte).to_digit(16))
        };
        match (bytes[at], hex(1), hex(2)) {
            (b'%', Some(high), Some(low)) => {
                // Two hex digits are at most 0xff, so the cast keeps every bit.
                out.push((high * 16 + low) as u8);
                at += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                at += 1;
            }
        }
    }
    out
}

/// Moves credentials in the URL into a Basic `Authorization` header (unless the job has one)
/// and removes them from the URL so that it can be shown in results.
pub(super) fn userinfo_to_authorization(url: &mut Url, headers: &mut HeaderMap) {
    if url.username().is_empty() && url.password().is_none() {
        return;
    }
    if !headers.contains_key(http::header::AUTHORIZATION) {
        // Userinfo is percent-decoded exactly (RFC 3986): `+` stays `+`.
        let mut credentials = percent_decode(url.username());
        credentials.push(b':');
        credentials.extend(url.password().map(percent_decode).unwrap_or_default());
        let token = base64::engine::general_purpose::STANDARD.encode(&credentials);
        if let Ok(mut value) = HeaderValue::from_str(&format!("Basic {token}")) {
            value.set_sensitive(true);
            headers.insert(http::header::AUTHORIZATION, value);
        }
    }
    let _ = url.set_username("");
    let _ = url.set_password(None);
}
