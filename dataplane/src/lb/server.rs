//! A real server as the schedulers and the forwarding path see it in the
//! snapshot.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RealServer {
    /// An IPv4 server's address (0 for an IPv6 server).
    pub ip: u32,
    /// An IPv6 server's address, big-endian (all zero for an IPv4
    /// server): bytes, so that the server stays 4-byte aligned
    /// (`RealServer::ip6`).
    pub ip6: [u8; 16],
    pub port: u16,
    pub weight: u32,
    pub enabled: bool,
    /// DPDK port id toward the server.
    pub tx_port: u16,
    /// Neighbour slot of the next hop (the server, or a gateway).
    pub nexthop: u16,
    /// Index of its virtual server.
    pub vs: u16,
    /// Priority group: higher first; sorry-pool servers are below every
    /// group (-1).
    pub priority: i32,
    /// 0: no limit. Otherwise no new connections while the published load
    /// is at or above it.
    pub max_connections: u32,
    /// Its existing connections are cut too (down with `on_down =
    /// "reset"`): their packets are dropped and their entries removed.
    pub reset: bool,
    /// How many times its node (address) has gone down: persistence
    /// records made before the last time are stale (`persist`).
    pub epoch: u32,
    /// Drained by the operator but healthy: no new connections from the
    /// scheduler, but clients whose persistence record names it still
    /// come (BIG-IP "Disabled", HAProxy "drain").
    pub sticky_only: bool,
}

impl RealServer {
    /// The IPv6 address as the IPv6 table stores it (host order).
    #[inline(always)]
    pub fn ip6(&self) -> u128 {
        u128::from_be_bytes(self.ip6)
    }

    /// 32 bits standing for its address in the hashed schedules (Maglev
    /// keys its table by server address): an IPv4 address itself, an
    /// IPv6 address's words folded.
    pub fn hash_word(&self) -> u32 {
        if self.ip6 == [0; 16] {
            return self.ip;
        }
        let x = self.ip6();
        (x as u32).rotate_left(7) ^ ((x >> 32) as u32).rotate_left(14) ^ ((x >> 64) as u32).rotate_left(21) ^ ((x >> 96) as u32)
    }

    /// Its address and port, of its family (the control plane's views).
    pub fn socket_addr(&self) -> core::net::SocketAddr {
        if self.ip6 != [0; 16] {
            core::net::SocketAddr::V6(core::net::SocketAddrV6::new(core::net::Ipv6Addr::from(self.ip6), self.port, 0, 0))
        } else {
            core::net::SocketAddr::V4(core::net::SocketAddrV4::new(core::net::Ipv4Addr::from(self.ip), self.port))
        }
    }
}
