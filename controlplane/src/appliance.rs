//! `furiwake run`: brings the EAL, the ports and the worker lcores up from a
//! `Config`, runs the control loop on the main (control) lcore until
//! SIGTERM/SIGINT, and takes everything down again in order: workers
//! joined, ports closed (their mbufs returned), rings and pool freed.

mod metrics;

use crate::config::Config;
use crate::modules::arp::Arp;
use crate::modules::health::{Health, Target};
use crate::modules::lb::build::{self, LinkInfo};
use crate::out::say;
use crate::runtime::Runtime;
use furiwake_dataplane::state::snapshot::{Snapshot, MAX_SERVERS};
use furiwake_dataplane::Burst;
use furiwake_dataplane::WorkerCounters;
use furiwake_platform::Mbuf;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// The console's commands, with access to the appliance's state.
#[path = "console/exec.rs"]
mod console_exec;

pub struct Appliance {
    cfg: Config,
    arp: Arp,
    /// The snapshot as built from the config; published copies differ in
    /// the servers' `enabled` flags (health).
    base: Snapshot,
    health: Health,
    loads: Arc<furiwake_dataplane::lb::Loads>,
    /// Where each virtual server and server sits in the snapshot.
    layout: build::Layout,
    /// Per service and server slot: the snapshot generation that retired
    /// it; it is freed only once every worker has moved past it.
    retired_gen: [Vec<u64>; 2],
    /// The file `config reload` reads and `config save` writes.
    config_path: Option<std::path::PathBuf>,
    /// Bytes per second per server, for `loads`.
    rates: crate::modules::lb::loads::Rates,
    /// Prometheus text on the management address.
    metrics: Option<metrics::MetricsServer>,
    /// The operator console: socket, device, operator states, rates.
    console: console_exec::Console,
    // Last: its pool is freed after everything that holds mbufs.
    runtime: Runtime,
}

fn link_infos(rt: &Runtime) -> Vec<LinkInfo> {
    rt.links().iter().map(|l| LinkInfo { port_id: l.port_id(), mac: l.mac(), address: l.address() }).collect()
}

impl Appliance {
    /// Initialises DPDK and brings every interface and worker up.
    pub fn start(cfg: Config) -> Result<Self, String> {
        let runtime = Runtime::start(&cfg)?;
        let built = build::build(&cfg, &link_infos(&runtime))?;
        let health = Health::new(&runtime, &cfg.routes, Self::targets(&cfg, &built), Instant::now());
        let mut app = Appliance {
            arp: Arp::new(built.owned.clone(), &built.nexthops),
            cfg,
            base: built.snapshot.clone(),
            // Sized for every slot a configuration change may use.
            loads: Arc::new(furiwake_dataplane::lb::Loads::new(MAX_SERVERS)),
            layout: built.layout.clone(),
            retired_gen: [Vec::new(), Vec::new()],
            config_path: None,
            rates: crate::modules::lb::loads::Rates::default(),
            health,
            metrics: None,
            console: console_exec::Console::new(built.server_pools.clone()),
            runtime,
        };
        let snapshot = app.current_snapshot();
        if let Err(e) = app.runtime.launch_workers(&app.cfg, snapshot, app.arp.slots(), &app.loads) {
            app.shutdown();
            return Err(e);
        }
        for s in &app.cfg.virtual_servers {
            say(&format!(
                "virtual-server {}: {} {:?} {:?} pool {}",
                s.name.get_ref(),
                s.address,
                s.protocol,
                s.forwarding.get_ref(),
                s.pool.get_ref()
            ));
        }
        if let Some(addr) = app.cfg.management.listen {
            match metrics::MetricsServer::bind(addr) {
                Ok(m) => {
                    say(&format!("metrics: http://{}/metrics", m.local_addr().unwrap_or(addr)));
                    app.metrics = Some(m);
                }
                Err(e) => {
                    app.shutdown();
                    return Err(e);
                }
            }
        }
        app.runtime.enable_capture();
        app.arp.announce(&mut app.runtime);
        app.arp.resolve_nexthops(&mut app.runtime, Instant::now());
        app.open_console();
        Ok(app)
    }

