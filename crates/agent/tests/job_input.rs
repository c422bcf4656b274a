//! Hostile job input through the real job API (HTTPS, in-process agent): the per-job caps
//! (template output, headers, params, multipart parts, form fields) end in
//! `request.too_large` naming the cap and its setting; numbers that become clocks are
//! `request.invalid`, never a panic; secret fields never come back in a result, also when they
//! have the wrong type; a method with CR/LF neither runs nor forges a log line.

mod support;

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{Value, json};
use support::{STORE, upstream};

fn base64_of(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn fixture_base64(path: &str) -> String {
    base64_of(&std::fs::read(support::fixture(path)).expect("fixture"))
}

/// The error of a result, asserting its kind.
fn error_of<'a>(result: &'a Value, kind: &str) -> &'a Value {
    assert_eq!(result["ok"], false, "{result}");
    assert_eq!(result["error"]["kind"], kind, "{result}");
    &result["error"]
}

/// This process's peak resident memory (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .expect("VmHWM");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmHWM value");
    kib * 1024
}

#[tokio::test]
async fn a_big_variable_used_a_thousand_times_stops_at_the_template_cap() {
    let agent = support::start(support::config()).await;
    let before = peak_rss();
    // 1 MB used 1,000 times would be 1 GB of body; the cap (1 MiB) ends it at the second use.
    let job = json!({"id": "amplified", "url": "https://127.0.0.1:9/",
        "vars": {"v": "x".repeat(1_000_000)}, "body": "${v}".repeat(1000)});
    let result = agent.jobs(&job).await;
    let error = error_of(&result, "request.too_large");
    let message = error["message"].as_str().expect("message");
    assert!(message.contains("1048576"), "{message}");
    assert!(
        message.contains("DOWNLOADER_MAX_TEMPLATE_OUTPUT"),
        "{message}"
    );
    assert!(
        error["hint"]
            .as_str()
            .is_some_and(|hint| hint.contains("DOWNLOADER_MAX_TEMPLATE_OUTPUT")),
        "{error}"
    );
    let grown = peak_rss().saturating_sub(before);
    assert!(
        grown < 300 * 1024 * 1024,
        "peak memory grew by {grown} bytes"
    );
    // The budget is the job's, not a field's: 600 KB in a header and 600 KB in the body.
    let job = json!({"url": "https://127.0.0.1:9/", "vars": {"v": "y".repeat(600_000)},
        "headers": {"X-A": "${v}"}, "body": "${v}"});
    error_of(&agent.jobs(&job).await, "request.too_large");
    // A URL or a config value is rendered under the same budget.
    let job = json!({"url": "https://127.0.0.1:9/${v}${v}", "vars": {"v": "z".repeat(600_000)}});
    error_of(&agent.jobs(&job).await, "request.too_large");
    let job = json!({"url": "https://127.0.0.1:9/", "vars": {"v": "z".repeat(600_000)},
        "config": {"sni": "${v}", "footprint": "${v}"}});
    error_of(&agent.jobs(&job).await, "request.too_large");
    agent.stop().await;
}

#[tokio::test]
async fn templates_within_a_lowered_cap_run_and_above_it_do_not() {
    let server = upstream::start_optional().await;
    let mut config = support::config();
    config.job_limits.template_output = 1000;
    let agent = support::start(config).await;
    let job = |times: usize| {
        json!({"url": server.url("/"), "vars": {"v": "a".repeat(100)},
            "method": "POST", "body": "${v}".repeat(times)})
    };
    let result = agent.jobs(&job(10)).await;
    assert_eq!(result["ok"], true, "{result}");
    let body = result["response"]["body"].as_str().expect("body");
    assert!(
        body.contains(&format!("body={}\n", "a".repeat(1000))),
        "{body}"
    );
    let result = agent.jobs(&job(11)).await;
    let message = error_of(&result, "request.too_large")["message"].to_string();
    assert!(message.contains("1000"), "{message}");
    agent.stop().await;
}

