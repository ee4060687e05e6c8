//! The worker pipeline: rx burst -> parse -> ownership -> flow lookup ->
//! schedule on miss -> rewrite -> buffered tx; expiry every poll.
//!
//! One `Worker` runs per worker lcore and owns its connection-table shard,
//! scheduler cursors, full-NAT ports and counters. Packet logic knows no
//! I/O: it gets frames through `PacketIo` and the time as an argument. The
//! loop around `poll` (stop flag, idle back-off) belongs to the caller.

use crate::conntrack::{Dir, EntryFlags, FlowId, FlowInit, FlowKey, FlowState, FlowTable, InsertError, Timeouts};
use crate::ctl::dump;
use crate::forward::{self as nat, LocalPorts};
use crate::io::{Burst, Packet, PacketIo};
use crate::lb::{self, PersistTable, Scheduler};
use crate::state::counters::{DropReason, WorkerCounters};
use crate::state::neighbor::Neighbors;
use crate::state::rcu::Reader;
use crate::state::snapshot::{Forwarding, Snapshot};
use crate::wire::checksum;
use crate::wire::ethernet::{parse_l2, EtherType, EthernetAddress, EthernetFrame};
use crate::wire::icmp::{self, IcmpPacket};
use crate::wire::ipv4::{protocol, Ipv4Packet};
use crate::wire::tcp::{flags as tcpf, TcpPacket};
use crate::wire::udp::UdpPacket;
use crate::wire::WireError;
use std::net::Ipv4Addr;
use std::sync::Arc;


/// Expired entries freed per poll at most, so one poll never stalls.
const EXPIRE_BUDGET: u32 = 256;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub id: u16,
    pub workers: u16,
    /// Connection-table entries, preallocated.
    pub flows: u32,
    pub timeouts: Timeouts,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self { id: 0, workers: 1, flows: 1024, timeouts: Timeouts::default() }
    }
}

/// What the pipeline decided for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send out of `port`.
    Forward(u16),
    /// Hand to the control lcore (ARP, ICMP to self, probe replies).
    Punt,
    /// Hand to the worker owning the connection.
    Handoff(u16),
    Drop(DropReason),
    /// A new connection no server can take (`no-server`), to be answered
    /// with a TCP RST or an ICMP port unreachable built in place. Only
    /// `process` returns it: `process_packet`, which can resize the
    /// packet, builds the answer and returns `Forward` to the port the
    /// packet came in on (or `Drop(NoServer)` when it cannot).
    Reject(Reject),
}

/// Where the refused packet's IPv4 header is, for `nat::build_refusal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    /// `protocol::TCP` or `protocol::UDP`.
    pub proto: u8,
    /// Offset of the IPv4 header in the frame (14, or 18 behind a VLAN tag).
    pub l3: u8,
    /// IPv4 header length.
    pub hl: u8,
}

pub struct Worker {
    pub config: WorkerConfig,
    counters: Arc<WorkerCounters>,
    table: FlowTable,
    sched: Scheduler,
    local_ports: LocalPorts,
    snapshot: Reader<Snapshot>,
    neighbors: Arc<Neighbors>,
    /// Global active connections per server, for least-connections.
    loads: Option<Arc<lb::Loads>>,
    /// Persistence records of the clients this worker owns.
    persist: PersistTable,
    /// Current time in flow-table ticks, set by `poll`.
    now: u32,
    /// The console's connection dumps (`dump`), when asked for.
    dump: Option<dump::DumpServer>,
}

/// What a parsed TCP/UDP packet looks like, for the flow path.
#[derive(Clone, Copy)]
struct L4Info {
    l3: usize,
    hl: usize,
    proto: u8,
    src: u32,
    dst: u32,
    sport: u16,
    dport: u16,
    tcp_flags: u8,
    ip_len: usize,
}

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
fn quick_key(frame: &[u8]) -> Option<FlowKey> {
    let l3 = match u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]) {
        0x0800 => 14,
        0x8100 if u16::from_be_bytes([*frame.get(16)?, *frame.get(17)?]) == 0x0800 => 18,
        _ => return None,
    };
    let ip = frame.get(l3..l3 + 20)?;
    let proto = ip[9];
    if proto != protocol::TCP && proto != protocol::UDP {
        return None;
    }
    let hl = ((ip[0] & 0x0f) as usize) * 4;
    let l4 = frame.get(l3 + hl..l3 + hl + 4)?;
    Some(FlowKey {
        src_ip: u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]),
        dst_ip: u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]),
        src_port: u16::from_be_bytes([l4[0], l4[1]]),
        dst_port: u16::from_be_bytes([l4[2], l4[3]]),
        proto,
    })
}

