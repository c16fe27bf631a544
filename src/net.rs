//! TCP connect with deadlines, and `ADDR[/BITS]` networks: the client's compile connections and the monitor's stats requests open their sockets here; the daemon's access list and `wrap` read `--allow` here.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Why no connection was made. Each says it in distcc 3.4's words
/// (`dcc_connect_by_name`, `dcc_connect_by_addr`), then ours.
#[derive(Debug)]
pub enum ConnectError {
    /// The host name did not resolve.
    Resolve {
        host: String,
        port: u16,
        why: std::io::Error,
    },
    /// It resolved to no address at all.
    NoAddress { host: String },
    /// No socket could be made for the address.
    Socket {
        addr: SocketAddr,
        why: std::io::Error,
    },
    /// `connect` itself failed at once.
    Connect {
        addr: SocketAddr,
        why: std::io::Error,
    },
    /// The connect was started and the peer, or the network, refused it.
    Nonblocking {
        addr: SocketAddr,
        why: std::io::Error,
    },
    /// The connect did not finish within the timeout.
    Timeout { addr: SocketAddr, after: Duration },
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Resolve { host, port, why } => {
                write!(f, "failed to resolve host {host} port {port}: {why}")
            }
            ConnectError::NoAddress { host } => write!(f, "no address for {host}"),
            ConnectError::Socket { addr, why } => {
                write!(f, "failed to create socket: {why} (connecting to {addr})")
            }
            ConnectError::Connect { addr, why } => write!(f, "failed to connect to {addr}: {why}"),
            ConnectError::Nonblocking { addr, why } => {
                write!(f, "nonblocking connect to {addr} failed: {why}")
            }
            ConnectError::Timeout { addr, after } => write!(
                f,
                "timeout while connecting to {addr} (timed out after {} s)",
                after.as_secs_f32()
            ),
        }
    }
}

impl std::error::Error for ConnectError {}

/// A TCP connection to the first address of `host` that answers within
/// `timeout` (per address, tried in the resolver's order). When all fail,
/// the last address's error.
pub fn connect_tcp(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|why| ConnectError::Resolve {
            host: host.to_string(),
            port,
            why,
        })?
        .collect();
    let mut last = ConnectError::NoAddress {
        host: host.to_string(),
    };
    for addr in addrs {
        match connect_addr(addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(err) => last = err,
        }
    }
    Err(last)
}

/// 3.4's nonblocking connect to one address: start it, wait up to
/// `timeout` for the socket to be writable, then read its error. The
/// stream is returned blocking.
fn connect_addr(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ConnectError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .and_then(|socket| socket.set_nonblocking(true).map(|()| socket))
        .map_err(|why| ConnectError::Socket { addr, why })?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(why) if why.raw_os_error() == Some(libc::EINPROGRESS) => {
            wait_writable(&socket, addr, timeout)?;
            if let Some(why) = socket
                .take_error()
                .map_err(|why| ConnectError::Nonblocking { addr, why })?
            {
                return Err(ConnectError::Nonblocking { addr, why });
            }
        }
        Err(why) => return Err(ConnectError::Connect { addr, why }),
    }
    socket
        .set_nonblocking(false)
        .map_err(|why| ConnectError::Connect { addr, why })?;
    Ok(socket.into())
}

/// Waits until a connecting `socket` is writable (connected or failed),
/// or `timeout` has passed.
fn wait_writable(
    socket: &socket2::Socket,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<(), ConnectError> {
    use std::os::fd::AsRawFd;
    match crate::sys::poll_one(socket.as_raw_fd(), libc::POLLOUT, timeout) {
        Ok(true) => Ok(()),
        Ok(false) => Err(ConnectError::Timeout {
            addr,
            after: timeout,
        }),
        Err(why) => Err(ConnectError::Nonblocking { addr, why }),
    }
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
            matches!(&err, ConnectError::Nonblocking { addr, why }
                if addr.port() == port && why.kind() == std::io::ErrorKind::ConnectionRefused),
            "{err:?}"
        );
        // distcc 3.4's words.
        assert!(
            err.to_string()
                .starts_with(&format!("nonblocking connect to 127.0.0.1:{port} failed: ")),
            "{err}"
        );
    }

    #[test]
    fn a_connect_nobody_answers_times_out() {
        // A listener that never accepts, with its queue full: further
        // SYNs are dropped and the connect hangs.
        use socket2::{Domain, Socket, Type};
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        listener
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        listener.listen(0).unwrap();
        let addr = listener.local_addr().unwrap().as_socket().unwrap();
        let mut queued = Vec::new();
        let started = std::time::Instant::now();
        let err = loop {
            assert!(queued.len() < 16, "the listener's queue never filled");
            match connect_tcp("127.0.0.1", addr.port(), Duration::from_millis(300)) {
                Ok(stream) => queued.push(stream),
                Err(err) => break err,
            }
        };
        assert!(
            matches!(err, ConnectError::Timeout { addr: a, .. } if a == addr),
            "{err:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        // distcc 3.4's words.
        assert!(
            err.to_string()
                .starts_with(&format!("timeout while connecting to {addr} ")),
            "{err}"
        );
    }

    #[test]
    fn a_name_that_does_not_resolve_says_so() {
        let err = connect_tcp("no-such-host.invalid", 1, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, ConnectError::Resolve { .. }), "{err:?}");
        assert!(err
            .to_string()
            .starts_with("failed to resolve host no-such-host.invalid port 1: "));
    }
}
