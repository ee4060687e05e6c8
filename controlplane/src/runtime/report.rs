//! The runtime's lines of the SIGUSR1 report (the modules add theirs).

use super::Runtime;
use furiwake_dataplane::state::counters::PuntClass;
use furiwake_dataplane::DropReason;
use std::fmt::Write as _;

impl Runtime {
    /// Per port: link state and counters.
    pub fn report_ports(&self, s: &mut String) {
        for l in &self.links {
            let link = l.state().map(|k| k.to_string()).unwrap_or_else(|e| e.to_string());
            match l.stats() {
                Ok(st) => {
                    let _ = writeln!(
                        s,
                        "port {}: link {link}; rx {} pkts {} bytes; tx {} pkts {} bytes; missed {}; rx-errors {}; tx-errors {}; rx-nombuf {}",
                        l.name(),
                        st.ipackets,
                        st.ibytes,
                        st.opackets,
                        st.obytes,
                        st.imissed,
                        st.ierrors,
                        st.oerrors,
                        st.rx_nombuf
                    );
                }
                Err(e) => {
                    let _ = writeln!(s, "port {}: link {link}; stats: {e}", l.name());
                }
            }
            if let Some((mode, b)) = l.bond() {
                let name = |id: u16| l.members().iter().find(|m| m.port_id == id).map_or_else(|| format!("port {id}"), |m| m.spec.clone());
                let members: Vec<String> = l
                    .members()
                    .iter()
                    .map(|m| {
                        let lacp = match l.lacp_state(m.port_id) {
                            Some((a, p)) => format!(" lacp {}/{} ({a:02x}/{p:02x})", lacp_words(a), lacp_words(p)),
                            None => String::new(),
                        };
                        format!("{} {}{lacp}", m.spec, if m.up { "up" } else { "down" })
                    })
                    .collect();
                let active = if mode == crate::config::BondMode::ActiveBackup { name(b.primary) } else { b.active.iter().map(|id| name(*id)).collect::<Vec<_>>().join(", ") };
                let _ = writeln!(s, "  bond {}: active {active}; members {}", mode.name(), members.join(", "));
            }
        }
    }

    /// Per worker: counters, persistence, every drop by name.
    pub fn report_workers(&self, s: &mut String) {
        for (i, c) in self.workers.counters().enumerate() {
            let _ = writeln!(
                s,
                "worker {i}: rx {} pkts {} bytes; tx {} pkts {} bytes; punted {}; handed-off {}; flows {}; rejected {}; dropped {}",
                c.rx_packets.get(),
                c.rx_bytes.get(),
                c.tx_packets.get(),
                c.tx_bytes.get(),
                c.punted.get(),
                c.handed_off.get(),
                c.flows.get(),
                c.rejected.get(),
                c.total_drops()
            );
            if c.routed.get() > 0 {
                let _ = writeln!(s, "  routed: {}", c.routed.get());
            }
            if c.snat.get() > 0 {
                let _ = writeln!(s, "  snat: connections {}", c.snat.get());
            }
            if c.local_in.get() + c.local_out.get() > 0 {
                let _ = writeln!(s, "  host: connections in {} out {}", c.local_in.get(), c.local_out.get());
            }
            if c.frag_needed.get() > 0 {
                let _ = writeln!(s, "  tunnel: frag-needed {}", c.frag_needed.get());
            }
            let punts: Vec<String> = PuntClass::ALL
                .iter()
                .filter_map(|k| {
                    let (passed, limited) = c.punts(*k);
                    (passed + limited > 0).then(|| format!("{} {passed}/{limited}", k.name()))
                })
                .collect();
            if !punts.is_empty() {
                let _ = writeln!(s, "  punt (passed/limited): {}", punts.join("; "));
            }
            let (rst, evicted, limited, implausible, capped) = (c.rst_in_window.get(), c.embryonic_evicted.get(), c.answers_limited.get(), c.tcp_implausible.get(), c.unreplied_capped.get());
            if rst + evicted + limited + implausible + capped > 0 {
                let _ = writeln!(s, "  defence: embryonic-evicted {evicted}; unreplied-capped {capped}; rst-in-window {rst}; answers-limited {limited}; tcp-implausible {implausible}");
            }
            if c.syn_cookies.get() + c.syn_proxied.get() > 0 {
                let _ = writeln!(s, "  syn-proxy: cookies {}; proxied {}; parked {}; stale {}; resent {}", c.syn_cookies.get(), c.syn_proxied.get(), c.syn_parked.get(), c.syn_stale.get(), c.syn_resent.get());
            }
            if c.persist_records.get() > 0 {
                let _ = writeln!(
                    s,
                    "  persistence: persisted {}; records-made {}; evicted {}",
                    c.persisted.get(),
                    c.persist_records.get(),
                    c.persist_evicted.get()
                );
            }
            for r in DropReason::ALL {
                let n = c.drops(*r);
                if n > 0 {
                    let _ = writeln!(s, "  drop {}: {n}", r.name());
                }
            }
        }
    }

    /// The packet pool (last line, no newline).
    pub fn report_mbufs(&self, s: &mut String) {
        if let Some(p) = &self.pool {
            let _ = write!(s, "mbufs: {} free, {} in use", p.available(), p.in_use());
            // net_af_xdp fills its UMEM's fill ring from the pool (2048 a
            // RX queue) and hands them back only at close.
            let held: u64 = self.links.iter().filter(|l| l.driver() == "net_af_xdp").map(|l| 2048 * u64::from(l.rx_queues())).sum();
            if held > 0 {
                let _ = write!(s, " ({held} of them in net_af_xdp's fill rings)");
            }
        }
    }
}

/// An LACP port state byte (IEEE 802.1AX 6.4.2.3) as the furthest of its
/// mux states: `distributing`, `collecting`, `sync`, or `-`.
fn lacp_words(state: u8) -> &'static str {
    const SYNC: u8 = 0x08;
    const COLLECTING: u8 = 0x10;
    const DISTRIBUTING: u8 = 0x20;
    if state & (SYNC | COLLECTING | DISTRIBUTING) == SYNC | COLLECTING | DISTRIBUTING {
        "distributing"
    } else if state & (SYNC | COLLECTING) == SYNC | COLLECTING {
        "collecting"
    } else if state & SYNC != 0 {
        "sync"
    } else {
        "-"
    }
}
