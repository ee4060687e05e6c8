//! The pair's ownership key (issue 20): each box draws one at boot, every
//! Hello offers it (padded, `wire::encode_hello`), and the pair agrees on
//! one (`Ownership::yields`; docs/architecture.md, "Hashing").

use super::{pair, Asked, Sync, REQUEST_ID_MASK};
use crate::runtime::Runtime;
use super::wire::{self, Header};
use std::time::Instant;

/// The pair's ownership key as this box holds it: drawn at its boot, or
/// adopted from the peer (whose key was drawn earlier).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ownership {
    pub key: u64,
    /// When the key was drawn (by this box or the peer), microseconds
    /// since the Unix epoch.
    pub born_us: u64,
    /// When this box adopted it from the peer; None: drawn here.
    pub adopted: Option<Instant>,
}

impl Ownership {
    /// Whether the peer's key (`key` drawn at `born_us`) is the pair's
    /// rather than ours: a box that serves (master of a VRRP instance, or
    /// any box of a pair without VRRP) keeps its own against one that
    /// does not, for taking another would move its connections to other
    /// workers; otherwise (both serve, or neither) the older key by the
    /// two boxes' clocks, the smaller on a tie, so both boxes, comparing
    /// the same inputs, choose the same and the pair always converges.
    /// When both serve (a cold start under active-active, a healed
    /// partition), the younger box's connections of that moment are lost
    /// to it (`rehomed`); a clock far behind can make that the older box.
    pub(super) fn yields(&self, key: u64, born_us: u64, we_serve: bool, they_serve: bool) -> bool {
        if key == self.key {
            return false;
        }
        match (we_serve, they_serve) {
            (false, true) => true,
            (true, false) => false,
            _ => (born_us, key) < (self.born_us, self.key),
        }
    }

    /// The key's public id: the first 4 bytes of its SHA-256.
    pub fn id(&self) -> u32 {
        use sha2::{Digest, Sha256};
        let d = Sha256::digest(self.key.to_be_bytes());
        u32::from_be_bytes([d[0], d[1], d[2], d[3]])
    }
}

impl Sync {
    /// A fresh Hello's ownership offer: when the peer's key is older than
    /// ours (docs/architecture.md, "Hashing"), this box takes it: the
    /// workers drop the entries another worker owns under it
    /// (`SyncControl::set_owner_key`), the fingerprint follows, and the
    /// bulk dump is asked for again (records placed under the old key are
    /// gone, full-NAT ones were refused).
    pub(super) fn consider_offer(&mut self, rt: &mut Runtime, header: &Header, offer: Option<wire::OwnerOffer>, now: Instant) {
        let Some(o) = offer else { return };
        let Some(key) = self.keys.by_id(header.key_id) else { return };
        let theirs = o.padded ^ key.owner_pad(header.sender, header.seq);
        let agreed_before = self.peer_owner == Some(self.owner.key);
        self.peer_owner = Some(theirs);
        let adopt = self.owner.yields(theirs, o.born_us, self.serving_vips, o.serving);
        if adopt {
            self.owner = Ownership { key: theirs, born_us: o.born_us, adopted: Some(now) };
            for e in &self.ends {
                e.control.set_owner_key(theirs);
            }
            rt.set_owner_key(theirs);
            // The pair check and the peer hear of it at once: the bulk
            // dump asked for next must not meet an old fingerprint.
            self.fingerprint = pair::with_owner(self.fingerprint, theirs);
            self.last_hello = None;
            crate::out::event(&format!("sync: took the pair's ownership key {:08x} from peer {}", self.owner.id(), self.peer));
        }
        if !agreed_before && self.peer_owner == Some(self.owner.key) && (adopt || self.refused_full_nat) {
            // The copies placed under the old key are gone, or full-NAT
            // records were refused until now: the whole table again.
            self.refused_full_nat = false;
            crate::out::event(&format!("sync: the pair agrees on ownership key {:08x}; asking peer {} for its table again", self.owner.id(), self.peer));
            self.asked = Asked::default();
            self.ask_from = now;
            self.bulk_id = (self.bulk_id.wrapping_add(2) & REQUEST_ID_MASK) | 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both boxes compare the same two offers and choose the same key: the
    /// older, and on a tie the smaller.
    #[test]
    fn the_older_ownership_key_is_the_pairs() {
        let a = Ownership { key: 50, born_us: 1_000, adopted: None };
        let b = Ownership { key: 7, born_us: 2_000, adopted: None };
        assert!(b.yields(a.key, a.born_us, false, false) && !a.yields(b.key, b.born_us, false, false), "neither serving: the box that booted second takes the first's");
        let c = Ownership { key: 9, born_us: 1_000, adopted: None };
        assert!(a.yields(c.key, c.born_us, false, false) && !c.yields(a.key, a.born_us, false, false), "same microsecond: the smaller key");
        assert!(!a.yields(a.key, 0, false, true), "its own key, whatever the peer says");
        // Serving decides before age: a serving box never yields, one that
        // does not yields to a serving peer, however young its key.
        assert!(!b.yields(a.key, a.born_us, true, false) && a.yields(b.key, b.born_us, false, true));
        assert!(b.yields(a.key, a.born_us, true, true) && !a.yields(b.key, b.born_us, true, true), "both serve: the older, as neither");
        assert_ne!(a.id(), b.id());
    }
}
