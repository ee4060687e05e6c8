//! Token buckets (RFC 2697's single-rate meter with one bucket, as
//! rte_meter's srTCM without the excess bucket): how many answers a
//! worker may generate, and how many packets of each punt class it may
//! hand to the control lcore, per second.
//!
//! Time is the worker's tick (`conntrack::TICK_MS`, 100 ms): a bucket of
//! `rate` per second gains `rate` tenths of a packet per tick, up to
//! `burst` packets. No allocation, no lock: each worker owns its buckets.

use crate::conntrack::TICK_MS;
use crate::forward::PROBE_PORT_MIN;
use crate::state::counters::{DropReason, PuntClass};
use crate::io::{Packet, PacketIo};
use crate::state::snapshot::Snapshot;
use crate::wire::ethernet::{parse_l2, EtherType};
use crate::wire::ipv4::{protocol, Ipv4Packet};

/// Ticks per second.
const TICKS: u64 = 1000 / TICK_MS as u64;

/// One bucket. Starts full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    /// Packets per second; 0: nothing passes.
    rate: u64,
    /// Capacity in packets.
    burst: u64,
    /// Tokens, in 1/TICKS of a packet.
    tokens: u64,
    last: u32,
}

impl TokenBucket {
    /// `rate` packets a second, `burst` at once; rate 0 passes nothing.
    pub const fn new(rate: u32, burst: u32) -> Self {
        let burst = if burst == 0 { 1 } else { burst as u64 };
        let tokens = if rate == 0 { 0 } else { burst * TICKS };
        Self { rate: rate as u64, burst, tokens, last: 0 }
    }

    /// A bucket nothing exceeds.
    pub const UNLIMITED: TokenBucket = TokenBucket { rate: u64::MAX / (2 * TICKS), burst: u64::MAX / (2 * TICKS), tokens: u64::MAX / 2, last: 0 };

    /// Takes one packet's token at tick `now`; false when the bucket is
    /// empty (the packet exceeds the rate).
    #[inline]
    pub fn take(&mut self, now: u32) -> bool {
        if now != self.last {
            // A tick gone backwards (the clock of a test) refills nothing.
            let dt = u64::from(now.wrapping_sub(self.last).min(10 * TICKS as u32));
            self.tokens = self.tokens.saturating_add(self.rate.saturating_mul(dt)).min(self.burst.saturating_mul(TICKS));
            self.last = now;
        }
        if self.tokens >= TICKS {
            self.tokens -= TICKS;
            true
        } else {
            false
        }
    }
}

/// The share of the probe class one source may take: an eighth.
pub const PROBE_SOURCE_SHARE: u32 = 8;
/// Per-source buckets: one per probe source of the snapshot (servers and
/// DSR VIPs on their links), the rest sharing the last.
pub const PROBE_SOURCE_SLOTS: usize = crate::limits::MAX_SERVERS + crate::limits::MAX_SERVICES + 1;

/// One bucket per punt class (`PuntClass`), each of its own rate; the
/// probe class's answers also go through their source's (`take_probe`).
#[derive(Debug, Clone)]
pub struct PuntPolicer {
    classes: [TokenBucket; PuntClass::COUNT],
    /// Probe answers by source (`Snapshot::probe_source_index`: a server's
    /// address on its link, which a packet must come from to be in the
    /// class), each an eighth of the class's rate: a flood under one
    /// server's address (spoofed on the servers' link) takes at most an
    /// eighth of what the other servers' answers may use.
    probe: SourceBuckets,
}

impl PuntPolicer {
    /// Buckets of `rates` packets a second per class (`PuntClass as
    /// usize`), each with a quarter second's burst (at least 32).
    pub fn new(rates: &[u32; PuntClass::COUNT]) -> Self {
        let bucket = |r: u32| TokenBucket::new(r, (r / 4).max(32));
        let probe = rates.get(PuntClass::Probe as usize).copied().unwrap_or(0).div_ceil(PROBE_SOURCE_SHARE);
        Self { classes: core::array::from_fn(|i| bucket(rates.get(i).copied().unwrap_or(0))), probe: SourceBuckets::new(probe, (probe / 4).max(32)) }
    }

