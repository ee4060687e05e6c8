//! The lb module's metrics (per virtual server and server) and its lines
//! of the SIGUSR1 report.

use super::build::Slot;
use super::Lb;
use crate::modules::health::Health;
use crate::modules::metrics::{labels, Text};
use crate::runtime::Runtime;
use furiwake_dataplane::lb::RealServer;
use furiwake_dataplane::state::counters::{ServiceCounters, WorkerCounters};
use furiwake_dataplane::state::snapshot::{Snapshot, VirtualService};
use std::fmt::Write as _;

/// The `virtual_server` label value: a removed virtual server still
/// counting its connections is `NAME (removed)`, so that a new one of the
/// same name is another series.
fn virtual_server_name(vs: &VirtualService) -> String {
    if vs.retired {
        format!("{} (removed)", vs.name)
    } else {
        vs.name.clone()
    }
}

/// The label sets of the virtual servers `keep` says are in use (live or
/// removed with connections), by snapshot index.
fn service_labels(snap: &Snapshot, keep: &dyn Fn(usize) -> bool) -> Vec<(usize, String)> {
    snap.services.iter().enumerate().filter(|(vi, _)| keep(*vi)).map(|(vi, vs)| (vi, labels(&[("virtual_server", &virtual_server_name(vs))]))).collect()
}

/// The label sets of the servers `keep` says are in use, by snapshot index.
fn server_labels(snap: &Snapshot, keep: &dyn Fn(usize) -> bool) -> Vec<(usize, String)> {
    let label = |rs: &RealServer| -> Option<String> {
        let vs = snap.services.get(rs.vs as usize)?;
        let addr = rs.socket_addr().to_string();
        Some(labels(&[("virtual_server", &virtual_server_name(vs)), ("server", &addr)]))
    };
    snap.servers.iter().enumerate().filter(|(si, _)| keep(*si)).filter_map(|(si, rs)| Some((si, label(rs)?))).collect()
}

