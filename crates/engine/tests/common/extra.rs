//! More routes of the test server: redirects, encoded bodies, raw echo and header checks.
//!
//! `/redirect?code=C&to=URL`, `/loop`, `/chain?n=N`, `/headers` (which credentials and
//! client certificate arrived), `/raw` (the body byte for byte, the request `Content-Type` in
//! `x-content-type`), `/gzip`, `/deflate`, `/br`, `/bomb` (20 MB of zeros as gzip),
//! `/bighead` (a 100 KB header).

use std::io::Write;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::TestBody;

/// What a route answers once the request body is in.
pub(crate) enum Route {
    Ready(Response<TestBody>),
    Headers(String),
    Raw(String),
}

pub(crate) const PLAIN: &str = "hello encoded world\n";

pub(crate) fn route(
    request: &Request<Incoming>,
    subject: &str,
    port: u16,
    connection: usize,
) -> Option<Route> {
    let query = request.uri().query().unwrap_or("");
    let param = |name: &str| {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    };
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    let redirect = |code: u16, to: &str| {
        let mut response = Response::new(TestBody::Full(Bytes::from_static(b"moved")));
        *response.status_mut() = StatusCode::from_u16(code).expect("status");
        response
            .headers_mut()
            .insert("location", to.parse().expect("location"));
        Route::Ready(response)
    };
    let encoded = |encoding: &'static str, data: Vec<u8>| {
        let mut response = Response::new(TestBody::Full(Bytes::from(data)));
        response
            .headers_mut()
            .insert("content-encoding", encoding.parse().expect("value"));
        Route::Ready(response)
    };
    Some(match request.uri().path() {
        "/redirect" => redirect(
            param("code").and_then(|c| c.parse().ok()).unwrap_or(302),
            &param("to").unwrap_or_else(|| "/".into()),
        ),
        "/loop" => redirect(302, "/loop"),
        "/chain" => match param("n").and_then(|n| n.parse::<u32>().ok()) {
            Some(n) if n > 0 => redirect(302, &format!("/chain?n={}", n - 1)),
            _ => Route::Ready(Response::new(TestBody::Full(Bytes::from_static(b"end")))),
        },
        "/headers" => Route::Headers(format!(
            "port={port}\nsubject={subject}\nmethod={}\nauthorization={}\ncookie={}\n\
             accept-encoding={}\ncontent-type={}\nconnection={connection}\n",
            request.method(),
            header("authorization"),
            header("cookie"),
            header("accept-encoding"),
            header("content-type"),
        )),
        "/raw" => Route::Raw(header("content-type")),
        "/gzip" => encoded("gzip", gzip(PLAIN.repeat(100).as_bytes())),
        "/deflate" => {
            let mut encoder =
                flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            encoder
                .write_all(PLAIN.repeat(100).as_bytes())
                .expect("deflate");
            encoded("deflate", encoder.finish().expect("deflate"))
        }
        "/br" => {
            let mut out = Vec::new();
            let mut writer = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
            writer.write_all(PLAIN.repeat(100).as_bytes()).expect("br");
            drop(writer);
            encoded("br", out)
        }
        "/bomb" => encoded("gzip", gzip(&vec![0; 20 * 1024 * 1024])),
        "/bighead" => {
            let mut response = Response::new(TestBody::Full(Bytes::from_static(b"big")));
            response
                .headers_mut()
                .insert("x-big", "a".repeat(100_000).parse().expect("value"));
            Route::Ready(response)
        }
        _ => return None,
    })
}

pub(crate) fn finish(route: Route, body: Bytes) -> Response<TestBody> {
    match route {
        Route::Ready(response) => response,
        Route::Headers(text) => Response::new(TestBody::Full(Bytes::from(format!(
            "{text}body-length={}\n",
            body.len()
        )))),
        Route::Raw(content_type) => {
            let mut response = Response::new(TestBody::Full(body));
            response.headers_mut().insert(
                "x-content-type",
                content_type.parse().expect("content type"),
            );
            response
        }
    }
}

pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).expect("gzip");
    encoder.finish().expect("gzip")
}
