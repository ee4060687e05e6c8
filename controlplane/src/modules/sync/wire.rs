//! The state-sync datagram (issue 12): what one box's control lcore sends
//! its peer in one UDP datagram, and the checks a received one passes
//! before its records reach a worker.
//!
//! ```text
//!  0  magic "FWSY" (4)
//!  4  version (1) = 1
//!  5  message type (1): Hello 1, Records 2, BulkRequest 3, BulkEnd 4
//!  6  record count (2)             only Records carries records
//!  8  sender id (4)                random per boot of the sender
//! 12  sequence number (8)          per sender, from 1, +1 per datagram
//! 20  sent at (8)                  the sender's clock, microseconds since
//!                                  the Unix epoch (the receiver's lag)
//! 28  Records: count x SyncRecord (44, 72 or 84 bytes each,
//!     `SyncRecord::wire_len`); BulkRequest, BulkEnd: the request id (4)
//!  .. HMAC-SHA256 tag (32) over every byte before it
//! ```
//!
//! All numbers in network byte order. At most `MAX_RECORDS` (16) records,
//! so that a datagram of the longest records (at most `MAX_DATAGRAM`,
//! 1404 bytes) plus the IPv4 and UDP headers (28) fits a 1500-byte MTU
//! unfragmented. A bulk request's id is the requester's, nonzero, the same
//! in each re-ask; the `BulkEnd` that answers it echoes it.
//!
//! Who writes, who reads: the control lcore encodes from the records it
//! pops off the workers' events rings, and decodes what the socket
//! received; nothing here touches a worker. `decode` refuses a datagram as
//! a whole, with the reason (`DecodeError`, counted by name by the
//! caller): the cheap checks (length, magic, version) first, then the tag
//! (compared in constant time, `hmac::Mac::verify_slice`), then the
//! header's type and count, then every record (`SyncRecord::decode`
//! refuses unknown kinds, states, modes and flags). Only an authentic
//! datagram reaches the replay check (`Replay`): a strictly newer sequence
//! number from the current sender id is accepted; a new sender id is the
//! peer restarting (its window starts again), unless it is one the peer
//! used before (a replay from an earlier boot).
//!
//! The key is the pair's shared secret from the configuration; `SyncKey`
//! keeps HMAC's keyed state, so a datagram costs no key schedule, and
//! derives the flow-hash key both boxes must share (`hash_key`: the same
//! owner worker for a connection on either box).

use furiwake_dataplane::ctl::events::SyncRecord;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// "FWSY".
pub const MAGIC: [u8; 4] = *b"FWSY";
pub const VERSION: u8 = 1;
/// Bytes before the records.
pub const HEADER_LEN: usize = 28;
/// HMAC-SHA256.
pub const TAG_LEN: usize = 32;
/// IPv4 (20) and UDP (8) headers.
pub const IP_UDP_OVERHEAD: usize = 28;
/// The path MTU assumed.
pub const MTU: usize = 1500;
/// Records per datagram at most: 16 (of the longest kind).
pub const MAX_RECORDS: usize = (MTU - IP_UDP_OVERHEAD - HEADER_LEN - TAG_LEN) / SyncRecord::MAX_WIRE_LEN;
/// The longest datagram (UDP payload): 1404 bytes.
pub const MAX_DATAGRAM: usize = HEADER_LEN + MAX_RECORDS * SyncRecord::MAX_WIRE_LEN + TAG_LEN;
/// Bytes of a bulk request id.
pub const BULK_ID_LEN: usize = 4;

const _: () = assert!(MAX_DATAGRAM + IP_UDP_OVERHEAD <= MTU && MAX_RECORDS == 16);

/// What a datagram is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    /// "I am here" (on start and as a keepalive), no records.
    Hello = 1,
    /// Records for the receiver's workers.
    Records = 2,
    /// "Send me every entry": the sender started or came back. Carries
    /// the request's id.
    BulkRequest = 3,
    /// The answer to the bulk request whose id it carries is complete
    /// (every worker finished its walk and its records were sent).
    BulkEnd = 4,
}