    /// One health target per live server whose pool has checks.
    fn targets(cfg: &Config, built: &build::Built) -> Vec<Target> {
        let mut targets = Vec::new();
        for (si, rs) in built.snapshot.servers.iter().enumerate() {
            let Some(pool) = built.server_pools.get(si).and_then(|p| cfg.pools.get(*p)) else { continue };
            let checks: Vec<_> =
                pool.check_names().filter_map(|n| cfg.health_checks.iter().find(|h| h.name.get_ref() == n.get_ref())).cloned().collect();
            if checks.is_empty() {
                continue;
            }
            let link = built.nexthops.get(rs.nexthop as usize).map_or(0, |n| n.link);
            targets.push(Target {
                server: si,
                pool: pool.name.get_ref().clone(),
                addr: std::net::SocketAddrV4::new(Ipv4Addr::from(rs.ip), rs.port),
                link,
                checks,
            });
        }
        targets
    }

    /// Sums a per-slot gauge over the workers.
    fn active(&self, kind: build::SlotKind, slot: usize) -> u64 {
        match kind {
            build::SlotKind::Service => self.runtime.workers().service_active(slot),
            build::SlotKind::Server => self.runtime.workers().server_active(slot),
        }
    }

    /// Runs `new` in place of the running configuration without dropping
    /// a connection (console changes, `config reload`): validated first,
    /// then the snapshot rebuilt on the same slots (`build::Layout`), health
    /// targets carried over, ARP ownership and next hops extended, and
    /// published. What only a restart can change is refused.
    pub(crate) fn apply_config(&mut self, new: Config) -> Result<String, String> {
        restart_needed(&self.cfg, &new)?;
        let infos = link_infos(&self.runtime);
        let min_seen = self.runtime.workers().min_seen();
        let busy = |kind: build::SlotKind, slot: usize| self.active(kind, slot) > 0 || self.retired_gen[kind as usize].get(slot).is_some_and(|g| *g > min_seen);
        let built = build::rebuild(&new, &infos, &self.layout, &self.base, &busy)?;
        // Open connections depend on their virtual server's forwarding and
        // local addresses (where replies come back), and on its persistence
        // key (which worker owns them, `worker::owner`; which record they
        // reference). Those change only while it has no connection.
        for (i, (old, new)) in self.base.services.iter().zip(built.snapshot.services.iter()).enumerate() {
            let live = |l: &build::Layout| l.services.get(i).is_some_and(build::Slot::is_live);
            let key = |v: &furiwake_dataplane::state::snapshot::VirtualService| {
                (v.forwarding, v.local_addrs.clone(), v.persistence.map(|p| (p.kind, p.netmask, p.group)))
            };
            if live(&self.layout) && live(&built.layout) && key(old) != key(new) && self.active(build::SlotKind::Service, i) > 0 {
                return Err(format!(
                    "virtual_server {:?}: its forwarding, local addresses or persistence (kind, netmask, group) cannot change while it has connections; nothing changed (wait for them to end, or restart)",
                    old.name
                ));
            }
        }
        let before = (self.layout.services.iter().filter(|s| s.is_live()).count(), self.layout.servers.iter().filter(|s| s.is_live()).count());
        let before_owned = self.arp.reconfigure(built.owned.clone(), &built.nexthops);
        self.health.retarget(Self::targets(&new, &built), Instant::now());
        let old_pools: Vec<String> = self.cfg.pools.iter().map(|p| p.name.get_ref().clone()).collect();
        let new_pools: Vec<String> = new.pools.iter().map(|p| p.name.get_ref().clone()).collect();
        self.console.admin.remap(built.server_pools.clone(), &old_pools, &new_pools);
        if std::env::var_os("RUST_LOG").is_none() {
            log::set_max_level(new.logging.level.filter());
        }
        self.cfg = new;
        self.base = built.snapshot;
        let old_layout = std::mem::replace(&mut self.layout, built.layout);
        let snap = self.current_snapshot();
        let generation = self.runtime.workers_mut().publish(snap);
        for (kind, now, before) in [
            (build::SlotKind::Service, self.layout.services.iter().map(build::Slot::is_retired).collect::<Vec<_>>(), old_layout.services.iter().map(build::Slot::is_retired).collect::<Vec<_>>()),
            (build::SlotKind::Server, self.layout.servers.iter().map(build::Slot::is_retired).collect(), old_layout.servers.iter().map(build::Slot::is_retired).collect()),
        ] {
            let gens = &mut self.retired_gen[kind as usize];
            gens.resize(now.len(), 0);
            for (i, r) in now.iter().enumerate() {
                if *r && !before.get(i).copied().unwrap_or(false) {
                    gens[i] = generation;
                }
            }
        }
        // Gratuitous ARP for the addresses this change added.
        self.arp.announce_added(&mut self.runtime, &before_owned);
        self.arp.resolve_nexthops(&mut self.runtime, Instant::now());
        let retired_v = self.layout.services.iter().filter(|s| s.is_retired()).count();
        let retired_s = self.layout.servers.iter().filter(|s| s.is_retired()).count();
        Ok(format!(
            "{} virtual servers (was {}), {} servers (was {}); removed ones with open connections: {retired_v} virtual servers, {retired_s} servers",
            self.layout.services.iter().filter(|s| s.is_live()).count(),
            before.0,
            self.layout.servers.iter().filter(|s| s.is_live()).count(),
            before.1
        ))
    }

