//! Engine jobs against independent peers started by the test: `openssl s_server` (handshake
//! rejection, TLS 1.2 and 1.3) and nginx (`ssl_verify_client on`, a client CA per SNI name,
//! HTTP/2). Skipped with a loud message when a peer is missing, unless `CI` is set.

mod common;

use common::peers::{self, Tls};
use common::{STORE, body, describe, pair, store, trust, trust_from};
use engine::{Engine, HttpVersion, IdentitySource, Job, Outcome};

async fn run(engine: &Engine, url: String, identity: Option<IdentitySource>) -> Outcome {
    let mut builder = Job::builder("GET", url).trust_store(trust());
    if let Some(identity) = identity {
        builder = builder.identity(identity);
    }
    engine.run(builder.build().expect("job")).await
}

#[tokio::test]
async fn openssl_s_server_accepts_and_rejects_at_the_handshake() {
    for tls in [Tls::V12, Tls::V13] {
        // Trusts only the root: the intermediate must be sent by the client.
        let Some(server) = peers::s_server(tls, "ca/root.pem") else {
            return;
        };
        let engine = Engine::new();
        let url = format!("https://localhost:{}/", server.port);
        for (file, cn) in [
            ("client/p256/openssl.p12", "client-p256"),
            ("client/rsa4096/documented.jks", "client-rsa4096"),
            ("client/ed25519/imported.jceks", "client-ed25519"),
            ("client/p384/legacy.p12", "client-p384"),
        ] {
            let outcome = run(&engine, url.clone(), Some(store(file, Some(STORE)))).await;
            assert!(
                outcome.ok,
                "{tls:?} {file}: {}\n{}",
                describe(&outcome),
                server.log()
            );
            assert!(body(&outcome).contains(cn), "{tls:?} {file}");
            let version = outcome.tls.as_ref().and_then(|t| t.version.clone());
            let expected = if tls == Tls::V12 {
                "TLSv1.2"
            } else {
                "TLSv1.3"
            };
            assert_eq!(version.as_deref(), Some(expected));
        }
        let pem = pair(
            "client/rsa2048/chain.pem",
            "client/rsa2048/key.pkcs1.pem",
            None,
        );
        let outcome = run(&engine, url.clone(), Some(pem)).await;
        assert!(
            body(&outcome).contains("client-rsa2048"),
            "{}",
            describe(&outcome)
        );
        for (identity, kind, alert) in [
            (None, "tls.client_cert_required", ""),
            (
                Some(store("negative/untrusted/openssl.p12", Some(STORE))),
                "tls.client_cert_rejected",
                "unknown_ca",
            ),
            (
                Some(store("negative/expired/openssl.p12", Some(STORE))),
                "tls.client_cert_rejected",
                "certificate_expired",
            ),
            (
                Some(pair(
                    "negative/incomplete/cert.pem",
                    "negative/incomplete/key.pem",
                    None,
                )),
                "tls.client_cert_rejected",
                "unknown_ca",
            ),
        ] {
            let label = format!("{tls:?} {identity:?}");
            let outcome = run(&engine, url.clone(), identity).await;
            assert_eq!(
                outcome.kind(),
                Some(kind),
                "{label}: {}",
                describe(&outcome)
            );
            let error = outcome.error.as_ref().expect("error");
            assert!(error.message.contains(alert), "{label}: {}", error.message);
            let tls_facts = outcome.tls.as_ref().expect("tls facts");
            assert!(tls_facts.client_certificate_requested, "{label}");
            assert!(
                tls_facts
                    .acceptable_issuers
                    .iter()
                    .any(|i| i.contains("Fixture Root CA")),
                "{label}: {:?}",
                tls_facts.acceptable_issuers
            );
            assert_eq!(tls_facts.server_certificates.len(), 2, "{label}");
        }
    }
}

