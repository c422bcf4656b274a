//! The request body: read up to a limit, and early answers (401, 413) that reach HTTP/2 and
//! HTTP/1.1 clients as responses.
//!
//! An answer sent before the request body is consumed is a protocol edge. In HTTP/2 hyper's
//! `h2` resets a stream whose body is dropped: with `CANCEL` while the response is still unsent
//! (curl: "Stream error in the HTTP/2 framing layer", the response lost), with `NO_ERROR` once
//! the response has ended, which RFC 9113 section 8.1 allows and clients accept. In HTTP/1.1 a
//! connection closed with unread request bytes makes the kernel send a TCP reset that can
//! destroy the response in flight. So an early answer first discards a bounded amount of the
//! body ([`Drain`]: little for a client that has not authenticated, whose request keeps its
//! connection busy meanwhile; more for an authenticated one over the size limit; nothing when
//! the client waits for `100 Continue`, which it then never gets), and whatever is left stays
//! held by the answer's body until that body has ended: h2 then resets with `NO_ERROR` after
//! the response.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::Instant;

/// How much of a request body an early answer discards at most, and how long it waits for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drain {
    /// The request has not passed authentication: 16 MiB within 1 s. The time is what keeps
    /// the request open; the bytes let curl's HTTP/2 upload of a 10 MB body end before the
    /// answer (curl reports the `NO_ERROR` reset of a stream it is still sending as a framing
    /// error, and 1 MiB was too little for that).
    Unauthenticated,
    /// The request passed authentication (413 over the size limit): 64 MiB within 5 s.
    Authenticated,
}

impl Drain {
    /// The most request bytes discarded.
    pub(crate) fn bytes(self) -> u64 {
        match self {
            Self::Unauthenticated => 16 * 1024 * 1024,
            Self::Authenticated => 64 * 1024 * 1024,
        }
    }

    /// The longest wait for the rest of the body.
    pub(crate) fn time(self) -> Duration {
        match self {
            Self::Unauthenticated => Duration::from_secs(1),
            Self::Authenticated => Duration::from_secs(5),
        }
    }
}

/// Why a body was not read.
#[derive(Debug)]
pub(crate) enum Unread {
    /// More than the limit; the rest of the body, for the early answer to hold.
    TooLarge(Body),
    /// The body broke off (the client reset or closed it).
    Broken(axum::Error),
}

/// Reads the whole body, failing once it is larger than `limit` (checked against
/// `Content-Length` first, so nothing is read then).
pub(crate) async fn read(
    headers: &HeaderMap,
    mut body: Body,
    limit: usize,
) -> Result<Bytes, Unread> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(Unread::TooLarge(body));
    }
    // A declared length chooses the first allocation, never more than 1 MiB of it.
    let first = declared.map_or(0, |length| length.min(1 << 20) as usize);
    let mut buffer = BytesMut::with_capacity(first);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(Unread::Broken)?;
        if let Ok(data) = frame.into_data() {
            if buffer.len().saturating_add(data.len()) > limit {
                return Err(Unread::TooLarge(body));
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok(buffer.freeze())
}

/// Discards up to `bound`'s bytes of `body` within its time; returns the body when it has not
/// ended (the answer must hold it), `None` when it has.
pub(crate) async fn drain(headers: &HeaderMap, mut body: Body, bound: Drain) -> Option<Body> {
    if body.is_end_stream() {
        return None;
    }
    let waits_for_continue = headers
        .get(header::EXPECT)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if waits_for_continue {
        return Some(body);
    }
    let deadline = Instant::now() + bound.time();
    let mut seen: u64 = 0;
    while seen < bound.bytes() {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(None) | Ok(Some(Err(_))) => return None,
            Ok(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    seen = seen.saturating_add(data.len() as u64);
                }
            }
            Err(_) => break,
        }
    }
    Some(body)
}

/// A response body that keeps the unread request body until the response body has ended.
#[derive(Debug)]
pub(crate) struct Answer {
    bytes: Full<Bytes>,
    _request: Option<Body>,
}

impl Answer {
    /// A body of `bytes`, holding `request` (if any) until they are sent.
    pub(crate) fn body(bytes: Vec<u8>, request: Option<Body>) -> Body {
        Body::new(Self {
            bytes: Full::new(Bytes::from(bytes)),
            _request: request,
        })
    }
}

impl HttpBody for Answer {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.bytes).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.bytes.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.bytes.size_hint()
    }
}
