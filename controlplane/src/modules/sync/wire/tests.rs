use super::*;
use furiwake_dataplane::conntrack::{FlowState, Forwarding};
use furiwake_dataplane::conntrack::track::{PROXY_ON, PROXY_OPEN};
use furiwake_dataplane::ctl::events::{ProxyState, SyncKind, TcpMarks};

fn key() -> SyncKey {
    SyncKey::new(b"the pair's shared secret").unwrap()
}

fn keys() -> Keys {
    Keys::new(key())
}

fn rec(i: u32) -> SyncRecord {
    SyncRecord {
        kind: SyncKind::Create,
        proto: 6,
        state: FlowState::Established,
        mode: Forwarding::FullNat,
        client_ip: 0xc000_0200 + i,
        client_port: 40000 + i as u16,
        vip: 0xc000_0264,
        vport: 80,
        server_ip: 0xc633_640b,
        server_port: 8080,
        local_ip: 0xc633_6401,
        local_port: 1024 + i as u16,
        timeout_ms: 900_000,
        ..SyncRecord::EMPTY
    }
}

fn header(seq: u64) -> Header {
    Header {
        msg: MessageType::Records,
        key_id: key().id(),
        sender_key: 0x42,
        sender: 0xdead_beef,
        seq,
        sent_us: 1_764_000_000_000_000,
        nonce: 0x0102_0304_0506_0708,
        echo: 0x1112_1314_1516_1718,
        fingerprint: 0x2122_2324_2526_2728,
    }
}

fn datagram(n: u32) -> Vec<u8> {
    let records: Vec<_> = (0..n).map(rec).collect();
    let mut out = Vec::new();
    encode(&mut out, &key(), &header(7), &records).unwrap();
    out
}

/// A SYN-proxied connection's record: the longest kind.
fn proxied(i: u32) -> SyncRecord {
    let proxy = ProxyState { seq_delta: i, ts_delta: 7, wscale: [7, 9], flags: PROXY_ON | PROXY_OPEN };
    let marks = TcpMarks { end: [i, 2], ack: [3, 4], win: [5, 6], wscale: [7, 9], known: 0x3f, proxy: Some(proxy) };
    SyncRecord { flags: SyncRecord::FLAG_PROXIED, tcp: Some(marks), ..rec(i) }
}

#[test]
fn a_full_datagram_fits_the_mtu() {
    assert_eq!(MAX_RECORDS, 16);
    assert_eq!(MAX_DATAGRAM, HEADER_LEN + 16 * SyncRecord::MAX_WIRE_LEN + TAG_LEN);
    let longest: Vec<_> = (0..16).map(proxied).collect();
    let mut d = Vec::new();
    encode(&mut d, &key(), &header(1), &longest).unwrap();
    assert_eq!(d.len(), MAX_DATAGRAM);
    assert!(d.len() + IP_UDP_OVERHEAD <= 1500);
    let too_many: Vec<_> = (0..17).map(rec).collect();
    assert_eq!(encode(&mut Vec::new(), &key(), &header(1), &too_many), Err(EncodeError::TooManyRecords));
    let hello = Header { msg: MessageType::Hello, ..header(1) };
    assert_eq!(encode(&mut Vec::new(), &key(), &hello, &[rec(0)]), Err(EncodeError::RecordsNotExpected));
}

#[test]
fn round_trip() {
    for n in [0, 1, 5, 16] {
        let d = datagram(n);
        assert_eq!(d.len(), HEADER_LEN + n as usize * SyncRecord::WIRE_LEN + TAG_LEN);
        let (h, records) = decode(&d, &keys()).unwrap();
        assert_eq!(h, header(7));
        assert_eq!(records.len(), n as usize);
        assert_eq!(records.collect::<Vec<_>>(), (0..n).map(rec).collect::<Vec<_>>());
    }
    let h = Header { msg: MessageType::Hello, key_id: key().id(), sender: 1, seq: u64::MAX, sent_us: 7, ..Header::default() };
    let mut out = vec![0xaa; 3000];
    assert_eq!(encode(&mut out, &key(), &h, &[]), Ok(HEADER_LEN + TAG_LEN), "the buffer is cleared first");
    let (got, records) = decode(&out, &keys()).unwrap();
    assert_eq!((got, records.len(), records.bulk_id()), (h, 0, None));
    // Records of every length in one datagram.
    let mixed = [rec(1), proxied(2), SyncRecord { tcp: Some(TcpMarks { known: 1, ..TcpMarks::default() }), ..rec(3) }, rec(4)];
    let mut d = Vec::new();
    encode(&mut d, &key(), &header(9), &mixed).unwrap();
    assert_eq!(d.len(), HEADER_LEN + 44 + 84 + 72 + 44 + TAG_LEN);
    let (_, records) = decode(&d, &keys()).unwrap();
    assert_eq!(records.len(), 4);
    assert_eq!(records.collect::<Vec<_>>(), mixed);
}

