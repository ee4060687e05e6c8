//! The addresses of servers and virtual servers, of either family, as
//! the IPv4-only parts of the control plane read them.

use std::net::Ipv4Addr;

/// An address's IPv4 address; the unspecified one for an IPv6 address
/// (what only IPv4 has yet is refused for IPv6 by `validate`).
pub fn ip4(a: &std::net::SocketAddr) -> Ipv4Addr {
    match a.ip() {
        std::net::IpAddr::V4(v4) => v4,
        std::net::IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
    }
}

impl super::model::Server {
    /// Its IPv4 address (unspecified for an IPv6 server).
    pub fn ip4(&self) -> Ipv4Addr {
        ip4(self.address.get_ref())
    }

    /// Its address as an IPv4 socket address (0.0.0.0 for IPv6).
    pub fn addr4(&self) -> std::net::SocketAddrV4 {
        std::net::SocketAddrV4::new(self.ip4(), self.address.get_ref().port())
    }
}

impl super::model::VirtualServer {
    /// Its VIP (unspecified for an IPv6 VIP).
    pub fn ip4(&self) -> Ipv4Addr {
        ip4(self.address.get_ref())
    }

    /// An IPv6 VIP.
    pub fn is_v6(&self) -> bool {
        self.address.get_ref().is_ipv6()
    }
}
