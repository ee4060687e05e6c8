//! The connection entry: one cache line holding both directions' keys,
//! both hash-chain links, the unreplied-list links and what forwarding
//! needs.

use super::key::{Addr, FlowKey};
use super::marks::TrackBits;
use super::state::FlowState;
use bitflags::bitflags;

/// How a connection is forwarded. Stored in its entry: the pipeline reads
/// it rather than inferring it from addresses (a direct-server-return
/// entry could not be told apart that way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[repr(u8)]
pub enum Forwarding {
    /// Destination NAT in, source NAT back (seed 001): servers route via us.
    #[default]
    Nat,
    /// Source and destination NAT (seed 000 "Src&DstNAT"): servers need no
    /// route back.
    FullNat,
    /// MAT, direct server return on one L2 segment (seeds 001, 003): only
    /// the destination MAC changes, to the server's; the server holds the
    /// VIP and answers the client directly. The box sees the client's
    /// direction only (IPVS's DR), so the entry's state follows it alone
    /// (`tcp::next_state_input_only`).
    DsrL2,
    /// L3 direct server return (seed 003): the destination address becomes
    /// the server's and the DSCP says which VIP it was (the virtual
    /// server's `dscp`); the server restores the VIP from it and answers
    /// the client directly, through routers.
    DsrDscp,
    /// L3 direct server return by encapsulation (seed 003, Katran): the
    /// client's packet, untouched, inside IPIP, GRE or GUE to the server's
    /// address (`forward::tunnel`); the server decapsulates, holds the VIP
    /// and answers the client directly.
    DsrTunnel,
    /// Source NAT of a connection a server opens itself (`[[snat]]`): the
    /// "client" is the server, the "VIP" the host it reaches, the local
    /// address the rule's; routed out by the destination
    /// (`Snapshot::route`), the answer back to the server's MAC.
    Snat,
    /// A gateway service (firewall load balancing, seed 002): transparent
    /// and stateless, any destination arriving on its link to the MAC of a
    /// pool member picked by a symmetric hash of the two addresses
    /// (`pipeline::transit`). No entry ever has it.
    Gateway,
    /// The exception path in: a client's connection to a virtual server
    /// the appliance's own stack serves (`protocol = "http"`: the L7
    /// engine), delivered untouched to the host link (the TAP whose kernel
    /// side sits in the appliance's network namespace), its answers from
    /// there back to the client. Not replicated (the peer's kernel holds no
    /// socket for it).
    Local,
    /// The exception path out: a connection the appliance's own stack
    /// opens from one of its source addresses (the L7 engine to a server),
    /// routed out untouched by its destination as `Snat` is, the answer
    /// back to the host link. Not replicated.
    LocalOut,
}

impl Forwarding {
    /// Direct server return: the replies do not cross the box.
    #[inline(always)]
    pub fn is_dsr(self) -> bool {
        matches!(self, Forwarding::DsrL2 | Forwarding::DsrDscp | Forwarding::DsrTunnel)
    }

    /// One end is the appliance's own stack (the exception path).
    #[inline(always)]
    pub fn is_local(self) -> bool {
        matches!(self, Forwarding::Local | Forwarding::LocalOut)
    }
}

impl Forwarding {
    /// The mode whose discriminant is `b` (`mode as u8`), for decoding
    /// state sync records; None for an unknown byte.
    pub fn from_u8(b: u8) -> Option<Forwarding> {
        match b {
            0 => Some(Forwarding::Nat),
            1 => Some(Forwarding::FullNat),
            2 => Some(Forwarding::DsrL2),
            3 => Some(Forwarding::DsrDscp),
            4 => Some(Forwarding::DsrTunnel),
            5 => Some(Forwarding::Snat),
            _ => None,
        }
    }
}