    #[inline]
    pub fn take(&mut self, class: PuntClass, now: u32) -> bool {
        self.classes.get_mut(class as usize).is_some_and(|b| b.take(now))
    }

    /// A probe answer from source slot `source`: its bucket, then the
    /// class's.
    #[inline]
    pub fn take_probe(&mut self, source: usize, now: u32) -> bool {
        self.probe.take(source, now) && self.take(PuntClass::Probe, now)
    }
}

/// Token buckets of one rate, one per slot, 8 bytes each (`TokenBucket`'s
/// algorithm; the tokens fit a u32 since a burst is at most 10^7 / 32).
#[derive(Debug, Clone)]
pub struct SourceBuckets {
    /// (tokens in 1/TICKS of a packet, last tick) per slot.
    slots: Box<[(u32, u32)]>,
    rate: u64,
    burst: u64,
}

impl SourceBuckets {
    fn new(rate: u32, burst: u32) -> Self {
        let burst = u64::from(burst.max(1));
        let full = if rate == 0 { 0 } else { (burst * TICKS).min(u64::from(u32::MAX)) as u32 };
        Self { slots: vec![(full, 0); PROBE_SOURCE_SLOTS].into_boxed_slice(), rate: u64::from(rate), burst }
    }

    #[inline]
    fn take(&mut self, slot: usize, now: u32) -> bool {
        let last = self.slots.len().saturating_sub(1);
        let Some((tokens, at)) = self.slots.get_mut(slot.min(last)) else { return false };
        if now != *at {
            let dt = u64::from(now.wrapping_sub(*at).min(10 * TICKS as u32));
            // At most burst * TICKS, which fits (`new`).
            *tokens = (u64::from(*tokens) + self.rate * dt).min(self.burst * TICKS).min(u64::from(u32::MAX)) as u32;
            *at = now;
        }
        if u64::from(*tokens) >= TICKS {
            *tokens -= TICKS as u32;
            true
        } else {
            false
        }
    }
}

/// 224.0.0.18, the VRRP group (RFC 5798 §5.1.1.2), host order.
const VRRP_GROUP: u32 = u32::from_be_bytes([224, 0, 0, 18]);

/// The class of a frame the pipeline punts (a valid one: `classify`
/// parsed it) that arrived on `link`, or why it is refused before any
/// bucket is touched. Classes key on what a remote sender cannot choose
/// alone (review S2): the link, the destination, the port, the TTL.
///
/// - ARP.
/// - VRRP: TTL 255 first (RFC 5798 §7.1: only an on-link sender can
///   set it), then to 224.0.0.18 on a link with an instance, or to the
///   link's self IP from one of its unicast peers; anything else of
///   protocol 112 is `vrrp-refused`.
/// - HA: UDP with TTL 255 (RFC 5082) from the `[sync]` peer to the sync
///   link's self IP and the sync port, on the sync link.
/// - Probe: TCP/UDP to a probe's port (`PROBE_PORT_MIN..`) from a
///   server's address on its link (or a DSR service's VIP on a server's
///   link), or an ICMP echo reply from one.
/// - Other ICMP; the rest.
#[inline]
pub fn punt_class(snap: &Snapshot, frame: &[u8], link: u16) -> Result<PuntClass, DropReason> {
    let Ok(l2) = parse_l2(frame) else { return Ok(PuntClass::Other) };
    match l2.ethertype {
        EtherType::Arp => return Ok(PuntClass::Arp),
        EtherType::Ipv6 => return Ok(ipv6_class(snap, frame.get(l2.l3_offset..).unwrap_or_default(), link)),
        EtherType::Ipv4 => {}
        _ => return Ok(PuntClass::Other),
    }
    let Some(ip) = frame.get(l2.l3_offset..) else { return Ok(PuntClass::Other) };
    let ip = Ipv4Packet::new_unchecked(ip);
    let (proto, src, dst) = (ip.protocol(), u32::from(ip.src_addr()), u32::from(ip.dst_addr()));
    let l4 = ip.payload();
    let dport = l4.get(2..4).and_then(|b| <[u8; 2]>::try_from(b).ok()).map_or(0, u16::from_be_bytes);
    Ok(match proto {
        protocol::VRRP => return vrrp_class(snap, link, ip.ttl(), src, dst),
        // GTSM (RFC 5082): the peer sends with TTL 255, so only a sender on
        // the sync link can put a datagram in this class.
        protocol::UDP if ip.ttl() == 255 && snap.control.sync.is_some_and(|p| p.link == link && p.peer == src && p.port == dport) && snap.port(link).is_some_and(|pv| pv.self_ip == dst) => PuntClass::Ha,
        protocol::TCP | protocol::UDP if dport >= PROBE_PORT_MIN && snap.is_probe_source(src, link) => PuntClass::Probe,
        // RFC 792: type 0, echo reply.
        protocol::ICMP if l4.first() == Some(&0) && snap.is_probe_source(src, link) => PuntClass::Probe,
        protocol::ICMP => PuntClass::Icmp,
        _ => PuntClass::Other,
    })
}

