//! IPv6 Neighbor Discovery (RFC 4861) and ICMPv6 echo on the control
//! lcore, beside ARP: solicitations for the box's IPv6 addresses answered
//! (§7.2.4), the senders learned into a bounded cache, unsolicited
//! advertisements at start and on a change (§7.2.6), echo requests to the
//! box answered (RFC 4443 §4.2). Router advertisements never reach it (the
//! workers drop them: the box's routes are configured).
//!
//! - `frames`: reading and writing the messages (pure, unit-tested).

pub mod frames;

use crate::runtime::Runtime;
use frames::{Message, Refused, ALL_NODES};
use furiwake_dataplane::wire::icmpv6::multicast_mac;
use furiwake_dataplane::wire::EthernetAddress;
use furiwake_platform::Mbuf;
use std::collections::HashMap;
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

/// Neighbours the cache holds at most: a flood of solicitations from
/// made-up sources on the link (each a new entry, RFC 4861 §7.2.3) evicts
/// the first learned, in O(1), so memory stays bounded and an answer the
/// box asked for is always learned (a next hop's MAC is in its slot,
/// which no eviction touches).
pub const CACHE_MAX: usize = 4096;

/// A neighbour learned from Neighbor Discovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbor6 {
    pub mac: EthernetAddress,
    pub updated: Instant,
}

/// What the module counts (the report, metrics).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NdCounters {
    pub adverts: u64,
    pub solicits: u64,
    pub echo_replies: u64,
    /// ND that failed RFC 4861 §7.1, or a bad ICMPv6 checksum.
    pub invalid: u64,
    /// Solicitations for addresses the box does not answer for there.
    pub not_ours: u64,
    /// Neighbours evicted to make room (the cache was full).
    pub evicted: u64,
    /// MLDv2 reports sent (at start, on a change, to a query).
    pub reports: u64,
}

/// The ND module's state.
#[derive(Debug, Default)]
pub struct Nd {
    /// Per link: the IPv6 addresses it answers for, the self address
    /// first, then the link-local one; empty on a link without IPv6.
    owned: Vec<Vec<Ipv6Addr>>,
    cache: HashMap<(usize, Ipv6Addr), Neighbor6>,
    /// The cache's entries in the order they were made (evicted from the
    /// front).
    order: std::collections::VecDeque<(usize, Ipv6Addr)>,
    /// Each link's IPv6 subnet: only its addresses and link-local ones
    /// are learned there.
    subnets: Vec<Option<crate::config::Ipv6Cidr>>,
    /// Targets the box solicited, when: their adverts create entries
    /// (within `ASKED_FOR`).
    asked: HashMap<(usize, Ipv6Addr), Instant>,
    pub counters: NdCounters,
}

/// How long after a solicitation its answer is taken.
const ASKED_FOR: Duration = Duration::from_secs(3);

impl Nd {
    /// The links' IPv6 addresses, from the runtime's links.
    pub fn new(rt: &Runtime) -> Self {
        let subnets = rt.links().iter().map(|l| l.address6()).collect();
        let owned = rt
            .links()
            .iter()
            .map(|l| match l.address6() {
                Some(a) => vec![a.addr, Ipv6Addr::from(furiwake_dataplane::state::snapshot::link_local(l.mac()))],
                None => Vec::new(),
            })
            .collect();
        Nd { owned, subnets, ..Nd::default() }
    }

    /// The IPv6 VIPs and local addresses each link answers for beside its
    /// own (the lb module's, after each change); advertised unsolicited
    /// when new (RFC 4861 §7.2.6).
    pub fn answer_for(&mut self, rt: &mut Runtime, extra: Vec<Vec<Ipv6Addr>>) {
        let own: Vec<Vec<Ipv6Addr>> = Nd::new(rt).owned;
        let mut added = Vec::new();
        for (li, mine) in own.into_iter().enumerate() {
            let more: Vec<Ipv6Addr> = extra.get(li).filter(|_| !mine.is_empty()).cloned().unwrap_or_default();
            let all: Vec<Ipv6Addr> = mine.into_iter().chain(more).collect();
            added.extend(all.iter().filter(|a| !self.owns(li, **a)).map(|a| (li, *a)));
            if let Some(o) = self.owned.get_mut(li) {
                *o = all;
            }
        }
        let mut links: Vec<usize> = added.iter().map(|(li, _)| *li).collect();
        links.dedup();
        for (li, a) in added {
            self.send_advert(rt, li, a, (ALL_NODES, multicast_mac(ALL_NODES)), false);
        }
        for li in links {
            self.report(rt, li);
        }
    }

