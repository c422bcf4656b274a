//! The job API server against hostile clients: a slowloris header sender and a silent TLS
//! connection are closed after their timeouts; 401 and 413 reach HTTP/2 and HTTP/1.1 clients
//! (hyper's client and curl) as responses for bodies from 0 B to 10 MB; a client that goes away
//! takes its jobs with it (observed at an upstream that counts requests); batches over the
//! limits get 413; the result budget is shared by a batch's jobs; unauthenticated `/health`
//! keeps the broker's address and last error to itself.

mod support;

use std::collections::HashMap;
use std::io::Write as _;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;

use support::{APIKEY, SECRET, TestAgent, basic};

/// A TLS connection to the agent offering `alpn`.
async fn tls(agent: &TestAgent, alpn: &[u8]) -> TlsStream<TcpStream> {
    support::tls::connect(agent.port, alpn)
        .await
        .expect("TLS connection to the agent")
}

fn post(agent: &TestAgent, auth: Option<&str>, body: Bytes) -> http::Request<Full<Bytes>> {
    let mut request = http::Request::post(agent.url("/api/v1/jobs"))
        .header("content-type", "application/json")
        .header("content-length", body.len());
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    request.body(Full::new(body)).expect("request")
}

/// The status hyper's HTTP/2 client gets for a POST of `body`.
async fn h2_status(agent: &TestAgent, auth: Option<&str>, body: Bytes) -> u16 {
    let io = hyper_util::rt::TokioIo::new(tls(agent, b"h2").await);
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .expect("h2 handshake");
    tokio::spawn(connection);
    let response = sender
        .send_request(post(agent, auth, body))
        .await
        .unwrap_or_else(|error| panic!("no h2 response: {error:?}"));
    let status = response.status().as_u16();
    let text = response.into_body().collect().await.expect("h2 body");
    let text: Value = serde_json::from_slice(&text.to_bytes()).expect("JSON answer");
    assert!(text["error"]["kind"].is_string(), "{text}");
    status
}

/// The status hyper's HTTP/1.1 client gets for a POST of `body`.
async fn h1_status(agent: &TestAgent, auth: Option<&str>, body: Bytes) -> u16 {
    let io = hyper_util::rt::TokioIo::new(tls(agent, b"http/1.1").await);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .expect("h1 handshake");
    tokio::spawn(connection);
    let response = sender
        .send_request(post(agent, auth, body))
        .await
        .unwrap_or_else(|error| panic!("no h1 response: {error:?}"));
    response.status().as_u16()
}