#[test]
fn bulk_messages_carry_their_request_id() {
    for msg in [MessageType::BulkRequest, MessageType::BulkEnd] {
        let h = Header { msg, key_id: key().id(), sender: 1, seq: 2, sent_us: 7, ..Header::default() };
        let mut out = Vec::new();
        assert_eq!(encode_bulk(&mut out, &key(), &h, 0xfeed_0001), Ok(HEADER_LEN + BULK_ID_LEN + TAG_LEN));
        assert_eq!(&out[HEADER_LEN..HEADER_LEN + 4], &[0xfe, 0xed, 0, 1]);
        let (got, records) = decode(&out, &keys()).unwrap();
        assert_eq!((got, records.len(), records.bulk_id()), (h, 0, Some(0xfeed_0001)));
        assert_eq!(encode(&mut out, &key(), &h, &[]), Err(EncodeError::BulkId), "never without its id");
        assert_eq!(encode_bulk(&mut out, &key(), &h, 0), Err(EncodeError::BulkId), "nor 0");
        // Authentic, but without the id, with 0, or with more.
        let body = |id: &[u8]| {
            let mut b = out[..HEADER_LEN].to_vec();
            b.extend_from_slice(id);
            signed(&b)
        };
        for bad in [&[][..], &[0, 0, 0, 0], &[0, 0, 1], &[0, 0, 0, 1, 0]] {
            assert_eq!(decode(&body(bad), &keys()).map(|_| ()), Err(DecodeError::BadCount), "{bad:?}");
        }
    }
    let hello = Header { msg: MessageType::Hello, key_id: key().id(), sender: 1, seq: 2, sent_us: 7, ..Header::default() };
    assert_eq!(encode_bulk(&mut Vec::new(), &key(), &hello, 5), Err(EncodeError::BulkId));
}

