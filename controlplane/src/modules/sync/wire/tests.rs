use super::*;
use furiwake_dataplane::conntrack::{FlowState, Forwarding};
use furiwake_dataplane::conntrack::track::{PROXY_ON, PROXY_OPEN};
use furiwake_dataplane::ctl::events::{ProxyState, SyncKind, TcpMarks};

fn key() -> SyncKey {
    SyncKey::new(b"the pair's shared secret").unwrap()
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
    Header { msg: MessageType::Records, sender: 0xdead_beef, seq, sent_us: 1_764_000_000_000_000 }
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
    assert_eq!(MAX_DATAGRAM, 1404);
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
        let (h, records) = decode(&d, &key()).unwrap();
        assert_eq!(h, header(7));
        assert_eq!(records.len(), n as usize);
        assert_eq!(records.collect::<Vec<_>>(), (0..n).map(rec).collect::<Vec<_>>());
    }
    let h = Header { msg: MessageType::Hello, sender: 1, seq: u64::MAX, sent_us: 7 };
    let mut out = vec![0xaa; 3000];
    assert_eq!(encode(&mut out, &key(), &h, &[]), Ok(HEADER_LEN + TAG_LEN), "the buffer is cleared first");
    let (got, records) = decode(&out, &key()).unwrap();
    assert_eq!((got, records.len(), records.bulk_id()), (h, 0, None));
    // Records of every length in one datagram.
    let mixed = [rec(1), proxied(2), SyncRecord { tcp: Some(TcpMarks { known: 1, ..TcpMarks::default() }), ..rec(3) }, rec(4)];
    let mut d = Vec::new();
    encode(&mut d, &key(), &header(9), &mixed).unwrap();
    assert_eq!(d.len(), HEADER_LEN + 44 + 84 + 72 + 44 + TAG_LEN);
    let (_, records) = decode(&d, &key()).unwrap();
    assert_eq!(records.len(), 4);
    assert_eq!(records.collect::<Vec<_>>(), mixed);
}

#[test]
fn bulk_messages_carry_their_request_id() {
    for msg in [MessageType::BulkRequest, MessageType::BulkEnd] {
        let h = Header { msg, sender: 1, seq: 2, sent_us: 7 };
        let mut out = Vec::new();
        assert_eq!(encode_bulk(&mut out, &key(), &h, 0xfeed_0001), Ok(HEADER_LEN + BULK_ID_LEN + TAG_LEN));
        assert_eq!(&out[HEADER_LEN..HEADER_LEN + 4], &[0xfe, 0xed, 0, 1]);
        let (got, records) = decode(&out, &key()).unwrap();
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
            assert_eq!(decode(&body(bad), &key()).map(|_| ()), Err(DecodeError::BadCount), "{bad:?}");
        }
    }
    let hello = Header { msg: MessageType::Hello, sender: 1, seq: 2, sent_us: 7 };
    assert_eq!(encode_bulk(&mut Vec::new(), &key(), &hello, 5), Err(EncodeError::BulkId));
}