bitflags! {
    /// Facts about an entry that the pipeline records at its creation.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
    pub struct EntryFlags: u8 {
        /// Placed by a persistence record, which it references until it
        /// ends (`lb::persist`).
        const PERSIST = 1;
        /// Installed from the HA peer's state sync (`ctl::events`) and not
        /// yet seen a packet here: the peer is the authority on it, so its
        /// idle expiry here is not reported back (the peer's copy may be
        /// busy). The first packet forwarded here clears it.
        const SYNCED = 2;
        /// full-NAT, installed from the HA peer: the local port was not
        /// free here (`LocalPorts::reserve`), so the entry does not hold
        /// it and its end does not free it.
        const BORROWED_PORT = 4;
        /// Its SYN was answered by the box's SYN proxy with a cookie
        /// (`pipeline::synproxy`): sequence numbers and timestamps are
        /// translated between the two sides (`conntrack::Track`).
        const SYN_PROXY = 8;
        /// Answered (Linux conntrack's `IPS_ASSURED`): the TCP connection
        /// left its handshake (ESTABLISHED, or a FIN from SYN_RECV) or the
        /// UDP flow got its server's reply here,
        /// or it came from the HA peer (which reports only those). Only
        /// such entries, SYN-proxied ones and direct-server-return UDP are
        /// reported to the peer (`pipeline::replicate`); set with sync on.
        const ASSURED = 16;
        /// full-NAT TCP of a `proxy_protocol` service: a PROXY header
        /// goes before the client's stream (`pipeline::pheader`);
        /// `Track::seq_delta` holds the client's ISN + 1, where it goes.
        const PROXY_HEADER = 32;
    }
}

/// No entry: the end of a chain or list, or an entry in no unreplied list.
pub(super) const NIL: u32 = u32::MAX;
/// `emb_prev` of a free entry (ids stay below 2^30: never an id).
pub(super) const FREE: u32 = u32::MAX - 1;

/// Everything needed to create an entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowInit<A: Addr = u32> {
    /// IP protocol: 6 TCP, 17 UDP, 1 ICMP. Others are tracked like UDP.
    pub proto: u8,
    pub client_ip: A,
    pub client_port: u16,
    pub vip: A,
    pub vport: u16,
    pub server_ip: A,
    pub server_port: u16,
    /// Full-NAT source; for plain NAT equal to the client's.
    pub local_ip: A,
    pub local_port: u16,
    /// Virtual-server index in the caller's config snapshot.
    pub vs: u16,
    /// Real-server index in the caller's config snapshot.
    pub server: u16,
    /// DPDK port id the client side uses.
    pub client_port_id: u8,
    /// Source MAC of the first original-direction packet; replies go back
    /// to it.
    pub client_mac: [u8; 6],
    /// How the connection is forwarded.
    pub mode: Forwarding,
    pub flags: EntryFlags,
}

/// One connection: one cache line.
///
/// The data fields are public to read: the table hands out only shared
/// references (`get`, `iter`, `expire`'s callback) and `FlowMut`, so the
/// keyed fields cannot change while the entry is indexed. The hash-chain and
/// unreplied-list links are private.
///
/// `#[repr(C)]` with the fields ordered by size leaves no padding inside;
/// both keys and both chain links sit in the same line, so a lookup touches
/// one line per chain hop. No timer links: expiry is by sweep
/// (`conntrack::sweep`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct Flow<A: Addr = u32> {
    pub client_ip: A,
    pub vip: A,
    pub server_ip: A,
    pub local_ip: A,
    pub expire: u32,
    /// Next link in the original key's chain; on a free entry, the next
    /// free id.
    pub(super) orig_next: u32,
    /// Next link in the reply key's chain.
    pub(super) reply_next: u32,
    /// The unreplied list the entry is in (`table::unreplied`, its state
    /// says which): previous and next entry id, `NIL` at the ends and when
    /// in none; `FREE` on a free entry.
    pub(super) emb_prev: u32,
    pub(super) emb_next: u32,
    pub client_port: u16,
    pub vport: u16,
    pub server_port: u16,
    pub local_port: u16,
    pub vs: u16,
    pub server: u16,
    /// State sync: the entry's last-change counter, carried in its records
    /// (`ctl::events::SyncRecord::version`), one lineage across the pair:
    /// bumped at each reported change, taken from the peer's record on an
    /// install.
    pub(super) version: u16,
    pub client_mac: [u8; 6],
    pub proto: u8,
    pub state: FlowState,
    pub flags: EntryFlags,
    /// `tcp::FIN_ORIGINAL` / `tcp::FIN_REPLY`.
    pub(super) fin_seen: u8,
    pub client_port_id: u8,
    pub mode: Forwarding,
    /// The tracking's bits that live in the entry (`super::marks`).
    pub(super) track_bits: TrackBits,
}