    /// `answer_for` at start (the start's own advertisements cover them).
    pub fn set_extra(&mut self, extra: Vec<Vec<Ipv6Addr>>) {
        for (li, more) in extra.into_iter().enumerate() {
            if let Some(o) = self.owned.get_mut(li).filter(|o| !o.is_empty()) {
                o.extend(more.into_iter().filter(|a| !o.contains(a)).collect::<Vec<_>>());
            }
        }
    }

    /// Whether link `li` answers for `a`.
    pub fn owns(&self, li: usize, a: Ipv6Addr) -> bool {
        self.owned.get(li).is_some_and(|o| o.contains(&a))
    }

    /// The link-local address of link `li`, when it has IPv6.
    pub fn link_local(&self, li: usize) -> Option<Ipv6Addr> {
        self.owned.get(li).and_then(|o| o.get(1)).copied()
    }

    /// What ND taught about `a` on link `li`.
    pub fn neighbor(&self, li: usize, a: Ipv6Addr) -> Option<&Neighbor6> {
        self.cache.get(&(li, a))
    }

    /// The cache, for `show nd`.
    pub fn neighbors(&self) -> impl Iterator<Item = (&(usize, Ipv6Addr), &Neighbor6)> {
        self.cache.iter()
    }

    /// An MLDv2 report of link `li`'s solicited-node groups (RFC 3810
    /// §6.1), from its link-local address: a switch that snoops MLD then
    /// forwards the solicitations for the box's addresses to its port.
    pub fn report(&mut self, rt: &mut Runtime, li: usize) {
        let (Some(ll), Some(link)) = (self.link_local(li), rt.links().get(li)) else { return };
        let mac = link.mac();
        let mut groups: Vec<Ipv6Addr> = self.owned.get(li).map(|o| o.iter().map(|a| furiwake_dataplane::wire::icmpv6::solicited_node(*a)).collect()).unwrap_or_default();
        groups.sort_unstable();
        groups.dedup();
        // A report fits a 1280-byte packet up to 60 records.
        groups.truncate(60);
        let sent = rt.send_built(li, frames::mld_report_len(groups.len()) as u16, |buf| {
            frames::write_mld_report(buf, mac, ll, &groups);
        });
        self.counters.reports += u64::from(sent);
    }

    /// Unsolicited advertisements of every owned address, to all-nodes
    /// (RFC 4861 §7.2.6), so neighbours learn the box's MAC at once.
    pub fn announce(&mut self, rt: &mut Runtime) {
        for li in 0..self.owned.len().min(rt.links().len()) {
            self.report(rt, li);
            for a in self.owned[li].clone() {
                self.send_advert(rt, li, a, (ALL_NODES, multicast_mac(ALL_NODES)), false);
            }
        }
    }

    /// A solicitation for `target` on link `li` (resolution): its advert
    /// is learned when it comes within `ASKED_FOR`.
    pub fn solicit(&mut self, rt: &mut Runtime, li: usize, target: Ipv6Addr, now: Instant) -> bool {
        if self.asked.len() >= CACHE_MAX {
            self.asked.retain(|_, t| now.duration_since(*t) < ASKED_FOR);
        }
        if self.asked.len() < CACHE_MAX {
            self.asked.insert((li, target), now);
        }
        let (Some(src), Some(link)) = (self.owned.get(li).and_then(|o| o.first()).copied(), rt.links().get(li)) else { return false };
        let mac = link.mac();
        let sent = rt.send_built(li, frames::NS_FRAME_LEN as u16, |buf| {
            frames::write_solicit(buf, mac, src, target);
        });
        self.counters.solicits += u64::from(sent);
        sent
    }

    fn send_advert(&mut self, rt: &mut Runtime, li: usize, target: Ipv6Addr, (dst, dst_mac): (Ipv6Addr, EthernetAddress), solicited: bool) {
        let Some(mac) = rt.links().get(li).map(|l| l.mac()) else { return };
        let sent = rt.send_built(li, frames::NA_FRAME_LEN as u16, |buf| {
            frames::write_advert(buf, mac, target, dst, dst_mac, solicited);
        });
        self.counters.adverts += u64::from(sent);
    }

    /// An IPv6 frame punted from link `li`: ND and echo for the box taken
    /// (answered, learned); anything else given back for the probes. Also
    /// the address an advertisement taught (its neighbour entry is there).
    pub fn on_punted(&mut self, li: usize, m: Mbuf, rt: &mut Runtime, now: Instant) -> (Option<Mbuf>, Option<Ipv6Addr>) {
        match frames::read(m.data()) {
            Ok(msg) => (None, self.take(li, m, msg, rt, now)),
            Err(Refused::NotNd) => (Some(m), None),
            Err(Refused::Invalid) => {
                self.counters.invalid += 1;
                (None, None)
            }
        }
    }

