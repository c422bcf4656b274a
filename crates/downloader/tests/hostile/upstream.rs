//! A plain-HTTP upstream on a free 127.0.0.1 port (hyper, HTTP/1.1). It records every
//! request it gets (path with query, headers, body length: bodies are counted, never kept);
//! `/redirect?to=URL` answers 302 to URL, `/big` answers 20 MB, everything else `ok`.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The size of `/big`.
pub(crate) const BIG: usize = 20 * 1000 * 1000;

/// One request the upstream saw.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    /// Path and query.
    pub(crate) target: String,
    /// Headers, names in lower case.
    pub(crate) headers: Vec<(String, String)>,
    /// Bytes of body received.
    pub(crate) body_len: usize,
}

/// A running upstream; stops when dropped.
#[derive(Debug)]
pub(crate) struct Upstream {
    /// Its port on 127.0.0.1.
    pub(crate) port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Upstream {
    /// Starts one.
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let big = Bytes::from(vec![b'a'; BIG]);
        let record = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (record, big) = (record.clone(), big.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        handle(request, record.clone(), big.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Self { port, seen, task }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The requests seen whose target starts with `prefix`.
    pub(crate) fn seen(&self, prefix: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|seen| seen.target.starts_with(prefix))
            .cloned()
            .collect()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    request: Request<Incoming>,
    record: Arc<Mutex<Vec<Seen>>>,
    big: Bytes,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let target = request
        .uri()
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |target| target.as_str().to_owned());
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = request.into_body();
    let mut body_len = 0;
    while let Some(Ok(frame)) = body.frame().await {
        body_len += frame.data_ref().map_or(0, Bytes::len);
    }
    record
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Seen {
            target: target.clone(),
            headers,
            body_len,
        });
    if let Some(query) = target.strip_prefix("/redirect?to=") {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::FOUND;
        if let Ok(location) = hyper::header::HeaderValue::from_str(query) {
            response
                .headers_mut()
                .insert(hyper::header::LOCATION, location);
        }
        return Ok(response);
    }
    if target == "/big" {
        return Ok(Response::new(Full::new(big)));
    }
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}
