//! The SYN proxy (RFC 4987 §3.6, as DPVS and BIG-IP do it): the box
//! answers a virtual server's SYNs itself with a SYN cookie and makes no
//! entry; only the client's ACK that returns a good cookie creates the
//! connection, and the box then opens the server side with the client's
//! own SYN (its ISN and the options the cookie kept). From the server's
//! SYN-ACK on, sequence numbers, timestamps, SACK blocks and windows are
//! translated between the two sides (`forward::synproxy::Shift`), so the
//! proxied connection is a plain NAT or full-NAT connection otherwise.
//!
//! ```text
//! client            box                         server
//!   SYN ----------->  cookie SYN-ACK (no entry)
//!   <----------------
//!   ACK (cookie) --->  entry; SYN (client ISN) ----->
//!   data ---------->  parked (one segment)
//!                                        <---- SYN-ACK
//!                    deltas; the parked data (or an ACK) --->
//!   <======= translated both ways from here on ========>
//! ```
//!
//! The client's first data segment usually arrives before the server has
//! answered; it is parked (`Park`, a copy in one of 64 preallocated slots
//! per worker) and sent in place of the handshake's last ACK, which it
//! carries, so no retransmission is needed. Further segments before the
//! server answers are dropped (`syn-proxy-pending`); the client sends them
//! again.
//!
//! `SynProxy::Auto` turns the proxy on while the worker's half-open
//! entries pass `syn_proxy_threshold`, and keeps it on while cookies go
//! out at the rate that would fill the threshold within the SYN timeout
//! (checked each second), plus `AUTO_HOLD` ticks.

use super::{L4Info, Shard, Verdict};
use crate::conntrack::track::{PROXY_ON, PROXY_OPEN, PROXY_TS};
use crate::conntrack::{EntryFlags, FlowId, FlowState, ProxyTrack, Restart, Segment, Sight};
use crate::ctl::events::SyncKind;
use crate::forward::synproxy::{self as cookie, Shift, TcpOut, Tuple};
use crate::forward::is_unicast_host;
use crate::state::counters::DropReason;
use crate::state::snapshot::{Snapshot, SynProxy};
use crate::wire::ethernet::{EthernetAddress, EthernetFrame};
use crate::wire::tcp::{flags as tcpf, TcpOptions, TcpPacket};
use std::net::Ipv4Addr;

/// The window scale the box announces to clients when they offer one
/// (Linux's usual shift); server windows are rescaled to it.
pub const PROXY_WSCALE: u8 = 7;
/// How long `Auto` stays on after the last reason to, in ticks (10 s).
const AUTO_HOLD: u32 = 100;
/// Parking slots per worker, and the largest frame one holds.
const PARK_SLOTS: usize = 64;
const PARK_BYTES: usize = 1536;
/// TTL of the segments the box writes (RFC 1700's default, as Linux).
const TTL: u8 = 64;

/// What `Verdict::Rebuild` writes: a segment the box makes from the packet
/// it holds, with new Ethernet addresses, out of `link`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Rebuild {
    pub l3: u8,
    pub link: u16,
    pub dst_mac: EthernetAddress,
    pub src_mac: EthernetAddress,
    pub out: TcpOut,
}

/// `Verdict::Replay`: the parked client segment of entry `id` to send
/// through the pipeline in place of the packet at hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replay {
    pub slot: u8,
    pub id: FlowId,
}

struct Slot {
    id: FlowId,
    /// Free from this tick on.
    until: u32,
    port: u16,
    len: u16,
    data: [u8; PARK_BYTES],
}

/// Client segments waiting for their server's SYN-ACK: preallocated, one
/// per connection at most, reclaimed by time.
pub(super) struct Park(Box<[Slot]>);

impl Park {
    pub(super) fn new() -> Self {
        Self((0..PARK_SLOTS).map(|_| Slot { id: u32::MAX, until: 0, port: 0, len: 0, data: [0; PARK_BYTES] }).collect())
    }

    /// Copies `frame` (from DPDK `port`) for entry `id` until tick `until`:
    /// the slot + 1, or None when every slot is taken or the frame too big.
    fn put(&mut self, id: FlowId, now: u32, until: u32, port: u16, frame: &[u8]) -> Option<u8> {
        if frame.len() > PARK_BYTES {
            return None;
        }
        let (i, s) = self.0.iter_mut().enumerate().find(|(_, s)| s.until <= now)?;
        s.data.get_mut(..frame.len())?.copy_from_slice(frame);
        (s.id, s.until, s.port, s.len) = (id, until, port, frame.len() as u16);
        u8::try_from(i + 1).ok()
    }

