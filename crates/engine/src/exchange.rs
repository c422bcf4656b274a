//! One HTTP/1.1 or HTTP/2 exchange over an established connection (hyper's `client::conn`).

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Request, header};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Incoming};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Serialize, Serializer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;

use crate::job::Job;
use crate::proxy::Proxy;

/// The sending half of a connection, and its driver task.
pub(crate) struct Connection {
    sender: Sender,
    driver: JoinHandle<()>,
}

enum Sender {
    Http1(http1::SendRequest<Full<Bytes>>),
    Http2(http2::SendRequest<Full<Bytes>>),
}

/// A body as received; serialized as text when it is UTF-8, else as base64.
#[derive(Clone, Default)]
pub struct Body {
    bytes: Bytes,
    utf8: bool,
}

/// What reading the body produced.
#[derive(Debug)]
pub(crate) struct ReadBody {
    pub(crate) body: Body,
    pub(crate) truncated: bool,
    /// Bytes received (before decoding).
    pub(crate) size: u64,
    /// The encoding that was decoded, if any.
    pub(crate) decoded: Option<String>,
}

impl Connection {
    /// Starts HTTP on `io`; the connection is driven by a spawned task.
    pub(crate) async fn start<T>(
        io: T,
        http2: bool,
        header_limit: usize,
    ) -> Result<Self, hyper::Error>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(io);
        if http2 {
            let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                .max_header_list_size(u32::try_from(header_limit).unwrap_or(u32::MAX))
                .handshake(io)
                .await?;
            let driver = tokio::spawn(async move {
                let _ = connection.await;
            });
            Ok(Self {
                sender: Sender::Http2(sender),
                driver,
            })
        } else {
            // hyper refuses read buffers under 8 KiB.
            let (sender, connection) = http1::Builder::new()
                .max_header_size(header_limit)
                .max_buf_size(header_limit.max(8192).saturating_add(8192))
                .handshake(io)
                .await?;
            let driver = tokio::spawn(async move {
                let _ = connection.await;
            });
            Ok(Self {
                sender: Sender::Http1(sender),
                driver,
            })
        }
    }

    /// Sends the request and waits for the response head.
    pub(crate) async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<http::Response<Incoming>, hyper::Error> {
        match &mut self.sender {
            Sender::Http1(sender) => {
                sender.ready().await?;
                sender.send_request(request).await
            }
            Sender::Http2(sender) => {
                sender.ready().await?;
                sender.send_request(request).await
            }
        }
    }

    /// Whether the connection can still carry a request.
    pub(crate) fn is_open(&self) -> bool {
        !self.driver.is_finished()
            && match &self.sender {
                Sender::Http1(sender) => !sender.is_closed(),
                Sender::Http2(sender) => !sender.is_closed(),
            }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Each job owns its connection: nothing may outlive the job.
        self.driver.abort();
    }
}

/// The request for `job`: origin-form URI and `Host` for HTTP/1.1, absolute URI for HTTP/2
/// and for an HTTP proxy (which also gets the proxy's credentials).
pub(crate) fn request(
    job: &Job,
    http2: bool,
    proxy: Option<&Proxy>,
) -> Result<Request<Full<Bytes>>, http::Error> {
    let url = &job.url;
    let uri = if http2 || proxy.is_some() {
        url.as_str().to_owned()
    } else {
        let mut target = url.path().to_owned();
        if let Some(query) = url.query() {
            target.push('?');
            target.push_str(query);
        }
        target
    };
    let mut request = Request::builder()
        .method(job.method.clone())
        .uri(uri)
        .body(Full::new(job.body.clone()))?;
    let headers = request.headers_mut();
    *headers = job.headers.clone();
    if let Some(value) = proxy.and_then(Proxy::authorization) {
        headers.insert(header::PROXY_AUTHORIZATION, value);
    }
    if !http2 && !headers.contains_key(header::HOST) {
        let host = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => String::new(),
        };
        if let Ok(value) = HeaderValue::from_str(&host) {
            headers.insert(header::HOST, value);
        }
    }
    Ok(request)
}

