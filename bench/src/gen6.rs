//! IPv6 frames for the harness (issue 24): the IPv4 generator's clients
//! with IPv6 addresses (client `n` is 2001:db8:12::/96 and client `n`'s IPv4
//! address in the low 32 bits), a TCP segment in a 74-byte frame, patched
//! per packet with incremental checksum updates, and the check of a
//! forwarded NAT frame.

use crate::gen::{client, Out, CLIENT_MAC, PORT_MAC, SERVERS, SERVER_MAC, SERVER_PORT, VPORT};
use furiwake_dataplane::wire::checksum;

pub const FRAME_LEN6: usize = 74;
pub const VIP6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
/// Clients' /96.
const CLIENT_NET6: [u8; 12] = [0x20, 0x01, 0x0d, 0xb8, 0, 0x12, 0, 0, 0, 0, 0, 0];

pub fn server6(i: usize) -> [u8; 16] {
    let mut a = [0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11];
    a[15] += i as u8;
    a
}

/// Client `n`'s IPv6 address and port.
#[inline(always)]
pub fn client6(n: u32) -> ([u8; 16], u16) {
    let (ip4, port) = client(n);
    let mut a = [0u8; 16];
    a[..12].copy_from_slice(&CLIENT_NET6);
    a[12..].copy_from_slice(&ip4);
    (a, port)
}

/// A TCP segment in an IPv6 frame, checksum filled.
pub fn segment6(src: [u8; 16], sport: u16, dst: [u8; 16], dport: u16, seq: u32, flags: u8, src_mac: [u8; 6]) -> [u8; FRAME_LEN6] {
    let mut f = [0u8; FRAME_LEN6];
    f[0..6].copy_from_slice(&PORT_MAC);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    f[14] = 0x60;
    f[18..20].copy_from_slice(&20u16.to_be_bytes());
    f[20] = 6;
    f[21] = 64;
    f[22..38].copy_from_slice(&src);
    f[38..54].copy_from_slice(&dst);
    f[54..56].copy_from_slice(&sport.to_be_bytes());
    f[56..58].copy_from_slice(&dport.to_be_bytes());
    f[58..62].copy_from_slice(&seq.to_be_bytes());
    f[66] = 0x50;
    f[67] = flags;
    f[68..70].copy_from_slice(&65535u16.to_be_bytes());
    let ps = furiwake_dataplane::wire::ipv6::pseudo_header(src.into(), dst.into(), 6, 20);
    let c = !checksum::fold(checksum::sum(&f[54..74], ps));
    f[70..72].copy_from_slice(&c.to_be_bytes());
    f
}

fn rd16(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

fn rd32(f: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([f[at], f[at + 1], f[at + 2], f[at + 3]])
}

/// Replaces the low 32 bits of the address at `ip_at` (a client's), the
/// port at `port_at` and the sequence number, updating the TCP checksum
/// incrementally (IPv6 has no header checksum).
#[inline(always)]
fn patch6(f: &mut [u8], ip_at: usize, port_at: usize, ip: [u8; 16], port: u16, seq: u32) {
    let (old_ip, new_ip) = (rd32(f, ip_at + 12), u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]));
    let (old_port, old_seq) = (rd16(f, port_at), rd32(f, 58));
    f[ip_at + 12..ip_at + 16].copy_from_slice(&ip[12..]);
    f[port_at..port_at + 2].copy_from_slice(&port.to_be_bytes());
    f[58..62].copy_from_slice(&seq.to_be_bytes());
    let mut tc = checksum::update32(rd16(f, 70), old_ip, new_ip);
    tc = checksum::update16(tc, old_port, port);
    tc = checksum::update32(tc, old_seq, seq);
    f[70..72].copy_from_slice(&tc.to_be_bytes());
}

/// IPv6 templates per TCP flag combination, patched per packet.
pub struct Templates6 {
    to_vip: [[u8; FRAME_LEN6]; 3],
    from_server: [[u8; FRAME_LEN6]; SERVERS],
    synack_from_server: [[u8; FRAME_LEN6]; SERVERS],
}

