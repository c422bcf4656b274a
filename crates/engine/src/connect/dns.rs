//! Name resolution, with the job's pinned addresses taking precedence.

use std::io;
use std::net::{IpAddr, SocketAddr};

use crate::job::Job;

/// The addresses to try for `host:port`, in order.
pub(crate) async fn lookup(job: &Job, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    if let Some(pinned) = job.pinned(host, port) {
        return Ok(vec![pinned]);
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
    if addresses.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the name has no addresses",
        ));
    }
    Ok(addresses)
}
