//! The first look at a frame: parse and validate its headers, decide
//! whether it is this worker's (ownership), then send it down the flow
//! path, the ICMP path, or to the control lcore.

use super::owner::owner;
use super::{L4Info, Shard, Verdict};
use crate::conntrack::{Dir, FlowKey, FlowState, Segment};
use crate::state::counters::DropReason;
use crate::state::snapshot::{Forwarding, Snapshot};
use crate::wire::ethernet::{parse_l2, EtherType};
use crate::wire::ipv4::{protocol, Ipv4Packet};
use crate::wire::tcp::{flags as tcpf, TcpOptions, TcpPacket};
use crate::wire::udp::UdpPacket;
use crate::wire::WireError;

/// 224.0.0.18, the VRRP group (RFC 5798 §5.1.1.2), host order.
const VRRP_GROUP: u32 = u32::from_be_bytes([224, 0, 0, 18]);

fn ipv4_drop(e: WireError) -> DropReason {
    match e {
        WireError::Truncated => DropReason::Ipv4Truncated,
        WireError::BadVersion => DropReason::Ipv4BadVersion,
        WireError::BadHeaderLength => DropReason::Ipv4BadHeaderLength,
        _ => DropReason::Ipv4BadTotalLength,
    }
}

/// The flow key of a TCP/UDP packet, read without validation (for
/// prefetching only; `process` validates).
#[inline(always)]
pub(super) fn quick_key(frame: &[u8]) -> Option<FlowKey> {
    let l3 = match u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]) {
        0x0800 => 14,
        0x8100 if u16::from_be_bytes([*frame.get(16)?, *frame.get(17)?]) == 0x0800 => 18,
        _ => return None,
    };
    // Fixed-size arrays: constant indexes into them are checked at compile
    // time.
    let ip: &[u8; 20] = frame.get(l3..l3 + 20)?.try_into().ok()?;
    let proto = ip[9];
    if proto != protocol::TCP && proto != protocol::UDP {
        return None;
    }
    let hl = ((ip[0] & 0x0f) as usize) * 4;
    let l4: &[u8; 4] = frame.get(l3 + hl..l3 + hl + 4)?.try_into().ok()?;
    Some(FlowKey {
        src_ip: u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]),
        dst_ip: u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]),
        src_port: u16::from_be_bytes([l4[0], l4[1]]),
        dst_port: u16::from_be_bytes([l4[2], l4[3]]),
        proto,
    })
}

/// `quick_key` of an IPv6 frame whose TCP or UDP header follows the fixed
/// header (the common case; a chain of extension headers goes unhashed to
/// the parse), for the burst pipeline's prefetch (`burst`): read unchecked,
/// the parse validates.
pub(super) fn quick_key6(frame: &[u8]) -> Option<FlowKey<u128>> {
    let l3 = match u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]) {
        0x86dd => 14,
        0x8100 if u16::from_be_bytes([*frame.get(16)?, *frame.get(17)?]) == 0x86dd => 18,
        _ => return None,
    };
    let ip: &[u8; 44] = frame.get(l3..l3 + 44)?.try_into().ok()?;
    let proto = ip[6];
    if proto != protocol::TCP && proto != protocol::UDP {
        return None;
    }
    let addr = |at: usize| -> Option<u128> { Some(u128::from_be_bytes(ip.get(at..at + 16)?.try_into().ok()?)) };
    Some(FlowKey {
        src_ip: addr(8)?,
        dst_ip: addr(24)?,
        src_port: u16::from_be_bytes([ip[40], ip[41]]),
        dst_port: u16::from_be_bytes([ip[42], ip[43]]),
        proto,
    })
}

/// What sequence tracking needs of a TCP segment (`conntrack::track`):
/// the window scale option is read from SYNs only.
#[inline]
pub(super) fn segment<T: AsRef<[u8]>>(t: &TcpPacket<T>) -> Segment {
    let flags = t.flags();
    Segment {
        flags,
        seq: t.seq_number(),
        ack: t.ack_number(),
        win: t.window_len(),
        len: t.payload().len() as u32,
        wscale: if flags & tcpf::SYN != 0 { TcpOptions::parse(t.options()).wscale } else { None },
    }
}

