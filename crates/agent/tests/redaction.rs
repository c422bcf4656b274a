//! Secrets never appear in logs or results: the real log output (text and JSON formats, captured
//! from the process-wide subscriber) and the results of jobs carrying a keystore password, an
//! Authorization header, a Cookie header, URL credentials and the agent's own secret are
//! searched for every secret string.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use agent::LogFormat;
use serde_json::json;
use support::upstream;
use support::{APIKEY, SECRET, STORE, basic};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const AUTHORIZATION: &str = "Bearer tok-5ecr3t-a1b2";
const COOKIE: &str = "session=c00kie-5ecr3t-9z";
const URL_PASSWORD: &str = "url-pa55-5ecr3t";
const JOB_PASSWORD: &str = "Fx-key-9265";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_logs_or_results() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    // JSON logs carry every field verbatim, so they are the stricter check.
    agent::log::init_with_writer(LogFormat::Json, move || writer.clone());

    let server = upstream::start().await;
    let dir = support::temp_dir("redaction");
    support::install("client/p256/openssl.p12", &dir, "client.p12");
    let mut config = support::config();
    config.cert_dirs = vec![dir.canonicalize().expect("dir")];
    let agent = support::start(config).await;

    let headers = json!({"Authorization": AUTHORIZATION, "Cookie": COOKIE, "X-Other": "visible"});
    let good = json!({"id": "good", "url": server.url("/"), "headers": headers,
        "config": {"client_cert_configuration": {"keystorePath": "client.p12", "keystorePassword": STORE}}});
    let wrong_password = json!({"id": "wrong", "url": server.url("/"), "headers": headers,
        "config": {"client_cert_configuration": {"keystorePath": "client.p12", "keystorePassword": JOB_PASSWORD}}});
    let url_credentials = json!({"id": "url", "url": format!("https://user:{URL_PASSWORD}@localhost:{}/", server.port),
        "headers": headers});
    let invalid = json!({"id": "invalid", "url": format!("https://user:{URL_PASSWORD}@localhost:{}/", server.port),
        "headers": {"Authorization": AUTHORIZATION}, "config": {"unknown": JOB_PASSWORD}});
    let refused_path = json!({"id": "path", "url": server.url("/"), "headers": headers,
        "config": {"client_cert_configuration": {"keystorePath": "/etc/passwd", "keystorePassword": JOB_PASSWORD}}});
    let results = agent
        .jobs(&json!([
            good,
            wrong_password,
            url_credentials,
            invalid,
            refused_path
        ]))
        .await;
    let text = results.to_string();
    assert_eq!(results[0]["ok"], true, "{text}");
    assert_eq!(
        results[1]["error"]["kind"], "keystore.wrong_store_password",
        "{text}"
    );
    assert_eq!(
        results[4]["error"]["kind"], "keystore.path_not_allowed",
        "{text}"
    );
    // Failed authentication with a wrong secret is logged nowhere either.
    let _ = agent
        .request(
            "POST",
            "/api/v1/jobs",
            Some(&basic(APIKEY, "wr0ng-5ecr3t")),
            "{}",
        )
        .await;
    let metrics = agent.metrics().await;
    agent.stop().await;

    let logs = String::from_utf8_lossy(
        &buffer
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
    .into_owned();
    assert!(
        logs.contains("\"id\":\"good\""),
        "the job lines were captured:\n{logs}"
    );
    assert!(
        logs.lines()
            .filter(|line| line.contains("\"message\":\"job\""))
            .count()
            >= 5,
        "{logs}"
    );
    let basic_token = basic(APIKEY, SECRET);
    for secret in [
        STORE,
        JOB_PASSWORD,
        SECRET,
        "wr0ng-5ecr3t",
        AUTHORIZATION,
        "tok-5ecr3t",
        COOKIE,
        "c00kie-5ecr3t",
        URL_PASSWORD,
        basic_token.trim_start_matches("Basic "),
    ] {
        assert!(!logs.contains(secret), "log holds {secret}:\n{logs}");
        assert!(!text.contains(secret), "results hold {secret}:\n{text}");
        assert!(!metrics.contains(secret), "metrics hold {secret}");
    }
}
