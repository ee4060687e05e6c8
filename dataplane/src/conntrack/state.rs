//! Connection states and their idle timeouts.
//!
//! The TCP states are a load balancer's view of RFC 9293 §3.3.2's
//! connection states, seen from the middle rather than an endpoint, after
//! IPVS's `tcp_state_table` (net/netfilter/ipvs/ip_vs_proto_tcp.c). UDP and
//! ICMP have no handshake, so each has one state.

use super::key::TICK_MS;

/// Where a connection is in its life. Each state has its own idle timeout
/// (`Timeouts::for_state`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum FlowState {
    /// The client's SYN was seen, no SYN-ACK yet.
    SynSent,
    /// The server's SYN-ACK was seen, no final ACK yet.
    SynRecv,
    /// The three-way handshake completed.
    Established,
    /// The client (original direction) sent FIN.
    FinWait,
    /// The server (reply direction) sent FIN.
    CloseWait,
    /// Both directions sent FIN.
    TimeWait,
    /// Reset, or closed for good.
    Close,
    /// A UDP (or other datagram protocol) flow.
    Udp,
    /// An ICMP echo flow.
    Icmp,
    /// A UDP flow its server has not answered yet: what a flood of spoofed
    /// sources leaves behind. Short-lived (`udp_unreplied`) and evictable,
    /// like a half-open TCP entry, until the first reply makes it `Udp`
    /// (Linux conntrack's `IPS_ASSURED`). With direct server return the
    /// reply is never seen: such entries stay here.
    UdpUnreplied,
}

impl FlowState {
    pub const ALL: &'static [FlowState] = &[
        FlowState::SynSent,
        FlowState::SynRecv,
        FlowState::Established,
        FlowState::FinWait,
        FlowState::CloseWait,
        FlowState::TimeWait,
        FlowState::Close,
        FlowState::Udp,
        FlowState::Icmp,
        FlowState::UdpUnreplied,
    ];

    /// The stable name operators and dumps see (IPVS spelling).
    pub fn name(self) -> &'static str {
        match self {
            FlowState::SynSent => "SYN_SENT",
            FlowState::SynRecv => "SYN_RECV",
            FlowState::Established => "ESTABLISHED",
            FlowState::FinWait => "FIN_WAIT",
            FlowState::CloseWait => "CLOSE_WAIT",
            FlowState::TimeWait => "TIME_WAIT",
            FlowState::Close => "CLOSE",
            FlowState::Udp => "UDP",
            FlowState::Icmp => "ICMP",
            FlowState::UdpUnreplied => "UDP_UNREPLIED",
        }
    }

    /// The state whose discriminant is `b` (`state as u8`), for decoding
    /// state sync records; None for an unknown byte.
    pub fn from_u8(b: u8) -> Option<FlowState> {
        Self::ALL.iter().copied().find(|s| *s as u8 == b)
    }

    /// A TCP handshake not yet complete (half-open): what a SYN flood
    /// fills the table with. These entries have their own budget and are
    /// evicted first (`FlowTable::oldest_unreplied`).
    #[inline]
    pub fn is_embryonic(self) -> bool {
        matches!(self, FlowState::SynSent | FlowState::SynRecv)
    }

    /// Nobody answered yet: half-open TCP, unreplied UDP. These entries
    /// share a budget (`[defence] embryonic_per_worker`) and are evicted
    /// first, oldest first (`FlowTable::oldest_unreplied`).
    #[inline]
    pub fn is_unreplied(self) -> bool {
        matches!(self, FlowState::SynSent | FlowState::SynRecv | FlowState::UdpUnreplied)
    }

    /// Active as `ipvsadm -L` counts it: an established connection. The
    /// rest (handshake, closing, TIME_WAIT; UDP and ICMP flows) are
    /// inactive.
    #[inline]
    pub fn is_active(self) -> bool {
        matches!(self, FlowState::Established)
    }

    /// Whether the state belongs to the TCP state machine.
    pub fn is_tcp(self) -> bool {
        !matches!(self, FlowState::Udp | FlowState::Icmp | FlowState::UdpUnreplied)
    }
}

