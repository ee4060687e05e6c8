//! The lb module's console face: `show virtual-servers`, `show pools`,
//! `show servers`, `show stats`, and the entries of `show connections`.

use super::admin;
use super::build::Slot;
use super::Lb;
use crate::modules::health::Health;
use crate::modules::text::{kebab, table};
use crate::runtime::stats::{self, Sample, Traffic};
use crate::runtime::Runtime;
use furiwake_dataplane::conntrack::TICK_MS;
use furiwake_dataplane::ctl::dump::DumpEntry;
use furiwake_dataplane::lb::persist::RecordView;
use furiwake_dataplane::DropReason;
use std::fmt::Write as _;

/// A connection entry's address, of either family.
fn sock(ip: std::net::IpAddr, port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::new(ip, port)
}

fn proto_name(p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        n => n.to_string(),
    }
}

fn secs(ticks: u32) -> f64 {
    ticks as f64 * TICK_MS as f64 / 1000.0
}

impl Lb {
    /// The name of snapshot server `i`'s virtual server (`show health`).
    pub fn vs_name_of_server(&self, i: usize) -> String {
        self.base.servers.get(i).and_then(|r| self.base.services.get(r.vs as usize)).map_or("?".into(), |v| v.name.clone())
    }

    /// Snapshot servers of virtual server `vi` (a snapshot index).
    fn servers_of(&self, vi: usize) -> Vec<usize> {
        self.base.services.get(vi).map_or(Vec::new(), |v| v.members.iter().map(|g| *g as usize).collect())
    }

    /// Does snapshot server `i` take new connections right now (as published)?
    fn published_enabled(rt: &Runtime, i: usize) -> bool {
        rt.workers().published().and_then(|p| p.servers.get(i)).is_some_and(|s| s.enabled)
    }

    /// `show virtual-servers [NAME]`.
    pub fn show_virtual_servers(&self, name: Option<&str>, rt: &Runtime) -> Result<String, String> {
        if let Some(n) = name {
            if !self.cfg.virtual_servers.iter().any(|v| v.name.get_ref() == n) {
                return Err(format!("no virtual server named {n:?} (virtual servers: {})", self.cfg.virtual_servers.iter().map(|v| v.name.get_ref().as_str()).collect::<Vec<_>>().join(", ")));
            }
        }
        let mut rows = Vec::new();
        for v in &self.cfg.virtual_servers {
            if name.is_some_and(|n| n != v.name.get_ref()) {
                continue;
            }
            let Some(vi) = self.vs_slot(v.name.get_ref()) else { continue };
            let range = self.servers_of(vi);
            let total = range.len();
            let up = range.into_iter().filter(|i| Self::published_enabled(rt, *i)).count();
            let t = rt.workers().traffic(|w| w.services.get(vi));
            rows.push(vec![
                v.name.get_ref().clone(),
                v.address.to_string(),
                kebab(&v.protocol),
                kebab(v.forwarding.get_ref()),
                v.pool.get_ref().clone(),
                format!("{up}/{total}"),
                t.active().to_string(),
                t.inactive().to_string(),
                t.conns_new.to_string(),
            ]);
        }
        Ok(table(&["NAME", "ADDRESS", "PROTOCOL", "FORWARDING", "POOL", "TAKING-NEW", "ACTIVE", "INACTIVE", "TOTAL"], &rows))
    }

    /// Every pool member's snapshot slots (one per virtual server using
    /// its pool), by (config pool, address): built once for a command, so
    /// a table of 10,000 members is not a scan per member.
    fn slots_by_member(&self) -> std::collections::HashMap<(usize, std::net::SocketAddr), Vec<usize>> {
        let mut m: std::collections::HashMap<(usize, std::net::SocketAddr), Vec<usize>> = std::collections::HashMap::new();
        for (i, r) in self.base.servers.iter().enumerate() {
            if let Some(pi) = self.admin.pool_of(i) {
                m.entry((pi, r.socket_addr())).or_default().push(i);
            }
        }
        m
    }

