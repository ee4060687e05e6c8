//! Per-worker counters. Every drop has a name (`DropReason`), after grout's
//! per-edge drop counters; the console and the stats print them by name.
//!
//! Ownership: each `WorkerCounters` has exactly one writer, its worker
//! (dataplane: rw), and any number of readers on the control lcore
//! (ctlplane: ro). A single writer needs no atomic read-modify-write: a
//! relaxed load and store is enough and costs a plain `add` on x86.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A monotonically increasing counter with a single writer.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning worker may call this.
    #[inline(always)]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline(always)]
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

macro_rules! drop_reasons {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// Why a worker dropped a packet. Each reason indexes its own counter.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason {
            $($(#[$doc])* $variant,)*
        }

        impl DropReason {
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            pub const COUNT: usize = Self::ALL.len();

            /// The stable name operators and tests see.
            pub fn name(self) -> &'static str {
                match self {
                    $(DropReason::$variant => $name,)*
                }
            }
        }
    };
}

drop_reasons! {
    /// Shorter than an Ethernet header.
    RuntFrame => "runt-frame",
    /// An EtherType the appliance does not handle (LLDP, ...).
    UnhandledEthertype => "unhandled-ethertype",
    /// A frame tagged with a VLAN no interface of its port has, or
    /// untagged on a port whose interfaces are all tagged.
    UnknownVlan => "unknown-vlan",
    /// No room in the buffer to add the out link's VLAN tag.
    VlanNoHeadroom => "vlan-no-headroom",
    /// Shorter than an IPv4 header.
    Ipv4Truncated => "ipv4-truncated",
    /// EtherType IPv4 but version field not 4.
    Ipv4BadVersion => "ipv4-bad-version",
    /// IHL below 5 or beyond the frame.
    Ipv4BadHeaderLength => "ipv4-bad-header-length",
    /// Total length below the header or beyond the frame.
    Ipv4BadTotalLength => "ipv4-bad-total-length",
    /// Header checksum wrong (RFC 1812 §5.2.2).
    Ipv4BadChecksum => "ipv4-bad-checksum",
    /// A fragment: not reassembled, see README "Fragments". IPv6 too
    /// (a Fragment header of a non-atomic fragment; an atomic one, RFC
    /// 6946, is the whole packet).
    Fragment => "fragment",
    /// Shorter than an IPv6 header.
    Ipv6Truncated => "ipv6-truncated",
    /// EtherType IPv6 but version field not 6.
    Ipv6BadVersion => "ipv6-bad-version",
    /// Payload length beyond the frame.
    Ipv6BadPayloadLength => "ipv6-bad-payload-length",
    /// A multicast source (RFC 4291 §2.7), or an IPv4-mapped address
    /// either side (§2.5.5.2: never on the wire, and what the box would
    /// translate from).
    Ipv6BadAddress => "ipv6-bad-address",
    /// An extension-header chain the box does not walk (RFC 8200 §4:
    /// incomplete, hop-by-hop not first, a header repeated more than §4.1
    /// allows, or a header of the registry it does not know).
    Ipv6BadChain => "ipv6-bad-chain",
    /// A routing header with segments left (RFC 8200 §4.4): the box
    /// takes part in no source route (RFC 5095: type 0 is deprecated).
    Ipv6RoutingHeader => "ipv6-routing-header",
    /// UDP over IPv6 with checksum 0 (RFC 8200 §8.1: invalid).
    UdpZeroChecksum => "udp-zero-checksum",
    /// Neighbor Discovery that fails RFC 4861 §7.1's checks a worker
    /// makes: hop limit not 255 (an off-link sender), code not 0.
    NdInvalid => "nd-invalid",
    /// Neighbor Discovery for others: not to one of the arriving link's
    /// addresses, their solicited-node groups or all-nodes (the ports are
    /// promiscuous: a switch floods other hosts' solicitations).
    NdNotOurs => "nd-not-ours",
    /// ICMPv6 the box ignores: router solicitations and advertisements and
    /// redirects (its routes are configured), multicast listener
    /// messages, other informational types.
    Icmpv6Ignored => "icmpv6-ignored",
    /// TTL would reach 0 (RFC 1812 §5.3.1).
    TtlExceeded => "ttl-exceeded",
    /// IP payload shorter than a TCP header.
    TcpTruncated => "tcp-truncated",
    /// TCP data offset below 5 or beyond the segment.
    TcpBadHeaderLength => "tcp-bad-header-length",
    /// IP payload shorter than a UDP header.
    UdpTruncated => "udp-truncated",
    /// UDP length field below 8 or beyond the datagram.
    UdpBadLength => "udp-bad-length",
    /// IP payload shorter than an ICMP header.
    IcmpTruncated => "icmp-truncated",
    /// An ICMP error with a wrong checksum (RFC 792): not translated.
    IcmpBadChecksum => "icmp-bad-checksum",
    /// An ICMP error whose embedded header is unusable.
    IcmpBadEmbedded => "icmp-bad-embedded",
    /// An ICMP error about no tracked connection.
    IcmpNoFlow => "icmp-no-flow",
    /// An ICMP type the box does not forward (to a VIP).
    IcmpUnhandled => "icmp-unhandled",
    /// Bad TCP/UDP checksum on a packet that would create a connection.
    L4BadChecksum => "l4-bad-checksum",
    /// An IP protocol other than TCP, UDP, ICMP, to a VIP.
    UnhandledProtocol => "unhandled-protocol",
    /// Traffic of a virtual server whose VIP a VRRP peer owns (this box is
    /// its backup): neither new nor existing connections are forwarded.
    VrrpBackup => "vrrp-backup",
    /// IPv4 or IPv6 addressed to no virtual server, no connection and no
    /// self IP.
    NoVirtualServer => "no-virtual-server",
    /// A TCP segment other than a SYN for no known connection.
    TcpNoFlow => "tcp-no-flow",
    /// No enabled server in the pool. A TCP SYN or UDP datagram refused so
    /// is answered (RST, ICMP port unreachable) when it can be: see
    /// `WorkerCounters::rejected`.
    NoServer => "no-server",
    /// A packet of a connection whose server went down with
    /// `on_down = "reset"`: the entry is removed.
    ServerDown => "server-down",
    /// full-NAT: every local port of this worker is in use.
    NoLocalPort => "no-local-port",
    /// The connection table is full of connections past their handshake:
    /// new connections refused, existing ones untouched (half-open ones are
    /// evicted first: `WorkerCounters::embryonic_evicted`).
    FlowTableFull => "flow-table-full",
    /// A TCP reset outside the receiver's window (RFC 5961 §3.2): a blind
    /// guess; the connection is kept.
    TcpRstOutOfWindow => "tcp-rst-out-of-window",
    /// SYN proxy: an ACK to a proxied service that returns no cookie the
    /// box made (RFC 4987 §3.6), or one too old.
    SynCookieInvalid => "syn-cookie-invalid",
    /// SYN proxy: a client segment while its server has not answered yet
    /// (the first with data is parked instead), or a server answer that
    /// does not acknowledge the box's SYN; the sender retransmits.
    SynProxyPending => "syn-proxy-pending",
    /// A new connection collided with an existing entry's reply key.
    FlowExists => "flow-exists",
    /// The next hop's MAC is not resolved (yet).
    NeighborUnresolved => "neighbor-unresolved",
    /// `dsr-tunnel`: the packet would exceed the next hop's MTU once
    /// encapsulated. With DF set it is answered with ICMP fragmentation
    /// needed (`WorkerCounters::frag_needed`); without, dropped (the box
    /// does not fragment).
    TunnelTooBig => "tunnel-too-big",
    /// Translation between the families (RFC 7915): an IPv4 packet with
    /// options (not translated), or an IPv6 one with extension headers.
    XlateHeaders => "xlate-headers",
    /// Translation: the packet would exceed the next hop's MTU once its
    /// header is IPv6's (20 bytes more). With DF set it is answered with
    /// ICMP fragmentation needed; without, dropped.
    XlateTooBig => "xlate-too-big",
    /// Translation: the buffer had no room for the IPv6 header.
    XlateNoRoom => "xlate-no-room",
    /// An ICMP error about a translated connection that is not translated
    /// (only fragmentation needed from the IPv4 servers' side is, into
    /// Packet Too Big).
    IcmpXlateNotRelayed => "icmp-xlate-not-relayed",
    /// `dsr-tunnel`: the buffer had no headroom for the outer headers.
    TunnelNoHeadroom => "tunnel-no-headroom",
    /// `proxy_protocol`: the buffer had no room for the PROXY header.
    ProxyHeaderNoRoom => "proxy-header-no-room",
    /// `proxy_protocol`: client data before the place of the PROXY header
    /// (before the server acknowledged it), or on a SYN.
    ProxyHeaderOrder => "proxy-header-order",
    /// `proxy_protocol`: the PROXY header would take the segment past the
    /// link's MTU (the client ignored the MSS the box announced).
    ProxyHeaderTooBig => "proxy-header-too-big",
    /// The ring to the control lcore was full.
    PuntRingFull => "punt-ring-full",
    /// IP protocol 112 not from where a VRRP advert can come: TTL not 255
    /// (RFC 5798 §7.1), or not to 224.0.0.18 on a link with an instance,
    /// nor to the link's self IP from one of its unicast peers. Refused
    /// before it can take a token of the VRRP class.
    VrrpRefused => "vrrp-refused",
    /// `[[snat]]`: a packet from a rule's sources that arrived on another
    /// link than the servers' (a spoofed source from outside).
    SnatWrongLink => "snat-wrong-link",
    /// A reply-direction packet of a NAT or full-NAT connection that
    /// arrived on another link than its server's (review S9: a spoofed
    /// server source from outside).
    ReplyWrongLink => "reply-wrong-link",
    /// A packet of an exception-path connection (`Local`, `LocalOut`) on a
    /// link it cannot come from: the host's side of it from outside (a
    /// spoofed answer of the appliance's own stack, or of a server to it),
    /// or from the host link on a connection that is not the stack's.
    LocalWrongLink => "local-wrong-link",
    /// From the host link, matching no connection and opening none (not
    /// TCP/UDP from one of the stack's source addresses and ports): the
    /// kernel's own chatter, or an answer to a connection the box has
    /// forgotten.
    HostUnmatched => "host-unmatched",
    /// A new connection from one of the box's own addresses (a self IP,
    /// a VIP, a full-NAT local address): spoofed (RFC 1812 §5.3.7), and
    /// its answers would come back to the box as replies that make the
    /// entry look answered.
    OwnSource => "own-source",
    /// For the control lcore, but over its class's rate (`PuntClass`,
    /// `WorkerCounters::punt_limited` by class).
    PuntLimited => "punt-limited",
    /// The ring to the owning worker was full.
    HandoffRingFull => "handoff-ring-full",
    /// The NIC's TX queue took fewer packets than offered.
    TxQueueFull => "tx-queue-full",
    /// An ICMP error about a `dsr-tunnel` packet (it quotes the outer
    /// header the box sent) that is not relayed to the client (RFC 2003
    /// §4): not fragmentation needed, no MTU in it, a quote too short to
    /// hold the client's header, or over `icmp_rate` (`answers-limited`).
    IcmpTunnelNotRelayed => "icmp-tunnel-not-relayed",
    /// An ICMP error about a server's segment to the client whose quoted
    /// sequence number the server has not sent or the client has already
    /// acknowledged (RFC 5927 §4.1): a blind guess, not sent on. For IPv6
    /// full-NAT also one about a UDP datagram to the client (no window
    /// vouches for it, and the server's path MTU to the local address is
    /// every client's).
    IcmpOutOfWindow => "icmp-out-of-window",
}