impl MessageType {
    pub const ALL: &'static [MessageType] = &[MessageType::Hello, MessageType::Records, MessageType::BulkRequest, MessageType::BulkEnd];

    pub fn from_u8(b: u8) -> Option<MessageType> {
        Self::ALL.iter().copied().find(|t| *t as u8 == b)
    }
}

/// A datagram's header, as the sender fills it (the record count follows
/// from the records).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub msg: MessageType,
    /// Random per boot of the sender: a new one means it restarted.
    pub sender: u32,
    /// From 1, one more for each datagram the sender sends.
    pub seq: u64,
    /// When it was sent, by the sender's clock (microseconds since the
    /// Unix epoch): what the receiver's `show sync` lag is measured from
    /// (exact when the pair's clocks agree, as NTP keeps them).
    pub sent_us: u64,
}

/// Why a received datagram was dropped; each has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecodeError {
    /// Shorter than a header and a tag, or than its record count says.
    Truncated,
    BadMagic,
    BadVersion,
    /// The tag does not match: another key, or bytes changed on the way.
    BadHmac,
    /// An unknown message type.
    BadType,
    /// The record count disagrees with the length, exceeds `MAX_RECORDS`,
    /// or a message other than `Records` carries records; a bulk message
    /// without its id (or with id 0).
    BadCount,
    /// Record `index` has an unknown kind, family, state, mode or flag.
    BadRecord { index: u16 },
}

impl DecodeError {
    /// The stable name operators see (`sync-drop <name>`).
    pub fn name(self) -> &'static str {
        match self {
            DecodeError::Truncated => "truncated",
            DecodeError::BadMagic => "bad-magic",
            DecodeError::BadVersion => "bad-version",
            DecodeError::BadHmac => "bad-hmac",
            DecodeError::BadType => "bad-type",
            DecodeError::BadCount => "bad-count",
            DecodeError::BadRecord { .. } => "bad-record",
        }
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::BadRecord { index } => write!(f, "bad-record (record {index})"),
            e => f.write_str(e.name()),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why `encode` refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// More than `MAX_RECORDS` records.
    TooManyRecords,
    /// Records in a message other than `Records`.
    RecordsNotExpected,
    /// A bulk message without its request id (or with 0), or another
    /// message with one.
    BulkId,
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EncodeError::TooManyRecords => "more records than a datagram holds",
            EncodeError::RecordsNotExpected => "records in a message that carries none",
            EncodeError::BulkId => "a bulk request id where none belongs, or none where one does",
        })
    }
}

impl std::error::Error for EncodeError {}

/// The pair's shared secret, keyed into HMAC-SHA256 once.
#[derive(Clone)]
pub struct SyncKey(Hmac<Sha256>);

impl std::fmt::Debug for SyncKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.write_str("SyncKey(..)")
    }
}

impl SyncKey {
    /// The key from the configuration's secret; None when it is empty.
    pub fn new(secret: &[u8]) -> Option<SyncKey> {
        if secret.is_empty() {
            return None;
        }
        Hmac::<Sha256>::new_from_slice(secret).ok().map(SyncKey)
    }

    /// The flow-table, ownership and persistence hash key
    /// (`WorkerConfig::hash_key`) of both boxes of the pair, derived from
    /// the secret (HMAC of a fixed label): both must send a connection to
    /// the same worker, and a client still cannot predict it.
    pub fn hash_key(&self) -> u64 {
        let mut mac = self.0.clone();
        mac.update(b"furiwake sync: flow hash key");
        let tag = mac.finalize().into_bytes();
        let mut k = [0u8; 8];
        for (d, s) in k.iter_mut().zip(tag.iter()) {
            *d = *s;
        }
        u64::from_be_bytes(k)
    }

