//! The checks of `[[vrrp]]` and `[sync]` against the rest of the
//! configuration (the sections themselves are `ha`'s).

use super::bounds::{self, Bound};
use super::ha::{hex, sync_key_id, weak_key, Vrrp};
use super::model::{Config, Forwarding};
use super::validate::within;
use super::{ConfigError, Source};
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use toml::Spanned;

impl Config {
    /// Priority 255, the address owner (RFC 5798 §6.1): it is master from
    /// start and discards every advert (§7.1). So it would take the
    /// addresses back at once after a restart, before the peer's bulk dump
    /// arrived (`[sync]` holds only preemption), resetting the connections
    /// the peer accepted meanwhile; and in a sync group it could not
    /// follow a member that lost to the peer, and would take the group back
    /// after its master-down interval, again and again. Refused in both.
    fn check_owner(&self, v: &Vrrp, src: &Source<'_>) -> Result<(), ConfigError> {
        if *v.priority.get_ref() != 255 {
            return Ok(());
        }
        let what = format!("vrrp {:?}: priority 255 (the address owner, master from start whatever the peer says)", v.name.get_ref());
        if self.sync.is_some() {
            return Err(src.error(Some(v.priority.span()), format!("{what} would not wait for the [sync] peer's connection table (bulk_limit_ms): at most 254 with [sync]")));
        }
        if v.group.is_some() {
            return Err(src.error(Some(v.priority.span()), format!("{what} cannot follow a sync group: at most 254 in a group")));
        }
        Ok(())
    }

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
            self.check_owner(v, src)?;
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
            if *vs.forwarding.get_ref() != Forwarding::FullNat || !owner.contains_key(&vs.ip4()) {
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
            let (what, span) = match (&s.key, &s.key_file) {
                (Some(k), None) => ("key", k.span()),
                (None, Some(f)) => ("key_file", f.span()),
                (Some(_), Some(f)) => return Err(src.error(Some(f.span()), "sync: key and key_file: give one of them")),
                (None, None) => return Err(src.error(Some(s.interface.span()), "sync: key (or key_file) is required")),
            };
            match hex(s.key_text()) {
                Some(k) if (16..=64).contains(&k.len()) => {
                    if let Some(why) = weak_key(&k) {
                        return Err(src.error(Some(span), format!("sync: {what} refused: {why}; draw a new one with `openssl rand -hex 32`")));
                    }
                }
                _ => {
                    let verb = if what == "key" { "be" } else { "hold" };
                    return Err(src.error(Some(span), format!("sync: {what} must {verb} 16 to 64 bytes in hex (32 to 128 hex digits)")));
                }
            }
            if let Some(p) = &s.previous_key {
                match hex(p.get_ref()) {
                    Some(previous) if (16..=64).contains(&previous.len()) => {
                        // The header names the key by a one-byte id.
                        if sync_key_id(&previous) == sync_key_id(&s.key_bytes()) {
                            return Err(src.error(Some(p.span()), "sync: previous_key has the same key id as key (1 chance in 256, or the same key): draw another key"));
                        }
                    }
                    _ => return Err(src.error(Some(p.span()), "sync: previous_key must be 16 to 64 bytes in hex (32 to 128 hex digits)")),
                }
            }
        }
        Ok(())
    }
}