/// What a worker hands the control lcore, by class (`pipeline::police`,
/// keyed on the link, the destination, the port and the TTL, never on a
/// source address alone): each class has its own token bucket, and the
/// protected classes (ARP, VRRP, HA: `is_protected`) their own ring, which
/// the control lcore drains first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PuntClass {
    /// ARP requests and replies.
    Arp,
    /// VRRP adverts (IP protocol 112) with TTL 255, to the group on a link
    /// with an instance or to a self IP from a unicast peer of its link.
    Vrrp,
    /// UDP from the `[sync]` peer to the sync port on the sync link: state
    /// sync datagrams.
    Ha,
    /// IPv6 Neighbor Discovery (RFC 4861) with hop limit 255, to an
    /// address of the link it arrived on: a self or link-local address,
    /// the solicited-node group of one (matched by its low 24 bits), or
    /// all-nodes (unsolicited adverts). Policed as ARP is, in a bucket of
    /// its own.
    Nd,
    /// TCP and UDP to a health probe's port, and ICMP echo replies, from a
    /// server's address on its link (DSR servers answer from the VIP).
    Probe,
    /// Other ICMP to the box: echo requests to self IPs and VIPs, errors
    /// about its own traffic.
    Icmp,
    /// Anything else for a self IP (a port nothing listens on): dropped
    /// unless `[defence.punt] other` lets some through.
    Other,
}

