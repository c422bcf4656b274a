//! The three network phases before HTTP: name resolution, TCP connect, TLS handshake.
//!
//! Each is a separate step so that the caller can time it and give it its own limit.

mod dns;
mod tcp;
mod tls;

pub(crate) use dns::lookup;
pub(crate) use tcp::connect;
pub(crate) use tls::handshake;
