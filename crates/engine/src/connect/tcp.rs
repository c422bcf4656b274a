//! TCP connect with `TCP_NODELAY`, trying each address in turn.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpStream;

/// Connects to the first address that accepts, and says which one that was; on failure, the
/// addresses tried (as text) and the last error.
pub(crate) async fn connect(
    addresses: &[SocketAddr],
) -> Result<(TcpStream, SocketAddr), (String, io::Error)> {
    let mut last = None;
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(stream) => {
                // Without it, small requests wait for delayed ACKs (40 ms spikes).
                stream
                    .set_nodelay(true)
                    .map_err(|error| (address.to_string(), error))?;
                return Ok((stream, *address));
            }
            Err(error) => last = Some(error),
        }
    }
    let tried = addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    Err((
        tried,
        last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address to connect to")),
    ))
}
