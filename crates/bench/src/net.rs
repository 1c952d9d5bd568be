//! Client sockets: spread over source addresses 127.0.0.1..127.0.0.N so tens of thousands of
//! connections never exhaust one address's ephemeral ports, and the open-file limit raised.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::{TcpSocket, TcpStream};

/// The server under test, and the pool of loopback source addresses to connect from.
#[derive(Debug, Clone)]
pub struct Target {
    pub server: SocketAddrV4,
    sources: Arc<SourcePool>,
    /// The Socket.IO parser the server speaks (and its clients must speak).
    pub parser: crate::client::WireParser,
    /// The Socket.IO CONNECT packet every client sends: `40`, or `40{"token":...}` with a token.
    connect_packet: Arc<str>,
    /// The token of `connect_packet`, for clients of other parsers.
    token: Option<Arc<str>>,
}

#[derive(Debug)]
struct SourcePool {
    count: usize,
    next: AtomicUsize,
}

impl Target {
    /// `source_count` source addresses, 127.0.0.1 upwards (at most 254, all inside 127.0.0.0/8).
    pub fn new(server: SocketAddrV4, source_count: usize) -> Self {
        Self {
            server,
            sources: Arc::new(SourcePool { count: source_count.clamp(1, 254), next: AtomicUsize::new(0) }),
            connect_packet: "40".into(),
            token: None,
            parser: crate::client::WireParser::Json,
        }
    }

    /// Every client connects with `{"token": token}` as its handshake `auth` (a server with JWT auth).
    pub fn with_token(mut self, token: Option<&str>) -> Self {
        if let Some(token) = token {
            self.connect_packet = format!("40{}", serde_json::json!({ "token": token })).into();
            self.token = Some(token.into());
        }
        self
    }

    /// The handshake `auth` of the CONNECT packet (`{"token": ...}`), if any.
    pub fn connect_auth(&self) -> Option<serde_json::Value> {
        self.token.as_deref().map(|token| serde_json::json!({ "token": token }))
    }

    /// The Socket.IO CONNECT packet to `/` (with the token's `auth`, if any).
    pub fn connect_packet(&self) -> &[u8] {
        self.connect_packet.as_bytes()
    }

    /// The same server, spoken to with `parser`.
    pub fn with_parser(mut self, parser: crate::client::WireParser) -> Self {
        self.parser = parser;
        self
    }

    /// `host:port` for the HTTP `Host` header.
    pub fn host_header(&self) -> String {
        self.server.to_string()
    }

    /// The next source address, round robin.
    pub fn next_source(&self) -> Ipv4Addr {
        let index = self.sources.next.fetch_add(1, Ordering::Relaxed) % self.sources.count;
        source_address(index)
    }

    /// A TCP connection to the server from the next source address, with Nagle off.
    pub async fn connect(&self) -> io::Result<TcpStream> {
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        defer_port_choice(&socket);
        socket.bind(SocketAddr::V4(SocketAddrV4::new(self.next_source(), 0)))?;
        let stream = socket.connect(SocketAddr::V4(self.server)).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// 127.0.0.(index + 1).
pub fn source_address(index: usize) -> Ipv4Addr {
    let last = (index % 254) as u8 + 1;
    Ipv4Addr::new(127, 0, 0, last)
}

/// IP_BIND_ADDRESS_NO_PORT: pick the ephemeral port at connect time, per 4-tuple, instead of at bind
/// time per address. Best effort: without it the pool of addresses still multiplies the ports.
fn defer_port_choice(socket: &TcpSocket) {
    let enable: libc::c_int = 1;
    // SAFETY: a valid socket fd and a properly sized c_int option value.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &enable as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Raises the soft open-file limit to the hard limit (child processes such as the servers started by
/// the runner inherit it). Returns the limit now in force.
pub fn raise_nofile_limit() -> u64 {
    match rlimit::Resource::NOFILE.get() {
        Ok((soft, hard)) => {
            if soft < hard && rlimit::Resource::NOFILE.set(hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Err(_) => 1024,
    }
}

/// Source addresses needed for `connections`, leaving each address well under the ~28,000 ports of the
/// default ephemeral range (and room for TIME_WAIT sockets of earlier runs).
pub fn sources_for(connections: usize) -> usize {
    (connections / 8_000 + 2).clamp(2, 254)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_stay_in_loopback() {
        assert_eq!(source_address(0), Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(source_address(9), Ipv4Addr::new(127, 0, 0, 10));
        assert_eq!(source_address(253), Ipv4Addr::new(127, 0, 0, 254));
        assert_eq!(source_address(254), Ipv4Addr::new(127, 0, 0, 1));
        for index in 0..1000 {
            assert!(source_address(index).is_loopback());
        }
    }

    #[test]
    fn round_robin_over_the_pool() {
        let target = Target::new(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 3000), 3);
        let picked: Vec<_> = (0..4).map(|_| target.next_source()).collect();
        assert_eq!(
            picked,
            vec![
                Ipv4Addr::new(127, 0, 0, 1),
                Ipv4Addr::new(127, 0, 0, 2),
                Ipv4Addr::new(127, 0, 0, 3),
                Ipv4Addr::new(127, 0, 0, 1)
            ]
        );
    }

    #[test]
    fn enough_sources_for_large_runs() {
        assert_eq!(sources_for(100), 2);
        assert!(sources_for(50_000) * 8_000 >= 50_000);
        assert!(sources_for(10_000_000) <= 254);
    }
}