impl PuntClass {
    pub const ALL: &'static [PuntClass] = &[PuntClass::Arp, PuntClass::Vrrp, PuntClass::Ha, PuntClass::Nd, PuntClass::Probe, PuntClass::Icmp, PuntClass::Other];
    pub const COUNT: usize = Self::ALL.len();

    /// ARP, VRRP, HA and ND: the frames a flood of the others must not delay
    /// (a lost advert is a false failover). They enter a ring of their own.
    #[inline]
    pub fn is_protected(self) -> bool {
        matches!(self, PuntClass::Arp | PuntClass::Vrrp | PuntClass::Ha | PuntClass::Nd)
    }

    /// The stable name operators see (`[defence.punt]`'s keys).
    pub fn name(self) -> &'static str {
        match self {
            PuntClass::Arp => "arp",
            PuntClass::Vrrp => "vrrp",
            PuntClass::Ha => "ha",
            PuntClass::Nd => "nd",
            PuntClass::Probe => "probe",
            PuntClass::Icmp => "icmp",
            PuntClass::Other => "other",
        }
    }
}

macro_rules! install_failures {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// Why a worker could not install (all of) a state-sync record
        /// from the HA peer (`pipeline`'s install path). Each reason has
        /// its own counter (`SyncCounters::install_failed`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum InstallFailure {
            $($(#[$doc])* $variant,)*
        }

        impl InstallFailure {
            pub const ALL: &'static [InstallFailure] = &[$(InstallFailure::$variant,)*];
            pub const COUNT: usize = Self::ALL.len();

            /// The stable name operators and tests see.
            pub fn name(self) -> &'static str {
                match self {
                    $(InstallFailure::$variant => $name,)*
                }
            }

            /// `install-failed-<name>`, the name of its counter.
            pub fn counter_name(self) -> &'static str {
                match self {
                    $(InstallFailure::$variant => concat!("install-failed-", $name),)*
                }
            }
        }
    };
}

