//! Engine jobs against the in-process rustls/hyper server: identities, trust, timings,
//! timeouts, limits and secrets.

mod common;

use std::time::Duration;

use common::{STORE, Setup, body, describe, fixture, pair, start, store, trust};
use engine::{Engine, HttpVersion, IdentitySource, Job, Source, TlsVersion, TrustSource};

const PEM: &str = "Fx-pem-5820";

#[tokio::test]
async fn every_format_and_key_type_presents_its_identity() {
    let server = start(Setup::default()).await;
    let engine = Engine::new();
    let mut cases: Vec<(String, IdentitySource)> = Vec::new();
    for key_type in ["rsa2048", "rsa4096", "p256", "p384", "ed25519"] {
        let dir = format!("client/{key_type}");
        for file in [
            "openssl.p12",
            "legacy.p12",
            "des3.p12",
            "nocertenc.p12",
            "keytool.p12",
        ] {
            cases.push((
                key_type.into(),
                store(&format!("{dir}/{file}"), Some(STORE)),
            ));
        }
        cases.push((
            key_type.into(),
            store(&format!("{dir}/empty-password.p12"), Some("")),
        ));
        cases.push((
            key_type.into(),
            store(&format!("{dir}/documented.jks"), Some(STORE)),
        ));
        cases.push((
            key_type.into(),
            store(&format!("{dir}/imported.jceks"), Some(STORE)),
        ));
        cases.push((key_type.into(), store(&format!("{dir}/bundle.pem"), None)));
        cases.push((
            key_type.into(),
            pair(&format!("{dir}/chain.pem"), &format!("{dir}/key.pem"), None),
        ));
        cases.push((
            key_type.into(),
            pair(
                &format!("{dir}/chain.pem"),
                &format!("{dir}/key.enc.pem"),
                Some(PEM),
            ),
        ));
    }
    for (key_type, identity) in cases {
        let label = format!("{identity:?}");
        let job = Job::builder("GET", server.url("/"))
            .identity(identity)
            .trust_store(trust())
            .build()
            .expect("job");
        let outcome = engine.run(job).await;
        assert!(outcome.ok, "{label}: {}", describe(&outcome));
        assert!(
            body(&outcome).contains(&format!("CN=client-{key_type}")),
            "{label}: {}",
            body(&outcome)
        );
        let tls = outcome.tls.as_ref().expect("tls facts");
        assert!(tls.client_certificate_requested && tls.verified);
        assert!(tls.client_certificate.is_some());
    }
}

#[tokio::test]
async fn keytool_generated_keys_work() {
    let server = start(Setup::default()).await;
    let engine = Engine::new();
    for (file, cn) in [
        ("keytool/p256.jks", "kt-p256"),
        ("keytool/p384.jceks", "kt-p384"),
        ("keytool/rsa2048.p12", "kt-rsa2048"),
    ] {
        let job = Job::builder("GET", server.url("/"))
            .identity(store(file, Some(STORE)))
            .trust_store(trust())
            .build()
            .expect("job");
        let outcome = engine.run(job).await;
        assert!(outcome.ok, "{file}: {}", describe(&outcome));
        assert!(body(&outcome).contains(cn), "{file}: {}", body(&outcome));
    }
}