#[tokio::test]
async fn headers_params_parts_and_form_fields_are_capped() {
    let agent = support::start(support::config()).await;
    let many = |n: usize| -> serde_json::Map<String, Value> {
        (0..n).map(|i| (format!("x-{i}"), json!("v"))).collect()
    };
    let cases = [
        (
            json!({"url": "https://127.0.0.1:9/", "headers": many(257)}),
            "257 headers",
            "DOWNLOADER_MAX_HEADERS",
        ),
        (
            // Each value of a list counts.
            json!({"url": "https://127.0.0.1:9/", "headers": {"x-a": vec!["v"; 300]}}),
            "300 headers",
            "DOWNLOADER_MAX_HEADERS",
        ),
        (
            json!({"url": "https://127.0.0.1:9/", "headers": many(100_000)}),
            "100000 headers",
            "DOWNLOADER_MAX_HEADERS",
        ),
        (
            json!({"url": "https://127.0.0.1:9/", "params": many(1025)}),
            "1025 query parameters",
            "DOWNLOADER_MAX_PARAMS",
        ),
        (
            json!({"url": "https://127.0.0.1:9/", "method": "POST", "body": {"multipart":
                vec![json!({"name": "a", "value": "b"}); 300_000]}}),
            "300000 body.multipart parts",
            "DOWNLOADER_MAX_PARTS",
        ),
        (
            json!({"url": "https://127.0.0.1:9/", "method": "POST", "body": {"form": many(2000)}}),
            "2000 body.form fields",
            "DOWNLOADER_MAX_PARTS",
        ),
    ];
    for (job, counted, setting) in cases {
        let result = agent.jobs(&job).await;
        let message = error_of(&result, "request.too_large")["message"]
            .as_str()
            .expect("message")
            .to_owned();
        assert!(message.contains(counted), "{message}");
        assert!(message.contains(setting), "{message}");
    }
    agent.stop().await;
}

#[tokio::test]
async fn caps_at_their_limit_still_run() {
    let server = upstream::start_optional().await;
    let mut config = support::config();
    config.job_limits.headers = 3;
    config.job_limits.params = 2;
    config.job_limits.parts = 2;
    let agent = support::start(config).await;
    let job = json!({"url": server.url("/"), "method": "POST",
        "headers": {"X-Test": "seen", "X-B": ["1", "2"]}, "params": {"p": ["1", "2"]},
        "body": {"multipart": [{"name": "a", "value": "1"}, {"name": "b", "value": "2"}]}});
    let result = agent.jobs(&job).await;
    assert_eq!(result["ok"], true, "{result}");
    let body = result["response"]["body"].as_str().expect("body");
    assert!(
        body.contains("x-test=seen\n") && body.contains("query=p=1&p=2\n"),
        "{body}"
    );
    let mut over = job.clone();
    over["headers"]["X-C"] = json!("3");
    error_of(&agent.jobs(&over).await, "request.too_large");
    agent.stop().await;
}

#[tokio::test]
async fn a_hundred_thousand_headers_above_a_raised_cap_are_refused_not_a_panic() {
    let mut config = support::config();
    config.job_limits.headers = 1_000_000;
    let agent = support::start(config).await;
    let headers: serde_json::Map<String, Value> = (0..100_000)
        .map(|i| (format!("x-{i}"), json!("v")))
        .collect();
    let result = agent
        .jobs(&json!({"url": "https://127.0.0.1:9/", "headers": headers}))
        .await;
    error_of(&result, "request.invalid");
    agent.stop().await;
}