/// The TCP or UDP checksum of the packet `p` describes (RFC 9293 §3.1,
/// RFC 768).
#[inline]
pub(super) fn l4_checksum_ok(frame: &[u8], p: &L4Info) -> bool {
    let Some(l4) = frame.get(p.l3 + p.hl..p.l3 + p.ip_len) else { return false };
    let (s, d) = (std::net::Ipv4Addr::from(p.src), std::net::Ipv4Addr::from(p.dst));
    if p.proto == protocol::TCP {
        TcpPacket::new_unchecked(l4).verify_checksum(s, d)
    } else {
        UdpPacket::new_unchecked(l4).verify_checksum(s, d)
    }
}

impl Shard {
    /// Decides the fate of one frame that arrived on `port`, rewriting it in
    /// place when forwarding. `handed`: another worker already decided this
    /// worker owns it. A new connection no server can take comes back as
    /// `Verdict::Reject`, which only `process_packet` can carry out.
    pub(super) fn process(&mut self, snap: &Snapshot, frame: &mut [u8], port: u16, handed: bool) -> Verdict {
        self.in_port = port;
        let l2 = match parse_l2(frame) {
            Ok(l2) => l2,
            Err(_) => return Verdict::Drop(DropReason::RuntFrame),
        };
        // From here on `port` is the link (`[[interface]]`): the DPDK
        // port and the frame's VLAN.
        let Some(port) = snap.link_of(port, l2.vlan) else { return Verdict::Drop(DropReason::UnknownVlan) };
        // The appliance's own stack: only its TCP and UDP connections pass.
        let from_host = snap.host_link() == Some(port);
        match l2.ethertype {
            EtherType::Arp if from_host => return Verdict::Drop(DropReason::HostUnmatched),
            EtherType::Arp => return Verdict::Punt,
            EtherType::Ipv4 => {}
            EtherType::Ipv6 => return self.process_v6(snap, frame, (l2.l3_offset, port), handed, from_host),
            _ => return Verdict::Drop(DropReason::UnhandledEthertype),
        }
        let l3 = l2.l3_offset;
        let Some(ip_bytes) = frame.get(l3..) else { return Verdict::Drop(DropReason::Ipv4Truncated) };
        let ip = match Ipv4Packet::new_checked(ip_bytes) {
            Ok(ip) => ip,
            Err(e) => return Verdict::Drop(ipv4_drop(e)),
        };
        // RFC 1812 §5.2.2: a router checks the header checksum.
        if !ip.verify_checksum() {
            return Verdict::Drop(DropReason::Ipv4BadChecksum);
        }
        let src = u32::from(ip.src_addr());
        let dst = u32::from(ip.dst_addr());
        // Fragments are not reassembled (README, "Fragments"); in transit
        // they go the way of their datagram (a gateway hashes addresses).
        if ip.is_fragment() {
            if from_host {
                return Verdict::Drop(DropReason::Fragment);
            }
            let ours = snap.is_self(dst) || snap.is_local(dst) || snap.is_vip(dst);
            if !ours {
                if let Some(v) = self.transit(snap, frame, l3, port, src, dst) {
                    return v;
                }
            }
            return Verdict::Drop(DropReason::Fragment);
        }
        let hl = ip.header_len();
        let ip_len = ip.total_len() as usize;
        let ttl = ip.ttl();
        let proto = ip.protocol();
        match proto {
            protocol::TCP | protocol::UDP => {}
            _ if from_host => return Verdict::Drop(DropReason::HostUnmatched),
            protocol::ICMP => return self.process_icmp(snap, frame, l3, hl, handed, port),
            // VRRP adverts (RFC 5798 §5.1.1.2: to 224.0.0.18, or to a self
            // IP from a unicast peer) go to the control lcore's VRRP.
            protocol::VRRP if dst == VRRP_GROUP || snap.is_self(dst) => return Verdict::Punt,
            _ if snap.is_self(dst) => return Verdict::Punt,
            _ if snap.is_vip(dst) || snap.is_local(dst) => return Verdict::Drop(DropReason::UnhandledProtocol),
            _ => return self.transit(snap, frame, l3, port, src, dst).unwrap_or(Verdict::Drop(DropReason::NoVirtualServer)),
        }
        let l4 = ip.payload();
        let mut seg = Segment::default();
        let (sport, dport, tcp_flags) = if proto == protocol::TCP {
            match TcpPacket::new_checked(l4) {
                Ok(t) => {
                    seg = segment(&t);
                    (t.src_port(), t.dst_port(), t.flags())
                }
                Err(WireError::Truncated) => return Verdict::Drop(DropReason::TcpTruncated),
                Err(_) => return Verdict::Drop(DropReason::TcpBadHeaderLength),
            }
        } else {
            match UdpPacket::new_checked(l4) {
                Ok(u) => (u.src_port(), u.dst_port(), 0),
                Err(WireError::Truncated) => return Verdict::Drop(DropReason::UdpTruncated),
                Err(_) => return Verdict::Drop(DropReason::UdpBadLength),
            }
        };
        if !handed && self.config.workers > 1 {
            let o = owner(snap, &self.owners, src, sport, dst, dport, proto);
            if o != self.config.id {
                return Verdict::Handoff(o);
            }
        }
        // Forwarding would take TTL to 0 (RFC 1812 §5.3.1): refuse before
        // any state is created. What the appliance's own stack ends (a
        // `Local` service, an answer to its source address) is not
        // forwarded: the TTL does not matter.
        if ttl <= 1 && !snap.is_self(dst) && !ends_in_stack(snap, dst, dport, proto) {
            return Verdict::Drop(DropReason::TtlExceeded);
        }
        let info = L4Info { l3, hl, proto, src, dst, sport, dport, tcp_flags, ip_len, seg };
        let key = FlowKey { src_ip: src, dst_ip: dst, src_port: sport, dst_port: dport, proto };
        let hash = self.key_hash(&key);
        let mut found = self.lookup_live(snap, &key, hash);
        // A segment that can change a tracked connection's state (SYN, FIN,
        // RST) must be one an endpoint would accept: its checksum is
        // verified before it touches the marks or the state (or reopens a closing entry), as Linux
        // conntrack does (`nf_conntrack_checksum`). They are rare; the
        // rest is left to the endpoints.
        if found.is_some() && proto == protocol::TCP && tcp_flags & (tcpf::SYN | tcpf::FIN | tcpf::RST) != 0 && !l4_checksum_ok(frame, &info) {
            return Verdict::Drop(DropReason::L4BadChecksum);
        }
        // A new SYN on an entry that is closing (TIME_WAIT, CLOSE) is a new
        // connection reusing the client port (RFC 9293 §3.6.1): reschedule
        // it, as IPVS does with conn_reuse_mode=1.
        if let Some((id, Dir::Original)) = found {
            let closing = self.table.get(id).is_some_and(|f| matches!(f.state, FlowState::TimeWait | FlowState::Close));
            if closing && tcp_flags & (tcpf::SYN | tcpf::ACK) == tcpf::SYN {
                self.remove(snap, id);
                found = None;
            }
        }
        // A backup forwards nothing of a VIP its peer owns (both
        // directions: entries synced from the peer wait for a takeover).
        let standby = |vs: u16| snap.services.get(vs as usize).is_some_and(|v| v.standby);
        if let Some((id, _)) = found {
            if self.table.get(id).is_some_and(|f| standby(f.vs)) {
                return Verdict::Drop(DropReason::VrrpBackup);
            }
        }
        let mode = found.and_then(|(id, _)| self.table.get(id)).map(|f| f.mode);
        match found {
            Some((id, dir)) if !local_link_ok(snap, self.table.get(id), dir, port) => Verdict::Drop(DropReason::LocalWrongLink),
            Some((id, dir)) if mode == Some(Forwarding::Snat) => self.forward_snat(snap, frame, &info, id, dir),
            Some((id, dir)) if mode == Some(Forwarding::LocalOut) => self.forward_local_out(snap, frame, &info, id, dir),
            Some((id, Dir::Original)) => self.forward_original(snap, frame, &info, id),
            Some((id, Dir::Reply)) if !reply_link_ok(snap, self.table.get(id), port) => Verdict::Drop(DropReason::ReplyWrongLink),
            Some((id, Dir::Reply)) => self.forward_reply(snap, frame, &info, id),
            // The stack's own connection out, or its chatter.
            None if from_host => match snap.is_host_source(src) && (crate::forward::HOST_PORT_MIN..=crate::forward::HOST_PORT_MAX).contains(&sport) {
                true => self.new_local_out(snap, frame, &info, port),
                false => Verdict::Drop(DropReason::HostUnmatched),
            },
            // The stack's own address (its ephemeral ports, on a self IP
            // it shares with the control plane): only its connections'
            // answers.
            None if snap.is_host_source(dst) && (!snap.is_self(dst) || (crate::forward::HOST_PORT_MIN..=crate::forward::HOST_PORT_MAX).contains(&dport)) => Verdict::Drop(DropReason::HostUnmatched),
            None => match snap.find_service(dst, dport, proto) {
                Some(vs) if standby(vs) => Verdict::Drop(DropReason::VrrpBackup),
                Some(_) if snap.is_self(src) || snap.is_local(src) || snap.is_vip(src) => Verdict::Drop(DropReason::OwnSource),
                // An IPv4 VIP over IPv6 servers: its connections are the
                // IPv6 table's (`xlate`).
                Some(vs) if snap.services.get(vs as usize).is_some_and(|v| v.xlate) => self.xlate_in(snap, frame, &info, port, ttl),
                Some(vs) => self.new_connection(snap, frame, &info, vs, port),
                // A server's answer to a translated connection's port of a
                // translating local address.
                None if (super::xlate::XLATE_PORT_MIN..=crate::forward::LOCAL_PORT_MAX).contains(&dport) && snap.is_local6(crate::forward::xlate::mapped(dst)) => self.xlate_in(snap, frame, &info, port, ttl),
                None if snap.is_self(dst) || snap.is_local(dst) => Verdict::Punt,
                // A server's own connection out (`[[snat]]`), from the
                // servers' link only: from outside, nothing but the VIPs is
                // reached.
                None => match snap.snat_rule(src) {
                    Some(rule) if rule.link != port => Verdict::Drop(DropReason::SnatWrongLink),
                    Some(rule) => self.new_snat(snap, frame, &info, rule, port),
                    None => self.transit(snap, frame, l3, port, src, dst).unwrap_or(Verdict::Drop(DropReason::NoVirtualServer)),
                },
            },
        }
    }
}

