//! Neighbours, on the control lcore: ARP (RFC 826) for the addresses the
//! appliance owns, the neighbour table it learns, the next hops the
//! workers forward through (kept resolved, refreshed, forgotten when
//! silent), gratuitous ARP for owned addresses (RFC 5227 §3), and ICMP
//! echo replies (RFC 792) for the same addresses.
//!
//! - `neighbor`: the table and the ARP frames (pure, unit-tested).
//! - `icmp`: echo requests turned into replies in place (pure).
//! - `nd`: IPv6 Neighbor Discovery and ICMPv6 echo, the same for IPv6.
//! - `show`: `show arp`, `show routes`, its line of the report.
//!
//! Its step in the control loop: `on_punted` for every punted frame,
//! `resolve_nexthops` once a second (a pass `step` spreads over turns,
//! a bounded share each). The lb module says what is owned and
//! which next hops exist (`reconfigure`); the workers read the next hops'
//! MACs from `slots`.

pub mod icmp;
pub mod nd;
pub mod neighbor;
mod show;

use crate::runtime::Runtime;
use furiwake_dataplane::state::neighbor::Neighbors;
use furiwake_dataplane::state::snapshot::MAX_NEXTHOPS;
use furiwake_dataplane::wire::arp::{ArpOperation, ArpPacket};
use furiwake_dataplane::wire::ethernet::parse_l2;
use furiwake_dataplane::wire::{EtherType, EthernetAddress};
use furiwake_platform::Mbuf;
use neighbor::{ArpOutcome, NeighborTable};
use std::net::Ipv4Addr;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Re-ARP a next hop not confirmed for this long; forget it after 3x.
const NEIGHBOR_REFRESH: Duration = Duration::from_secs(60);
/// A pass over the next hops (`resolve_nexthops`) looks at this many a
/// control-loop turn and sends at most `REQUESTS_PER_TURN` requests, so
/// 65,536 next hops never hold a turn (probes, the console) up nor fill
/// the control TX queue; the pass goes on next turn (`step`).
const SLOTS_PER_TURN: usize = 4096;
const REQUESTS_PER_TURN: usize = 64;

/// A next hop the control plane keeps resolved by ARP; its index is its
/// neighbour slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nexthop {
    /// IPv4 (resolved by ARP) or IPv6 (by Neighbor Discovery).
    pub ip: std::net::IpAddr,
    /// Index into the links.
    pub link: usize,
}

struct NexthopState {
    hop: Nexthop,
    confirmed: Option<Instant>,
    last_request: Option<Instant>,
    /// Requests sent since it last answered (`retry_gap`).
    misses: u32,
}

/// How long after its last request a next hop that has not answered
/// `misses` of them is asked again: every second for the first ten (a
/// link or an aggregation still coming up, a server still booting), then
/// twice as long after each miss up to 16 s, so next hops that stay dead
/// (servers switched off, removed from the configuration) cost one request
/// each every 16 s, not every second. A miss counts only for a request
/// sent on a link that is up; an answer, a reconfiguration, and a next hop
/// heard from within the last 180 s (the refresh window, where a flood
/// may be eating its answers) keep it at once a second. One that returns
/// after that is found within 16 s.
fn retry_gap(misses: u32) -> Duration {
    Duration::from_secs(1 << misses.saturating_sub(9).min(4))
}

#[derive(Debug, Default, Clone, Copy)]
struct ArpCounters {
    arp_replies: u64,
    arp_requests: u64,
    echo_replies: u64,
    arp_other: u64,
    malformed: u64,
}

pub struct Arp {
    neighbors: NeighborTable,
    /// Next hops kept resolved for the workers, by neighbour slot.
    nexthops: Vec<NexthopState>,
    /// Each next hop's slot by (address, link), so a reply finds its
    /// slot in O(1).
    slot_of: HashMap<(std::net::IpAddr, usize), usize>,
    /// Where the running pass over the next hops stands (None: no pass).
    pass: Option<(usize, Instant)>,
    /// The next hops' MACs as the workers read them.
    slots: Arc<Neighbors>,
    /// Per link: the addresses answered for in ARP and ICMP echo: the self
    /// IP, and the VIPs and full-NAT local addresses in its subnet.
    owned: Vec<Vec<Ipv4Addr>>,
    /// VRRP addresses (`vrrp`): per address, its link and the MAC it
    /// answers with (the virtual MAC, or the link's).
    floating: HashMap<Ipv4Addr, (usize, EthernetAddress)>,
    /// Addresses a VRRP peer owns now: neither ARP nor echo is answered.
    standby: HashSet<Ipv4Addr>,
    /// Hosts asked for on the workers' behalf (`resolve_wanted`), when.
    asked: HashMap<(usize, u32), Instant>,
    counters: ArpCounters,
    /// IPv6's Neighbor Discovery (`nd`).
    pub nd: nd::Nd,
}

