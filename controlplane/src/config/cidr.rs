//! `Ipv4Cidr`: an address with its prefix length (`192.0.2.2/24`), as
//! `[[interface]] address` and `[[route]] prefix` take it; and the
//! deserializers of plain IPv4 addresses.

use serde::de::{self, Deserializer};
use serde::Deserialize;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;
use toml::Spanned;

/// A value with no place in a file: a default, or set at run time.
pub fn unplaced<T>(v: T) -> Spanned<T> {
    Spanned::new(0..0, v)
}

pub(super) fn spanned_ipv4<'de, D: Deserializer<'de>>(d: D) -> Result<Spanned<Ipv4Addr>, D::Error> {
    let s = Spanned::<String>::deserialize(d)?;
    let v = s.get_ref().parse().map_err(|_| de::Error::custom(format!("invalid IPv4 address {:?}", s.get_ref())))?;
    Ok(Spanned::new(s.span(), v))
}


/// An IPv4 address with a prefix length, `192.0.2.2/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

impl Ipv4Cidr {
    pub fn netmask(&self) -> u32 {
        if self.prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix_len as u32)
        }
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.netmask())
    }

    pub fn contains(&self, a: Ipv4Addr) -> bool {
        u32::from(a) & self.netmask() == u32::from(self.network())
    }
}

impl FromStr for Ipv4Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, l) = s.split_once('/').ok_or_else(|| format!("invalid prefix {s:?}: expected ADDRESS/LENGTH such as 192.0.2.2/24"))?;
        let addr = a.parse().map_err(|_| format!("invalid prefix {s:?}: {a:?} is not an IPv4 address"))?;
        let len = l.parse::<u64>().map_err(|_| format!("invalid prefix {s:?}: the length {l:?} is not a number 0..=32"))?;
        let prefix_len = u8::try_from(len).ok().filter(|l| *l <= 32).ok_or_else(|| format!("invalid prefix {s:?}: prefix length {len} is out of range: allowed 0..=32"))?;
        Ok(Self { addr, prefix_len })
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl<'de> Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

/// An IPv6 address with a prefix length, `2001:db8:1::2/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Cidr {
    pub addr: std::net::Ipv6Addr,
    pub prefix_len: u8,
}

impl Ipv6Cidr {
    pub fn netmask(&self) -> u128 {
        if self.prefix_len == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(self.prefix_len))
        }
    }

    pub fn network(&self) -> std::net::Ipv6Addr {
        std::net::Ipv6Addr::from(u128::from(self.addr) & self.netmask())
    }

    pub fn contains(&self, a: std::net::Ipv6Addr) -> bool {
        u128::from(a) & self.netmask() == u128::from(self.network())
    }
}

impl fmt::Display for Ipv6Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// A prefix of either family, as `[[interface]] addresses` and `[[route]]
/// prefix` take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpCidr {
    V4(Ipv4Cidr),
    V6(Ipv6Cidr),
}

impl FromStr for IpCidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, l) = s.split_once('/').ok_or_else(|| format!("invalid prefix {s:?}: expected ADDRESS/LENGTH such as 192.0.2.2/24 or 2001:db8:1::2/64"))?;
        if a.contains(':') {
            let addr = a.parse().map_err(|_| format!("invalid prefix {s:?}: {a:?} is not an IPv6 address"))?;
            let len = l.parse::<u64>().map_err(|_| format!("invalid prefix {s:?}: the length {l:?} is not a number 0..=128"))?;
            let prefix_len = u8::try_from(len).ok().filter(|l| *l <= 128).ok_or_else(|| format!("invalid prefix {s:?}: prefix length {len} is out of range: allowed 0..=128"))?;
            return Ok(IpCidr::V6(Ipv6Cidr { addr, prefix_len }));
        }
        s.parse().map(IpCidr::V4)
    }
}

impl fmt::Display for IpCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpCidr::V4(c) => c.fmt(f),
            IpCidr::V6(c) => c.fmt(f),
        }
    }
}

impl<'de> Deserialize<'de> for IpCidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

/// Why an IPv6 address cannot be a self address or a route's next hop
/// (unicast only; a v4-mapped address is never on the wire, RFC 4291
/// §2.5.5.2), or None.
pub fn ipv6_unusable(a: std::net::Ipv6Addr) -> Option<&'static str> {
    let first = a.segments()[0];
    if a.is_unspecified() {
        Some("the unspecified address")
    } else if a.is_loopback() {
        Some("the loopback address")
    } else if a.is_multicast() {
        Some("a multicast address")
    } else if a.to_ipv4_mapped().is_some() {
        Some("an IPv4-mapped address (RFC 4291 §2.5.5.2: never on the wire)")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local (every link has its own, made from its MAC)")
    } else {
        None
    }
}
