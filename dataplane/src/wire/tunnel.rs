//! The encapsulations of `dsr-tunnel` (`forward::tunnel` writes them):
//! which, and the bytes each adds in front of the inner IPv4 packet.

/// Outer IPv4 header: no options.
pub const OUTER_IP: usize = 20;
/// Outer IPv6 header: no extension headers.
pub const OUTER_IP6: usize = 40;
/// GRE without checksum, key or sequence number (RFC 2784 §2).
pub const GRE_LEN: usize = 4;
/// UDP header (RFC 768).
pub const UDP_LEN: usize = 8;

/// How `dsr-tunnel` encapsulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[repr(u8)]
pub enum TunnelKind {
    /// IPv4 in IPv4 (RFC 2003), protocol 4.
    #[default]
    Ipip,
    /// GRE (RFC 2784), protocol 47, EtherType 0x0800 inside.
    Gre,
    /// GUE variant 1 over UDP (draft-ietf-intarea-gue): no GUE header.
    Gue,
}

impl TunnelKind {
    /// Bytes the encapsulation adds in front of the inner IPv4 packet.
    #[inline(always)]
    pub const fn overhead(self) -> usize {
        match self {
            TunnelKind::Ipip => OUTER_IP,
            TunnelKind::Gre => OUTER_IP + GRE_LEN,
            TunnelKind::Gue => OUTER_IP + UDP_LEN,
        }
    }

    /// Bytes the encapsulation adds in front of an inner IPv6 packet: the
    /// outer header is IPv6's fixed 40 bytes (RFC 2473 §3; GRE and UDP as
    /// over IPv4).
    #[inline(always)]
    pub const fn overhead6(self) -> usize {
        self.overhead() - OUTER_IP + OUTER_IP6
    }

    pub const fn name(self) -> &'static str {
        match self {
            TunnelKind::Ipip => "ipip",
            TunnelKind::Gre => "gre",
            TunnelKind::Gue => "gue",
        }
    }
}