/// The status curl gets, failing the test when curl reports an error (exit code).
fn curl_status(port: u16, version: &str, auth: bool, file: &std::path::Path) -> u16 {
    let mut command = Command::new("curl");
    command
        .args([
            "-sS",
            "-k",
            version,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(["-H", "content-type: application/json", "--data-binary"])
        .arg(format!("@{}", file.display()));
    if auth {
        command.args(["-u", &format!("{APIKEY}:{SECRET}")]);
    }
    let output = command
        .arg(format!("https://127.0.0.1:{port}/api/v1/jobs"))
        .output()
        .expect("curl runs (it is required for these tests)");
    assert!(
        output.status.success(),
        "curl {version} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_answers_reach_h2_and_h1_clients_for_every_body_size() {
    let mut config = support::config();
    config.max_body = 100 * 1024;
    let agent = support::start(config).await;
    let dir = support::temp_dir("early");
    let auth = basic(APIKEY, SECRET);
    for size in [0usize, 2, 200 * 1024, 10 * 1024 * 1024] {
        let body = Bytes::from(vec![b' '; size]);
        let file = dir.join(format!("body-{size}"));
        std::fs::File::create(&file)
            .and_then(|mut file| file.write_all(&body))
            .expect("body file");
        // Unauthenticated: 401 whatever the size; authenticated over the limit: 413.
        let mut cases = vec![(None, 401, false)];
        if size > 100 * 1024 {
            cases.push((Some(auth.as_str()), 413, true));
        }
        for (credentials, expected, curl_auth) in cases {
            for round in 0..3 {
                let what = format!("{size} B, round {round}, expecting {expected}");
                assert_eq!(
                    h2_status(&agent, credentials, body.clone()).await,
                    expected,
                    "hyper h2: {what}"
                );
                assert_eq!(
                    h1_status(&agent, credentials, body.clone()).await,
                    expected,
                    "hyper h1: {what}"
                );
                for version in ["--http2", "--http1.1"] {
                    let (file, port) = (file.clone(), agent.port);
                    let status = tokio::task::spawn_blocking(move || {
                        curl_status(port, version, curl_auth, &file)
                    })
                    .await
                    .expect("curl task");
                    assert_eq!(status, expected, "curl {version}: {what}");
                }
            }
        }
    }
    agent.stop().await;
}

#[tokio::test]
async fn slowloris_and_silent_connections_are_closed_after_their_timeouts() {
    let mut config = support::config();
    config.limits.header_timeout = Duration::from_secs(2);
    config.limits.tls_handshake_timeout = Duration::from_secs(2);
    let agent = support::start(config).await;

    // A TCP connection that never says hello: closed after the handshake timeout.
    let mut silent = TcpStream::connect(("127.0.0.1", agent.port))
        .await
        .expect("connect");
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(15), silent.read(&mut buffer))
        .await
        .expect("the silent connection is closed within 15 s");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

    // A TLS connection that sends its request head one byte a second: closed long before the
    // head (70 s of it) is complete, without an answer.
    let stream = tls(&agent, b"http/1.1").await;
    let (mut reader, mut writer) = tokio::io::split(stream);
    let closed = tokio::spawn(async move {
        let mut seen = Vec::new();
        let _ = reader.read_to_end(&mut seen).await;
        seen
    });
    let head = format!(
        "GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: {}\r\n\r\n",
        "a".repeat(30)
    );
    let started = Instant::now();
    for byte in head.as_bytes() {
        if closed.is_finished() {
            break;
        }
        if writer.write_all(&[*byte]).await.is_err() || writer.flush().await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let seen = tokio::time::timeout(Duration::from_secs(5), closed)
        .await
        .expect("the slow connection was closed")
        .expect("reader task");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "closed only after {:?}",
        started.elapsed()
    );
    assert!(
        !String::from_utf8_lossy(&seen).contains("200 OK"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    // The agent still answers.
    assert_eq!(agent.request("GET", "/health", None, "").await.status, 200);
    agent.stop().await;
}

/// An upstream that counts request heads and never answers; counts closed connections too.
#[derive(Debug, Clone)]
struct Counting {
    port: u16,
    requests: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
}

async fn counting_upstream() -> Counting {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let counting = Counting {
        port: listener.local_addr().expect("address").port(),
        requests: Arc::new(AtomicUsize::new(0)),
        closed: Arc::new(AtomicUsize::new(0)),
    };
    let counters = counting.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counters = counters.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0u8; 4096];
                let mut counted = false;
                loop {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            head.extend_from_slice(&buffer[..n]);
                            if !counted && head.windows(4).any(|w| w == b"\r\n\r\n") {
                                counted = true;
                                counters.requests.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                }
                counters.closed.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    counting
}

fn slow_batch(upstream: &Counting, count: usize) -> Bytes {
    let job = json!({"url": format!("http://127.0.0.1:{}/slow", upstream.port),
                     "config": {"timeout": 120}});
    Bytes::from(Value::Array(vec![job; count]).to_string())
}

async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Posts six slow jobs (two run, four wait), lets `go_away` end the request, and checks that
/// nothing more reaches the upstream and the gauges return to zero.
async fn cancelled_when_the_client_goes_away(h2: bool) {
    let upstream = counting_upstream().await;
    let mut config = support::config();
    config.max_jobs = 2;
    let agent = support::start(config).await;
    let request = post(
        &agent,
        Some(&basic(APIKEY, SECRET)),
        slow_batch(&upstream, 6),
    );
    let (exchange, connection) = if h2 {
        let io = hyper_util::rt::TokioIo::new(tls(&agent, b"h2").await);
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .expect("h2 handshake");
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        let exchange = tokio::spawn(async move { sender.send_request(request).await.is_ok() });
        (exchange, connection)
    } else {
        let io = hyper_util::rt::TokioIo::new(tls(&agent, b"http/1.1").await);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .expect("h1 handshake");
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        let exchange = tokio::spawn(async move { sender.send_request(request).await.is_ok() });
        (exchange, connection)
    };
    let requests = upstream.requests.clone();
    wait_until("two jobs reach the upstream", || {
        requests.load(Ordering::SeqCst) == 2
    })
    .await;
    agent.wait_for_metric("downloader_jobs_queued 4").await;
    agent.wait_for_metric("downloader_jobs_in_flight 2").await;
    // HTTP/2: the stream is reset, the connection stays. HTTP/1.1: the connection closes.
    exchange.abort();
    if !h2 {
        connection.abort();
    }
    agent.wait_for_metric("downloader_jobs_in_flight 0").await;
    agent.wait_for_metric("downloader_jobs_queued 0").await;
    let closed = upstream.closed.clone();
    wait_until("the running jobs' upstream connections close", || {
        closed.load(Ordering::SeqCst) == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        upstream.requests.load(Ordering::SeqCst),
        2,
        "waiting jobs ran after their caller went away"
    );
    connection.abort();
    agent.stop().await;
}

#[tokio::test]
async fn jobs_end_when_an_h1_client_disconnects() {
    cancelled_when_the_client_goes_away(false).await;
}

#[tokio::test]
async fn jobs_end_when_an_h2_client_resets_its_stream() {
    cancelled_when_the_client_goes_away(true).await;
}

#[tokio::test]
async fn batches_over_the_limits_get_413_never_503() {
    let mut config = support::config();
    config.limits.max_batch = 3;
    config.max_jobs = 1;
    config.queue_limit = 1;
    let agent = support::start(config).await;
    let auth = basic(APIKEY, SECRET);
    let job = json!({"url": "not a url"});
    let send = |count: usize| {
        let body = Value::Array(vec![job.clone(); count]).to_string();
        let auth = auth.clone();
        let agent = &agent;
        async move {
            agent
                .request("POST", "/api/v1/jobs", Some(&auth), &body)
                .await
        }
    };
    let fits = send(2).await;
    assert_eq!(fits.status, 200, "{}", fits.text);
    assert_eq!(fits.json()[1]["error"]["kind"], "request.invalid");
    // Over the agent's capacity (max_jobs + queue_limit = 2): it could never succeed.
    let reply = send(3).await;
    assert_eq!(reply.status, 413, "{}", reply.text);
    assert_eq!(reply.json()["error"]["kind"], "api.batch_too_large");
    assert!(
        reply.text.contains("max_jobs + queue_limit"),
        "{}",
        reply.text
    );
    assert!(reply.headers.get("retry-after").is_none());
    agent.stop().await;

    let mut config = support::config();
    config.limits.max_batch = 3;
    let agent = support::start(config).await;
    let body = Value::Array(vec![job.clone(); 4]).to_string();
    let reply = agent
        .request("POST", "/api/v1/jobs", Some(&auth), &body)
        .await;
    assert_eq!(reply.status, 413, "{}", reply.text);
    assert_eq!(reply.json()["error"]["kind"], "api.batch_too_large");
    assert!(
        reply.text.contains("DOWNLOADER_MAX_BATCH"),
        "{}",
        reply.text
    );
    // Millions of tiny jobs stop at the first one too many.
    let zeros = format!("[{}0]", "0,".repeat(20 * 1024 * 1024));
    let reply = agent
        .request("POST", "/api/v1/jobs", Some(&auth), &zeros)
        .await;
    assert_eq!(reply.status, 413, "{}", reply.text);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_is_parsed_off_the_async_workers() {
    let agent = Arc::new(support::start(support::config()).await);
    // 48 MB of zeros inside one job: parsed on a blocking thread while /health answers.
    let body = format!(
        "{{\"url\": \"not a url\", \"body\": \"{}\"}}",
        "0".repeat(48 * 1024 * 1024)
    );
    let post = {
        let agent = agent.clone();
        tokio::spawn(async move {
            agent
                .request("POST", "/api/v1/jobs", Some(&basic(APIKEY, SECRET)), &body)
                .await
        })
    };
    let mut slowest = Duration::ZERO;
    while !post.is_finished() {
        let started = Instant::now();
        assert_eq!(agent.request("GET", "/health", None, "").await.status, 200);
        slowest = slowest.max(started.elapsed());
    }
    assert!(slowest < Duration::from_secs(2), "/health took {slowest:?}");
    let reply = post.await.expect("post task");
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["error"]["kind"], "request.invalid");
}

/// An upstream answering every request with `size` bytes.
async fn sized_upstream(size: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {size}\r\nconnection: close\r\n\r\n{}",
                    "x".repeat(size)
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn a_batch_shares_the_result_budget() {
    let port = sized_upstream(2000).await;
    let mut config = support::config();
    config.limits.max_request_result_bytes = 3000;
    let agent = support::start(config).await;
    let job = json!({"url": format!("http://127.0.0.1:{port}/")});
    let one = agent.jobs(&job).await;
    assert_eq!(one["ok"], true, "{one}");
    let two = agent.jobs(&json!([job.clone(), job.clone()])).await;
    for result in two.as_array().expect("array") {
        assert_eq!(result["error"]["kind"], "body.too_large", "{result}");
        let hint = result["error"]["hint"].as_str().unwrap_or("");
        assert!(
            hint.contains("DOWNLOADER_MAX_REQUEST_RESULT_BYTES"),
            "{hint}"
        );
        assert!(hint.contains("1500"), "{hint}");
    }
    agent.stop().await;
}

#[derive(Debug)]
struct Env(HashMap<&'static str, String>);

impl agent::Source for Env {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

#[tokio::test]
async fn unauthenticated_health_keeps_the_broker_details() {
    // A broker port nobody listens on (loopback): the worker keeps failing to connect.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("address")
        .port();
    let env = Env(HashMap::from([
        ("DOWNLOADER_LISTEN", "127.0.0.1:0".to_owned()),
        (
            "DOWNLOADER_DATA_DIR",
            support::temp_dir("health").display().to_string(),
        ),
        ("apikey", APIKEY.to_owned()),
        ("secret", SECRET.to_owned()),
        ("use_rabbit", "true".to_owned()),
        ("rabbitHost", "127.0.0.1".to_owned()),
        ("rabbitPort", port.to_string()),
    ]));
    let config = agent::Config::load(&agent::Flags::default(), &env).expect("config");
    let agent = support::start(config).await;
    let auth = basic(APIKEY, SECRET);
    let deadline = Instant::now() + Duration::from_secs(15);
    let full = loop {
        let health = agent
            .request("GET", "/health", Some(&auth), "")
            .await
            .json();
        if health["broker"]["lastError"].is_string() {
            break health;
        }
        assert!(Instant::now() < deadline, "no broker error: {health}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(full["broker"]["broker"].is_string(), "{full}");
    let reply = agent.request("GET", "/health", None, "").await;
    assert_eq!(reply.status, 200);
    let open = reply.json();
    assert!(open["broker"]["state"].is_string(), "{open}");
    assert!(open["broker"].get("broker").is_none(), "{open}");
    assert!(open["broker"].get("lastError").is_none(), "{open}");
    assert!(!reply.text.contains(&port.to_string()), "{}", reply.text);
    agent.stop().await;
}
