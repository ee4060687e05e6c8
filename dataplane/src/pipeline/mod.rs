//! The worker pipeline: rx burst -> parse -> ownership -> flow lookup ->
//! schedule on miss -> rewrite -> buffered tx; expiry every poll.
//!
//! One `Worker` runs per worker lcore and owns its connection-table shard,
//! scheduler cursors, full-NAT ports and counters. Packet logic knows no
//! I/O: it gets frames through `PacketIo` and the time as an argument. The
//! loop around `poll` (stop flag, idle back-off) belongs to the caller.

use crate::conntrack::{EntryFlags, Flow, FlowId, FlowState, FlowTable, Timeouts};
use crate::ctl::dump;
use crate::ctl::events::{RecordConsumer, RecordProducer, SyncControl};
use crate::forward::{self as nat, LocalPorts};
use crate::io::{Burst, Packet, PacketIo};
use crate::lb::{self, PersistTable, Scheduler};
use crate::state::counters::{DropReason, PuntClass, WorkerCounters};
use crate::state::neighbor::Neighbors;
use crate::state::rcu::Reader;
use crate::state::snapshot::{Forwarding, Snapshot};
use std::sync::Arc;

mod burst;
mod classify;
mod classify6;
mod adopt;
mod connect;
mod family;
mod forwarding;
mod icmp;
mod icmp6;
mod inplace;
mod local;
mod owner;
mod pheader;
pub mod police;
mod replicate;
mod room;
mod snat;
mod synproxy;
mod transit;
mod xlate;
pub use xlate::{Xlate, XlateError};
#[cfg(any(test, feature = "testkit"))]
pub mod fuzz;

use connect::release;
use replicate::Replication;

pub use icmp::Relay;
pub use owner::{owner, owner_of, Owners};
pub use replicate::{INSTALL_BUDGET, WALK_BUDGET};

/// Expired entries freed per poll at most, so one poll never stalls.
const EXPIRE_BUDGET: u32 = 256;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub id: u16,
    pub workers: u16,
    /// Connection-table entries, preallocated.
    pub flows: u32,
    pub timeouts: Timeouts,
    /// The key of the connection-table and persistence hashes
    /// (`crate::hash`): drawn at boot by the control plane.
    pub hash_key: u64,
    /// The SYN cookies' SipHash-2-4 key (`forward::synproxy`): 128 bits
    /// drawn per boot from /dev/urandom by the control plane, the same for
    /// every worker of the box (a cookie's ACK may reach another worker's
    /// queue first), independent of `hash_key` and of the sync key; it
    /// keys nothing else. Cookies do not validate on the HA peer.
    pub cookie_key: crate::siphash::Key,
    /// The ownership key (`owner`, `crate::rss`: the ports' RSS keys and
    /// RETA derive from it), the same for every worker: with HA sync the
    /// pair's (the peer chose a full-NAT connection's local port so that
    /// its replies, queued by `(local address, port)`, meet the client
    /// side's owner), else drawn at boot.
    pub owner_key: u64,
    /// State sync (`Worker::with_sync`): every this many ticks, push a
    /// `Refresh` of every live entry to the peer; 0: never (bulk walks
    /// only, on the control plane's request).
    pub sync_refresh: u32,
    /// Half-open TCP entries (`FlowState::is_embryonic`) the worker keeps
    /// at most: a new connection past it evicts the oldest, as it does
    /// when the table is full (`[defence] embryonic_per_worker`).
    pub embryonic_max: u32,
    /// Unreplied entries one service (snapshot slot) holds before its new
    /// ones evict its own oldest (`[defence] unreplied_per_service`).
    pub unreplied_per_service: u32,
    /// Unreplied entries one source bucket (`conntrack::SOURCE_BUCKETS`,
    /// keyed) holds before its new ones evict its own oldest
    /// (`[defence] unreplied_per_source`).
    pub unreplied_per_source: u32,
    /// Answers the worker builds (RST and port unreachable refusals,
    /// fragmentation needed) per second, and their burst (RFC 1812
    /// §4.3.2.8: a router limits the ICMP errors it sends).
    pub icmp_rate: u32,
    pub icmp_burst: u32,
    /// Packets per second of each class the worker hands the control
    /// lcore (`PuntClass as usize`; `[defence.punt]`).
    pub punt_rates: [u32; PuntClass::COUNT],
    /// `SynProxy::Auto` services are proxied while the worker holds this
    /// many half-open entries, and while cookies go out at
    /// `syn_proxy_rate` a second or more (`synproxy`).
    pub syn_proxy_threshold: u32,
    pub syn_proxy_rate: u32,
    /// IPv6 connection-table entries (160 B a slot), preallocated when a
    /// snapshot first has an IPv6 virtual server; 0: a quarter of `flows`.
    pub flows_v6: u32,
}

