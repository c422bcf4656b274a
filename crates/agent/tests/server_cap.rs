//! The connection cap against clients without credentials: HTTP/2 connections kept busy for
//! ever with slow-body POSTs (each earns a 401, and a new one starts before it ends) fill the
//! cap, yet a new connection still gets `/health` 200 and an authenticated job still runs; and
//! `/health` answers while every job slot is taken.

mod support;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A request body that sends one byte every 100 ms and never ends.
struct Trickle(tokio::time::Interval);

impl Body for Trickle {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_tick(cx)
            .map(|_| Some(Ok(Frame::data(Bytes::from_static(b"x")))))
    }
}

/// What the hostile clients saw.
#[derive(Debug, Default)]
struct Seen {
    unauthorized: AtomicUsize,
    connections: AtomicUsize,
}

/// One hostile client: an HTTP/2 connection with no credentials that starts a slow-body POST
/// every 300 ms (each is answered 401 after about a second), so a request is always open on
/// it; reconnects a second after the agent closes the connection.
async fn hostile(agent_port: u16, seen: Arc<Seen>) {
    loop {
        let Ok(io) = support::tls::connect(agent_port, b"h2").await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let io = hyper_util::rt::TokioIo::new(io);
        let Ok((sender, connection)) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io).await
        else {
            continue;
        };
        seen.connections.fetch_add(1, Ordering::SeqCst);
        let driver = tokio::spawn(connection);
        while !driver.is_finished() {
            let request =
                http::Request::post(format!("https://127.0.0.1:{agent_port}/api/v1/jobs"))
                    .header("content-type", "application/json")
                    .body(Trickle(tokio::time::interval(Duration::from_millis(100))))
                    .expect("request");
            let mut sender = sender.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                if let Ok(response) = sender.send_request(request).await
                    && response.status() == 401
                {
                    seen.unauthorized.fetch_add(1, Ordering::SeqCst);
                }
            });
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A loopback upstream that answers every request `200 ok`.
async fn upstream() -> u16 {
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
                let answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    port
}

async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_slow_bodies_at_the_cap_leave_room_for_health_and_jobs() {
    const CAP: usize = 4;
    let upstream = upstream().await;
    let mut config = support::config();
    config.limits.max_connections = Some(CAP);
    let agent = support::start(config).await;

    let seen = Arc::new(Seen::default());
    let clients: Vec<_> = (0..CAP)
        .map(|_| tokio::spawn(hostile(agent.port, seen.clone())))
        .collect();
    // Every hostile connection is up and has had its slow POSTs answered 401: the cap is full of
    // connections that always have a request open.
    wait_until("the hostile clients hold the cap", || {
        seen.connections.load(Ordering::SeqCst) >= CAP
            && seen.unauthorized.load(Ordering::SeqCst) >= 2 * CAP
    })
    .await;
    assert_eq!(
        seen.connections.load(Ordering::SeqCst),
        CAP,
        "no hostile connection was closed before the probe"
    );

    let reply = agent.request("GET", "/health", None, "").await;
    assert_eq!(reply.status, 200, "/health at the cap: {}", reply.text);
    // The hostile client closed for it comes back: the cap is full again.
    wait_until("a hostile connection was closed for /health", || {
        seen.connections.load(Ordering::SeqCst) > CAP
    })
    .await;
    let result = agent
        .jobs(&json!({"url": format!("http://127.0.0.1:{upstream}/ok")}))
        .await;
    assert_eq!(result["response"]["statusCode"], 200, "{result}");
    wait_until("a hostile connection was closed for the job", || {
        seen.connections.load(Ordering::SeqCst) > CAP + 1
    })
    .await;
    for client in clients {
        client.abort();
    }
    agent.stop().await;
}

/// A loopback upstream that accepts connections, counts them and never answers.
async fn silent_upstream(accepted: Arc<AtomicUsize>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_while_job_capacity_is_exhausted() {
    let accepted = Arc::new(AtomicUsize::new(0));
    let silent = silent_upstream(accepted.clone()).await;
    let mut config = support::config();
    config.max_jobs = 1;
    config.queue_limit = 0;
    let agent = support::start(config).await;
    let auth = support::basic(support::APIKEY, support::SECRET);
    let slow = json!({"url": format!("http://127.0.0.1:{silent}/"), "config": {"timeout": 4}});
    let slow = slow.to_string();
    let holding = agent.request("POST", "/api/v1/jobs", Some(&auth), &slow);
    let probe = async {
        // The one job slot is taken once the upstream has the job's connection.
        wait_until("the slow job holds the only slot", || {
            accepted.load(Ordering::SeqCst) >= 1
        })
        .await;
        let health = agent.request("GET", "/health", None, "").await;
        assert_eq!(
            health.status, 200,
            "/health with no job capacity: {}",
            health.text
        );
        let refused = agent
            .request("POST", "/api/v1/jobs", Some(&auth), &slow)
            .await;
        assert_eq!(refused.status, 503, "{}", refused.text);
        assert_eq!(refused.json()["error"]["kind"], "api.overloaded");
    };
    let (held, ()) = tokio::join!(holding, probe);
    assert_eq!(held.status, 200, "{}", held.text);
    assert_eq!(held.json()["error"]["kind"], "timeout", "{}", held.text);
    agent.stop().await;
}
