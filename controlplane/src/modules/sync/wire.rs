//! The state-sync datagram (issue 12, version 2 since issue 20): what one
//! box's control lcore sends its peer in one UDP datagram, and the checks a
//! received one passes before its records reach a worker.
//!
//! ```text
//!  0  magic "FWSY" (4)
//!  4  version (1) = 2
//!  5  message type (1): Hello 1, Records 2, BulkRequest 3, BulkEnd 4,
//!                                  Learned 5
//!  6  record count (2)             only Records carries records
//!  8  key id (1)                   the key that made the tag (`SyncKey::id`)
//!  9  sender's key id (1)          the sender's `key` (what it sends with
//!                                  once it knows the receiver has it too)
//! 10  zero (2)
//! 12  sender id (4)                random per boot of the sender
//! 16  sequence number (8)          per sender, from 1, +1 per datagram
//! 24  sent at (8)                  the sender's clock, microseconds since
//!                                  the Unix epoch (the receiver's lag)
//! 32  nonce (8)                    the sender's freshness nonce (random,
//!                                  new at every boot, rotated every minute)
//! 40  echo (8)                     the receiver's nonce, as the sender last
//!                                  received it (0: none yet)
//! 48  pair fingerprint (8)         the sender's pair invariants
//!                                  (`super::pair`): worker count (1),
//!                                  ownership key id (1), links (2),
//!                                  services (4)
//! 56  Records: count x SyncRecord (44, 72 or 84 bytes each,
//!     `SyncRecord::wire_len`); BulkRequest, BulkEnd: the request id (4);
//!     Hello: nothing, or the sender's ownership offer (17): its ownership
//!     key XOR a pad (`SyncKey::owner_pad` of the sender id and sequence
//!     number under the tag's key, so only the pair can read it) (8), when
//!     that key was drawn, microseconds since the Unix epoch (8), and 1 if
//!     the sender serves (is master of a VRRP instance), else 0 (1);
//!     Learned: count x (namespace length (1), namespace, value length
//!     (1), value, server address (4), port (2), timeout seconds (4)):
//!     the L7 engine's learned persistence records (`LearnedRecord`)
//!  .. HMAC-SHA256 tag (32) over every byte before it
//! ```
//!
//! All numbers in network byte order. At most `MAX_RECORDS` (16) records,
//! so that a datagram of the longest records (at most `MAX_DATAGRAM`,
//! 1432 bytes) plus the IPv4 and UDP headers (28) fits a 1500-byte MTU
//! unfragmented. A bulk request's id is the requester's, nonzero, the same
//! in each re-ask; the `BulkEnd` that answers it echoes it.
//!
//! Who writes, who reads: the control lcore encodes from the records it
//! pops off the workers' events rings, and decodes what the socket
//! received; nothing here touches a worker. `decode` refuses a datagram as
//! a whole, with the reason (`DecodeError`, counted by name by the
//! caller): the cheap checks (length, magic, version, a key id this box
//! has: `precheck`, also run before a datagram is queued) first, then the
//! tag (compared in constant time, `hmac::Mac::verify_slice`), then the
//! header's type and count, then every record (`SyncRecord::decode`
//! refuses unknown kinds, states, modes and flags). Only an authentic
//! datagram reaches the freshness check (`super::fresh`).
//!
//! The keys are the pair's shared secrets from the configuration: `key`,
//! and during a rotation `previous_key`, accepted too (README, "Re-keying
//! the sync"). `SyncKey` keeps HMAC's keyed state, so a datagram costs no
//! key schedule. Nothing else derives from them: the workers' ownership
//! key is drawn at boot and the pair agrees on one through the Hellos'
//! offers (`super::Sync`; docs/architecture.md, "Hashing").

use furiwake_dataplane::ctl::events::SyncRecord;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// "FWSY".
pub const MAGIC: [u8; 4] = *b"FWSY";
pub const VERSION: u8 = 2;
/// Bytes before the records.
pub const HEADER_LEN: usize = 56;
/// HMAC-SHA256.
pub const TAG_LEN: usize = 32;
/// IPv4 (20) and UDP (8) headers.
pub const IP_UDP_OVERHEAD: usize = 28;
/// The path MTU assumed.
pub const MTU: usize = 1500;
/// Records per datagram at most: 16 (of the longest kind).
pub const MAX_RECORDS: usize = (MTU - IP_UDP_OVERHEAD - HEADER_LEN - TAG_LEN) / SyncRecord::MAX_WIRE_LEN;
/// The longest datagram (UDP payload): 1432 bytes.
pub const MAX_DATAGRAM: usize = HEADER_LEN + MAX_RECORDS * SyncRecord::MAX_WIRE_LEN + TAG_LEN;
/// Bytes of a bulk request id.
pub const BULK_ID_LEN: usize = 4;
/// Bytes of a Hello's ownership offer.
pub const OFFER_LEN: usize = 17;

