//! The sync datagram's parsers under libFuzzer, under a fixed key: the
//! input as a frame a worker punts (`sync::frame::udp_datagram`, then its
//! payload through `sync::wire::decode`), as a datagram (`decode`: mostly
//! the checks before the tag), and as the body of a datagram signed with
//! the key (every check after the tag). Whatever `decode` accepts must
//! encode and decode to the same header and records.
#![no_main]

use furiwake::modules::sync::frame::udp_datagram;
use furiwake::modules::sync::wire::{decode, encode, encode_bulk, encode_hello, encode_learned, sign, Keys, MessageType, SyncKey, BULK_ID_LEN, HEADER_LEN, MAX_DATAGRAM, OFFER_LEN, TAG_LEN, VERSION};
use libfuzzer_sys::fuzz_target;

fn keys() -> &'static Keys {
    static KEYS: std::sync::OnceLock<Keys> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| Keys::new(SyncKey::new(b"the fuzzer's fixed sync key, 32B").expect("a non-empty key")))
}

fuzz_target!(|data: &[u8]| {
    let keys = keys();
    if let Some(d) = udp_datagram(data) {
        check(d.payload, keys);
    }
    check(data, keys);
    // The input as the body after magic, version, type and count, with the
    // key id right, signed: every check after the tag.
    let mut body = Vec::with_capacity(MAX_DATAGRAM);
    body.extend_from_slice(b"FWSY");
    body.push(VERSION);
    body.extend_from_slice(data.get(..3).unwrap_or(&[1, 0, 0]));
    body.push(keys.current.id());
    body.extend_from_slice(data.get(3..).unwrap_or_default());
    body.truncate(MAX_DATAGRAM - TAG_LEN);
    check(&sign(&body, &keys.current), keys);
});

/// Whatever `decode` accepts is well-formed: the length follows from the
/// count, every record decodes, and what it gives encodes and decodes to
/// the same.
fn check(bytes: &[u8], keys: &Keys) {
    let Ok((h, mut records)) = decode(bytes, keys) else { return };
    let (bulk_id, offer, learned) = (records.bulk_id(), records.offer(), records.take_learned());
    let records: Vec<_> = records.collect();
    let learned_len: usize = learned.iter().map(|r| r.wire_len().expect("a decoded record fits")).sum();
    let payload: usize = records.iter().map(|r| r.wire_len()).sum::<usize>() + bulk_id.map_or(0, |_| BULK_ID_LEN) + offer.map_or(0, |_| OFFER_LEN) + learned_len;
    assert_eq!(bytes.len(), HEADER_LEN + payload + TAG_LEN);
    let mut again = Vec::new();
    if h.msg == MessageType::Learned {
        let taken = encode_learned(&mut again, &keys.current, &h, &learned).expect("an accepted datagram encodes");
        assert_eq!(taken, learned.len(), "what one datagram held fits one again");
        let (h2, mut r2) = decode(&again, keys).expect("what encode makes decodes");
        assert_eq!((h2, r2.take_learned()), (h, learned), "decode and encode disagree");
        return;
    }
    match (bulk_id, offer) {
        (Some(id), _) => encode_bulk(&mut again, &keys.current, &h, id),
        (None, Some(o)) => encode_hello(&mut again, &keys.current, &h, o.padded ^ keys.current.owner_pad(h.sender, h.seq), o.born_us, o.serving),
        (None, None) => encode(&mut again, &keys.current, &h, &records),
    }
    .expect("an accepted datagram encodes");
    let (h2, r2) = decode(&again, keys).expect("what encode makes decodes");
    assert_eq!(r2.offer(), offer, "the offer survives");
    assert_eq!((h2, r2.collect::<Vec<_>>()), (h, records), "decode and encode disagree");
}
