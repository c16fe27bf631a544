//! TCP connect with deadlines, and `ADDR[/BITS]` networks: the client's compile connections and the monitor's stats requests open their sockets here; the daemon's access list and `wrap` read `--allow` here.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Why no connection was made.
#[derive(Debug)]
pub enum ConnectError {
    /// The host name did not resolve.
    Resolve { host: String, why: std::io::Error },
    /// It resolved to no address at all.
    NoAddress { host: String },
    /// Every address failed or timed out; this is the last one's error.
    Failed {
        addr: SocketAddr,
        why: std::io::Error,
    },
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Resolve { host, why } => write!(f, "cannot resolve {host}: {why}"),
            ConnectError::NoAddress { host } => write!(f, "no address for {host}"),
            ConnectError::Failed { addr, why } => write!(f, "{addr}: {why}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// A TCP connection to the first address of `host` that answers within
/// `timeout` (per address, tried in the resolver's order).
pub fn connect_tcp(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|why| ConnectError::Resolve {
            host: host.to_string(),
            why,
        })?
        .collect();
    let mut last = ConnectError::NoAddress {
        host: host.to_string(),
    };
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(why) => last = ConnectError::Failed { addr, why },
        }
    }
    Err(last)
}

/// One allowed network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allow {
    addr: IpAddr,
    bits: u8,
}

impl Allow {
    /// Parses `ADDR[/BITS]`. ADDR may be a host name (its first address is
    /// used). BITS must be a decimal number within the address's width; a
    /// bad mask is an error, never a wider network.
    pub fn parse(spec: &str) -> Result<Allow, String> {
        let (host, bits) = match spec.split_once('/') {
            Some((host, bits)) => (host, Some(bits)),
            None => (spec, None),
        };
        let addr = match host.parse::<IpAddr>() {
            Ok(addr) => addr,
            Err(_) if !host.is_empty() => (host, 0)
                .to_socket_addrs()
                .ok()
                .and_then(|mut addrs| addrs.next())
                .map(|sa| sa.ip())
                .ok_or_else(|| format!("can't resolve access address '{host}'"))?,
            Err(_) => return Err(format!("empty address in access list entry '{spec}'")),
        };
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => width,
            Some(b) if !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit()) && b.len() <= 3 => {
                let n: u8 = b
                    .parse()
                    .map_err(|_| format!("bad mask '/{b}' in '{spec}'"))?;
                if n > width {
                    return Err(format!(
                        "mask '/{b}' in '{spec}' is wider than the address ({width} bits)"
                    ));
                }
                n
            }
            Some(b) => return Err(format!("bad mask '/{b}' in '{spec}': not a number")),
        };
        Ok(Allow {
            addr: mask(addr, bits),
            bits,
        })
    }

    /// True if `client` is inside this network. An IPv4 network also matches
    /// IPv4-mapped and IPv4-compatible IPv6 clients.
    pub fn matches(&self, client: IpAddr) -> bool {
        let client = match (self.addr, client) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => match embedded_v4(v6) {
                Some(v4) => IpAddr::V4(v4),
                None => return false,
            },
            (_, client) => client,
        };
        client.is_ipv4() == self.addr.is_ipv4() && mask(client, self.bits) == self.addr
    }
}

impl fmt::Display for Allow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.bits)
    }
}

fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    // IPv4-compatible ::a.b.c.d, but not :: or ::1.
    let s = v6.segments();
    (s[..6] == [0; 6] && (s[6] != 0 || s[7] > 1))
        .then(|| v6.to_ipv4().unwrap_or(Ipv4Addr::UNSPECIFIED))
}

fn mask(addr: IpAddr, bits: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let m = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(bits))
            };
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & m))
        }
        IpAddr::V6(v6) => {
            let m = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(bits))
            };
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & m))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn connects_to_a_listener_and_names_a_refusal() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stream = connect_tcp("127.0.0.1", port, Duration::from_secs(4)).unwrap();
        assert_eq!(stream.peer_addr().unwrap().port(), port);
        drop(listener);
        let err = connect_tcp("127.0.0.1", port, Duration::from_secs(4)).unwrap_err();
        assert!(
            matches!(&err, ConnectError::Failed { addr, why }
                if addr.port() == port && why.kind() == std::io::ErrorKind::ConnectionRefused),
            "{err:?}"
        );
        assert!(
            err.to_string().starts_with(&format!("127.0.0.1:{port}: ")),
            "{err}"
        );
    }

    #[test]
    fn a_name_that_does_not_resolve_says_so() {
        let err = connect_tcp("no-such-host.invalid", 1, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, ConnectError::Resolve { .. }), "{err:?}");
        assert!(err
            .to_string()
            .starts_with("cannot resolve no-such-host.invalid: "));
    }
}
