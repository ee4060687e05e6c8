//! What identifies a connection: the 5-tuple of each direction, which way
//! a packet travels, entry ids, and the table's time unit.

/// The table's time unit, in milliseconds. Callers pass `now` in ticks.
///
/// Ticks are `u32`: 2^32 ticks of 100 ms are 13.6 years, so wrap-around is
/// not handled.
pub const TICK_MS: u32 = 100;

/// Index of an entry in its table. Stable for the entry's lifetime;
/// recycled after `remove` or expiry.
pub type FlowId = u32;

/// IP protocol numbers (IANA "Assigned Internet Protocol Numbers").
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// An address of one family, as the connection table stores it: IPv4 as
/// `u32::from(Ipv4Addr)` (host order), IPv6 as `u128::from(Ipv6Addr)`.
/// The table, its keys and entries are generic over it, so IPv6 adds wire
/// formats and neighbour discovery without reworking them; each family has
/// its own tables (an IPv4 entry stays one cache line).
pub trait Addr: Copy + Eq + Ord + core::hash::Hash + Default + core::fmt::Debug + Send + Sync + 'static {
    /// The unspecified address (free entries).
    const ZERO: Self;
    /// Address length in bits.
    const BITS: u8;

    /// The address with only its first `prefix` bits kept (the network of
    /// a `/prefix`); `prefix` at or above `BITS` keeps it whole.
    fn masked(self, prefix: u8) -> Self;

    /// The address as std's type, for the control plane's views.
    fn ip(self) -> core::net::IpAddr;

    /// A persistence record's key, (group, address, port), packed so that
    /// a lookup compares one word for IPv4; `Default` is "no key".
    type PersistWord: Copy + Eq + Default + core::hash::Hash + core::fmt::Debug + Send + Sync + 'static;
    fn persist_word(group: u16, ip: Self, port: u16) -> Self::PersistWord;
    /// The value the persistence table's keyed hash mixes.
    fn persist_fold(w: Self::PersistWord) -> u64;
    /// (group, address, port) of a key, for `show persistence`.
    fn persist_parts(w: Self::PersistWord) -> (u16, Self, u16);

    /// (address, port, protocol) as one ordered value, for the snapshot's
    /// sorted indexes: one `u64` comparison per step for IPv4.
    type ServiceKey: Copy + Ord + core::fmt::Debug + Send + Sync + 'static;
    fn service_key(self, port: u16, proto: u8) -> Self::ServiceKey;

    /// 64 bits standing for the address in a hash: the whole address for
    /// IPv4; for IPv6 its halves folded (the keyed mixing after it spreads
    /// them).
    fn fold(self) -> u64;

    /// 32 bits standing for the address in the software mirror of the
    /// ports' RSS (`rss::Steering`): the IPv4 address itself; an IPv6
    /// address folded. (The mirror computes IPv4's Toeplitz input only:
    /// an IPv6 connection's packets reach its owner by hand-off.)
    fn steer_word(self) -> u32;

    /// The prefix one sender's addresses share, for per-source limits: an
    /// IPv4 address, an IPv6 /64 (its low half the sender chooses alone),
    /// and the /128 of an IPv4-mapped address (an IPv4 client translated).
    fn source_prefix(self) -> u8 {
        Self::BITS
    }

    /// The table's hash of a key of this family under `seed`
    /// (`crate::hash`): every bit of the tuple and of the seed reaches the
    /// result.
    fn hash_key(key: &FlowKey<Self>, seed: &crate::hash::Seed) -> u32;
}

impl Addr for u32 {
    const ZERO: Self = 0;
    const BITS: u8 = 32;

    #[inline(always)]
    fn masked(self, prefix: u8) -> Self {
        match prefix {
            0 => 0,
            p if p >= 32 => self,
            p => self & (u32::MAX << (32 - p)),
        }
    }

    fn ip(self) -> core::net::IpAddr {
        core::net::IpAddr::V4(core::net::Ipv4Addr::from(self))
    }

    type PersistWord = u64;
    /// Bit 63 marks a key, so that 0 is none; the group takes bits 48 to
    /// 62 (groups are below 2^15), the port 32 to 47.
    #[inline(always)]
    fn persist_word(group: u16, ip: u32, port: u16) -> u64 {
        1 << 63 | u64::from(group & 0x7fff) << 48 | u64::from(port) << 32 | u64::from(ip)
    }
    #[inline(always)]
    fn persist_fold(w: u64) -> u64 {
        w
    }
    fn persist_parts(w: u64) -> (u16, u32, u16) {
        ((w >> 48) as u16 & 0x7fff, w as u32, (w >> 32) as u16)
    }