/// How to refuse a new connection no server can take: answer it
/// (`Verdict::Reject`) unless no answer may be sent — to a source that is
/// not one host (`nat::is_unicast_host`), about a frame sent to or from a
/// group MAC address (RFC 1122 §3.2.2: no ICMP error about a link-layer
/// broadcast; RFC 1122 §4.2.3.10: a SYN to a broadcast or multicast address
/// is discarded) — or no port to answer from: then a plain drop.
#[cold]
fn refusal(snap: &Snapshot, frame: &[u8], p: &L4Info, in_port: u16) -> Verdict {
    let eth = EthernetFrame::new_unchecked(frame);
    let answerable = nat::is_unicast_host(p.src)
        && !eth.dst_addr().is_multicast()
        && !eth.src_addr().is_multicast()
        && snap.port(in_port).is_some();
    match (u8::try_from(p.l3), u8::try_from(p.hl)) {
        (Ok(l3), Ok(hl)) if answerable => Verdict::Reject(Reject { proto: p.proto, l3, hl }),
        _ => Verdict::Drop(DropReason::NoServer),
    }
}

/// Which worker owns the connection of a packet: a key both directions
/// share (design.md): the client's address and port, or for replies to a
/// full-NAT local address the local port, partitioned per worker.
#[inline]
pub fn owner(snap: &Snapshot, workers: u16, src: u32, sport: u16, dst: u32, dport: u16, proto: u8) -> u16 {
    if workers <= 1 {
        return 0;
    }
    // Probe replies (ports from `nat::PROBE_PORT_MIN`) are the control
    // plane's, not a full-NAT connection's: hashed like other traffic, and
    // punted by whichever worker gets them.
    if snap.is_local(dst) && (nat::LOCAL_PORT_MIN..=nat::LOCAL_PORT_MAX).contains(&dport) {
        return dport % workers;
    }
    // With `source-ip` persistence every connection of a client (under the
    // netmask) must meet its record on one worker: the client address
    // alone is the key (`persist` has the trade-off).
    let (ip, port) = match snap.owner_service(dst, dport, proto) {
        Some(vs) => match snap.services.get(vs as usize).and_then(|v| v.persistence).and_then(|p| p.owner_mask()) {
            Some(mask) => (src & mask, 0),
            None => (src, sport),
        },
        None => match snap.reply_owner_mask(src, sport, proto) {
            Some(mask) => (dst & mask, 0),
            None => (dst, dport),
        },
    };
    // splitmix64's finaliser: every input bit reaches the result (Linux
    // hands out even ephemeral ports to connect(), so a weak mix would send
    // every connection of a client to one worker).
    let mut x = (ip as u64) << 16 | port as u64;
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    (x % workers as u64) as u16
}

impl Worker {
    pub fn new(config: WorkerConfig, snapshot: Reader<Snapshot>, neighbors: Arc<Neighbors>) -> Self {
        let table = FlowTable::new(config.flows, config.timeouts);
        let local_ports = LocalPorts::new(config.id, config.workers);
        let mut w = Self {
            config,
            counters: Arc::new(WorkerCounters::default()),
            table,
            sched: Scheduler::default(),
            local_ports,
            snapshot,
            neighbors,
            loads: None,
            persist: PersistTable::default(),
            now: 0,
            dump: None,
        };
        w.adopt_snapshot();
        w
    }

    /// Gives the worker the control plane's per-server connection sums.
    pub fn with_loads(mut self, loads: Arc<lb::Loads>) -> Self {
        self.loads = Some(loads);
        self
    }

    /// Lets the control plane ask for dumps of the connection table.
    pub fn with_dump(mut self, cell: Arc<dump::FlowDump>) -> Self {
        self.dump = Some(dump::DumpServer::new(cell));
        self
    }

    /// The counters, for the control plane to read.
    pub fn counters(&self) -> Arc<WorkerCounters> {
        Arc::clone(&self.counters)
    }

    pub fn table(&self) -> &FlowTable {
        &self.table
    }

    /// Slow path: size per-snapshot state after a new snapshot.
    fn adopt_snapshot(&mut self) {
        let snap = self.snapshot.get();
        self.sched.resize(snap.services.len());
        self.local_ports.ensure(&snap.local_addrs);
        if self.persist.capacity() == 0 && snap.services.iter().any(|v| v.persistence.is_some()) {
            self.persist = PersistTable::new(snap.persist_records.max(1));
        }
    }

    /// Live persistence records (slow: walks the table).
    pub fn persist_records(&self) -> usize {
        self.persist.len(self.now)
    }