/// Bytes a `Learned` datagram's records may take.
pub const MAX_LEARNED_BYTES: usize = MAX_DATAGRAM - HEADER_LEN - TAG_LEN;

mod learned;
pub use learned::{encode_learned, LearnedRecord};

/// A Hello's ownership offer, as on the wire: the key still padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerOffer {
    /// The key XOR `SyncKey::owner_pad(sender, seq)`.
    pub padded: u64,
    /// When the key was drawn (microseconds since the Unix epoch).
    pub born_us: u64,
    /// The sender serves (master of a VRRP instance): it keeps its key.
    pub serving: bool,
}

const _: () = assert!(MAX_DATAGRAM + IP_UDP_OVERHEAD <= MTU && MAX_RECORDS == 16);

/// What a datagram is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum MessageType {
    /// "I am here" (on start and as a keepalive), no records.
    #[default]
    Hello = 1,
    /// Records for the receiver's workers.
    Records = 2,
    /// "Send me every entry": the sender started or came back. Carries
    /// the request's id.
    BulkRequest = 3,
    /// The answer to the bulk request whose id it carries is complete
    /// (every worker finished its walk and its records were sent).
    BulkEnd = 4,
    /// The L7 engine's learned persistence records.
    Learned = 5,
}

impl MessageType {
    pub const ALL: &'static [MessageType] = &[MessageType::Hello, MessageType::Records, MessageType::BulkRequest, MessageType::BulkEnd, MessageType::Learned];

    pub fn from_u8(b: u8) -> Option<MessageType> {
        Self::ALL.iter().copied().find(|t| *t as u8 == b)
    }
}

/// A datagram's header, as the sender fills it (the record count follows
/// from the records; the key id from the key `encode` is given).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    pub msg: MessageType,
    /// The id of the key that made the tag (`decode` fills it).
    pub key_id: u8,
    /// The id of the sender's current key (`[sync] key`).
    pub sender_key: u8,
    /// Random per boot of the sender: a new one means it restarted.
    pub sender: u32,
    /// From 1, one more for each datagram the sender sends.
    pub seq: u64,
    /// When it was sent, by the sender's clock (microseconds since the
    /// Unix epoch): what the receiver's `show sync` lag is measured from
    /// (exact when the pair's clocks agree, as NTP keeps them).
    pub sent_us: u64,
    /// The sender's current freshness nonce, for the receiver to echo.
    pub nonce: u64,
    /// The receiver's nonce as the sender last received it (0: none).
    pub echo: u64,
    /// The sender's pair invariants (`super::fingerprint`).
    pub fingerprint: u64,
}

/// Why a received datagram was dropped; each has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecodeError {
    /// Shorter than a header and a tag, or than its record count says.
    Truncated,
    BadMagic,
    BadVersion,
    /// Longer than `MAX_DATAGRAM`.
    TooLong,
    /// Tagged with a key id that is neither `key`'s nor `previous_key`'s.
    UnknownKey,
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
            DecodeError::TooLong => "too-long",
            DecodeError::UnknownKey => "unknown-key",
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

/// One shared secret of the pair, keyed into HMAC-SHA256 once, and its id.
#[derive(Clone)]
pub struct SyncKey {
    mac: Hmac<Sha256>,
    id: u8,
}

impl std::fmt::Debug for SyncKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key; its id is public (it is in every datagram).
        write!(f, "SyncKey(id {:02x})", self.id)
    }
}

impl SyncKey {
    /// The key from the configuration's secret; None when it is empty.
    pub fn new(secret: &[u8]) -> Option<SyncKey> {
        if secret.is_empty() {
            return None;
        }
        let mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
        Some(SyncKey { mac, id: key_id(secret) })
    }

    /// The key's id in the header (`key_id`).
    pub fn id(&self) -> u8 {
        self.id
    }

    /// The pad that hides an ownership offer in the Hello of `sender`
    /// numbered `seq` (HMAC of a fixed label, the sender and the number: a
    /// new pad for every datagram; only the pair can compute it).
    pub fn owner_pad(&self, sender: u32, seq: u64) -> u64 {
        let mut mac = self.mac(b"furiwake sync: ownership offer");
        mac.update(&sender.to_be_bytes());
        mac.update(&seq.to_be_bytes());
        let tag = mac.finalize().into_bytes();
        let mut k = [0u8; 8];
        for (d, s) in k.iter_mut().zip(tag.iter()) {
            *d = *s;
        }
        u64::from_be_bytes(k)
    }