#[tokio::test]
async fn numbers_that_would_overflow_a_clock_are_request_invalid() {
    let agent = support::start(support::config()).await;
    let config =
        |name: &str, value: Value| json!({"url": "https://127.0.0.1:9/", "config": {name: value}});
    for (name, value) in [
        ("timeout", json!(1e19)),
        ("timeout", json!("1e19")),
        ("timeout", json!(86_401)),
        ("timeout", json!(1.7e308)),
        ("timeout", json!(-1)),
        ("keep_alive_idle", json!(1e19)),
        ("keep_alive_idle", json!(3601)),
        ("max_redirects", json!(1e19)),
        ("max_redirects", json!(4_294_967_295_u64)),
        ("max_redirects", json!(101)),
    ] {
        let result = agent.jobs(&config(name, value.clone())).await;
        let message = error_of(&result, "request.invalid")["message"]
            .as_str()
            .expect("message")
            .to_owned();
        assert!(
            message.contains(&format!("config.{name}")),
            "{name}={value}: {message}"
        );
    }
    // The limits themselves are fine (the job then fails to connect, as port 9 is closed).
    let result = agent
        .jobs(&json!({"url": "http://127.0.0.1:9/", "config":
            {"timeout": 86_400, "keep_alive_idle": 3600, "max_redirects": 100}}))
        .await;
    assert_ne!(result["error"]["kind"], "request.invalid", "{result}");
    assert_ne!(result["error"]["kind"], "internal", "{result}");
    agent.stop().await;
}

#[tokio::test]
async fn a_numeric_keystore_password_is_accepted() {
    let server = upstream::start().await;
    let dir = support::temp_dir("numeric-password");
    let p12 = dir.join("numeric.p12");
    let status = std::process::Command::new("openssl")
        .arg("pkcs12")
        .arg("-export")
        .arg("-in")
        .arg(support::fixture("client/p256/chain.pem"))
        .arg("-inkey")
        .arg(support::fixture("client/p256/key.pem"))
        .args(["-passout", "pass:918273645"])
        .arg("-out")
        .arg(&p12)
        .status()
        .expect("openssl must be installed for this test");
    assert!(status.success(), "openssl pkcs12 -export failed");
    let agent = support::start(support::config()).await;
    let job = json!({"url": server.url("/"), "config": {"client_cert_configuration": {
        "keystoreBase64": base64_of(&std::fs::read(&p12).expect("p12")),
        "keystorePassword": 918_273_645}}});
    let result = agent.jobs(&job).await;
    assert_eq!(result["ok"], true, "{result}");
    assert_ne!(support::seen_subject(&result), "none", "{result}");
    // The reference system's JSON-string form, with the number inside.
    let text = json!({"keystoreBase64": base64_of(&std::fs::read(&p12).expect("p12")),
        "keystorePassword": 918_273_645})
    .to_string();
    let job = json!({"url": server.url("/"), "config": {"client_cert_configuration": text}});
    let result = agent.jobs(&job).await;
    assert_eq!(result["ok"], true, "{result}");
    assert!(!result.to_string().contains("918273645"), "{result}");
    agent.stop().await;
}