#[tokio::test]
async fn nginx_checks_client_certificates_per_sni_name_over_http2() {
    let Some(server) = peers::nginx() else {
        return;
    };
    let engine = Engine::new();
    let port = server.port;
    let url = |host: &str| format!("https://{host}:{port}/");
    let pinned = |host: &str, identity: Option<IdentitySource>| {
        let mut builder = Job::builder("GET", url(host))
            .resolve(host, port, "127.0.0.1".parse().expect("ip"))
            .trust_store(trust());
        if let Some(identity) = identity {
            builder = builder.identity(identity);
        }
        builder
    };

    // a.localhost trusts the fixture CA.
    let job = pinned(
        "a.localhost",
        Some(store("client/p256/openssl.p12", Some(STORE))),
    )
    .build();
    let outcome = engine.run(job.expect("job")).await;
    assert!(outcome.ok, "{}\n{}", describe(&outcome), server.log());
    let text = body(&outcome);
    assert!(
        text.contains("server=a") && text.contains("CN=client-p256"),
        "{text}"
    );
    assert!(text.contains("verify=SUCCESS"), "{text}");
    assert_eq!(
        outcome.response.as_ref().expect("response").http_version,
        "HTTP/2"
    );
    let tls = outcome.tls.as_ref().expect("tls");
    assert!(
        tls.acceptable_issuers
            .iter()
            .any(|i| i.contains("Fixture Root CA"))
    );

    // HTTP/1.1 when asked.
    let job = pinned(
        "a.localhost",
        Some(store("client/rsa2048/openssl.p12", Some(STORE))),
    )
    .http(HttpVersion::Http1)
    .build();
    let outcome = engine.run(job.expect("job")).await;
    assert_eq!(
        outcome.response.as_ref().expect("response").http_version,
        "HTTP/1.1"
    );
    assert!(body(&outcome).contains("protocol=HTTP/1.1"));

    // nginx answers with an error page instead of failing the handshake: a response and a
    // warning that says why.
    for (identity, page) in [
        (None, "No required SSL certificate was sent"),
        (
            Some(store("negative/untrusted/openssl.p12", Some(STORE))),
            "The SSL certificate error",
        ),
        (
            Some(store("negative/expired/openssl.p12", Some(STORE))),
            "The SSL certificate error",
        ),
    ] {
        let label = format!("{identity:?}");
        let outcome = engine
            .run(pinned("a.localhost", identity).build().expect("job"))
            .await;
        assert!(outcome.ok, "{label}: {}", describe(&outcome));
        assert_eq!(
            outcome.response.as_ref().expect("response").status_code,
            400
        );
        assert!(
            outcome.warnings.iter().any(|w| w.contains(page)),
            "{label}: {:?}",
            outcome.warnings
        );
    }

    // b.localhost trusts only the other root: it names that CA, and rejects ours.
    let job = pinned(
        "b.localhost",
        Some(store("client/p256/openssl.p12", Some(STORE))),
    )
    .build();
    let outcome = engine.run(job.expect("job")).await;
    let tls = outcome.tls.as_ref().expect("tls");
    assert!(
        tls.acceptable_issuers
            .iter()
            .all(|i| i.contains("Untrusted Root CA")),
        "{:?}",
        tls.acceptable_issuers
    );
    assert_eq!(
        outcome.response.as_ref().expect("response").status_code,
        400
    );
    let warning = outcome.warnings.join("\n");
    assert!(
        warning.contains("Untrusted Root CA") && warning.contains("Fixture"),
        "{warning}"
    );
    let job = pinned(
        "b.localhost",
        Some(pair(
            "negative/untrusted/chain.pem",
            "negative/untrusted/key.pem",
            None,
        )),
    )
    .build();
    let outcome = engine.run(job.expect("job")).await;
    let text = body(&outcome);
    assert!(
        text.contains("server=b") && text.contains("client-untrusted"),
        "{text}"
    );
}