install_failures! {
    /// No virtual server here listens on the record's VIP, port and
    /// protocol.
    NoService => "no-service",
    /// The virtual server here has no server at the record's address and
    /// port.
    NoServer => "no-server",
    /// The connection table is full.
    TableFull => "table-full",
    /// Another entry here holds the record's reply key.
    Exists => "exists",
    /// full-NAT: the record's local port is in use here, or not this
    /// worker's (the worker counts of the pair differ), or its local
    /// address is not one of this box's. The entry is installed anyway
    /// (the connection uses that port on the wire).
    LocalPort => "local-port",
    /// A persistence record for a virtual server without persistence here.
    NoPersistence => "no-persistence",
    /// Out of date, ignored: a `Refresh` older than the entry here (its
    /// version), or of a connection this worker closed within the last
    /// 10 s (it crossed the `Delete`).
    Stale => "stale",
}

/// One worker's state-sync counters (`ctl::events`): records pushed to its
/// events ring, dropped on a full ring, and the peer's records it applied.
#[derive(Debug, Default)]
pub struct SyncCounters {
    /// Records pushed to the events ring (creates, updates, deletes,
    /// refreshes, persistence records).
    pub sent: Counter,
    /// Records lost to a full events ring (the refresh walk waits for
    /// room instead, so these are live events).
    pub dropped: Counter,
    /// Records from the peer applied to the table.
    pub installed: Counter,
    /// Entries dropped because the pair's ownership key changed and
    /// another worker owns them now (`Shard::rehome_step`).
    pub rehomed: Counter,
    failed: [Counter; InstallFailure::COUNT],
}