impl WorkerConfig {
    /// The IPv6 table's entries.
    pub fn flows_v6(&self) -> u32 {
        if self.flows_v6 == 0 { (self.flows / 4).max(1024) } else { self.flows_v6 }
    }
}

/// `[defence.punt]`'s defaults, per second per worker: ARP 2000, VRRP
/// 1000, HA 100000 (sync datagrams), Neighbor Discovery 2000, probe
/// answers 20000, other ICMP 1000, anything else 0 (dropped).
pub const DEFAULT_PUNT_RATES: [u32; PuntClass::COUNT] = [2000, 1000, 100_000, 2000, 20_000, 1000, 0];

impl Default for WorkerConfig {
    fn default() -> Self {
        Self { id: 0, workers: 1, flows: 1024, timeouts: Timeouts::default(), hash_key: 0, cookie_key: [0; 2], owner_key: 0, sync_refresh: 0, embryonic_max: u32::MAX, unreplied_per_service: u32::MAX, unreplied_per_source: u32::MAX, icmp_rate: 1000, icmp_burst: 50, punt_rates: DEFAULT_PUNT_RATES, syn_proxy_threshold: u32::MAX, syn_proxy_rate: u32::MAX, flows_v6: 0 }
    }
}

/// What the pipeline decided for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send out of link `link` (`Snapshot::ports`: its DPDK port, with its
    /// VLAN tag, set by `poll` on the way out).
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
    /// A `dsr-tunnel` packet to encapsulate (`forward::tunnel`), its
    /// Ethernet addresses already set. Only `process` returns it:
    /// `process_packet` grows the packet at the head, writes the outer
    /// headers and returns `Forward(port)` (or a `tunnel-no-headroom`
    /// drop).
    Encap(Encap),
    /// An IPv6 `dsr-tunnel` packet to encapsulate in IPv6
    /// (`forward::tunnel6`), as `Encap`.
    Encap6(Encap6),
    /// A packet of a translated connection (`forward::xlate`, RFC 7915),
    /// its addresses read from its entry by `process_packet`, which
    /// changes its header's family (growing or shrinking the buffer at
    /// the head) and returns `Forward(port)`. Only `process` returns it.
    Xlate(Xlate),
    /// An ICMPv4 fragmentation needed about a translated connection, to
    /// turn into Packet Too Big for its IPv6 client (`forward::xlate::
    /// ptb_from_frag_needed`). Only `process` returns it.
    XlateError(XlateError),
    /// A `dsr-tunnel` packet with DF set too big for the tunnel, to be
    /// answered with ICMP fragmentation needed (RFC 1191) built in place,
    /// as `Reject`. Only `process` returns it.
    TooBig(TooBig),
    /// An ICMP fragmentation needed about a tunnel packet, to relay to the
    /// client (RFC 2003 §4) built in place, as `TooBig`. Only `process`
    /// returns it.
    Relay(Relay),
    /// The SYN proxy's segment (`Shard::rebuilt`) to write over the packet
    /// and send. Only `process` returns it: `process_packet` resizes the
    /// packet, writes it and returns `Forward`.
    Rebuild,
    /// The SYN proxy's parked client segment to send in place of this
    /// packet (`synproxy::Replay`). Only `process` returns it.
    Replay(synproxy::Replay),
    /// Kept by the worker (a copy parked by the SYN proxy): the buffer is
    /// freed, nothing is counted as a drop.
    Consumed,
    /// A full-NAT client segment to send with the PROXY header before its
    /// payload (`pipeline::pheader`). Only `process` returns it:
    /// `process_packet` grows the packet at the tail, inserts the header
    /// and returns `Forward(port)` (or a `proxy-header-no-room` drop).
    Insert(pheader::Insert),
}