    fn mac(&self, bytes: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.0.clone();
        mac.update(bytes);
        mac
    }
}

/// Writes the datagram of `header` and `records` into `out` (cleared
/// first) and returns its length.
pub fn encode(out: &mut Vec<u8>, key: &SyncKey, header: &Header, records: &[SyncRecord]) -> Result<usize, EncodeError> {
    encode_with(out, key, header, records, None)
}

/// `encode` of a `BulkRequest` or `BulkEnd` and its request id (not 0).
pub fn encode_bulk(out: &mut Vec<u8>, key: &SyncKey, header: &Header, id: u32) -> Result<usize, EncodeError> {
    encode_with(out, key, header, &[], Some(id))
}

fn encode_with(out: &mut Vec<u8>, key: &SyncKey, header: &Header, records: &[SyncRecord], bulk_id: Option<u32>) -> Result<usize, EncodeError> {
    if is_bulk(header.msg) != bulk_id.is_some_and(|id| id != 0) {
        return Err(EncodeError::BulkId);
    }
    if records.len() > MAX_RECORDS {
        return Err(EncodeError::TooManyRecords);
    }
    if header.msg != MessageType::Records && !records.is_empty() {
        return Err(EncodeError::RecordsNotExpected);
    }
    out.clear();
    out.reserve(MAX_DATAGRAM);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(header.msg as u8);
    // At most MAX_RECORDS (32).
    out.extend_from_slice(&(records.len() as u16).to_be_bytes());
    out.extend_from_slice(&header.sender.to_be_bytes());
    out.extend_from_slice(&header.seq.to_be_bytes());
    out.extend_from_slice(&header.sent_us.to_be_bytes());
    let mut rec = [0u8; SyncRecord::MAX_WIRE_LEN];
    for r in records {
        let n = r.encode(&mut rec);
        out.extend_from_slice(rec.get(..n).unwrap_or_default());
    }
    if let Some(id) = bulk_id {
        out.extend_from_slice(&id.to_be_bytes());
    }
    let tag = key.mac(out).finalize().into_bytes();
    out.extend_from_slice(&tag);
    Ok(out.len())
}

fn is_bulk(msg: MessageType) -> bool {
    matches!(msg, MessageType::BulkRequest | MessageType::BulkEnd)
}

/// The records of an authentic datagram, decoded as they are read (each
/// was checked by `decode`), and a bulk message's request id.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    rest: &'a [u8],
    left: usize,
    bulk_id: Option<u32>,
}

impl Records<'_> {
    /// `BulkRequest`, `BulkEnd`: the request's id (never 0).
    pub fn bulk_id(&self) -> Option<u32> {
        self.bulk_id
    }
}

impl Iterator for Records<'_> {
    type Item = SyncRecord;

    fn next(&mut self) -> Option<SyncRecord> {
        // `decode` checked every record.
        let r = SyncRecord::decode(self.rest).filter(|_| self.left > 0)?;
        self.rest = self.rest.get(r.wire_len()..).unwrap_or_default();
        self.left -= 1;
        Some(r)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Records<'_> {}

fn be<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at + N)?.try_into().ok()
}

