//! Independent TLS peers for interop tests: `openssl s_server` and nginx.
//!
//! Each peer is started on a free loopback port in its own temp directory, as the current
//! user, and killed when its guard is dropped. When the binary is missing the test is skipped
//! with a loud message, unless the environment variable `CI` is set: then it fails.
//!
//! Included by test crates with `#[path = ".../tests/interop/peers.rs"] mod peers;`.

#![allow(dead_code)] // reason: each test crate uses a different part of these helpers

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The fixture directory (`tests/fixtures`).
pub(crate) fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// A fixture file.
pub(crate) fn fixture(relative: &str) -> PathBuf {
    fixtures().join(relative)
}

/// Whether `binary` can be run; when it cannot, skips (returns false) or fails under CI.
pub(crate) fn require(binary: &str) -> bool {
    let found = Command::new(binary)
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
        || Command::new("sh")
            .args(["-c", &format!("command -v {binary}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
    if found {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{binary} is required under CI but is not installed (apt-get install -y {binary})");
    }
    eprintln!();
    eprintln!("!!!! SKIPPING: `{binary}` is not installed; this interop test did not run !!!!");
    eprintln!("!!!! install it (apt-get install -y {binary}) or set CI=1 to make this fail !!!!");
    eprintln!();
    false
}

/// A free loopback port (bound, then released).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

/// A fresh temp directory for one peer.
pub(crate) fn temp_dir(label: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "downloader-{label}-{}-{n}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A running peer; killed (and its directory removed) on drop.
#[derive(Debug)]
pub(crate) struct Peer {
    child: Child,
    /// The loopback port it listens on.
    pub(crate) port: u16,
    /// Its temp directory (config and logs).
    pub(crate) dir: PathBuf,
}

impl Peer {
    /// The peer's log so far (for assertion messages).
    pub(crate) fn log(&self) -> String {
        ["stderr.log", "error.log"]
            .iter()
            .filter_map(|name| std::fs::read_to_string(self.dir.join(name)).ok())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_for_port(port: u16, child: &mut Child, dir: &Path) {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
            let error = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            panic!("peer exited early ({status}):\n{log}\n{error}");
        }
        if TcpStream::connect_timeout(&address, Duration::from_millis(100)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("peer did not listen on port {port} within 10 s");
}

/// TLS version for `s_server`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tls {
    /// `-tls1_2`
    V12,
    /// `-tls1_3`
    V13,
}

/// Starts `openssl s_server -Verify 1 -verify_return_error -www` presenting the localhost
/// certificate (with its intermediate) and trusting the client CAs in `client_ca` (relative to
/// the fixtures). `None` when openssl is missing (and `CI` is not set).
pub(crate) fn s_server(tls: Tls, client_ca: &str) -> Option<Peer> {
    start_s_server(tls, client_ca, true)
}

/// Like [`s_server`], but presenting only the leaf certificate, without its intermediate (a
/// common server misconfiguration).
pub(crate) fn s_server_without_intermediate(tls: Tls, client_ca: &str) -> Option<Peer> {
    start_s_server(tls, client_ca, false)
}

fn start_s_server(tls: Tls, client_ca: &str, with_intermediate: bool) -> Option<Peer> {
    if !require("openssl") {
        return None;
    }
    let port = free_port();
    let dir = temp_dir("s_server");
    let stderr = std::fs::File::create(dir.join("stderr.log")).expect("log file");
    let mut command = Command::new("openssl");
    command
        .arg("s_server")
        .args(["-accept", &format!("127.0.0.1:{port}")])
        .arg("-cert")
        .arg(fixture("server/localhost.pem"))
        .arg("-key")
        .arg(fixture("server/localhost.key.pem"));
    if with_intermediate {
        command
            .arg("-cert_chain")
            .arg(fixture("ca/intermediate.pem"));
    }
    let mut child = command
        .arg("-CAfile")
        .arg(fixture(client_ca))
        .args(["-Verify", "1", "-verify_return_error", "-www", "-no_ticket"])
        .arg(match tls {
            Tls::V12 => "-tls1_2",
            Tls::V13 => "-tls1_3",
        })
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start openssl s_server");
    wait_for_port(port, &mut child, &dir);
    Some(Peer { child, port, dir })
}

/// Starts nginx with `tests/interop/nginx.conf.in`: two SNI servers (`a.localhost`,
/// `b.localhost`) with `ssl_verify_client on`, different client CAs, and http2.
pub(crate) fn nginx() -> Option<Peer> {
    if !require("nginx") {
        return None;
    }
    let port = free_port();
    let dir = temp_dir("nginx");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false);
    // As root, nginx would switch its workers to `nobody`; keep them as the current user.
    let user_line = if root { "user root;" } else { "" };
    let fixtures = fixtures().canonicalize().expect("fixtures directory");
    let config = include_str!("nginx.conf.in")
        .replace("{dir}", &dir.display().to_string())
        .replace("{fixtures}", &fixtures.display().to_string())
        .replace("{port}", &port.to_string())
        .replace("{user_line}", user_line);
    let config_path = dir.join("nginx.conf");
    std::fs::write(&config_path, config).expect("write nginx.conf");
    let stderr = std::fs::File::create(dir.join("stderr.log")).expect("log file");
    let mut child = Command::new("nginx")
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&config_path)
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start nginx");
    wait_for_port(port, &mut child, &dir);
    Some(Peer { child, port, dir })
}
