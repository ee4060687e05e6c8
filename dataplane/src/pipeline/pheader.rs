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
//! first); a segment past `P` (and every one once it is acknowledged)
//! moves up by its length. Server to client: ACK numbers and SACK edges
//! move down, a SYN-ACK's MSS shrinks by the header.
//!
//! What a client may not do (review of issue 21): send data that starts
//! before `P` while the header is unacknowledged (it would reach the
//! server's application before the header, a header of its own making
//! included: dropped, `proxy-header-order`); put data on its SYN (TCP Fast
//! Open: the data would precede the header; dropped the same way, and a
//! TFO client sends its SYN again without data, RFC 7413 §4.2.2); move
//! `P` with a SYN once the server has answered (only a SYN of `SynSent`
//! restarts it, as conntrack restarts it). Its reset at `P` before the
//! header goes unshifted (the server has nothing past `P`). A segment
//! that the header would take past the link's MTU (a client that ignored
//! the clamped MSS) is dropped, `proxy-header-too-big`. The marks `Track` keeps are the
//! client's view (`account` brings the server's ACK back), so a client's
//! reset is judged against what the client sent.

use super::{L4Info, Packet, Shard, Verdict};
use crate::conntrack::track::PP_ACKED;
use crate::conntrack::{FlowId, FlowState};
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
    /// `Verdict::Insert` of `header` into the client segment `p` (already
    /// rewritten) for `port`, when it fits the link's `mtu`.
    pub(super) fn pheader_insert(&self, port: u16, mtu: u16, frame: &[u8], p: &L4Info, header: [u8; LEN as usize]) -> Verdict {
        if p.ip_len + LEN as usize > usize::from(mtu) || frame.len() < p.l3 + p.ip_len {
            return Verdict::Drop(DropReason::ProxyHeaderTooBig);
        }
        Verdict::Insert(Insert { port, l3: p.l3 as u8, hl: p.hl as u8, ip_len: p.ip_len as u16, header })
    }

    /// A new entry of a `proxy_protocol` service, made by the client's
    /// SYN of sequence number `isn`: the header goes at `isn + 1`.
    pub(super) fn pheader_open(&mut self, id: FlowId, isn: u32) {
        if let Some(t) = self.table.proxy_mut(id) {
            t.seq_delta = isn.wrapping_add(1);
            t.proxy &= !PP_ACKED;
        }
    }

    /// Where entry `id`'s header goes (`P`), and whether the server has
    /// acknowledged it.
    #[inline]
    pub(super) fn pheader_at(&self, id: FlowId) -> Option<(u32, bool)> {
        self.table.proxy(id).map(|t| (t.seq_delta, t.proxy & PP_ACKED != 0))
    }

    /// The client's segment `p` of entry `id`, its addresses already
    /// rewritten for the server: `Ok(Some(header))` when it must carry
    /// the header (the caller returns `Verdict::Insert`), `Ok(None)` with
    /// its sequence number moved past the header when it lies there, or
    /// the drop of a segment that would put data before the header.
    pub(super) fn pheader_to_server(&mut self, id: FlowId, frame: &mut [u8], p: &L4Info) -> Result<Option<[u8; LEN as usize]>, Verdict> {
        let Some(f) = self.table.get(id) else { return Ok(None) };
        let (client, cport, vip, vport, state) = (f.client_ip, f.client_port, f.vip, f.vport, f.state);
        let Some((at, acked)) = self.pheader_at(id) else { return Ok(None) };
        let seg = frame.get_mut(p.l3 + p.hl..p.l3 + p.ip_len);
        if p.tcp_flags & tcpf::SYN != 0 {
            // A client restarting its handshake: the header follows its
            // new ISN. Never once the server has answered.
            if p.tcp_flags & tcpf::ACK == 0 && state == FlowState::SynSent {
                self.pheader_open(id, p.seg.seq);
            }
            if p.seg.len > 0 {
                return Err(Verdict::Drop(DropReason::ProxyHeaderOrder));
            }
            return Ok(None);
        }
        if acked {
            if let Some(seg) = seg {
                header::shift_seq(seg);
            }
            return Ok(None);
        }
        let d = p.seg.seq.wrapping_sub(at) as i32;
        let data = p.seg.len > 0 || p.tcp_flags & tcpf::FIN != 0;
        match d {
            ..0 if data => Err(Verdict::Drop(DropReason::ProxyHeaderOrder)),
            0 if p.tcp_flags & tcpf::RST != 0 => Ok(None),
            0 => Ok(Some(header::v2(client, cport, vip, vport))),
            1.. => {
                if let Some(seg) = seg {
                    header::shift_seq(seg);
                }
                Ok(None)
            }
            // Nothing before the header (a keep-alive probe at P - 1).
            _ => Ok(None),
        }
    }

    /// The server's segment `p` of entry `id` on its way to the client:
    /// its ACK and SACK edges into the client's view, a SYN-ACK's MSS
    /// smaller; notes when the header is acknowledged.
    pub(super) fn pheader_to_client(&mut self, id: FlowId, frame: &mut [u8], p: &L4Info) {
        let Some((at, acked)) = self.pheader_at(id) else { return };
        let Some(seg) = frame.get_mut(p.l3 + p.hl..p.l3 + p.ip_len) else { return };
        if header::to_client(seg, at, acked) && !acked {
            if let Some(t) = self.table.proxy_mut(id) {
                t.proxy |= PP_ACKED;
            }
        }
    }
}

#[cfg(test)]
mod tests;