    /// Frees the slots of removed virtual servers and servers whose last
    /// connection has ended (once a second).
    fn collect_retired(&mut self) {
        let any = self.layout.services.iter().enumerate().any(|(i, s)| s.is_retired() && self.active(build::SlotKind::Service, i) == 0)
            || self.layout.servers.iter().enumerate().any(|(i, s)| s.is_retired() && self.active(build::SlotKind::Server, i) == 0);
        if any {
            if let Err(e) = self.apply_config(self.cfg.clone()) {
                log::warn!("freeing removed servers: {e}");
            }
        }
    }

    /// Names the configuration file (`config reload`, `config save`).
    pub fn set_config_path(&mut self, path: &std::path::Path) {
        self.config_path = Some(path.to_path_buf());
    }

    /// The snapshot index of the live virtual server `name`.
    pub(crate) fn vs_slot(&self, name: &str) -> Option<usize> {
        self.base.services.iter().position(|v| !v.retired && v.name == name)
    }

    /// The base snapshot with each server enabled when its weight is
    /// positive and its health checks pass.
    fn current_snapshot(&self) -> Snapshot {
        let mut snap = self.base.clone();
        for (i, s) in snap.servers.iter_mut().enumerate() {
            // Removed (retired or free): no new connection, nothing cut.
            if !self.layout.servers.get(i).is_some_and(build::Slot::is_live) {
                s.enabled = false;
                s.sticky_only = false;
                s.reset = false;
                continue;
            }
            let admin = self.console.admin.of_server(i, std::net::SocketAddrV4::new(Ipv4Addr::from(s.ip), s.port));
            s.enabled = crate::modules::lb::admin::takes_new(s.weight, self.health.is_up(i), admin);
            s.sticky_only = admin == crate::modules::lb::admin::AdminState::Draining && s.weight > 0 && self.health.is_up(i);
            s.reset = !self.health.is_up(i) && self.cuts_connections(i, s.vs as usize);
            s.epoch = self.health.epoch(s.ip);
        }
        // Hash tables are rebuilt over the servers that can take
        // connections (Maglev's minimal disruption keeps the others' flows).
        for vs in &mut snap.services {
            if let furiwake_dataplane::lb::Schedule::Hash { key, .. } = vs.schedule {
                let weights: Vec<u32> =
                    vs.members.iter().map(|g| snap.servers.get(*g as usize).map_or(0, |s| if s.enabled { s.weight } else { 0 })).collect();
                vs.schedule = furiwake_dataplane::lb::Schedule::hashed(key, &weights);
            }
        }
        snap
    }