// IPv4: one cache line. IPv6: the four addresses fill the first line and
// the rest spills into a second (128 bytes); a lookup then touches both.
const _: () = assert!(core::mem::size_of::<Flow<u32>>() == 64);
const _: () = assert!(core::mem::align_of::<Flow<u32>>() == 64);
const _: () = assert!(core::mem::size_of::<Flow<u128>>() == 128);

/// The server slot of an entry of virtual server `vs`, server `server`,
/// forwarded by `mode` (`Flow::server_slot`): past the server arrays for
/// an entry that has no real server, whatever its `server` holds: source
/// NAT, the box's own stack at either end (`Local`: an `http` virtual
/// server's connection, whose `vs` is real), and an entry of no virtual
/// server (`vs` past `MAX_SERVICES`).
#[inline]
pub fn server_slot(vs: u16, server: u16, mode: Forwarding) -> usize {
    let serverless = matches!(mode, Forwarding::Snat | Forwarding::Gateway) || mode.is_local();
    if !serverless && usize::from(vs) < crate::limits::MAX_SERVICES {
        usize::from(server)
    } else {
        usize::MAX
    }
}

impl<A: Addr> Flow<A> {
    pub(super) const FREE: Self = Flow {
        client_ip: A::ZERO,
        vip: A::ZERO,
        server_ip: A::ZERO,
        local_ip: A::ZERO,
        expire: 0,
        orig_next: NIL,
        reply_next: NIL,
        emb_prev: FREE,
        emb_next: NIL,
        client_port: 0,
        vport: 0,
        server_port: 0,
        local_port: 0,
        vs: 0,
        server: 0,
        version: 0,
        client_mac: [0; 6],
        proto: 0,
        state: FlowState::Close,
        flags: EntryFlags::empty(),
        fin_seen: 0,
        client_port_id: 0,
        mode: Forwarding::Nat,
        track_bits: TrackBits { known: 0, wscale: 0 },
    };

    pub(super) fn from_init(init: &FlowInit<A>, state: FlowState, expire: u32) -> Self {
        Flow {
            client_ip: init.client_ip,
            vip: init.vip,
            server_ip: init.server_ip,
            local_ip: init.local_ip,
            expire,
            client_port: init.client_port,
            vport: init.vport,
            server_port: init.server_port,
            local_port: init.local_port,
            vs: init.vs,
            server: init.server,
            client_mac: init.client_mac,
            proto: init.proto,
            state,
            flags: init.flags,
            mode: init.mode,
            client_port_id: init.client_port_id,
            emb_prev: NIL,
            ..Self::FREE
        }
    }

    /// Free entries are marked `FREE` in `emb_prev`; live ones never.
    #[inline(always)]
    pub(super) fn is_live(&self) -> bool {
        self.emb_prev != FREE
    }

    /// The key of original-direction packets: client -> VIP.
    #[inline]
    pub fn original_key(&self) -> FlowKey<A> {
        FlowKey {
            src_ip: self.client_ip,
            dst_ip: self.vip,
            src_port: self.client_port,
            dst_port: self.vport,
            proto: self.proto,
        }
    }

    /// The key of reply-direction packets: server -> local address.
    #[inline]
    pub fn reply_key(&self) -> FlowKey<A> {
        FlowKey {
            src_ip: self.server_ip,
            dst_ip: self.local_ip,
            src_port: self.server_port,
            dst_port: self.local_port,
            proto: self.proto,
        }
    }

    #[inline(always)]
    pub(super) fn matches(&self, key: &FlowKey<A>, dir_bit: u32) -> bool {
        if dir_bit == 0 {
            self.client_ip == key.src_ip
                && self.vip == key.dst_ip
                && self.client_port == key.src_port
                && self.vport == key.dst_port
                && self.proto == key.proto
        } else {
            self.server_ip == key.src_ip
                && self.local_ip == key.dst_ip
                && self.server_port == key.src_port
                && self.local_port == key.dst_port
                && self.proto == key.proto
        }
    }