    /// `show pools`.
    pub fn show_pools(&self, rt: &Runtime) -> String {
        let slots = self.slots_by_member();
        let mut rows = Vec::new();
        for (pi, p) in self.cfg.pools.iter().enumerate() {
            let checks: Vec<String> = p.check_names().map(|c| c.get_ref().clone()).collect();
            let up = p
                .servers
                .iter()
                .filter(|s| {
                    let a = *s.address.get_ref();
                    slots.get(&(pi, a)).is_some_and(|m| m.iter().any(|i| Self::published_enabled(rt, *i)))
                })
                .count();
            let vss: Vec<String> = self.cfg.virtual_servers.iter().filter(|v| v.pool.get_ref() == p.name.get_ref()).map(|v| v.name.get_ref().clone()).collect();
            rows.push(vec![
                p.name.get_ref().clone(),
                kebab(p.algorithm.get_ref()),
                if checks.is_empty() { "-".into() } else { checks.join(",") },
                p.sorry_pool.as_ref().map_or("-".into(), |s| s.get_ref().clone()),
                kebab(&p.on_down),
                format!("{up}/{}", p.servers.len()),
                if vss.is_empty() { "-".into() } else { vss.join(",") },
            ]);
        }
        table(&["POOL", "ALGORITHM", "HEALTH-CHECKS", "SORRY-POOL", "ON-DOWN", "TAKING-NEW", "VIRTUAL-SERVERS"], &rows)
    }

    /// `show servers [POOL]`.
    pub fn show_servers(&self, pool: Option<&str>, rt: &Runtime, health: &Health) -> Result<String, String> {
        if let Some(p) = pool {
            self.pool_index(p)?;
        }
        let slots = self.slots_by_member();
        let mut rows = Vec::new();
        for (pi, p) in self.cfg.pools.iter().enumerate() {
            if pool.is_some_and(|n| n != p.name.get_ref()) {
                continue;
            }
            for s in &p.servers {
                let a = *s.address.get_ref();
                let members: Vec<usize> = slots.get(&(pi, a)).cloned().unwrap_or_default();
                let health_up = members.iter().all(|i| health.is_up(*i));
                let checked = members.iter().any(|i| health.has_checks(*i));
                let admin = self.admin.get(pi, a);
                let mut t = Traffic::default();
                for i in &members {
                    let x = rt.workers().traffic(|w| w.servers.get(*i));
                    t.entries = t.entries.wrapping_add(x.entries);
                    t.established = t.established.wrapping_add(x.established);
                    t.conns_new = t.conns_new.wrapping_add(x.conns_new);
                }
                let rtt = members.iter().find_map(|i| health.rtt_us(*i)).map_or("-".into(), |r| format!("{:.1}ms", r / 1000.0));
                let last = members
                    .iter()
                    .map(|i| health.check_status(*i))
                    .find(|c| !c.is_empty())
                    .map_or("-".into(), |cs| cs.iter().map(|c| c.last_result()).collect::<Vec<_>>().join("; "));
                rows.push(vec![
                    p.name.get_ref().clone(),
                    a.to_string(),
                    admin::display_state(*s.weight.get_ref(), health_up, admin).to_string(),
                    if !checked { "unchecked".into() } else if health_up { "up".into() } else { "down".into() },
                    s.weight.to_string(),
                    s.priority.to_string(),
                    t.active().to_string(),
                    t.inactive().to_string(),
                    t.conns_new.to_string(),
                    rtt,
                    last,
                ]);
            }
        }
        // Removed servers whose connections are still open.
        for (i, slot) in self.layout.servers.iter().enumerate() {
            let Slot::Retired((_, p, a)) = slot else { continue };
            if pool.is_some_and(|n| n != p) {
                continue;
            }
            let x = rt.workers().traffic(|w| w.servers.get(i));
            let w = self.base.servers.get(i).map_or(0, |s| s.weight);
            rows.push(vec![p.clone(), a.to_string(), "removed".into(), "-".into(), w.to_string(), "-".into(), x.active().to_string(), x.inactive().to_string(), x.conns_new.to_string(), "-".into(), "-".into()]);
        }
        Ok(table(&["POOL", "SERVER", "STATE", "HEALTH", "WEIGHT", "PRIORITY", "ACTIVE", "INACTIVE", "TOTAL", "RTT", "LAST-CHECK"], &rows))
    }

