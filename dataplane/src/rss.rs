//! Receive-side scaling: the Toeplitz hash a NIC spreads packets over its
//! RX queues by (Microsoft's "Receive-Side Scaling" specification; DPDK's
//! `rte_softrss`), the keys Furiwake programs into its ports, and
//! `Steering`, the software mirror of where those ports put a connection,
//! which is what `pipeline::owner` computes. When the two agree, the worker
//! that receives a packet is the worker that owns its connection, and
//! nothing is handed over between workers.
//!
//! A device hashes the whole 4-tuple (source address, destination address,
//! source port, destination port, in that order), and the queue is
//! `RETA[hash % RETA_SIZE]`: only the hash's low `INDEX_BITS` bits matter.
//! Toeplitz is linear: input bit `i` XORs the key's 32 bits from bit `i` on
//! into the hash, so its effect on the low bits is key bits `i + 25 ..=
//! i + 31`. Zeroing those key bits for every bit of a field takes the field
//! out of the queue choice, which gives what DPDK calls
//! `RTE_ETH_RSS_L3_SRC_ONLY | L4_SRC_ONLY` on any Toeplitz device (virtio
//! included, which has no such flags):
//!
//! - the **client** key (`Layout::Client`, the ports clients reach): the
//!   destination's windows are zero, so the queue depends on the source
//!   address and port alone, the client's;
//! - the **server** key (`Layout::Server`, the ports behind which the real
//!   servers are): the source's windows are zero and the destination's are
//!   the client key's source windows, so a reply to `client:port` gets the
//!   very index the client's own packets got on the other port.
//!
//! NAT replies therefore come back to the worker that saw the client, and a
//! full-NAT connection's local port is chosen among those whose
//! `(local address, port)` index is the owner's (`forward::LocalPorts`).
//! Every port also gets the same RETA, a balanced shuffle of the workers
//! drawn with the key. Both derive from the pair's ownership key
//! (`WorkerConfig::owner_key`), so an HA pair steers alike.
//!
//! The key bits that choose the queue are secret (drawn per boot, or the
//! pair's): a client cannot compute offline which worker its source ports
//! land on. The map is linear, though, and full-NAT local ports are drawn
//! from each worker's share: a server that sees many (client, local port)
//! pairs (PROXY headers) could solve for it and aim a flood at one worker,
//! which each worker's own defence limits then meet (docs/architecture.md,
//! "Workers and RSS"). One-arm set-ups (clients and servers on one port)
//! get the `Spread` key: every direction is handed over as needed, evenly;
//! so are a port's packets without RSS (`net_af_packet`, one queue).

/// The RSS key length Furiwake programs (Intel's, virtio's: 40 bytes).
pub const KEY_LEN: usize = 40;

/// The indirection table Furiwake programs and mirrors: `RETA_SIZE`
/// entries, repeated over a larger table. Every RSS NIC in use has at
/// least 128 (virtio, ixgbe, igb, ena; i40e and mlx5 512). A device with a
/// smaller table is handed over from (its queue choice uses fewer bits).
pub const RETA_SIZE: usize = 128;

/// log2 of `RETA_SIZE`: the hash bits that choose the queue.
pub const INDEX_BITS: usize = 7;

const _: () = assert!(1 << INDEX_BITS == RETA_SIZE);

/// A port's RSS key, by the side of the connections it faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Clients reach the box through it: the queue follows the source.
    Client,
    /// The real servers are behind it: the queue follows the destination.
    Server,
    /// Both sides on one port (one-arm): a key of its own over the whole
    /// 4-tuple, as a NIC's, so neither direction piles onto few queues
    /// (a server's replies would, by the client key); packets reach their
    /// owner by hand-off.
    Spread,
}

/// The IPv4 4-tuple's fields, as bit ranges of the hash input.
const SRC: (usize, usize) = (0, 32);
const DST: (usize, usize) = (32, 64);
const SPORT: (usize, usize) = (64, 80);
const DPORT: (usize, usize) = (80, 96);