impl Arp {
    /// `owned` per link and the next hops, as the lb module compiled them.
    pub fn new(owned: Vec<Vec<Ipv4Addr>>, nexthops: &[Nexthop]) -> Self {
        Arp {
            neighbors: NeighborTable::default(),
            nexthops: nexthops.iter().map(|&hop| NexthopState { hop, confirmed: None, last_request: None, misses: 0 }).collect(),
            slot_of: nexthops.iter().enumerate().map(|(i, h)| ((h.ip, h.link), i)).collect(),
            pass: None,
            slots: Arc::new(Neighbors::new(MAX_NEXTHOPS)),
            owned,
            floating: HashMap::new(),
            standby: HashSet::new(),
            asked: HashMap::new(),
            counters: ArpCounters::default(),
            nd: nd::Nd::default(),
        }
    }

    /// Neighbor Discovery on the links that have IPv6.
    pub fn with_nd(mut self, rt: &Runtime) -> Self {
        self.nd = nd::Nd::new(rt);
        self
    }

    /// The next hops' MACs, for the workers.
    pub fn slots(&self) -> &Arc<Neighbors> {
        &self.slots
    }

    /// After a configuration change: the addresses owned per link, and the
    /// next hops (new ones are appended: slots only grow). Returns what
    /// was owned before, for `announce_added`.
    pub fn reconfigure(&mut self, owned: Vec<Vec<Ipv4Addr>>, nexthops: &[Nexthop]) -> Vec<Vec<Ipv4Addr>> {
        let before = self.owned.clone();
        for (o, new) in self.owned.iter_mut().zip(owned) {
            *o = new;
        }
        // A change may bring back a server: every next hop at once a
        // second again.
        for nh in &mut self.nexthops {
            nh.misses = 0;
        }
        for hop in nexthops.iter().skip(self.nexthops.len()) {
            self.slot_of.entry((hop.ip, hop.link)).or_insert(self.nexthops.len());
            self.nexthops.push(NexthopState { hop: *hop, confirmed: None, last_request: None, misses: 0 });
        }
        before
    }

    /// Gratuitous ARP for every address the box owns, on its link (RFC
    /// 5227 §3), so neighbours learn the VIPs at once.
    pub fn announce(&mut self, rt: &mut Runtime) {
        self.nd.announce(rt);
        for li in 0..self.owned.len().min(rt.links().len()) {
            let (mac, owned) = (rt.links()[li].mac(), self.owned[li].clone());
            let owned: Vec<Ipv4Addr> = owned.into_iter().filter(|ip| !self.standby.contains(ip) && !self.floating.contains_key(ip)).collect();
            for ip in owned {
                self.send_request(rt, li, mac, ip, ip);
            }
        }
    }

    /// The VRRP addresses (link and MAC each) and those a peer owns now.
    pub fn set_vrrp(&mut self, floating: HashMap<Ipv4Addr, (usize, EthernetAddress)>, standby: HashSet<Ipv4Addr>) {
        self.floating = floating;
        self.standby = standby;
    }

    /// One gratuitous ARP for `ip` on link `li` from `mac` (VRRP takeover).
    pub fn gratuitous(&mut self, rt: &mut Runtime, li: usize, mac: EthernetAddress, ip: Ipv4Addr) {
        self.send_request(rt, li, mac, ip, ip);
    }

    /// Asks for `target` on link `li` from its self IP (VRRP tracking).
    pub fn ask(&mut self, rt: &mut Runtime, li: usize, target: Ipv4Addr) {
        let Some(link) = rt.links().get(li) else { return };
        let (mac, ip) = (link.mac(), link.address().addr);
        self.send_request(rt, li, mac, ip, target);
    }

    /// What ARP last taught about `ip`.
    pub fn neighbor(&self, ip: Ipv4Addr) -> Option<&neighbor::Neighbor> {
        self.neighbors.get(ip)
    }

    /// The MAC link `li` answers for `a` with, when it answers for it.
    fn answers(&self, li: usize, link_mac: EthernetAddress, a: Ipv4Addr) -> Option<EthernetAddress> {
        answers(&self.floating, &self.standby, &self.owned, li, link_mac, a)
    }

