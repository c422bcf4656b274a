//! Choosing the client certificate (job > host rule > downloader default > none, and host rules
//! alone for redirect hops to other hosts), confinement of job-named paths, and rotation without
//! restart — over real HTTPS against an upstream that requires client certificates.

mod support;

use std::collections::BTreeMap;

use agent::{Config, Flags};
use serde_json::json;
use support::upstream;
use support::{APIKEY, SECRET, STORE, install, replace, seen_subject};

fn env(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// An agent config file with a default certificate (rsa4096), a `*.localhost` rule (rsa2048)
/// and a rule for `exact_hosts` with `exact_password` (a TOML line) and the keystore `exact`.
fn rules_config(name: &str, exact_hosts: &str, exact_password: &str, exact: &str) -> Flags {
    let file = support::temp_dir(name).join("agent.toml");
    let fixture = |path: &str| support::fixture(path).display().to_string();
    std::fs::write(
        &file,
        format!(
            r#"
apikey = "{APIKEY}"
secret = "{SECRET}"
listen = "127.0.0.1:0"
data_dir = "{data}"
trust_store = "{root}"
client_cert_configuration = {{ keystorePath = "{default}", keystorePassword = "{STORE}" }}

[[client_certs]]
hosts = ["*.localhost"]
keystore = "{wide}"
password = "{STORE}"

[[client_certs]]
hosts = ["{exact_hosts}"]
keystore = "{exact}"
{exact_password}
"#,
            data = support::temp_dir(&format!("{name}-data")).display(),
            root = fixture("ca/root.pem"),
            default = fixture("client/rsa4096/openssl.p12"),
            wide = fixture("client/rsa2048/openssl.p12"),
            exact = fixture(exact),
        ),
    )
    .expect("config file");
    Flags {
        config: Some(file),
        cert_dirs: vec![support::fixture("client")],
        ..Flags::default()
    }
}

#[tokio::test]
async fn seed_style_env_certificate_is_used_by_a_job_without_config() {
    let server = upstream::start().await;
    let data = support::temp_dir("seed");
    let source = env(&[
        ("apikey", APIKEY.into()),
        ("secret", SECRET.into()),
        ("DOWNLOADER_DATA_DIR", data.display().to_string()),
        ("DOWNLOADER_LISTEN", "127.0.0.1:0".into()),
        ("DOWNLOADER_TRUST_STORE", support::fixture("ca/root.pem").display().to_string()),
        (
            "client_cert_configuration",
            json!({"keystorePath": support::fixture("client/rsa2048/documented.jks"), "keystorePassword": STORE})
                .to_string(),
        ),
    ]);
    let config = Config::load(&Flags::default(), &source).expect("env config");
    let agent = support::start(config).await;
    let result = agent.jobs(&json!({"url": server.url("/")})).await;
    assert_eq!(result["ok"], true, "{result}");
    assert!(
        seen_subject(&result).contains("CN=client-rsa2048"),
        "{result}"
    );
    assert_eq!(result["tls"]["clientCertificate"]["source"], "default");
    // An explicit null sends no certificate even with a downloader default.
    let result = agent
        .jobs(&json!({"url": server.url("/"), "config": {"client_cert_configuration": null}}))
        .await;
    assert_eq!(
        result["error"]["kind"], "tls.client_cert_required",
        "{result}"
    );
    agent.stop().await;
}

#[tokio::test]
async fn job_beats_host_rule_beats_default() {
    let server = upstream::start().await;
    let port = server.port;
    let flags = rules_config(
        "rules",
        &format!("localhost:{port}"),
        "password_env = \"EXACT_PASSWORD\"",
        "client/p256/openssl.p12",
    );
    let config =
        Config::load(&flags, &env(&[("EXACT_PASSWORD", STORE.into())])).expect("file config");
    let agent = support::start(config).await;
    let pin = format!("a.localhost:{port}:127.0.0.1");
    let cases = [
        (
            json!({"url": server.url("/")}),
            "client-p256",
            format!("host-rule:localhost:{port}"),
        ),
        (
            json!({"url": format!("https://a.localhost:{port}/"), "config": {"resolve": [pin]}}),
            "client-rsa2048",
            "host-rule:*.localhost".to_owned(),
        ),
        (
            json!({"url": format!("https://127.0.0.1:{port}/")}),
            "client-rsa4096",
            "default".to_owned(),
        ),
        (
            json!({"url": server.url("/"), "config": {"client_cert_configuration":
                {"keystorePath": "ed25519/openssl.p12", "keystorePassword": STORE}}}),
            "client-ed25519",
            "job".to_owned(),
        ),
    ];
    for (job, subject, source) in cases {
        let result = agent.jobs(&job).await;
        assert_eq!(result["ok"], true, "{job}: {result}");
        assert!(seen_subject(&result).contains(subject), "{job}: {result}");
        assert_eq!(
            result["tls"]["clientCertificate"]["source"],
            source.as_str(),
            "{result}"
        );
    }
    agent.stop().await;
}

#[tokio::test]
async fn host_rules_choose_the_certificate_of_redirect_hops() {
    // `localhost:H` asks for a certificate and serves without one; `a.localhost:R` and
    // `b.localhost:R` (one server) require one.
    let home = upstream::start_optional().await;
    let away = upstream::start().await;
    let port = away.port;
    let flags = rules_config(
        "hop-rules",
        &format!("b.localhost:{port}"),
        &format!("password = \"{STORE}\""),
        "client/p384/openssl.p12",
    );
    let config = Config::load(&flags, &env(&[])).expect("file config");
    let agent = support::start(config).await;
    let job = |to: String, mut config: serde_json::Value| {
        config["resolve"] = json!([
            format!("a.localhost:{port}:127.0.0.1"),
            format!("b.localhost:{port}:127.0.0.1")
        ]);
        let to: String = url::form_urlencoded::byte_serialize(to.as_bytes()).collect();
        json!({"url": home.url(&format!("/redirect?to={to}")), "config": config})
    };
    let a = format!("https://a.localhost:{port}/echo");
    let b = format!("https://b.localhost:{port}/echo");
    let own = json!({"client_cert_configuration":
        {"keystorePath": "ed25519/openssl.p12", "keystorePassword": STORE}});
    // (where the hop goes, job config, subject seen there, its source, home got a certificate)
    let cases = [
        // The wildcard rule; localhost itself got the downloader default.
        (
            &a,
            json!({}),
            "client-rsa2048",
            "host-rule:*.localhost",
            true,
        ),
        // The most specific rule.
        (
            &b,
            json!({}),
            "client-p384",
            &*format!("host-rule:b.localhost:{port}"),
            true,
        ),
        // The job's own certificate stays home; the hop still follows the host rules.
        (&a, own, "client-rsa2048", "host-rule:*.localhost", true),
    ];
    for (to, config, subject, source, home_identity) in cases {
        let result = agent.jobs(&job(to.clone(), config)).await;
        assert_eq!(result["ok"], true, "{to}: {result}");
        assert!(seen_subject(&result).contains(subject), "{to}: {result}");
        assert_eq!(
            result["tls"]["clientCertificate"]["source"], source,
            "{result}"
        );
        assert_eq!(
            result["redirects"][0]["identity"], home_identity,
            "{result}"
        );
    }
    // No rule matches 127.0.0.1: the downloader default stays with the job's host.
    let result = agent
        .jobs(&job(format!("https://127.0.0.1:{port}/echo"), json!({})))
        .await;
    assert_eq!(
        result["error"]["kind"], "tls.client_cert_required",
        "{result}"
    );
    assert_eq!(result["redirects"][0]["identity"], true, "{result}");
    assert!(result["tls"]["clientCertificate"].is_null(), "{result}");
    // `client_cert_configuration: null`: no certificate anywhere, not even where a rule matches.
    let result = agent
        .jobs(&job(a.clone(), json!({"client_cert_configuration": null})))
        .await;
    assert_eq!(
        result["error"]["kind"], "tls.client_cert_required",
        "{result}"
    );
    assert_eq!(result["redirects"][0]["identity"], false, "{result}");
    agent.stop().await;
}

#[tokio::test]
async fn job_paths_must_stay_inside_the_certificate_directories() {
    let server = upstream::start().await;
    let dir = support::temp_dir("confine");
    install("client/p256/openssl.p12", &dir, "a.p12");
    std::fs::create_dir_all(dir.join("sub")).expect("sub");
    std::os::unix::fs::symlink(
        support::fixture("client/rsa2048/openssl.p12"),
        dir.join("escape.p12"),
    )
    .expect("symlink");
    std::os::unix::fs::symlink(dir.join("a.p12"), dir.join("sub/inside.p12")).expect("symlink");
    let mut config = support::config();
    config.cert_dirs = vec![dir.canonicalize().expect("dir")];
    let agent = support::start(config).await;
    let job = |path: String| {
        json!({"url": server.url("/"), "config": {"client_cert_configuration":
            {"keystorePath": path, "keystorePassword": STORE}}})
    };
    for allowed in [
        "a.p12".to_owned(),
        dir.join("a.p12").display().to_string(),
        "sub/../a.p12".to_owned(),
        "sub/inside.p12".to_owned(),
    ] {
        let result = agent.jobs(&job(allowed.clone())).await;
        assert_eq!(result["ok"], true, "{allowed}: {result}");
    }
    for refused in [
        "/etc/passwd".to_owned(),
        "../../../../etc/passwd".to_owned(),
        format!("{}/../a.p12", dir.join("sub/..").display()),
        "escape.p12".to_owned(),
        support::fixture("client/p256/openssl.p12")
            .display()
            .to_string(),
        dir.join("missing.p12").display().to_string(),
    ] {
        let result = agent.jobs(&job(refused.clone())).await;
        assert_eq!(result["ok"], false, "{refused}: {result}");
        assert_eq!(
            result["error"]["kind"], "keystore.path_not_allowed",
            "{refused}: {result}"
        );
        assert!(result["response"].is_null());
    }
    agent.stop().await;
}

#[tokio::test]
async fn rotation_without_restart_and_broken_replacements_keep_the_last_good() {
    let server = upstream::start().await;
    let dir = support::temp_dir("rotate");
    install("client/rsa2048/openssl.p12", &dir, "client.p12");
    let trust = install("ca/other-root.pem", &dir, "trust.pem");
    let mut config = support::config();
    config.cert_dirs = vec![dir.canonicalize().expect("dir")];
    config.trust_store = Some(trust.clone());
    // Configured stores are reloaded with "last good" semantics; a job-named one is read
    // afresh and parsed by the engine each time, without a last good copy.
    config.default_cert = Some(agent::config::CertRef {
        path: dir.join("client.p12"),
        password: Some(keystore::Password::new(STORE)),
        key_password: None,
        alias: None,
    });
    let agent = support::start(config).await;
    let job = json!({"url": server.url("/")});
    let named = json!({"url": server.url("/"), "config": {"client_cert_configuration":
        {"keystorePath": "client.p12", "keystorePassword": STORE}}});

    // The trust store does not trust the server yet.
    let result = agent.jobs(&job).await;
    assert_eq!(result["error"]["kind"], "tls.server_untrusted", "{result}");
    // Replace the trust store: the next job uses it.
    install("ca/root.pem", &dir, "trust.pem");
    let result = agent.jobs(&job).await;
    assert_eq!(result["ok"], true, "{result}");
    assert!(seen_subject(&result).contains("client-rsa2048"));
    assert_eq!(result["warnings"], json!([]));

    // Replace the keystore: the next job presents the new certificate.
    install("client/p256/openssl.p12", &dir, "client.p12");
    let result = agent.jobs(&job).await;
    assert!(seen_subject(&result).contains("client-p256"), "{result}");

    // A half-written keystore and a garbage trust store: the last good ones stay, with warnings.
    let full = std::fs::read(support::fixture("client/rsa4096/openssl.p12")).expect("fixture");
    std::fs::write(dir.join("client.p12"), &full[..full.len() / 2]).expect("half write");
    std::fs::write(&trust, b"-----BEGIN CERTIFICATE-----\ngarbage").expect("garbage");
    let result = agent.jobs(&named).await;
    assert_eq!(result["error"]["kind"], "keystore.corrupt", "{result}");
    for _ in 0..2 {
        let result = agent.jobs(&job).await;
        assert_eq!(result["ok"], true, "{result}");
        assert!(seen_subject(&result).contains("client-p256"), "{result}");
        let warnings = result["warnings"].as_array().expect("warnings").clone();
        assert_eq!(warnings.len(), 2, "{result}");
        assert!(
            warnings
                .iter()
                .any(|w| w.as_str().unwrap_or("").contains("client identity"))
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.as_str().unwrap_or("").contains("trust store"))
        );
    }
    // Finished writing: picked up.
    replace(&dir, "client.p12", &full);
    install("ca/root.pem", &dir, "trust.pem");
    let result = agent.jobs(&job).await;
    assert!(seen_subject(&result).contains("client-rsa4096"), "{result}");
    assert_eq!(result["warnings"], json!([]));

    // A replacement with a password that no longer matches: last good, plus a warning.
    install("client/p384/empty-password.p12", &dir, "client.p12");
    let result = agent.jobs(&job).await;
    assert!(seen_subject(&result).contains("client-rsa4096"), "{result}");
    assert_eq!(
        result["warnings"].as_array().map(Vec::len),
        Some(1),
        "{result}"
    );
    agent.stop().await;
}