#[test]
fn the_header_layout_is_fixed() {
    let d = datagram(1);
    assert_eq!(&d[..4], b"FWSY");
    assert_eq!((d[4], d[5]), (2, 2));
    assert_eq!(&d[6..8], &[0, 1]);
    assert_eq!(&d[8..12], &[key().id(), 0x42, 0, 0]);
    assert_eq!(&d[12..16], &[0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(&d[16..24], &[0, 0, 0, 0, 0, 0, 0, 7]);
    assert_eq!(&d[24..32], &1_764_000_000_000_000u64.to_be_bytes());
    assert_eq!(&d[32..40], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(&d[40..48], &[0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18]);
    assert_eq!(&d[48..56], &[0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28]);
    let mut r = [0u8; SyncRecord::MAX_WIRE_LEN];
    assert_eq!(rec(0).encode(&mut r), 44);
    assert_eq!(&d[56..100], &r[..44]);
}

#[test]
fn a_flipped_bit_anywhere_is_refused() {
    let d = datagram(3);
    for byte in 0..d.len() {
        for bit in 0..8 {
            let mut x = d.clone();
            x[byte] ^= 1 << bit;
            let e = decode(&x, &keys()).map(|_| ()).unwrap_err();
            // The magic, version and key id are looked at before the tag.
            let expect = match byte {
                0..=3 => DecodeError::BadMagic,
                4 => DecodeError::BadVersion,
                8 => DecodeError::UnknownKey,
                _ => DecodeError::BadHmac,
            };
            assert_eq!(e, expect, "byte {byte} bit {bit}");
        }
    }
}

#[test]
fn another_key_is_refused_and_the_previous_one_accepted() {
    let d = datagram(2);
    let other = SyncKey::new(b"the pair's shared secreT").unwrap();
    assert_ne!(other.id(), key().id());
    assert_eq!(decode(&d, &Keys::new(other.clone())).map(|_| ()), Err(DecodeError::UnknownKey));
    // Another key with the same id (the id is one byte): the tag decides.
    let mut same_id = d.clone();
    let n = same_id.len();
    same_id[n - 1] ^= 1;
    assert_eq!(decode(&same_id, &keys()).map(|_| ()), Err(DecodeError::BadHmac));
    // During a re-keying the previous key is accepted too, and says so.
    let rotating = Keys { current: other.clone(), previous: Some(key()) };
    let (h, _) = decode(&d, &rotating).unwrap();
    assert_eq!(h.key_id, key().id());
    let mut by_new = Vec::new();
    encode(&mut by_new, &other, &header(8), &[]).unwrap();
    assert_eq!(decode(&by_new, &rotating).unwrap().0.key_id, other.id());
    assert_eq!(decode(&by_new, &keys()).map(|_| ()), Err(DecodeError::UnknownKey), "the new key is unknown to a box without it");
    assert!(SyncKey::new(b"").is_none(), "no empty key");
    assert_eq!(format!("{:?}", key()), format!("SyncKey(id {:02x})", key().id()), "the key is never printed");
}

#[test]
fn truncated_datagrams_are_refused() {
    let d = datagram(2);
    for len in 0..HEADER_LEN + TAG_LEN {
        assert_eq!(decode(&d[..len], &keys()).map(|_| ()), Err(DecodeError::Truncated), "{len} bytes");
    }
    // Cut anywhere else, the tag is not where it was: refused.
    for len in HEADER_LEN + TAG_LEN..d.len() {
        assert!(decode(&d[..len], &keys()).is_err(), "{len} bytes");
    }
    let longest: Vec<_> = (0..16).map(proxied).collect();
    let mut long = Vec::new();
    encode(&mut long, &key(), &header(7), &longest).unwrap();
    long.push(0);
    assert_eq!(decode(&long, &keys()).map(|_| ()), Err(DecodeError::TooLong));
}

/// A datagram whose body the test writes, tagged with the right key: the
/// checks after the tag.
fn signed(body: &[u8]) -> Vec<u8> {
    sign(body, &key())
}

#[test]
fn authentic_but_malformed_datagrams_are_refused_by_reason() {
    let good = datagram(2);
    let body = &good[..good.len() - TAG_LEN];
    let with = |at: usize, v: u8| {
        let mut b = body.to_vec();
        b[at] = v;
        signed(&b)
    };
    assert_eq!(decode(&with(5, 9), &keys()).map(|_| ()), Err(DecodeError::BadType));
    assert_eq!(decode(&with(7, 3), &keys()).map(|_| ()), Err(DecodeError::Truncated), "count 3, two records");
    assert_eq!(decode(&with(7, 1), &keys()).map(|_| ()), Err(DecodeError::BadCount), "count 1, two records");
    assert_eq!(decode(&with(7, 33), &keys()).map(|_| ()), Err(DecodeError::BadCount));
    assert_eq!(decode(&with(5, MessageType::BulkEnd as u8), &keys()).map(|_| ()), Err(DecodeError::BadCount), "records in a BulkEnd");
    // The second record's kind byte.
    assert_eq!(decode(&with(HEADER_LEN + SyncRecord::WIRE_LEN, 0), &keys()).map(|_| ()), Err(DecodeError::BadRecord { index: 1 }));
    // The first says marks follow (ext 1): the second record's bytes are
    // read as its marks, and what is left is not a record.
    assert!(decode(&with(HEADER_LEN + 7, 1), &keys()).is_err());
    assert_eq!(DecodeError::BadRecord { index: 1 }.to_string(), "bad-record (record 1)");
    assert_eq!(DecodeError::BadHmac.to_string(), "bad-hmac");
}

/// Issue 20: a Hello offers the sender's ownership key, hidden under a pad
/// of its sender id and sequence number (a new one each datagram) that
/// only the pair's key computes; no body is an offer of nothing; any other
/// length is refused.
#[test]
fn a_hello_offers_the_ownership_key_padded() {
    let owner = 0x0123_4567_89ab_cdef;
    let h = |seq| Header { msg: MessageType::Hello, key_id: key().id(), sender: 9, seq, sent_us: 7, ..Header::default() };
    let mut out = Vec::new();
    assert_eq!(encode_hello(&mut out, &key(), &h(1), owner, 1_700_000_000_000_000, true), Ok(HEADER_LEN + OFFER_LEN + TAG_LEN));
    let (got, r) = decode(&out, &keys()).unwrap();
    let o = r.offer().expect("an offer");
    assert_eq!((got.msg, o.born_us, o.serving), (MessageType::Hello, 1_700_000_000_000_000, true));
    assert_ne!(o.padded, owner, "not in the clear");
    assert_eq!(o.padded ^ key().owner_pad(9, 1), owner);
    assert_ne!(o.padded ^ SyncKey::new(b"another pair's secret").unwrap().owner_pad(9, 1), owner);
    let mut again = Vec::new();
    encode_hello(&mut again, &key(), &h(2), owner, 1, false).unwrap();
    let (_, r2) = decode(&again, &keys()).unwrap();
    assert_ne!(r2.offer().unwrap().padded, o.padded, "another pad for the next datagram");
    assert!(!r2.offer().unwrap().serving);
    assert_eq!(encode_hello(&mut Vec::new(), &key(), &header(1), owner, 1, false), Err(EncodeError::RecordsNotExpected), "Hellos only");
    // No body: no offer.
    let mut plain = Vec::new();
    encode(&mut plain, &key(), &h(3), &[]).unwrap();
    assert_eq!(decode(&plain, &keys()).unwrap().1.offer(), None);
    // Another length.
    let mut body = out[..HEADER_LEN + OFFER_LEN - 1].to_vec();
    body = sign(&body, &key());
    assert_eq!(decode(&body, &keys()).map(|_| ()), Err(DecodeError::BadCount));
    // A serving byte other than 0 or 1.
    let mut odd = out[..HEADER_LEN + OFFER_LEN].to_vec();
    odd[HEADER_LEN + 16] = 2;
    assert_eq!(decode(&sign(&odd, &key()), &keys()).map(|_| ()), Err(DecodeError::BadCount));
}