    /// Gratuitous ARP for the addresses owned now and not in `before`.
    pub fn announce_added(&mut self, rt: &mut Runtime, before: &[Vec<Ipv4Addr>]) {
        for li in 0..self.owned.len().min(rt.links().len()) {
            let (mac, owned) = (rt.links()[li].mac(), self.owned[li].clone());
            for ip in owned.into_iter().filter(|ip| before.get(li).is_none_or(|b| !b.contains(ip))) {
                self.send_request(rt, li, mac, ip, ip);
            }
        }
    }

    /// Starts a pass that sends ARP requests for next hops not confirmed
    /// recently and forgets those silent for too long (the workers then
    /// drop under `neighbor-unresolved`); `step` carries it on, a bounded
    /// share a turn. Once a second, at start and after a change.
    pub fn resolve_nexthops(&mut self, rt: &mut Runtime, now: Instant) {
        self.pass = Some((0, now));
        self.step(rt);
    }

    /// The running pass's share for this turn (`SLOTS_PER_TURN` next hops
    /// looked at, `REQUESTS_PER_TURN` requests at most). Every turn.
    pub fn step(&mut self, rt: &mut Runtime) {
        let Some((mut slot, now)) = self.pass else { return };
        let (mut looked, mut sent) = (0, 0);
        while slot < self.nexthops.len() && looked < SLOTS_PER_TURN && sent < REQUESTS_PER_TURN {
            let nh = &self.nexthops[slot];
            let stale = nh.confirmed.is_none_or(|t| now.duration_since(t) >= NEIGHBOR_REFRESH);
            let heard_lately = nh.confirmed.is_some_and(|t| now.duration_since(t) < NEIGHBOR_REFRESH * 3);
            let gap = if heard_lately { Duration::from_secs(1) } else { retry_gap(nh.misses) };
            let asked_recently = nh.last_request.is_some_and(|t| now.duration_since(t) < gap);
            if nh.confirmed.is_some_and(|t| now.duration_since(t) >= NEIGHBOR_REFRESH * 3) {
                self.slots.clear(slot as u16);
            }
            let hop = nh.hop;
            let link_up = rt.links().get(hop.link).is_some_and(|l| l.is_up());
            if stale && !asked_recently && link_up {
                let link = &rt.links()[hop.link];
                let (mac, ip) = (link.mac(), link.address().addr);
                self.nexthops[slot].last_request = Some(now);
                let asked = match hop.ip {
                    std::net::IpAddr::V4(target) => self.send_request(rt, hop.link, mac, ip, target),
                    std::net::IpAddr::V6(target) => self.nd.solicit(rt, hop.link, target, now),
                };
                if asked {
                    self.nexthops[slot].misses = self.nexthops[slot].misses.saturating_add(1);
                }
                sent += 1;
            }
            looked += 1;
            slot += 1;
        }
        self.pass = (slot < self.nexthops.len()).then_some((slot, now));
    }

    /// A frame punted from link `li`: ARP and echo requests for owned
    /// addresses are answered, senders learned; `probes` sees what the
    /// health probes' IP stack may be waiting for (every frame that is not
    /// ARP and not an echo request for us, and ARP replies).
    pub fn on_punted(&mut self, li: usize, mut m: Mbuf, rt: &mut Runtime, probes: &mut dyn FnMut(&[u8])) {
        let ethertype = parse_l2(m.data()).map(|l2| l2.ethertype).ok();
        let is_arp = ethertype == Some(EtherType::Arp);
        let link_mac = rt.links()[li].mac();
        if ethertype == Some(EtherType::Ipv6) {
            let now = Instant::now();
            let (rest, heard) = self.nd.on_punted(li, m, rt, now);
            if let Some(m) = rest {
                probes(m.data());
            }
            if let Some(a) = heard {
                self.learned6(li, a, now);
            }
            return;
        }
        if !is_arp {
            if icmp::echo_reply(m.data_mut(), |a| self.answers(li, link_mac, a).is_some()) {
                self.counters.echo_replies += 1;
                rt.send(li, m);
            } else {
                // Probe replies (and anything else for the self IP): the
                // probes' IP stack answers or ignores them.
                probes(m.data());
            }
            return;
        }
        let is_reply = parse_l2(m.data())
            .ok()
            .and_then(|l2| m.data().get(l2.l3_offset..).and_then(|b| ArpPacket::new_checked(b).ok()))
            .is_some_and(|a| a.operation() == ArpOperation::Reply);
        if is_reply {
            // The probes' stack resolves its next hops itself.
            probes(m.data());
        }
        let now = Instant::now();
        let sender = parse_l2(m.data())
            .ok()
            .and_then(|l2| m.data().get(l2.l3_offset..).and_then(|b| ArpPacket::new_checked(b).ok()))
            .map(|a| a.source_protocol_addr());
        let (floating, standby, owned) = (&self.floating, &self.standby, &self.owned);
        let subnet = rt.links()[li].address();
        let on_link = |a: Ipv4Addr| subnet.contains(a);
        match neighbor::handle(m.data_mut(), (li, &on_link), |a| answers(floating, standby, owned, li, link_mac, a), &mut self.neighbors, now) {
            ArpOutcome::Reply => {
                self.counters.arp_replies += 1;
                rt.send(li, m);
            }
            ArpOutcome::Consumed => self.counters.arp_other += 1,
            ArpOutcome::Malformed => self.counters.malformed += 1,
        }
        if let Some(ip) = sender {
            self.learned(li, ip, now);
        }
    }

