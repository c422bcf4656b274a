//! Request bodies that browsers and the reference system send: URL-encoded forms and
//! `multipart/form-data` with files (RFC 7578). Pure functions: fields in, bytes and the
//! matching `Content-Type` out.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use bytes::Bytes;

/// One part of a multipart body: a field, or a file when it has a file name.
#[derive(Clone, PartialEq, Eq)]
pub struct Part {
    /// The form field name.
    pub name: String,
    /// The content.
    pub data: Bytes,
    /// The file name, which makes the part a file upload.
    pub filename: Option<String>,
    /// The part's media type (files default to `application/octet-stream`).
    pub content_type: Option<String>,
}

/// An encoded body and the `Content-Type` that describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBody {
    /// The body bytes.
    pub data: Bytes,
    /// The value for the `Content-Type` header.
    pub content_type: String,
}

impl crate::job::JobBuilder {
    /// The body is this URL-encoded form (and `Content-Type` says so unless a header sets it).
    pub fn form<'a>(mut self, fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        self.form = Some(urlencoded(fields));
        self
    }

    /// The body is `multipart/form-data` with these parts (fields, and files with a file
    /// name and content type); `Content-Type` carries the boundary.
    pub fn multipart(mut self, parts: &[Part]) -> Self {
        self.form = Some(multipart(parts));
        self
    }
}

/// `application/x-www-form-urlencoded`, fields in the given order.
pub fn urlencoded<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> EncodedBody {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in fields {
        serializer.append_pair(name, value);
    }
    EncodedBody {
        data: Bytes::from(serializer.finish()),
        content_type: "application/x-www-form-urlencoded".into(),
    }
}

/// `multipart/form-data` with a boundary that occurs in no part.
pub fn multipart(parts: &[Part]) -> EncodedBody {
    let boundary = boundary_for(parts);
    let size: usize = parts
        .iter()
        .map(|p| p.data.len() + p.name.len() + 160)
        .sum();
    let mut out = Vec::with_capacity(size + boundary.len() + 8);
    for part in parts {
        out.extend_from_slice(b"--");
        out.extend_from_slice(boundary.as_bytes());
        out.extend_from_slice(b"\r\nContent-Disposition: form-data; name=\"");
        out.extend_from_slice(quote(&part.name).as_bytes());
        out.push(b'"');
        if let Some(filename) = &part.filename {
            out.extend_from_slice(b"; filename=\"");
            out.extend_from_slice(quote(filename).as_bytes());
            out.push(b'"');
        }
        out.extend_from_slice(b"\r\n");
        let content_type = part
            .content_type
            .as_deref()
            .or(part.filename.as_ref().map(|_| "application/octet-stream"));
        if let Some(content_type) = content_type {
            out.extend_from_slice(b"Content-Type: ");
            out.extend_from_slice(strip_line_breaks(content_type).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&part.data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"--\r\n");
    EncodedBody {
        data: Bytes::from(out),
        content_type: format!("multipart/form-data; boundary={boundary}"),
    }
}

/// A random boundary, drawn again in the (astronomically unlikely) case a part contains it.
fn boundary_for(parts: &[Part]) -> String {
    let state = RandomState::new();
    let mut counter = 0u64;
    loop {
        let mut hasher = state.build_hasher();
        hasher.write_u64(counter);
        let mut second = state.build_hasher();
        second.write_u64(counter ^ u64::MAX);
        let boundary = format!(
            "downloader-{:016x}{:016x}",
            hasher.finish(),
            second.finish()
        );
        let clash = parts.iter().any(|part| {
            part.data
                .windows(boundary.len())
                .any(|window| window == boundary.as_bytes())
        });
        if !clash {
            return boundary;
        }
        counter += 1;
    }
}

/// RFC 7578 §4.2: quotes and line breaks in names are percent-encoded, as browsers do.
fn quote(text: &str) -> String {
    text.replace('"', "%22")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn strip_line_breaks(text: &str) -> String {
    text.chars().filter(|c| *c != '\r' && *c != '\n').collect()
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Part")
            .field("name", &self.name)
            .field("bytes", &self.data.len())
            .field("filename", &self.filename)
            .field("content_type", &self.content_type)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlencodes_like_a_browser() {
        let body = urlencoded([("q", "a b&c"), ("é", "=")]);
        assert_eq!(&body.data[..], b"q=a+b%26c&%C3%A9=%3D");
        assert_eq!(body.content_type, "application/x-www-form-urlencoded");
    }

    #[test]
    fn multipart_is_byte_exact_around_a_boundary() {
        let parts = [
            Part {
                name: "field".into(),
                data: Bytes::from_static(b"value"),
                filename: None,
                content_type: None,
            },
            Part {
                name: "up\"load".into(),
                data: Bytes::from_static(&[0, 159, 146, 150, b'\r', b'\n']),
                filename: Some("a.bin".into()),
                content_type: None,
            },
        ];
        let body = multipart(&parts);
        let boundary = body
            .content_type
            .strip_prefix("multipart/form-data; boundary=")
            .expect("boundary");
        let mut expected = Vec::new();
        expected.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"field\"\r\n\r\nvalue\r\n"
            )
            .as_bytes(),
        );
        expected.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"up%22load\"; filename=\"a.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
        expected.extend_from_slice(&[0, 159, 146, 150, b'\r', b'\n']);
        expected.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        assert_eq!(&body.data[..], &expected[..]);
    }

    #[test]
    fn boundaries_differ_between_bodies() {
        assert_ne!(multipart(&[]).content_type, multipart(&[]).content_type);
    }
}
