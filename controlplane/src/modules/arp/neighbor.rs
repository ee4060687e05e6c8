//! ARP on the control lcore (RFC 826): answer requests for addresses the
//! appliance owns, learn senders into the neighbour table.

use furiwake_dataplane::wire::arp::{ArpOperation, ArpPacket, ArpRepr};
use furiwake_dataplane::wire::{EtherType, EthernetAddress, EthernetFrame};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbor {
    pub mac: EthernetAddress,
    /// Index of the interface it was learned on.
    pub interface: usize,
    pub updated: Instant,
}

/// Neighbours the table holds at most: a flood of requests for the box's
/// addresses from made-up senders on the link's subnet (each a new entry,
/// RFC 826) evicts the first learned, in O(1), so memory stays bounded and
/// a next hop's answer is always learned (the workers' copy of its MAC is
/// in its slot, which no eviction touches).
pub const TABLE_MAX: usize = 4096;

/// IPv4 neighbours, learned from ARP.
#[derive(Debug, Default)]
pub struct NeighborTable {
    entries: HashMap<Ipv4Addr, Neighbor>,
    /// The entries in the order they were made (evicted from the front).
    order: std::collections::VecDeque<Ipv4Addr>,
    /// Entries evicted to make room.
    pub evicted: u64,
}

impl NeighborTable {
    pub fn get(&self, ip: Ipv4Addr) -> Option<&Neighbor> {
        self.entries.get(&ip)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Ipv4Addr, &Neighbor)> {
        self.entries.iter()
    }

    fn update(&mut self, ip: Ipv4Addr, mac: EthernetAddress, interface: usize, now: Instant, create: bool) -> bool {
        if ip.is_unspecified() || mac.is_multicast() {
            return false;
        }
        match self.entries.get_mut(&ip) {
            Some(n) => {
                *n = Neighbor { mac, interface, updated: now };
                true
            }
            None if create => {
                while self.entries.len() >= TABLE_MAX {
                    let Some(first) = self.order.pop_front() else { break };
                    if self.entries.remove(&first).is_some() {
                        self.evicted += 1;
                    }
                }
                self.entries.insert(ip, Neighbor { mac, interface, updated: now });
                self.order.push_back(ip);
                true
            }
            None => false,
        }
    }
}

/// What `handle` did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpOutcome {
    /// The frame was rewritten in place into a reply: send it back out.
    Reply,
    /// Not for us, or a reply: nothing to send (the sender may be learned).
    Consumed,
    /// Not a valid Ethernet/IPv4 ARP packet.
    Malformed,
}

/// Handles one ARP frame that arrived on `interface`; `owns` says which
/// IPv4 addresses the appliance answers for there, and with which MAC (the
/// link's, or a VRRP virtual MAC).
///
/// RFC 826 "Packet reception": update the sender if known; if we are the
/// target, add the sender; if it is a request, answer it.
pub fn handle(
    frame: &mut [u8],
    (interface, on_link): (usize, &dyn Fn(Ipv4Addr) -> bool),
    owns: impl Fn(Ipv4Addr) -> Option<EthernetAddress>,
    neighbors: &mut NeighborTable,
    now: Instant,
) -> ArpOutcome {
    let Ok(eth) = EthernetFrame::new_checked(&*frame) else { return ArpOutcome::Malformed };
    if eth.ethertype() != EtherType::Arp {
        return ArpOutcome::Malformed;
    }
    let Ok(arp) = ArpPacket::new_checked(eth.payload()) else { return ArpOutcome::Malformed };
    let req = ArpRepr::parse(&arp);
    let mac = owns(req.target_protocol_addr);
    // A sender is added only from the link's own subnet (one off it is
    // made up); a known one is updated wherever it is.
    neighbors.update(req.source_protocol_addr, req.source_hardware_addr, interface, now, mac.is_some() && on_link(req.source_protocol_addr));
    let Some(mac) = mac.filter(|_| req.operation == ArpOperation::Request) else {
        return ArpOutcome::Consumed;
    };
    let reply = ArpRepr {
        operation: ArpOperation::Reply,
        source_hardware_addr: mac,
        source_protocol_addr: req.target_protocol_addr,
        target_hardware_addr: req.source_hardware_addr,
        target_protocol_addr: req.source_protocol_addr,
    };
    let mut eth = EthernetFrame::new_unchecked(&mut *frame);
    eth.set_dst_addr(req.source_hardware_addr);
    eth.set_src_addr(mac);
    reply.emit(&mut ArpPacket::new_unchecked(eth.payload_mut()));
    ArpOutcome::Reply
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
    const US: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);

    fn request(target: Ipv4Addr) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
        eth.set_dst_addr(EthernetAddress::BROADCAST);
        eth.set_src_addr(PEER);
        eth.set_ethertype(EtherType::Arp);
        ArpRepr {
            operation: ArpOperation::Request,
            source_hardware_addr: PEER,
            source_protocol_addr: Ipv4Addr::new(192, 0, 2, 1),
            target_hardware_addr: EthernetAddress::default(),
            target_protocol_addr: target,
        }
        .emit(&mut ArpPacket::new_unchecked(eth.payload_mut()));
        f
    }

    #[test]
    fn answers_for_own_address_and_learns_sender() {
        let mut n = NeighborTable::default();
        let me = Ipv4Addr::new(192, 0, 2, 2);
        let mut f = request(me);
        assert_eq!(handle(&mut f, (0, &|_| true), |a| (a == me).then_some(US), &mut n, Instant::now()), ArpOutcome::Reply);
        let eth = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(eth.dst_addr(), PEER);
        assert_eq!(eth.src_addr(), US);
        let r = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap());
        assert_eq!(r.operation, ArpOperation::Reply);
        assert_eq!(r.source_hardware_addr, US);
        assert_eq!(r.source_protocol_addr, me);
        assert_eq!(r.target_hardware_addr, PEER);
        assert_eq!(r.target_protocol_addr, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(n.get(Ipv4Addr::new(192, 0, 2, 1)).map(|e| e.mac), Some(PEER));
        // A sender off the link's subnet is answered but not learned.
        let mut n = NeighborTable::default();
        let mut f = request(me);
        assert_eq!(handle(&mut f, (0, &|_| false), |a| (a == me).then_some(US), &mut n, Instant::now()), ArpOutcome::Reply);
        assert!(n.is_empty());
    }

    #[test]
    fn ignores_others_and_garbage() {
        let mut n = NeighborTable::default();
        let mut f = request(Ipv4Addr::new(192, 0, 2, 99));
        let before = f.clone();
        assert_eq!(handle(&mut f, (0, &|_| true), |_| None, &mut n, Instant::now()), ArpOutcome::Consumed);
        assert_eq!(f, before, "frame untouched");
        assert!(n.is_empty(), "strangers are not added (RFC 826 merge flag)");
        let mut short = request(Ipv4Addr::new(192, 0, 2, 2));
        short.truncate(30);
        assert_eq!(handle(&mut short, (0, &|_| true), |_| Some(US), &mut n, Instant::now()), ArpOutcome::Malformed);
    }
}