#[tokio::test]
async fn secret_fields_of_the_wrong_type_are_refused_without_their_values() {
    let agent = support::start(support::config()).await;
    let inline = fixture_base64("client/p256/openssl.p12");
    let cert = |extra: Value| {
        let mut object = json!({"keystoreBase64": inline});
        for (key, value) in extra.as_object().expect("object") {
            object[key] = value.clone();
        }
        json!({"url": "https://127.0.0.1:9/", "config": {"client_cert_configuration": object}})
    };
    let jobs = [
        cert(json!({"keystorePassword": true})),
        cert(json!({"keystorePassword": ["S3cret-In-A-List"]})),
        cert(json!({"keystorePassword": {"value": "S3cret-In-An-Object"}})),
        cert(json!({"keystorePassword": STORE, "keyPassword": ["S3cret-Key-List"]})),
        json!({"url": "https://127.0.0.1:9/", "config": {"client_cert_configuration":
            {"keystoreBase64": {"data": "S3cret-Base64-Object"}, "keystorePassword": STORE}}}),
        json!({"url": "https://127.0.0.1:9/", "config": {"trust":
            {"base64": inline, "password": ["S3cret-Trust-List"]}}}),
        json!({"url": "https://127.0.0.1:9/", "config": {"trust":
            {"base64": inline, "password": "S3cret-Trust", "mode": "S3cret-Mode"}}}),
        json!({"url": "https://127.0.0.1:9/", "config": {"proxy":
            {"address": "127.0.0.1", "port": 9, "username": "u",
             "password": ["S3cret-Proxy-List"]}}}),
        // Whole fields of the wrong type: serde would quote the string.
        json!({"url": "https://127.0.0.1:9/", "headers": "Authorization: Bearer S3cret-Token"}),
        json!({"url": "https://127.0.0.1:9/", "config": "{\"keystorePassword\": \"S3cret-Config\"}"}),
        json!({"url": "https://127.0.0.1:9/", "vars": ["S3cret-Vars"]}),
    ];
    for job in jobs {
        let result = agent.jobs(&job).await;
        error_of(&result, "request.invalid");
        let text = result.to_string();
        assert!(!text.contains("S3cret") && !text.contains(STORE), "{text}");
    }
    // Numbers in secret fields are passwords: the keystore says the password is wrong, and
    // neither number appears.
    let result = agent
        .jobs(&cert(
            json!({"keystorePassword": 5_550_123_987_u64, "keyPassword": 77.25}),
        ))
        .await;
    assert_eq!(result["ok"], false, "{result}");
    assert_ne!(result["error"]["kind"], "request.invalid", "{result}");
    let text = result.to_string();
    assert!(
        !text.contains("5550123987") && !text.contains("77.25"),
        "{text}"
    );
    let result = agent
        .jobs(
            &json!({"url": "https://127.0.0.1:9/", "config": {"client_cert_configuration":
            {"keystoreBase64": 424_242_424_242_u64, "keystorePassword": STORE}}}),
        )
        .await;
    let text = result.to_string();
    assert_eq!(result["ok"], false, "{result}");
    assert!(
        !text.contains("424242424242") && !text.contains(STORE),
        "{text}"
    );
    agent.stop().await;
}

/// Log lines, captured from the agent's text log.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .write(bytes)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn control_characters_in_method_id_and_host_forge_no_log_line() {
    let capture = Capture::default();
    let writer = capture.clone();
    agent::log::init_with_writer(agent::LogFormat::Text, move || writer.clone());
    let agent = support::start(support::config()).await;
    let forged = "\n1999-01-01T00:00:00.000000Z  INFO job id=\"x\" FORGED";
    for job in [
        json!({"id": "m", "url": "https://127.0.0.1:9/", "method": format!("GET{forged}")}),
        json!({"id": "m2", "url": "https://127.0.0.1:9/", "method": format!("GET\r{forged}")}),
        json!({"id": format!("i{forged}"), "url": "https://127.0.0.1:9/"}),
        json!({"id": "h", "url": format!("https://127.0.0.1%0a{forged}/")}),
        json!({"id": "long", "url": "https://127.0.0.1:9/", "method": "A".repeat(100_000)}),
    ] {
        let result = agent.jobs(&job).await;
        assert_eq!(result["ok"], false, "{result}");
    }
    // A method that is a token but not a standard one is sent as it is.
    let result = agent
        .jobs(&json!({"id": "token", "url": "http://127.0.0.1:9/", "method": "M-SEARCH"}))
        .await;
    assert_ne!(result["error"]["kind"], "request.invalid", "{result}");
    let result = agent
        .jobs(&json!({"url": "https://127.0.0.1:9/", "method": "GET\r\nX-Forged: 1"}))
        .await;
    assert!(
        error_of(&result, "request.invalid")["message"]
            .as_str()
            .is_some_and(|message| message.contains("HTTP token")),
        "{result}"
    );
    agent.stop().await;
    let text = String::from_utf8_lossy(
        &capture
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
    .into_owned();
    let job_lines: Vec<&str> = text.lines().filter(|line| line.contains(" job ")).collect();
    assert!(job_lines.len() >= 6, "too few job lines:\n{text}");
    for line in text.lines() {
        assert!(!line.contains("FORGED") || line.contains("job"), "{line}");
        assert!(
            !line.trim_start().starts_with("1999-01-01"),
            "forged line: {line}"
        );
        assert!(
            line.len() < 4096,
            "an unbounded log line: {} bytes",
            line.len()
        );
    }
}
