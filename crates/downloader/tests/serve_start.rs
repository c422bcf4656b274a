//! How `downloader serve` starts, and `downloader healthcheck` against it. The health check
//! finds the agent from the same settings (`DOWNLOADER_LISTEN` as an address alone plus the
//! reference's `port`, as the image and the reference's compose file set them), exits 0 while
//! the agent answers and 1 once it is gone; an active-style `--url` to a closed port is
//! unhealthy too. A broken configured keystore keeps its own kind.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

fn healthcheck(data: &std::path::Path, port: u16) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_downloader"))
        .arg("healthcheck")
        .env("DOWNLOADER_DATA_DIR", data)
        .env("DOWNLOADER_LISTEN", "127.0.0.1")
        .env("port", port.to_string())
        .env("apikey", "health-apikey")
        .env("secret", "health-secret-0001")
        .output()
        .expect("healthcheck runs")
}

#[test]
fn healthcheck_follows_the_agent() {
    let dir = std::env::temp_dir().join(format!("dl-healthcheck-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let port = free_port();
    let mut agent = Command::new(env!("CARGO_BIN_EXE_downloader"))
        .arg("serve")
        .env("DOWNLOADER_DATA_DIR", &dir)
        .env("DOWNLOADER_LISTEN", "127.0.0.1")
        .env("port", port.to_string())
        .env("apikey", "health-apikey")
        .env("secret", "health-secret-0001")
        .env("java_opts", "-Xmx512m")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    let stdout = agent.stdout.take().expect("piped");
    let mut banner = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("banner");
        let done = line.contains("notice:");
        banner.push(line);
        if done {
            break;
        }
    }
    let banner = banner.join("\n");
    assert!(
        banner.contains(&format!("https://127.0.0.1:{port}/api/v1/jobs")),
        "the reference's port applies to the address-only listen: {banner}"
    );
    assert!(banner.contains("java_opts"), "{banner}");

    let healthy = healthcheck(&dir, port);
    let stdout = String::from_utf8_lossy(&healthy.stdout);
    assert!(healthy.status.success(), "{healthy:?}");
    assert!(
        stdout.starts_with("healthy: ") && stdout.contains("\"ok\""),
        "{stdout}"
    );
    let url_file = std::fs::read_to_string(dir.join("serve.url")).expect("serve.url");
    assert_eq!(url_file, format!("https://127.0.0.1:{port}"));

    agent.kill().expect("kill");
    agent.wait().expect("reaped");
    let unhealthy = healthcheck(&dir, port);
    let stderr = String::from_utf8_lossy(&unhealthy.stderr);
    assert_eq!(unhealthy.status.code(), Some(1), "{unhealthy:?}");
    assert!(stderr.starts_with("error[unhealthy]: "), "{stderr}");
    assert!(!stderr.contains("health-secret-0001"), "{stderr}");

    let closed = Command::new(env!("CARGO_BIN_EXE_downloader"))
        .args(["healthcheck", "--quiet", "--timeout", "1", "--url"])
        .arg(format!("https://127.0.0.1:{}", free_port()))
        .output()
        .expect("healthcheck runs");
    assert_eq!(closed.status.code(), Some(1));
    assert!(closed.stdout.is_empty());
    std::fs::remove_dir_all(&dir).expect("clean up");
}

/// A configured keystore that does not open keeps the keystore's own kind inside
/// `config.keystore`, and its hint, instead of becoming a generic `config.invalid` text.
#[test]
fn a_broken_configured_keystore_says_config_keystore_with_its_kind() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let keystore = fixtures.join("client/rsa2048/documented.jks");
    let json = format!(
        r#"{{"keystorePath":"{}","keystorePassword":"not-the-password-77"}}"#,
        keystore.display()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_downloader"))
        .args(["serve", "--check"])
        .env("HOME", std::env::temp_dir())
        .env("client_cert_configuration", json)
        .output()
        .expect("serve --check runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.starts_with("error[config.keystore]: client_cert_configuration: "),
        "{stderr}"
    );
    assert!(stderr.contains("password"), "{stderr}");
    assert!(!stderr.contains("not-the-password-77"), "{stderr}");
}
