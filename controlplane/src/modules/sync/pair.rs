//! The pair's invariants (issue 20, review C5): what both boxes must agree
//! on for a synced connection to work on either, in 64 bits every datagram
//! carries. A peer whose fingerprint differs gets its records refused.
//!
//! - bits 63..56: the worker count (full-NAT replies go to worker
//!   `dport % workers`, `pipeline::owner`);
//! - bits 55..48: the ownership key's id (a byte of its SHA-256): each box
//!   draws one at boot and the pair agrees on the older through the Hellos
//!   (`super::Ownership`); until then full-NAT records are refused (the
//!   owner of the client side would not be the worker the replies go to);
//! - bits 47..32: the links, names and VLAN ids, in order (a record's
//!   client link is an index);
//! - bits 31..0: the services, sorted: VIP, port, protocol, forwarding (a
//!   record names its service by VIP and port, and is forwarded as its
//!   mode says).
//!
//! The tables' hash key is not in it: each box draws its own.

use crate::config::Config;
use crate::runtime::Runtime;
use sha2::{Digest, Sha256};

fn h(label: &[u8], parts: &[Vec<u8>]) -> [u8; 32] {
    let mut d = Sha256::new().chain_update(label);
    for p in parts {
        d.update((p.len() as u32).to_be_bytes());
        d.update(p);
    }
    d.finalize().into()
}

/// This box's fingerprint under `cfg`.
pub fn fingerprint(cfg: &Config, rt: &Runtime, owner_key: u64) -> u64 {
    let workers = rt.workers().len().min(255) as u64;
    let owner = u64::from(Sha256::digest(owner_key.to_be_bytes())[0]);
    let links: Vec<Vec<u8>> = rt.links().iter().map(|l| [l.name().as_bytes(), &l.vlan().to_be_bytes()].concat()).collect();
    let mut services: Vec<Vec<u8>> = cfg
        .virtual_servers
        .iter()
        .map(|s| format!("{} {:?} {:?}", s.address.get_ref(), s.protocol, s.forwarding.get_ref()).into_bytes())
        .collect();
    services.sort();
    let l = h(b"links", &links);
    let s = h(b"services", &services);
    (workers << 56) | (owner << 48) | (u64::from(u16::from_be_bytes([l[0], l[1]])) << 32) | u64::from(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// `f` without its ownership key's id.
pub fn without_owner(f: u64) -> u64 {
    f & !(0xff << 48)
}

/// `f` with the id of ownership key `owner_key` (`fingerprint`'s).
pub fn with_owner(f: u64, owner_key: u64) -> u64 {
    without_owner(f) | u64::from(Sha256::digest(owner_key.to_be_bytes())[0]) << 48
}

/// Only the ownership keys differ: what no full-NAT record survives.
pub fn only_owner_key(ours: u64, theirs: u64) -> bool {
    ours != theirs && (ours ^ theirs) & !(0xff << 48) == 0
}

/// What differs between two fingerprints, in words.
pub fn differences(ours: u64, theirs: u64) -> String {
    let mut d = Vec::new();
    if ours >> 56 != theirs >> 56 {
        d.push(format!("worker count {} here, {} on the peer", ours >> 56, theirs >> 56));
    }
    if (ours >> 48) & 0xff != (theirs >> 48) & 0xff {
        d.push("ownership key differs (until the younger box takes the older key from a Hello)".to_string());
    }
    if (ours >> 32) & 0xffff != (theirs >> 32) & 0xffff {
        d.push("links (names, VLANs, order) differ".to_string());
    }
    if ours as u32 != theirs as u32 {
        d.push("services (VIP, port, protocol, forwarding) differ".to_string());
    }
    d.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_each_part() {
        let a = (2u64 << 56) | (0x77 << 48) | (0x1234 << 32) | 0xdead_beef;
        assert_eq!(differences(a, a), "");
        assert!(!only_owner_key(a, a));
        assert_eq!(differences(a, (4u64 << 56) | (0x77 << 48) | (0x1234 << 32) | 0xdead_beef), "worker count 2 here, 4 on the peer");
        assert_eq!(differences(a, (2u64 << 56) | (0x77 << 48) | (0x1235 << 32) | 0xdead_beee), "links (names, VLANs, order) differ; services (VIP, port, protocol, forwarding) differ");
        let b = (2u64 << 56) | (0x78 << 48) | (0x1234 << 32) | 0xdead_beef;
        assert!(differences(a, b).starts_with("ownership key differs"));
        assert!(only_owner_key(a, b) && !only_owner_key(a, b ^ 1));
    }
}