#[tokio::test]
async fn an_unknown_keystore_with_a_wrong_password_is_a_typed_error() {
    let server = upstream::start().await;
    let mut config = support::config();
    config.cert_dirs = vec![support::fixture("client").canonicalize().expect("dir")];
    let agent = support::start(config).await;
    let result = agent
        .jobs(
            &json!({"url": server.url("/"), "config": {"client_cert_configuration":
            "{\"keystorePath\": \"p256/openssl.p12\", \"keystorePassword\": \"wrong\"}"}}),
        )
        .await;
    assert_eq!(
        result["error"]["kind"], "keystore.wrong_store_password",
        "{result}"
    );
    let result = agent
        .jobs(
            &json!({"url": server.url("/"), "config": {"client_cert_configuration":
            {"keystorePath": "p256/openssl.p12", "keystorePasword": STORE}}}),
        )
        .await;
    assert_eq!(result["error"]["kind"], "request.invalid", "{result}");
    agent.stop().await;
}

#[tokio::test]
async fn a_trust_directory_and_a_rotated_host_rule_keystore() {
    let server = upstream::start().await;
    let dir = support::temp_dir("rule-rotate");
    let keystore = install("client/rsa2048/openssl.p12", &dir, "rule.p12");
    let mut config = support::config();
    config.trust_store = Some(support::fixture("trust/dir"));
    config.client_certs = vec![agent::config::HostRule {
        hosts: vec![agent::config::HostPattern::parse("localhost").expect("pattern")],
        cert: agent::config::CertRef {
            path: keystore,
            password: Some(keystore::Password::new(STORE)),
            key_password: None,
            alias: None,
        },
    }];
    let agent = support::start(config).await;
    let job = json!({"url": server.url("/")});
    let result = agent.jobs(&job).await;
    assert_eq!(result["ok"], true, "{result}");
    assert!(seen_subject(&result).contains("client-rsa2048"), "{result}");
    assert_eq!(
        result["tls"]["clientCertificate"]["source"],
        "host-rule:localhost"
    );
    install("client/p384/openssl.p12", &dir, "rule.p12");
    let result = agent.jobs(&job).await;
    assert!(seen_subject(&result).contains("client-p384"), "{result}");
    let metrics = agent.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|line| line.contains("source=\"host-rule:localhost\"")
                && line.contains("client-p384")),
        "{metrics}"
    );
    agent.stop().await;
}
