//! Redirects, form bodies, response decoding, header limits, proxies and keep-alive against
//! in-process servers and an in-process forward proxy (loopback only).

mod common;

use common::extra::PLAIN;
use common::{Setup, body, describe, identity, start, trust};
use engine::{Engine, Job, Outcome, Part, Proxy, ProxyRules};
use keystore::Password;

fn status(outcome: &Outcome) -> u16 {
    outcome.response.as_ref().map_or(0, |r| r.status_code)
}

fn optional_auth() -> Setup {
    Setup {
        optional_client_auth: true,
        ..Setup::default()
    }
}

async fn run(engine: &Engine, builder: engine::JobBuilder) -> Outcome {
    engine
        .run(builder.trust_store(trust()).build().expect("job"))
        .await
}

#[tokio::test]
async fn redirects_follow_the_rules() {
    let server = start(optional_auth()).await;
    let engine = Engine::new();
    let url = |path: &str| server.url(path);

    let chain = run(&engine, Job::builder("GET", url("/chain?n=3"))).await;
    assert_eq!(body(&chain), "end", "{}", describe(&chain));
    assert_eq!(chain.metrics.redirects, 3);
    assert_eq!(chain.redirects().len(), 3);
    assert!(chain.redirects().iter().all(|hop| hop.status_code == 302));
    assert!(chain.redirects()[0].metrics.latency.is_some());
    let json = serde_json::to_value(&chain).expect("json");
    assert_eq!(json["redirects"].as_array().map(Vec::len), Some(3));
    assert!(
        json["redirects"][1]["location"]
            .as_str()
            .is_some_and(|l| l.ends_with("/chain?n=1"))
    );
    assert_eq!(json["metrics"]["redirects"], 3);
    assert_eq!(chain.request.url, url("/chain?n=3"));
    assert!(
        chain
            .response
            .as_ref()
            .is_some_and(|r| r.url == url("/chain?n=0"))
    );

    // HEAD follows by default, POST does not.
    let head = run(
        &engine,
        Job::builder("HEAD", url("/redirect?code=301&to=/headers")),
    )
    .await;
    assert_eq!(
        (status(&head), head.metrics.redirects),
        (200, 1),
        "{}",
        describe(&head)
    );
    let post = Job::builder("POST", url("/redirect?code=307&to=/headers")).body("payload");
    let post = run(&engine, post).await;
    assert_eq!((status(&post), post.metrics.redirects), (307, 0));
    // -L for POST: 307 keeps method and body, 303 becomes a GET without a body.
    let kept = Job::builder("POST", url("/redirect?code=307&to=/headers"))
        .body("payload")
        .follow_redirects(true);
    let kept = run(&engine, kept).await;
    assert!(body(&kept).contains("method=POST\n"), "{}", describe(&kept));
    assert!(body(&kept).contains("body-length=7\n"));
    let other = Job::builder("POST", url("/redirect?code=303&to=/headers"))
        .header("Content-Type", "text/plain")
        .body("payload")
        .follow_redirects(true);
    let other = run(&engine, other).await;
    assert!(
        body(&other).contains("method=GET\n"),
        "{}",
        describe(&other)
    );
    assert!(body(&other).contains("body-length=0\n"));
    assert!(body(&other).contains("content-type=-\n"));
    // --no-follow for GET.
    let stay = Job::builder("GET", url("/chain?n=1")).follow_redirects(false);
    assert_eq!(status(&run(&engine, stay).await), 302);
    // Loops and the limit.
    let looped = run(&engine, Job::builder("GET", url("/loop"))).await;
    assert_eq!(
        looped.kind(),
        Some("redirect.limit"),
        "{}",
        describe(&looped)
    );
    assert_eq!(status(&looped), 302);
    let limited = Job::builder("GET", url("/chain?n=5")).max_redirects(2);
    let limited = run(&engine, limited).await;
    assert_eq!(limited.kind(), Some("redirect.limit"));
    assert_eq!(limited.redirects().len(), 3);
    let enough = Job::builder("GET", url("/chain?n=5")).max_redirects(5);
    assert_eq!(body(&run(&engine, enough).await), "end");
}