    fn mac(&self, bytes: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(bytes);
        mac
    }
}

pub use crate::config::sync_key_id as key_id;

/// The keys a box accepts: its `key` (what it sends with) and, during a
/// rotation, its `previous_key`.
#[derive(Debug, Clone)]
pub struct Keys {
    pub current: SyncKey,
    pub previous: Option<SyncKey>,
}

impl Keys {
    pub fn new(current: SyncKey) -> Keys {
        Keys { current, previous: None }
    }

    /// The key with id `id`, the current one first.
    pub fn by_id(&self, id: u8) -> Option<&SyncKey> {
        std::iter::once(&self.current).chain(self.previous.as_ref()).find(|k| k.id == id)
    }
}

/// Writes the datagram of `header` and `records` into `out` (cleared
/// first) and returns its length.
pub fn encode(out: &mut Vec<u8>, key: &SyncKey, header: &Header, records: &[SyncRecord]) -> Result<usize, EncodeError> {
    encode_with(out, key, header, records, None, None)
}

/// `encode` of a `BulkRequest` or `BulkEnd` and its request id (not 0).
pub fn encode_bulk(out: &mut Vec<u8>, key: &SyncKey, header: &Header, id: u32) -> Result<usize, EncodeError> {
    encode_with(out, key, header, &[], Some(id), None)
}

/// `encode` of a `Hello` with the sender's ownership key `owner` (drawn
/// at `born_us`), padded under `key` for the header's sender and
/// sequence number, and whether the sender serves.
pub fn encode_hello(out: &mut Vec<u8>, key: &SyncKey, header: &Header, owner: u64, born_us: u64, serving: bool) -> Result<usize, EncodeError> {
    if header.msg != MessageType::Hello {
        return Err(EncodeError::RecordsNotExpected);
    }
    let offer = OwnerOffer { padded: owner ^ key.owner_pad(header.sender, header.seq), born_us, serving };
    encode_with(out, key, header, &[], None, Some(offer))
}

fn encode_with(out: &mut Vec<u8>, key: &SyncKey, header: &Header, records: &[SyncRecord], bulk_id: Option<u32>, offer: Option<OwnerOffer>) -> Result<usize, EncodeError> {
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
    out.extend_from_slice(&[key.id, header.sender_key, 0, 0]);
    out.extend_from_slice(&header.sender.to_be_bytes());
    out.extend_from_slice(&header.seq.to_be_bytes());
    out.extend_from_slice(&header.sent_us.to_be_bytes());
    out.extend_from_slice(&header.nonce.to_be_bytes());
    out.extend_from_slice(&header.echo.to_be_bytes());
    out.extend_from_slice(&header.fingerprint.to_be_bytes());
    let mut rec = [0u8; SyncRecord::MAX_WIRE_LEN];
    for r in records {
        let n = r.encode(&mut rec);
        out.extend_from_slice(rec.get(..n).unwrap_or_default());
    }
    if let Some(id) = bulk_id {
        out.extend_from_slice(&id.to_be_bytes());
    }
    if let Some(o) = offer {
        out.extend_from_slice(&o.padded.to_be_bytes());
        out.extend_from_slice(&o.born_us.to_be_bytes());
        out.push(u8::from(o.serving));
    }
    let tag = key.mac(out).finalize().into_bytes();
    out.extend_from_slice(&tag);
    Ok(out.len())
}

fn is_bulk(msg: MessageType) -> bool {
    matches!(msg, MessageType::BulkRequest | MessageType::BulkEnd)
}

/// `body` with its tag under `key` (tests and the fuzz target make
/// datagrams `encode` would not).
pub fn sign(body: &[u8], key: &SyncKey) -> Vec<u8> {
    let mut d = body.to_vec();
    d.extend_from_slice(&key.mac(body).finalize().into_bytes());
    d
}

/// The records of an authentic datagram, decoded as they are read (each
/// was checked by `decode`).
#[derive(Debug, Clone)]
pub struct Records<'a> {
    rest: &'a [u8],
    left: usize,
    bulk_id: Option<u32>,
    offer: Option<OwnerOffer>,
    learned: Vec<LearnedRecord>,
}

