//! The state-sync record (`SyncRecord`) and its wire form.
//!
//! A record is 44 bytes on the wire, or longer for a TCP entry, which
//! carries its sequence marks (`TcpMarks`, 72 bytes) and, when the box's
//! SYN proxy answered its SYN, the translation (`ProxyState`, 84 bytes).
//! Byte 7 (`ext`) says which; Delete and persistence records never carry
//! either. Every record carries the entry's last-change counter
//! (`version`), which lets the receiver tell an old view from a newer one.

use crate::conntrack::track::{PP_ACKED, PROXY_ON, PROXY_OPEN, PROXY_TS};
use crate::conntrack::{EntryFlags, Flow, FlowState, Forwarding, ProxyTrack, Track, IPPROTO_TCP, TICK_MS};

/// What a record says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SyncKind {
    /// A worker made a connection entry (scheduled a new connection).
    Create = 1,
    /// An entry's TCP state changed (RFC 9293 §3.3.2 as `conntrack::tcp`
    /// folds it), or a SYN-proxied entry's translation was set.
    Update = 2,
    /// An entry went: closed (RST, both FINs then CLOSE, server reset) or,
    /// with `FLAG_EXPIRED`, idle past its timeout.
    Delete = 3,
    /// A live entry, from a periodic refresh or a bulk walk.
    Refresh = 4,
    /// A worker made a persistence record (`lb::persist`): client, VIP and
    /// server say which, `timeout_ms` is the record's timeout.
    Persist = 5,
    /// A worker dropped a persistence record (its server went down).
    PersistDelete = 6,
}

impl SyncKind {
    pub const ALL: &'static [SyncKind] =
        &[SyncKind::Create, SyncKind::Update, SyncKind::Delete, SyncKind::Refresh, SyncKind::Persist, SyncKind::PersistDelete];

    /// The kind whose byte is `b`; None for an unknown one.
    pub fn from_u8(b: u8) -> Option<SyncKind> {
        Self::ALL.iter().copied().find(|k| *k as u8 == b)
    }

    /// Whether records of this kind describe a live entry (and may carry
    /// its TCP marks).
    #[inline]
    pub fn is_live(self) -> bool {
        matches!(self, SyncKind::Create | SyncKind::Update | SyncKind::Refresh)
    }
}

/// `SyncRecord::family` of an IPv4 record.
pub const FAMILY_V4: u8 = 4;

/// A TCP entry's sequence marks (`conntrack::Track`, both directions,
/// indexed by `Dir as usize`): installed on the peer's copy
/// (`Track::adopt`) so that a reset there is judged against what the
/// connection has sent, not trusted for want of marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpMarks {
    /// Each side's SND.NXT as the box saw it.
    pub end: [u32; 2],
    /// Each side's latest acknowledgment (its RCV.NXT).
    pub ack: [u32; 2],
    /// Each side's receive window in bytes, scaled.
    pub win: [u32; 2],
    /// Each side's window scale shift (RFC 7323), at most 14.
    pub wscale: [u8; 2],
    /// Which marks are known (`Track::known_marks`).
    pub known: u8,
    /// The SYN proxy's translation, for a proxied connection.
    pub proxy: Option<ProxyState>,
}

/// The SYN proxy's translation of one connection (`Track`'s fields of the
/// same names), so that the peer's copy goes on translating after a
/// failover (`pipeline::synproxy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProxyState {
    pub seq_delta: u32,
    pub ts_delta: u32,
    /// The scale announced to the client, and the server's; at most 14.
    pub wscale: [u8; 2],
    /// `PROXY_ON` with `PROXY_OPEN`, `PROXY_TS`.
    pub flags: u8,
}

impl ProxyState {
    const KNOWN_FLAGS: u8 = PROXY_ON | PROXY_OPEN | PROXY_TS;
    /// A PROXY header entry's (`FLAG_PROXY_HEADER`): `seq_delta` is where
    /// the header goes, the flags say whether the server acknowledged it.
    const HEADER_FLAGS: u8 = PP_ACKED;
}

/// RFC 7323 §2.3: a shift above 14 is never offered; refused on decode.
const MAX_WSCALE: u8 = 14;

/// `ext` byte: what follows the 44 bytes.
const EXT_NONE: u8 = 0;
const EXT_TCP: u8 = 1;
const EXT_PROXY: u8 = 2;