/// Whether a packet of `f` travelling `dir` may have arrived on `link` as
/// far as the host link goes: the appliance's own stack's side of an
/// exception-path connection only from the host link (a `Local`
/// connection's answers, a `LocalOut` connection's packets out), and the
/// other side, and every other connection, never from it. A `LocalOut`
/// connection's answers come from the link its destination is routed to.
#[inline]
pub(super) fn local_link_ok(snap: &Snapshot, f: Option<&crate::conntrack::Flow>, dir: Dir, link: u16) -> bool {
    let Some(f) = f else { return true };
    let from_host = snap.host_link() == Some(link);
    match (f.mode, dir) {
        (Forwarding::Local, Dir::Reply) | (Forwarding::LocalOut, Dir::Original) => from_host,
        (Forwarding::LocalOut, Dir::Reply) => !from_host && snap.route(f.vip).is_some_and(|r| r.link == link),
        _ => !from_host,
    }
}

/// Whether a reply-direction packet of `f` may have come from its server:
/// it arrived on the link the server is reached on (review S9). Direct
/// server return is left alone (the server answers the client itself), as
/// is an entry whose server slot is gone.
#[inline]
fn reply_link_ok(snap: &Snapshot, f: Option<&crate::conntrack::Flow>, link: u16) -> bool {
    let Some(f) = f else { return true };
    if f.mode.is_dsr() {
        return true;
    }
    snap.servers.get(f.server_slot()).is_none_or(|s| s.tx_port == link)
}

/// Does a packet to `dst:dport/proto` end in the appliance's own stack
/// (a `Local` service, or the stack's source address)?
fn ends_in_stack(snap: &Snapshot, dst: u32, dport: u16, proto: u8) -> bool {
    snap.is_host_source(dst) || snap.find_service(dst, dport, proto).and_then(|i| snap.services.get(usize::from(i))).is_some_and(|v| v.forwarding == Forwarding::Local)
}