    /// Publishes what the load-aware schedulers read, per server: active
    /// connections summed over workers and the probes' smoothed RTT on
    /// every turn, bytes per second every `loads::SAMPLE`.
    fn publish_loads(&mut self) {
        let n = self.base.servers.len();
        let workers = self.runtime.workers();
        let sum = |i: usize, f: &dyn Fn(&furiwake_dataplane::state::counters::ServiceCounters) -> u64| workers.sum(|c| c.servers.get(i).map_or(0, f));
        for i in 0..n {
            self.loads.set(i, sum(i, &|c| c.conns_active.get()));
        }
        for (i, rtt) in self.health.rtts() {
            self.loads.set_rtt_us(i, rtt.map(|us| us.round() as u64));
        }
        self.rates.sample(Instant::now(), n, |i| sum(i, &|c| c.in_bytes.get().wrapping_add(c.out_bytes.get())), &self.loads);
    }

    /// A down server's connections are cut with `on_down = "reset"`,
    /// unless the pool says `slow_down` and the server only timed out while
    /// it still has connections: overloaded, not dead (seed 004).
    fn cuts_connections(&self, server: usize, vs: usize) -> bool {
        let name = self.base.services.get(vs).filter(|v| !v.retired).map(|v| v.name.as_str());
        let Some(pool) = self
            .cfg
            .virtual_servers
            .iter()
            .find(|v| Some(v.name.get_ref().as_str()) == name)
            .and_then(|v| self.cfg.pools.iter().find(|p| p.name.get_ref() == v.pool.get_ref()))
        else {
            return false;
        };
        let active = self.runtime.workers().server_active(server);
        crate::modules::health::cuts_connections(pool.on_down, pool.slow_down, self.health.down_reason(server), active)
    }

    /// Runs the probes; republishes the snapshot when a server changed state.
    fn run_health(&mut self, now: Instant) {
        if self.health.step(now, &mut self.runtime) {
            let snap = self.current_snapshot();
            self.runtime.workers_mut().publish(snap);
        }
    }