/// The class of an IPv6 frame `classify6` punted: Neighbor Discovery
/// (which it sent only with hop limit 255, to an address of the link),
/// other ICMPv6, TCP and UDP to a probe's port from an IPv6 server's
/// address on its link (a health probe's answer), the rest.
#[inline]
fn ipv6_class(snap: &Snapshot, ip: &[u8], link: u16) -> PuntClass {
    use crate::wire::icmpv6::kind;
    use crate::wire::ipv6::{next_header, Ipv6Packet};
    let ip = Ipv6Packet::new_unchecked(ip);
    let Some(chain) = (ip.as_bytes().len() >= crate::wire::ipv6::HEADER_LEN).then(|| ip.walk().ok()).flatten() else { return PuntClass::Other };
    let l4 = ip.payload().get(chain.offset..).unwrap_or_default();
    let dport = l4.get(2..4).and_then(|b| <[u8; 2]>::try_from(b).ok()).map_or(0, u16::from_be_bytes);
    match (chain.proto, l4.first().copied()) {
        (next_header::ICMPV6, Some(kind::NEIGHBOR_SOLICIT | kind::NEIGHBOR_ADVERT | kind::MLD_QUERY)) => PuntClass::Nd,
        (next_header::ICMPV6, _) => PuntClass::Icmp,
        (next_header::TCP | next_header::UDP, _) if dport >= PROBE_PORT_MIN && snap.probe_source_index6(u128::from(ip.src_addr()), link).is_some() => PuntClass::Probe,
        _ => PuntClass::Other,
    }
}

/// The probe-source slot of a frame `punt_class` put in the probe class
/// (`Snapshot::probe_source_index`; past the end when none).
#[inline]
fn probe_source(snap: &Snapshot, frame: &[u8], link: u16) -> usize {
    let Ok(l2) = parse_l2(frame) else { return usize::MAX };
    if l2.ethertype == EtherType::Ipv6 {
        let src = frame.get(l2.l3_offset + 8..l2.l3_offset + 24).and_then(|b| <[u8; 16]>::try_from(b).ok()).map_or(0, u128::from_be_bytes);
        return snap.probe_source_index6(src, link).unwrap_or(usize::MAX);
    }
    let src = frame.get(l2.l3_offset + 12..l2.l3_offset + 16).and_then(|b| <[u8; 4]>::try_from(b).ok()).map_or(0, u32::from_be_bytes);
    snap.probe_source_index(src, link).unwrap_or(usize::MAX)
}