    /// One pass: packets handed over by other workers, then every RX queue;
    /// then flush, then expire up to a budget of idle connections. `now` is
    /// in flow-table ticks (`flow::TICK_MS`). Returns packets received.
    pub fn poll<I: PacketIo>(&mut self, io: &mut I, now: u32) -> usize {
        self.now = now;
        if self.snapshot.refresh() {
            self.adopt_snapshot();
        }
        let mut burst = Burst::new();
        let mut received = 0;
        io.rx_handoff(&mut burst);
        received += burst.len();
        for pkt in burst.drain() {
            self.handle(io, pkt, true);
        }
        for rxq in 0..io.rx_queues() {
            io.rx_burst(rxq, &mut burst);
            received += burst.len();
            self.prefetch(&burst);
            for pkt in burst.drain() {
                let len = pkt.data().len() as u64;
                self.counters.rx_packets.inc();
                self.counters.rx_bytes.add(len);
                self.handle(io, pkt, false);
            }
        }
        let tx = io.flush();
        self.counters.tx_packets.add(tx.packets);
        self.counters.tx_bytes.add(tx.bytes);
        self.counters.count_drops(DropReason::TxQueueFull, tx.dropped);
        self.expire(now);
        if let Some(d) = self.dump.as_mut() {
            d.serve(&self.table, now);
        }
        received
    }

    fn handle<I: PacketIo>(&mut self, io: &mut I, mut pkt: I::Pkt, handed: bool) {
        match self.process_packet(&mut pkt, handed) {
            Verdict::Forward(out) => io.tx(out, pkt),
            Verdict::Punt => match io.punt(pkt) {
                Ok(()) => self.counters.punted.inc(),
                Err(_dropped) => self.counters.count_drop(DropReason::PuntRingFull),
            },
            Verdict::Handoff(owner) => match io.handoff(owner, pkt) {
                Ok(()) => self.counters.handed_off.inc(),
                Err(_dropped) => self.counters.count_drop(DropReason::HandoffRingFull),
            },
            Verdict::Drop(reason) => self.counters.count_drop(reason),
            // `process_packet` never returns it.
            Verdict::Reject(_) => self.counters.count_drop(DropReason::NoServer),
        }
    }

    /// `process` on a packet the caller owns, which it may resize: the
    /// refusals `process` asks for (`Verdict::Reject`) are built in place
    /// and come back as `Forward` to the port the packet arrived on. The
    /// refused packet is counted as a `no-server` drop and its answer as
    /// `rejected`; a refusal that cannot be built is `Drop(NoServer)`.
    #[inline]
    pub fn process_packet<P: Packet>(&mut self, pkt: &mut P, handed: bool) -> Verdict {
        let port = pkt.port();
        match self.process(pkt.data_mut(), port, handed) {
            Verdict::Reject(r) => self.refuse(pkt, port, r),
            v => v,
        }
    }

    /// Turns a refused first packet into its answer (`nat::build_refusal`),
    /// resizing it, and sends it back out of `port`.
    #[cold]
    fn refuse<P: Packet>(&mut self, pkt: &mut P, port: u16, r: Reject) -> Verdict {
        let Some(mac) = self.snapshot.get().port(port).map(|p| p.mac) else { return Verdict::Drop(DropReason::NoServer) };
        let (l3, hl) = (r.l3 as usize, r.hl as usize);
        let need = nat::refusal_len(r.proto, l3, hl);
        if pkt.data().len() < need && !pkt.set_len(need) {
            return Verdict::Drop(DropReason::NoServer);
        }
        let Some(len) = nat::build_refusal(pkt.data_mut(), l3, hl, r.proto, mac) else { return Verdict::Drop(DropReason::NoServer) };
        if pkt.data().len() != len && !pkt.set_len(len) {
            return Verdict::Drop(DropReason::NoServer);
        }
        self.counters.count_drop(DropReason::NoServer);
        self.counters.rejected.inc();
        Verdict::Forward(port)
    }

    /// Batched lookups (DPDK l3fwd, katran): before processing a burst,
    /// hash every packet's key and prefetch its bucket, then the first entry
    /// of each chain, so the cache misses of the burst overlap.
    fn prefetch<P: Packet>(&self, burst: &Burst<P>) {
        let mut hashes = [0u32; crate::io::BURST_SIZE];
        let mut n = 0;
        for pkt in burst.iter() {
            if let Some(key) = quick_key(pkt.data()) {
                let h = FlowTable::hash(&key);
                self.table.prefetch(h);
                if let Some(slot) = hashes.get_mut(n) {
                    *slot = h;
                    n += 1;
                }
            }
        }
        for h in &hashes[..n] {
            self.table.prefetch_entry(*h);
        }
    }