    /// `show stats`, from the last two counter samples.
    pub fn show_stats(&self, window: Option<(&Sample, &Sample, f64)>, rt: &Runtime) -> String {
        let Some((a, b, secs)) = window else {
            return "no rates yet: counters are sampled every second; ask again in a moment".into();
        };
        let r = |x: u64, y: u64| stats::per_sec(x, y, secs);
        let mut out = format!("rates over the last {secs:.1} s (pps: packets/s, bps: bits/s)\n\n");
        let mut rows = Vec::new();
        for (i, l) in rt.links().iter().enumerate() {
            let (Some(x), Some(y)) = (a.ports.get(i), b.ports.get(i)) else { continue };
            rows.push(vec![
                l.name().clone(),
                stats::si(r(x.rx_pkts, y.rx_pkts)),
                stats::si(8.0 * r(x.rx_bytes, y.rx_bytes)),
                stats::si(r(x.tx_pkts, y.tx_pkts)),
                stats::si(8.0 * r(x.tx_bytes, y.tx_bytes)),
                y.rx_pkts.to_string(),
                y.tx_pkts.to_string(),
            ]);
        }
        out.push_str(&table(&["PORT", "RX-PPS", "RX-BPS", "TX-PPS", "TX-BPS", "RX-PKTS", "TX-PKTS"], &rows));
        let traffic_row = |name: String, x: &Traffic, y: &Traffic| {
            vec![
                name,
                stats::si(r(x.pkts, y.pkts)),
                stats::si(8.0 * r(x.bytes, y.bytes)),
                stats::si(r(x.conns_new, y.conns_new)),
                y.active().to_string(),
                y.inactive().to_string(),
                y.conns_new.to_string(),
            ]
        };
        let mut vrows = Vec::new();
        let mut srows = Vec::new();
        for (vi, v) in self.base.services.iter().enumerate() {
            if !self.layout.services.get(vi).is_some_and(|s| s.is_live() || s.is_retired()) {
                continue;
            }
            if let (Some(x), Some(y)) = (a.services.get(vi), b.services.get(vi)) {
                vrows.push(traffic_row(v.name.clone(), x, y));
            }
            for si in self.servers_of(vi) {
                if let (Some(x), Some(y), Some(rs)) = (a.servers.get(si), b.servers.get(si), self.base.servers.get(si)) {
                    srows.push(traffic_row(format!("{} {}", v.name, rs.socket_addr()), x, y));
                }
            }
        }
        out.push_str("\n\n");
        out.push_str(&table(&["VIRTUAL-SERVER", "PPS", "BPS", "NEW-CONN/S", "ACTIVE", "INACTIVE", "TOTAL-CONN"], &vrows));
        out.push_str("\n\n");
        out.push_str(&table(&["VIRTUAL-SERVER SERVER", "PPS", "BPS", "NEW-CONN/S", "ACTIVE", "INACTIVE", "TOTAL-CONN"], &srows));
        let drops: Vec<Vec<String>> = DropReason::ALL
            .iter()
            .enumerate()
            .filter_map(|(i, d)| {
                let (x, y) = (a.drops.get(i).copied().unwrap_or(0), b.drops.get(i).copied().unwrap_or(0));
                (y > 0).then(|| vec![d.name().to_string(), y.to_string(), stats::si(r(x, y))])
            })
            .collect();
        out.push_str("\n\n");
        if drops.is_empty() {
            out.push_str("drops: none");
        } else {
            out.push_str(&table(&["DROP-REASON", "TOTAL", "PER-SECOND"], &drops));
        }
        out
    }

    /// Seed 001's entry layout, one block per connection.
    pub fn render_connections(&self, mut entries: Vec<(usize, DumpEntry)>, matched: u64, limit: u32) -> String {
        entries.sort_by_key(|(w, e)| (e.vs, e.client_ip, e.client_port, *w));
        entries.truncate(limit as usize);
        let mut out = if entries.len() as u64 == matched {
            format!("{matched} connection(s)")
        } else {
            format!("{matched} connection(s), showing {} (limit {limit})", entries.len())
        };
        for (w, e) in &entries {
            let vs = self.base.services.get(e.vs as usize);
            let slot = furiwake_dataplane::conntrack::server_slot(e.vs, e.server, e.mode);
            let pool = vs.and_then(|_| self.admin.pool_of(slot)).and_then(|p| self.cfg.pools.get(p)).map_or("?".into(), |p| p.name.get_ref().clone());
            let _ = write!(
                out,
                "\n\nclient side client address: {}\nclient side server address: {}\nserver side client address: {}\nserver side server address: {}\nvirtual address: {}\nnode address: {}\nprotocol: {}\nforwarding: {}\nstate: {}\nidle: {:.1} s / timeout: {:.0} s\nvirtual server: {} (pool {pool}), worker {w}",
                sock(e.client_ip, e.client_port),
                sock(e.vip, e.vport),
                sock(e.local_ip, e.local_port),
                sock(e.server_ip, e.server_port),
                sock(e.vip, e.vport),
                sock(e.server_ip, e.server_port),
                proto_name(e.proto),
                mode_name(e.mode, vs.map(|v| v.forwarding)),
                e.state.name(),
                secs(e.idle_ticks),
                secs(e.timeout_ticks),
                vs.map_or("?".into(), |v| v.name.clone()),
            );
        }
        out
    }
}

/// Where `show persistence` looks: the records of one persistence group
/// (its name, as `group:NAME` or `vs:NAME`, and its snapshot index when
/// the workers keep it), or all.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PersistScope {
    pub group: Option<String>,
    /// The workers' group index; None with `group` set: an L7 group.
    pub index: Option<u16>,
}

