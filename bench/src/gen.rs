//! Frames the harness sends and the checks on what comes back.
//!
//! Clients are numbered: client `n` is 198.18.x.y (RFC 2544's benchmarking
//! range) with a port derived from `n`, and its segments carry `n` as their
//! sequence number so an output packet names its client. Frames are made by
//! patching a template with incremental checksum updates (RFC 1624), as
//! cheap as the harness can make them.

use furiwake_dataplane::wire::checksum;

pub const VIP: [u8; 4] = [192, 0, 2, 100];
pub const VPORT: u16 = 80;
pub const SERVER_PORT: u16 = 8080;
/// full-NAT local addresses are 198.51.101.1 and up (the harness
/// configures 32).
pub const LOCAL_NET: [u8; 3] = [198, 51, 101];
pub const SERVERS: usize = 3;
pub const FRAME_LEN: usize = 60;
pub const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
pub const PORT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xa0];
pub const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 1, 0];

pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const ACK: u8 = 0x10;

pub fn server_ip(i: usize) -> [u8; 4] {
    [198, 51, 100, 11 + i as u8]
}

/// Client `n`'s address and port (distinct for n < 2^26).
#[inline(always)]
pub fn client(n: u32) -> ([u8; 4], u16) {
    let ip = [198, 18 + ((n >> 24) & 1) as u8, (n >> 16) as u8, (n >> 8) as u8];
    let port = 1024 + (n & 0xff) as u16 * 128 + ((n >> 25) as u16 & 127);
    (ip, port)
}

/// A TCP segment as bytes, checksums filled.
pub fn segment(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, seq: u32, flags: u8, src_mac: [u8; 6]) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&PORT_MAC);
    f[6..12].copy_from_slice(&src_mac);
    f[12] = 0x08;
    f[14] = 0x45;
    f[16..18].copy_from_slice(&40u16.to_be_bytes());
    f[22] = 64;
    f[23] = 6;
    f[26..30].copy_from_slice(&src);
    f[30..34].copy_from_slice(&dst);
    let c = checksum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[36..38].copy_from_slice(&dport.to_be_bytes());
    f[38..42].copy_from_slice(&seq.to_be_bytes());
    f[46] = 0x50;
    f[47] = flags;
    f[48..50].copy_from_slice(&65535u16.to_be_bytes());
    let ps = checksum::pseudo_header(src.into(), dst.into(), 6, 20);
    let c = !checksum::fold(checksum::sum(&f[34..54], ps));
    f[50..52].copy_from_slice(&c.to_be_bytes());
    f
}

/// The client a frame (IPv4 at 14) names: its sequence number, less one
/// for a reset (`Templates::to_vip`).
fn client_of(f: &[u8]) -> u32 {
    rd32(f, 38).wrapping_sub(u32::from(f[47] & RST != 0))
}