/// Length of an Ethernet frame carrying ARP, padded to the 60-byte minimum.
pub const FRAME_LEN: usize = 60;

/// Writes a broadcast ARP request "who has `target`, tell `sender_ip`"
/// into `frame` (at least `FRAME_LEN` bytes). With `target == sender_ip`
/// it is a gratuitous ARP announcing the address (RFC 5227 §3).
pub fn write_request(frame: &mut [u8], sender_mac: EthernetAddress, sender_ip: Ipv4Addr, target: Ipv4Addr) -> usize {
    frame[..FRAME_LEN].fill(0);
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..FRAME_LEN]);
    eth.set_dst_addr(EthernetAddress::BROADCAST);
    eth.set_src_addr(sender_mac);
    eth.set_ethertype(EtherType::Arp);
    ArpRepr {
        operation: ArpOperation::Request,
        source_hardware_addr: sender_mac,
        source_protocol_addr: sender_ip,
        target_hardware_addr: EthernetAddress::default(),
        target_protocol_addr: target,
    }
    .emit(&mut ArpPacket::new_unchecked(eth.payload_mut()));
    FRAME_LEN
}

#[cfg(test)]
mod request_tests {
    use super::*;

    #[test]
    fn request_round_trips() {
        let mut f = [0xffu8; 64];
        let mac = EthernetAddress([2, 0, 0, 0, 0, 9]);
        assert_eq!(write_request(&mut f, mac, Ipv4Addr::new(198, 51, 100, 1), Ipv4Addr::new(198, 51, 100, 11)), 60);
        let eth = EthernetFrame::new_checked(&f[..60]).unwrap();
        assert!(eth.dst_addr().is_broadcast());
        let r = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap());
        assert_eq!(r.operation, ArpOperation::Request);
        assert_eq!(r.source_protocol_addr, Ipv4Addr::new(198, 51, 100, 1));
        assert_eq!(r.target_protocol_addr, Ipv4Addr::new(198, 51, 100, 11));
        assert_eq!(&f[42..60], &[0u8; 18], "padding zeroed");
    }

    /// A flood of requests for our address from made-up senders: the
    /// table stops at its bound, the first learned evicted; the last
    /// sender (a next hop answering) is always learned.
    #[test]
    fn a_flood_of_senders_is_bounded_and_the_newest_learned() {
        let mut t = NeighborTable::default();
        let t0 = Instant::now();
        for i in 0..(TABLE_MAX as u32 + 10) {
            let at = t0 + std::time::Duration::from_millis(u64::from(i));
            assert!(t.update(Ipv4Addr::from(0x0a00_0000 + i), EthernetAddress([2, 0, 0, 0, 0, 1]), 0, at, true));
        }
        assert_eq!(t.len(), TABLE_MAX);
        assert_eq!(t.evicted, 10);
        assert!(t.get(Ipv4Addr::from(0x0a00_0000 + TABLE_MAX as u32 + 9)).is_some(), "the newest");
        assert!(t.get(Ipv4Addr::from(0x0a00_0000)).is_none(), "the oldest went first");
    }
}
