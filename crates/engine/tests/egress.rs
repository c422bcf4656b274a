//! The egress policy on jobs, against loopback listeners that count what reaches them: a
//! denied port sees no connection, and so does a redirect target, a `resolve` pin, a proxy and
//! a tunnel's target; a pooled connection is checked before reuse.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use engine::{EgressPolicy, EgressRule, Engine, Job, JobBuilder, Outcome, Proxy, ProxyRules};
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

fn at(text: &str) -> SocketAddr {
    text.parse().expect("socket address")
}

/// A loopback HTTP/1.1 server that counts accepted connections and requests. `/to?port=N`
/// redirects to `http://127.0.0.1:N/`; anything else answers `ok`.
struct Counted {
    port: u16,
    accepts: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Counted {
    fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn counted() -> Counted {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let accepts = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (accepted, answered) = (accepts.clone(), requests.clone());
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            let answered = answered.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<_>| {
                    answered.fetch_add(1, Ordering::SeqCst);
                    let target = request
                        .uri()
                        .query()
                        .and_then(|query| query.strip_prefix("port="))
                        .map(str::to_owned);
                    async move {
                        let response = match target {
                            Some(port) => Response::builder()
                                .status(302)
                                .header("Location", format!("http://127.0.0.1:{port}/"))
                                .body(Full::new(Bytes::new())),
                            None => Response::builder().body(Full::new(Bytes::from("ok"))),
                        };
                        Ok::<_, Infallible>(response.expect("response"))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    Counted {
        port,
        accepts,
        requests,
        task,
    }
}

async fn run(builder: JobBuilder) -> Outcome {
    Engine::new().run(builder.build().expect("job")).await
}

fn with(deny: &str, allow: &str) -> Arc<EgressPolicy> {
    let rules = |text: &str| EgressRule::parse_list(text).expect("rules");
    Arc::new(EgressPolicy::new(rules(deny), rules(allow)))
}

fn message(outcome: &Outcome) -> String {
    outcome
        .error
        .as_ref()
        .map(|error| format!("{} / {}", error.message, error.hint))
        .unwrap_or_default()
}

#[tokio::test]
async fn a_denied_port_never_sees_a_connection_whatever_the_spelling() {
    let server = counted().await;
    let port = server.port;
    let deny = format!("127.0.0.1:{port}");
    // The control: without a policy the job arrives, so the counter works.
    let open = run(Job::builder("GET", format!("http://127.0.0.1:{port}/"))).await;
    assert!(open.ok, "{}", message(&open));
    assert_eq!((server.accepts(), server.requests()), (1, 1));
    for url in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://localhost:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://2130706433:{port}/"),
    ] {
        let outcome = run(Job::builder("GET", &url).egress(with(&deny, &deny))).await;
        assert_eq!(
            outcome.kind(),
            Some("egress.denied"),
            "{url}: {}",
            message(&outcome)
        );
        let text = message(&outcome);
        assert!(
            text.contains(&format!("denied by egress rule 'deny {deny}'")),
            "{text}"
        );
        assert!(text.contains("remove that entry"), "{text}");
    }
    let outcome =
        run(Job::builder("GET", format!("http://127.0.0.1:{port}/")).egress(with(&deny, ""))).await;
    let text = message(&outcome);
    assert!(
        text.starts_with(&format!(
            "connection to 127.0.0.1:{port} denied by egress rule"
        )),
        "{text}"
    );
    assert_eq!((server.accepts(), server.requests()), (1, 1));
}

#[tokio::test]
async fn the_agents_own_port_is_denied_by_default_and_allow_opens_it() {
    let server = counted().await;
    let port = server.port;
    let own = Arc::new(EgressPolicy::default());
    own.listening(at(&format!("127.0.0.1:{port}")));
    let outcome = run(Job::builder("GET", format!("http://localhost:{port}/")).egress(own)).await;
    let text = message(&outcome);
    assert_eq!(outcome.kind(), Some("egress.denied"), "{text}");
    assert!(
        text.contains(&format!(
            "(localhost) denied by egress rule 'the agent itself (listen 127.0.0.1:{port})'"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            // The engine names the remedy; the agent words it as DOWNLOADER_EGRESS_ALLOW
            // (crates/agent/tests/egress.rs), fetch as --egress-allow.
            "add '127.0.0.1:{port}' to the egress allow list"
        )),
        "{text}"
    );
    assert_eq!(server.accepts(), 0);
    let allowed = with("", &format!("127.0.0.1:{port}"));
    allowed.listening(at(&format!("127.0.0.1:{port}")));
    let outcome =
        run(Job::builder("GET", format!("http://127.0.0.1:{port}/")).egress(allowed)).await;
    assert!(outcome.ok, "{}", message(&outcome));
    assert_eq!(server.accepts(), 1);
}

#[tokio::test]
async fn a_redirect_to_a_denied_port_is_denied_at_the_hop() {
    let allowed = counted().await;
    let denied = counted().await;
    let url = format!("http://127.0.0.1:{}/to?port={}", allowed.port, denied.port);
    let policy = with(&format!("127.0.0.1:{}", denied.port), "");
    let outcome = run(Job::builder("GET", &url).egress(policy)).await;
    assert_eq!(
        outcome.kind(),
        Some("egress.denied"),
        "{}",
        message(&outcome)
    );
    assert_eq!(outcome.redirects().len(), 1);
    assert_eq!(allowed.requests(), 1);
    assert_eq!(denied.accepts(), 0);
    // The control: without the policy the hop arrives.
    let outcome = run(Job::builder("GET", &url)).await;
    assert!(outcome.ok, "{}", message(&outcome));
    assert_eq!(denied.requests(), 1);
}

#[tokio::test]
async fn a_resolve_pin_is_checked_as_the_pinned_address() {
    let server = counted().await;
    let port = server.port;
    let pinned = || {
        Job::builder("GET", format!("http://pinned.test:{port}/")).resolve(
            "pinned.test",
            port,
            "127.0.0.1".parse().expect("ip"),
        )
    };
    let outcome = run(pinned().egress(with(&format!("127.0.0.1:{port}"), ""))).await;
    let text = message(&outcome);
    assert_eq!(outcome.kind(), Some("egress.denied"), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{port} (pinned.test)")),
        "{text}"
    );
    assert_eq!(server.accepts(), 0);
    // A name rule for the pinned name denies it too, before any lookup.
    let outcome = run(pinned().egress(with("*.test", ""))).await;
    assert_eq!(
        outcome.kind(),
        Some("egress.denied"),
        "{}",
        message(&outcome)
    );
    assert_eq!(server.accepts(), 0);
    let outcome = run(pinned().egress(with("10.0.0.0/8", ""))).await;
    assert!(outcome.ok, "{}", message(&outcome));
    assert_eq!(server.accepts(), 1);
}

#[tokio::test]
async fn a_proxy_on_a_denied_port_and_a_denied_tunnel_target_get_nothing() {
    let not_a_proxy = counted().await;
    let via = |port: u16| {
        ProxyRules::all(Proxy::parse(&format!("http://127.0.0.1:{port}")).expect("proxy"))
    };
    let outcome = run(Job::builder("GET", "http://example.test/")
        .proxy(via(not_a_proxy.port))
        .egress(with(&format!("127.0.0.1:{}", not_a_proxy.port), "")))
    .await;
    let text = message(&outcome);
    assert_eq!(outcome.kind(), Some("egress.denied"), "{text}");
    assert!(
        text.contains(&format!(
            "connection to the proxy 127.0.0.1:{}",
            not_a_proxy.port
        )),
        "{text}"
    );
    assert_eq!(not_a_proxy.accepts(), 0);

    // An allowed proxy, a denied CONNECT (or absolute-form) target: the proxy sees nothing.
    let proxy = common::proxy::start(None, None).await;
    let target = counted().await;
    let deny = with(&format!("127.0.0.1:{}", target.port), "");
    for url in [
        format!("https://127.0.0.1:{}/", target.port),
        format!("http://[::ffff:127.0.0.1]:{}/", target.port),
        format!("https://localhost:{}/", target.port),
    ] {
        let outcome = run(Job::builder("GET", &url)
            .proxy(via(proxy.port))
            .egress(deny.clone()))
        .await;
        let text = message(&outcome);
        assert_eq!(outcome.kind(), Some("egress.denied"), "{url}: {text}");
        assert!(
            text.contains(&format!("through the proxy 127.0.0.1:{}", proxy.port)),
            "{text}"
        );
    }
    assert!(proxy.seen().is_empty(), "{:?}", proxy.seen());
    // The control: without the policy the proxy is asked.
    let outcome = run(
        Job::builder("GET", format!("http://127.0.0.1:{}/", target.port)).proxy(via(proxy.port)),
    )
    .await;
    assert!(outcome.ok, "{}", message(&outcome));
    assert_eq!(proxy.seen().len(), 1);
}

#[tokio::test]
async fn a_pooled_connection_is_checked_before_reuse() {
    let server = counted().await;
    let engine = Engine::new();
    let job = || Job::builder("GET", format!("http://127.0.0.1:{}/", server.port)).keep_alive(true);
    let first = engine.run(job().build().expect("job")).await;
    assert!(first.ok, "{}", message(&first));
    let denied = engine
        .run(
            job()
                .egress(with(&format!("127.0.0.1:{}", server.port), ""))
                .build()
                .expect("job"),
        )
        .await;
    assert_eq!(denied.kind(), Some("egress.denied"), "{}", message(&denied));
    assert_eq!((server.accepts(), server.requests()), (1, 1));
    // An allowing policy reuses the connection made without one.
    let again = engine
        .run(job().egress(with("10.0.0.0/8", "")).build().expect("job"))
        .await;
    assert!(again.ok, "{}", message(&again));
    assert_eq!(server.requests(), 2);
}