#[tokio::test]
async fn credentials_and_the_certificate_stay_with_their_host() {
    let home = start(Setup::default()).await;
    let other = start(optional_auth()).await;
    let engine = Engine::new();
    let away = format!("https://localhost:{}/headers", other.port);
    let job = |to: &str| {
        Job::builder("GET", home.url(&format!("/redirect?to={to}")))
            .identity(identity("p256"))
            .header("Authorization", "Bearer t0k")
            .header("Cookie", "a=b")
    };
    // The other host gets no certificate and no credentials.
    let outcome = run(&engine, job(&away)).await;
    let text = body(&outcome);
    assert!(
        text.contains(&format!("port={}", other.port)),
        "{}",
        describe(&outcome)
    );
    assert!(text.contains("subject=none\n"), "{text}");
    assert!(
        text.contains("authorization=-\n") && text.contains("cookie=-\n"),
        "{text}"
    );
    assert!(outcome.redirects()[0].identity);
    assert!(
        outcome
            .tls
            .as_ref()
            .is_some_and(|tls| tls.client_certificate.is_none())
    );
    // Unless the job names an identity for it.
    let chosen = job(&away).identity_for("localhost", other.port, identity("rsa2048"));
    let text = body(&run(&engine, chosen).await);
    assert!(text.contains("CN=client-rsa2048\n"), "{text}");
    assert!(text.contains("authorization=-\n"), "{text}");
    // The same host keeps both.
    let text = body(&run(&engine, job("/headers")).await);
    assert!(text.contains("CN=client-p256\n"), "{text}");
    assert!(text.contains("authorization=Bearer t0k\n") && text.contains("cookie=a=b\n"));
}

#[tokio::test]
async fn forms_and_multipart_arrive_byte_exact() {
    let server = start(Setup::default()).await;
    let engine = Engine::new();
    let job = |builder: engine::JobBuilder| builder.identity(identity("p256"));
    let form = job(Job::builder("POST", server.url("/raw")).form([("q", "a b&c"), ("é", "=")]));
    let outcome = run(&engine, form).await;
    let response = outcome.response.as_ref().expect("response");
    assert_eq!(response.body.as_bytes(), b"q=a+b%26c&%C3%A9=%3D");
    assert_eq!(
        response.headers.get_all("x-content-type"),
        ["application/x-www-form-urlencoded"]
    );
    let file: &[u8] = &[0, 159, 146, 150, b'\r', b'\n', b'-', b'-'];
    let parts = [
        Part {
            name: "field".into(),
            data: "value".into(),
            filename: None,
            content_type: None,
        },
        Part {
            name: "upload".into(),
            data: bytes::Bytes::copy_from_slice(file),
            filename: Some("a.bin".into()),
            content_type: Some("image/png".into()),
        },
    ];
    let multipart = job(Job::builder("POST", server.url("/raw")).multipart(&parts));
    let outcome = run(&engine, multipart).await;
    let response = outcome.response.as_ref().expect("response");
    let content_type = &response.headers.get_all("x-content-type")[0];
    let boundary = content_type
        .strip_prefix("multipart/form-data; boundary=")
        .expect("boundary");
    let mut expected = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"field\"\r\n\r\nvalue\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"upload\"; \
         filename=\"a.bin\"\r\nContent-Type: image/png\r\n\r\n"
    )
    .into_bytes();
    expected.extend_from_slice(file);
    expected.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    assert_eq!(response.body.as_bytes(), &expected[..]);
}

#[tokio::test]
async fn responses_decode_when_the_engine_asked() {
    let server = start(Setup::default()).await;
    let engine = Engine::new();
    let job = |path: &str| Job::builder("GET", server.url(path)).identity(identity("p256"));
    let expected = PLAIN.repeat(100);
    for (path, encoding) in [("/gzip", "gzip"), ("/deflate", "deflate"), ("/br", "br")] {
        let outcome = run(&engine, job(path)).await;
        let response = outcome.response.as_ref().expect("response");
        assert_eq!(body(&outcome), expected, "{path}: {}", describe(&outcome));
        assert_eq!(response.decoded.as_deref(), Some(encoding));
        assert!(
            response.size < expected.len() as u64 / 10,
            "{}",
            response.size
        );
    }
    let asked = body(&run(&engine, job("/headers")).await);
    assert!(
        asked.contains("accept-encoding=gzip, deflate, br\n"),
        "{asked}"
    );
    // The job's own Accept-Encoding: passed through untouched.
    let own = run(&engine, job("/gzip").header("Accept-Encoding", "gzip")).await;
    let response = own.response.as_ref().expect("response");
    assert!(response.decoded.is_none());
    assert_eq!(&response.body.as_bytes()[..2], &[0x1f, 0x8b]);
    assert_eq!(response.size, response.body.len() as u64);
    // A bomb: 20 MB of zeros in about 20 KB.
    let bomb = run(&engine, job("/bomb").decoded_limit(1024 * 1024)).await;
    assert_eq!(bomb.kind(), Some("body.too_large"), "{}", describe(&bomb));
}