#[tokio::test]
async fn client_certificate_failures_are_classified_on_both_tls_versions() {
    for tls12_only in [false, true] {
        let server = start(Setup {
            tls12_only,
            ..Setup::default()
        })
        .await;
        let engine = Engine::new();
        let cases = [
            (None, "tls.client_cert_required"),
            (
                Some(store("negative/untrusted/openssl.p12", Some(STORE))),
                "tls.client_cert_rejected",
            ),
            (
                Some(store("negative/expired/openssl.p12", Some(STORE))),
                "tls.client_cert_rejected",
            ),
            // The leaf alone: the server knows only the root, so the intermediate must be sent.
            (
                Some(pair(
                    "negative/incomplete/cert.pem",
                    "negative/incomplete/key.pem",
                    None,
                )),
                "tls.client_cert_rejected",
            ),
        ];
        for (identity, kind) in cases {
            let label = format!("tls12_only={tls12_only} {identity:?}");
            let mut builder = Job::builder("GET", server.url("/")).trust_store(trust());
            if let Some(identity) = identity {
                builder = builder.identity(identity);
            }
            let outcome = engine.run(builder.build().expect("job")).await;
            assert_eq!(
                outcome.kind(),
                Some(kind),
                "{label}: {}",
                describe(&outcome)
            );
            let tls = outcome.tls.as_ref().expect("tls facts");
            assert!(tls.client_certificate_requested, "{label}");
            assert!(!tls.acceptable_issuers.is_empty(), "{label}");
            assert!(!tls.server_certificates.is_empty(), "{label}");
            let hint = &outcome.error.as_ref().expect("error").hint;
            let expected = if label.contains("expired") {
                "renew"
            } else {
                "Fixture Root CA"
            };
            assert!(hint.contains(expected), "{label}: {hint}");
        }
    }
}

#[tokio::test]
async fn server_trust_and_names() {
    let server = start(Setup::default()).await;
    let wrong = start(Setup {
        cert: "server/wrongname.pem",
        key: "server/wrongname.key.pem",
        ..Setup::default()
    })
    .await;
    let engine = Engine::new();
    let identity = || store("client/p256/openssl.p12", Some(STORE));

    // System roots do not know the fixture CA; the chain is still reported.
    let job = Job::builder("GET", server.url("/"))
        .identity(identity())
        .build()
        .expect("job");
    let outcome = engine.run(job).await;
    assert_eq!(
        outcome.kind(),
        Some("tls.server_untrusted"),
        "{}",
        describe(&outcome)
    );
    let tls = outcome.tls.as_ref().expect("tls facts");
    assert!(!tls.verified);
    assert!(tls.server_certificates[0].subject.contains("CN=localhost"));

    // The wrong name.
    let job = Job::builder("GET", wrong.url("/"))
        .identity(identity())
        .trust_store(TrustSource {
            source: Source::Path(fixture("ca/chain.pem")),
            password: None,
        })
        .build()
        .expect("job");
    let outcome = engine.run(job).await;
    assert_eq!(
        outcome.kind(),
        Some("tls.hostname_mismatch"),
        "{}",
        describe(&outcome)
    );
    assert!(
        outcome
            .error
            .as_ref()
            .expect("error")
            .hint
            .contains("wrong.example")
    );

    // Insecure: no verification, but the client certificate is still presented.
    let job = Job::builder("GET", wrong.url("/"))
        .identity(identity())
        .insecure(true)
        .build()
        .expect("job");
    let outcome = engine.run(job).await;
    assert!(outcome.ok, "{}", describe(&outcome));
    assert!(body(&outcome).contains("CN=client-p256"));
    assert!(!outcome.tls.as_ref().expect("tls").verified);
    assert!(outcome.warnings.iter().any(|w| w.contains("insecure")));

    // SNI override and a pinned address: the URL names another host.
    let job = Job::builder("GET", format!("https://api.test:{}/", server.port))
        .resolve("api.test", server.port, "127.0.0.1".parse().expect("ip"))
        .sni("localhost")
        .identity(identity())
        .trust_store(trust())
        .build()
        .expect("job");
    let outcome = engine.run(job).await;
    assert!(outcome.ok, "{}", describe(&outcome));
    assert_eq!(
        outcome.tls.as_ref().expect("tls").sni.as_deref(),
        Some("localhost")
    );
}