impl Records<'_> {
    /// `BulkRequest`, `BulkEnd`: the request's id (never 0).
    pub fn bulk_id(&self) -> Option<u32> {
        self.bulk_id
    }

    /// `Hello`: the sender's ownership offer, if it made one.
    pub fn offer(&self) -> Option<OwnerOffer> {
        self.offer
    }

    /// `Learned`: the L7 engine's records.
    pub fn take_learned(&mut self) -> Vec<LearnedRecord> {
        std::mem::take(&mut self.learned)
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

/// The checks before the tag (length, magic, version, a key id this box
/// has): cheap, so that the control loop queues no datagram that fails
/// them. Returns the key to verify the tag with.
pub fn precheck<'k>(bytes: &[u8], keys: &'k Keys) -> Result<&'k SyncKey, DecodeError> {
    if bytes.len() < HEADER_LEN + TAG_LEN {
        return Err(DecodeError::Truncated);
    }
    if bytes.len() > MAX_DATAGRAM {
        return Err(DecodeError::TooLong);
    }
    if be::<4>(bytes, 0) != Some(MAGIC) {
        return Err(DecodeError::BadMagic);
    }
    if bytes.get(4) != Some(&VERSION) {
        return Err(DecodeError::BadVersion);
    }
    bytes.get(8).and_then(|id| keys.by_id(*id)).ok_or(DecodeError::UnknownKey)
}

fn be_u64(body: &[u8], at: usize) -> Result<u64, DecodeError> {
    be::<8>(body, at).map(u64::from_be_bytes).ok_or(DecodeError::Truncated)
}

/// Checks a received datagram (module docs for the order) and returns its
/// header and records.
pub fn decode<'a>(bytes: &'a [u8], keys: &Keys) -> Result<(Header, Records<'a>), DecodeError> {
    let key = precheck(bytes, keys)?;
    let (body, tag) = bytes.split_at(bytes.len() - TAG_LEN);
    key.mac(body).verify_slice(tag).map_err(|_| DecodeError::BadHmac)?;
    let msg = body.get(5).copied().and_then(MessageType::from_u8).ok_or(DecodeError::BadType)?;
    let count = be::<2>(body, 6).map(u16::from_be_bytes).ok_or(DecodeError::Truncated)? as usize;
    let sender_key = body.get(9).copied().ok_or(DecodeError::Truncated)?;
    let sender = be::<4>(body, 12).map(u32::from_be_bytes).ok_or(DecodeError::Truncated)?;
    let header = Header {
        msg,
        key_id: key.id,
        sender_key,
        sender,
        seq: be_u64(body, 16)?,
        sent_us: be_u64(body, 24)?,
        nonce: be_u64(body, 32)?,
        echo: be_u64(body, 40)?,
        fingerprint: be_u64(body, 48)?,
    };
    let payload = body.get(HEADER_LEN..).unwrap_or_default();
    if msg == MessageType::Learned {
        let mut rest = payload;
        let mut learned = Vec::with_capacity(count.min(64));
        for index in 0..count {
            let (r, after) = LearnedRecord::decode(rest).ok_or(DecodeError::BadRecord { index: index as u16 })?;
            learned.push(r);
            rest = after;
        }
        if !rest.is_empty() {
            return Err(DecodeError::BadCount);
        }
        return Ok((header, Records { rest: &[], left: 0, bulk_id: None, offer: None, learned }));
    }
    if count > MAX_RECORDS || (msg != MessageType::Records && count > 0) {
        return Err(DecodeError::BadCount);
    }
    if is_bulk(msg) {
        let id = be::<BULK_ID_LEN>(payload, 0).map(u32::from_be_bytes).filter(|id| *id != 0 && payload.len() == BULK_ID_LEN).ok_or(DecodeError::BadCount)?;
        return Ok((header, Records { rest: &[], left: 0, bulk_id: Some(id), offer: None, learned: Vec::new() }));
    }
    if msg == MessageType::Hello {
        let offer = match payload.len() {
            0 => None,
            OFFER_LEN => {
                let serving = match payload.get(16) {
                    Some(0) => false,
                    Some(1) => true,
                    _ => return Err(DecodeError::BadCount),
                };
                Some(OwnerOffer { padded: be_u64(payload, 0)?, born_us: be_u64(payload, 8)?, serving })
            }
            _ => return Err(DecodeError::BadCount),
        };
        return Ok((header, Records { rest: &[], left: 0, bulk_id: None, offer, learned: Vec::new() }));
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
    Ok((header, Records { rest: payload, left: count, bulk_id: None, offer: None, learned: Vec::new() }))
}

#[cfg(test)]
mod tests;
