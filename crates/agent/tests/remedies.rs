//! Job-API results say what to change in a job-API client's words: `config` fields (or the
//! agent's settings where no job field exists), never a command-line flag.

mod support;

use serde_json::{Value, json};
use support::{STORE, install, upstream};

/// The hint of a failed job result, after checking it names no CLI flag.
fn hint(result: &Value, kind: &str) -> String {
    assert_eq!(result["error"]["kind"], kind, "{result}");
    let hint = result["error"]["hint"].as_str().expect("hint").to_owned();
    for flag in [
        "--cacert",
        "--insecure",
        "--resolve",
        "--sni",
        "--tls-",
        "--cert",
        "--",
    ] {
        assert!(
            !hint.contains(flag),
            "a job-API hint names the CLI flag {flag}: {hint}"
        );
    }
    hint
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_api_hints_name_config_fields_not_cli_flags() {
    let server = upstream::start().await;
    let dir = support::temp_dir("remedies").canonicalize().expect("dir");
    install("client/rsa2048/openssl.p12", &dir, "client.p12");
    install("client/rsa2048/documented.jks", &dir, "client.jks");
    let mut config = support::config();
    config.cert_dirs = vec![dir.clone()];
    config.kdf_limits = keystore::Limits {
        max_iterations: 1000,
        max_memory: 1 << 20,
    };
    // Untrusted: only the system roots, which do not hold the fixture CA.
    config.trust_mode = engine::TrustMode::System;
    let agent = support::start(config).await;
    let with = |cert: Value| json!({"url": server.url("/"), "config": {"client_cert_configuration": cert}});

    let result = agent
        .jobs(&with(
            json!({"keystorePath": "client.jks", "keystorePassword": "wrong-password-1"}),
        ))
        .await;
    let text = hint(&result, "keystore.wrong_store_password");
    assert!(
        text.contains("client_cert_configuration.keystorePassword"),
        "{text}"
    );
    assert!(!result.to_string().contains("wrong-password-1"), "{result}");

    let result = agent
        .jobs(&with(
            json!({"keystorePath": "client.p12", "keystorePassword": STORE}),
        ))
        .await;
    let text = hint(&result, "keystore.too_costly");
    assert!(text.contains("DOWNLOADER_MAX_KDF_ITERATIONS"), "{text}");

    let result = agent.jobs(&json!({"url": server.url("/")})).await;
    let text = hint(&result, "tls.server_untrusted");
    assert!(
        text.contains("config.trust") && text.contains("config.disable_ssl_validation"),
        "{text}"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("address").port();
    drop(closed);
    let result = agent
        .jobs(&json!({"url": format!("https://127.0.0.1:{port}/")}))
        .await;
    hint(&result, "connect.refused");
    agent.stop().await;
}