    /// Takes entry `id`'s segment out of `slot` (+1): its port and bytes.
    fn take(&mut self, slot: u8, id: FlowId, now: u32) -> Option<(u16, &[u8])> {
        let s = self.0.get_mut(usize::from(slot).checked_sub(1)?)?;
        if s.id != id || s.until <= now {
            return None;
        }
        s.until = 0;
        Some((s.port, s.data.get(..usize::from(s.len))?))
    }
}

/// What the SYN to the server carries: the client's ISN and the options
/// its cookie kept.
pub(super) struct ServerSyn {
    isn: u32,
    mss_idx: u8,
    wscale: Option<u8>,
    sack: bool,
    tsval: Option<u32>,
    client_win: u16,
}

/// The translation of a proxied connection whose server has answered.
#[inline]
pub(super) fn shift_of(t: &ProxyTrack) -> Shift {
    Shift { seq: t.seq_delta, ts: t.ts_delta, wscale_from: t.proxy_wscale[1], wscale_to: t.proxy_wscale[0] }
}

/// Ticks (`conntrack::TICK_MS`, 100 ms) between two SYNs the box sends a
/// silent server for one proxied connection: at least 200 ms (the tick
/// counter may turn just after the last), below any client's
/// retransmission timer (RFC 6298 §2: at least 1 s).
const RESEND_TICKS: u16 = 3;

impl Shard {
    /// Whether SYNs of a service in `mode` are answered by the proxy now.
    #[inline]
    pub(super) fn proxying(&mut self, mode: SynProxy) -> bool {
        match mode {
            SynProxy::Off => false,
            SynProxy::On => true,
            SynProxy::Auto => {
                if self.table.embryonic() >= self.config.syn_proxy_threshold {
                    self.proxy_until = self.now.saturating_add(AUTO_HOLD);
                }
                self.now < self.proxy_until
            }
        }
    }

    /// Counts a cookie sent: at the rate that would fill the threshold
    /// within the SYN timeout, `Auto` stays on. Cookies for a source over
    /// its cap (`capped`) do not count: one source must not turn the proxy
    /// on for everyone.
    fn note_cookie(&mut self, capped: bool) {
        self.cookies_valid_until = self.now.saturating_add(2 * cookie::COOKIE_PERIOD_TICKS);
        if capped {
            return;
        }
        let sec = self.now / 10;
        if sec != self.cookie_sec {
            self.cookie_sec = sec;
            self.cookies_this_sec = 0;
        }
        self.cookies_this_sec += 1;
        if self.cookies_this_sec >= self.config.syn_proxy_rate {
            self.proxy_until = self.now.saturating_add(AUTO_HOLD);
        }
    }

    /// A SYN to a proxied service: answered with a cookie SYN-ACK from the
    /// VIP, written over the SYN (`Verdict::Rebuild`); nothing is kept.
    pub(super) fn answer_syn(&mut self, snap: &Snapshot, frame: &[u8], p: &L4Info, in_link: u16, capped: bool) -> Verdict {
        let Some(l4) = frame.get(p.l3 + p.hl..p.l3 + p.ip_len) else { return Verdict::Drop(DropReason::Ipv4BadTotalLength) };
        let syn = TcpPacket::new_unchecked(l4);
        if !syn.verify_checksum(Ipv4Addr::from(p.src), Ipv4Addr::from(p.dst)) {
            return Verdict::Drop(DropReason::L4BadChecksum);
        }
        let eth = EthernetFrame::new_unchecked(frame);
        let Some(link) = snap.port(in_link) else { return Verdict::Drop(DropReason::NoVirtualServer) };
        if !is_unicast_host(p.src) || eth.src_addr().is_multicast() || eth.dst_addr().is_multicast() {
            return Verdict::Drop(DropReason::NoServer);
        }
        let o = TcpOptions::parse(syn.options());
        let t = Tuple { src: p.src, dst: p.dst, sport: p.sport, dport: p.dport };
        let isn = p.seg.seq;
        let c = cookie::make(&self.config.cookie_key, &t, isn, cookie::counter(self.now), cookie::mss_index(o.mss));
        // Window scaling and SACK survive only inside the timestamp.
        let (wscale, sack, ts) = match o.timestamp {
            Some((val, _)) => (o.wscale.map(|_| PROXY_WSCALE), o.sack_perm, Some((cookie::encode_ts(self.now.wrapping_mul(100), o.wscale, o.sack_perm), val))),
            None => (None, false, None),
        };
        let mss = link.mtu.saturating_sub(40).clamp(536, 9176);
        let out = TcpOut {
            src: p.dst,
            dst: p.src,
            sport: p.dport,
            dport: p.sport,
            seq: c,
            ack: isn.wrapping_add(1),
            flags: tcpf::SYN | tcpf::ACK,
            win: 65535,
            ttl: TTL,
            opts: TcpOptions { mss: Some(mss), wscale, sack_perm: sack, timestamp: ts },
            syn: true,
        };
        self.rebuilt = Rebuild { l3: p.l3 as u8, link: in_link, dst_mac: eth.src_addr(), src_mac: link.mac, out };
        self.counters.syn_cookies.inc();
        self.note_cookie(capped);
        Verdict::Rebuild
    }