#[tokio::test]
async fn nginx_redirects_keep_the_certificate_at_home_and_decode_gzip() {
    let Some(server) = peers::nginx() else {
        return;
    };
    let engine = Engine::new();
    let port = server.port;
    let job = |method: &str, path: &str| {
        let mut builder = Job::builder(method, format!("https://a.localhost:{port}{path}"))
            .identity(store("client/p256/openssl.p12", Some(STORE)))
            .header("Authorization", "Bearer t0k")
            .header("Cookie", "c=1")
            .trust_store(trust());
        for host in ["a.localhost", "b.localhost"] {
            builder = builder.resolve(host, port, "127.0.0.1".parse().expect("ip"));
        }
        builder
    };
    for code in [301, 302, 303, 307, 308] {
        let outcome = engine
            .run(job("GET", &format!("/r{code}")).build().expect("job"))
            .await;
        assert!(
            outcome.ok,
            "{code}: {}\n{}",
            describe(&outcome),
            server.log()
        );
        assert_eq!(outcome.metrics.redirects, 1);
        assert_eq!(outcome.redirects()[0].status_code, code);
        assert!(body(&outcome).contains("server=a") && body(&outcome).contains("CN=client-p256"));
        // POST is not followed unless asked; 303 then turns into GET, 307 keeps POST.
        let post = job("POST", &format!("/r{code}")).body("x");
        let outcome = engine.run(post.clone().build().expect("job")).await;
        assert_eq!(outcome.response.as_ref().map(|r| r.status_code), Some(code));
        let outcome = engine
            .run(post.follow_redirects(true).build().expect("job"))
            .await;
        let method = if code == 303 { "GET" } else { "POST" };
        assert!(
            body(&outcome).contains(&format!("method={method}")),
            "{code}: {}",
            describe(&outcome)
        );
    }
    let looped = engine.run(job("GET", "/loop").build().expect("job")).await;
    assert_eq!(looped.kind(), Some("redirect.limit"));
    // From the mTLS host to another host: no certificate there. b.localhost requires one
    // from another CA, so nginx's page tells which case it was ("No required SSL
    // certificate" = none was sent; ours would have been "The SSL certificate error").
    let away = engine.run(job("GET", "/away").build().expect("job")).await;
    let text = body(&away);
    assert!(
        text.contains("No required SSL certificate was sent"),
        "{}",
        describe(&away)
    );
    assert!(
        away.tls
            .as_ref()
            .is_some_and(|tls| tls.client_certificate.is_none())
    );
    assert!(away.redirects()[0].identity);
    // gzip from nginx, decoded because the engine asked.
    let gz = engine.run(job("GET", "/gz").build().expect("job")).await;
    let response = gz.response.as_ref().expect("response");
    assert_eq!(
        response.decoded.as_deref(),
        Some("gzip"),
        "{}",
        describe(&gz)
    );
    assert!(body(&gz).starts_with("gzip gzip"));
    assert!(response.size < response.body.len() as u64);
}

#[tokio::test]
async fn a_server_without_its_intermediate_is_explained() {
    let Some(server) = peers::s_server_without_intermediate(Tls::V13, "ca/root.pem") else {
        return;
    };
    let engine = Engine::new();
    let outcome = run(
        &engine,
        format!("https://localhost:{}/", server.port),
        Some(store("client/p256/openssl.p12", Some(STORE))),
    )
    .await;
    assert_eq!(
        outcome.kind(),
        Some("tls.server_untrusted"),
        "{}",
        describe(&outcome)
    );
    let hint = &outcome.error.as_ref().expect("error").hint;
    assert!(
        hint.contains("without the intermediate CA") && hint.contains("Intermediate"),
        "{hint}"
    );
    let tls = outcome.tls.as_ref().expect("tls facts");
    assert_eq!(tls.server_certificates.len(), 1, "{}", describe(&outcome));
    // Trusting the intermediate as well completes the chain on our side.
    let job = Job::builder("GET", format!("https://localhost:{}/", server.port))
        .identity(store("client/p256/openssl.p12", Some(STORE)))
        .trust_store(trust_from("ca/chain.pem"))
        .build()
        .expect("job");
    let outcome = engine.run(job).await;
    assert!(outcome.ok, "{}", describe(&outcome));
}
