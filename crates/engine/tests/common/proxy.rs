//! An in-process forward proxy: CONNECT tunnels and absolute-form HTTP requests, with
//! optional Basic authentication; it records what it was asked.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub(crate) struct ForwardProxy {
    pub(crate) port: u16,
    /// `CONNECT host:port` or `GET http://...`, one line per request, plus `auth=...`.
    pub(crate) seen: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for ForwardProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ForwardProxy {
    pub(crate) fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("lock").clone()
    }
}

/// Starts a proxy; `credentials` is the expected `Proxy-Authorization` value; tunnels to
/// `refused_port` are answered 403.
pub(crate) async fn start(credentials: Option<String>, refused_port: Option<u16>) -> ForwardProxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let task = tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let record = record.clone();
            let credentials = credentials.clone();
            tokio::spawn(async move {
                let _ = serve(client, record, credentials, refused_port).await;
            });
        }
    });
    ForwardProxy { port, seen, task }
}

async fn serve(
    mut client: TcpStream,
    record: Arc<Mutex<Vec<String>>>,
    credentials: Option<String>,
    refused_port: Option<u16>,
) -> std::io::Result<()> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let read = client.read(&mut chunk).await?;
        if read == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let rest = buffer[head_end..].to_vec();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let auth = lines
        .clone()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("proxy-authorization")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    record
        .lock()
        .expect("lock")
        .push(format!("{method} {target} auth={}", !auth.is_empty()));
    if let Some(expected) = &credentials
        && auth != *expected
    {
        client
            .write_all(
                b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic \
                  realm=\"test\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await?;
        return Ok(());
    }
    if method == "CONNECT" {
        let port: u16 = target
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse().ok())
            .unwrap_or(0);
        if Some(port) == refused_port {
            client
                .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                .await?;
            return Ok(());
        }
        let mut upstream = TcpStream::connect(("127.0.0.1", port)).await?;
        client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await?;
        upstream.write_all(&rest).await?;
        tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
        return Ok(());
    }
    // Absolute form: http://host:port/path -> origin form to host:port.
    let url = url::Url::parse(&target).map_err(std::io::Error::other)?;
    let port = url.port_or_known_default().unwrap_or(80);
    let mut origin = url.path().to_owned();
    if let Some(query) = url.query() {
        origin.push('?');
        origin.push_str(query);
    }
    let mut forwarded = format!("{method} {origin} HTTP/1.1\r\n");
    for line in head.split("\r\n").skip(1) {
        if line.is_empty() || line.to_ascii_lowercase().starts_with("proxy-authorization") {
            continue;
        }
        forwarded.push_str(line);
        forwarded.push_str("\r\n");
    }
    forwarded.push_str("\r\n");
    let mut upstream = TcpStream::connect(("127.0.0.1", port)).await?;
    upstream.write_all(forwarded.as_bytes()).await?;
    upstream.write_all(&rest).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}