#[tokio::test]
async fn header_limits() {
    let server = start(Setup::default()).await;
    let engine = Engine::new();
    let big = Job::builder("GET", server.url("/bighead"))
        .identity(identity("p256"))
        .http(engine::HttpVersion::Http1);
    let outcome = run(&engine, big).await;
    assert_eq!(
        outcome.kind(),
        Some("http.headers_too_large"),
        "{}",
        describe(&outcome)
    );
    let raised = Job::builder("GET", server.url("/bighead"))
        .identity(identity("p256"))
        .http(engine::HttpVersion::Http1)
        .response_header_limit(200_000);
    assert_eq!(status(&run(&engine, raised).await), 200);
    // HTTP/2 gives the same kind: somewhat over the limit (h2 resets the stream) and far over
    // it (h2 closes the connection), whether h2 was chosen by ALPN or forced.
    for (version, limit) in [
        (engine::HttpVersion::Auto, None),
        (engine::HttpVersion::Http2, Some(80_000)),
        (engine::HttpVersion::Http2, Some(16 * 1024)),
    ] {
        let mut big = Job::builder("GET", server.url("/bighead"))
            .identity(identity("p256"))
            .http(version);
        if let Some(limit) = limit {
            big = big.response_header_limit(limit);
        }
        let outcome = run(&engine, big).await;
        assert_eq!(
            outcome.kind(),
            Some("http.headers_too_large"),
            "{version:?} {limit:?}: {}",
            describe(&outcome)
        );
        assert_eq!(
            outcome.tls.as_ref().and_then(|tls| tls.alpn.as_deref()),
            Some("h2")
        );
    }
    let raised = Job::builder("GET", server.url("/bighead"))
        .identity(identity("p256"))
        .http(engine::HttpVersion::Http2)
        .response_header_limit(200_000);
    let raised = run(&engine, raised).await;
    assert_eq!(status(&raised), 200, "{}", describe(&raised));
    assert_eq!(
        raised.response.as_ref().map(|r| r.http_version),
        Some("HTTP/2")
    );
    let error = Job::builder("GET", server.url("/"))
        .header("X-Big", "a".repeat(70_000))
        .build()
        .expect_err("too large");
    assert_eq!(error.kind(), "request.invalid");
}

#[tokio::test]
async fn mutual_tls_through_a_connect_tunnel() {
    let server = start(Setup::default()).await;
    let proxy = common::proxy::start(None, None).await;
    let engine = Engine::new();
    let via = Proxy::parse(&format!("http://127.0.0.1:{}", proxy.port)).expect("proxy");
    let job = Job::builder("GET", server.url("/"))
        .identity(identity("p256"))
        .proxy(ProxyRules::all(via));
    let outcome = run(&engine, job).await;
    assert!(
        body(&outcome).contains("CN=client-p256\n"),
        "{}",
        describe(&outcome)
    );
    assert_eq!(
        proxy.seen(),
        [format!("CONNECT localhost:{} auth=false", server.port)]
    );
    assert!(outcome.metrics.proxy.is_some() && outcome.metrics.connect.is_some());
    assert!(
        outcome
            .tls
            .as_ref()
            .is_some_and(|tls| tls.client_certificate.is_some())
    );
}