impl Default for Templates6 {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates6 {
    pub fn new() -> Self {
        use crate::gen::{ACK, RST, SYN};
        let (c, p) = client6(0);
        let to_vip = [SYN, ACK, RST].map(|fl| segment6(c, p, VIP6, VPORT, 0, fl, CLIENT_MAC));
        let from_server = core::array::from_fn(|i| segment6(server6(i), SERVER_PORT, c, p, 0, ACK, SERVER_MAC));
        let synack_from_server = core::array::from_fn(|i| segment6(server6(i), SERVER_PORT, c, p, 0, SYN | ACK, SERVER_MAC));
        Self { to_vip, from_server, synack_from_server }
    }

    /// Client `n` to the VIP; `flags` one of SYN, ACK, RST.
    #[inline(always)]
    pub fn to_vip(&self, n: u32, flags: u8, out: &mut [u8]) {
        use crate::gen::{RST, SYN};
        let t = match flags {
            SYN => &self.to_vip[0],
            RST => &self.to_vip[2],
            _ => &self.to_vip[1],
        };
        out[..FRAME_LEN6].copy_from_slice(t);
        let (ip, port) = client6(n);
        patch6(out, 22, 54, ip, port, if flags == RST { n.wrapping_add(1) } else { n });
    }

    /// Server `server`'s segment to client `n` (NAT), SYN-ACK or ACK.
    #[inline(always)]
    pub fn server_segment(&self, n: u32, server: usize, syn: bool, out: &mut [u8]) {
        let t = if syn { &self.synack_from_server } else { &self.from_server };
        out[..FRAME_LEN6].copy_from_slice(&t[server % SERVERS]);
        let (ip, port) = client6(n);
        patch6(out, 38, 56, ip, port, n);
    }
}

/// Checks a forwarded IPv6 NAT frame: MACs, hop limit, addresses, the
/// TCP checksum (recomputed in full). The client is its sequence number
/// (less one for a reset).
pub fn check6(f: &[u8]) -> Result<Out, &'static str> {
    if f.len() < FRAME_LEN6 || f[12..14] != [0x86, 0xdd] {
        return Err("not IPv6");
    }
    if f[21] != 63 {
        return Err("hop limit not decremented");
    }
    let (src, dst): ([u8; 16], [u8; 16]) = (f[22..38].try_into().unwrap_or_default(), f[38..54].try_into().unwrap_or_default());
    let ps = furiwake_dataplane::wire::ipv6::pseudo_header(src.into(), dst.into(), 6, u32::from(rd16(f, 18)));
    if checksum::fold(checksum::sum(&f[54..54 + usize::from(rd16(f, 18))], ps)) != 0xffff {
        return Err("TCP checksum");
    }
    let n = rd32(f, 58).wrapping_sub(u32::from(f[67] & crate::gen::RST != 0));
    let (cip, cport) = client6(n);
    if let Some(server) = (0..SERVERS).find(|i| server6(*i) == dst) {
        if rd16(f, 56) != SERVER_PORT || f[0..6] != SERVER_MAC || src != cip || rd16(f, 54) != cport {
            return Err("NAT over IPv6: server port, MAC or the client's source");
        }
        return Ok(Out::ToServer { n, server, src: [0; 4], sport: cport });
    }
    if src == VIP6 && rd16(f, 54) == VPORT && dst == cip && rd16(f, 56) == cport && f[0..6] == CLIENT_MAC {
        return Ok(Out::ToClient { n });
    }
    Err("addresses not rewritten")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patched_templates_equal_fresh_segments() {
        use crate::gen::{ACK, SYN};
        let t = Templates6::new();
        let mut f = [0u8; FRAME_LEN6];
        for n in [0u32, 1, 255, 65_535, 9_999_999, (1 << 25) + 7] {
            t.to_vip(n, SYN, &mut f);
            let (c, p) = client6(n);
            assert_eq!(f, segment6(c, p, VIP6, VPORT, n, SYN, CLIENT_MAC), "client {n}");
            t.server_segment(n, 2, false, &mut f);
            assert_eq!(f, segment6(server6(2), SERVER_PORT, c, p, n, ACK, SERVER_MAC));
        }
    }
}
