//! The `allow` list of a bridge route: the networks and ports its targets may be in.
//!
//! Syntax of one rule: `NETWORK:PORTS`.
//! - `NETWORK`: an IPv4 address with an optional prefix length (`10.0.0.0/8`, `127.0.0.1`),
//!   or an IPv6 one in brackets (`[fd00::/8]`, `[::1]`). Without a prefix: that one address.
//! - `PORTS`: one port (`6379`), an inclusive range (`5900-5999`) or `*` (every port).
//!
//! Targets are checked by address after resolution, so a host name passes only when the
//! addresses it resolves to do; IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) are checked
//! as the IPv4 address they carry.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;

/// One rule of an `allow` list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowRule {
    network: IpAddr,
    prefix: u8,
    ports: RangeInclusive<u16>,
}

impl AllowRule {
    /// Parses `NETWORK:PORTS` (see the module doc); the error says what is wrong.
    pub fn parse(text: &str) -> Result<AllowRule, String> {
        let bad = |why: &str| {
            format!(
                "{text:?} is not NETWORK:PORTS such as \"10.0.0.0/8:5900-5999\", \
                 \"127.0.0.1:6379\" or \"[fd00::/8]:*\" ({why})"
            )
        };
        let (network, ports) = text
            .trim()
            .rsplit_once(':')
            .ok_or_else(|| bad("no ports"))?;
        let network = match network.strip_prefix('[') {
            Some(inner) => inner.strip_suffix(']').ok_or_else(|| bad("unclosed ["))?,
            None if network.contains(':') => return Err(bad("IPv6 networks go in brackets")),
            None => network,
        };
        let (address, prefix) = match network.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (network, None),
        };
        let address: IpAddr = address.parse().map_err(|_| bad("bad address"))?;
        let bits = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(|| bad("bad prefix length"))?,
        };
        if mask(address, prefix) != address {
            return Err(bad("bits set after the prefix length"));
        }
        let port = |p: &str| p.trim().parse::<u16>().ok().filter(|p| *p != 0);
        let ports = match ports.trim() {
            "*" => 1..=u16::MAX,
            range => match range.split_once('-') {
                Some((low, high)) => {
                    let (low, high) = port(low).zip(port(high)).ok_or_else(|| bad("bad port"))?;
                    if low > high {
                        return Err(bad("empty port range"));
                    }
                    low..=high
                }
                None => {
                    let p = port(range).ok_or_else(|| bad("bad port"))?;
                    p..=p
                }
            },
        };
        Ok(AllowRule {
            network: address,
            prefix,
            ports,
        })
    }

    /// Whether `addr` is in this rule's network and port range.
    pub fn allows(&self, addr: SocketAddr) -> bool {
        let ip = addr.ip().to_canonical();
        self.ports.contains(&addr.port())
            && ip.is_ipv4() == self.network.is_ipv4()
            && mask(ip, self.prefix) == self.network
    }
}

impl fmt::Display for AllowRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.network {
            IpAddr::V4(a) => write!(f, "{a}/{}", self.prefix)?,
            IpAddr::V6(a) => write!(f, "[{a}/{}]", self.prefix)?,
        }
        match (*self.ports.start(), *self.ports.end()) {
            (1, u16::MAX) => f.write_str(":*"),
            (low, high) if low == high => write!(f, ":{low}"),
            (low, high) => write!(f, ":{low}-{high}"),
        }
    }
}

/// `ip` with every bit after the first `prefix` cleared.
fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let kept = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((bits & kept).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let kept = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((bits & kept).into())
        }
    }
}

/// A route's whole `allow` list: an address passes when any rule allows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList {
    rules: Vec<AllowRule>,
}

impl AllowList {
    /// Parses every rule; the error names the first bad one.
    pub fn parse(rules: &[String]) -> Result<AllowList, String> {
        Ok(AllowList {
            rules: rules
                .iter()
                .map(|r| AllowRule::parse(r))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Whether any rule allows `addr`.
    pub fn allows(&self, addr: SocketAddr) -> bool {
        self.rules.iter().any(|r| r.allows(addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_and_port_ranges() {
        let rule = AllowRule::parse("10.0.0.0/8:5900-5999").unwrap();
        assert!(rule.allows(addr("10.1.2.3:5900")));
        assert!(rule.allows(addr("10.255.255.255:5999")));
        assert!(!rule.allows(addr("10.1.2.3:6000")));
        assert!(!rule.allows(addr("11.0.0.1:5900")));
        assert!(!rule.allows(addr("[::1]:5900")));
        let host = AllowRule::parse("127.0.0.1:6379").unwrap();
        assert!(host.allows(addr("127.0.0.1:6379")));
        assert!(!host.allows(addr("127.0.0.2:6379")));
        let any = AllowRule::parse("0.0.0.0/0:*").unwrap();
        assert!(any.allows(addr("192.168.1.1:1")));
        assert!(any.allows(addr("192.168.1.1:65535")));
        assert_eq!(any.to_string(), "0.0.0.0/0:*");
        assert_eq!(rule.to_string(), "10.0.0.0/8:5900-5999");
    }

    #[test]
    fn ipv6_networks_and_mapped_ipv4() {
        let rule = AllowRule::parse("[fd00::/8]:22").unwrap();
        assert!(rule.allows(addr("[fd12:3456::1]:22")));
        assert!(!rule.allows(addr("[fe80::1]:22")));
        assert_eq!(rule.to_string(), "[fd00::/8]:22");
        let loopback = AllowRule::parse("[::1]:*").unwrap();
        assert!(loopback.allows(addr("[::1]:80")));
        // A mapped address is the IPv4 address it carries.
        let v4 = AllowRule::parse("127.0.0.0/8:6379").unwrap();
        assert!(v4.allows(addr("[::ffff:127.0.0.1]:6379")));
    }

    #[test]
    fn bad_rules_say_why() {
        let why = |s: &str| AllowRule::parse(s).unwrap_err();
        assert!(why("10.0.0.0/8").contains("no ports"));
        assert!(why("10.0.0.0/33:1").contains("bad prefix length"));
        assert!(why("10.0.0.1/8:1").contains("bits set after the prefix"));
        assert!(why("10.0.0.0/8:0").contains("bad port"));
        assert!(why("10.0.0.0/8:9-1").contains("empty port range"));
        assert!(why("fd00::/8:22").contains("brackets"));
        assert!(why("[fd00::/8:22").contains("unclosed"));
        assert!(why("example.com:22").contains("bad address"));
        assert!(why("nothing").contains("no ports"));
    }

    #[test]
    fn a_list_allows_what_any_rule_allows() {
        let list =
            AllowList::parse(&["127.0.0.1:6379".to_string(), "10.0.0.0/8:*".to_string()]).unwrap();
        assert!(list.allows(addr("127.0.0.1:6379")));
        assert!(list.allows(addr("10.9.9.9:1")));
        assert!(!list.allows(addr("127.0.0.1:6380")));
        assert!(!AllowList::default().allows(addr("127.0.0.1:6379")));
        assert!(AllowList::parse(&["bad".to_string()]).is_err());
    }
}
