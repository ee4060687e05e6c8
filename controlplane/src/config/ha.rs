//! High availability: `[[vrrp]]` instances (RFC 5798 v3, RFC 3768 v2)
//! and `[sync]`, the connection-state sync to the peer. Their types, their
//! checks and their TOML (README, "High availability").

use super::bounds::{self, Bound};
use super::model::{spanned_ipv4, Config, Forwarding};
use super::validate::within;
use super::{ConfigError, Source};
use serde::de::{self, Deserializer};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use toml::Spanned;

/// One VRRP instance: a virtual router on one interface whose addresses
/// (VIPs and floating self addresses) move between the pair.
#[derive(Debug, Clone, PartialEq, Deserialize)]
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

/// Connection-state sync with the peer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
    /// 64 bytes.
    pub key: Spanned<String>,
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
        hex(self.key.get_ref()).unwrap_or_default()
    }

    /// `previous_key`'s bytes (validated hex).
    pub fn previous_key_bytes(&self) -> Option<Vec<u8>> {
        self.previous_key.as_ref().map(|k| hex(k.get_ref()).unwrap_or_default())
    }

    /// The same but for the keys (what `config reload` may change).
    pub fn same_but_keys(&self, other: &SyncConfig) -> bool {
        let strip = |s: &SyncConfig| SyncConfig { key: other.key.clone(), previous_key: None, ..s.clone() };
        strip(self) == strip(other)
    }
}

/// A sync key's id in the datagram header: the first byte of
/// SHA-256("furiwake sync key id" | secret). It says which key made a tag
/// and nothing useful about the key.
pub fn sync_key_id(secret: &[u8]) -> u8 {
    use sha2::Digest;
    sha2::Sha256::new().chain_update(b"furiwake sync key id").chain_update(secret).finalize()[0]
}

