//! The job API end to end over real HTTPS: zero-config start, authentication, single and batch
//! jobs, unknown config names, templates, health, metrics, back-pressure and graceful shutdown.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use agent::{Agent, Config};
use serde_json::json;
use support::upstream;
use support::{APIKEY, SECRET, STORE, basic};

fn with_identity(url: &str) -> serde_json::Value {
    json!({"url": url, "config": {"client_cert_configuration": {
        "keystoreBase64": base64_fixture("client/p256/openssl.p12"), "keystorePassword": STORE}}})
}

fn base64_fixture(path: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(support::fixture(path)).expect("fixture"))
}

#[tokio::test]
async fn zero_config_generates_identity_and_credentials_once() {
    let data = support::temp_dir("zero");
    let mut config = Config::defaults(data.clone());
    config.listen = "127.0.0.1:0".parse().expect("address");
    let agent = Agent::build(config.clone())
        .await
        .expect("zero-config build");
    let first = agent.started().clone();
    assert!(first.identity_generated && first.https);
    let secret = first
        .new_secret
        .clone()
        .expect("the secret is shown on first start");
    assert!(secret.len() >= 32 && first.apikey.len() == 32);
    let fingerprint = first.fingerprint.clone().expect("fingerprint");
    assert_eq!(fingerprint.split(':').count(), 32);
    for file in ["agent-cert.pem", "agent-key.pem", "credentials.json"] {
        let mode = std::fs::metadata(data.join(file))
            .expect(file)
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    // It serves, and the generated credentials work.
    let listener = agent.bind().await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(agent.serve(listener, async move {
        let _ = rx.await;
    }));
    let client = engine::Engine::new();
    let outcome = client
        .run(
            engine::Job::builder("GET", format!("https://127.0.0.1:{port}/metrics"))
                .insecure(true)
                .header("Authorization", basic(&first.apikey, &secret))
                .build()
                .expect("job"),
        )
        .await;
    assert_eq!(outcome.response.map(|r| r.status_code), Some(200));
    let served = outcome
        .tls
        .and_then(|tls| tls.server_certificates.first().map(|c| c.sha256.clone()));
    assert_eq!(
        served.map(|hex| hex.to_ascii_uppercase()),
        Some(fingerprint.replace(':', ""))
    );
    let _ = tx.send(());
    let _ = task.await;
    // The second start reuses both and shows no secret.
    let again = Agent::build(config).await.expect("second build");
    assert!(!again.started().identity_generated);
    assert!(again.started().new_secret.is_none());
    assert_eq!(
        again.started().fingerprint.as_deref(),
        Some(fingerprint.as_str())
    );
    assert_eq!(again.started().apikey, first.apikey);
}

#[tokio::test]
async fn wrong_or_missing_credentials_get_401_and_run_nothing() {
    let server = upstream::start().await;
    let agent = support::start(support::config()).await;
    let body = json!({"url": server.url("/")}).to_string();
    for auth in [
        None,
        Some(basic("wrong", SECRET)),
        Some(basic(APIKEY, "wrong")),
        Some(basic(APIKEY, "")),
        Some("Bearer x".to_owned()),
        Some("Basic !!!".to_owned()),
    ] {
        let reply = agent
            .request("POST", "/api/v1/jobs", auth.as_deref(), &body)
            .await;
        assert_eq!(reply.status, 401, "{auth:?}: {}", reply.text);
        assert_eq!(reply.json()["error"]["kind"], "api.unauthorized");
        assert!(reply.headers.contains("www-authenticate"));
    }
    let reply = agent.request("GET", "/metrics", None, "").await;
    assert_eq!(reply.status, 401);
    let metrics = agent.metrics().await;
    assert!(
        !metrics.contains("downloader_jobs_total{"),
        "a job ran:\n{metrics}"
    );
    agent.stop().await;
}

#[tokio::test]
async fn single_and_batch_jobs_return_results_in_order() {
    let server = upstream::start().await;
    let agent = support::start(support::config()).await;
    let single = agent.jobs(&with_identity(&server.url("/one"))).await;
    assert_eq!(single["ok"], true, "{single}");
    assert_eq!(single["response"]["statusCode"], 200);
    assert!(single["metrics"]["latency"].is_number() && single["metrics"]["overall"].is_number());
    let mut jobs = Vec::new();
    for n in 0..5 {
        let mut job = with_identity(&server.url(if n == 2 { "/delay" } else { "/" }));
        job["id"] = json!(format!("job-{n}"));
        job["params"] = json!({"n": n});
        jobs.push(job);
    }
    jobs.push(json!({"id": "bad", "url": "ftp://nowhere/"}));
    jobs.push(json!({"id": "typo", "url": server.url("/"), "config": {"follow_redirect": false}}));
    let results = agent.jobs(&json!(jobs)).await;
    let results = results.as_array().expect("array");
    assert_eq!(results.len(), 7);
    for (n, result) in results.iter().take(5).enumerate() {
        assert_eq!(result["id"], format!("job-{n}"));
        assert_eq!(result["ok"], true, "{result}");
        if n != 2 {
            assert!(
                result["response"]["body"]
                    .as_str()
                    .unwrap_or("")
                    .contains(&format!("query=n={n}"))
            );
        }
    }
    assert_eq!(results[5]["error"]["kind"], "request.invalid");
    assert_eq!(results[6]["error"]["kind"], "request.invalid");
    let message = results[6]["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("follow_redirect") && message.contains("follow_redirects"),
        "{message}"
    );
    assert!(message.contains("keep_alive_idle"), "{message}");
    agent.stop().await;
}

#[tokio::test]
async fn templates_resolve_from_vars_and_unresolved_names_fail() {
    let server = upstream::start().await;
    let agent = support::start(support::config()).await;
    let result = agent
        .jobs(&json!({
            "method": "POST",
            "url": "https://${host}:${port}/t",
            "params": {"q": "${q}"},
            "headers": {"X-Test": "${h}"},
            "body": "hello ${who}",
            "config": {"timeout": "${t}", "footprint": "/t/[${q}]",
                       "client_cert_configuration": "{\"keystoreBase64\":\"${ks}\",\"keystorePassword\":\"${pw}\"}"},
            "vars": {"host": "localhost", "port": server.port, "q": "v1", "h": "hv", "who": "world",
                     "t": 5, "ks": base64_fixture("client/p256/openssl.p12"), "pw": STORE}
        }))
        .await;
    assert_eq!(result["ok"], true, "{result}");
    let body = result["response"]["body"].as_str().unwrap_or("");
    assert!(
        body.contains("query=q=v1")
            && body.contains("x-test=hv")
            && body.contains("body=hello world"),
        "{body}"
    );
    assert_eq!(result["footprint"], "/t/[v1]");
    assert_eq!(result["tls"]["clientCertificate"]["source"], "job");
    let result = agent.jobs(&json!({"url": "https://${nope}/"})).await;
    assert_eq!(result["error"]["kind"], "request.invalid");
    assert!(
        result["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("'nope'")
    );
    agent.stop().await;
}

#[tokio::test]
async fn redirects_forms_multipart_keep_alive_and_proxies() {
    let server = upstream::start().await;
    let agent = support::start(support::config()).await;
    let job = |path: &str, config: serde_json::Value| {
        let mut job = with_identity(&server.url(path));
        if let (Some(target), Some(extra)) = (job["config"].as_object_mut(), config.as_object()) {
            target.extend(extra.clone());
        }
        job
    };
    // GET follows redirects by default, as the reference system did; false stops at the 302.
    let result = agent.jobs(&job("/redirect", json!({}))).await;
    assert_eq!(result["response"]["statusCode"], 200, "{result}");
    assert!(
        result["response"]["body"]
            .as_str()
            .unwrap_or("")
            .contains("path=/after-redirect")
    );
    let result = agent
        .jobs(&job(
            "/redirect",
            json!({"follow_redirects": "false", "max_redirects": 3}),
        ))
        .await;
    assert_eq!(result["response"]["statusCode"], 302, "{result}");
    let result = agent
        .jobs(&job("/redirect", json!({"max_redirects": 0})))
        .await;
    assert_eq!(result["error"]["kind"], "redirect.limit", "{result}");
    // Forms and multipart bodies.
    let mut form = job("/", json!({"keep_alive": true}));
    form["method"] = json!("POST");
    form["body"] = json!({"form": {"a": "1 2", "b": ["x", "${v}"]}});
    form["vars"] = json!({"v": "y"});
    let result = agent.jobs(&form).await;
    let body = result["response"]["body"].as_str().unwrap_or("");
    assert!(
        body.contains("content-type=application/x-www-form-urlencoded"),
        "{body}"
    );
    assert!(body.contains("body=a=1+2&b=x&b=y"), "{body}");
    let mut upload = job("/", json!({}));
    upload["method"] = json!("POST");
    upload["body"] = json!({"multipart": [
        {"name": "field", "value": "text"},
        {"name": "file", "base64": "aGVsbG8=", "filename": "a.txt", "contentType": "text/plain"}
    ]});
    let result = agent.jobs(&upload).await;
    let body = result["response"]["body"].as_str().unwrap_or("");
    assert!(
        body.contains("content-type=multipart/form-data; boundary="),
        "{body}"
    );
    assert!(
        body.contains("filename=\"a.txt\"") && body.contains("hello"),
        "{body}"
    );
    // keep_alive_idle: how long the connection waits for the next job.
    let kept = job("/", json!({"keep_alive": true, "keep_alive_idle": 30}));
    agent.jobs(&kept).await;
    let result = agent.jobs(&kept).await;
    assert_eq!(result["metrics"]["connectionReused"], true, "{result}");
    let brief = job("/", json!({"keep_alive": true, "keep_alive_idle": "0.05"}));
    agent.jobs(&brief).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let result = agent.jobs(&brief).await;
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["metrics"]["connectionReused"], false, "{result}");
    for idle in [json!(0), json!(-1), json!("soon")] {
        let result = agent
            .jobs(&job(
                "/",
                json!({"keep_alive": true, "keep_alive_idle": idle}),
            ))
            .await;
        assert_eq!(result["error"]["kind"], "request.invalid", "{result}");
        let message = result["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains("config.keep_alive_idle"), "{message}");
    }
    // A proxy that is not there; null means direct.
    let result = agent
        .jobs(&job("/", json!({"proxy": "http://127.0.0.1:1"})))
        .await;
    assert_eq!(result["error"]["kind"], "proxy.unreachable", "{result}");
    let result = agent.jobs(&job("/", json!({"proxy": null}))).await;
    assert_eq!(result["ok"], true, "{result}");
    let result = agent
        .jobs(&json!({"url": server.url("/"), "body": {"multipart": [{"name": "x"}]}}))
        .await;
    assert_eq!(result["error"]["kind"], "request.invalid");
    agent.stop().await;
}

#[tokio::test]
async fn proxy_configuration_applies_to_jobs_without_their_own() {
    let server = upstream::start().await;
    let mut config = support::config();
    config.proxy_rules = engine::ProxyRules::from_reference_json(
        r#"{"*": {"address": "127.0.0.1", "port": 1}, "127.0.0.1": {"address": "NONE"}}"#,
    )
    .expect("rules");
    let agent = support::start(config).await;
    let result = agent.jobs(&with_identity(&server.url("/"))).await;
    assert_eq!(result["error"]["kind"], "proxy.unreachable", "{result}");
    let direct = format!("https://127.0.0.1:{}/", server.port);
    let result = agent.jobs(&with_identity(&direct)).await;
    assert_eq!(result["ok"], true, "{result}");
    let result = agent
        .jobs(&json!({"url": server.url("/"), "config": {"proxy": null,
            "client_cert_configuration": {"keystoreBase64": base64_fixture("client/p256/openssl.p12"), "keystorePassword": STORE}}}))
        .await;
    assert_eq!(result["ok"], true, "{result}");
    agent.stop().await;
}

#[tokio::test]
async fn health_needs_no_auth_and_metrics_parse() {
    let server = upstream::start().await;
    let mut config = support::config();
    config.default_cert = Some(agent::config::CertRef {
        path: support::fixture("client/rsa2048/openssl.p12"),
        password: Some(keystore::Password::new(STORE)),
        key_password: None,
        alias: None,
    });
    let agent = support::start(config).await;
    let health = agent.request("GET", "/health", None, "").await;
    assert_eq!(health.status, 200);
    let health = health.json();
    assert_eq!(health["status"], "ok");
    assert!(health["version"].is_string() && health["uptimeSeconds"].is_number());
    agent.jobs(&json!({"url": server.url("/")})).await;
    agent.jobs(&json!({"url": "https://localhost:1/"})).await;
    let text = agent.metrics().await;
    let mut samples = 0;
    for line in text.lines() {
        if line.starts_with('#') {
            assert!(
                line.starts_with("# HELP ") || line.starts_with("# TYPE "),
                "{line}"
            );
            continue;
        }
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line}"));
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        assert!(name.starts_with("downloader_"), "{line}");
        if let Some(labels) = name.split_once('{').map(|(_, rest)| rest) {
            assert!(labels.ends_with('}'), "{line}");
        }
        samples += 1;
    }
    assert!(samples > 20, "{text}");
    assert!(
        text.contains("downloader_jobs_total{outcome=\"ok\",kind=\"\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("downloader_jobs_total{outcome=\"error\",kind=\"connect.refused\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("downloader_job_phase_seconds_bucket{phase=\"tls\",le=\"+Inf\"} 1"),
        "{text}"
    );
    assert!(
        text.lines().any(|line| line.starts_with(
            "downloader_certificate_expiry_timestamp_seconds{kind=\"identity\",source=\"default\""
        ) && line.contains("CN=client-rsa2048")),
        "{text}"
    );
    assert!(
        text.contains("kind=\"trust_anchor\",source=\"trust\""),
        "{text}"
    );
    assert!(text.contains("downloader_jobs_in_flight 0"));
    agent.stop().await;
}

#[tokio::test]
async fn over_the_queue_limit_new_jobs_get_503() {
    let server = upstream::start().await;
    let mut config = support::config();
    config.max_jobs = 1;
    config.queue_limit = 1;
    let agent = std::sync::Arc::new(support::start(config).await);
    let slow = with_identity(&server.url("/delay"));
    let busy = {
        let agent = agent.clone();
        let batch = json!([slow.clone(), slow.clone()]);
        tokio::spawn(async move { agent.jobs(&batch).await })
    };
    agent.wait_for_metric("downloader_jobs_queued 1").await;
    let reply = agent
        .request(
            "POST",
            "/api/v1/jobs",
            Some(&basic(APIKEY, SECRET)),
            &slow.to_string(),
        )
        .await;
    assert_eq!(reply.status, 503, "{}", reply.text);
    assert_eq!(reply.headers.get("retry-after").as_deref(), Some("1"));
    assert_eq!(reply.json()["error"]["kind"], "api.overloaded");
    let results = busy.await.expect("batch task");
    assert!(
        results
            .as_array()
            .is_some_and(|all| all.iter().all(|r| r["ok"] == true)),
        "{results}"
    );
    // Capacity is back.
    let after = agent.jobs(&slow).await;
    assert_eq!(after["ok"], true);
    assert!(
        agent
            .metrics()
            .await
            .contains("downloader_jobs_refused_total 1")
    );
}

#[tokio::test]
async fn shutdown_finishes_an_in_flight_slow_job() {
    let server = upstream::start().await;
    let mut agent = support::start(support::config()).await;
    let port = agent.port;
    let slow = with_identity(&server.url("/delay"));
    let client = std::sync::Arc::new(engine::Engine::new());
    let request = engine::Job::builder("POST", format!("https://127.0.0.1:{port}/api/v1/jobs"))
        .insecure(true)
        .header("Authorization", basic(APIKEY, SECRET))
        .body(slow.to_string())
        .build()
        .expect("job");
    let in_flight = {
        let client = client.clone();
        tokio::spawn(async move { client.run(request).await })
    };
    agent.wait_for_metric("downloader_jobs_in_flight 1").await;
    let task = agent.begin_shutdown().expect("running");
    let outcome = in_flight.await.expect("request task");
    let response = outcome.response.expect("the in-flight job got its answer");
    assert_eq!(response.status_code, 200);
    let result: serde_json::Value =
        serde_json::from_str(response.body.text().unwrap_or("")).expect("json");
    assert_eq!(result["ok"], true, "{result}");
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the agent stops after draining")
        .expect("clean exit");
    // No new connections after shutdown.
    let refused = client
        .run(
            engine::Job::builder("GET", format!("https://127.0.0.1:{port}/health"))
                .insecure(true)
                .build()
                .expect("job"),
        )
        .await;
    assert_eq!(refused.kind(), Some("connect.refused"));
}

#[tokio::test]
async fn check_loads_every_keystore_and_names_the_broken_setting() {
    let mut config = support::config();
    config.default_cert = Some(agent::config::CertRef {
        path: support::fixture("client/p256/documented.jks"),
        password: Some(keystore::Password::new(STORE)),
        key_password: None,
        alias: None,
    });
    let lines = Agent::check(&config).await.expect("valid configuration");
    assert!(
        lines
            .iter()
            .any(|line| line.contains("client_cert_configuration") && line.contains("client-p256")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line.contains("DOWNLOADER_TRUST_STORE")),
        "{lines:?}"
    );
    config.client_certs = vec![agent::config::HostRule {
        hosts: vec![agent::config::HostPattern::parse("api.test").expect("pattern")],
        cert: agent::config::CertRef {
            path: support::fixture("client/p256/openssl.p12"),
            password: Some(keystore::Password::new("not-the-password")),
            key_password: None,
            alias: None,
        },
    }];
    let error = Agent::check(&config).await.expect_err("wrong password");
    let message = error.to_string();
    assert!(message.starts_with("client_certs[0]: "), "{message}");
    assert!(
        !message.contains("not-the-password") && !message.contains('\n'),
        "{message}"
    );
    // Building fails the same way, before any port is bound.
    assert!(Agent::build(config).await.is_err());
}

#[tokio::test]
async fn engine_client_certificates_can_be_required() {
    let mut config = support::config();
    config.engine_client_ca = Some(support::fixture("ca/root.pem"));
    let agent = support::start(config).await;
    let client = engine::Engine::new();
    let health = |identity: Option<engine::IdentitySource>| {
        let mut builder = engine::Job::builder("GET", agent.url("/health")).insecure(true);
        if let Some(identity) = identity {
            builder = builder.identity(identity);
        }
        builder.build().expect("job")
    };
    let without = client.run(health(None)).await;
    assert!(without.response.is_none(), "{without:?}");
    let with = client
        .run(health(Some(engine::IdentitySource::Keystore {
            source: engine::Source::Path(support::fixture("client/p256/openssl.p12")),
            password: Some(keystore::Password::new(STORE)),
            key_password: None,
            alias: None,
        })))
        .await;
    assert_eq!(with.response.map(|r| r.status_code), Some(200));
    agent.stop().await;
}

#[tokio::test]
async fn a_configured_keystore_is_the_agents_identity() {
    let mut config = support::config();
    config.tls_keystore = Some(agent::config::CertRef {
        path: support::fixture("client/p256/documented.jks"),
        password: Some(keystore::Password::new(STORE)),
        key_password: None,
        alias: None,
    });
    let data_dir = config.data_dir.clone();
    let agent = support::start(config).await;
    let client = engine::Engine::new();
    let outcome = client
        .run(
            engine::Job::builder("GET", agent.url("/health"))
                .insecure(true)
                .build()
                .expect("job"),
        )
        .await;
    let served = outcome
        .tls
        .and_then(|tls| tls.server_certificates.first().map(|c| c.subject.clone()));
    assert!(served.is_some_and(|subject| subject.contains("CN=client-p256")));
    assert!(
        !data_dir.join("agent-key.pem").exists(),
        "nothing generated"
    );
    agent.stop().await;
}

#[tokio::test]
async fn use_ssl_false_serves_plain_http() {
    let server = upstream::start().await;
    let mut config = support::config();
    config.use_ssl = false;
    let agent = Agent::build(config).await.expect("build");
    assert!(!agent.started().https && agent.started().fingerprint.is_none());
    let listener = agent.bind().await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(agent.serve(listener, async move {
        let _ = rx.await;
    }));
    let job = with_identity(&server.url("/")).to_string();
    let outcome = engine::Engine::new()
        .run(
            engine::Job::builder("POST", format!("http://127.0.0.1:{port}/api/v1/jobs"))
                .header("Authorization", basic(APIKEY, SECRET))
                .body(job)
                .build()
                .expect("job"),
        )
        .await;
    let response = outcome.response.expect("answer");
    assert_eq!(response.status_code, 200);
    assert!(response.body.text().unwrap_or("").contains("\"ok\":true"));
    let _ = tx.send(());
    let _ = task.await;
}

#[tokio::test]
async fn oversized_requests_are_refused_after_authentication() {
    let mut config = support::config();
    config.max_body = 1000;
    let agent = support::start(config).await;
    let big = json!({"url": "https://localhost:1/", "body": "x".repeat(2000)}).to_string();
    let reply = agent.request("POST", "/api/v1/jobs", None, &big).await;
    assert_eq!(reply.status, 401, "{}", reply.text);
    let reply = agent
        .request("POST", "/api/v1/jobs", Some(&basic(APIKEY, SECRET)), &big)
        .await;
    assert_eq!(reply.status, 413, "{}", reply.text);
    assert_eq!(reply.json()["error"]["kind"], "api.body");
    let reply = agent
        .request("POST", "/api/v1/jobs", Some(&basic(APIKEY, SECRET)), "[1,")
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["kind"], "api.json");
    agent.stop().await;
}