/// RFC 5798 §7.1's first check, then where the advert may come from.
#[inline]
fn vrrp_class(snap: &Snapshot, link: u16, ttl: u8, src: u32, dst: u32) -> Result<PuntClass, DropReason> {
    let c = &snap.control;
    let group = dst == VRRP_GROUP && c.vrrp_links.binary_search(&link).is_ok();
    let unicast = || snap.port(link).is_some_and(|pv| pv.self_ip == dst) && c.vrrp_unicast.binary_search(&(link, src)).is_ok();
    if ttl == 255 && (group || unicast()) {
        Ok(PuntClass::Vrrp)
    } else {
        Err(DropReason::VrrpRefused)
    }
}

impl super::Shard {
    /// Hands a frame to the control lcore: classified by where it came
    /// from (`police::punt_class`), policed by its class's bucket, into
    /// the protected ring or the other.
    #[inline]
    pub(super) fn punt<I: PacketIo>(&mut self, snap: &Snapshot, io: &mut I, pkt: I::Pkt) {
        let vlan = crate::wire::parse_l2(pkt.data()).ok().and_then(|l2| l2.vlan);
        let link = snap.link_of(pkt.port(), vlan).unwrap_or(u16::MAX);
        let class = match punt_class(snap, pkt.data(), link) {
            Ok(c) => c,
            Err(reason) => return self.counters.count_drop(reason),
        };
        let passed = match class {
            PuntClass::Probe => self.punt.take_probe(probe_source(snap, pkt.data(), link), self.now),
            c => self.punt.take(c, self.now),
        };
        self.counters.count_punt(class, passed);
        if !passed {
            return self.counters.count_drop(DropReason::PuntLimited);
        }
        // HA datagrams leave a quarter of the protected ring to ARP and
        // VRRP (a sync-link sender within the HA rate cannot fill it).
        let sent = match class {
            PuntClass::Ha if io.protected_len() >= crate::limits::PUNT_HA_SHARE => Err(pkt),
            c if c.is_protected() => io.punt_protected(pkt),
            _ => io.punt(pkt),
        };
        match sent {
            Ok(()) => self.counters.punted.inc(),
            Err(_dropped) => self.counters.count_drop(DropReason::PuntRingFull),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let mut b = TokenBucket::new(100, 5);
        assert_eq!((0..20).filter(|_| b.take(0)).count(), 5, "the burst");
        // One tick (100 ms) at 100/s: 10 more.
        assert_eq!((0..20).filter(|_| b.take(1)).count(), 5, "capped by the burst");
        let mut b = TokenBucket::new(100, 50);
        (0..50).for_each(|_| {
            b.take(0);
        });
        assert_eq!((0..100).filter(|_| b.take(1)).count(), 10);
        // Ten seconds at 100/s, one packet a tick: all pass.
        let passed = (2..102).filter(|t| b.take(*t)).count();
        assert_eq!(passed, 100);
    }

    /// Review (probe engine) M: a flood of probe answers under one
    /// server's address takes its source's bucket, an eighth of the
    /// class: the other servers' answers still pass.
    #[test]
    fn one_probe_source_cannot_take_the_class() {
        let mut rates = [0u32; PuntClass::COUNT];
        rates[PuntClass::Probe as usize] = 800;
        let mut p = PuntPolicer::new(&rates);
        let passed = (0..10_000).filter(|_| p.take_probe(7, 0)).count();
        // The source's bucket: a quarter second of 100/s, at least 32.
        assert_eq!(passed, 32);
        assert!((0..100).all(|s| s == 7 || p.take_probe(s, 0)), "the other servers' answers pass");
        // The class's own bound still holds over all sources; sources
        // past the slots share the last.
        let all = (0..100_000).filter(|i| p.take_probe(*i, 1)).count();
        assert!(all <= 200 + 80, "{all}");
    }

    #[test]
    fn rate_zero_passes_nothing() {
        let mut b = TokenBucket::new(0, 1);
        assert!(!b.take(0));
        assert!(!b.take(1000));
        let mut u = TokenBucket::UNLIMITED;
        assert!((0..1_000_000).all(|_| u.take(0)));
    }
}
