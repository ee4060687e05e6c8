//! `Ipv4Cidr`: an address with its prefix length (`192.0.2.2/24`), as
//! `[[interface]] address` and `[[route]] prefix` take it; and the
//! deserializers of plain IPv4 addresses.

use serde::de::{self, Deserializer};
use serde::Deserialize;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;
use toml::Spanned;

pub(super) fn ipv4<'de, D: Deserializer<'de>>(d: D) -> Result<Ipv4Addr, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(|_| de::Error::custom(format!("invalid IPv4 address {s:?}")))
}

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
