//! `downloader fetch --egress-deny/--egress-allow`: no policy unless asked; with one, a denied
//! loopback port sees no connection and the result is `egress.denied`.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

fn fetch(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_downloader"));
    command.arg("fetch").args(args);
    for name in ["https_proxy", "http_proxy", "no_proxy"] {
        command
            .env_remove(name)
            .env_remove(name.to_ascii_uppercase());
    }
    command.output().expect("run downloader")
}

/// A loopback HTTP server (threads) answering `ok`, counting accepted connections.
fn counted() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let accepts = Arc::new(AtomicUsize::new(0));
    let counter = accepts.clone();
    std::thread::spawn(move || {
        for mut client in listener.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut head = [0u8; 4096];
            let _ = client.read(&mut head);
            let _ = client
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    (port, accepts)
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "{error}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[test]
fn fetch_has_no_policy_unless_asked_and_a_denied_port_sees_nothing() {
    let (port, accepts) = counted();
    let url = format!("http://127.0.0.1:{port}/");
    let open = fetch(&["--json", &url]);
    assert_eq!(json(&open)["response"]["statusCode"], 200);
    assert_eq!(accepts.load(Ordering::SeqCst), 1);

    let deny = format!("10.0.0.0/8,127.0.0.1:{port}");
    for url in [url.clone(), format!("http://2130706433:{port}/")] {
        let denied = fetch(&[
            "--json",
            "--egress-deny",
            &deny,
            "--egress-allow",
            "127.0.0.1",
            &url,
        ]);
        let result = json(&denied);
        assert_eq!(result["error"]["kind"], "egress.denied", "{result}");
        let message = result["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("'deny 127.0.0.1:{port}'")),
            "{message}"
        );
        assert!(!denied.status.success());
    }
    // --egress-allow alone turns the defaults on: 0.0.0.0 reaches this host, so it is denied.
    let unspecified = fetch(&[
        "--json",
        "--egress-allow",
        "192.0.2.1",
        &format!("http://0.0.0.0:{port}/"),
    ]);
    assert_eq!(json(&unspecified)["error"]["kind"], "egress.denied");
    assert_eq!(accepts.load(Ordering::SeqCst), 1);

    let bad = fetch(&["--egress-deny", "10.0.0.0/40", &url]);
    assert_eq!(bad.status.code(), Some(64), "{bad:?}");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--egress-deny"));
}
