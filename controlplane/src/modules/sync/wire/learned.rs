//! The L7 engine's learned persistence records in a `Learned` datagram
//! (the layout is in `super`).

use super::{be, encode_with, EncodeError, Header, SyncKey, MAX_LEARNED_BYTES, TAG_LEN};
use hmac::Mac;

/// One learned L7 persistence record: in namespace `group` (a virtual
/// server or persistence group), `value` (a session ID, a cookie's value,
/// a header's) keeps its client on `server` until it has been unused for
/// `timeout_s`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedRecord {
    pub group: String,
    pub value: String,
    pub server: std::net::SocketAddrV4,
    pub timeout_s: u32,
}

impl LearnedRecord {
    /// Its length on the wire; None when a string is over 255 bytes.
    pub fn wire_len(&self) -> Option<usize> {
        (self.group.len() <= 255 && self.value.len() <= 255).then_some(2 + self.group.len() + self.value.len() + 10)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        for s in [&self.group, &self.value] {
            out.push(s.len() as u8);
            out.extend_from_slice(s.as_bytes());
        }
        out.extend_from_slice(&self.server.ip().octets());
        out.extend_from_slice(&self.server.port().to_be_bytes());
        out.extend_from_slice(&self.timeout_s.to_be_bytes());
    }

    /// One record at the start of `b`, and what follows it.
    pub(super) fn decode(b: &[u8]) -> Option<(LearnedRecord, &[u8])> {
        let text = |b: &[u8]| -> Option<(String, usize)> {
            let n = *b.first()? as usize;
            Some((String::from_utf8(b.get(1..1 + n)?.to_vec()).ok()?, 1 + n))
        };
        let (group, a) = text(b)?;
        let (value, v) = text(b.get(a..)?)?;
        let at = a + v;
        let ip = std::net::Ipv4Addr::from(be::<4>(b, at)?);
        let port = u16::from_be_bytes(be::<2>(b, at + 4)?);
        let timeout_s = u32::from_be_bytes(be::<4>(b, at + 6)?);
        Some((LearnedRecord { group, value, server: std::net::SocketAddrV4::new(ip, port), timeout_s }, b.get(at + 10..)?))
    }
}

/// `encode` of a `Learned` datagram: as many of `records` as fit, from
/// the first; how many were taken.
pub fn encode_learned(out: &mut Vec<u8>, key: &SyncKey, header: &Header, records: &[LearnedRecord]) -> Result<usize, EncodeError> {
    let mut body = Vec::with_capacity(MAX_LEARNED_BYTES);
    let mut taken = 0;
    for r in records {
        let Some(n) = r.wire_len() else {
            taken += 1;
            continue;
        };
        if body.len() + n > MAX_LEARNED_BYTES || taken >= usize::from(u16::MAX) {
            break;
        }
        r.encode(&mut body);
        taken += 1;
    }
    let count = records.iter().take(taken).filter(|r| r.wire_len().is_some()).count();
    encode_with(out, key, header, &[], None, None)?;
    // The header's count and the body, then a new tag.
    out.truncate(out.len() - TAG_LEN);
    out.splice(6..8, (count as u16).to_be_bytes());
    out.extend_from_slice(&body);
    let tag = key.mac(out).finalize().into_bytes();
    out.extend_from_slice(&tag);
    Ok(taken)
}