#[test]
fn the_header_layout_is_fixed() {
    let d = datagram(1);
    assert_eq!(&d[..4], b"FWSY");
    assert_eq!((d[4], d[5]), (1, 2));
    assert_eq!(&d[6..8], &[0, 1]);
    assert_eq!(&d[8..12], &[0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(&d[12..20], &[0, 0, 0, 0, 0, 0, 0, 7]);
    assert_eq!(&d[20..28], &1_764_000_000_000_000u64.to_be_bytes());
    let mut r = [0u8; SyncRecord::MAX_WIRE_LEN];
    assert_eq!(rec(0).encode(&mut r), 44);
    assert_eq!(&d[28..72], &r[..44]);
}

#[test]
fn a_flipped_bit_anywhere_is_refused() {
    let d = datagram(3);
    for byte in 0..d.len() {
        for bit in 0..8 {
            let mut x = d.clone();
            x[byte] ^= 1 << bit;
            let e = decode(&x, &key()).map(|_| ()).unwrap_err();
            // The magic and version are looked at before the tag.
            let expect = match byte {
                0..=3 => DecodeError::BadMagic,
                4 => DecodeError::BadVersion,
                _ => DecodeError::BadHmac,
            };
            assert_eq!(e, expect, "byte {byte} bit {bit}");
        }
    }
}

#[test]
fn another_key_is_refused() {
    let d = datagram(2);
    let other = SyncKey::new(b"the pair's shared secreT").unwrap();
    assert_eq!(decode(&d, &other).map(|_| ()), Err(DecodeError::BadHmac));
    assert!(SyncKey::new(b"").is_none(), "no empty key");
    assert_eq!(format!("{:?}", key()), "SyncKey(..)", "the key is never printed");
}

#[test]
fn truncated_datagrams_are_refused() {
    let d = datagram(2);
    for len in 0..HEADER_LEN + TAG_LEN {
        assert_eq!(decode(&d[..len], &key()).map(|_| ()), Err(DecodeError::Truncated), "{len} bytes");
    }
    // Cut anywhere else, the tag is not where it was: refused.
    for len in HEADER_LEN + TAG_LEN..d.len() {
        assert!(decode(&d[..len], &key()).is_err(), "{len} bytes");
    }
}

/// A datagram whose body the test writes, tagged with the right key: the
/// checks after the tag.
fn signed(body: &[u8]) -> Vec<u8> {
    let mut d = body.to_vec();
    let tag = key().mac(&d).finalize().into_bytes();
    d.extend_from_slice(&tag);
    d
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
    assert_eq!(decode(&with(5, 9), &key()).map(|_| ()), Err(DecodeError::BadType));
    assert_eq!(decode(&with(7, 3), &key()).map(|_| ()), Err(DecodeError::Truncated), "count 3, two records");
    assert_eq!(decode(&with(7, 1), &key()).map(|_| ()), Err(DecodeError::BadCount), "count 1, two records");
    assert_eq!(decode(&with(7, 33), &key()).map(|_| ()), Err(DecodeError::BadCount));
    assert_eq!(decode(&with(5, MessageType::BulkEnd as u8), &key()).map(|_| ()), Err(DecodeError::BadCount), "records in a BulkEnd");
    // The second record's kind byte.
    assert_eq!(decode(&with(HEADER_LEN + SyncRecord::WIRE_LEN, 0), &key()).map(|_| ()), Err(DecodeError::BadRecord { index: 1 }));
    // The first says marks follow (ext 1): the second record's bytes are
    // read as its marks, and what is left is not a record.
    assert!(decode(&with(HEADER_LEN + 7, 1), &key()).is_err());
    assert_eq!(DecodeError::BadRecord { index: 1 }.to_string(), "bad-record (record 1)");
    assert_eq!(DecodeError::BadHmac.to_string(), "bad-hmac");
}

#[test]
fn replay_takes_strictly_newer_sequences() {
    let mut r = Replay::default();
    let h = |sender: u32, seq: u64| Header { msg: MessageType::Records, sender, seq, sent_us: 0 };
    assert_eq!(r.check(&h(1, 10)), ReplayVerdict::NewSender);
    assert_eq!(r.sender(), Some(1));
    assert_eq!(r.check(&h(1, 11)), ReplayVerdict::Accept);
    assert_eq!(r.check(&h(1, 11)), ReplayVerdict::Stale, "duplicate");
    assert_eq!(r.check(&h(1, 5)), ReplayVerdict::Stale, "old");
    assert_eq!(r.check(&h(1, 20)), ReplayVerdict::Accept, "gaps are fine (lost datagrams)");
    assert_eq!(r.check(&h(1, 19)), ReplayVerdict::Stale, "reordered: late");
    assert_eq!(r.stale, 3);
    // The peer restarts: a new id, its sequence starts again.
    assert_eq!(r.check(&h(2, 1)), ReplayVerdict::NewSender);
    assert_eq!(r.check(&h(2, 2)), ReplayVerdict::Accept);
    assert_eq!(r.restarts, 1);
    // Datagrams of the earlier boot, replayed, are refused.
    assert_eq!(r.check(&h(1, 21)), ReplayVerdict::OldSender);
    assert_eq!(r.old_sender, 1);
    assert_eq!(r.check(&h(2, 3)), ReplayVerdict::Accept, "the window was not moved");
    // Only the last few ids are remembered.
    for id in 3..8 {
        assert_eq!(r.check(&h(id, 1)), ReplayVerdict::NewSender);
    }
    assert_eq!(r.check(&h(1, 1)), ReplayVerdict::NewSender, "forgotten after 4 restarts");
}

#[test]
fn the_hash_key_is_the_pairs() {
    assert_eq!(key().hash_key(), SyncKey::new(b"the pair's shared secret").unwrap().hash_key());
    assert_ne!(key().hash_key(), SyncKey::new(b"another secret").unwrap().hash_key());
    assert_ne!(key().hash_key(), 0);
}
