//! High availability: `[[vrrp]]` instances (RFC 5798 v3, RFC 3768 v2)
//! and `[sync]`, the connection-state sync to the peer. Their types, their
//! checks and their TOML (README, "High availability").

use super::cidr::spanned_ipv4;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use std::fmt;
use std::net::Ipv4Addr;
use toml::Spanned;

/// One VRRP instance: a virtual router on one interface whose addresses
/// (VIPs and floating self addresses) move between the pair. `Debug`
/// leaves the password out.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vrrp {
    pub name: Spanned<String>,
    /// The `[[interface]]` the adverts go out of and come in on.
    pub interface: Spanned<String>,
    /// The virtual router id, 1..=255, shared with the peer.
    pub vrid: Spanned<u8>,
    /// 3 (RFC 5798, the default) or 2 (RFC 3768).
    #[serde(default = "defaults::version")]
    pub version: Spanned<u8>,
    /// 1..=254; 255 only for the owner of the addresses.
    #[serde(default = "defaults::priority")]
    pub priority: Spanned<u8>,
    /// Advertisement interval: v3 in 10 ms steps (10..=40950), v2 in
    /// whole seconds (1000..=255000).
    #[serde(default = "defaults::advert_interval_ms")]
    pub advert_interval_ms: Spanned<u32>,
    /// A higher-priority backup takes over from a lower-priority master.
    #[serde(default = "defaults::yes")]
    pub preempt: bool,
    /// How long a backup that could preempt waits first (keepalived's
    /// `preempt_delay`), counted from start or from the first lower-priority
    /// advert it sees.
    #[serde(default = "defaults::zero")]
    pub preempt_delay_ms: Spanned<u32>,
    /// The addresses the instance owns while master: VIPs and floating self
    /// addresses (the NAT servers' gateway, full-NAT local addresses).
    #[serde(deserialize_with = "spanned_ipv4_list")]
    pub addresses: Vec<Spanned<Ipv4Addr>>,
    /// A sync group: instances of one group change state together.
    #[serde(default)]
    pub group: Option<Spanned<String>>,
    /// Interfaces whose link must be up.
    #[serde(default)]
    pub track_interfaces: Vec<Spanned<String>>,
    /// Addresses that must answer ARP (a gateway, an upstream router).
    #[serde(default, deserialize_with = "spanned_ipv4_list")]
    pub track_addresses: Vec<Spanned<Ipv4Addr>>,
    /// How often a tracked address is asked.
    #[serde(default = "defaults::track_interval_ms")]
    pub track_interval_ms: Spanned<u32>,
    /// Unanswered asks in a row before a tracked address counts as down.
    #[serde(default = "defaults::track_fall")]
    pub track_fall: Spanned<u32>,
    /// Pools that must keep `track_pool_min_up` servers up.
    #[serde(default)]
    pub track_pools: Vec<Spanned<String>>,
    #[serde(default = "defaults::one")]
    pub track_pool_min_up: Spanned<u32>,
    /// What a failed tracker does: 0 puts the instance in FAULT (it never
    /// becomes master); N lowers its priority by N per failed tracker.
    #[serde(default = "defaults::zero_u8")]
    pub track_weight: Spanned<u8>,
    /// Send adverts to these addresses instead of 224.0.0.18, and accept
    /// adverts only from them (keepalived's `unicast_peer`).
    #[serde(default, deserialize_with = "spanned_ipv4_list")]
    pub unicast_peers: Vec<Spanned<Ipv4Addr>>,
    /// v2 only: simple-password authentication (RFC 2338 §5.3.6.1), up to
    /// 8 characters, as keepalived's `auth_type PASS`.
    #[serde(default)]
    pub auth_password: Option<Spanned<String>>,
    /// Adverts and ARP for the addresses use the virtual MAC
    /// 00:00:5e:00:01:VRID (RFC 5798 §7.3); false: the interface's own MAC.
    #[serde(default = "defaults::yes")]
    pub use_vmac: bool,
    /// Gratuitous ARPs per address on becoming master.
    #[serde(default = "defaults::garp_count")]
    pub garp_count: Spanned<u32>,
    #[serde(default = "defaults::garp_interval_ms")]
    pub garp_interval_ms: Spanned<u32>,
}