/// What `process_packet` needs to encapsulate a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encap {
    /// The port to send it out of.
    pub port: u16,
    /// Offset of the (inner) IPv4 header in the frame as received.
    pub l3: u8,
    /// The inner packet's IPv4 total length.
    pub ip_len: u16,
    pub outer: nat::Outer,
}

/// What `process_packet` needs to encapsulate an IPv6 packet: the outer
/// addresses are read from the snapshot there (the server's, the self
/// address of the link towards it), which keeps `Verdict` small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encap6 {
    pub port: u16,
    /// Offset of the inner IPv6 header in the frame as received.
    pub l3: u8,
    /// The inner packet's length, its 40-byte header included.
    pub ip_len: u16,
    pub kind: nat::TunnelKind,
    /// GUE: the servers' port.
    pub dport: u16,
    /// The server's slot (`Snapshot::servers`).
    pub server: u32,
    /// The flow's hash (`forward::tunnel::flow_hash6`).
    pub hash: u32,
}

/// Where the too-big packet's IP header is, and the MTU to tell its
/// sender: the tunnel's, the link's less the encapsulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooBig {
    pub l3: u8,
    pub hl: u8,
    pub mtu: u16,
    /// IPv6: the packet's length (answered with Packet Too Big, RFC 4443
    /// §3.2); 0 for IPv4 (fragmentation needed).
    pub len6: u16,
    /// Too big for a translation (`xlate-too-big`) rather than a tunnel
    /// (`tunnel-too-big`).
    pub xlate: bool,
}

/// Where the refused packet's IPv4 header is, for `forward::build_refusal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    /// `protocol::TCP` or `protocol::UDP`.
    pub proto: u8,
    /// Offset of the IPv4 header in the frame (14, or 18 behind a VLAN tag).
    pub l3: u8,
    /// IPv4 header length.
    pub hl: u8,
}

/// One worker: the snapshot it reads and the state it owns. The two are
/// apart so that the snapshot is lent (`rcu::Reader::get`) to the shard's
/// methods for one pass, and can only move on between passes.
pub struct Worker {
    snapshot: Reader<Snapshot>,
    shard: Shard,
}

/// What a worker owns alone: its connection-table shard, scheduler
/// cursors, full-NAT ports, persistence records and counters, of one
/// address family (`family::Net`); the IPv4 shard holds the IPv6 one
/// (`v6`), made when a snapshot first has an IPv6 service.
struct Shard<A: crate::conntrack::Addr = u32> {
    config: WorkerConfig,
    counters: Arc<WorkerCounters>,
    table: FlowTable<A>,
    sched: Scheduler,
    local_ports: LocalPorts<A>,
    /// Which worker owns a connection: where the ports' RSS queues it
    /// (`owner`), under `config.owner_key`.
    owners: Owners,
    neighbors: Arc<Neighbors>,
    /// Global active connections per server, for least-connections.
    loads: Option<Arc<lb::Loads>>,
    /// Persistence records of the clients this worker owns.
    persist: PersistTable<A>,
    /// Current time in flow-table ticks, set by `poll`.
    now: u32,
    /// The console's connection dumps (`dump`), when asked for.
    dump: Option<dump::DumpServer>,
    /// Connection-state sync with the HA peer (`replicate`), when on.
    sync: Option<Replication>,
    /// The answers this worker may build (`icmp_rate`).
    answers: police::TokenBucket,
    /// What it may punt, per class (`punt_rates`).
    punt: police::PuntPolicer,
    /// The SYN proxy: the segment `Verdict::Rebuild` writes, the parked
    /// client segments, `Auto`'s state.
    rebuilt: synproxy::Rebuild,
    park: synproxy::Park,
    proxy_until: u32,
    cookie_sec: u32,
    cookies_this_sec: u32,
    /// Until this tick an ACK without an entry may return a cookie.
    cookies_valid_until: u32,
    /// The DPDK port of the packet being processed (what a parked copy
    /// replays from).
    in_port: u16,
    /// The key and hash of the packet being processed, computed when its
    /// burst arrived (`burst`), for the lookup to take.
    pending: Option<(crate::conntrack::FlowKey<A>, u32)>,
    /// The IPv6 shard (in the IPv4 one only).
    v6: Option<Box<Shard<u128>>>,
}

