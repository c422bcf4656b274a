//! Jobs through the agent to independent TLS peers: nginx with `ssl_verify_client on` (one
//! client CA per SNI name) and `openssl s_server -Verify`. Skipped loudly when a peer is
//! missing, unless `CI` is set.

mod support;

use serde_json::json;
use support::peers::{self, Tls};
use support::{STORE, install};

#[tokio::test]
async fn nginx_with_ssl_verify_client_through_host_rules_and_job_config() {
    let Some(nginx) = peers::nginx() else {
        return;
    };
    let port = nginx.port;
    let dir = support::temp_dir("nginx-certs");
    install("client/p384/documented.jks", &dir, "a-client.jks");
    install("negative/untrusted/openssl.p12", &dir, "b-client.p12");
    let mut config = support::config();
    config.cert_dirs = vec![dir.canonicalize().expect("dir")];
    config.client_certs = vec![agent::config::HostRule {
        hosts: vec![agent::config::HostPattern::parse("b.localhost").expect("pattern")],
        cert: agent::config::CertRef {
            path: dir.join("b-client.p12"),
            password: Some(keystore::Password::new(STORE)),
            key_password: None,
            alias: None,
        },
    }];
    let agent = support::start(config).await;
    let pin = |host: &str| json!([format!("{host}:{port}:127.0.0.1")]);

    // a.localhost trusts the fixture CA: the job's own JKS (a format the reference needed
    // keytool for) is presented over HTTP/2.
    let result = agent
        .jobs(&json!({"url": format!("https://a.localhost:{port}/"), "config": {
            "resolve": pin("a.localhost"),
            "client_cert_configuration": {"keystorePath": "a-client.jks", "keystorePassword": STORE}}}))
        .await;
    assert_eq!(result["ok"], true, "{result}\n{}", nginx.log());
    let body = result["response"]["body"].as_str().unwrap_or("");
    assert!(
        body.contains("server=a") && body.contains("verify=SUCCESS"),
        "{body}"
    );
    assert!(body.contains("CN=client-p384"), "{body}");
    assert_eq!(result["response"]["httpVersion"], "HTTP/2");
    assert_eq!(result["tls"]["clientCertificate"]["source"], "job");

    // b.localhost trusts another CA: the host rule picks the matching certificate.
    let result = agent
        .jobs(&json!({"url": format!("https://b.localhost:{port}/"), "config": {"resolve": pin("b.localhost")}}))
        .await;
    assert_eq!(result["ok"], true, "{result}\n{}", nginx.log());
    let body = result["response"]["body"].as_str().unwrap_or("");
    assert!(
        body.contains("server=b") && body.contains("verify=SUCCESS"),
        "{body}"
    );
    assert_eq!(
        result["tls"]["clientCertificate"]["source"],
        "host-rule:b.localhost"
    );

    // No certificate: nginx says so with a 400 page, and the result shows it asked for one.
    let result = agent
        .jobs(&json!({"url": format!("https://a.localhost:{port}/"), "config": {"resolve": pin("a.localhost")}}))
        .await;
    assert_eq!(result["response"]["statusCode"], 400, "{result}");
    assert_eq!(
        result["tls"]["clientCertificateRequested"], true,
        "{result}"
    );
    agent.stop().await;
}

#[tokio::test]
async fn openssl_s_server_rejection_is_explained() {
    let Some(server) = peers::s_server(Tls::V13, "ca/root.pem") else {
        return;
    };
    let dir = support::temp_dir("s-server-certs");
    install("negative/untrusted/openssl.p12", &dir, "untrusted.p12");
    let mut config = support::config();
    config.cert_dirs = vec![dir.canonicalize().expect("dir")];
    let agent = support::start(config).await;
    let url = format!("https://localhost:{}/", server.port);
    let result = agent
        .jobs(&json!({"url": url, "config": {"client_cert_configuration": null}}))
        .await;
    assert_eq!(
        result["error"]["kind"],
        "tls.client_cert_required",
        "{result}\n{}",
        server.log()
    );
    let result = agent
        .jobs(&json!({"url": url, "config": {"client_cert_configuration":
            {"keystorePath": "untrusted.p12", "keystorePassword": STORE}}}))
        .await;
    assert_eq!(
        result["error"]["kind"],
        "tls.client_cert_rejected",
        "{result}\n{}",
        server.log()
    );
    assert!(!result["error"]["hint"].as_str().unwrap_or("").is_empty());
    agent.stop().await;
}