impl Lb {
    /// The virtual servers' and servers' families.
    pub fn metrics(&self, t: &mut Text, rt: &Runtime, health: &Health) {
        let workers = rt.workers();
        let Some(snap) = workers.published() else { return };
        let sum = |sel: &dyn Fn(&WorkerCounters) -> Option<&ServiceCounters>, f: &dyn Fn(&ServiceCounters) -> u64| workers.sum(|c| sel(c).map_or(0, f));
        type Field = (&'static str, &'static str, &'static str, fn(&ServiceCounters) -> u64);
        const FIELDS: [Field; 7] = [
            ("connections_active", "gauge", "Established connections (ipvsadm's ActiveConn).", |c| c.conns_established.get()),
            ("connections_inactive", "gauge", "Connection entries not established: handshake, closing, TIME_WAIT, CLOSE; UDP and ICMP flows (ipvsadm's InActConn).", |c| c.conns_active.get().wrapping_sub(c.conns_established.get())),
            ("connections_total", "counter", "Connections scheduled.", |c| c.conns_new.get()),
            ("in_packets_total", "counter", "Packets client to server.", |c| c.in_pkts.get()),
            ("in_bytes_total", "counter", "IP bytes client to server.", |c| c.in_bytes.get()),
            ("out_packets_total", "counter", "Packets server to client.", |c| c.out_pkts.get()),
            ("out_bytes_total", "counter", "IP bytes server to client.", |c| c.out_bytes.get()),
        ];
        let services = service_labels(snap, &|vi| self.layout.services.get(vi).is_some_and(|s| s.is_live() || s.is_retired()));
        let servers = server_labels(snap, &|si| self.layout.servers.get(si).is_some_and(|s| s.is_live() || s.is_retired()));
        for (name, kind, help, f) in FIELDS {
            let vs: Vec<(String, u64)> = services.iter().map(|(vi, l)| (l.clone(), sum(&|w| w.services.get(*vi), &f))).collect();
            t.family(&format!("virtual_server_{name}"), kind, help, vs);
        }
        for (name, kind, help, f) in FIELDS {
            let samples: Vec<(String, u64)> = servers.iter().map(|(si, l)| (l.clone(), sum(&|w| w.servers.get(*si), &f))).collect();
            t.family(&format!("server_{name}"), kind, help, samples);
        }
        let up: Vec<(String, u64)> = servers.iter().map(|(si, l)| (l.clone(), u64::from(health.is_up(*si)))).collect();
        t.family("server_up", "gauge", "1 when the server passes its health checks (or has none).", up);
        let rtt: Vec<(String, u64)> = servers.iter().filter_map(|(si, l)| Some((l.clone(), health.rtt_us(*si)? as u64))).collect();
        t.family("server_rtt_microseconds", "gauge", "Health probe round-trip time (moving average).", rtt);
    }

    /// Per virtual server and server: state and counters.
    pub fn report(&self, s: &mut String, rt: &Runtime, health: &Health) {
        if let Some(snap) = rt.workers().published() {
            let workers = rt.workers();
            let sum = |f: &dyn Fn(&WorkerCounters) -> u64| workers.sum(f);
            for (vi, vs) in snap.services.iter().enumerate() {
                // Free slots are nobody's.
                if !self.layout.services.get(vi).is_some_and(|s| s.is_live() || s.is_retired()) {
                    continue;
                }
                let line = |c: &dyn Fn(&WorkerCounters) -> Option<&ServiceCounters>| {
                    let g = |f: &dyn Fn(&ServiceCounters) -> u64| sum(&|w| c(w).map_or(0, f));
                    format!(
                        "conns-active {}; conns-inactive {}; conns-new {}; in-pkts {}; in-bytes {}; out-pkts {}; out-bytes {}",
                        g(&|x| x.conns_established.get()),
                        g(&|x| x.conns_active.get().wrapping_sub(x.conns_established.get())),
                        g(&|x| x.conns_new.get()),
                        g(&|x| x.in_pkts.get()),
                        g(&|x| x.in_bytes.get()),
                        g(&|x| x.out_pkts.get()),
                        g(&|x| x.out_bytes.get())
                    )
                };
                let removed = if vs.retired { " (removed)" } else { "" };
                let _ = writeln!(s, "virtual-server {}{removed}: {}", vs.name, line(&|w| w.services.get(vi)));
                for si in vs.members.iter().map(|g| *g as usize) {
                    if let Some(rs) = snap.servers.get(si) {
                        let addr = rs.socket_addr();
                        let admin = self.admin.of_server(si, addr);
                        let state = if !admin.accepts_new() {
                            admin.name()
                        } else if !rs.enabled && rs.weight == 0 {
                            "disabled"
                        } else if health.is_up(si) {
                            "up"
                        } else {
                            "down"
                        };
                        let rtt = health.rtt_us(si).map_or(String::new(), |r| format!("rtt-us {r:.0}; "));
                        let bw = self.loads.bytes_per_s(si);
                        let _ = writeln!(s, "  server {addr}: state {state}; {rtt}bytes-per-s {bw}; {}", line(&|w| w.servers.get(si)));
                    }
                }
                // Removed servers of this virtual server with connections
                // still open.
                for (si, rs) in snap.servers.iter().enumerate() {
                    if rs.vs as usize == vi && self.layout.servers.get(si).is_some_and(Slot::is_retired) {
                        let addr = rs.socket_addr();
                        let _ = writeln!(s, "  server {addr}: state removed; {}", line(&|w| w.servers.get(si)));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use furiwake_dataplane::state::snapshot::Forwarding;

    #[test]
    fn a_removed_virtual_server_and_a_new_one_of_its_name_are_distinct_series() {
        let vs = |name: &str, retired: bool, members: &[u16]| VirtualService {
            name: name.into(),
            retired,
            members: members.into(),
            ..VirtualService::test(Forwarding::Nat)
        };
        let rs = |vs: u16| RealServer { ip: u32::from(std::net::Ipv4Addr::new(10, 0, 0, 1)), port: 80, vs, ..Default::default() };
        let mut snap = Snapshot::default();
        // `app` removed with connections open, then added again (another
        // address); a free slot; `api` with a quote in its name.
        snap.services = vec![vs("app", true, &[]), vs("app", false, &[1]), vs("old", true, &[]), vs("a\"pi", false, &[3])];
        snap.servers = vec![rs(0), rs(1), rs(2), rs(3)];
        let in_use = |i: usize| i != 2;
        assert_eq!(
            service_labels(&snap, &in_use),
            [
                (0, r#"{virtual_server="app (removed)"}"#.to_string()),
                (1, r#"{virtual_server="app"}"#.to_string()),
                (3, r#"{virtual_server="a\"pi"}"#.to_string()),
            ]
        );
        assert_eq!(
            server_labels(&snap, &in_use),
            [
                (0, r#"{virtual_server="app (removed)",server="10.0.0.1:80"}"#.to_string()),
                (1, r#"{virtual_server="app",server="10.0.0.1:80"}"#.to_string()),
                (3, r#"{virtual_server="a\"pi",server="10.0.0.1:80"}"#.to_string()),
            ]
        );
    }
}