/// What a parsed TCP/UDP packet looks like, for the flow path: `hl` is
/// where the transport header starts after `l3` (IPv6: its extension
/// headers included), `ip_len` the IP packet's length from `l3`.
#[derive(Clone, Copy)]
struct L4Info<A: crate::conntrack::Addr = u32> {
    l3: usize,
    hl: usize,
    proto: u8,
    src: A,
    dst: A,
    sport: u16,
    dport: u16,
    tcp_flags: u8,
    ip_len: usize,
    /// TCP: sequence numbers, window, payload length (`conntrack::track`).
    seg: crate::conntrack::Segment,
}

impl Worker {
    pub fn new(config: WorkerConfig, snapshot: Reader<Snapshot>, neighbors: Arc<Neighbors>) -> Self {
        let mut shard = Shard::blank(config, Arc::new(WorkerCounters::default()), neighbors);
        shard.adopt_snapshot(snapshot.get());
        Self { snapshot, shard }
    }


    /// Gives the worker the control plane's per-server connection sums.
    pub fn with_loads(mut self, loads: Arc<lb::Loads>) -> Self {
        if let Some(v6) = self.shard.v6.as_mut() {
            v6.loads = Some(Arc::clone(&loads));
        }
        self.shard.loads = Some(loads);
        self
    }

    /// Lets the control plane ask for dumps of the connection table (the
    /// worker's end of `ctl::dump::channel`).
    pub fn with_dump(mut self, server: dump::DumpServer) -> Self {
        self.shard.dump = Some(server);
        self
    }

    /// Turns on connection-state sync with the HA peer (`replicate`):
    /// the worker pushes its events into `events_out` (the control plane
    /// reads them) and applies the peer's records it finds in `installs_in`
    /// (the control plane writes them, to the owner: `owner_of`). Each is
    /// one end of a `ctl::events::channel`.
    pub fn with_sync(mut self, events_out: RecordProducer, installs_in: RecordConsumer) -> Self {
        self.shard.sync = Some(Replication::new(events_out, installs_in));
        self
    }

    /// The cell through which the control plane asks for bulk walks, when
    /// sync is on (take it before the worker goes to its lcore).
    pub fn sync_control(&self) -> Option<Arc<SyncControl>> {
        self.shard.sync.as_ref().map(Replication::control)
    }

    pub fn config(&self) -> &WorkerConfig {
        &self.shard.config
    }

    /// The counters, for the control plane to read.
    pub fn counters(&self) -> Arc<WorkerCounters> {
        Arc::clone(&self.shard.counters)
    }

    pub fn table(&self) -> &FlowTable {
        &self.shard.table
    }

    /// The IPv6 table, once a snapshot has had an IPv6 service.
    pub fn table6(&self) -> Option<&FlowTable<u128>> {
        self.shard.v6.as_deref().map(|s| &s.table)
    }

    /// Live persistence records (slow: walks the table).
    pub fn persist_records(&self) -> usize {
        self.shard.persist.len(self.shard.now)
    }

    /// One pass: packets handed over by other workers, then every RX queue;
    /// then flush, then expire up to a budget of idle connections. `now` is
    /// in flow-table ticks (`conntrack::TICK_MS`). Returns packets
    /// received. The start of a pass is the worker's quiescent point: it
    /// moves to the newest snapshot there.
    pub fn poll<I: PacketIo>(&mut self, io: &mut I, now: u32) -> usize {
        if self.snapshot.refresh() {
            self.shard.adopt_snapshot(self.snapshot.get());
        }
        self.shard.poll(self.snapshot.get(), io, now)
    }

    /// `Shard::process_packet` with the current snapshot.
    #[inline]
    pub fn process_packet<P: Packet>(&mut self, pkt: &mut P, handed: bool) -> Verdict {
        self.shard.process_packet(self.snapshot.get(), pkt, handed)
    }

    /// Decides the fate of one frame that arrived on `port`, rewriting it in
    /// place when forwarding. `handed`: another worker already decided this
    /// worker owns it. A new connection no server can take comes back as
    /// `Verdict::Reject`, which only `process_packet` can carry out.
    pub fn process(&mut self, frame: &mut [u8], port: u16, handed: bool) -> Verdict {
        self.shard.process(self.snapshot.get(), frame, port, handed)
    }
}