#[allow(clippy::indexing_slicing, reason = "an InstallFailure's discriminant is below InstallFailure::COUNT, the length of `failed`")]
impl SyncCounters {
    #[inline]
    pub fn count_failure(&self, why: InstallFailure) {
        self.failed[why as usize].inc();
    }

    /// Failures of one reason.
    pub fn install_failed(&self, why: InstallFailure) -> u64 {
        self.failed[why as usize].get()
    }

    /// Failures of every reason.
    pub fn install_failed_total(&self) -> u64 {
        self.failed.iter().map(Counter::get).sum()
    }

    /// Every counter by its stable name, for the console, the report and
    /// the metrics: `sent`, `dropped`, `installed`, `rehomed`, then
    /// `install-failed-<reason>` for each `InstallFailure`.
    pub fn named(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        [("sent", self.sent.get()), ("dropped", self.dropped.get()), ("installed", self.installed.get()), ("rehomed", self.rehomed.get())]
            .into_iter()
            .chain(InstallFailure::ALL.iter().map(|r| r.counter_name()).zip(self.failed.iter().map(Counter::get)))
    }
}

/// Counters of one virtual server or one real server, on one worker.
#[derive(Debug, Default)]
pub struct ServiceCounters {
    /// Entries in the connection table (a gauge: +1 on create, -1 on
    /// removal; summed over workers with wrapping arithmetic).
    pub conns_active: Counter,
    /// Of those, established ones (`FlowState::is_active`, a gauge): what
    /// `ipvsadm -L` calls ActiveConn; the rest are InActConn.
    pub conns_established: Counter,
    pub conns_new: Counter,
    /// Client to server direction.
    pub in_pkts: Counter,
    pub in_bytes: Counter,
    /// Server to client direction.
    pub out_pkts: Counter,
    pub out_bytes: Counter,
}