    /// An ACK to a proxied service without an entry: a good cookie opens
    /// the connection and the server side (the client's SYN, written over
    /// the ACK); anything else is dropped.
    pub(super) fn cookie_ack(&mut self, snap: &Snapshot, frame: &mut [u8], p: &L4Info, vs_index: u16, in_link: u16) -> Verdict {
        let t = Tuple { src: p.src, dst: p.dst, sport: p.sport, dport: p.dport };
        let (isn, c) = (p.seg.seq.wrapping_sub(1), p.seg.ack.wrapping_sub(1));
        let Some(mss_idx) = cookie::check(&self.config.cookie_key, &t, isn, c, cookie::counter(self.now)) else {
            return Verdict::Drop(DropReason::SynCookieInvalid);
        };
        let Some(l4) = frame.get(p.l3 + p.hl..p.l3 + p.ip_len) else { return Verdict::Drop(DropReason::Ipv4BadTotalLength) };
        let ack = TcpPacket::new_unchecked(l4);
        let o = TcpOptions::parse(ack.options());
        let client_win = ack.window_len();
        // What the cookie's timestamp kept (the ACK echoes it).
        let (wscale, sack, t0, tsval) = match o.timestamp {
            Some((val, ecr)) => {
                let (w, s) = cookie::decode_ts(ecr);
                (w, s, ecr, Some(val))
            }
            None => (None, false, 0, None),
        };
        let id = match self.open_entry(snap, frame, p, vs_index, in_link, EntryFlags::SYN_PROXY) {
            Ok(id) => id,
            Err(Verdict::Reject(_)) => return self.reset_client(snap, frame, p, in_link),
            Err(v) => return v,
        };
        let Some(f) = self.table.get(id).copied() else { return Verdict::Drop(DropReason::TcpNoFlow) };
        // The handshake as the client saw it: its SYN, the cookie SYN-ACK.
        let synack = Segment { flags: tcpf::SYN | tcpf::ACK, seq: c, ack: isn.wrapping_add(1), win: 65535, len: 0, wscale: wscale.map(|_| PROXY_WSCALE) };
        let seen = self.table.with_track(id, |tr| {
            tr.on_segment(crate::conntrack::Dir::Original, &Segment { flags: tcpf::SYN, seq: isn, wscale, ..Segment::default() }, Restart::Allowed, Sight::Both);
            tr.on_segment(crate::conntrack::Dir::Reply, &synack, Restart::Allowed, Sight::Both);
        });
        let (Some(()), Some(tr)) = (seen, self.table.proxy_mut(id)) else { return Verdict::Drop(DropReason::TcpNoFlow) };
        tr.seq_delta = c;
        tr.ts_delta = t0;
        tr.proxy = PROXY_ON | if tsval.is_some() { PROXY_TS } else { 0 };
        tr.proxy_wscale = [if wscale.is_some() { PROXY_WSCALE } else { 0 }, 0];
        tr.client_tsval = tsval.unwrap_or(0);
        tr.client_win = client_win;
        // The SYN to the server goes now: a resend waits its turn.
        tr.resent_at = (self.now as u16).max(1);
        self.counters.syn_proxied.inc();
        // Reported now that the translation is set (`replicate`).
        self.emit_flow(SyncKind::Create, id);
        // The ACK itself (it may carry the first data: parked).
        if let Err(v) = self.account(id, crate::conntrack::Dir::Original, p) {
            return v;
        }
        if p.seg.len > 0 {
            self.park_segment(id, frame);
        }
        self.server_syn(snap, &f, p, ServerSyn { isn, mss_idx, wscale, sack, tsval, client_win })
    }

