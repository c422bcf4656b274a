//! Response decoding: gzip, deflate and br, only when the engine itself asked for them.
//!
//! When a job sets no `Accept-Encoding`, the engine sends [`ACCEPTED`] and decodes what comes
//! back; the outcome's `size` stays the number of bytes received. When the job sets its own
//! `Accept-Encoding`, the body is passed through untouched. The decoded size is capped (by
//! default at the body limit): a decompression bomb ends in `body.too_large`.

use std::io::Read;

use bytes::Bytes;

use crate::error::Error;
use crate::job::JobBuilder;

/// The `Accept-Encoding` the engine sends when the job sets none.
pub(crate) const ACCEPTED: &str = "gzip, deflate, br";

impl JobBuilder {
    /// The largest decoded response body (default: the body limit at build time,
    /// [`crate::DEFAULT_BODY_LIMIT`]); more ends in `body.too_large`.
    pub fn decoded_limit(mut self, bytes: u64) -> Self {
        self.http_options.decoded_limit = bytes;
        self
    }
}

/// The body decoded according to `Content-Encoding`; `None` when it was not encoded (or in
/// an encoding we do not know, which is then passed through).
pub(crate) fn decode(encoding: &str, body: &Bytes, limit: u64) -> Result<Option<Bytes>, Error> {
    let encoding = encoding.trim().to_ascii_lowercase();
    let reader: Box<dyn Read + '_> = match encoding.as_str() {
        "gzip" | "x-gzip" => Box::new(flate2::read::MultiGzDecoder::new(&body[..])),
        "deflate" => {
            // RFC 9110 says zlib-wrapped; some servers send raw deflate.
            if looks_like_zlib(body) {
                Box::new(flate2::read::ZlibDecoder::new(&body[..]))
            } else {
                Box::new(flate2::read::DeflateDecoder::new(&body[..]))
            }
        }
        "br" => Box::new(brotli_decompressor::Decompressor::new(&body[..], 8192)),
        _ => return Ok(None),
    };
    let mut out = Vec::new();
    let read = reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|error| Error::BodyDecode {
            encoding: encoding.clone(),
            detail: error.to_string(),
        })?;
    if read as u64 > limit {
        return Err(Error::BodyTooLarge { limit });
    }
    Ok(Some(Bytes::from(out)))
}

fn looks_like_zlib(body: &[u8]) -> bool {
    match body {
        [cmf, flg, ..] => cmf & 0x0f == 8 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn gzip_and_deflate_decode_and_a_bomb_stops_at_the_limit() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![b'a'; 100_000]).expect("write");
        let gz = Bytes::from(gz.finish().expect("finish"));
        let decoded = decode("gzip", &gz, 1 << 20).expect("ok").expect("decoded");
        assert_eq!(decoded.len(), 100_000);
        let error = decode("gzip", &gz, 1000).expect_err("bomb");
        assert_eq!(error.kind(), "body.too_large");
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        zlib.write_all(b"hello").expect("write");
        let zlib = Bytes::from(zlib.finish().expect("finish"));
        let decoded = decode("deflate", &zlib, 100).expect("ok").expect("decoded");
        assert_eq!(&decoded[..], b"hello");
        assert!(decode("identity", &zlib, 100).expect("ok").is_none());
        let error = decode("gzip", &Bytes::from_static(b"not gzip"), 100).expect_err("bad");
        assert_eq!(error.kind(), "body.decode");
    }
}