#[tokio::test]
async fn proxy_authentication_refusal_and_failures_have_kinds() {
    let server = start(Setup::default()).await;
    let plain = start(Setup {
        plain: true,
        client_ca: None,
        ..Setup::default()
    })
    .await;
    // "u:pr0xy-pa55" in base64.
    let expected = "Basic dTpwcjB4eS1wYTU1".to_owned();
    let proxy = common::proxy::start(Some(expected), Some(plain.port)).await;
    let engine = Engine::new();
    let address = format!("127.0.0.1:{}", proxy.port);
    let with = |user: Option<&str>| {
        let via = Proxy::parse(&address).expect("proxy");
        ProxyRules::all(match user {
            Some(password) => via.with_credentials("u", Password::from(password)),
            None => via,
        })
    };
    let job = |url: String, rules: ProxyRules| {
        Job::builder("GET", url)
            .identity(identity("p256"))
            .proxy(rules)
    };
    let missing = run(&engine, job(server.url("/"), with(None))).await;
    assert_eq!(
        missing.kind(),
        Some("proxy.auth_required"),
        "{}",
        describe(&missing)
    );
    let wrong = run(&engine, job(server.url("/"), with(Some("nope")))).await;
    assert_eq!(wrong.kind(), Some("proxy.auth_required"));
    let good = run(&engine, job(server.url("/"), with(Some("pr0xy-pa55")))).await;
    assert!(
        body(&good).contains("CN=client-p256\n"),
        "{}",
        describe(&good)
    );
    // An http URL goes to the proxy as an absolute-form request.
    let http = run(
        &engine,
        job(plain.url("/headers"), with(Some("pr0xy-pa55"))),
    )
    .await;
    assert!(
        body(&http).contains(&format!("port={}", plain.port)),
        "{}",
        describe(&http)
    );
    assert!(proxy.seen().contains(&format!(
        "GET http://localhost:{}/headers auth=true",
        plain.port
    )));
    let http_missing = run(&engine, job(plain.url("/"), with(None))).await;
    assert_eq!(http_missing.kind(), Some("proxy.auth_required"));
    // A tunnel the proxy refuses.
    let refused = job(
        format!("https://localhost:{}/", plain.port),
        with(Some("pr0xy-pa55")),
    );
    let refused = run(&engine, refused).await;
    assert_eq!(
        refused.kind(),
        Some("proxy.tunnel_refused"),
        "{}",
        describe(&refused)
    );
    // A proxy that is not there.
    let (closed, _) = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        (listener.local_addr().expect("address").port(), ())
    };
    let gone = ProxyRules::all(Proxy::parse(&format!("127.0.0.1:{closed}")).expect("proxy"));
    let gone = run(&engine, job(server.url("/"), gone)).await;
    assert_eq!(
        gone.kind(),
        Some("proxy.unreachable"),
        "{}",
        describe(&gone)
    );
    // Secrets: the proxy password appears nowhere.
    for outcome in [&missing, &wrong, &good, &http] {
        let texts = [format!("{outcome:?}"), describe(outcome)];
        for text in texts {
            assert!(!text.contains("pr0xy-pa55") && !text.contains("dTpwcjB4eS1wYTU1"));
        }
    }
    let debug = format!(
        "{:?}",
        job(server.url("/"), with(Some("pr0xy-pa55"))).build()
    );
    assert!(
        !debug.contains("pr0xy-pa55") && !debug.contains("dTpwcjB4eS1wYTU1"),
        "{debug}"
    );
}

