//! `downloader fetch` end to end: the built binary against nginx and `openssl s_server`
//! started by the test (skipped with a loud message when missing, unless `CI` is set).

#[path = "../../../tests/interop/peers.rs"]
mod peers;

use std::process::{Command, Output};

use peers::{Tls, fixture};

const STORE: &str = "Fx-store-7431";
const PEM: &str = "Fx-pem-5820";

fn fetch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_downloader"))
        .arg("fetch")
        .args(args)
        .env("FX_STORE_PASSWORD", STORE)
        .output()
        .expect("run downloader")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path(relative: &str) -> String {
    fixture(relative).display().to_string()
}

#[test]
fn fetch_against_nginx_human_and_json() {
    let Some(nginx) = peers::nginx() else {
        return;
    };
    let url = format!("https://a.localhost:{}/", nginx.port);
    let resolve = format!("a.localhost:{}:127.0.0.1", nginx.port);
    let cacert = path("ca/root.pem");

    // PEM pair with an encrypted key: human output.
    let out = fetch(&[
        &url,
        "--resolve",
        &resolve,
        "--cacert",
        &cacert,
        "--cert",
        &path("client/p384/chain.pem"),
        "--key",
        &path("client/p384/key.enc.pem"),
        "--key-password",
        PEM,
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.starts_with("HTTP/2 200"), "{stdout}");
    assert!(stdout.contains("CN=client-p384"), "{stdout}");
    assert!(
        stdout.contains("timing (ms)") && stdout.contains("wait"),
        "{stdout}"
    );
    assert!(
        stdout.contains("they asked for a client certificate issued by"),
        "{stdout}"
    );
    assert!(
        stdout.contains("we are:    O=downloader tests, CN=client-p384"),
        "{stdout}"
    );
    assert!(!stdout.contains(PEM));

    // PKCS#12 with the password from the environment, JSON on stdout.
    let out = fetch(&[
        &url,
        "--resolve",
        &resolve,
        "--cacert",
        &cacert,
        "--cert",
        &path("client/rsa2048/openssl.p12"),
        "--cert-password-env",
        "FX_STORE_PASSWORD",
        "-H",
        "Authorization: Bearer t0p-s3cret-t0ken",
        "--http1.1",
        "--json",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("JSON result");
    assert_eq!(json["ok"], true);
    assert_eq!(json["response"]["statusCode"], 200);
    assert_eq!(json["response"]["httpVersion"], "HTTP/1.1");
    assert!(json["metrics"]["latency"].is_number());
    assert_eq!(json["tls"]["clientCertificateRequested"], true);
    assert!(!stdout.contains(STORE) && !stdout.contains("t0p-s3cret-t0ken"));

    // No certificate: nginx answers 400; exit 0, or 22 with --fail; a warning says why.
    let out = fetch(&[&url, "--resolve", &resolve, "--cacert", &cacert]);
    assert!(out.status.success());
    assert!(text(&out.stderr).contains("No required SSL certificate was sent"));
    let out = fetch(&[&url, "--resolve", &resolve, "--cacert", &cacert, "--fail"]);
    assert_eq!(out.status.code(), Some(22));
}

#[test]
fn fetch_reports_handshake_rejections_with_kind_and_hint() {
    let Some(server) = peers::s_server(Tls::V13, "ca/root.pem") else {
        return;
    };
    let url = format!("https://localhost:{}/", server.port);
    let out = fetch(&[
        &url,
        "--cacert",
        &path("ca/root.pem"),
        "--cert",
        &path("negative/untrusted/openssl.p12"),
        "--cert-password",
        STORE,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("error[tls.client_cert_rejected]"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: the server accepts certificates issued by"),
        "{stderr}"
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON result");
    assert_eq!(json["ok"], false);
    assert_eq!(json["error"]["kind"], "tls.client_cert_rejected");
    assert!(!text(&out.stdout).contains(STORE) && !stderr.contains(STORE));

    // Untrusted server (system roots only).
    let out = fetch(&[&url, "--trust", "system"]);
    assert!(text(&out.stderr).contains("error[tls.server_untrusted]"));
}

#[test]
fn bad_flags_are_usage_errors() {
    for args in [
        vec!["ftp://localhost/"],
        vec!["https://localhost/", "-H", "no colon"],
        vec!["https://localhost/", "--tls-min", "1.1"],
        vec!["https://localhost/", "--resolve", "nonsense"],
        vec!["https://localhost/", "--trust", "custom"],
    ] {
        let out = fetch(&args);
        assert_eq!(
            out.status.code(),
            Some(64),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let port = peers::free_port();
    let out = fetch(&[&format!("https://127.0.0.1:{port}/")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("error[connect.refused]"));
}