    /// Removes idle connections whose time has come.
    fn expire(&mut self, now: u32) {
        let counters = &self.counters;
        let local_ports = &mut self.local_ports;
        let persist = &mut self.persist;
        let snap: &Snapshot = self.snapshot.get();
        self.table.expire(now, EXPIRE_BUDGET, |f| {
            if f.flags.contains(EntryFlags::PERSIST) {
                release(persist, snap, f.vs, f.client_ip, f.client_port, f.server_ip, now);
            }
            counters.flows.sub(1);
            if let Some(c) = counters.services.get(f.vs as usize) {
                c.conns_active.sub(1);
            }
            if let Some(c) = counters.servers.get(f.server as usize) {
                c.conns_active.sub(1);
            }
            if f.mode == Forwarding::FullNat {
                local_ports.free(f.local_ip, f.local_port);
            }
        });
    }

    /// Decides the fate of one frame that arrived on `port`, rewriting it in
    /// place when forwarding. `handed`: another worker already decided this
    /// worker owns it. A new connection no server can take comes back as
    /// `Verdict::Reject`, which only `process_packet` can carry out.
    pub fn process(&mut self, frame: &mut [u8], port: u16, handed: bool) -> Verdict {
        let l2 = match parse_l2(frame) {
            Ok(l2) => l2,
            Err(_) => return Verdict::Drop(DropReason::RuntFrame),
        };
        match l2.ethertype {
            EtherType::Arp => return Verdict::Punt,
            EtherType::Ipv4 => {}
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
        // Fragments are not reassembled (README, "Fragments").
        if ip.is_fragment() {
            return Verdict::Drop(DropReason::Fragment);
        }
        let snap: &Snapshot = self.snapshot.get();
        let src = u32::from(ip.src_addr());
        let dst = u32::from(ip.dst_addr());
        let hl = ip.header_len();
        let ip_len = ip.total_len() as usize;
        let ttl = ip.ttl();
        let proto = ip.protocol();
        match proto {
            protocol::TCP | protocol::UDP => {}
            protocol::ICMP => return self.process_icmp(frame, l3, hl, handed),
            _ if snap.is_self(dst) => return Verdict::Punt,
            _ => return Verdict::Drop(if snap.is_vip(dst) { DropReason::UnhandledProtocol } else { DropReason::NoVirtualServer }),
        }
        let l4 = ip.payload();
        let (sport, dport, tcp_flags) = if proto == protocol::TCP {
            match TcpPacket::new_checked(l4) {
                Ok(t) => (t.src_port(), t.dst_port(), t.flags()),
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
            let o = owner(snap, self.config.workers, src, sport, dst, dport, proto);
            if o != self.config.id {
                return Verdict::Handoff(o);
            }
        }
        // Forwarding would take TTL to 0 (RFC 1812 §5.3.1): refuse before
        // any state is created.
        if ttl <= 1 && !snap.is_self(dst) {
            return Verdict::Drop(DropReason::TtlExceeded);
        }
        let info = L4Info { l3, hl, proto, src, dst, sport, dport, tcp_flags, ip_len };
        let key = FlowKey { src_ip: src, dst_ip: dst, src_port: sport, dst_port: dport, proto };
        let hash = FlowTable::hash(&key);
        let mut found = self.table.lookup(&key, hash);
        // A new SYN on an entry that is closing (TIME_WAIT, CLOSE) is a new
        // connection reusing the client port (RFC 9293 §3.6.1): reschedule
        // it, as IPVS does with conn_reuse_mode=1.
        if let Some((id, Dir::Original)) = found {
            let closing = self.table.get(id).is_some_and(|f| matches!(f.state, FlowState::TimeWait | FlowState::Close));
            if closing && tcp_flags & (tcpf::SYN | tcpf::ACK) == tcpf::SYN {
                self.remove(id);
                found = None;
            }
        }
        match found {
            Some((id, Dir::Original)) => self.forward_original(snap, frame, &info, id),
            Some((id, Dir::Reply)) => self.forward_reply(snap, frame, &info, id),
            None => match snap.find_service(dst, dport, proto) {
                Some(vs) => self.new_connection(snap, frame, &info, vs, port),
                None if snap.is_self(dst) || snap.is_local(dst) => Verdict::Punt,
                None => Verdict::Drop(DropReason::NoVirtualServer),
            },
        }
    }

    /// A first packet to a virtual server: schedule, create the entry,
    /// forward.
    fn new_connection(&mut self, snap: &Snapshot, frame: &mut [u8], p: &L4Info, vs_index: u16, in_port: u16) -> Verdict {
        // Only a SYN opens a TCP connection (RFC 9293 §3.5).
        if p.proto == protocol::TCP && p.tcp_flags & (tcpf::SYN | tcpf::ACK | tcpf::RST) != tcpf::SYN {
            return Verdict::Drop(DropReason::TcpNoFlow);
        }
        let Some(vs) = snap.services.get(vs_index as usize) else { return Verdict::Drop(DropReason::NoVirtualServer) };
        // A garbage first packet must not take a table entry (nor a turn of
        // the scheduler).
        let l4 = &frame[p.l3 + p.hl..p.l3 + p.ip_len];
        let (s, d) = (Ipv4Addr::from(p.src), Ipv4Addr::from(p.dst));
        let ok = if p.proto == protocol::TCP {
            TcpPacket::new_unchecked(l4).verify_checksum(s, d)
        } else {
            UdpPacket::new_unchecked(l4).verify_checksum(s, d)
        };
        if !ok {
            return Verdict::Drop(DropReason::L4BadChecksum);
        }
        let (server_index, persisted) = match vs.persistence {
            Some(pers) => self.persistent_pick(snap, vs_index, p, &pers),
            None => {
                let flow = lb::Flow4 { src: p.src, dst: p.dst, sport: p.sport, dport: p.dport, proto: p.proto };
                (self.sched.pick_for(vs_index as usize, vs, &snap.servers, &flow, self.loads.as_deref()), false)
            }
        };
        let Some(server_index) = server_index else {
            return refusal(snap, frame, p, in_port);
        };
        let Some(server) = snap.servers.get(server_index as usize) else { return Verdict::Drop(DropReason::NoServer) };
        let (local_ip, local_port) = match vs.forwarding {
            Forwarding::Nat => (p.src, p.sport),
            Forwarding::FullNat => match self.local_ports.alloc(&vs.local_addrs) {
                Some(l) => l,
                None => {
                    if let (true, Some(pers)) = (persisted, vs.persistence) {
                        self.persist.release(pers.key(p.src, p.sport), server.ip, self.now, pers.timeout);
                    }
                    return Verdict::Drop(DropReason::NoLocalPort);
                }
            },
        };
        let reply_key = FlowKey { src_ip: server.ip, dst_ip: local_ip, src_port: server.port, dst_port: local_port, proto: p.proto };
        self.table.prefetch_insert(FlowTable::hash(&reply_key));
        let client_mac = EthernetFrame::new_unchecked(&*frame).src_addr();
        let init = FlowInit {
            proto: p.proto,
            client_ip: p.src,
            client_port: p.sport,
            vip: p.dst,
            vport: p.dport,
            server_ip: server.ip,
            server_port: server.port,
            local_ip,
            local_port,
            vs: vs_index,
            server: server_index,
            client_port_id: in_port as u8,
            client_mac: client_mac.0,
            flags: if persisted { EntryFlags::PERSIST } else { EntryFlags::empty() },
            mode: vs.forwarding,
        };
        // `process` just missed the original key in this table.
        let mut inserted = self.table.insert_after_miss(&init, self.now);
        if inserted == Err(InsertError::Exists) && self.reclaim_closing(&reply_key) {
            inserted = self.table.insert_after_miss(&init, self.now);
        }
        let id = match inserted {
            Ok(id) => id,
            Err(e) => {
                if vs.forwarding == Forwarding::FullNat {
                    self.local_ports.free(local_ip, local_port);
                }
                if let (true, Some(pers)) = (persisted, vs.persistence) {
                    self.persist.release(pers.key(p.src, p.sport), server.ip, self.now, pers.timeout);
                }
                return Verdict::Drop(match e {
                    InsertError::Full => DropReason::FlowTableFull,
                    InsertError::Exists => DropReason::FlowExists,
                });
            }
        };
        let c = &self.counters;
        c.flows.inc();
        if let Some(v) = c.services.get(vs_index as usize) {
            v.conns_new.inc();
            v.conns_active.inc();
        }
        if let Some(s) = c.servers.get(server_index as usize) {
            s.conns_new.inc();
            s.conns_active.inc();
        }
        self.forward_original(snap, frame, p, id)
    }

    /// Picks a server for a new connection of a persistent service: the
    /// client's record, when it names a server of this service that can
    /// take the connection (and, unless `keep_on_down`, has not gone down
    /// since), else the scheduler's choice, recorded. Returns the server
    /// and whether the connection references a record.
    #[inline]
    fn persistent_pick(&mut self, snap: &Snapshot, vs_index: u16, p: &L4Info, pers: &lb::Persistence) -> (Option<u16>, bool) {
        let Some(vs) = snap.services.get(vs_index as usize) else { return (None, false) };
        let key = pers.key(p.src, p.sport);
        let loads = self.loads.as_deref();
        let mut keep_record = false;
        if let Some(rec) = self.persist.get(key, self.now) {
            let member = vs.members.iter().copied().find(|g| snap.servers.get(*g as usize).is_some_and(|s| s.ip == rec.server_ip));
            let stale = member.and_then(|g| snap.servers.get(g as usize)).is_some_and(|s| s.epoch != rec.epoch);
            match member {
                Some(g) if !stale || pers.keep_on_down => {
                    if lb::available(&snap.servers, g, loads) || sticky(&snap.servers, g, loads) {
                        self.persist.attach(key, self.now, pers.timeout);
                        self.counters.persisted.inc();
                        return (Some(g), true);
                    }
                    // Down or full: elsewhere this time; the record waits
                    // for its server when it is kept, else it is replaced.
                    keep_record = pers.keep_on_down && !snap.servers.get(g as usize).is_some_and(|s| s.enabled);
                }
                Some(_) => self.persist.remove(key),
                // Made by another service of the group whose pool has a
                // node this one lacks: leave it to that service. A node no
                // service of the group has any more (removed): replace it.
                None => keep_record = group_has(snap, pers.group, rec.server_ip),
            }
        }
        let flow = lb::Flow4 { src: p.src, dst: p.dst, sport: p.sport, dport: p.dport, proto: p.proto };
        let pick = self.sched.pick_for(vs_index as usize, vs, &snap.servers, &flow, loads);
        let Some(server) = pick.and_then(|g| snap.servers.get(g as usize)) else { return (pick, false) };
        if keep_record {
            return (pick, false);
        }
        if !self.persist.insert(key, server.ip, server.epoch, self.now, pers.timeout) {
            self.counters.persist_evicted.inc();
        }
        self.counters.persist_records.inc();
        (pick, true)
    }

    /// With NAT, a client's connections to two virtual ports that lead to
    /// one server:port look the same from the server's side, so a new one
    /// can find its reply key held by an older one that is closing (the
    /// client reused its port, RFC 9293 §3.6.1): the closing entry goes, as
    /// a SYN reusing a TIME_WAIT entry's own key does. An open one stays,
    /// and the new connection is refused (`flow-exists`). Cold path.
    #[cold]
    fn reclaim_closing(&mut self, reply_key: &FlowKey) -> bool {
        let Some((id, _)) = self.table.lookup(reply_key, FlowTable::hash(reply_key)) else { return false };
        if !self.table.get(id).is_some_and(|f| matches!(f.state, FlowState::TimeWait | FlowState::Close)) {
            return false;
        }
        self.remove(id);
        true
    }

    /// Client to server: DNAT (and SNAT for full-NAT), L2 to the server's
    /// next hop.
    fn forward_original(&mut self, snap: &Snapshot, frame: &mut [u8], p: &L4Info, id: FlowId) -> Verdict {
        let state = self.table.on_packet(id, Dir::Original, p.tcp_flags, self.now);
        let Some(f) = self.table.get(id) else { return Verdict::Drop(DropReason::TcpNoFlow) };
        let (vs, server_index, server_ip, server_port, local_ip, local_port) = (f.vs, f.server, f.server_ip, f.server_port, f.local_ip, f.local_port);
        let full_nat = f.mode == Forwarding::FullNat;
        let Some(server) = snap.servers.get(server_index as usize) else { return Verdict::Drop(DropReason::NoServer) };
        if server.reset {
            self.remove(id);
            return Verdict::Drop(DropReason::ServerDown);
        }
        let Some(mac) = self.neighbors.get(server.nexthop) else { return Verdict::Drop(DropReason::NeighborUnresolved) };
        let Some(out) = snap.port(server.tx_port) else { return Verdict::Drop(DropReason::NoServer) };
        let src = full_nat.then_some((local_ip, local_port));
        nat::rewrite(&mut frame[p.l3..p.l3 + p.ip_len], p.hl, p.proto, src, Some((server_ip, server_port)), true);
        let mut eth = EthernetFrame::new_unchecked(&mut *frame);
        eth.set_dst_addr(mac);
        eth.set_src_addr(out.mac);
        let len = p.ip_len as u64;
        if let Some(c) = self.counters.services.get(vs as usize) {
            c.in_pkts.inc();
            c.in_bytes.add(len);
        }
        if let Some(c) = self.counters.servers.get(server_index as usize) {
            c.in_pkts.inc();
            c.in_bytes.add(len);
        }
        if state == FlowState::Close {
            self.remove(id);
        }
        Verdict::Forward(server.tx_port)
    }

    /// Server to client: SNAT back to the VIP (and DNAT to the client for
    /// full-NAT), L2 back to the MAC the client's packets came from.
    fn forward_reply(&mut self, snap: &Snapshot, frame: &mut [u8], p: &L4Info, id: FlowId) -> Verdict {
        let state = self.table.on_packet(id, Dir::Reply, p.tcp_flags, self.now);
        let Some(f) = self.table.get(id) else { return Verdict::Drop(DropReason::TcpNoFlow) };
        let full_nat = f.mode == Forwarding::FullNat;
        let (vs, server_index, out_port) = (f.vs, f.server, f.client_port_id as u16);
        let (vip, vport, client_ip, client_port, client_mac) = (f.vip, f.vport, f.client_ip, f.client_port, f.client_mac);
        if snap.servers.get(server_index as usize).is_some_and(|s| s.reset) {
            self.remove(id);
            return Verdict::Drop(DropReason::ServerDown);
        }
        let Some(out) = snap.port(out_port) else { return Verdict::Drop(DropReason::NoVirtualServer) };
        let dst = full_nat.then_some((client_ip, client_port));
        nat::rewrite(&mut frame[p.l3..p.l3 + p.ip_len], p.hl, p.proto, Some((vip, vport)), dst, true);
        let mut eth = EthernetFrame::new_unchecked(&mut *frame);
        eth.set_dst_addr(EthernetAddress(client_mac));
        eth.set_src_addr(out.mac);
        let len = p.ip_len as u64;
        if let Some(c) = self.counters.services.get(vs as usize) {
            c.out_pkts.inc();
            c.out_bytes.add(len);
        }
        if let Some(c) = self.counters.servers.get(server_index as usize) {
            c.out_pkts.inc();
            c.out_bytes.add(len);
        }
        if state == FlowState::Close {
            self.remove(id);
        }
        Verdict::Forward(out_port)
    }

    /// Removes a connection at once (RST), with its counters and port.
    fn remove(&mut self, id: FlowId) {
        if let Some(f) = self.table.remove(id) {
            if f.flags.contains(EntryFlags::PERSIST) {
                release(&mut self.persist, self.snapshot.get(), f.vs, f.client_ip, f.client_port, f.server_ip, self.now);
            }
            let c = &self.counters;
            c.flows.sub(1);
            if let Some(v) = c.services.get(f.vs as usize) {
                v.conns_active.sub(1);
            }
            if let Some(s) = c.servers.get(f.server as usize) {
                s.conns_active.sub(1);
            }
            if f.mode == Forwarding::FullNat {
                self.local_ports.free(f.local_ip, f.local_port);
            }
        }
    }

    /// ICMP: echo to the box is punted (the control plane answers); errors
    /// about a tracked connection are translated, outer and embedded
    /// headers, and sent to the other side (RFC 792; RFC 5508 §4 for what
    /// a NAT does with them).
    fn process_icmp(&mut self, frame: &mut [u8], l3: usize, hl: usize, handed: bool) -> Verdict {
        let snap: &Snapshot = self.snapshot.get();
        let (dst, ttl, ip_len) = {
            let ip = Ipv4Packet::new_unchecked(&frame[l3..]);
            (u32::from(ip.dst_addr()), ip.ttl(), ip.total_len() as usize)
        };
        let l4 = l3 + hl;
        let Ok(msg) = IcmpPacket::new_checked(&frame[l4..l3 + ip_len]) else { return Verdict::Drop(DropReason::IcmpTruncated) };
        let to_box = snap.is_self(dst) || snap.is_vip(dst);
        if !msg.is_error() {
            return if to_box && (msg.msg_type() == icmp::kind::ECHO_REQUEST || snap.is_self(dst)) {
                Verdict::Punt
            } else {
                Verdict::Drop(if to_box { DropReason::IcmpUnhandled } else { DropReason::NoVirtualServer })
            };
        }
        // The embedded datagram is one the box sent; its reverse is a key.
        let (isrc, idst, iproto, ihl, isport, idport) = {
            let Ok(inner) = msg.embedded_ipv4() else { return Verdict::Drop(DropReason::IcmpBadEmbedded) };
            let ihl = inner.header_len();
            let ip4 = inner.payload();
            if ip4.len() < 4 {
                return Verdict::Drop(DropReason::IcmpBadEmbedded);
            }
            let sp = u16::from_be_bytes([ip4[0], ip4[1]]);
            let dp = u16::from_be_bytes([ip4[2], ip4[3]]);
            (u32::from(inner.src_addr()), u32::from(inner.dst_addr()), inner.protocol(), ihl, sp, dp)
        };
        if iproto != protocol::TCP && iproto != protocol::UDP {
            return if snap.is_self(dst) { Verdict::Punt } else { Verdict::Drop(DropReason::IcmpNoFlow) };
        }
        if !handed && self.config.workers > 1 {
            let o = owner(snap, self.config.workers, idst, idport, isrc, isport, iproto);
            if o != self.config.id {
                return Verdict::Handoff(o);
            }
        }
        let key = FlowKey { src_ip: idst, dst_ip: isrc, src_port: idport, dst_port: isport, proto: iproto };
        let Some((id, dir)) = self.table.lookup(&key, FlowTable::hash(&key)) else {
            return if snap.is_self(dst) { Verdict::Punt } else { Verdict::Drop(DropReason::IcmpNoFlow) };
        };
        let Some(f) = self.table.get(id) else { return Verdict::Drop(DropReason::IcmpNoFlow) };
        let f = *f;
        if ttl <= 1 {
            return Verdict::Drop(DropReason::TtlExceeded);
        }
        let inner_at = l4 + icmp::HEADER_LEN;
        let (out_port, dst_mac, outer_src, outer_dst, in_src, in_dst) = match dir {
            // About a packet sent to the server: goes to the client, as if
            // the VIP had sent it back.
            Dir::Reply => (
                f.client_port_id as u16,
                EthernetAddress(f.client_mac),
                Some(f.vip),
                (f.mode == Forwarding::FullNat).then_some(f.client_ip),
                (f.client_ip, f.client_port),
                (f.vip, f.vport),
            ),
            // About a packet sent to the client: goes to the server.
            Dir::Original => {
                let Some(server) = snap.servers.get(f.server as usize) else { return Verdict::Drop(DropReason::NoServer) };
                let Some(mac) = self.neighbors.get(server.nexthop) else { return Verdict::Drop(DropReason::NeighborUnresolved) };
                let full_nat = f.mode == Forwarding::FullNat;
                (server.tx_port, mac, full_nat.then_some(f.local_ip), Some(f.server_ip), (f.server_ip, f.server_port), (f.local_ip, f.local_port))
            }
        };
        let Some(out) = snap.port(out_port) else { return Verdict::Drop(DropReason::NoVirtualServer) };
        // Embedded header: addresses, its checksum, ports.
        {
            let inner = &mut frame[inner_at..l3 + ip_len];
            nat::rewrite_addrs(&mut inner[..ihl], Some(in_src.0), Some(in_dst.0), false);
            nat::rewrite_ports(&mut inner[ihl..], Some(in_src.1), Some(in_dst.1));
        }
        // The ICMP checksum covers the whole message: recompute (small).
        {
            let m = &mut frame[l4..l3 + ip_len];
            m[2] = 0;
            m[3] = 0;
            let c = checksum::checksum(m);
            m[2..4].copy_from_slice(&c.to_be_bytes());
        }
        nat::rewrite_addrs(&mut frame[l3..l3 + hl], outer_src, outer_dst, true);
        let mut eth = EthernetFrame::new_unchecked(&mut *frame);
        eth.set_dst_addr(dst_mac);
        eth.set_src_addr(out.mac);
        Verdict::Forward(out_port)
    }
}

/// Does a live service of persistence group `group` list a server at
/// `ip`? (Rare path: a record naming a node the current service lacks.)
#[cold]
fn group_has(snap: &Snapshot, group: u16, ip: u32) -> bool {
    snap.services.iter().filter(|v| !v.retired && v.persistence.is_some_and(|p| p.group == group)).any(|v| {
        v.members.iter().any(|g| snap.servers.get(*g as usize).is_some_and(|s| s.ip == ip))
    })
}

/// A drained server takes the clients its records name, below its
/// connection limit.
#[inline]
fn sticky(servers: &[lb::RealServer], g: u16, loads: Option<&lb::Loads>) -> bool {
    servers.get(g as usize).is_some_and(|s| {
        s.sticky_only && (s.max_connections == 0 || loads.is_none_or(|l| l.get(g as usize) < s.max_connections as u64))
    })
}

/// A connection placed by a persistence record ended: the record loses a
/// reference (the service's persistence as the current snapshot has it).
#[inline]
fn release(persist: &mut PersistTable, snap: &Snapshot, vs: u16, client_ip: u32, client_port: u16, server_ip: u32, now: u32) {
    if let Some(p) = snap.services.get(vs as usize).and_then(|v| v.persistence) {
        persist.release(p.key(client_ip, client_port), server_ip, now, p.timeout);
    }
}

#[cfg(test)]
mod tests;