fn rd16(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

fn rd32(f: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([f[at], f[at + 1], f[at + 2], f[at + 3]])
}

fn wr16(f: &mut [u8], at: usize, v: u16) {
    f[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Replaces (ip at `ip_at`, port at `port_at`) and the sequence number,
/// updating both checksums incrementally.
#[inline(always)]
fn patch(f: &mut [u8], ip_at: usize, port_at: usize, ip: [u8; 4], port: u16, seq: u32) {
    let (old_ip, new_ip) = (rd32(f, ip_at), u32::from_be_bytes(ip));
    let (old_port, old_seq) = (rd16(f, port_at), rd32(f, 38));
    f[ip_at..ip_at + 4].copy_from_slice(&ip);
    wr16(f, port_at, port);
    f[38..42].copy_from_slice(&seq.to_be_bytes());
    let ipc = checksum::update32(rd16(f, 24), old_ip, new_ip);
    wr16(f, 24, ipc);
    let mut tc = checksum::update32(rd16(f, 50), old_ip, new_ip);
    tc = checksum::update16(tc, old_port, port);
    tc = checksum::update32(tc, old_seq, seq);
    wr16(f, 50, tc);
}

/// Templates per TCP flag combination, patched per packet.
pub struct Templates {
    to_vip: [[u8; FRAME_LEN]; 3],
    from_server: [[u8; FRAME_LEN]; SERVERS],
    /// The servers' SYN-ACKs (the handshake that makes entries
    /// ESTABLISHED).
    synack_from_server: [[u8; FRAME_LEN]; SERVERS],
    malformed: [u8; FRAME_LEN],
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    pub fn new() -> Self {
        let (c, p) = client(0);
        let to_vip = [SYN, ACK, RST].map(|fl| segment(c, p, VIP, VPORT, 0, fl, CLIENT_MAC));
        let from_server = core::array::from_fn(|i| segment(server_ip(i), SERVER_PORT, c, p, 0, ACK, SERVER_MAC));
        let synack_from_server = core::array::from_fn(|i| segment(server_ip(i), SERVER_PORT, c, p, 0, SYN | ACK, SERVER_MAC));
        let mut malformed = to_vip[1];
        malformed[24] ^= 0x5a; // IPv4 header checksum wrong
        Self { to_vip, from_server, synack_from_server, malformed }
    }

    /// Client `n` to the VIP; `flags` one of SYN, ACK, RST.
    #[inline(always)]
    pub fn to_vip(&self, n: u32, flags: u8, out: &mut [u8]) {
        let t = match flags {
            SYN => &self.to_vip[0],
            RST => &self.to_vip[2],
            _ => &self.to_vip[1],
        };
        out[..FRAME_LEN].copy_from_slice(t);
        let (ip, port) = client(n);
        // A reset carries the client's next sequence number (its SYN's + 1),
        // as the box's sequence tracking expects (RFC 5961).
        patch(out, 26, 34, ip, port, if flags == RST { n.wrapping_add(1) } else { n });
    }

    /// Server `server` answering client `n`: to the client (NAT) or to
    /// `local` (full-NAT local address and port).
    #[inline(always)]
    pub fn server_reply(&self, n: u32, server: usize, local: Option<([u8; 4], u16)>, out: &mut [u8]) {
        self.server_segment(n, server, local, false, out)
    }

    /// `server_reply` with SYN set (the handshake's second segment) or
    /// not.
    #[inline(always)]
    pub fn server_segment(&self, n: u32, server: usize, local: Option<([u8; 4], u16)>, syn: bool, out: &mut [u8]) {
        let t = if syn { &self.synack_from_server } else { &self.from_server };
        out[..FRAME_LEN].copy_from_slice(&t[server % SERVERS]);
        let (ip, port) = local.unwrap_or_else(|| client(n));
        patch(out, 30, 36, ip, port, n);
    }

    pub fn malformed(&self, out: &mut [u8]) {
        out[..FRAME_LEN].copy_from_slice(&self.malformed);
    }
}

/// What a forwarded packet says, if it is a correct rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    /// Client `n`'s packet to server `server`, from (local ip, port).
    ToServer { n: u32, server: usize, src: [u8; 4], sport: u16 },
    /// A reply to client `n` from the VIP.
    ToClient { n: u32 },
}

/// A client packet as the generator sent it, from the IPv4 header at
/// `f[14..]` on: TTL 64, client to VIP; its client (n, address, port).
fn check_mat(f: &[u8]) -> Option<(u32, [u8; 4], u16)> {
    let n = client_of(f);
    let (cip, cport) = client(n);
    let ok = f[22] == 64 && f[30..34] == VIP && rd16(f, 36) == VPORT && f[26..30] == cip && rd16(f, 34) == cport;
    ok.then_some((n, cip, cport))
}

/// How the worker under test forwards, for `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Nat,
    /// The source is a local address.
    FullNat,
    /// MAT: nothing but the MACs changed (the server is not known from the
    /// frame: reported as 0).
    Mat,
    /// `dsr-tunnel` IPIP: the client's packet untouched inside an outer
    /// header to a server.
    Ipip,
    /// NAT over IPv6 (`gen6`, checked by `gen6::check6`).
    Nat6,
}

/// Checks a forwarded frame: MACs, TTL, addresses, IPv4 and TCP checksums
/// (recomputed in full), as `mode` forwards. `Err` names what is wrong.
pub fn check(f: &[u8], mode: Mode) -> Result<Out, &'static str> {
    if f.len() < 54 || f[12..14] != [0x08, 0x00] {
        return Err("not IPv4");
    }
    if checksum::checksum(&f[14..34]) != 0 {
        return Err("IPv4 header checksum");
    }
    if mode == Mode::Ipip {
        let dst = [f[30], f[31], f[32], f[33]];
        let Some(server) = (0..SERVERS).find(|i| server_ip(*i) == dst) else { return Err("outer destination not a server") };
        if f[23] != 4 || f[0..6] != SERVER_MAC || rd16(f, 16) as usize != f.len() - 14 || f.len() < 74 {
            return Err("outer header");
        }
        let inner = &f[20..];
        return match check_mat(inner) {
            Some((n, cip, cport)) if checksum::checksum(&inner[14..34]) == 0 => Ok(Out::ToServer { n, server, src: cip, sport: cport }),
            _ => Err("the tunnelled packet changed"),
        };
    }
    if mode == Mode::Mat {
        return match check_mat(f) {
            Some((n, cip, cport)) if f[0..6] == SERVER_MAC => Ok(Out::ToServer { n, server: 0, src: cip, sport: cport }),
            _ => Err("MAT changed more than the MACs"),
        };
    }
    let full_nat = mode == Mode::FullNat;
    if f[22] != 63 {
        return Err("TTL not decremented");
    }
    let src: [u8; 4] = [f[26], f[27], f[28], f[29]];
    let dst: [u8; 4] = [f[30], f[31], f[32], f[33]];
    let ps = checksum::pseudo_header(src.into(), dst.into(), 6, rd16(f, 16) - 20);
    if checksum::fold(checksum::sum(&f[34..14 + rd16(f, 16) as usize], ps)) != 0xffff {
        return Err("TCP checksum");
    }
    let n = client_of(f);
    if let Some(server) = (0..SERVERS).find(|i| server_ip(*i) == dst) {
        if rd16(f, 36) != SERVER_PORT || f[0..6] != SERVER_MAC {
            return Err("server port or MAC");
        }
        let (cip, cport) = client(n);
        if full_nat {
            if src[..3] != LOCAL_NET || src[3] == 0 || rd16(f, 34) < 1024 {
                return Err("full-NAT source");
            }
        } else if src != cip || rd16(f, 34) != cport {
            return Err("NAT changed the client source");
        }
        return Ok(Out::ToServer { n, server, src, sport: rd16(f, 34) });
    }
    let (cip, cport) = client(n);
    if src == VIP && rd16(f, 34) == VPORT && dst == cip && rd16(f, 36) == cport && f[0..6] == CLIENT_MAC {
        return Ok(Out::ToClient { n });
    }
    Err("addresses not rewritten")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patched_templates_equal_fresh_segments() {
        let t = Templates::new();
        let mut f = [0u8; FRAME_LEN];
        for n in [0u32, 1, 255, 256, 65_535, 9_999_999, (1 << 25) + 7] {
            t.to_vip(n, SYN, &mut f);
            let (c, p) = client(n);
            assert_eq!(f, segment(c, p, VIP, VPORT, n, SYN, CLIENT_MAC), "client {n}");
            t.server_reply(n, 2, None, &mut f);
            assert_eq!(f, segment(server_ip(2), SERVER_PORT, c, p, n, ACK, SERVER_MAC));
            let local = [198, 51, 101, 7];
            t.server_reply(n, 1, Some((local, 4242)), &mut f);
            assert_eq!(f, segment(server_ip(1), SERVER_PORT, local, 4242, n, ACK, SERVER_MAC));
        }
    }

    #[test]
    fn clients_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for n in (0..1u32 << 26).step_by(4099) {
            assert!(seen.insert(client(n)), "{n}");
        }
        for n in 0..100_000u32 {
            seen.insert(client(n));
        }
    }
}