    /// True when the request went out.
    fn send_request(&mut self, rt: &mut Runtime, li: usize, mac: EthernetAddress, sender: Ipv4Addr, target: Ipv4Addr) -> bool {
        let sent = rt.send_built(li, neighbor::FRAME_LEN as u16, |buf| {
            neighbor::write_request(buf, mac, sender, target);
        });
        if sent {
            self.counters.arp_requests += 1;
        }
        sent
    }

    /// Hosts the workers asked for (a source-NAT connection routed to a
    /// host on a link's subnet, `Neighbors::host`): an ARP request for
    /// each, at most one per host a second. Every control-loop turn.
    pub fn resolve_wanted(&mut self, rt: &mut Runtime, now: Instant) {
        let wanted = self.slots.take_wanted();
        if wanted.is_empty() {
            return;
        }
        self.asked.retain(|_, t| now.duration_since(*t) < Duration::from_secs(1));
        for (li, ip) in wanted {
            let li = li as usize;
            if self.asked.contains_key(&(li, ip)) {
                continue;
            }
            let Some(link) = rt.links().get(li) else { continue };
            let (mac, own) = (link.mac(), link.address().addr);
            self.asked.insert((li, ip), now);
            self.send_request(rt, li, mac, own, Ipv4Addr::from(ip));
        }
    }

    /// After Neighbor Discovery taught us `ip`'s MAC on link `li`: a next
    /// hop's slot for the workers.
    fn learned6(&mut self, li: usize, ip: std::net::Ipv6Addr, now: Instant) {
        let Some(n) = self.nd.neighbor(li, ip).copied() else { return };
        if let Some(&slot) = self.slot_of.get(&(std::net::IpAddr::V6(ip), li)) {
            if let Some(nh) = self.nexthops.get_mut(slot) {
                nh.confirmed = Some(now);
                nh.misses = 0;
                self.slots.set(slot as u16, n.mac);
            }
        }
    }

    /// After ARP taught us `ip`'s MAC on link `li`: fill the workers' slots
    /// and host cache.
    fn learned(&mut self, li: usize, ip: Ipv4Addr, now: Instant) {
        let Some(n) = self.neighbors.get(ip).copied() else { return };
        self.slots.set_host(li as u16, u32::from(ip), n.mac);
        if let Some(&slot) = self.slot_of.get(&(std::net::IpAddr::V4(ip), li)) {
            if let Some(nh) = self.nexthops.get_mut(slot) {
                nh.confirmed = Some(now);
                nh.misses = 0;
                self.slots.set(slot as u16, n.mac);
            }
        }
    }
}

/// The MAC link `li` answers for `a` with (ARP, echo), when it answers:
/// a VRRP address on its link while no peer owns it, or an owned address.
fn answers(
    floating: &HashMap<Ipv4Addr, (usize, EthernetAddress)>,
    standby: &HashSet<Ipv4Addr>,
    owned: &[Vec<Ipv4Addr>],
    li: usize,
    link_mac: EthernetAddress,
    a: Ipv4Addr,
) -> Option<EthernetAddress> {
    if standby.contains(&a) {
        return None;
    }
    match floating.get(&a) {
        Some((l, mac)) => (*l == li).then_some(*mac),
        None => owned.get(li).is_some_and(|o| o.contains(&a)).then_some(link_mac),
    }
}

#[cfg(test)]
mod tests {
    use super::retry_gap;
    use std::time::Duration;

    /// A next hop that does not answer is asked every second ten times,
    /// then at 2, 4, 8 and 16 s, and never less often than every 16 s.
    #[test]
    fn an_unanswered_next_hop_is_asked_less_and_less_often() {
        let gaps: Vec<u64> = (0..16).map(|m| retry_gap(m).as_secs()).collect();
        assert_eq!(gaps, [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 4, 8, 16, 16, 16]);
        assert_eq!(retry_gap(u32::MAX), Duration::from_secs(16));
    }
}