#[tokio::test]
async fn reference_selectors_pick_the_proxy_per_host() {
    let server = start(Setup::default()).await;
    let proxy = common::proxy::start(None, None).await;
    let engine = Engine::new();
    let rules = |json: String| ProxyRules::from_reference_json(&json).expect("rules");
    let address = format!("{{\"address\":\"127.0.0.1\",\"port\":{}}}", proxy.port);
    let cases = [
        // `*` is evaluated last even when it comes first; an exact NONE wins.
        (
            format!(r#"{{"*": {address}, "localhost": {{"address":"NONE"}}}}"#),
            false,
        ),
        (
            format!(r#"{{"localhost": {address}, "*": {{"address":"NONE"}}}}"#),
            true,
        ),
        (
            format!(r#"{{"*.example.test": {{"address":"NONE"}}, "*": {address}}}"#),
            true,
        ),
        (format!(r#"{{"*.example.test": {address}}}"#), false),
    ];
    for (json, proxied) in cases {
        let before = proxy.seen().len();
        let job = Job::builder("GET", server.url("/"))
            .identity(identity("p256"))
            .proxy(rules(json.clone()));
        let outcome = run(&engine, job).await;
        assert!(outcome.ok, "{json}: {}", describe(&outcome));
        assert_eq!(proxy.seen().len() - before, usize::from(proxied), "{json}");
    }
}

#[tokio::test]
async fn kept_alive_connections_never_mix_identities() {
    let server = start(optional_auth()).await;
    let engine = Engine::new();
    let mut connections: std::collections::HashMap<String, String> = Default::default();
    let mut all = std::collections::HashSet::new();
    for round in 0..3 {
        for who in ["p256", "rsa2048", "none"] {
            let mut job = Job::builder("GET", server.url("/headers")).keep_alive(true);
            if who != "none" {
                job = job.identity(identity(who));
            }
            let outcome = run(&engine, job).await;
            let text = body(&outcome);
            let subject = text
                .lines()
                .find_map(|line| line.strip_prefix("subject="))
                .unwrap_or_default()
                .to_owned();
            let expected = match who {
                "none" => "none".to_owned(),
                key => format!("CN=client-{key}"),
            };
            assert!(subject.ends_with(&expected), "{who}: {text}");
            let connection = text
                .lines()
                .find_map(|line| line.strip_prefix("connection="))
                .unwrap_or_default()
                .to_owned();
            assert_eq!(
                outcome.metrics.connection_reused,
                round > 0,
                "{who} {round}"
            );
            if round > 0 {
                assert!(outcome.metrics.tls.is_none() && outcome.metrics.dns.is_none());
                assert_eq!(connections[who], connection, "{who} changed connection");
                let tls = outcome
                    .tls
                    .as_ref()
                    .expect("tls facts of the pooled connection");
                assert_eq!(tls.client_certificate.is_some(), who != "none");
            }
            connections.insert(who.to_owned(), connection.clone());
            all.insert(connection);
        }
    }
    assert_eq!(all.len(), 3, "one connection per identity");
    // Idle connections expire.
    let idle = || {
        Job::builder("GET", server.url("/headers"))
            .keep_alive(true)
            .keep_alive_idle(std::time::Duration::from_millis(100))
            .identity(identity("p384"))
    };
    assert!(!run(&engine, idle()).await.metrics.connection_reused);
    assert!(run(&engine, idle()).await.metrics.connection_reused);
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    assert!(!run(&engine, idle()).await.metrics.connection_reused);
    // The response header limit is set per connection: another limit, another connection.
    let limited = |bytes| {
        Job::builder("GET", server.url("/headers"))
            .keep_alive(true)
            .response_header_limit(bytes)
            .identity(identity("p384"))
    };
    assert!(
        !run(&engine, limited(40_000))
            .await
            .metrics
            .connection_reused
    );
    assert!(
        run(&engine, limited(40_000))
            .await
            .metrics
            .connection_reused
    );
    assert!(
        !run(&engine, limited(50_000))
            .await
            .metrics
            .connection_reused
    );
    // Without keep_alive, every job has its own connection.
    let fresh = run(&engine, Job::builder("GET", server.url("/headers"))).await;
    assert!(!fresh.metrics.connection_reused);
}

/// A plain HTTP/1.1 server that answers the first request of each connection and closes the
/// connection, without a word, when a second one arrives: a pooled connection that died.
async fn closes_on_second_request() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let number = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                    }
                }
                let body = format!("connection={number}");
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = tcp.write_all(answer.as_bytes()).await;
                // The next request (or EOF) ends the connection unanswered.
                let _ = tcp.read(&mut chunk).await;
            });
        }
    });
    (port, connections)
}

#[tokio::test]
async fn a_dead_pooled_connection_is_retried_once_for_idempotent_methods_only() {
    let (port, connections) = closes_on_second_request().await;
    let engine = Engine::new();
    let job = |method: &str| {
        Job::builder(method, format!("http://127.0.0.1:{port}/"))
            .keep_alive(true)
            .http(engine::HttpVersion::Http1)
            .build()
            .expect("job")
    };
    let first = engine.run(job("GET")).await;
    assert_eq!(body(&first), "connection=1", "{}", describe(&first));
    // The pooled connection dies on this request: GET is retried on a fresh one.
    let second = engine.run(job("GET")).await;
    assert_eq!(body(&second), "connection=2", "{}", describe(&second));
    assert!(!second.metrics.connection_reused);
    // POST is not retried.
    let post = engine.run(job("POST")).await;
    assert_eq!(post.kind(), Some("http.protocol"), "{}", describe(&post));
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 2);
}