/// Checks a received datagram (module docs for the order) and returns its
/// header and records.
pub fn decode<'a>(bytes: &'a [u8], key: &SyncKey) -> Result<(Header, Records<'a>), DecodeError> {
    let Some(body_len) = bytes.len().checked_sub(TAG_LEN).filter(|n| *n >= HEADER_LEN) else { return Err(DecodeError::Truncated) };
    let (body, tag) = bytes.split_at(body_len);
    if be::<4>(body, 0) != Some(MAGIC) {
        return Err(DecodeError::BadMagic);
    }
    if body.get(4) != Some(&VERSION) {
        return Err(DecodeError::BadVersion);
    }
    key.mac(body).verify_slice(tag).map_err(|_| DecodeError::BadHmac)?;
    let msg = body.get(5).copied().and_then(MessageType::from_u8).ok_or(DecodeError::BadType)?;
    let count = be::<2>(body, 6).map(u16::from_be_bytes).ok_or(DecodeError::Truncated)? as usize;
    let sender = be::<4>(body, 8).map(u32::from_be_bytes).ok_or(DecodeError::Truncated)?;
    let seq = be::<8>(body, 12).map(u64::from_be_bytes).ok_or(DecodeError::Truncated)?;
    let sent_us = be::<8>(body, 20).map(u64::from_be_bytes).ok_or(DecodeError::Truncated)?;
    if count > MAX_RECORDS || (msg != MessageType::Records && count > 0) {
        return Err(DecodeError::BadCount);
    }
    let payload = body.get(HEADER_LEN..).unwrap_or_default();
    let header = Header { msg, sender, seq, sent_us };
    if is_bulk(msg) {
        let id = be::<BULK_ID_LEN>(payload, 0).map(u32::from_be_bytes).filter(|id| *id != 0 && payload.len() == BULK_ID_LEN).ok_or(DecodeError::BadCount)?;
        return Ok((header, Records { rest: &[], left: 0, bulk_id: Some(id) }));
    }
    let mut rest = payload;
    for index in 0..count {
        let Some(r) = SyncRecord::decode(rest) else {
            // Below MAX_RECORDS.
            return Err(if rest.len() < SyncRecord::WIRE_LEN { DecodeError::Truncated } else { DecodeError::BadRecord { index: index as u16 } });
        };
        rest = rest.get(r.wire_len()..).unwrap_or_default();
    }
    if !rest.is_empty() {
        return Err(DecodeError::BadCount);
    }
    Ok((header, Records { rest: payload, left: count, bulk_id: None }))
}

/// What `Replay::check` says of an authentic datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayVerdict {
    /// Newer than anything seen from this sender: take it.
    Accept,
    /// The first from a new sender id (the first ever, or the peer
    /// restarted): take it; the window starts at its sequence number.
    NewSender,
    /// Not newer than the last one taken (a duplicate, reordered or
    /// replayed): drop it.
    Stale,
    /// From a sender id the peer used before its current one (a replay
    /// from an earlier boot): drop it.
    OldSender,
}

/// Sender ids remembered after the peer moved on.
const RETIRED: usize = 4;

/// The replay window of one peer: its current sender id and the highest
/// sequence number taken from it. Call `check` only on datagrams `decode`
/// accepted (authentic ones), so a forger cannot move the window.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    current: Option<(u32, u64)>,
    retired: [Option<u32>; RETIRED],
    next_retired: usize,
    /// Datagrams dropped as `Stale`.
    pub stale: u64,
    /// Datagrams dropped as `OldSender`.
    pub old_sender: u64,
    /// New sender ids taken after the first (peer restarts).
    pub restarts: u64,
}

impl Replay {
    pub fn check(&mut self, header: &Header) -> ReplayVerdict {
        match self.current {
            Some((sender, last)) if sender == header.sender => {
                if header.seq > last {
                    self.current = Some((sender, header.seq));
                    ReplayVerdict::Accept
                } else {
                    self.stale += 1;
                    ReplayVerdict::Stale
                }
            }
            _ if self.retired.contains(&Some(header.sender)) => {
                self.old_sender += 1;
                ReplayVerdict::OldSender
            }
            current => {
                if let Some((old, _)) = current {
                    if let Some(slot) = self.retired.get_mut(self.next_retired % RETIRED) {
                        *slot = Some(old);
                    }
                    self.next_retired = (self.next_retired + 1) % RETIRED;
                    self.restarts += 1;
                }
                self.current = Some((header.sender, header.seq));
                ReplayVerdict::NewSender
            }
        }
    }

    /// The peer's current sender id, once one datagram was taken.
    pub fn sender(&self) -> Option<u32> {
        self.current.map(|(s, _)| s)
    }
}

#[cfg(test)]
mod tests;
