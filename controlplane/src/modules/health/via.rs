//! Probing a direct-server-return server the way its clients reach it:
//! at the VIP it holds, by its virtual server's forwarding (`dsr-l2`: the
//! VIP at the server's MAC; `dsr-dscp`: its own address with the code;
//! `dsr-tunnel`: encapsulated), so a server that lost the VIP on its
//! loopback, its DSCP rule or its decapsulation fails its check although
//! its own address still answers (as keepalived probes LVS DR real
//! servers, and F5's transparent monitors).
//!
//! The probe stack (smoltcp) keeps talking to the server's own address;
//! frames are translated on the way: out, the destination becomes the VIP
//! (and is marked or encapsulated); in, the server's answer from the VIP
//! to the self IP (punted by the workers, like every probe reply) gets the
//! server's address back as its source. Probes are told apart by their
//! local port.

use furiwake_dataplane::forward::{self, Outer, TunnelKind};
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// How a probe reaches the VIP on its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViaKind {
    /// `dsr-l2`: the VIP as destination, at the server's MAC.
    Mac,
    /// `dsr-dscp`: to the server's address with the virtual server's code.
    Dscp(u8),
    /// `dsr-tunnel`: the VIP as destination, inside the tunnel.
    Tunnel { kind: TunnelKind, port: u16 },
}

/// The VIP a DSR server is probed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via {
    pub vip: Ipv4Addr,
    pub kind: ViaKind,
}

const ETH: usize = 14;

/// The IPv4 TCP/UDP frame's header length, protocol and ports.
fn l4_of(frame: &[u8]) -> Option<(usize, u8, u16, u16)> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = frame.get(ETH..)?;
    let hl = usize::from(ip.first()? & 0x0f) * 4;
    let proto = *ip.get(9)?;
    if hl < 20 || (proto != 6 && proto != 17) {
        return None;
    }
    let p = ip.get(hl..hl + 4)?;
    Some((hl, proto, u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]])))
}

