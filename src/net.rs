//! TCP connect with deadlines: the client's compile connections and the monitor's stats requests open their sockets here.

use std::fmt;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
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