/// One connection entry or persistence record, by value: fixed size,
/// `Copy`, the same on both boxes. Addresses are IPv4 in host order
/// (`u32::from(Ipv4Addr)`), as the connection table keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncRecord {
    pub kind: SyncKind,
    /// `FAMILY_V4` (IPv6 will add its own).
    pub family: u8,
    pub proto: u8,
    /// The entry's state (`Close` for persistence records).
    pub state: FlowState,
    /// The entry's forwarding mode (the virtual server's, for persistence
    /// records).
    pub mode: Forwarding,
    /// `FLAG_PERSIST`, `FLAG_EXPIRED`.
    pub flags: u8,
    /// The link index the client side uses (the same wiring on both
    /// boxes).
    pub client_port_id: u8,
    /// Where replies to the client go (the client's or its router's MAC).
    pub client_mac: [u8; 6],
    /// The entry's last-change counter (`Flow::version`): a record older
    /// than the copy it would change is ignored (RFC 1982 comparison,
    /// `is_older_than`).
    pub version: u16,
    pub client_ip: u32,
    pub client_port: u16,
    pub vip: u32,
    pub vport: u16,
    pub server_ip: u32,
    pub server_port: u16,
    /// The server side's client address: the full-NAT local address and
    /// port (the client's own for NAT).
    pub local_ip: u32,
    pub local_port: u16,
    /// Time the entry has left before it expires idle, in milliseconds
    /// (a persistence record's: its timeout).
    pub timeout_ms: u32,
    /// A live TCP entry's marks (and translation); None otherwise.
    pub tcp: Option<TcpMarks>,
}

impl SyncRecord {
    /// Bytes of a record without marks on the wire.
    pub const WIRE_LEN: usize = 44;
    /// Bytes of a TCP record with marks.
    pub const TCP_WIRE_LEN: usize = 72;
    /// Bytes of the longest record: a SYN-proxied connection's.
    pub const MAX_WIRE_LEN: usize = 84;
    /// The entry was placed by a persistence record (`EntryFlags::PERSIST`).
    pub const FLAG_PERSIST: u8 = 0x01;
    /// The entry's SYN was answered by the SYN proxy
    /// (`EntryFlags::SYN_PROXY`); its marks carry the translation.
    pub const FLAG_PROXIED: u8 = 0x02;
    /// A PROXY header goes before the client's stream
    /// (`EntryFlags::PROXY_HEADER`); its marks carry where.
    pub const FLAG_PROXY_HEADER: u8 = 0x04;
    /// `Delete`: the entry expired idle (rather than closed). The peer
    /// keeps its own copy if it has forwarded packets of it since.
    pub const FLAG_EXPIRED: u8 = 0x80;
    const KNOWN_FLAGS: u8 = Self::FLAG_PERSIST | Self::FLAG_PROXIED | Self::FLAG_PROXY_HEADER | Self::FLAG_EXPIRED;

    /// A record of nothing, to fill buffers.
    pub const EMPTY: SyncRecord = SyncRecord {
        kind: SyncKind::Refresh,
        family: FAMILY_V4,
        proto: 0,
        state: FlowState::Close,
        mode: Forwarding::Nat,
        flags: 0,
        client_port_id: 0,
        client_mac: [0; 6],
        version: 0,
        client_ip: 0,
        client_port: 0,
        vip: 0,
        vport: 0,
        server_ip: 0,
        server_port: 0,
        local_ip: 0,
        local_port: 0,
        timeout_ms: 0,
        tcp: None,
    };

