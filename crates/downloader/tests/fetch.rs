//! `downloader fetch` end to end: the built binary against nginx and `openssl s_server`
//! started by the test (skipped with a loud message when missing, unless `CI` is set).

#[path = "../../../tests/interop/peers.rs"]
mod peers;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use peers::{Tls, fixture};

const STORE: &str = "Fx-store-7431";
const PEM: &str = "Fx-pem-5820";

fn fetch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_downloader"))
        .arg("fetch")
        .args(args)
        .env("FX_STORE_PASSWORD", STORE)
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .expect("run downloader")
}

fn fetch_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_downloader"));
    command.arg("fetch").args(args);
    for name in ["https_proxy", "http_proxy", "no_proxy"] {
        command
            .env_remove(name)
            .env_remove(name.to_ascii_uppercase());
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run downloader")
}

/// A CONNECT proxy on loopback (threads), recording each request line.
fn connect_proxy() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let record = record.clone();
            std::thread::spawn(move || tunnel(client, &record));
        }
    });
    (port, seen)
}

fn tunnel(mut client: TcpStream, record: &Mutex<Vec<String>>) -> Option<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        client.read_exact(&mut byte).ok()?;
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let line = head.lines().next()?.to_owned();
    record.lock().ok()?.push(line.clone());
    let port: u16 = line
        .split_whitespace()
        .nth(1)?
        .rsplit_once(':')?
        .1
        .parse()
        .ok()?;
    let mut upstream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .ok()?;
    let (mut client_in, mut upstream_out) = (client.try_clone().ok()?, upstream.try_clone().ok()?);
    std::thread::spawn(move || std::io::copy(&mut client_in, &mut upstream_out));
    std::io::copy(&mut upstream, &mut client).ok()?;
    Some(())
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

    // Untrusted server (system roots only). Hints name fetch's flags, never a job-API field.
    let out = fetch(&[&url, "--trust", "system"]);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("error[tls.server_untrusted]"), "{stderr}");
    assert!(
        stderr.contains("--cacert") && stderr.contains("--insecure"),
        "{stderr}"
    );
    let out = fetch(&[
        &url,
        "--cacert",
        &path("ca/root.pem"),
        "--cert",
        &path("client/rsa2048/documented.jks"),
        "--cert-password",
        "not-the-password-3",
    ]);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("error[keystore.wrong_store_password]"),
        "{stderr}"
    );
    assert!(stderr.contains("--cert-password"), "{stderr}");
    for field in [
        "config.",
        "keystorePassword",
        "client_cert_configuration",
        "DOWNLOADER_",
    ] {
        assert!(!stderr.contains(field), "fetch names {field}: {stderr}");
    }
    assert!(!stderr.contains("not-the-password-3"), "{stderr}");
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

#[test]
fn fetch_follows_redirects_goes_through_proxies_and_posts_forms() {
    let Some(nginx) = peers::nginx() else {
        return;
    };
    let base = format!("https://a.localhost:{}", nginx.port);
    let resolve = format!("a.localhost:{}:127.0.0.1", nginx.port);
    let cacert = path("ca/root.pem");
    let cert = path("client/p256/openssl.p12");
    let common = [
        "--resolve",
        &resolve,
        "--cacert",
        &cacert,
        "--cert",
        &cert,
        "--cert-password-env",
        "FX_STORE_PASSWORD",
    ];
    let run = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args: Vec<&str> = common.to_vec();
        args.extend_from_slice(extra);
        let mut env = env.to_vec();
        env.push(("FX_STORE_PASSWORD", STORE));
        fetch_with_env(&args, &env)
    };
    let json = |out: &Output| -> serde_json::Value {
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    };

    // GET follows by default; every hop is in the result.
    let r302 = format!("{base}/r302");
    let out = run(&[&r302, "--json"], &[]);
    let result = json(&out);
    assert_eq!(
        result["response"]["statusCode"],
        200,
        "{}",
        text(&out.stderr)
    );
    assert_eq!(result["metrics"]["redirects"], 1);
    assert_eq!(result["redirects"][0]["statusCode"], 302);
    let out = run(&[&r302], &[]);
    assert!(
        text(&out.stdout).starts_with("< 302 GET "),
        "{}",
        text(&out.stdout)
    );
    // --no-follow, --max-redirects.
    let out = run(&[&r302, "--no-follow", "--json"], &[]);
    assert_eq!(json(&out)["response"]["statusCode"], 302);
    let out = run(&[&r302, "--max-redirects", "0", "--json"], &[]);
    assert_eq!(json(&out)["error"]["kind"], "redirect.limit");
    assert_eq!(out.status.code(), Some(1));
    // POST follows only with -L; 307 keeps the method.
    let r307 = format!("{base}/r307");
    let out = run(&[&r307, "-d", "x", "--json"], &[]);
    assert_eq!(json(&out)["response"]["statusCode"], 307);
    let out = run(&[&r307, "-d", "x", "-L", "--json"], &[]);
    let body = json(&out)["response"]["body"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(body.contains("method=POST"), "{body}");

    // A multipart form with a file.
    let dir = peers::temp_dir("fetch-form");
    let file = dir.join("upload.bin");
    std::fs::write(&file, [0u8, 1, 2, 3]).expect("write");
    let upload = format!("up=@{};type=application/x-test", file.display());
    let root = format!("{base}/");
    let out = run(&[&root, "-F", "field=value", "-F", &upload, "--json"], &[]);
    let body = json(&out)["response"]["body"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(body.contains("method=POST"), "{body} {}", text(&out.stderr));
    let _ = std::fs::remove_dir_all(dir);

    // HTTPS_PROXY is used (a CONNECT tunnel, mutual TLS inside), NO_PROXY is respected,
    // --proxy overrides.
    let (proxy_port, seen) = connect_proxy();
    let proxy = format!("http://127.0.0.1:{proxy_port}");
    let out = run(&[&root, "--json"], &[("HTTPS_PROXY", &proxy)]);
    let result = json(&out);
    assert_eq!(result["ok"], true, "{}", text(&out.stderr));
    assert!(
        result["response"]["body"]
            .as_str()
            .unwrap_or("")
            .contains("CN=client-p256")
    );
    assert!(result["metrics"]["proxy"].is_number());
    let tunnel = format!("CONNECT a.localhost:{} HTTP/1.1", nginx.port);
    assert_eq!(*seen.lock().expect("lock"), [tunnel]);
    let out = run(
        &[&root, "--json"],
        &[("HTTPS_PROXY", &proxy), ("NO_PROXY", "localhost")],
    );
    assert_eq!(json(&out)["ok"], true);
    assert_eq!(
        seen.lock().expect("lock").len(),
        1,
        "NO_PROXY must bypass the proxy"
    );
    let out = run(
        &[
            &root,
            "--proxy",
            &proxy,
            "--proxy-user",
            "u:pr0xy-pw",
            "--json",
        ],
        &[],
    );
    assert_eq!(json(&out)["ok"], true);
    assert_eq!(seen.lock().expect("lock").len(), 2);
    assert!(!text(&out.stdout).contains("pr0xy-pw") && !text(&out.stderr).contains("pr0xy-pw"));
    let closed = format!("http://127.0.0.1:{}", peers::free_port());
    let out = run(&[&root, "--proxy", &closed, "--json"], &[]);
    assert_eq!(json(&out)["error"]["kind"], "proxy.unreachable");
}