/// Reads the body, keeping at most `limit` bytes; stops reading once the limit is passed.
///
/// A body of one chunk is kept as hyper gave it (no copy). From the second chunk on, the chunks
/// are copied into one buffer as they arrive (sized from `Content-Length` when the server sent
/// one), so hyper's read buffers are released as the body is read and the body never sits in
/// memory twice: a batch of jobs at their body limits costs about the sum of those limits.
pub(crate) async fn read_body(body: &mut Incoming, limit: u64) -> Result<ReadBody, hyper::Error> {
    let expected = body.size_hint().exact().unwrap_or(0).min(limit);
    let mut kept = Kept::Nothing;
    let mut size: u64 = 0;
    let mut truncated = false;
    while let Some(frame) = body.frame().await {
        let Ok(mut data) = frame?.into_data() else {
            continue; // trailers
        };
        let room = limit.saturating_sub(size);
        if data.len() as u64 > room {
            data.truncate(usize::try_from(room).unwrap_or(usize::MAX));
            truncated = true;
        }
        size += data.len() as u64;
        kept.push(data, expected);
        if truncated {
            break;
        }
    }
    Ok(ReadBody {
        body: Body::new(kept.into_bytes()),
        truncated,
        size,
        decoded: None,
    })
}

/// The body read so far: nothing, hyper's first chunk as it is, or one buffer of copies.
enum Kept {
    Nothing,
    One(Bytes),
    Many(BytesMut),
}

impl Kept {
    fn push(&mut self, data: Bytes, expected: u64) {
        *self = match std::mem::replace(self, Self::Nothing) {
            Self::Nothing => Self::One(data),
            Self::One(first) => {
                let wanted = usize::try_from(expected).unwrap_or(0);
                let mut all = BytesMut::with_capacity(wanted.max(first.len() + data.len()));
                all.extend_from_slice(&first);
                all.extend_from_slice(&data);
                Self::Many(all)
            }
            Self::Many(mut all) => {
                all.extend_from_slice(&data);
                Self::Many(all)
            }
        };
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Self::Nothing => Bytes::new(),
            Self::One(bytes) => bytes,
            Self::Many(all) => all.freeze(),
        }
    }
}

/// Response headers as received (kept as hyper parsed them, not copied into strings).
/// Serialized as an object of lower-case name to the array of its values, names sorted.
#[derive(Clone, Default, PartialEq)]
pub struct Headers(http::HeaderMap);

impl Headers {
    pub(crate) fn new(map: http::HeaderMap) -> Self {
        Self(map)
    }

    /// The first value of `name` (any case), as text (invalid UTF-8 replaced).
    pub fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        self.0.get(name).map(|value| text(value))
    }

    /// Every value of `name` (any case), in the order received.
    pub fn get_all(&self, name: &str) -> Vec<Cow<'_, str>> {
        self.0.get_all(name).iter().map(text).collect()
    }

    /// Whether `name` (any case) is present.
    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// Each name, sorted, with its values in the order received.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Vec<Cow<'_, str>>)> {
        let mut names: Vec<&str> = self.0.keys().map(http::HeaderName::as_str).collect();
        names.sort_unstable();
        names.into_iter().map(|name| (name, self.get_all(name)))
    }

    /// The number of header lines.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The headers as `http` holds them.
    pub fn as_map(&self) -> &http::HeaderMap {
        &self.0
    }
}

fn text(value: &HeaderValue) -> Cow<'_, str> {
    String::from_utf8_lossy(value.as_bytes())
}

impl Serialize for Headers {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.keys_len()))?;
        for (name, values) in self.iter() {
            map.serialize_entry(name, &values)?;
        }
        map.end()
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// `HTTP/1.1`, `HTTP/2`, ...
pub(crate) fn version_text(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_11 => "HTTP/1.1",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/?",
    }
}

impl Body {
    pub(crate) fn new(bytes: Bytes) -> Self {
        let utf8 = std::str::from_utf8(&bytes).is_ok();
        Self { bytes, utf8 }
    }

    pub(crate) fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The body as text, when it is UTF-8.
    pub fn text(&self) -> Option<&str> {
        if self.utf8 {
            std::str::from_utf8(&self.bytes).ok()
        } else {
            None
        }
    }

    /// `utf8` or `base64`: how the body is serialized.
    pub fn encoding(&self) -> &'static str {
        if self.utf8 { "utf8" } else { "base64" }
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl Serialize for Body {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.text() {
            Some(text) => serializer.serialize_str(text),
            None => serializer
                .serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.bytes)),
        }
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Body({} bytes, {})", self.bytes.len(), self.encoding())
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let version = match self.sender {
            Sender::Http1(_) => "HTTP/1.1",
            Sender::Http2(_) => "HTTP/2",
        };
        f.debug_struct("Connection")
            .field("version", &version)
            .finish()
    }
}