    /// The client's SYN, as its cookie kept it, to the server of entry `f`,
    /// written over the packet at hand.
    fn server_syn(&mut self, snap: &Snapshot, f: &crate::conntrack::Flow, p: &L4Info, s: ServerSyn) -> Verdict {
        let (link, mac, src_mac) = match self.server_hop(snap, f) {
            Ok(hop) => hop,
            Err(v) => return v,
        };
        // A SYN window is never scaled (RFC 7323 §2.2).
        let shift = s.wscale.unwrap_or(0).min(14);
        let win = (u32::from(s.client_win) << shift).min(65535) as u16;
        let syn_out = TcpOut {
            src: f.local_ip,
            dst: f.server_ip,
            sport: f.local_port,
            dport: f.server_port,
            seq: s.isn,
            ack: 0,
            flags: tcpf::SYN,
            win,
            ttl: TTL,
            opts: TcpOptions { mss: cookie::MSS_TABLE.get(usize::from(s.mss_idx)).copied(), wscale: s.wscale, sack_perm: s.sack, timestamp: s.tsval.map(|v| (v, 0)) },
            syn: true,
        };
        self.rebuilt = Rebuild { l3: p.l3 as u8, link, dst_mac: mac, src_mac, out: syn_out };
        Verdict::Rebuild
    }

    /// Where entry `f`'s server side is: its link, the next hop's MAC and
    /// the link's own; the host link for the appliance's own stack.
    fn server_hop(&self, snap: &Snapshot, f: &crate::conntrack::Flow) -> Result<(u16, EthernetAddress, EthernetAddress), Verdict> {
        if f.mode == crate::state::snapshot::Forwarding::Local {
            let (link, mac) = server_link(snap, f).ok_or(Verdict::Drop(DropReason::NoServer))?;
            return Ok((link, mac, mac));
        }
        let server = snap.servers.get(f.server_slot()).ok_or(Verdict::Drop(DropReason::NoServer))?;
        let mac = self.neighbors.get(server.nexthop).ok_or(Verdict::Drop(DropReason::NeighborUnresolved))?;
        let out = snap.port(server.tx_port).ok_or(Verdict::Drop(DropReason::NoServer))?;
        Ok((server.tx_port, mac, out.mac))
    }

    /// A good cookie no server can take: a RST at the client's next
    /// expected byte (the cookie + 1), which it accepts (RFC 5961 §3.2).
    #[cold]
    fn reset_client(&mut self, snap: &Snapshot, frame: &[u8], p: &L4Info, in_link: u16) -> Verdict {
        let Some(link) = snap.port(in_link) else { return Verdict::Drop(DropReason::NoServer) };
        let eth = EthernetFrame::new_unchecked(frame);
        let out = TcpOut { src: p.dst, dst: p.src, sport: p.dport, dport: p.sport, seq: p.seg.ack, ack: 0, flags: tcpf::RST, win: 0, ttl: TTL, opts: TcpOptions::default(), syn: false };
        self.rebuilt = Rebuild { l3: p.l3 as u8, link: in_link, dst_mac: eth.src_addr(), src_mac: link.mac, out };
        self.counters.rejected.inc();
        Verdict::Rebuild
    }

    /// Keeps a copy of a client segment until its server answers (one per
    /// connection).
    fn park_segment(&mut self, id: FlowId, frame: &[u8]) -> bool {
        let Some(t) = self.table.proxy(id) else { return false };
        if t.park != 0 {
            return false;
        }
        let until = self.now.saturating_add(self.table.timeouts().tcp_syn);
        let port = self.in_port;
        match self.park.put(id, self.now, until, port, frame) {
            Some(slot) => {
                if let Some(t) = self.table.proxy_mut(id) {
                    t.park = slot;
                }
                true
            }
            None => false,
        }
    }