#[tokio::test]
async fn versions_methods_params_and_bodies() {
    let server = start(Setup::default()).await;
    let engine = Engine::new();
    let base = || {
        Job::builder("GET", server.url("/"))
            .identity(store("client/p256/openssl.p12", Some(STORE)))
            .trust_store(trust())
    };
    let outcome = engine.run(base().build().expect("job")).await;
    let response = outcome.response.as_ref().expect("response");
    assert_eq!(response.http_version, "HTTP/2");
    assert_eq!(
        outcome.tls.as_ref().expect("tls").alpn.as_deref(),
        Some("h2")
    );

    let job = base()
        .http(HttpVersion::Http1)
        .tls_max(TlsVersion::Tls12)
        .build()
        .expect("job");
    let outcome = engine.run(job).await;
    assert_eq!(
        outcome.response.as_ref().expect("response").http_version,
        "HTTP/1.1"
    );
    assert_eq!(
        outcome.tls.as_ref().expect("tls").version.as_deref(),
        Some("TLSv1.2")
    );

    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        let job = Job::builder(method, server.url("/"))
            .identity(store("client/p256/openssl.p12", Some(STORE)))
            .trust_store(trust())
            .param("q", "a b")
            .header("X-Test", "hello")
            .body("payload")
            .build()
            .expect("job");
        let outcome = engine.run(job).await;
        let text = body(&outcome);
        assert!(text.contains(&format!("method={method}")), "{text}");
        assert!(text.contains("query=q=a+b"), "{text}");
        assert!(text.contains("x-test=hello"), "{text}");
        assert!(text.contains("body=payload"), "{text}");
    }
    let job = Job::builder("HEAD", server.url("/"))
        .identity(store("client/p256/openssl.p12", Some(STORE)))
        .trust_store(trust())
        .http(HttpVersion::Http1)
        .build()
        .expect("job");
    let outcome = engine.run(job).await;
    assert!(outcome.ok, "{}", describe(&outcome));
    assert_eq!(outcome.response.as_ref().expect("response").size, 0);

    let job_binary = Job::builder("GET", server.url("/binary"))
        .identity(store("client/p256/openssl.p12", Some(STORE)))
        .trust_store(trust())
        .build()
        .expect("job");
    let outcome = engine.run(job_binary).await;
    let response = outcome.response.as_ref().expect("response");
    assert_eq!(response.body_encoding, "base64");
    let json = serde_json::to_value(&outcome).expect("json");
    assert_eq!(json["response"]["body"], "/wD+");
}

#[tokio::test]
async fn a_300_ms_header_delay_shows_in_wait_and_latency() {
    let server = start(Setup::default()).await;
    let engine = Engine::new();
    let job = Job::builder("GET", server.url("/delay"))
        .identity(store("client/p256/openssl.p12", Some(STORE)))
        .trust_store(trust())
        .build()
        .expect("job");
    let outcome = engine.run(job).await;
    assert!(outcome.ok, "{}", describe(&outcome));
    let m = &outcome.metrics;
    let wait = m.wait.expect("wait");
    assert!((300.0..350.0).contains(&wait), "wait {wait} ms: {m:?}");
    let latency = m.latency.expect("latency");
    let before = m.dns.unwrap_or(0.0) + m.connect.unwrap_or(0.0) + m.tls.unwrap_or(0.0);
    assert!(
        (latency - before - 300.0).abs() < 50.0,
        "latency {latency} ms: {m:?}"
    );
    let json = serde_json::to_value(&outcome).expect("json");
    for name in [
        "dns", "connect", "tls", "send", "wait", "download", "total", "latency", "fetch", "overall",
    ] {
        assert!(
            json["metrics"][name].is_number(),
            "{name}: {}",
            json["metrics"]
        );
    }
    assert!(m.overall >= m.total.expect("total"));
}