impl Shard {
    /// One pass: packets handed over by other workers (a burst from each
    /// ring), then every RX queue; then flush, then expire up to a budget
    /// of idle connections. `now` is in flow-table ticks
    /// (`conntrack::TICK_MS`). Returns packets received.
    fn poll<I: PacketIo>(&mut self, snap: &Snapshot, io: &mut I, now: u32) -> usize {
        self.now = now;
        if let Some(v6) = self.v6.as_mut() {
            v6.now = now;
        }
        let mut burst = Burst::new();
        let mut received = 0;
        // A burst from every hand-off ring and every RX queue a pass: the
        // rings drain as fast as the queues that fill them.
        for _ in 0..io.handoff_rings().max(1) {
            io.rx_handoff(&mut burst);
            if burst.is_empty() {
                break;
            }
            received += burst.len();
            for pkt in burst.drain() {
                self.handle(snap, io, pkt, true);
            }
        }
        received += self.receive(snap, io);
        let tx = io.flush();
        self.counters.tx_packets.add(tx.packets);
        self.counters.tx_bytes.add(tx.bytes);
        self.counters.count_drops(DropReason::TxQueueFull, tx.dropped);
        self.expire(snap, now);
        if let Some(v6) = self.v6.as_mut() {
            v6.expire(snap, now);
        }
        self.sync_pass(snap, now);
        if let Some(d) = self.dump.as_mut() {
            d.serve_both(&self.table, &self.persist, self.v6.as_ref().map(|v6| (&v6.table, &v6.persist)), now);
        }
        received
    }

    fn handle<I: PacketIo>(&mut self, snap: &Snapshot, io: &mut I, mut pkt: I::Pkt, handed: bool) {
        match self.process_packet(snap, &mut pkt, handed) {
            Verdict::Forward(link) => {
                let Some(pv) = snap.port(link) else { return self.counters.count_drop(DropReason::NoVirtualServer) };
                if retag(&mut pkt, pv.vlan) {
                    io.tx(pv.port, pkt);
                } else {
                    self.counters.count_drop(DropReason::VlanNoHeadroom);
                }
            }
            Verdict::Punt => self.punt(snap, io, pkt),
            Verdict::Handoff(owner) => match io.handoff(owner, pkt) {
                Ok(()) => self.counters.handed_off.inc(),
                Err(_dropped) => self.counters.count_drop(DropReason::HandoffRingFull),
            },
            Verdict::Drop(reason) => self.counters.count_drop(reason),
            Verdict::Consumed => self.counters.syn_parked.inc(),
            // `process_packet` never returns these.
            Verdict::Rebuild | Verdict::Replay(_) => self.counters.count_drop(DropReason::SynProxyPending),
            Verdict::Reject(_) => self.counters.count_drop(DropReason::NoServer),
            Verdict::Encap(_) | Verdict::Encap6(_) => self.counters.count_drop(DropReason::TunnelNoHeadroom),
            Verdict::Xlate(_) => self.counters.count_drop(DropReason::XlateNoRoom),
            Verdict::XlateError(_) => self.counters.count_drop(DropReason::IcmpXlateNotRelayed),
            Verdict::TooBig(_) => self.counters.count_drop(DropReason::TunnelTooBig),
            Verdict::Relay(_) => self.counters.count_drop(DropReason::IcmpTunnelNotRelayed),
            Verdict::Insert(_) => self.counters.count_drop(DropReason::ProxyHeaderNoRoom),
        }
    }

    /// `process` on a packet the caller owns, which it may resize: the
    /// refusals `process` asks for (`Verdict::Reject`) are built in place
    /// and come back as `Forward` to the port the packet arrived on. The
    /// refused packet is counted as a `no-server` drop and its answer as
    /// `rejected`; a refusal that cannot be built is `Drop(NoServer)`.
    #[inline]
    fn process_packet<P: Packet>(&mut self, snap: &Snapshot, pkt: &mut P, handed: bool) -> Verdict {
        let port = pkt.port();
        // The link the packet came in on, for the answers built in place.
        let link_in = |pkt: &P| snap.link_of(port, crate::wire::parse_l2(pkt.data()).ok().and_then(|l2| l2.vlan)).unwrap_or(u16::MAX);
        match self.process(snap, pkt.data_mut(), port, handed) {
            Verdict::Reject(r) => {
                let link = link_in(pkt);
                self.refuse(snap, pkt, link, r)
            }
            Verdict::Encap(e) => self.encapsulate(pkt, e),
            Verdict::Encap6(e) => self.encapsulate6(snap, pkt, e),
            Verdict::Xlate(x) => self.xlate(snap, pkt, x),
            Verdict::XlateError(x) => self.xlate_error(snap, pkt, x),
            Verdict::TooBig(t) => {
                let link = link_in(pkt);
                self.too_big(snap, pkt, link, t)
            }
            Verdict::Relay(r) => self.relay(snap, pkt, r),
            Verdict::Insert(i) => pheader::insert(pkt, &i),
            Verdict::Rebuild => self.rebuild(pkt),
            Verdict::Replay(r) => self.replay(snap, pkt, r),
            v => v,
        }
    }

}

