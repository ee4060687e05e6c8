//! The ARP module's console face (`show arp`, `show routes`) and its line
//! of the report.

use super::Arp;
use crate::config::Route;
use crate::modules::text::table;
use crate::runtime::{PuntCounters, Runtime};
use std::fmt::Write as _;
use std::time::Instant;

impl Arp {
    /// `show arp`: the neighbours learned, then the next hops the workers use.
    pub fn show_arp(&self, rt: &Runtime) -> String {
        let links = rt.links();
        let now = Instant::now();
        let mut learned: Vec<_> = self.neighbors.iter().collect();
        learned.sort_by_key(|(ip, _)| **ip);
        let rows: Vec<Vec<String>> = learned
            .iter()
            .map(|(ip, n)| {
                vec![
                    ip.to_string(),
                    n.mac.to_string(),
                    links.get(n.interface).map_or("?".into(), |l| l.name().clone()),
                    format!("{}s", now.duration_since(n.updated).as_secs()),
                ]
            })
            .collect();
        let mut out = table(&["ADDRESS", "MAC", "INTERFACE", "AGE"], &rows);
        let hops: Vec<Vec<String>> = self
            .nexthops
            .iter()
            .enumerate()
            .map(|(slot, nh)| {
                vec![
                    nh.hop.ip.to_string(),
                    links.get(nh.hop.link).map_or("?".into(), |l| l.name().clone()),
                    slot.to_string(),
                    self.slots.get(slot as u16).map_or("unresolved".into(), |m| m.to_string()),
                    nh.confirmed.map_or("never".into(), |t| format!("{}s ago", now.duration_since(t).as_secs())),
                ]
            })
            .collect();
        out.push_str("\n\nnext hops the workers use:\n");
        out.push_str(&table(&["NEXT-HOP", "INTERFACE", "SLOT", "MAC", "CONFIRMED"], &hops));
        out
    }

    /// `show routes`: the connected subnets, then the static `routes`.
    pub fn show_routes(&self, rt: &Runtime, routes: &[Route]) -> String {
        let links = rt.links();
        let mut rows: Vec<Vec<String>> = links
            .iter()
            .map(|l| {
                let a = l.address();
                vec![format!("{}/{}", a.network(), a.prefix_len), "connected".into(), l.name().clone(), format!("self {}", a.addr)]
            })
            .collect();
        for r in routes {
            let iface = links.iter().find(|l| l.address().contains(r.via)).map_or("unreachable".into(), |l| l.name().clone());
            rows.push(vec![r.prefix.to_string(), r.via.to_string(), iface, "static".into()]);
        }
        table(&["PREFIX", "VIA", "INTERFACE", "KIND"], &rows)
    }

    /// The report's `control:` line: the control lcore's frames (`punt`)
    /// and this module's.
    pub fn report(&self, s: &mut String, punt: PuntCounters) {
        let c = &self.counters;
        let _ = writeln!(
            s,
            "control: punted {}; arp-replies {}; arp-requests {}; echo-replies {}; arp-other {}; malformed {}; not-handled {}; tx-dropped {}; neighbors {}; evicted {}",
            punt.punted_rx,
            c.arp_replies,
            c.arp_requests,
            c.echo_replies,
            c.arp_other,
            c.malformed,
            punt.not_handled,
            punt.tx_dropped,
            self.neighbors.len(),
            self.neighbors.evicted
        );
        let n = &self.nd.counters;
        let _ = writeln!(
            s,
            "nd: adverts {}; solicits {}; echo-replies {}; mld-reports {}; invalid {}; not-ours {}; evicted {}; neighbors {}",
            n.adverts,
            n.solicits,
            n.echo_replies,
            n.reports,
            n.invalid,
            n.not_ours,
            n.evicted,
            self.nd.neighbors().count()
        );
    }

    /// `show ndp`: each link's IPv6 addresses, then the neighbours
    /// Neighbor Discovery taught.
    pub fn show_ndp(&self, rt: &Runtime) -> String {
        let links = rt.links();
        let now = Instant::now();
        let own: Vec<Vec<String>> = links
            .iter()
            .enumerate()
            .filter_map(|(li, l)| Some(vec![l.name().clone(), l.address6()?.to_string(), self.nd.link_local(li)?.to_string(), l.mac().to_string()]))
            .collect();
        let mut out = table(&["INTERFACE", "ADDRESS", "LINK-LOCAL", "MAC"], &own);
        let mut learned: Vec<_> = self.nd.neighbors().collect();
        learned.sort_by_key(|((li, a), _)| (*li, *a));
        let rows: Vec<Vec<String>> = learned
            .iter()
            .map(|((li, a), n)| vec![a.to_string(), n.mac.to_string(), links.get(*li).map_or("?".into(), |l| l.name().clone()), format!("{}s", now.duration_since(n.updated).as_secs())])
            .collect();
        out.push_str("\n\nneighbours:\n");
        out.push_str(&table(&["ADDRESS", "MAC", "INTERFACE", "AGE"], &rows));
        out
    }
}