#[tokio::test]
async fn every_timeout_has_its_kind() {
    let server = start(Setup::default()).await;
    let engine = Engine::new();
    let base = |path: &str| {
        Job::builder("GET", server.url(path))
            .identity(store("client/p256/openssl.p12", Some(STORE)))
            .trust_store(trust())
    };
    // First byte never comes.
    let job = base("/stall")
        .timeout(Duration::from_millis(400))
        .build()
        .expect("job");
    let outcome = engine.run(job).await;
    assert_eq!(outcome.kind(), Some("timeout"), "{}", describe(&outcome));
    let job = base("/stall")
        .first_byte_timeout(Duration::from_millis(300))
        .build()
        .expect("job");
    let outcome = engine.run(job).await;
    assert_eq!(outcome.kind(), Some("timeout"), "{}", describe(&outcome));
    assert!(outcome.metrics.overall < 2000.0);
    // The body stalls after its first chunk: the head is kept.
    let job = base("/slowbody")
        .timeout(Duration::from_millis(400))
        .build()
        .expect("job");
    let outcome = engine.run(job).await;
    assert_eq!(outcome.kind(), Some("timeout"), "{}", describe(&outcome));
    assert_eq!(outcome.response.as_ref().expect("head").status_code, 200);
    // TCP accepted, TLS never answered.
    let (port, _silent) = common::silent().await;
    let job = Job::builder("GET", format!("https://localhost:{port}/"))
        .connect_timeout(Duration::from_millis(300))
        .build()
        .expect("job");
    let outcome = engine.run(job).await;
    assert_eq!(
        outcome.kind(),
        Some("tls.handshake_timeout"),
        "{}",
        describe(&outcome)
    );
    // TCP never accepted (full accept queue).
    let (port, _fill, _listener) = common::blackhole().await;
    let job = Job::builder("GET", format!("https://127.0.0.1:{port}/"))
        .connect_timeout(Duration::from_millis(300))
        .build()
        .expect("job");
    let outcome = engine.run(job).await;
    assert_eq!(
        outcome.kind(),
        Some("connect.timeout"),
        "{}",
        describe(&outcome)
    );
    // Nothing listens.
    let port = common::peers::free_port();
    let job = Job::builder("GET", format!("https://127.0.0.1:{port}/"))
        .build()
        .expect("job");
    let outcome = engine.run(job).await;
    assert_eq!(
        outcome.kind(),
        Some("connect.refused"),
        "{}",
        describe(&outcome)
    );
}

#[tokio::test]
async fn a_large_body_ends_in_a_clear_error() {
    let server = start(Setup::default()).await;
    let engine = Engine::new();
    let job = Job::builder("GET", server.url("/big?n=100000"))
        .identity(store("client/p256/openssl.p12", Some(STORE)))
        .trust_store(trust())
        .body_limit(1000)
        .build()
        .expect("job");
    let outcome = engine.run(job).await;
    assert_eq!(
        outcome.kind(),
        Some("body.too_large"),
        "{}",
        describe(&outcome)
    );
    let response = outcome.response.as_ref().expect("response");
    assert!(response.truncated);
    assert_eq!(response.size, 1000);
}

#[tokio::test]
async fn keystore_errors_keep_their_kinds() {
    let server = start(Setup::default()).await;
    let engine = Engine::new();
    for (identity, kind) in [
        (
            store("client/p256/openssl.p12", Some("wrong")),
            "keystore.wrong_store_password",
        ),
        (
            store("client/p256/does-not-exist.p12", None),
            "keystore.unreadable",
        ),
        (
            store("negative/garbage/random.bin", None),
            "keystore.unrecognized_format",
        ),
    ] {
        let job = Job::builder("GET", server.url("/"))
            .identity(identity)
            .trust_store(trust())
            .build()
            .expect("job");
        let outcome = engine.run(job).await;
        assert_eq!(outcome.kind(), Some(kind), "{}", describe(&outcome));
    }
}