impl<A: family::Net> Shard<A> {
    /// Removes a connection at once, with its counters and port; sync
    /// reports it (`Delete`).
    fn remove(&mut self, snap: &Snapshot, id: FlowId) {
        if let Some(f) = self.table.remove(id) {
            if let Some(f4) = A::v4_flow(&f) {
                Shard::emit_delete(&mut self.sync, &self.counters, f4, self.now, false);
            }
            ended(&f, snap, self.now, &self.counters, &mut self.local_ports, &mut self.persist);
        }
    }
}

/// Gives a frame leaving on a link the link's VLAN tag (IEEE 802.1Q,
/// priority 0), or none for `vlan` 0: a tag is rewritten, added (the
/// buffer grows at the head) or removed. False when the buffer has no
/// room for a tag.
#[inline]
fn retag<P: Packet>(pkt: &mut P, vlan: u16) -> bool {
    let f = pkt.data();
    let tagged = f.get(12..14) == Some(&[0x81, 0x00][..]);
    match (tagged, vlan) {
        (false, 0) => true,
        (true, 0) => {
            pkt.data_mut().copy_within(0..12, 4);
            pkt.adj(4)
        }
        (true, v) => {
            if let Some(tci) = pkt.data_mut().get_mut(14..16) {
                tci.copy_from_slice(&(v & 0x0fff).to_be_bytes());
            }
            true
        }
        (false, v) => {
            if !pkt.prepend(4) {
                return false;
            }
            let f = pkt.data_mut();
            f.copy_within(4..16, 0);
            let [hi, lo] = (v & 0x0fff).to_be_bytes();
            if let Some(tag) = f.get_mut(12..16) {
                tag.copy_from_slice(&[0x81, 0x00, hi, lo]);
            }
            true
        }
    }
}

/// What a connection held, given back when its entry goes (expired or
/// removed): its persistence reference, its counts, its full-NAT port.
#[inline]
fn ended<A: crate::conntrack::Addr>(f: &Flow<A>, snap: &Snapshot, now: u32, counters: &WorkerCounters, local_ports: &mut LocalPorts<A>, persist: &mut PersistTable<A>) {
    if f.flags.contains(EntryFlags::PERSIST) {
        release(persist, snap, f.vs, f.client_ip, f.client_port, f.server_ip, now);
    }
    counters.flows.sub(1);
    if let Some(c) = counters.services.get(f.vs as usize) {
        c.conns_active.sub(1);
    }
    if let Some(c) = counters.servers.get(f.server_slot()) {
        c.conns_active.sub(1);
    }
    established_moved(counters, f.vs, f.server_slot(), f.state, FlowState::Close);
    if matches!(f.mode, Forwarding::FullNat | Forwarding::Snat) && !f.flags.contains(EntryFlags::BORROWED_PORT) {
        local_ports.free(f.local_ip, f.local_port);
    }
}

/// Keeps the established gauges (`ServiceCounters::conns_established`) in
/// step with an entry's state change.
#[inline]
pub(super) fn established_moved(counters: &WorkerCounters, vs: u16, server: usize, old: FlowState, new: FlowState) {
    let moved = |f: fn(&crate::state::counters::Counter)| {
        if let Some(c) = counters.services.get(vs as usize) {
            f(&c.conns_established);
        }
        if let Some(c) = counters.servers.get(server) {
            f(&c.conns_established);
        }
    };
    match (old.is_active(), new.is_active()) {
        (false, true) => moved(|c| c.inc()),
        (true, false) => moved(|c| c.sub(1)),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