/// Connection-state sync with the peer. `Debug` leaves the key out.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// The `[[interface]]` the sync datagrams use (its self IP is the source).
    pub interface: Spanned<String>,
    /// The peer's self IP on that interface.
    #[serde(deserialize_with = "spanned_ipv4")]
    pub peer: Spanned<Ipv4Addr>,
    /// UDP port, both sides.
    #[serde(default = "defaults::sync_port")]
    pub port: Spanned<u16>,
    /// The shared secret of the HMAC-SHA256 over each datagram, hex, 16 to
    /// 64 bytes; or `key_file`.
    #[serde(default)]
    pub key: Option<Spanned<String>>,
    /// A file holding the key (hex, as `key`), absolute, mode 0600 or
    /// stricter, owned by root (`keyfile`).
    #[serde(default)]
    pub key_file: Option<Spanned<String>>,
    /// The text read from `key_file` by `Config::parse`.
    #[serde(skip)]
    pub(super) file_key: Option<String>,
    /// During a re-keying: the key being replaced, still accepted from the
    /// peer, and sent with until the peer shows it has `key` too (README,
    /// "Re-keying the sync"). Changed by `config reload`.
    #[serde(default)]
    pub previous_key: Option<Spanned<String>>,
    /// Entries are sent again this often while they live, so a standby
    /// that missed an event still learns them.
    #[serde(default = "defaults::refresh_s")]
    pub refresh_s: Spanned<u32>,
    /// A returning node with `preempt` waits for the peer's bulk dump this
    /// long at most before taking mastership back.
    #[serde(default = "defaults::bulk_limit_ms")]
    pub bulk_limit_ms: Spanned<u32>,
}

impl SyncConfig {
    /// The key's bytes (validated hex).
    pub fn key_bytes(&self) -> Vec<u8> {
        hex(self.key_text()).unwrap_or_default()
    }

    /// The key's hex text, from `key` or from `key_file`.
    pub fn key_text(&self) -> &str {
        self.key.as_ref().map(|k| k.get_ref().as_str()).or(self.file_key.as_deref()).unwrap_or_default()
    }

    /// `previous_key`'s bytes (validated hex).
    pub fn previous_key_bytes(&self) -> Option<Vec<u8>> {
        self.previous_key.as_ref().map(|k| hex(k.get_ref()).unwrap_or_default())
    }

    /// The same but for the keys (what `config reload` may change).
    pub fn same_but_keys(&self, other: &SyncConfig) -> bool {
        let strip = |s: &SyncConfig| SyncConfig { key: other.key.clone(), key_file: other.key_file.clone(), file_key: other.file_key.clone(), previous_key: None, ..s.clone() };
        strip(self) == strip(other)
    }
}


/// Written by hand: a `{:?}` anywhere (a log line, a panic message) must
/// not print the key.
impl fmt::Debug for SyncConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncConfig")
            .field("interface", &self.interface)
            .field("peer", &self.peer)
            .field("port", &self.port)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("key_file", &self.key_file)
            .field("previous_key", &self.previous_key.as_ref().map(|_| "<redacted>"))
            .field("refresh_s", &self.refresh_s)
            .field("bulk_limit_ms", &self.bulk_limit_ms)
            .finish()
    }
}

/// Written by hand: the v2 password stays out of every `{:?}`.
impl fmt::Debug for Vrrp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vrrp")
            .field("name", &self.name)
            .field("interface", &self.interface)
            .field("vrid", &self.vrid)
            .field("version", &self.version)
            .field("priority", &self.priority)
            .field("advert_interval_ms", &self.advert_interval_ms)
            .field("preempt", &self.preempt)
            .field("preempt_delay_ms", &self.preempt_delay_ms)
            .field("addresses", &self.addresses)
            .field("group", &self.group)
            .field("track_interfaces", &self.track_interfaces)
            .field("track_addresses", &self.track_addresses)
            .field("track_interval_ms", &self.track_interval_ms)
            .field("track_fall", &self.track_fall)
            .field("track_pools", &self.track_pools)
            .field("track_pool_min_up", &self.track_pool_min_up)
            .field("track_weight", &self.track_weight)
            .field("unicast_peers", &self.unicast_peers)
            .field("auth_password", &self.auth_password.as_ref().map(|_| "<redacted>"))
            .field("use_vmac", &self.use_vmac)
            .field("garp_count", &self.garp_count)
            .field("garp_interval_ms", &self.garp_interval_ms)
            .finish()
    }
}

/// The key the example configurations carried until they had real ones
/// ("change it"): published, so refused.
const SAMPLE_KEY: [u8; 32] = [
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, //
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
];

/// Why a sync key (16 to 64 bytes) is too guessable to trust, if it is:
/// - the published sample key;
/// - fewer distinct byte values than half its length (`00 00 ..`,
///   `ab ab ..`): a random key of 16 bytes has fewer than 8 with a
///   probability below 1e-6, one of 32 fewer than 16 below 1e-12;
/// - steps from byte to byte that repeat with a period of at most half
///   its length: a repeated block (`0011..eeff0011..eeff`) or a count
///   (`00 01 02 ..`); random bytes do that with a probability of at most
///   256^-(len/2 - 1).
///
/// It cannot tell a typed phrase from a drawn key; it refuses the keys
/// people type when asked for "a key".
pub(super) fn weak_key(k: &[u8]) -> Option<&'static str> {
    if k == SAMPLE_KEY.as_slice() {
        return Some("it is the documented sample key");
    }
    let distinct = (0..=255u8).filter(|b| k.contains(b)).count();
    if distinct * 2 < k.len() {
        return Some("too few distinct bytes (fewer than half its length)");
    }
    let steps: Vec<u8> = k.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
    let periodic = (1..=k.len() / 2).any(|p| steps.iter().zip(steps.iter().skip(p)).all(|(a, b)| a == b));
    if periodic {
        return Some("a repeated pattern (a block repeated, or a counting sequence)");
    }
    None
}