/// One worker's counters, on their own cache lines.
#[derive(Debug)]
#[repr(align(64))]
pub struct WorkerCounters {
    pub rx_packets: Counter,
    pub rx_bytes: Counter,
    pub tx_packets: Counter,
    pub tx_bytes: Counter,
    /// Packets handed to the control lcore (ARP, ICMP to self, probes).
    pub punted: Counter,
    /// Packets handed to the worker that owns their connection.
    pub handed_off: Counter,
    /// Live connection-table entries (gauge).
    pub flows: Counter,
    /// New connections answered with a TCP RST or an ICMP port unreachable
    /// because no server could take them (each also counted as a
    /// `no-server` drop).
    pub rejected: Counter,
    /// `dsr-tunnel` packets too big for the tunnel answered with ICMP
    /// fragmentation needed and the tunnel's MTU (RFC 1191; each also a
    /// `tunnel-too-big` drop), and fragmentation needed about the tunnel
    /// relayed to clients (RFC 2003 §4).
    pub frag_needed: Counter,
    /// Refusals and ICMP errors not sent: over the worker's `icmp_rate`
    /// (the packet that asked for one is counted as its drop).
    pub answers_limited: Counter,
    /// SYN proxy: cookie SYN-ACKs sent, connections a good cookie opened,
    /// client segments parked until their server answered.
    pub syn_cookies: Counter,
    pub syn_proxied: Counter,
    pub syn_parked: Counter,
    /// SYN proxy: the server answered the box's SYN from a stale
    /// TIME-WAIT; reset, and opened again on the client's retransmission.
    pub syn_stale: Counter,
    /// SYN proxy: SYNs sent to a server again, on the client's
    /// retransmission of its first segment (the first SYN or its answer
    /// was lost).
    pub syn_resent: Counter,
    /// Connections servers opened through source NAT (`[[snat]]`).
    pub snat: Counter,
    /// The exception path: clients' connections handed to the
    /// appliance's own stack (`Forwarding::Local`), and the connections
    /// it opened (`LocalOut`).
    pub local_in: Counter,
    pub local_out: Counter,
    /// Packets routed on `route` links.
    pub routed: Counter,
    /// TCP resets inside the receiver's window but not at its next
    /// sequence number: forwarded without ending the connection (the
    /// endpoint challenges them, RFC 5961 §3.2).
    pub rst_in_window: Counter,
    /// TCP segments of a connection whose handshake was seen here that no
    /// endpoint would accept (`conntrack::Check::Implausible`): forwarded,
    /// but they changed neither the marks nor the state nor the timer.
    pub tcp_implausible: Counter,
    /// Half-open TCP entries evicted (the oldest first) to make room for a
    /// new connection: the table was full or held `embryonic_max`.
    pub embryonic_evicted: Counter,
    /// Unreplied entries a cap evicted for a newer one of their own group:
    /// a service at `unreplied_per_service`, a source bucket at
    /// `unreplied_per_source`, or full-NAT ports run out.
    pub unreplied_capped: Counter,
    /// New connections sent to a server by a persistence record.
    pub persisted: Counter,
    /// Persistence records made.
    pub persist_records: Counter,
    /// Live persistence records evicted from a full set to make room.
    pub persist_evicted: Counter,
    drops: [Counter; DropReason::COUNT],
    /// Punted, by `PuntClass`.
    punt_passed: [Counter; PuntClass::COUNT],
    /// Over their class's rate, by `PuntClass` (each a `punt-limited`
    /// drop).
    punt_limited: [Counter; PuntClass::COUNT],
    /// State sync with the HA peer (`sync_sent`, `sync_dropped`,
    /// `sync_installed`, `sync_install_failed` by reason).
    pub sync: SyncCounters,
    /// Indexed like the snapshot's services and servers.
    pub services: Box<[ServiceCounters]>,
    pub servers: Box<[ServiceCounters]>,
}

impl Default for WorkerCounters {
    fn default() -> Self {
        use crate::limits::{MAX_SERVERS, MAX_SERVICES};
        Self {
            rx_packets: Counter::default(),
            rx_bytes: Counter::default(),
            tx_packets: Counter::default(),
            tx_bytes: Counter::default(),
            punted: Counter::default(),
            handed_off: Counter::default(),
            persisted: Counter::default(),
            frag_needed: Counter::default(),
            snat: Counter::default(),
            local_in: Counter::default(),
            local_out: Counter::default(),
            answers_limited: Counter::default(),
            syn_cookies: Counter::default(),
            syn_proxied: Counter::default(),
            syn_parked: Counter::default(),
            syn_stale: Counter::default(),
            syn_resent: Counter::default(),
            routed: Counter::default(),
            rst_in_window: Counter::default(),
            tcp_implausible: Counter::default(),
            embryonic_evicted: Counter::default(),
            unreplied_capped: Counter::default(),
            persist_records: Counter::default(),
            persist_evicted: Counter::default(),
            flows: Counter::default(),
            rejected: Counter::default(),
            drops: core::array::from_fn(|_| Counter::default()),
            punt_passed: core::array::from_fn(|_| Counter::default()),
            punt_limited: core::array::from_fn(|_| Counter::default()),
            sync: SyncCounters::default(),
            services: (0..MAX_SERVICES).map(|_| ServiceCounters::default()).collect(),
            servers: (0..MAX_SERVERS).map(|_| ServiceCounters::default()).collect(),
        }
    }
}