    #[inline(always)]
    pub(super) fn next_link(&self, dir_bit: u32) -> u32 {
        if dir_bit == 0 {
            self.orig_next
        } else {
            self.reply_next
        }
    }

    pub fn proto(&self) -> u8 {
        self.proto
    }
    pub fn client_ip(&self) -> A {
        self.client_ip
    }
    pub fn client_port(&self) -> u16 {
        self.client_port
    }
    pub fn vip(&self) -> A {
        self.vip
    }
    pub fn vport(&self) -> u16 {
        self.vport
    }
    pub fn server_ip(&self) -> A {
        self.server_ip
    }
    pub fn server_port(&self) -> u16 {
        self.server_port
    }
    pub fn local_ip(&self) -> A {
        self.local_ip
    }
    pub fn local_port(&self) -> u16 {
        self.local_port
    }
    pub fn vs(&self) -> u16 {
        self.vs
    }
    pub fn server(&self) -> u16 {
        self.server
    }
    /// The snapshot slot of the entry's server, for the server arrays
    /// (`Snapshot::servers`, the counters): out of their range for an
    /// entry with no real server (source NAT, the box's own stack at
    /// either end: see `server_slot`), so every `u16` can be a server's
    /// slot (`limits::MAX_SERVERS`, 65,536).
    #[inline]
    pub fn server_slot(&self) -> usize {
        server_slot(self.vs, self.server, self.mode)
    }
    pub fn client_port_id(&self) -> u8 {
        self.client_port_id
    }
    pub fn client_mac(&self) -> [u8; 6] {
        self.client_mac
    }
    pub fn flags(&self) -> EntryFlags {
        self.flags
    }
    pub fn state(&self) -> FlowState {
        self.state
    }
    /// The tick at which the entry expires unless refreshed.
    pub fn expire(&self) -> u32 {
        self.expire
    }
    /// Which directions have sent FIN (`tcp::FIN_ORIGINAL`,
    /// `tcp::FIN_REPLY`).
    pub fn fin_seen(&self) -> u8 {
        self.fin_seen
    }
    /// State sync: the last-change counter (`Flow::version`).
    pub fn version(&self) -> u16 {
        self.version
    }

}

/// Mutable access to a live entry, limited to the fields that are not
/// keyed (`FlowTable::get_mut`). Reads through `Deref`.
#[derive(Debug)]
pub struct FlowMut<'a, A: Addr = u32>(pub(super) &'a mut Flow<A>);

impl<A: Addr> core::ops::Deref for FlowMut<'_, A> {
    type Target = Flow<A>;

    fn deref(&self) -> &Flow<A> {
        self.0
    }
}

impl<A: Addr> FlowMut<'_, A> {
    /// Replaces the caller's bits, but for `SYN_PROXY` and
    /// `PROXY_HEADER`: only `FlowTable::set_flags` changes those (a side
    /// record comes with them, `FlowTable::proxy`).
    pub fn set_flags(&mut self, flags: EntryFlags) {
        let side = EntryFlags::SYN_PROXY | EntryFlags::PROXY_HEADER;
        self.0.flags = flags.difference(side) | self.0.flags.intersection(side);
    }

    /// Records a new client-side MAC (the client's next hop changed).
    pub fn set_client_mac(&mut self, mac: [u8; 6]) {
        self.0.client_mac = mac;
    }

    /// Records the DPDK port the client side now uses.
    pub fn set_client_port_id(&mut self, port: u8) {
        self.0.client_port_id = port;
    }

    /// Re-points the entry at another config-snapshot index for its
    /// virtual and real server (after a reload renumbered them); the
    /// addresses, which are keyed, stay.
    pub fn set_indices(&mut self, vs: u16, server: u16) {
        self.0.vs = vs;
        self.0.server = server;
    }

    /// State sync: sets the last-change counter (`Flow::version`).
    pub fn set_version(&mut self, v: u16) {
        self.0.version = v;
    }
}