    /// The record of entry `f` (with its marks `t`, for a live TCP entry)
    /// at tick `now`: its time left (in ms) is what the peer gives its
    /// copy.
    #[inline]
    pub fn of_flow(kind: SyncKind, f: &Flow, t: Option<&Track>, side: Option<&ProxyTrack>, now: u32) -> SyncRecord {
        let side = side.copied().unwrap_or_default();
        let proxied = f.flags.contains(EntryFlags::SYN_PROXY);
        let header = f.flags.contains(EntryFlags::PROXY_HEADER) && !proxied;
        let mut flags = if f.flags.contains(EntryFlags::PERSIST) { Self::FLAG_PERSIST } else { 0 };
        if proxied {
            flags |= Self::FLAG_PROXIED;
        }
        if header {
            flags |= Self::FLAG_PROXY_HEADER;
        }
        let tcp = t.filter(|_| f.proto == IPPROTO_TCP && kind.is_live()).map(|t| TcpMarks {
            end: t.end,
            ack: t.ack,
            win: t.win,
            wscale: t.wscale.map(|w| w.min(MAX_WSCALE)),
            known: t.known_marks(),
            proxy: if proxied {
                Some(ProxyState { seq_delta: side.seq_delta, ts_delta: side.ts_delta, wscale: side.proxy_wscale.map(|w| w.min(MAX_WSCALE)), flags: side.proxy & ProxyState::KNOWN_FLAGS })
            } else if header {
                Some(ProxyState { seq_delta: side.seq_delta, ts_delta: 0, wscale: [0, 0], flags: side.proxy & ProxyState::HEADER_FLAGS })
            } else {
                None
            },
        });
        SyncRecord {
            kind,
            family: FAMILY_V4,
            proto: f.proto,
            state: f.state,
            mode: f.mode,
            flags,
            client_port_id: f.client_port_id,
            client_mac: f.client_mac,
            version: f.version(),
            client_ip: f.client_ip,
            client_port: f.client_port,
            vip: f.vip,
            vport: f.vport,
            server_ip: f.server_ip,
            server_port: f.server_port,
            local_ip: f.local_ip,
            local_port: f.local_port,
            timeout_ms: f.expire.saturating_sub(now).saturating_mul(TICK_MS),
            tcp,
        }
    }

    /// `timeout_ms` in flow-table ticks, rounded up.
    #[inline]
    pub fn timeout_ticks(&self) -> u32 {
        self.timeout_ms.div_ceil(TICK_MS)
    }

    /// Whether this record's `version` is older than `v` (RFC 1982 serial
    /// number arithmetic: the counter wraps).
    #[inline]
    pub fn is_older_than(&self, v: u16) -> bool {
        (v.wrapping_sub(self.version) as i16) > 0
    }

    fn ext(&self) -> u8 {
        match self.tcp {
            None => EXT_NONE,
            Some(TcpMarks { proxy: None, .. }) => EXT_TCP,
            Some(_) => EXT_PROXY,
        }
    }

    /// Bytes of this record on the wire.
    pub fn wire_len(&self) -> usize {
        match self.ext() {
            EXT_NONE => Self::WIRE_LEN,
            EXT_TCP => Self::TCP_WIRE_LEN,
            _ => Self::MAX_WIRE_LEN,
        }
    }

    /// Writes the wire form, in network byte order, into the start of
    /// `out`, and returns its length (`wire_len`):
    ///
    /// ```text
    ///  0 kind  1 family  2 proto  3 state  4 mode  5 flags  6 client link  7 ext
    ///  8 client MAC (6)  14 version (2)
    /// 16 client ip  20 vip  24 server ip  28 local ip          (4 each)
    /// 32 client port  34 vport  36 server port  38 local port  (2 each)
    /// 40 timeout ms (4)                                        = 44 bytes
    /// ext 1, 2 (TCP marks):
    /// 44 end[0] 48 end[1] 52 ack[0] 56 ack[1] 60 win[0] 64 win[1] (4 each)
    /// 68 wscale[0]  69 wscale[1]  70 known  71 zero            = 72 bytes
    /// ext 2 (SYN proxy):
    /// 72 seq delta (4)  76 ts delta (4)
    /// 80 proxy wscale[0]  81 proxy wscale[1]  82 proxy flags  83 zero = 84
    /// ```
    pub fn encode(&self, out: &mut [u8; Self::MAX_WIRE_LEN]) -> usize {
        let mut w = Writer { buf: out, at: 0 };
        w.put(&[self.kind as u8, self.family, self.proto, self.state as u8, self.mode as u8, self.flags, self.client_port_id, self.ext()]);
        w.put(&self.client_mac);
        w.put(&self.version.to_be_bytes());
        for ip in [self.client_ip, self.vip, self.server_ip, self.local_ip] {
            w.put(&ip.to_be_bytes());
        }
        for port in [self.client_port, self.vport, self.server_port, self.local_port] {
            w.put(&port.to_be_bytes());
        }
        w.put(&self.timeout_ms.to_be_bytes());
        if let Some(m) = &self.tcp {
            for x in [m.end, m.ack, m.win].iter().flatten() {
                w.put(&x.to_be_bytes());
            }
            w.put(&[m.wscale[0], m.wscale[1], m.known, 0]);
            if let Some(p) = &m.proxy {
                w.put(&p.seq_delta.to_be_bytes());
                w.put(&p.ts_delta.to_be_bytes());
                w.put(&[p.wscale[0], p.wscale[1], p.flags, 0]);
            }
        }
        w.at
    }