impl Counter {
    /// Subtracts `n` (gauges only).
    #[inline(always)]
    pub fn sub(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_sub(n), Relaxed);
    }
}

#[allow(clippy::indexing_slicing, reason = "a DropReason's discriminant is below DropReason::COUNT, the length of `drops`")]
impl WorkerCounters {
    #[inline(always)]
    pub fn count_drop(&self, reason: DropReason) {
        self.drops[reason as usize].inc();
    }

    #[inline(always)]
    pub fn count_drops(&self, reason: DropReason, n: u64) {
        self.drops[reason as usize].add(n);
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].get()
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.iter().map(Counter::get).sum()
    }

    /// A packet of `class` handed to the control lcore (`passed`) or
    /// dropped over its rate.
    #[inline(always)]
    pub fn count_punt(&self, class: PuntClass, passed: bool) {
        if passed {
            self.punt_passed[class as usize].inc();
        } else {
            self.punt_limited[class as usize].inc();
        }
    }

    /// (passed, limited) of `class`.
    pub fn punts(&self, class: PuntClass) -> (u64, u64) {
        (self.punt_passed[class as usize].get(), self.punt_limited[class as usize].get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `limits::MAX_SERVERS` costs each worker (README, "Limits"):
    /// a `ServiceCounters` of 56 bytes per server slot, every slot
    /// allocated with the worker's counters, 3.5 MiB at 65,536.
    #[test]
    fn a_workers_server_counters_cost_56_bytes_a_slot() {
        let c = WorkerCounters::default();
        let bytes = core::mem::size_of_val(&*c.servers);
        assert_eq!(c.servers.len(), crate::limits::MAX_SERVERS);
        assert_eq!(bytes, 56 * crate::limits::MAX_SERVERS, "the README's figure");
        println!("server counters per worker: {bytes} B ({:.2} MiB)", bytes as f64 / 1048576.0);
    }

    #[test]
    fn names_are_unique_and_indexed() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }

    #[test]
    fn sync_counters_by_name() {
        let c = WorkerCounters::default();
        c.sync.sent.add(3);
        c.sync.count_failure(InstallFailure::NoServer);
        c.sync.count_failure(InstallFailure::NoServer);
        assert_eq!(c.sync.install_failed(InstallFailure::NoServer), 2);
        assert_eq!(c.sync.install_failed_total(), 2);
        let named: Vec<_> = c.sync.named().collect();
        assert_eq!(named.len(), 4 + InstallFailure::COUNT);
        assert!(named.contains(&("sent", 3)));
        assert!(named.contains(&("install-failed-no-server", 2)));
        for (i, r) in InstallFailure::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
            assert_eq!(named[4 + i].0, format!("install-failed-{}", r.name()));
        }
    }

    #[test]
    fn drops_count_per_reason() {
        let c = WorkerCounters::default();
        c.count_drop(DropReason::RuntFrame);
        c.count_drops(DropReason::TxQueueFull, 3);
        assert_eq!(c.drops(DropReason::RuntFrame), 1);
        assert_eq!(c.drops(DropReason::TxQueueFull), 3);
        assert_eq!(c.drops(DropReason::NoVirtualServer), 0);
        assert_eq!(c.total_drops(), 4);
    }
}