#[tokio::test]
async fn a_replaced_keystore_is_read_again() {
    let server = start(Setup::default()).await;
    let engine = Engine::new();
    let dir = common::peers::temp_dir("replace");
    let path = dir.join("client.p12");
    let run = |path: std::path::PathBuf| {
        Job::builder("GET", server.url("/"))
            .identity(IdentitySource::Keystore {
                source: Source::Path(path),
                password: Some(STORE.into()),
                key_password: None,
                alias: None,
            })
            .trust_store(trust())
            .build()
            .expect("job")
    };
    std::fs::copy(fixture("client/p256/openssl.p12"), &path).expect("copy");
    let first = engine.run(run(path.clone())).await;
    assert!(
        body(&first).contains("CN=client-p256"),
        "{}",
        describe(&first)
    );
    let again = engine.run(run(path.clone())).await;
    assert!(body(&again).contains("CN=client-p256"));
    // Replace the file (new inode, new size): the next job sees the new identity.
    let replacement = dir.join("next.p12");
    std::fs::copy(fixture("client/rsa2048/openssl.p12"), &replacement).expect("copy");
    std::fs::rename(&replacement, &path).expect("rename");
    // File identities are looked up at most once a millisecond.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let after = engine.run(run(path.clone())).await;
    assert!(
        body(&after).contains("CN=client-rsa2048"),
        "{}",
        describe(&after)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn secrets_never_appear_in_results_or_debug_output() {
    let server = start(Setup::default()).await;
    let engine = Engine::new();
    let secrets = [
        STORE,
        "Fx-key-9265",
        PEM,
        "Bearer sekr1t-b3arer-t0ken",
        "sekr1t-b3arer-t0ken",
        "session=c00kie-jar-v4lue",
        "c00kie-jar-v4lue",
        "url-pa55w0rd",
        "pr0xy-pa55w0rd",
        // base64 of "proxy-user:pr0xy-pa55w0rd" (the Proxy-Authorization token).
        "cHJveHktdXNlcjpwcjB4eS1wYTU1dzByZA",
    ];
    let in_memory = std::fs::read(fixture("client/p384/openssl.p12")).expect("fixture");
    let jobs = vec![
        // Succeeds.
        Job::builder("POST", server.url("/"))
            .identity(store("client/p256/openssl.p12", Some(STORE)))
            .header("Authorization", "Bearer sekr1t-b3arer-t0ken")
            .header("Cookie", "session=c00kie-jar-v4lue")
            .trust_store(trust()),
        // Succeeds, key bytes in memory.
        Job::builder(
            "GET",
            format!("https://user:url-pa55w0rd@localhost:{}/", server.port),
        )
        .identity(IdentitySource::Keystore {
            source: Source::Bytes(in_memory.into()),
            password: Some(STORE.into()),
            key_password: Some(STORE.into()),
            alias: None,
        })
        .header("Cookie", "session=c00kie-jar-v4lue")
        .trust_store(trust()),
        // Encrypted PEM key.
        Job::builder("GET", server.url("/"))
            .identity(pair(
                "client/p256/chain.pem",
                "client/p256/key.enc.pem",
                Some(PEM),
            ))
            .header("Authorization", "Bearer sekr1t-b3arer-t0ken")
            .trust_store(trust()),
        // Fails: wrong key password.
        Job::builder("GET", server.url("/"))
            .identity(IdentitySource::Keystore {
                source: Source::Path(fixture("keytool/rsa2048-keypass.jks")),
                password: Some(STORE.into()),
                key_password: Some("Fx-key-9265-wrong".into()),
                alias: None,
            })
            .trust_store(trust()),
        // Fails in TLS.
        Job::builder("GET", server.url("/"))
            .header("Authorization", "Bearer sekr1t-b3arer-t0ken")
            .trust_store(trust()),
        // Fails at a proxy with credentials (nothing listens on port 1).
        Job::builder("GET", server.url("/"))
            .identity(store("client/p256/openssl.p12", Some(STORE)))
            .proxy(engine::ProxyRules::all(
                engine::Proxy::parse("http://proxy-user:pr0xy-pa55w0rd@127.0.0.1:1")
                    .expect("proxy"),
            ))
            .trust_store(trust()),
        // Through reference rules with credentials (and to a direct host).
        Job::builder("GET", server.url("/"))
            .proxy(
                engine::ProxyRules::from_reference_json(
                    r#"{"*":{"address":"127.0.0.1","port":1,"username":"proxy-user",
                             "password":"pr0xy-pa55w0rd"},"localhost":{"address":"NONE"}}"#,
                )
                .expect("rules"),
            )
            .trust_store(trust()),
    ];
    for builder in jobs {
        let job = builder.build().expect("job");
        let job_debug = format!("{job:?}");
        let outcome = engine.run(job).await;
        let texts = [
            job_debug,
            format!("{outcome:?}"),
            serde_json::to_string(&outcome).expect("json"),
            outcome
                .failure
                .as_ref()
                .map(|e| format!("{e} {e:?} {}", e.hint()))
                .unwrap_or_default(),
        ];
        for text in &texts {
            for secret in secrets {
                assert!(!text.contains(secret), "{secret} leaked in: {text}");
            }
        }
    }
}