impl PersistScope {
    /// Do the workers hold records in this scope?
    pub fn in_workers(&self) -> bool {
        self.group.is_none() || self.index.is_some()
    }
}

impl Lb {
    /// `show persistence virtual-server NAME`: NAME's records.
    pub fn persistence_scope(&self, vs: Option<&str>) -> Result<PersistScope, String> {
        let Some(name) = vs else { return Ok(PersistScope::default()) };
        let v = self.cfg.virtual_servers.iter().find(|v| v.name.get_ref() == name).ok_or_else(|| format!("no virtual server {name:?}"))?;
        if v.persistence.is_none() {
            return Err(format!("virtual server {name} has no persistence"));
        }
        let group = super::build::group_name(v);
        let index = self.layout.groups.iter().position(|g| *g == group).and_then(|i| u16::try_from(i).ok());
        let l7 = v.protocol.is_l7() || v.persistence.as_ref().is_some_and(|p| p.get_ref().kind.is_l7());
        Ok(PersistScope { index: if l7 { None } else { index }, group: Some(group) })
    }

    /// `show persistence`: the workers' records, `matched` of them in all,
    /// then the L7 engine's (`l7`: how many matched, and some as rows of
    /// the table's columns).
    pub fn render_persistence(&self, mut records: Vec<(usize, RecordView)>, matched: u64, l7: Option<(usize, Vec<Vec<String>>)>, limit: u32) -> String {
        records.sort_by_key(|(w, r)| (r.group, r.client_ip, r.client_port, *w));
        records.truncate(limit as usize);
        let (l7_matched, l7_rows) = l7.unwrap_or_default();
        let total = matched + l7_matched as u64;
        let listed = records.len() + l7_rows.len();
        let mut out = if listed as u64 == total { format!("{total} persistence record(s)") } else { format!("{total} persistence record(s), showing {listed} (limit {limit} each)") };
        let mut rows: Vec<Vec<String>> = records.iter().map(|(w, r)| self.record_row(*w, r)).collect();
        rows.extend(l7_rows);
        if !rows.is_empty() {
            out.push('\n');
            out.push_str(&table(&["GROUP", "CLIENT / VALUE", "SERVER", "CONNS", "EXPIRES", "WHERE"], &rows));
        }
        out
    }

    /// A worker's record: its client under the group's prefix.
    fn record_row(&self, worker: usize, r: &RecordView) -> Vec<String> {
        let group = self.layout.groups.get(r.group as usize).cloned().unwrap_or_else(|| format!("#{}", r.group));
        let prefix = self.base.services.iter().filter_map(|v| v.persistence).find(|p| p.group == r.group).map(|p| p.prefix);
        let client = match (r.client_port, prefix) {
            (0, Some(p)) if p < if r.client_ip.is_ipv4() { 32 } else { 128 } => format!("{}/{p}", r.client_ip),
            (0, _) => r.client_ip.to_string(),
            (port, _) => sock(r.client_ip, port).to_string(),
        };
        let expires = if r.refs > 0 { format!("{:.0} s after its last connection", secs(self.group_timeout(r.group))) } else { format!("{:.0} s", secs(r.left_ticks)) };
        vec![group, client, r.server_ip.to_string(), r.refs.to_string(), expires, format!("worker {worker}")]
    }

    /// A group's record timeout, in ticks.
    fn group_timeout(&self, group: u16) -> u32 {
        self.base.services.iter().filter_map(|v| v.persistence).find(|p| p.group == group).map_or(0, |p| p.timeout)
    }
}

/// An entry's forwarding as the configuration spells it; a NAT virtual
/// server's entry in full-NAT is a hairpinned client's.
fn mode_name(mode: furiwake_dataplane::conntrack::Forwarding, service: Option<furiwake_dataplane::conntrack::Forwarding>) -> &'static str {
    use furiwake_dataplane::conntrack::Forwarding as F;
    match (mode, service) {
        (F::FullNat, Some(F::Nat)) => "full-nat (hairpin: a client on the servers' segment)",
        (F::Nat, _) => "nat",
        (F::FullNat, _) => "full-nat",
        (F::DsrL2, _) => "dsr-l2",
        (F::DsrDscp, _) => "dsr-dscp",
        (F::DsrTunnel, _) => "dsr-tunnel",
        (F::Snat, _) => "snat (a server's own connection)",
        (F::Gateway, _) => "gateway",
        (F::Local, _) => "local (to the appliance's own stack: the L7 engine)",
        (F::LocalOut, _) => "local-out (the appliance's own stack's connection)",
    }
}