fn hex(s: &str) -> Option<Vec<u8>> {
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

impl Config {
    /// The `[[vrrp]]` and `[sync]` checks.
    pub(super) fn validate_ha(&self, src: &Source<'_>) -> Result<(), ConfigError> {
        let iface = |name: &Spanned<String>, what: &str| {
            self.interfaces
                .iter()
                .position(|i| i.name.get_ref() == name.get_ref())
                .ok_or_else(|| src.error(Some(name.span()), format!("{what}: no interface named {:?}", name.get_ref())))
        };
        let on_link = |a: &Spanned<Ipv4Addr>, what: &str| {
            self.interfaces
                .iter()
                .position(|i| i.address.contains(*a.get_ref()))
                .ok_or_else(|| src.error(Some(a.span()), format!("{what}: {} is in no interface's subnet", a.get_ref())))
        };
        let mut names = HashSet::new();
        let mut vrids = HashSet::new();
        let mut owner: HashMap<Ipv4Addr, &str> = HashMap::new();
        for v in &self.vrrp {
            let name = v.name.get_ref();
            let what = format!("vrrp {name:?}");
            if name.is_empty() || !names.insert(name.as_str()) {
                return Err(src.error(Some(v.name.span()), format!("vrrp: {name:?} is empty or defined twice")));
            }
            for (b, x) in [(&bounds::VRRP_PREEMPT_DELAY_MS, &v.preempt_delay_ms), (&bounds::TRACK_INTERVAL_MS, &v.track_interval_ms), (&bounds::TRACK_FALL, &v.track_fall)] {
                within(src, b, x)?;
            }
            for (b, x) in [(&bounds::GARP_COUNT, &v.garp_count), (&bounds::GARP_INTERVAL_MS, &v.garp_interval_ms), (&bounds::TRACK_POOL_MIN_UP, &v.track_pool_min_up)] {
                within(src, b, x)?;
            }
            within(src, &bounds::VRID, &v.vrid)?;
            within(src, &bounds::VRRP_PRIORITY, &v.priority)?;
            let li = iface(&v.interface, &what)?;
            if !vrids.insert((li, *v.vrid.get_ref())) {
                return Err(src.error(Some(v.vrid.span()), format!("{what}: vrid {} is already used on interface {:?}", v.vrid.get_ref(), v.interface.get_ref())));
            }
            let ms = *v.advert_interval_ms.get_ref();
            let (b, step): (&Bound, u32) = match v.version.get_ref() {
                3 => (&bounds::ADVERT_INTERVAL_MS_V3, 10),
                2 => (&bounds::ADVERT_INTERVAL_MS_V2, 1000),
                n => return Err(src.error(Some(v.version.span()), format!("{what}: version {n}: allowed 2 or 3"))),
            };
            within(src, b, &v.advert_interval_ms)?;
            if ms % step != 0 {
                return Err(src.error(Some(v.advert_interval_ms.span()), format!("{what}: advert_interval_ms {ms}: version {} counts in steps of {step} ms", v.version.get_ref())));
            }
            match (&v.auth_password, v.version.get_ref()) {
                (Some(p), 3) => return Err(src.error(Some(p.span()), format!("{what}: auth_password is for version 2 only (RFC 5798 removed authentication)"))),
                (Some(p), _) if p.get_ref().is_empty() || p.get_ref().len() > 8 => {
                    return Err(src.error(Some(p.span()), format!("{what}: auth_password must be 1 to 8 bytes")));
                }
                _ => {}
            }
            if v.addresses.is_empty() {
                return Err(src.error(Some(v.name.span()), format!("{what}: addresses: at least one address is needed")));
            }
            if v.addresses.len() > 20 {
                return Err(src.error(Some(v.name.span()), format!("{what}: addresses: at most 20 (they all go into each advert)")));
            }
            for a in &v.addresses {
                on_link(a, &what)?;
                if self.interfaces.iter().any(|i| i.address.addr == *a.get_ref()) {
                    return Err(src.error(Some(a.span()), format!("{what}: {} is an interface's own address; floating addresses are extra addresses", a.get_ref())));
                }
                if let Some(other) = owner.insert(*a.get_ref(), name) {
                    return Err(src.error(Some(a.span()), format!("{what}: {} already belongs to vrrp {other:?}", a.get_ref())));
                }
            }
            for t in &v.track_interfaces {
                iface(t, &what)?;
            }
            for t in &v.track_addresses {
                on_link(t, &what)?;
            }
            for p in &v.track_pools {
                if !self.pools.iter().any(|x| x.name.get_ref() == p.get_ref()) {
                    return Err(src.error(Some(p.span()), format!("{what}: track_pools: no pool named {:?}", p.get_ref())));
                }
            }
            for p in &v.unicast_peers {
                if !self.interfaces.get(li).is_some_and(|i| i.address.contains(*p.get_ref())) {
                    return Err(src.error(Some(p.span()), format!("{what}: unicast peer {} is not in interface {:?}'s subnet", p.get_ref(), v.interface.get_ref())));
                }
            }
        }
        // A full-NAT virtual server on a floating VIP needs floating local
        // addresses: its synced connections' replies come back to them.
        for vs in &self.virtual_servers {
            if *vs.forwarding.get_ref() != Forwarding::FullNat || !owner.contains_key(vs.address.get_ref().ip()) {
                continue;
            }
            if vs.local_addresses.is_empty() {
                return Err(src.error(
                    Some(vs.name.span()),
                    format!("virtual_server {:?}: a full-nat virtual server on a VRRP address needs local_addresses that are VRRP addresses too (the self IP does not move on failover)", vs.name.get_ref()),
                ));
            }
            if let Some(a) = vs.local_addresses.iter().find(|a| !owner.contains_key(a)) {
                return Err(src.error(Some(vs.name.span()), format!("virtual_server {:?}: local address {a} is on no [[vrrp]]: it would not move with the VIP on failover", vs.name.get_ref())));
            }
        }
        if let Some(s) = &self.sync {
            within(src, &bounds::SYNC_PORT, &s.port)?;
            within(src, &bounds::REFRESH_S, &s.refresh_s)?;
            within(src, &bounds::BULK_LIMIT_MS, &s.bulk_limit_ms)?;
            let li = iface(&s.interface, "sync")?;
            if !self.interfaces.get(li).is_some_and(|i| i.address.contains(*s.peer.get_ref())) {
                return Err(src.error(Some(s.peer.span()), format!("sync: peer {} is not in interface {:?}'s subnet", s.peer.get_ref(), s.interface.get_ref())));
            }
            let key = |k: &Spanned<String>, what: &str| match hex(k.get_ref()) {
                Some(b) if (16..=64).contains(&b.len()) => Ok(b),
                _ => Err(src.error(Some(k.span()), format!("sync: {what} must be 16 to 64 bytes in hex (32 to 128 hex digits)"))),
            };
            let current = key(&s.key, "key")?;
            if let Some(p) = &s.previous_key {
                let previous = key(p, "previous_key")?;
                // The header names the key by a one-byte id.
                if sync_key_id(&previous) == sync_key_id(&current) {
                    return Err(src.error(Some(p.span()), "sync: previous_key has the same key id as key (1 chance in 256, or the same key): draw another key"));
                }
            }
        }
        Ok(())
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
        let old = "11".repeat(32);
        let new = "22".repeat(32);
        let a = Config::parse("a.toml", &pair_a("")).unwrap();
        let rotating = Config::parse("b.toml", &with_keys(&pair_a(""), &new, Some(&old))).unwrap();
        assert_eq!(rotating.sync.as_ref().unwrap().previous_key_bytes(), Some(vec![0x11; 32]));
        assert_eq!(restart_needed(&a, &rotating), Ok(()));
        let again = Config::parse("r.toml", &crate::config::render(&rotating)).unwrap();
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