    type ServiceKey = u64;
    #[inline(always)]
    fn service_key(self, port: u16, proto: u8) -> u64 {
        u64::from(self) << 24 | u64::from(port) << 8 | u64::from(proto)
    }

    #[inline(always)]
    fn fold(self) -> u64 {
        u64::from(self)
    }

    #[inline(always)]
    fn steer_word(self) -> u32 {
        self
    }

    /// Two rounds of wyhash's multiply-fold (64 x 64 -> 128-bit) over the
    /// 104-bit tuple and the seed.
    #[inline(always)]
    fn hash_key(key: &FlowKey<u32>, seed: &crate::hash::Seed) -> u32 {
        use crate::hash::{mum, S2, S3};
        let a = (u64::from(key.src_ip) << 32) | u64::from(key.dst_ip);
        let b = (u64::from(key.src_port) << 48) | (u64::from(key.dst_port) << 32) | u64::from(key.proto);
        let (lo, hi) = mum(a ^ seed.k0, b ^ seed.k1);
        let (lo, hi) = mum(lo ^ S2, hi ^ S3);
        let h = lo ^ hi;
        (h ^ (h >> 32)) as u32
    }
}

impl Addr for u128 {
    const ZERO: Self = 0;
    const BITS: u8 = 128;

    #[inline(always)]
    fn masked(self, prefix: u8) -> Self {
        match prefix {
            0 => 0,
            p if p >= 128 => self,
            p => self & (u128::MAX << (128 - p)),
        }
    }

    fn ip(self) -> core::net::IpAddr {
        core::net::IpAddr::V6(core::net::Ipv6Addr::from(self))
    }

    type PersistWord = (u128, u64);
    #[inline(always)]
    fn persist_word(group: u16, ip: u128, port: u16) -> (u128, u64) {
        (ip, 1 << 63 | u64::from(group & 0x7fff) << 16 | u64::from(port))
    }
    #[inline(always)]
    fn persist_fold((ip, rest): (u128, u64)) -> u64 {
        ip.fold() ^ rest.rotate_left(32)
    }
    fn persist_parts((ip, rest): (u128, u64)) -> (u16, u128, u16) {
        ((rest >> 16) as u16, ip, rest as u16)
    }

    type ServiceKey = (u128, u32);
    #[inline(always)]
    fn service_key(self, port: u16, proto: u8) -> (u128, u32) {
        (self, u32::from(port) << 8 | u32::from(proto))
    }

    #[inline(always)]
    fn fold(self) -> u64 {
        (self as u64) ^ ((self >> 64) as u64).rotate_left(32)
    }

    #[inline(always)]
    fn steer_word(self) -> u32 {
        // An IPv4 address mapped (a translated connection's IPv4 side) is
        // steered as the IPv4 address, which its packets on the wire are.
        if self >> 32 == 0xffff {
            return self as u32;
        }
        let f = self.fold();
        (f ^ (f >> 32)) as u32
    }

    #[inline(always)]
    fn source_prefix(self) -> u8 {
        if self >> 32 == 0xffff { 128 } else { 64 }
    }

    /// The same multiply-fold over the 296-bit tuple: each address's halves
    /// go through a round of their own first.
    #[inline(always)]
    fn hash_key(key: &FlowKey<u128>, seed: &crate::hash::Seed) -> u32 {
        use crate::hash::{mum, S1, S2, S3};
        let half = |x: u128| ((x >> 64) as u64, x as u64);
        let ((sh, sl), (dh, dl)) = (half(key.src_ip), half(key.dst_ip));
        let (s0, s1) = mum(sh ^ seed.k0, sl ^ S1);
        let (d0, d1) = mum(dh ^ S2, dl ^ S3 ^ seed.k1);
        let b = (u64::from(key.src_port) << 48) | (u64::from(key.dst_port) << 32) | u64::from(key.proto);
        let (lo, hi) = mum(s0 ^ d1 ^ b, s1 ^ d0 ^ S1);
        let h = lo ^ hi;
        (h ^ (h >> 32)) as u32
    }
}

/// A 5-tuple as seen on the wire, of one address family (`Addr`; IPv4 by
/// default). ICMP echo (RFC 792) uses its identifier as both ports.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct FlowKey<A: Addr = u32> {
    pub src_ip: A,
    pub dst_ip: A,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
}

/// Which way a packet travels relative to the connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Dir {
    /// Client -> VIP.
    Original,
    /// Server -> local address.
    Reply,
}