    /// A client segment of a proxied connection whose server has not
    /// answered yet: the first with data is parked; the client's
    /// retransmission of it (its SYN or the server's SYN-ACK was lost, and
    /// only the client's timer runs) sends the SYN again, rebuilt from the
    /// cookie the segment still returns; anything else is dropped.
    pub(super) fn proxy_pending(&mut self, snap: &Snapshot, id: FlowId, frame: &[u8], p: &L4Info) -> Verdict {
        if p.seg.len > 0 && self.park_segment(id, frame) {
            return Verdict::Consumed;
        }
        let (isn, c) = (p.seg.seq.wrapping_sub(1), p.seg.ack.wrapping_sub(1));
        let t = Tuple { src: p.src, dst: p.dst, sport: p.sport, dport: p.dport };
        let (Some(f), Some(mss_idx)) = (self.table.get(id).copied(), cookie::check(&self.config.cookie_key, &t, isn, c, cookie::counter(self.now))) else {
            return Verdict::Drop(DropReason::SynProxyPending);
        };
        let Some(l4) = frame.get(p.l3 + p.hl..p.l3 + p.ip_len) else { return Verdict::Drop(DropReason::Ipv4BadTotalLength) };
        let seg = TcpPacket::new_unchecked(l4);
        let o = TcpOptions::parse(seg.options());
        let (wscale, sack, tsval) = match o.timestamp {
            Some((val, ecr)) => {
                let (w, s) = cookie::decode_ts(ecr);
                (w, s, Some(val))
            }
            None => (None, false, None),
        };
        // At most one resend per `RESEND_TICKS`, whatever the client sends.
        let now16 = (self.now as u16).max(1);
        match self.table.proxy_mut(id) {
            Some(tr) if tr.resent_at != 0 && now16.wrapping_sub(tr.resent_at) < RESEND_TICKS => return Verdict::Drop(DropReason::SynProxyPending),
            Some(tr) => tr.resent_at = now16,
            None => return Verdict::Drop(DropReason::SynProxyPending),
        }
        self.counters.syn_resent.inc();
        self.server_syn(snap, &f, p, ServerSyn { isn, mss_idx, wscale, sack, tsval, client_win: seg.window_len() })
    }

    /// The server's answer to the box's SYN: the translation is set, the
    /// connection is established, and the server gets the handshake's last
    /// ACK: the parked client segment, or one the box writes over the
    /// SYN-ACK. A refusal (RST) goes to the client at its next expected
    /// byte.
    pub(super) fn server_answer(&mut self, snap: &Snapshot, frame: &mut [u8], p: &L4Info, id: FlowId) -> Verdict {
        let (Some(f), Some(marks), Some(t)) = (self.table.get(id).copied(), self.table.track(id), self.table.proxy(id).copied()) else { return Verdict::Drop(DropReason::TcpNoFlow) };
        // The client's ISN + 1, as the cookie SYN-ACK acknowledged it (the
        // reply side's mark, primed by `cookie_ack`; the client's own may
        // have moved past it when its first data opened the connection).
        let client_next = marks.ack[1];
        if p.tcp_flags & tcpf::RST != 0 {
            // RFC 9293 §3.10.7.3: a refusal acknowledges the SYN.
            if p.tcp_flags & tcpf::ACK == 0 || p.seg.ack != client_next {
                return Verdict::Drop(DropReason::TcpRstOutOfWindow);
            }
            if let Some(tr) = self.table.proxy_mut(id) {
                // Its sequence number becomes the client's next expected.
                tr.seq_delta = p.seg.seq.wrapping_sub(t.seq_delta.wrapping_add(1));
                tr.proxy |= PROXY_OPEN;
            }
            return self.forward_reply(snap, frame, p, id);
        }
        if p.tcp_flags & (tcpf::SYN | tcpf::ACK) == tcpf::ACK {
            return self.server_stale(snap, frame, p, id);
        }
        if p.tcp_flags & (tcpf::SYN | tcpf::ACK) != tcpf::SYN | tcpf::ACK || p.seg.ack != client_next {
            return Verdict::Drop(DropReason::SynProxyPending);
        }
        let Some(l4) = frame.get(p.l3 + p.hl..p.l3 + p.ip_len) else { return Verdict::Drop(DropReason::Ipv4BadTotalLength) };
        let o = TcpOptions::parse(TcpPacket::new_unchecked(l4).options());
        let server_isn = p.seg.seq;
        let s0 = o.timestamp.map(|(val, _)| val);
        let Some(tr) = self.table.proxy_mut(id) else { return Verdict::Drop(DropReason::TcpNoFlow) };
        tr.seq_delta = server_isn.wrapping_sub(t.seq_delta);
        if let Some(s0) = s0.filter(|_| t.proxy & PROXY_TS != 0) {
            tr.ts_delta = s0.wrapping_sub(t.ts_delta);
        } else {
            tr.ts_delta = 0;
        }
        tr.proxy_wscale[1] = if tr.proxy_wscale[0] != 0 { o.wscale.unwrap_or(0).min(14) } else { 0 };
        tr.proxy |= PROXY_OPEN;
        let park = tr.park;
        tr.park = 0;
        let expire = self.now.saturating_add(self.table.timeouts().tcp_established);
        self.table.set_state(id, FlowState::Established, expire);
        self.table.set_flags(id, f.flags | crate::conntrack::EntryFlags::ASSURED);
        super::established_moved(&self.counters, f.vs, f.server_slot(), f.state, FlowState::Established);
        self.emit_flow(SyncKind::Update, id);
        if park != 0 {
            return Verdict::Replay(Replay { slot: park, id });
        }
        let Some(out) = server_link(snap, &f) else { return Verdict::Drop(DropReason::NoServer) };
        let eth = EthernetFrame::new_unchecked(&*frame);
        let ack = TcpOut {
            src: f.local_ip,
            dst: f.server_ip,
            sport: f.local_port,
            dport: f.server_port,
            seq: client_next,
            ack: server_isn.wrapping_add(1),
            flags: tcpf::ACK,
            win: t.client_win,
            ttl: TTL,
            opts: TcpOptions { timestamp: s0.filter(|_| t.proxy & PROXY_TS != 0).map(|s0| (t.client_tsval, s0)), ..TcpOptions::default() },
            syn: false,
        };
        self.rebuilt = Rebuild { l3: p.l3 as u8, link: out.0, dst_mac: eth.src_addr(), src_mac: out.1, out: ack };
        Verdict::Rebuild
    }