    /// The record at the start of `bytes` (its length is `wire_len`).
    /// None when too short, or when the kind, family, state, mode, a flag,
    /// the extension or a scale is unknown or does not fit the record
    /// (marks on a record that is not a live TCP entry, a translation
    /// without `FLAG_PROXIED` or the reverse).
    pub fn decode(bytes: &[u8]) -> Option<SyncRecord> {
        let mut r = Reader { buf: bytes, at: 0 };
        let [kind, family, proto, state, mode, flags, client_port_id, ext] = r.take::<8>()?;
        let client_mac = r.take::<6>()?;
        let version = r.u16()?;
        let (client_ip, vip, server_ip, local_ip) = (r.u32()?, r.u32()?, r.u32()?, r.u32()?);
        let (client_port, vport, server_port, local_port) = (r.u16()?, r.u16()?, r.u16()?, r.u16()?);
        let timeout_ms = r.u32()?;
        if family != FAMILY_V4 || flags & !Self::KNOWN_FLAGS != 0 {
            return None;
        }
        let kind = SyncKind::from_u8(kind)?;
        let tcp = match ext {
            EXT_NONE => None,
            EXT_TCP | EXT_PROXY if proto == IPPROTO_TCP && kind.is_live() => Some(decode_marks(&mut r, ext == EXT_PROXY, flags & Self::FLAG_PROXY_HEADER != 0)?),
            _ => return None,
        };
        // A proxied entry's marks carry its translation, a PROXY header
        // entry's where the header goes; no other's do, and no entry is both.
        let extended = flags & (Self::FLAG_PROXIED | Self::FLAG_PROXY_HEADER);
        if extended == Self::FLAG_PROXIED | Self::FLAG_PROXY_HEADER || (tcp.is_some() && (ext == EXT_PROXY) != (extended != 0)) {
            return None;
        }
        Some(SyncRecord {
            kind,
            family,
            proto,
            state: FlowState::from_u8(state)?,
            mode: Forwarding::from_u8(mode)?,
            flags,
            client_port_id,
            client_mac,
            version,
            client_ip,
            client_port,
            vip,
            vport,
            server_ip,
            server_port,
            local_ip,
            local_port,
            timeout_ms,
            tcp,
        })
    }
}

/// Bytes 44.. of a TCP record (`SyncRecord::encode`).
fn decode_marks(r: &mut Reader<'_>, proxied: bool, header: bool) -> Option<TcpMarks> {
    let (e0, e1, a0, a1, w0, w1) = (r.u32()?, r.u32()?, r.u32()?, r.u32()?, r.u32()?, r.u32()?);
    let [s0, s1, known, _] = r.take::<4>()?;
    if s0.max(s1) > MAX_WSCALE {
        return None;
    }
    let proxy = if proxied {
        let (seq_delta, ts_delta) = (r.u32()?, r.u32()?);
        let [p0, p1, flags, _] = r.take::<4>()?;
        let flags_ok = if header { flags & !ProxyState::HEADER_FLAGS == 0 && ts_delta == 0 && p0 == 0 && p1 == 0 } else { flags & PROXY_ON != 0 && flags & !ProxyState::KNOWN_FLAGS == 0 };
        if p0.max(p1) > MAX_WSCALE || !flags_ok {
            return None;
        }
        Some(ProxyState { seq_delta, ts_delta, wscale: [p0, p1], flags })
    } else {
        None
    };
    Some(TcpMarks { end: [e0, e1], ack: [a0, a1], win: [w0, w1], wscale: [s0, s1], known, proxy })
}

struct Writer<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        if let Some(d) = self.buf.get_mut(self.at..self.at + bytes.len()) {
            d.copy_from_slice(bytes);
        }
        self.at += bytes.len();
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let b = self.buf.get(self.at..self.at + N)?.try_into().ok()?;
        self.at += N;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_be_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_be_bytes)
    }
}
