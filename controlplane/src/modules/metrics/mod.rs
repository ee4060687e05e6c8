//! Prometheus text metrics over HTTP on the management address
//! (`[management] listen`). Each scrape reads the workers' counters
//! (single writer, relaxed loads) the same way the SIGUSR1 report does.
//!
//! - `server`: the HTTP server, polled from the control loop.
//! - `Text`: the exposition format, which each module writes its
//!   families into (the lb module its virtual servers and servers, the
//!   health module its probes); the runtime's ports, workers and packet
//!   pool are written here. The appliance assembles the text per scrape.
//!
//! Exposition format: <https://prometheus.io/docs/instrumenting/exposition_formats/>.

mod server;

pub use server::MetricsServer;

use crate::runtime::Runtime;
use furiwake_dataplane::state::counters::{DropReason, PuntClass, WorkerCounters};
use std::fmt::Write as _;

/// One label set of a histogram: its labels, the count in each bucket
/// (not cumulative; the last is +Inf), the sum (seconds) and the count.
pub type Series = (Vec<(String, String)>, Vec<u64>, f64, u64);

/// Metric families in the text format, in the order they are added.
#[derive(Debug, Default)]
pub struct Text {
    out: String,
}

impl Text {
    /// A family `furiwake_NAME` of `kind` (counter, gauge) and its samples
    /// (label set, value).
    pub fn family(&mut self, name: &str, kind: &str, help: &str, samples: Vec<(String, u64)>) {
        let _ = writeln!(self.out, "# HELP furiwake_{name} {help}\n# TYPE furiwake_{name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(self.out, "furiwake_{name}{labels} {v}");
        }
    }

    /// A histogram family: per label set, cumulative counts at each
    /// bound (`le`, seconds), the sum (seconds) and the count.
    pub fn histogram(&mut self, name: &str, help: &str, bounds: &[f64], series: Vec<Series>) {
        let _ = writeln!(self.out, "# HELP furiwake_{name} {help}\n# TYPE furiwake_{name} histogram");
        for (pairs, counts, sum, count) in series {
            let base: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let mut total = 0;
            for (i, n) in counts.iter().enumerate() {
                total += n;
                let le = bounds.get(i).map_or_else(|| "+Inf".to_string(), |b| b.to_string());
                let mut with = base.clone();
                with.push(("le", &le));
                let _ = writeln!(self.out, "furiwake_{name}_bucket{} {total}", labels(&with));
            }
            let _ = writeln!(self.out, "furiwake_{name}_sum{} {sum}\nfuriwake_{name}_count{} {count}", labels(&base), labels(&base));
        }
    }

    pub fn into_string(self) -> String {
        self.out
    }
}

/// A label set: `{k="v",...}`, values escaped.
pub fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))).collect();
    format!("{{{}}}", inner.join(","))
}

/// The ports' families.
pub fn ports(t: &mut Text, rt: &Runtime) {
    let port = |f: &dyn Fn(&furiwake_platform::PortStats) -> u64| {
        rt.links().iter().filter_map(|l| l.stats().ok().map(|st| (labels(&[("port", l.name())]), f(&st)))).collect::<Vec<_>>()
    };
    let rx_p = port(&|s| s.ipackets);
    let rx_b = port(&|s| s.ibytes);
    let tx_p = port(&|s| s.opackets);
    let tx_b = port(&|s| s.obytes);
    let missed = port(&|s| s.imissed);
    t.family("port_rx_packets_total", "counter", "Packets received by the port.", rx_p);
    t.family("port_rx_bytes_total", "counter", "Bytes received by the port.", rx_b);
    t.family("port_tx_packets_total", "counter", "Packets sent by the port.", tx_p);
    t.family("port_tx_bytes_total", "counter", "Bytes sent by the port.", tx_b);
    t.family("port_rx_missed_total", "counter", "Packets the port dropped for want of RX descriptors.", missed);
    let up: Vec<(String, u64)> = rt.links().iter().map(|l| (labels(&[("port", l.name())]), u64::from(l.state().is_ok_and(|k| k.up)))).collect();
    t.family("port_link_up", "gauge", "1 when the port's link is up.", up);
}