    /// A valid ND or echo message: answered, learned.
    fn take(&mut self, li: usize, mut m: Mbuf, msg: Message, rt: &mut Runtime, now: Instant) -> Option<Ipv6Addr> {
        match msg {
            Message::Echo { dst } if self.owns(li, dst) && frames::echo_reply(m.data_mut()) => {
                self.counters.echo_replies += 1;
                rt.send(li, m);
            }
            Message::Echo { .. } => self.counters.not_ours += 1,
            Message::MldQuery => self.report(rt, li),
            Message::Solicit { src, target, src_mac } => {
                if !self.owns(li, target) {
                    self.counters.not_ours += 1;
                    return None;
                }
                // The box's own address as the source: made up.
                if self.owns(li, src) {
                    self.counters.invalid += 1;
                    return None;
                }
                let frame_src = furiwake_dataplane::wire::EthernetFrame::new_unchecked(m.data()).src_addr();
                if src.is_unspecified() {
                    // Duplicate address detection by another node: the
                    // box defends its address (§7.2.4: to all-nodes).
                    self.send_advert(rt, li, target, (ALL_NODES, multicast_mac(ALL_NODES)), false);
                    return None;
                }
                if let Some(smac) = src_mac {
                    self.learn(li, src, smac, now, true);
                }
                self.send_advert(rt, li, target, (src, src_mac.unwrap_or(frame_src)), true);
            }
            Message::Advert { target, mac: tmac, over, .. } => {
                // §7.2.5: an advert updates an entry the box has; it
                // creates one only when the box asked (`solicit`); one
                // without the override flag does not replace a known MAC.
                let asked = self.asked.remove(&(li, target)).is_some_and(|t| now.duration_since(t) < ASKED_FOR);
                let known = self.cache.get(&(li, target)).map(|n| n.mac);
                if !over && known.is_some_and(|m| m != tmac) {
                    return None;
                }
                self.learn(li, target, tmac, now, asked);
                return self.cache.contains_key(&(li, target)).then_some(target);
            }
        }
        None
    }

    /// Records `a` at `mac` on link `li`: an existing entry is updated; a
    /// new one only with `create`, for an address of the link's subnet or a
    /// link-local one, the first learned evicted when the cache is full.
    fn learn(&mut self, li: usize, a: Ipv6Addr, mac: EthernetAddress, now: Instant, create: bool) {
        let link_local = a.segments()[0] & 0xffc0 == 0xfe80;
        let on_link = self.subnets.get(li).copied().flatten().is_none_or(|c| c.contains(a));
        if mac.is_multicast() || a.is_multicast() || a.is_unspecified() || !(link_local || on_link) {
            return;
        }
        if let Some(n) = self.cache.get_mut(&(li, a)) {
            *n = Neighbor6 { mac, updated: now };
            return;
        }
        if !create {
            return;
        }
        while self.cache.len() >= CACHE_MAX {
            let Some(first) = self.order.pop_front() else { break };
            if self.cache.remove(&first).is_some() {
                self.counters.evicted += 1;
            }
        }
        self.cache.insert((li, a), Neighbor6 { mac, updated: now });
        self.order.push_back((li, a));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cache is bounded: made-up neighbours evict the longest
    /// unheard; an advert creates an entry only when the box asked.
    #[test]
    fn the_cache_is_bounded_and_adverts_create_only_what_was_asked() {
        let mut nd = Nd::default();
        let t0 = Instant::now();
        let mac = EthernetAddress([2, 0, 0, 0, 0, 1]);
        let a = |i: u32| Ipv6Addr::from(0x2001_0db8_0001_u128 << 80 | u128::from(i));
        for i in 0..(CACHE_MAX as u32 + 5) {
            nd.learn(0, a(i), mac, t0 + Duration::from_millis(u64::from(i)), true);
        }
        assert_eq!(nd.neighbors().count(), CACHE_MAX);
        assert_eq!(nd.counters.evicted, 5);
        assert!(nd.neighbor(0, a(0)).is_none() && nd.neighbor(0, a(CACHE_MAX as u32 + 4)).is_some());
        // Not created without `create`, updated with or without it.
        let later = t0 + Duration::from_secs(60);
        nd.learn(0, a(0), mac, later, false);
        assert!(nd.neighbor(0, a(0)).is_none());
        let other = EthernetAddress([2, 0, 0, 0, 0, 2]);
        nd.learn(0, a(10), other, later, false);
        assert_eq!(nd.neighbor(0, a(10)).map(|n| n.mac), Some(other));
        // Multicast MACs and addresses are never learned.
        nd.learn(0, a(1), EthernetAddress([0x33, 0x33, 0, 0, 0, 1]), later, true);
        nd.learn(0, Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), mac, later, true);
        assert!(nd.neighbor(0, a(1)).is_none());
    }
}