/// The Toeplitz hash of `input` under `key`: for every set bit `i` of the
/// input (most significant first), the 32 key bits from bit `i` on XORed
/// in. Input longer than the key allows (`KEY_LEN - 4` bytes) sees zero key
/// bits past the end.
pub fn toeplitz(key: &[u8; KEY_LEN], input: &[u8]) -> u32 {
    let mut hash = 0u32;
    let [k0, k1, k2, k3, ..] = *key;
    let mut window = u32::from_be_bytes([k0, k1, k2, k3]);
    for (i, byte) in input.iter().enumerate() {
        let next = key.get(i + 4).copied().unwrap_or(0);
        for b in 0..8 {
            if byte & (0x80 >> b) != 0 {
                hash ^= window;
            }
            window = (window << 1) | u32::from((next >> (7 - b)) & 1);
        }
    }
    hash
}

/// The hash input of an IPv4 TCP or UDP packet.
pub fn ipv4_input(src: u32, dst: u32, sport: u16, dport: u16) -> [u8; 12] {
    let mut b = [0u8; 12];
    for (d, s) in b.iter_mut().zip(src.to_be_bytes().into_iter().chain(dst.to_be_bytes()).chain(sport.to_be_bytes()).chain(dport.to_be_bytes())) {
        *d = s;
    }
    b
}

/// Both keys, derived from one seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keys {
    pub client: [u8; KEY_LEN],
    pub server: [u8; KEY_LEN],
    pub spread: [u8; KEY_LEN],
}

fn get_bit(key: &[u8; KEY_LEN], i: usize) -> bool {
    key.get(i / 8).is_some_and(|b| b & (0x80 >> (i % 8)) != 0)
}

fn set_bit(key: &mut [u8; KEY_LEN], i: usize, v: bool) {
    if let Some(b) = key.get_mut(i / 8) {
        let m = 0x80 >> (i % 8);
        *b = if v { *b | m } else { *b & !m };
    }
}

/// The key bits that carry `field`'s effect on the queue index.
fn index_bits(field: (usize, usize)) -> std::ops::RangeInclusive<usize> {
    (field.0 + 32 - INDEX_BITS)..=(field.1 - 1 + 31)
}

/// splitmix64 (Steele, Lea, Flood 2014): the key's bits from the seed.
struct Draw(u64);

impl Draw {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn key(&mut self) -> [u8; KEY_LEN] {
        let mut k = [0u8; KEY_LEN];
        for c in k.chunks_mut(8) {
            for (d, s) in c.iter_mut().zip(self.next().to_le_bytes()) {
                *d = s;
            }
        }
        k
    }
}

impl Keys {
    /// The client and server keys of `draw`'s next bits (module docs).
    fn draw(draw: &mut Draw) -> Self {
        let mut client = draw.key();
        for i in index_bits(DST).chain(index_bits(DPORT)) {
            set_bit(&mut client, i, false);
        }
        // The server key's source windows are zero, and its destination
        // windows are the client key's source windows moved along: a client
        // bit that would land in a zero window must be zero itself.
        let server_zero = |i: usize| index_bits(SRC).contains(&i) || index_bits(SPORT).contains(&i);
        for i in index_bits(SRC) {
            if server_zero(i + (DST.0 - SRC.0)) {
                set_bit(&mut client, i, false);
            }
        }
        for i in index_bits(SPORT) {
            if server_zero(i + (DPORT.0 - SPORT.0)) {
                set_bit(&mut client, i, false);
            }
        }
        let mut server = draw.key();
        for i in index_bits(SRC).chain(index_bits(SPORT)) {
            set_bit(&mut server, i, false);
        }
        for i in index_bits(SRC) {
            set_bit(&mut server, i + (DST.0 - SRC.0), get_bit(&client, i));
        }
        for i in index_bits(SPORT) {
            set_bit(&mut server, i + (DPORT.0 - SPORT.0), get_bit(&client, i));
        }
        Keys { client, server, spread: draw.key() }
    }

    pub fn of(&self, layout: Layout) -> &[u8; KEY_LEN] {
        match layout {
            Layout::Client => &self.client,
            Layout::Server => &self.server,
            Layout::Spread => &self.spread,
        }
    }
}

/// Where the ports' RSS puts a connection, computed in software: the
/// queue index of `(address, port)` on the connection's client side (the
/// source on a client port, the destination on a server port), by table
/// lookups of each byte's share of the linear hash, and the worker the
/// RETA maps it to. The same for every port and, given the seed and the
/// worker count, on every box.
#[derive(Clone, PartialEq, Eq)]
pub struct Steering {
    workers: u16,
    keys: Keys,
    reta: [u16; RETA_SIZE],
    addr: [[u8; 256]; 4],
    port: [[u8; 256]; 2],
}