/// The unreplied UDP timeout `Timeouts::from_secs` sets, in seconds (or
/// `udp`, when shorter).
pub const DEFAULT_UDP_UNREPLIED_S: u32 = 30;

/// Idle timeouts in ticks (`TICK_MS`), per state: a connection idle that
/// long in its state is forgotten. The defaults follow IPVS's
/// `tcp_timeouts[]` (ip_vs_proto_tcp.c) and `udp_timeouts[]`
/// (ip_vs_proto_udp.c): ESTABLISHED 15 min, FIN_WAIT and TIME_WAIT 2 min,
/// CLOSE 10 s, UDP 5 min; both handshake states use IPVS's SYN_RECV
/// 60 s, and ICMP echo gets 60 s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// `SynSent` and `SynRecv`.
    pub tcp_syn: u32,
    pub tcp_established: u32,
    /// `FinWait` and `CloseWait`.
    pub tcp_fin: u32,
    pub tcp_time_wait: u32,
    pub tcp_close: u32,
    pub udp: u32,
    pub icmp: u32,
    /// `UdpUnreplied`.
    pub udp_unreplied: u32,
}

impl Default for Timeouts {
    /// In seconds: SYN 60, established 900, FIN 120, TIME_WAIT 120,
    /// CLOSE 10, UDP 300, ICMP 60; unreplied UDP 30 (Linux conntrack's
    /// `udp_timeout`).
    fn default() -> Self {
        Self::from_secs(60, 900, 120, 120, 10, 300, 60)
    }
}

impl Timeouts {
    /// Ticks in one second.
    pub const TICKS_PER_SEC: u32 = 1000 / TICK_MS;

    /// Builds timeouts from seconds (saturating at `u32::MAX` ticks).
    pub fn from_secs(
        syn: u32,
        established: u32,
        fin: u32,
        time_wait: u32,
        close: u32,
        udp: u32,
        icmp: u32,
    ) -> Self {
        let t = |s: u32| s.saturating_mul(1000) / TICK_MS;
        Self {
            tcp_syn: t(syn),
            tcp_established: t(established),
            tcp_fin: t(fin),
            tcp_time_wait: t(time_wait),
            tcp_close: t(close),
            udp: t(udp),
            icmp: t(icmp),
            udp_unreplied: t(udp.min(DEFAULT_UDP_UNREPLIED_S)),
        }
    }

    /// The idle timeout of `s`, in ticks.
    #[inline]
    pub fn for_state(&self, s: FlowState) -> u32 {
        match s {
            FlowState::SynSent | FlowState::SynRecv => self.tcp_syn,
            FlowState::Established => self.tcp_established,
            FlowState::FinWait | FlowState::CloseWait => self.tcp_fin,
            FlowState::TimeWait => self.tcp_time_wait,
            FlowState::Close => self.tcp_close,
            FlowState::Udp => self.udp,
            FlowState::Icmp => self.icmp,
            FlowState::UdpUnreplied => self.udp_unreplied,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = FlowState::ALL.iter().map(|s| s.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), FlowState::ALL.len());
        assert_eq!(FlowState::Established.name(), "ESTABLISHED");
        for s in FlowState::ALL {
            assert_eq!(FlowState::from_u8(*s as u8), Some(*s));
        }
        assert_eq!(FlowState::from_u8(FlowState::ALL.len() as u8), None);
    }

    #[test]
    fn default_timeouts_in_ticks() {
        let t = Timeouts::default();
        assert_eq!(t.tcp_syn, 600);
        assert_eq!(t.tcp_established, 9000);
        assert_eq!(t.tcp_fin, 1200);
        assert_eq!(t.tcp_time_wait, 1200);
        assert_eq!(t.tcp_close, 100);
        assert_eq!(t.udp, 3000);
        assert_eq!(t.icmp, 600);
        assert_eq!(t.for_state(FlowState::SynRecv), 600);
        assert_eq!(t.for_state(FlowState::CloseWait), 1200);
        assert_eq!(Timeouts::from_secs(u32::MAX, 0, 0, 0, 0, 0, 0).tcp_syn, u32::MAX / TICK_MS);
    }
}