    /// The server answered the box's SYN with a bare ACK: the SYN met a
    /// TIME-WAIT of an older connection of the same addresses and ports,
    /// which took it for an old duplicate (RFC 9293 §3.10.7.4). A client
    /// would reset that with the ACK's number and send its SYN again; the
    /// box does the first, written over the ACK, and forgets the entry: the
    /// client's next retransmission returns its cookie again and opens
    /// afresh.
    #[cold]
    fn server_stale(&mut self, snap: &Snapshot, frame: &[u8], p: &L4Info, id: FlowId) -> Verdict {
        let Some(f) = self.table.get(id).copied() else { return Verdict::Drop(DropReason::TcpNoFlow) };
        let Some((link, mac)) = server_link(snap, &f) else { return Verdict::Drop(DropReason::NoServer) };
        let eth = EthernetFrame::new_unchecked(frame);
        let out = TcpOut { src: f.local_ip, dst: f.server_ip, sport: f.local_port, dport: f.server_port, seq: p.seg.ack, ack: 0, flags: tcpf::RST, win: 0, ttl: TTL, opts: TcpOptions::default(), syn: false };
        self.rebuilt = Rebuild { l3: p.l3 as u8, link, dst_mac: eth.src_addr(), src_mac: mac, out };
        self.remove(snap, id);
        self.counters.syn_stale.inc();
        Verdict::Rebuild
    }

    /// `Verdict::Replay`: the parked segment's port and bytes, taken out of
    /// its slot.
    pub(super) fn unpark(&mut self, r: Replay, buf: &mut [u8; PARK_BYTES]) -> Option<(u16, usize)> {
        let (port, data) = self.park.take(r.slot, r.id, self.now)?;
        buf.get_mut(..data.len())?.copy_from_slice(data);
        Some((port, data.len()))
    }

    /// Whether entry `id` is proxied and its server has not answered.
    #[inline]
    pub(super) fn proxy_waiting(&self, flags: EntryFlags, id: FlowId) -> bool {
        flags.contains(EntryFlags::SYN_PROXY) && self.table.proxy(id).is_some_and(|t| t.proxy & PROXY_OPEN == 0)
    }
}

pub(super) const PARK_FRAME_BYTES: usize = PARK_BYTES;

#[cfg(test)]
mod tests;

/// The link entry `f`'s server is on and that link's MAC: the host link
/// for the appliance's own stack.
#[inline]
fn server_link(snap: &Snapshot, f: &crate::conntrack::Flow) -> Option<(u16, EthernetAddress)> {
    if f.mode == crate::state::snapshot::Forwarding::Local {
        let link = snap.host_link()?;
        return snap.port(link).map(|pv| (link, pv.mac));
    }
    snap.servers.get(f.server_slot()).and_then(|s| snap.port(s.tx_port).map(|pv| (s.tx_port, pv.mac)))
}
