//! The daemon's access list: `--allow ADDR[/BITS]` networks and the private ranges.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};

/// One allowed network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allow {
    addr: IpAddr,
    bits: u8,
}

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