impl std::fmt::Debug for Steering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Steering").field("workers", &self.workers).finish_non_exhaustive()
    }
}

impl Default for Steering {
    fn default() -> Self {
        Self::new(1, 0)
    }
}

/// The queue index of an IPv4 source address and port under `key`.
fn index_of(key: &[u8; KEY_LEN], addr: u32, port: u16) -> u8 {
    (toeplitz(key, &ipv4_input(addr, 0, port, 0)) as usize % RETA_SIZE) as u8
}

/// The rank over GF(2) of `vectors` (each `INDEX_BITS` wide).
fn rank(vectors: impl Iterator<Item = u8>) -> usize {
    let mut basis = [0u8; INDEX_BITS];
    let mut r = 0;
    for mut v in vectors {
        for b in (0..INDEX_BITS).rev() {
            if v & (1 << b) == 0 {
                continue;
            }
            match basis.get_mut(b) {
                Some(slot) if *slot == 0 => {
                    *slot = v;
                    r += 1;
                    break;
                }
                Some(slot) => v ^= *slot,
                None => break,
            }
        }
    }
    r
}

impl Steering {
    /// The steering of `workers` workers under `seed` (the ownership key):
    /// keys drawn until both the address and the port alone reach every
    /// queue index (each spreads evenly then), and the RETA a shuffle of
    /// `i % workers`. Slow path (a few hundred microseconds).
    pub fn new(workers: u16, seed: u64) -> Self {
        let mut draw = Draw(seed ^ 0x5253_535f_6b65_7973);
        let keys = loop {
            let keys = Keys::draw(&mut draw);
            let bit = |field: (usize, usize), n: usize| -> u8 {
                let (mut a, mut p) = (0u32, 0u16);
                if field == SRC {
                    a = 1 << (31 - n);
                } else {
                    p = 1 << (15 - n);
                }
                index_of(&keys.client, a, p)
            };
            if rank((0..32).map(|n| bit(SRC, n))) == INDEX_BITS && rank((0..16).map(|n| bit(SPORT, n))) == INDEX_BITS {
                break keys;
            }
        };
        let workers = workers.max(1);
        let mut reta = [0u16; RETA_SIZE];
        for (i, r) in reta.iter_mut().enumerate() {
            *r = (i % usize::from(workers)) as u16;
        }
        // Fisher-Yates: every worker keeps its share of entries.
        for i in (1..RETA_SIZE).rev() {
            let j = (draw.next() % (i as u64 + 1)) as usize;
            reta.swap(i, j);
        }
        let mut addr = [[0u8; 256]; 4];
        for (b, table) in addr.iter_mut().enumerate() {
            for (v, slot) in table.iter_mut().enumerate() {
                *slot = index_of(&keys.client, (v as u32) << (24 - 8 * b), 0);
            }
        }
        let mut port = [[0u8; 256]; 2];
        for (b, table) in port.iter_mut().enumerate() {
            for (v, slot) in table.iter_mut().enumerate() {
                *slot = index_of(&keys.client, 0, (v as u16) << (8 - 8 * b));
            }
        }
        Steering { workers, keys, reta, addr, port }
    }

    pub fn workers(&self) -> u16 {
        self.workers
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The RETA every RSS port gets: entry `i` is the queue (= worker) of
    /// index `i`; a larger table repeats it.
    pub fn reta(&self) -> &[u16; RETA_SIZE] {
        &self.reta
    }

    /// The queue index a port's RSS gives `(addr, port)` on the
    /// connection's client side.
    #[inline]
    pub fn index(&self, addr: u32, port: u16) -> usize {
        let [a0, a1, a2, a3] = addr.to_be_bytes();
        let [p0, p1] = port.to_be_bytes();
        let [t0, t1, t2, t3] = &self.addr;
        let [u0, u1] = &self.port;
        // A byte indexes 256 entries: never out of bounds.
        let at = |t: &[u8; 256], b: u8| t.get(usize::from(b)).copied().unwrap_or(0);
        let x = at(t0, a0) ^ at(t1, a1) ^ at(t2, a2) ^ at(t3, a3) ^ at(u0, p0) ^ at(u1, p1);
        usize::from(x) % RETA_SIZE
    }

    /// The worker whose queue `(addr, port)` lands on.
    #[inline]
    pub fn worker(&self, addr: u32, port: u16) -> u16 {
        if self.workers <= 1 {
            return 0;
        }
        self.reta.get(self.index(addr, port)).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests;
