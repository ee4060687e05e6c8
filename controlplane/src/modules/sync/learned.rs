//! The L7 engine's learned persistence records between the pair: sent as
//! they are learned, all of them again when the peer (re)starts (its
//! Hello from a new sender, or its bulk request), taken from the peer
//! into this box's engine (`modules::l7`; the appliance moves them, this
//! module knows no engine).

use super::wire::{encode_learned, LearnedRecord, MessageType};
use super::{frame, send_key, Sync};
use crate::modules::arp::Arp;
use crate::runtime::Runtime;

impl Sync {
    /// Sends `records` to the peer, in as many datagrams as they take.
    pub fn send_learned(&mut self, rt: &mut Runtime, arp: &mut Arp, records: &[LearnedRecord]) {
        let mut rest = records;
        while !rest.is_empty() {
            let header = self.next_header(MessageType::Learned);
            let key = send_key(&self.keys, self.peer_key);
            let taken = match encode_learned(&mut self.buf, key, &header, rest) {
                Ok(n) if n > 0 => n,
                _ => {
                    self.drop("encode");
                    return;
                }
            };
            rest = rest.get(taken..).unwrap_or_default();
            // Never to broadcast, as the connection records.
            let Some(n) = arp.neighbor(self.peer) else {
                self.drop("unresolved");
                self.learned_bulk = true;
                return;
            };
            let link = &rt.links()[self.link];
            let f = frame::udp_frame(link.mac(), n.mac, self.src, self.peer, self.port, self.port, &self.buf);
            rt.send_frame(self.link, &f);
            self.counters.datagrams_sent += 1;
            self.counters.learned_sent += taken as u64;
        }
    }

    /// The records the peer sent since the last call.
    pub fn take_learned(&mut self) -> Vec<LearnedRecord> {
        std::mem::take(&mut self.learned_in)
    }

    /// Whether the peer needs every record again (it is new, or asked
    /// for the whole table); cleared by asking.
    pub fn wants_all_learned(&mut self) -> bool {
        std::mem::take(&mut self.learned_bulk)
    }
}