/// The workers' families.
pub fn workers(t: &mut Text, rt: &Runtime) {
    let workers = rt.workers();
    let per_worker = |f: &dyn Fn(&WorkerCounters) -> u64| -> Vec<(String, u64)> {
        workers.counters().enumerate().map(|(i, c)| (labels(&[("worker", &i.to_string())]), f(c))).collect()
    };
    t.family("worker_rx_packets_total", "counter", "Packets the worker received from its queues.", per_worker(&|c| c.rx_packets.get()));
    t.family("worker_tx_packets_total", "counter", "Packets the worker sent.", per_worker(&|c| c.tx_packets.get()));
    t.family("worker_handed_off_total", "counter", "Packets handed to the worker owning their connection.", per_worker(&|c| c.handed_off.get()));
    t.family("worker_punted_total", "counter", "Packets handed to the control plane.", per_worker(&|c| c.punted.get()));
    t.family("worker_flows", "gauge", "Connection-table entries.", per_worker(&|c| c.flows.get()));
    t.family("worker_rejected_total", "counter", "New connections refused with a RST or ICMP unreachable.", per_worker(&|c| c.rejected.get()));
    t.family("worker_routed_total", "counter", "Packets routed on route interfaces.", per_worker(&|c| c.routed.get()));
    t.family("worker_snat_total", "counter", "Connections servers opened through source NAT.", per_worker(&|c| c.snat.get()));
    t.family("worker_host_in_total", "counter", "Clients' connections handed to the appliance's own stack (the exception path).", per_worker(&|c| c.local_in.get()));
    t.family("worker_host_out_total", "counter", "Connections the appliance's own stack opened through the workers.", per_worker(&|c| c.local_out.get()));
    t.family("worker_frag_needed_total", "counter", "dsr-tunnel packets too big for the tunnel answered with ICMP fragmentation needed, and fragmentation needed from inside a tunnel relayed to clients.", per_worker(&|c| c.frag_needed.get()));
    t.family("worker_embryonic_evicted_total", "counter", "Half-open TCP entries evicted to make room (a SYN flood's, oldest first).", per_worker(&|c| c.embryonic_evicted.get()));
    t.family("worker_unreplied_capped_total", "counter", "Unreplied entries evicted by a per-service, per-source or full-NAT port cap for a newer one of their own group.", per_worker(&|c| c.unreplied_capped.get()));
    t.family("worker_rst_in_window_total", "counter", "TCP resets inside the window but not at the next byte: forwarded, the connection kept (RFC 5961).", per_worker(&|c| c.rst_in_window.get()));
    t.family("worker_tcp_implausible_total", "counter", "TCP segments no endpoint would accept (outside the window, an ACK of unsent data, no ACK): forwarded, changing nothing.", per_worker(&|c| c.tcp_implausible.get()));
    t.family("worker_syn_cookies_total", "counter", "SYNs the SYN proxy answered with a cookie.", per_worker(&|c| c.syn_cookies.get()));
    t.family("worker_syn_proxied_total", "counter", "Connections a good SYN cookie opened.", per_worker(&|c| c.syn_proxied.get()));
    t.family("worker_answers_limited_total", "counter", "Refusals and ICMP errors not sent: over icmp_rate.", per_worker(&|c| c.answers_limited.get()));
    let punt = |limited: bool| -> Vec<(String, u64)> {
        workers
            .counters()
            .enumerate()
            .flat_map(|(i, c)| PuntClass::ALL.iter().map(move |k| (i, *k, c.punts(*k))))
            .map(|(i, k, (p, l))| (labels(&[("worker", &i.to_string()), ("class", k.name())]), if limited { l } else { p }))
            .collect()
    };
    t.family("worker_punt_passed_total", "counter", "Packets handed to the control plane, by class.", punt(false));
    t.family("worker_punt_limited_total", "counter", "Packets for the control plane dropped over their class's rate, by class.", punt(true));
    let drops: Vec<(String, u64)> = workers
        .counters()
        .enumerate()
        .flat_map(|(i, c)| DropReason::ALL.iter().map(move |r| (i, r, c.drops(*r))))
        .map(|(i, r, n)| (labels(&[("worker", &i.to_string()), ("reason", r.name())]), n))
        .collect();
    t.family("worker_drops_total", "counter", "Packets dropped, by reason.", drops);
}

/// The packet pool's family.
pub fn mbufs(t: &mut Text, rt: &Runtime) {
    if let Some(in_use) = rt.mbufs_in_use() {
        t.family("mbufs_in_use", "gauge", "Mbufs out of the packet pool.", vec![(String::new(), in_use as u64)]);
    }
}