    /// Runs the control loop until `stop` is set; prints the counters when
    /// `dump` is set (and clears it).
    pub fn run(&mut self, stop: &AtomicBool, dump: &AtomicBool) {
        say("furiwake: ready");
        let mut last_link_check = Instant::now();
        let mut burst = Burst::new();
        while !stop.load(Ordering::Relaxed) {
            if dump.swap(false, Ordering::Relaxed) {
                say(&self.report());
            }
            let mut busy = false;
            for i in 0..self.runtime.punt_rings() {
                if self.runtime.dequeue_punted(i, &mut burst) > 0 {
                    busy = true;
                    for m in burst.drain() {
                        self.on_punted(m);
                    }
                }
            }
            self.run_health(Instant::now());
            self.publish_loads();
            self.serve_metrics();
            self.console_turn(Instant::now());
            if last_link_check.elapsed() >= Duration::from_secs(1) {
                last_link_check = Instant::now();
                self.runtime.watch_links();
                self.arp.resolve_nexthops(&mut self.runtime, last_link_check);
                self.collect_retired();
                self.runtime.workers_mut().reclaim();
            }
            if !busy {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }

    /// A frame a worker punted: ARP and ICMP echo for the ARP module,
    /// what the probes wait for to health.
    fn on_punted(&mut self, m: Mbuf) {
        let Some(li) = self.runtime.punted_link(&m) else { return };
        let health = &mut self.health;
        self.arp.on_punted(li, m, &mut self.runtime, &mut |frame| health.on_frame(li, frame));
    }

    /// Per-port link state and counters, per-worker counters with every
    /// drop by name, control-plane counters.
    pub fn report(&self) -> String {
        let mut s = String::from("== furiwake counters ==\n");
        self.runtime.report_ports(&mut s);
        if let Some(snap) = self.runtime.workers().published() {
            let workers = self.runtime.workers();
            let sum = |f: &dyn Fn(&WorkerCounters) -> u64| workers.sum(f);
            for (vi, vs) in snap.services.iter().enumerate() {
                // Free slots are nobody's.
                if !self.layout.services.get(vi).is_some_and(|s| s.is_live() || s.is_retired()) {
                    continue;
                }
                let line = |c: &dyn Fn(&WorkerCounters) -> Option<&furiwake_dataplane::state::counters::ServiceCounters>| {
                    let g = |f: &dyn Fn(&furiwake_dataplane::state::counters::ServiceCounters) -> u64| sum(&|w| c(w).map_or(0, f));
                    format!(
                        "conns-active {}; conns-new {}; in-pkts {}; in-bytes {}; out-pkts {}; out-bytes {}",
                        g(&|x| x.conns_active.get()),
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
                        let addr = std::net::SocketAddrV4::new(Ipv4Addr::from(rs.ip), rs.port);
                        let admin = self.console.admin.of_server(si, addr);
                        let state = if !admin.accepts_new() {
                            admin.name()
                        } else if !rs.enabled && rs.weight == 0 {
                            "disabled"
                        } else if self.health.is_up(si) {
                            "up"
                        } else {
                            "down"
                        };
                        let rtt = self.health.rtt_us(si).map_or(String::new(), |r| format!("rtt-us {r:.0}; "));
                        let bw = self.loads.bytes_per_s(si);
                        let _ = writeln!(s, "  server {addr}: state {state}; {rtt}bytes-per-s {bw}; {}", line(&|w| w.servers.get(si)));
                    }
                }
                // Removed servers of this virtual server with connections
                // still open.
                for (si, rs) in snap.servers.iter().enumerate() {
                    if rs.vs as usize == vi && self.layout.servers.get(si).is_some_and(build::Slot::is_retired) {
                        let addr = std::net::SocketAddrV4::new(Ipv4Addr::from(rs.ip), rs.port);
                        let _ = writeln!(s, "  server {addr}: state removed; {}", line(&|w| w.servers.get(si)));
                    }
                }
            }
        }
        self.runtime.report_workers(&mut s);
        self.health.report(&mut s);
        self.arp.report(&mut s, self.runtime.punt_counters());
        self.runtime.report_mbufs(&mut s);
        s
    }

    /// Stops workers, prints the final counters, closes ports and frees
    /// rings and the pool, in that order.
    pub fn shutdown(mut self) {
        // The console socket goes first: nobody waits on a stopping box.
        self.console.server = None;
        self.runtime.stop_workers();
        self.health.shutdown();
        say(&self.report());
        self.runtime.release();
        say("furiwake: stopped");
    }
}

/// What a running appliance cannot change: ports, lcores and memory
/// (`[platform]`, `[[interface]]`), the workers' timeouts, the management
/// and console sockets. Returns which, for the operator.
fn restart_needed(old: &Config, new: &Config) -> Result<(), String> {
    let mut differs = Vec::new();
    if old.platform != new.platform {
        differs.push("[platform]");
    }
    let ifaces = |c: &Config| c.interfaces.iter().map(|i| (i.name.get_ref().clone(), i.device.get_ref().clone(), i.address.to_string())).collect::<Vec<_>>();
    if ifaces(old) != ifaces(new) {
        differs.push("[[interface]]");
    }
    if old.timeouts != new.timeouts {
        differs.push("[timeouts]");
    }
    if old.management.listen != new.management.listen {
        differs.push("[management]");
    }
    if old.console != new.console {
        differs.push("[console]");
    }
    if differs.is_empty() {
        Ok(())
    } else {
        Err(format!("{} changed: these take effect at restart; nothing was changed", differs.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration is compared by value: the same file with other
    /// byte offsets (a comment on top, or rendered by the console) needs no
    /// restart and keeps its health checks.
    #[test]
    fn the_same_config_at_other_offsets_needs_no_restart() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/shop-persistence.toml");
        let a = Config::load(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let b = Config::parse("b", &format!("# moved down\n# by two comment lines\n{text}")).unwrap();
        let c = Config::parse("c", &crate::modules::text::render_config(&a)).unwrap();
        for other in [&b, &c] {
            assert_eq!(restart_needed(&a, other), Ok(()));
            assert_eq!(a.health_checks, other.health_checks, "same checks at other offsets");
        }
        let mut d = b.clone();
        d.platform.idle_sleep_us += 1;
        assert!(restart_needed(&a, &d).unwrap_err().contains("[platform]"));
    }
}
