//! `proxy_protocol = "v2"` on a TCP `full-nat` virtual server: the PROXY
//! header goes before the client's stream (`forward::proxy_header` says
//! how the sequence spaces then differ). An entry of such a service has
//! `EntryFlags::PROXY_HEADER`, the client's ISN + 1 (`P`, where the header
//! goes) in `Track::seq_delta` (the SYN proxy's field: such a service is
//! never SYN-proxied) and `PP_ACKED` in `Track::proxy` once the server's
//! ACK covers the header.
//!
//! Client to server: a segment at `P` while the header is not
//! acknowledged carries it (`Verdict::Insert`: the handshake's last ACK
//! first); a segment past `P` (or at `P` once acknowledged) moves up by
//! its length. Server to client: ACK numbers and SACK edges move down, a
//! SYN-ACK's MSS shrinks by the header. The marks `Track` keeps are the
//! client's view (`account` brings the server's ACK back), so a client's
//! reset is judged against what the client sent.

use super::{L4Info, Packet, Shard, Verdict};
use crate::conntrack::track::PP_ACKED;
use crate::conntrack::FlowId;
use crate::forward::proxy_header::{self as header, LEN};
use crate::state::counters::DropReason;
use crate::wire::tcp::flags as tcpf;

/// What `process_packet` needs to put the header into a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insert {
    /// The port to send it out of.
    pub port: u16,
    pub l3: u8,
    pub hl: u8,
    pub ip_len: u16,
    pub header: [u8; LEN as usize],
}

/// Grows `pkt` by the header at the tail (padding after the IPv4 packet
/// goes), inserts it before the payload and sends it out of `i.port`.
pub(super) fn insert<P: Packet>(pkt: &mut P, i: &Insert) -> Verdict {
    let (l3, hl, ip_len) = (usize::from(i.l3), usize::from(i.hl), usize::from(i.ip_len));
    if !pkt.set_len(l3 + ip_len + LEN as usize) || !header::insert(pkt.data_mut(), l3, hl, ip_len, &i.header) {
        return Verdict::Drop(DropReason::ProxyHeaderNoRoom);
    }
    Verdict::Forward(i.port)
}

impl Shard {
    /// A new entry of a `proxy_protocol` service, made by the client's
    /// SYN of sequence number `isn`: the header goes at `isn + 1`.
    pub(super) fn pheader_open(&mut self, id: FlowId, isn: u32) {
        if let Some(t) = self.table.track_mut(id) {
            t.seq_delta = isn.wrapping_add(1);
            t.proxy &= !PP_ACKED;
        }
    }

    /// Where entry `id`'s header goes (`P`).
    #[inline]
    pub(super) fn pheader_at(&self, id: FlowId) -> Option<u32> {
        self.table.track(id).map(|t| t.seq_delta)
    }

    /// The client's segment `p` of entry `id`, its addresses already
    /// rewritten for the server: the header it must carry (the caller
    /// returns `Verdict::Insert`), or None with its sequence number moved
    /// past the header when it lies there.
    pub(super) fn pheader_to_server(&mut self, id: FlowId, frame: &mut [u8], p: &L4Info) -> Option<[u8; LEN as usize]> {
        let f = self.table.get(id)?;
        let (client, cport, vip, vport) = (f.client_ip, f.client_port, f.vip, f.vport);
        if p.tcp_flags & tcpf::SYN != 0 {
            // A SYN again (the client restarted with another ISN): the
            // header follows it.
            if p.tcp_flags & tcpf::ACK == 0 {
                self.pheader_open(id, p.seg.seq);
            }
            return None;
        }
        let t = self.table.track(id)?;
        let (at, acked) = (t.seq_delta, t.proxy & PP_ACKED != 0);
        let d = p.seg.seq.wrapping_sub(at) as i32;
        if d == 0 && !acked && p.tcp_flags & tcpf::RST == 0 {
            return Some(header::v2(client, cport, vip, vport));
        }
        if d >= 0 {
            if let Some(seg) = frame.get_mut(p.l3 + p.hl..p.l3 + p.ip_len) {
                header::shift_seq(seg);
            }
        }
        None
    }

    /// The server's segment `p` of entry `id` on its way to the client:
    /// its ACK and SACK edges into the client's view, a SYN-ACK's MSS
    /// smaller; notes when the header is acknowledged.
    pub(super) fn pheader_to_client(&mut self, id: FlowId, frame: &mut [u8], p: &L4Info) {
        let Some(at) = self.pheader_at(id) else { return };
        let Some(seg) = frame.get_mut(p.l3 + p.hl..p.l3 + p.ip_len) else { return };
        if header::to_client(seg, at) {
            if let Some(t) = self.table.track_mut(id) {
                t.proxy |= PP_ACKED;
            }
        }
    }
}

#[cfg(test)]
mod tests;