fn addr(frame: &[u8], at: usize) -> Option<u32> {
    frame.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The probes to VIPs in flight, by local port (no other probe takes a
/// port held here: `Probes::start`).
#[derive(Debug, Default)]
pub(super) struct ViaPorts(HashMap<u16, (u32, Via)>);

impl ViaPorts {
    /// Local port `local` now belongs to a probe of `server`: at `via`,
    /// or (`None`) at its own address.
    pub(super) fn set(&mut self, local: u16, server: Ipv4Addr, via: Option<Via>) {
        match via {
            Some(v) => self.0.insert(local, (u32::from(server), v)),
            None => self.0.remove(&local),
        };
    }

    /// The probe on `local` is over.
    pub(super) fn clear(&mut self, local: u16) {
        self.0.remove(&local);
    }

    /// Is `local` a VIP probe's now?
    pub(super) fn holds(&self, local: u16) -> bool {
        self.0.contains_key(&local)
    }

    /// A frame the probe stack sends: a VIP probe's is translated (and
    /// encapsulated, from `self_ip`); the others pass as they are.
    pub(super) fn outbound(&self, mut frame: Vec<u8>, self_ip: Ipv4Addr) -> Vec<u8> {
        let Some((hl, proto, sport, dport)) = l4_of(&frame) else { return frame };
        let Some(&(server, via)) = self.0.get(&sport) else { return frame };
        if addr(&frame, ETH + 16) != Some(server) {
            return frame;
        }
        let vip = u32::from(via.vip);
        let ip_len = frame.get(ETH + 2..ETH + 4).map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
        let Some(ip) = frame.get_mut(ETH..ETH + ip_len) else { return frame };
        match via.kind {
            ViaKind::Mac => forward::rewrite(ip, hl, proto, None, Some((vip, dport)), false),
            ViaKind::Dscp(code) => forward::set_dscp(ip, code),
            ViaKind::Tunnel { kind, port } => {
                forward::rewrite(ip, hl, proto, None, Some((vip, dport)), false);
                let at = ETH + kind.overhead();
                let mut out = vec![0u8; at + ip_len];
                out[..12].copy_from_slice(&frame[..12]);
                out[at..].copy_from_slice(&frame[ETH..ETH + ip_len]);
                let outer = Outer { kind, src: u32::from(self_ip), dst: server, sport: 0xc000 | (sport & 0x3fff), dport: port };
                if forward::encapsulate(&mut out, ip_len, &outer).is_some() {
                    return out;
                }
            }
        }
        frame
    }

    /// A punted frame: the answer to a VIP probe (from the VIP to the
    /// probe's port) gets the server's address back as its source. False:
    /// drop it, the server answered a VIP probe from its own address (a
    /// `dsr-dscp` server without its rule), which a client would not
    /// take either.
    pub(super) fn inbound(&self, frame: &mut [u8]) -> bool {
        let Some((hl, proto, sport, dport)) = l4_of(frame) else { return true };
        let Some(&(server, via)) = self.0.get(&dport) else { return true };
        let src = addr(frame, ETH + 12);
        if src == Some(server) {
            return false;
        }
        if src != Some(u32::from(via.vip)) {
            return true;
        }
        let ip_len = frame.get(ETH + 2..ETH + 4).map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
        if let Some(ip) = frame.get_mut(ETH..ETH + ip_len) {
            forward::rewrite(ip, hl, proto, Some((server, sport)), None, false);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use furiwake_dataplane::testkit::{checksums_ok, ipv4_frame, tcp_header};
    use furiwake_dataplane::wire::EthernetAddress;

    const SELF: [u8; 4] = [198, 51, 100, 1];
    const SRV: [u8; 4] = [198, 51, 100, 12];
    const VIP: [u8; 4] = [192, 0, 2, 100];

    fn probe_syn() -> Vec<u8> {
        ipv4_frame(EthernetAddress([2, 0, 0, 0, 0, 1]), EthernetAddress([2, 0, 0, 0, 0, 0x12]), SELF, SRV, 6, &tcp_header(61000, 80, 0x02, 1024), true)
    }

    fn ports(kind: ViaKind) -> ViaPorts {
        let mut p = ViaPorts::default();
        p.set(61000, Ipv4Addr::from(SRV), Some(Via { vip: Ipv4Addr::from(VIP), kind }));
        p
    }

    #[test]
    fn each_mode_reaches_the_vip_as_a_client_would() {
        let syn = probe_syn();
        let out = ports(ViaKind::Mac).outbound(syn.clone(), Ipv4Addr::from(SELF));
        assert_eq!((&out[0..6], &out[30..34], &out[26..30]), (&syn[0..6], &VIP[..], &SELF[..]), "MAT: the VIP at the server's MAC");
        assert!(checksums_ok(&out));
        let out = ports(ViaKind::Dscp(46)).outbound(syn.clone(), Ipv4Addr::from(SELF));
        assert_eq!((out[15] >> 2, &out[30..34]), (46, &SRV[..]), "DSCP: the server's address, marked");
        assert!(checksums_ok(&out));
        let out = ports(ViaKind::Tunnel { kind: TunnelKind::Gre, port: 6080 }).outbound(syn.clone(), Ipv4Addr::from(SELF));
        assert_eq!((out[23], &out[26..30], &out[30..34]), (47, &SELF[..], &SRV[..]), "GRE from the self IP to the server");
        assert_eq!(&out[ETH + 24 + 16..ETH + 24 + 20], &VIP[..], "inside: to the VIP");
        let mut inner = out[..ETH].to_vec();
        inner.extend_from_slice(&out[ETH + 24..]);
        assert!(checksums_ok(&inner), "the inner packet's checksums, after the rewrite");
        // Another probe (another port, or to another address) passes as is.
        let other = ports(ViaKind::Mac).outbound(ipv4_frame(EthernetAddress([2; 6]), EthernetAddress([3; 6]), SELF, SRV, 6, &tcp_header(61001, 80, 0x02, 1024), true), Ipv4Addr::from(SELF));
        assert_eq!(&other[30..34], &SRV[..]);
    }

    #[test]
    fn the_vips_answer_comes_back_from_the_servers_address() {
        let mut ans = ipv4_frame(EthernetAddress([2, 0, 0, 0, 0, 0x12]), EthernetAddress([2, 0, 0, 0, 0, 1]), VIP, SELF, 6, &tcp_header(80, 61000, 0x12, 1024), true);
        assert!(ports(ViaKind::Mac).inbound(&mut ans));
        assert_eq!(&ans[26..30], &SRV[..]);
        assert!(checksums_ok(&ans));
        let mut stranger = ipv4_frame(EthernetAddress([2; 6]), EthernetAddress([3; 6]), [192, 0, 2, 99], SELF, 6, &tcp_header(80, 61000, 0x12, 1024), true);
        let before = stranger.clone();
        assert!(ports(ViaKind::Mac).inbound(&mut stranger));
        assert_eq!(stranger, before, "not from the VIP: untouched");
        let mut itself = ipv4_frame(EthernetAddress([2; 6]), EthernetAddress([3; 6]), SRV, SELF, 6, &tcp_header(80, 61000, 0x12, 1024), true);
        assert!(!ports(ViaKind::Dscp(46)).inbound(&mut itself), "the server answering as itself: dropped");
        let mut p = ports(ViaKind::Mac);
        p.set(61000, Ipv4Addr::from(SRV), None);
        assert!(p.inbound(&mut itself), "the port now belongs to a probe of the server's own address");
    }
}
