//! Credentials as the engine sends them, seen by plain-HTTP loopback upstreams that echo every
//! request header: URL userinfo becomes exactly the Basic credentials it percent-encodes
//! (RFC 3986: `+` stays `+`), and a redirect to another origin carries none of the credential
//! headers (`Authorization`, `Cookie`, `Proxy-Authorization`, `X-Api-Key`, `Api-Key`,
//! `X-Auth-Token`) while a same-origin hop carries them all.

use std::convert::Infallible;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A loopback HTTP server: `/redirect?to=URL` is a 302 to URL, every other path answers with
/// the request's headers, one `name: value` line each.
struct Echo {
    port: u16,
    task: JoinHandle<()>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Echo {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(handle);
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Self { port, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

async fn handle(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() == "/redirect" {
        let to = url::form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
            .find(|(name, _)| name == "to")
            .map(|(_, to)| to.into_owned())
            .unwrap_or_default();
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = hyper::StatusCode::FOUND;
        if let Ok(value) = hyper::header::HeaderValue::from_str(&to) {
            response
                .headers_mut()
                .insert(hyper::header::LOCATION, value);
        }
        return Ok(response);
    }
    let mut text = String::new();
    for (name, value) in request.headers() {
        text.push_str(&format!(
            "{name}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    Ok(Response::new(Full::new(Bytes::from(text))))
}

/// The headers the upstream saw, lower-case name to value.
fn seen(outcome: &engine::Outcome) -> Vec<(String, String)> {
    let response = outcome
        .response
        .as_ref()
        .unwrap_or_else(|| panic!("no response: {:?}", outcome.error));
    response
        .body
        .text()
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_once(": "))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

fn value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(seen, _)| seen == name)
        .map(|(_, value)| value.as_str())
}

#[tokio::test]
async fn url_credentials_are_percent_decoded_exactly_once() {
    let echo = Echo::start().await;
    let engine = engine::Engine::new();
    for (userinfo, user_and_password) in [
        ("us%2Ber:p%26ss", &b"us+er:p&ss"[..]),
        ("us+er:p+ss", b"us+er:p+ss"),
        ("u%3Ax:%40%25%2F%3F%23", b"u:x:@%/?#"),
        ("%C3%A9l%C3%A8ve:%E2%82%AC", "élève:€".as_bytes()),
        ("raw:%FF", b"raw:\xff"),
    ] {
        let url = format!("http://{userinfo}@127.0.0.1:{}/echo", echo.port);
        let job = engine::Job::builder("GET", url).build().expect("job");
        let outcome = engine.run(job).await;
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_and_password)
        );
        assert_eq!(
            value(&seen(&outcome), "authorization"),
            Some(expected.as_str()),
            "{userinfo}"
        );
        assert!(
            !outcome.request.url.contains('@'),
            "{}",
            outcome.request.url
        );
    }
}

#[tokio::test]
async fn credential_headers_stay_home_on_redirects() {
    let home = Echo::start().await;
    let other = Echo::start().await;
    let engine = engine::Engine::new();
    let credentials = [
        ("authorization", "Bearer a-t0ken"),
        ("cookie", "session=c00kie"),
        ("proxy-authorization", "Basic cHJveHk="),
        ("x-api-key", "k3y-1"),
        ("api-key", "k3y-2"),
        ("x-auth-token", "t0ken-3"),
    ];
    let job = |to: &str| {
        let mut builder = engine::Job::builder(
            "GET",
            home.url(&format!(
                "/redirect?to={}",
                url::form_urlencoded::byte_serialize(to.as_bytes()).collect::<String>()
            )),
        )
        .header("X-Trace", "trace-1");
        for (name, value) in credentials {
            builder = builder.header(name, value);
        }
        builder.build().expect("job")
    };
    // Another origin (another port of the same address): none of them, the rest goes on.
    let outcome = engine.run(job(&other.url("/echo"))).await;
    assert_eq!(outcome.redirects().len(), 1, "{:?}", outcome.error);
    let headers = seen(&outcome);
    for (name, _) in credentials {
        assert_eq!(value(&headers, name), None, "{name} went to another origin");
    }
    assert_eq!(value(&headers, "x-trace"), Some("trace-1"));
    // URL credentials stay home too.
    let url = format!(
        "http://u:pw@127.0.0.1:{}/redirect?to={}",
        home.port,
        url::form_urlencoded::byte_serialize(other.url("/echo").as_bytes()).collect::<String>()
    );
    let outcome = engine
        .run(engine::Job::builder("GET", url).build().expect("job"))
        .await;
    assert_eq!(value(&seen(&outcome), "authorization"), None);
    // The same origin: all of them.
    let outcome = engine.run(job(&home.url("/echo"))).await;
    assert_eq!(outcome.redirects().len(), 1, "{:?}", outcome.error);
    let headers = seen(&outcome);
    for (name, sent) in credentials {
        assert_eq!(
            value(&headers, name),
            Some(sent),
            "{name} on the same origin"
        );
    }
}
