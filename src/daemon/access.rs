//! The daemon's access list: `--allow ADDR[/BITS]` networks and the private ranges.

use std::fmt;
use std::net::IpAddr;

pub use crate::net::Allow;

/// The ranges `--allow-private` adds, and the default when no `--allow` is
/// given. Unlike distccd 3.4, all seven apply, `::1` included.
pub const PRIVATE_RANGES: [&str; 7] = [
    "192.168.0.0/16",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "127.0.0.0/8",
    "fe80::/10",
    "fc00::/7",
    "::1/128",
];

/// The networks allowed to connect. An empty list allows everyone; the
/// daemon only leaves it empty in inetd mode, as distccd does.
#[derive(Clone, Debug, Default)]
pub struct AccessList {
    entries: Vec<Allow>,
}

impl AccessList {
    pub fn push(&mut self, allow: Allow) {
        if !self.entries.contains(&allow) {
            self.entries.push(allow);
        }
    }

    /// Adds the seven private ranges.
    pub fn add_private(&mut self) {
        for range in PRIVATE_RANGES {
            if let Ok(allow) = Allow::parse(range) {
                self.push(allow);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True if `client` may connect. An IPv4-mapped IPv6 address (a v4
    /// client on a dual-stack socket) is checked as the IPv4 client it is,
    /// so IPv6 entries never match it, as in distccd.
    pub fn allows(&self, client: IpAddr) -> bool {
        let client = match client {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
            v4 => v4,
        };
        self.entries.is_empty() || self.entries.iter().any(|e| e.matches(client))
    }
}

impl fmt::Display for AccessList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.entries.is_empty() {
            return write!(f, "everyone");
        }
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn masks_parse_strictly() {
        assert_eq!(
            Allow::parse("10.1.2.3/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            Allow::parse("127.0.0.1").unwrap().to_string(),
            "127.0.0.1/32"
        );
        assert_eq!(Allow::parse("::1").unwrap().to_string(), "::1/128");
        assert!(Allow::parse("10.0.0.0/x").is_err());
        assert!(Allow::parse("10.0.0.0/40").is_err());
        assert!(Allow::parse("10.0.0.0/").is_err());
        assert!(Allow::parse("10.0.0.0/-1").is_err());
        assert!(Allow::parse("::/129").is_err());
        assert!(Allow::parse("/8").is_err());
        assert!(Allow::parse("no.such.host.invalid").is_err());
    }

    #[test]
    fn matching() {
        let net = Allow::parse("127.0.0.1").unwrap();
        assert!(net.matches(ip("127.0.0.1")));
        assert!(!net.matches(ip("127.0.0.2")));
        assert!(net.matches(ip("::ffff:127.0.0.1")));
        assert!(!net.matches(ip("::1")));
        let v6 = Allow::parse("fe80::/10").unwrap();
        assert!(v6.matches(ip("fe80::1")));
        assert!(!v6.matches(ip("10.0.0.1")));
        assert!(Allow::parse("0.0.0.0/0").unwrap().matches(ip("8.8.8.8")));
    }

    #[test]
    fn private_ranges_include_loopback_v6() {
        let mut list = AccessList::default();
        list.add_private();
        assert!(list.allows(ip("::1")));
        assert!(list.allows(ip("192.168.1.1")));
        assert!(list.allows(ip("172.31.255.255")));
        assert!(!list.allows(ip("172.32.0.1")));
        assert!(!list.allows(ip("8.8.8.8")));
        assert!(!list.allows(ip("2001:db8::1")));
    }

    #[test]
    fn mapped_clients_are_ipv4_clients() {
        let mut list = AccessList::default();
        list.push(Allow::parse("::/0").unwrap());
        assert!(
            !list.allows(ip("::ffff:127.0.0.1")),
            "a v6 entry matched a v4 client"
        );
        list.push(Allow::parse("127.0.0.1").unwrap());
        assert!(list.allows(ip("::ffff:127.0.0.1")));
    }
}