/// A sync key's id in the datagram header: the first byte of
/// SHA-256("furiwake sync key id" | secret). It says which key made a tag
/// and nothing useful about the key.
pub fn sync_key_id(secret: &[u8]) -> u8 {
    use sha2::Digest;
    sha2::Sha256::new().chain_update(b"furiwake sync key id").chain_update(secret).finalize()[0]
}

pub(super) fn hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok())).collect()
}

fn spanned_ipv4_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Spanned<Ipv4Addr>>, D::Error> {
    Vec::<Spanned<String>>::deserialize(d)?
        .into_iter()
        .map(|s| {
            let v = s.get_ref().parse().map_err(|_| de::Error::custom(format!("invalid IPv4 address {:?}", s.get_ref())))?;
            Ok(Spanned::new(s.span(), v))
        })
        .collect()
}

mod defaults {
    use crate::config::unplaced;
    use toml::Spanned;
    pub fn version() -> Spanned<u8> {
        unplaced(3)
    }
    pub fn priority() -> Spanned<u8> {
        unplaced(100)
    }
    pub fn advert_interval_ms() -> Spanned<u32> {
        unplaced(1000)
    }
    pub fn yes() -> bool {
        true
    }
    pub fn zero() -> Spanned<u32> {
        unplaced(0)
    }
    pub fn zero_u8() -> Spanned<u8> {
        unplaced(0)
    }
    pub fn one() -> Spanned<u32> {
        unplaced(1)
    }
    pub fn track_interval_ms() -> Spanned<u32> {
        unplaced(1000)
    }
    pub fn track_fall() -> Spanned<u32> {
        unplaced(3)
    }
    pub fn garp_count() -> Spanned<u32> {
        unplaced(5)
    }
    pub fn garp_interval_ms() -> Spanned<u32> {
        unplaced(200)
    }
    pub fn sync_port() -> Spanned<u16> {
        unplaced(8848)
    }
    pub fn refresh_s() -> Spanned<u32> {
        unplaced(30)
    }
    pub fn bulk_limit_ms() -> Spanned<u32> {
        unplaced(5000)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{restart_needed, Config};

    fn pair_a(extra: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/ha-pair-a.toml");
        std::fs::read_to_string(path).unwrap() + extra
    }

    fn with_keys(text: &str, key: &str, previous: Option<&str>) -> String {
        let at = text.lines().find(|l| l.starts_with("key = ")).unwrap();
        let new = match previous {
            Some(p) => format!("key = \"{key}\"\nprevious_key = \"{p}\""),
            None => format!("key = \"{key}\""),
        };
        text.replace(at, &new)
    }

    /// `key` and `previous_key` change by `config reload`; the rest of
    /// `[sync]` needs a restart; a previous key must be a key and differ
    /// from `key` in its id.
    #[test]
    fn sync_keys_reload_and_a_previous_key_is_checked() {
        let old = "5f0c2a9e81d47b36e2a1c0f98d3b4e6a7c59f1e08b2d46a3c7e91f5b0a8d2c64".to_string();
        let new = "c3e87a1f5b29d0640a9e3c7b18f2d5e6b4a0c9f37e2d1b8a56f0e4c3a9b7d218".to_string();
        let a = Config::parse("a.toml", &pair_a("")).unwrap();
        let rotating = Config::parse("b.toml", &with_keys(&pair_a(""), &new, Some(&old))).unwrap();
        assert_eq!(rotating.sync.as_ref().unwrap().previous_key_bytes(), super::hex(&old));
        assert_eq!(restart_needed(&a, &rotating), Ok(()));
        let again = Config::parse("r.toml", &crate::config::render_with_secrets(&rotating)).unwrap();
        assert_eq!(again.sync, rotating.sync, "config save keeps previous_key");
        let done = Config::parse("c.toml", &with_keys(&pair_a(""), &new, None)).unwrap();
        assert_eq!(restart_needed(&rotating, &done), Ok(()));
        let moved = Config::parse("d.toml", &pair_a("").replace("[sync]\n", "[sync]\nport = 8849\n")).unwrap();
        assert!(restart_needed(&a, &moved).unwrap_err().contains("[sync] (but its keys)"));
        let short = Config::parse("e.toml", &with_keys(&pair_a(""), &new, Some("abcd"))).unwrap_err();
        assert!(short.message.contains("sync: previous_key must be 16 to 64 bytes"), "{}", short.message);
        let same = Config::parse("f.toml", &with_keys(&pair_a(""), &new, Some(&new))).unwrap_err();
        assert!(same.message.contains("previous_key has the same key id as key"), "{}", same.message);
    }
}
