//! `furiwake run`: brings the EAL, the ports and the worker lcores up from a
//! `Config`, runs the control loop on the main (control) lcore until
//! SIGTERM/SIGINT, and takes everything down again in order: workers
//! joined, ports closed (their mbufs returned), rings and pool freed.

mod metrics;

use crate::modules::arp::neighbor::{self as arp, ArpOutcome, NeighborTable};
use crate::modules::lb::build::{self, LinkInfo, Nexthop};
use crate::config::{Config, Interface};
use crate::modules::health::probes::{Health, ProbeLink, Target};
use furiwake_dataplane::conntrack::{self, Timeouts};
use furiwake_dataplane::state::neighbor::Neighbors;
use furiwake_dataplane::state::rcu::{rcu, Publisher};
use furiwake_dataplane::state::snapshot::{Snapshot, MAX_NEXTHOPS, MAX_SERVERS};
use furiwake_dataplane::wire::EthernetAddress;
use furiwake_dataplane::{Burst, DropReason, Worker, WorkerConfig, WorkerCounters};
use furiwake_platform::lcore::{self, LcoreHandle};
use furiwake_platform::{spsc, Consumer, Eal, Mbuf, MbufIo, Mempool, Port, PortConfig, Producer, RxQueue};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// The console's commands, with access to the appliance's state.
#[path = "console/exec.rs"]
mod console_exec;

const PUNT_RING: u32 = 1024;
const HANDOFF_RING: u32 = 4096;
/// Re-ARP a next hop not confirmed for this long; forget it after 3x.
const NEIGHBOR_REFRESH: Duration = Duration::from_secs(60);
const INJECT_RING: u32 = 1024;
const MEMPOOL_CACHE: u32 = 256;
const MBUF_DATA_ROOM: u16 = 2048 + 128; // RTE_MBUF_DEFAULT_BUF_SIZE

/// The EAL arguments for `cfg`: the operator's, plus lcores, devices and a
/// file prefix.
pub fn eal_args(cfg: &Config) -> Vec<String> {
    let p = &cfg.platform;
    let mut args = p.eal_args.clone();
    let mut lcores = vec![p.control_lcore];
    lcores.extend(p.worker_lcores.get_ref());
    let list: Vec<String> = lcores.iter().map(u32::to_string).collect();
    if !args.iter().any(|a| a == "--lcores" || a.starts_with("--lcores=")) {
        args.extend(["-l".into(), list.join(",")]);
    }
    args.extend(["--main-lcore".into(), p.control_lcore.to_string()]);
    if !args.iter().any(|a| a.starts_with("--file-prefix")) {
        args.push("--file-prefix=furiwake".into());
    }
    for i in &cfg.interfaces {
        args.push(if i.is_pci() { "-a" } else { "--vdev" }.into());
        args.push(i.device.get_ref().clone());
    }
    args
}

/// One data interface: its config, its port and what was set up on it.
struct Link {
    cfg: Interface,
    port: Port,
    mac: EthernetAddress,
    /// Addresses answered for in ARP and ICMP echo: the self IP, and the
    /// VIPs and full-NAT local addresses in its subnet.
    owned: Vec<Ipv4Addr>,
    rx_queues: u16,
    /// The control lcore's own TX queue, when the device has one to spare;
    /// otherwise control frames go through worker 0's inject ring.
    control_txq: Option<u16>,
    last_link_up: bool,
}

struct NexthopState {
    hop: Nexthop,
    confirmed: Option<Instant>,
    last_request: Option<Instant>,
}

struct WorkerHandle {
    lcore: Option<LcoreHandle>,
    counters: Arc<WorkerCounters>,
    /// The console's connection-table dumps (`show connections`).
    dump: Arc<furiwake_dataplane::ctl::dump::FlowDump>,
    /// Its loop's busy time (`show workers`).
    loops: Arc<crate::runtime::stats::LoopStats>,
}

#[derive(Debug, Default)]
struct ControlCounters {
    punted_rx: u64,
    arp_replies: u64,
    arp_requests: u64,
    echo_replies: u64,
    arp_other: u64,
    malformed: u64,
    not_handled: u64,
    tx_dropped: u64,
}

pub struct Appliance {
    cfg: Config,
    eal: &'static Eal,
    links: Vec<Link>,
    /// Port id -> index into `links`.
    by_port: Vec<Option<usize>>,
    workers: Vec<WorkerHandle>,
    punts: Vec<Consumer<Mbuf>>,
    inject: Option<Producer<Mbuf>>,
    stop_workers: Arc<AtomicBool>,
    neighbors: NeighborTable,
    /// Next hops kept resolved for the workers, by neighbour slot.
    nexthops: Vec<NexthopState>,
    slots: Arc<Neighbors>,
    publisher: Option<Publisher<Snapshot>>,
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
    /// Per server address: how many times it has gone down (persistence
    /// records made before are stale).
    node_epochs: std::collections::HashMap<u32, u32>,
    /// Bytes per second per server, for `loads`.
    rates: crate::modules::lb::loads::Rates,
    control: ControlCounters,
    /// Prometheus text on the management address.
    metrics: Option<metrics::MetricsServer>,
    /// `dpdk-dumpcap` can attach (pdump initialised).
    capture: bool,
    /// The operator console: socket, device, operator states, rates.
    console: console_exec::Console,
    // Last: freed after every port and ring that holds its mbufs.
    pool: Option<Mempool>,
}

/// A state change (server up or down, link, configuration): on the console
/// and in the log at `info`.
fn event(line: &str) {
    log::info!("{line}");
    say(line);
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

impl Appliance {
    /// Initialises DPDK and brings every interface and worker up.
    pub fn start(cfg: Config) -> Result<Self, String> {
        let args = eal_args(&cfg);
        log::info!("EAL arguments: {}", args.join(" "));
        let eal = Eal::init(&args).map_err(|e| format!("DPDK EAL: {e} (arguments: {})", args.join(" ")))?;
        say(&format!("furiwake: {} up, control lcore {}, workers on lcores {:?}", furiwake_platform::version(), eal.main_lcore(), eal.worker_lcores()));

        let n_workers = cfg.platform.worker_lcores.get_ref().len() as u16;
        let pool = Mempool::new("furiwake-mbufs", cfg.platform.mbufs, MEMPOOL_CACHE, MBUF_DATA_ROOM, -1)
            .map_err(|e| format!("packet pool of {} mbufs: {e}", cfg.platform.mbufs))?;

        let mut links: Vec<Link> = Vec::new();
        let mut by_port: Vec<Option<usize>> = Vec::new();
        for iface in &cfg.interfaces {
            let link = Self::bring_up(iface, &cfg, n_workers, &pool)?;
            let id = link.port.id() as usize;
            if by_port.len() <= id {
                by_port.resize(id + 1, None);
            }
            by_port[id] = Some(links.len());
            links.push(link);
        }

        let infos: Vec<LinkInfo> =
            links.iter().map(|l| LinkInfo { port_id: l.port.id(), mac: l.mac, address: l.cfg.address }).collect();
        let built = build::build(&cfg, &infos)?;
        for (l, owned) in links.iter_mut().zip(built.owned.iter().cloned()) {
            l.owned = owned;
        }
        let nexthops = built.nexthops.iter().map(|&hop| NexthopState { hop, confirmed: None, last_request: None }).collect();
        let health = Self::health(&cfg, &links, &built);
        let mut app = Appliance {
            cfg,
            eal,
            links,
            by_port,
            workers: Vec::new(),
            punts: Vec::new(),
            inject: None,
            stop_workers: Arc::new(AtomicBool::new(false)),
            neighbors: NeighborTable::default(),
            nexthops,
            slots: Arc::new(Neighbors::new(MAX_NEXTHOPS)),
            publisher: None,
            base: built.snapshot.clone(),
            // Sized for every slot a configuration change may use.
            loads: Arc::new(furiwake_dataplane::lb::Loads::new(MAX_SERVERS)),
            layout: built.layout.clone(),
            retired_gen: [Vec::new(), Vec::new()],
            config_path: None,
            rates: crate::modules::lb::loads::Rates::default(),
            health,
            node_epochs: std::collections::HashMap::new(),
            control: ControlCounters::default(),
            metrics: None,
            capture: false,
            console: console_exec::Console::new(built.server_pools.clone()),
            pool: Some(pool),
        };
        if let Err(e) = app.launch_workers(app.current_snapshot()) {
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
        app.enable_capture();
        app.announce();
        app.resolve_nexthops(Instant::now());
        app.open_console();
        Ok(app)
    }

    /// pdump, so `dpdk-dumpcap` (a DPDK secondary process) can capture the
    /// ports; secondaries need the primary's memory in hugepages.
    fn enable_capture(&mut self) {
        let prefix = self.eal.args().iter().find_map(|a| a.strip_prefix("--file-prefix=")).map(str::to_string).or_else(|| {
            let args = self.eal.args();
            args.iter().position(|a| a == "--file-prefix").and_then(|i| args.get(i + 1)).cloned()
        });
        if self.eal.no_huge() {
            log::info!("packet capture: off (--no-huge: dpdk-dumpcap needs the appliance on hugepages)");
            return;
        }
        match self.eal.enable_capture() {
            Ok(()) => {
                self.capture = true;
                say(&format!("capture: dpdk-dumpcap --file-prefix {} -i PORT", prefix.unwrap_or_else(|| "furiwake".into())));
            }
            Err(e) => log::warn!("packet capture: {e}"),
        }
    }

    /// The probe engine: one userspace stack per link, one target per
    /// (virtual server, server) whose pool has checks.
    fn health(cfg: &Config, links: &[Link], built: &build::Built) -> Health {
        let probe_links: Vec<ProbeLink> = links
            .iter()
            .map(|l| ProbeLink {
                mac: l.mac.0,
                address: l.cfg.address.addr,
                prefix_len: l.cfg.address.prefix_len,
                gateway: cfg.routes.iter().find(|r| r.prefix.prefix_len == 0 && l.cfg.address.contains(r.via)).map(|r| r.via),
            })
            .collect();
        Health::new(&probe_links, Self::targets(cfg, built), Instant::now())
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
        self.workers.iter().fold(0u64, |a, w| {
            let c = match kind {
                build::SlotKind::Service => w.counters.services.get(slot),
                build::SlotKind::Server => w.counters.servers.get(slot),
            };
            a.wrapping_add(c.map_or(0, |c| c.conns_active.get()))
        })
    }

    /// Runs `new` in place of the running configuration without dropping
    /// a connection (console changes, `config reload`): validated first,
    /// then the snapshot rebuilt on the same slots (`build::Layout`), health
    /// targets carried over, ARP ownership and next hops extended, and
    /// published. What only a restart can change is refused.
    pub(crate) fn apply_config(&mut self, new: Config) -> Result<String, String> {
        restart_needed(&self.cfg, &new)?;
        let infos: Vec<LinkInfo> = self.links.iter().map(|l| LinkInfo { port_id: l.port.id(), mac: l.mac, address: l.cfg.address }).collect();
        let min_seen = self.publisher.as_ref().map_or(u64::MAX, |p| p.min_seen());
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
        let before_owned: Vec<Vec<Ipv4Addr>> = self.links.iter().map(|l| l.owned.clone()).collect();
        for (l, owned) in self.links.iter_mut().zip(built.owned.iter().cloned()) {
            l.owned = owned;
        }
        for hop in built.nexthops.iter().skip(self.nexthops.len()) {
            self.nexthops.push(NexthopState { hop: *hop, confirmed: None, last_request: None });
        }
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
        let generation = self.publisher.as_mut().map_or(0, |p| p.publish(Box::new(snap)));
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
        for li in 0..self.links.len() {
            let (mac, owned) = (self.links[li].mac, self.links[li].owned.clone());
            for ip in owned.into_iter().filter(|ip| before_owned.get(li).is_none_or(|b| !b.contains(ip))) {
                self.send_arp_request(li, mac, ip, ip);
            }
        }
        self.resolve_nexthops(Instant::now());
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
            s.epoch = self.node_epochs.get(&s.ip).copied().unwrap_or(0);
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
        let sum = |i: usize, f: &dyn Fn(&furiwake_dataplane::state::counters::ServiceCounters) -> u64| {
            self.workers.iter().fold(0u64, |a, w| a.wrapping_add(w.counters.servers.get(i).map_or(0, f)))
        };
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
        let active = self.workers.iter().fold(0u64, |a, w| a.wrapping_add(w.counters.servers.get(server).map_or(0, |c| c.conns_active.get())));
        crate::modules::health::probes::cuts_connections(pool.on_down, pool.slow_down, self.health.down_reason(server), active)
    }

    /// Runs the probes; logs state changes and republishes the snapshot.
    fn run_health(&mut self, now: Instant) {
        let changes = self.health.poll(now);
        for li in 0..self.health.links() {
            for frame in self.health.take_tx(li) {
                self.send_frame(li, &frame);
            }
        }
        if changes.is_empty() {
            return;
        }
        for c in &changes {
            if let Some(t) = self.health.target(c.target) {
                if c.up {
                    let rtt = c.rtt.map_or(String::new(), |d| format!(" (rtt {:.1} ms)", d.as_secs_f64() * 1e3));
                    event(&format!("health: server {} (pool {}) up{rtt}", t.addr, t.pool));
                } else {
                    event(&format!("health: server {} (pool {}) down: {}", t.addr, t.pool, c.reason));
                    let epoch = self.node_epochs.entry(u32::from(*t.addr.ip())).or_insert(0);
                    *epoch = epoch.wrapping_add(1);
                }
            }
        }
        let snap = self.current_snapshot();
        if let Some(p) = self.publisher.as_mut() {
            p.publish(Box::new(snap));
        }
    }

    /// Copies `frame` into an mbuf and sends it out of link `li`.
    fn send_frame(&mut self, li: usize, frame: &[u8]) {
        let Some(mut m) = self.pool.as_ref().and_then(Mempool::alloc) else {
            self.control.tx_dropped += 1;
            return;
        };
        if m.set_data(frame) {
            self.send(li, m);
        } else {
            self.control.tx_dropped += 1;
        }
    }

    fn bring_up(iface: &Interface, cfg: &Config, n_workers: u16, pool: &Mempool) -> Result<Link, String> {
        let name = iface.name.get_ref();
        let mut port = Port::by_name(iface.dev_name()).map_err(|e| format!("interface {name}: device {:?}: {e}", iface.device.get_ref()))?;
        let info = port.info().map_err(|e| format!("interface {name}: {e}"))?;
        // af_packet fans the kernel's packets out over every queue pair it
        // opened (`qpairs=`), so all of them must be polled.
        let rx_queues = if info.driver == "net_af_packet" { info.max_rx_queues } else { n_workers.min(info.max_rx_queues) };
        if info.max_tx_queues < n_workers {
            return Err(format!(
                "interface {name}: device {} has {} TX queue(s) but {} workers need one each{}",
                info.driver,
                info.max_tx_queues,
                n_workers,
                if info.driver == "net_af_packet" { " (add qpairs=N to the device)" } else { "" }
            ));
        }
        let tx_queues = (n_workers + 1).min(info.max_tx_queues);
        let control_txq = (tx_queues > n_workers).then_some(n_workers);
        let pc = PortConfig {
            rx_queues,
            tx_queues,
            rx_desc: cfg.platform.rx_descriptors,
            tx_desc: cfg.platform.tx_descriptors,
            promiscuous: true,
        };
        port.configure(&pc, pool).map_err(|e| format!("interface {name}: {e}"))?;
        port.start().map_err(|e| format!("interface {name}: {e}"))?;
        let mac = EthernetAddress(port.mac().map_err(|e| format!("interface {name}: {e}"))?);
        let link = port.link().map_err(|e| format!("interface {name}: {e}"))?;
        say(&format!(
            "port {name}: {} (driver {}, port {}) mac {mac} address {} rxq {rx_queues} txq {tx_queues} control-tx {} link {link}",
            iface.dev_name(),
            info.driver,
            port.id(),
            iface.address,
            control_txq.map_or("via worker 0".to_string(), |q| format!("queue {q}")),
        ));
        let owned = vec![iface.address.addr];
        Ok(Link { cfg: iface.clone(), port, mac, owned, rx_queues, control_txq, last_link_up: link.up })
    }

    fn launch_workers(&mut self, snapshot: Snapshot) -> Result<(), String> {
        let lcores = self.cfg.platform.worker_lcores.get_ref().clone();
        let n = lcores.len();
        let need_inject = self.links.iter().any(|l| l.control_txq.is_none());
        let mut inject_consumer = None;
        if need_inject {
            let (p, c) = spsc::<Mbuf>("fw-inject", INJECT_RING).map_err(|e| format!("inject ring: {e}"))?;
            self.inject = Some(p);
            inject_consumer = Some(c);
        }
        // handoff[a][b]: worker a -> worker b.
        let mut handoff_tx: Vec<Vec<Option<Producer<Mbuf>>>> = (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
        let mut handoff_rx: Vec<Vec<Consumer<Mbuf>>> = (0..n).map(|_| Vec::new()).collect();
        for (a, row) in handoff_tx.iter_mut().enumerate() {
            for (b, slot) in row.iter_mut().enumerate() {
                if a != b {
                    let (p, c) = spsc::<Mbuf>(&format!("fw-ho-{a}-{b}"), HANDOFF_RING).map_err(|e| format!("handoff ring: {e}"))?;
                    *slot = Some(p);
                    handoff_rx[b].push(c);
                }
            }
        }
        let (publisher, mut readers) = rcu(Box::new(snapshot), n);
        self.publisher = Some(publisher);
        let t = &self.cfg.timeouts;
        let timeouts = Timeouts::from_secs(t.tcp_syn, t.tcp_established, t.tcp_fin, t.tcp_time_wait, t.tcp_close, t.udp, t.icmp);
        let idle_sleep = Duration::from_micros(self.cfg.platform.idle_sleep_us as u64);
        let ticks_per_sec = 1000 / conntrack::TICK_MS as u64;
        let tsc_per_tick = (furiwake_platform::tsc_hz() / ticks_per_sec).max(1);
        let start_tsc = furiwake_platform::rdtsc();
        for (w, (&lcore_id, (ho_tx, ho_rx))) in lcores.iter().zip(handoff_tx.into_iter().zip(handoff_rx)).enumerate().rev() {
            let mut rx = Vec::new();
            for l in &self.links {
                for q in 0..l.rx_queues {
                    if q as usize % n == w {
                        rx.push(RxQueue { port: l.port.id(), queue: q });
                    }
                }
            }
            let tx: Vec<(u16, u16)> = self.links.iter().map(|l| (l.port.id(), w as u16)).collect();
            let (punt_p, punt_c) = spsc::<Mbuf>(&format!("fw-punt-{w}"), PUNT_RING).map_err(|e| format!("punt ring: {e}"))?;
            self.punts.push(punt_c);
            let io = MbufIo::new(rx, &tx, punt_p, if w == 0 { inject_consumer.take() } else { None }).with_handoff(ho_tx, ho_rx);
            let reader = readers.pop().ok_or("rcu readers")?;
            let config = WorkerConfig { id: w as u16, workers: n as u16, flows: self.cfg.platform.flows_per_worker, timeouts };
            let dump = Arc::new(furiwake_dataplane::ctl::dump::FlowDump::new());
            let loops = Arc::new(crate::runtime::stats::LoopStats::default());
            let worker = Worker::new(config, reader, Arc::clone(&self.slots)).with_loads(Arc::clone(&self.loads)).with_dump(Arc::clone(&dump));
            let counters = worker.counters();
            let stop = Arc::clone(&self.stop_workers);
            let clock = Clock { start_tsc, tsc_per_tick };
            let loop_stats = Arc::clone(&loops);
            let handle = lcore::launch(lcore_id, move || worker_loop(worker, io, &stop, idle_sleep, clock, &loop_stats))
                .map_err(|e| format!("worker {w} on lcore {lcore_id}: {e}"))?;
            self.workers.push(WorkerHandle { lcore: Some(handle), counters, dump, loops });
        }
        self.workers.reverse();
        self.punts.reverse();
        Ok(())
    }

    /// Gratuitous ARP for every address the box owns, on its link (RFC
    /// 5227 §3), so neighbours learn the VIPs at once.
    fn announce(&mut self) {
        for li in 0..self.links.len() {
            let (mac, owned) = (self.links[li].mac, self.links[li].owned.clone());
            for ip in owned {
                self.send_arp_request(li, mac, ip, ip);
            }
        }
    }

    /// Sends ARP requests for next hops not confirmed recently; forgets
    /// those silent for too long (the workers then drop under
    /// `neighbor-unresolved`).
    fn resolve_nexthops(&mut self, now: Instant) {
        for slot in 0..self.nexthops.len() {
            let nh = &self.nexthops[slot];
            let stale = nh.confirmed.is_none_or(|t| now.duration_since(t) >= NEIGHBOR_REFRESH);
            let asked_recently = nh.last_request.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1));
            if nh.confirmed.is_some_and(|t| now.duration_since(t) >= NEIGHBOR_REFRESH * 3) {
                self.slots.clear(slot as u16);
            }
            if stale && !asked_recently {
                let hop = nh.hop;
                let (mac, ip) = (self.links[hop.link].mac, self.links[hop.link].cfg.address.addr);
                self.nexthops[slot].last_request = Some(now);
                self.send_arp_request(hop.link, mac, ip, hop.ip);
            }
        }
    }

    fn send_arp_request(&mut self, li: usize, mac: EthernetAddress, sender: Ipv4Addr, target: Ipv4Addr) {
        let Some(mut m) = self.pool.as_ref().and_then(Mempool::alloc) else {
            self.control.tx_dropped += 1;
            return;
        };
        match m.append(arp::FRAME_LEN as u16) {
            Some(buf) => {
                arp::write_request(buf, mac, sender, target);
                self.control.arp_requests += 1;
                self.send(li, m);
            }
            None => self.control.tx_dropped += 1,
        }
    }

    /// After ARP taught us `ip`'s MAC on link `li`: fill the workers' slots.
    fn learned(&mut self, li: usize, ip: Ipv4Addr, now: Instant) {
        let Some(n) = self.neighbors.get(ip).copied() else { return };
        for (slot, nh) in self.nexthops.iter_mut().enumerate() {
            if nh.hop.ip == ip && nh.hop.link == li {
                nh.confirmed = Some(now);
                self.slots.set(slot as u16, n.mac);
            }
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
            for i in 0..self.punts.len() {
                if self.punts[i].dequeue_burst(&mut burst) > 0 {
                    busy = true;
                    for m in burst.drain() {
                        self.handle_punted(m);
                    }
                }
            }
            self.run_health(Instant::now());
            self.publish_loads();
            self.serve_metrics();
            self.console_turn(Instant::now());
            if last_link_check.elapsed() >= Duration::from_secs(1) {
                last_link_check = Instant::now();
                self.watch_links();
                self.resolve_nexthops(last_link_check);
                self.collect_retired();
                if let Some(p) = self.publisher.as_mut() {
                    p.reclaim();
                }
            }
            if !busy {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }

    fn handle_punted(&mut self, mut m: Mbuf) {
        self.control.punted_rx += 1;
        let Some(Some(li)) = self.by_port.get(m.port() as usize).copied() else {
            self.control.not_handled += 1;
            return;
        };
        let link = &self.links[li];
        let owns = |a: Ipv4Addr| link.owned.contains(&a);
        let is_arp = furiwake_dataplane::wire::ethernet::parse_l2(m.data())
            .is_ok_and(|l2| l2.ethertype == furiwake_dataplane::wire::EtherType::Arp);
        if !is_arp {
            if crate::modules::arp::icmp::echo_reply(m.data_mut(), owns) {
                self.control.echo_replies += 1;
                self.send(li, m);
            } else {
                // Probe replies (and anything else for the self IP): the
                // probes' IP stack answers or ignores them.
                self.health.on_frame(li, m.data());
            }
            return;
        }
        let is_reply = furiwake_dataplane::wire::ethernet::parse_l2(m.data())
            .ok()
            .and_then(|l2| m.data().get(l2.l3_offset..).and_then(|b| furiwake_dataplane::wire::arp::ArpPacket::new_checked(b).ok()))
            .is_some_and(|a| a.operation() == furiwake_dataplane::wire::arp::ArpOperation::Reply);
        if is_reply {
            // The probes' stack resolves its next hops itself.
            self.health.on_frame(li, m.data());
        }
        let link = &self.links[li];
        let owns = |a: Ipv4Addr| link.owned.contains(&a);
        let now = Instant::now();
        let sender = furiwake_dataplane::wire::ethernet::parse_l2(m.data())
            .ok()
            .and_then(|l2| m.data().get(l2.l3_offset..).and_then(|b| furiwake_dataplane::wire::arp::ArpPacket::new_checked(b).ok()))
            .map(|a| a.source_protocol_addr());
        match arp::handle(m.data_mut(), li, link.mac, owns, &mut self.neighbors, now) {
            ArpOutcome::Reply => {
                self.control.arp_replies += 1;
                self.send(li, m);
            }
            ArpOutcome::Consumed => self.control.arp_other += 1,
            ArpOutcome::Malformed => self.control.malformed += 1,
        }
        if let Some(ip) = sender {
            self.learned(li, ip, now);
        }
    }

    /// Sends a control frame out of link `li`.
    fn send(&mut self, li: usize, mut m: Mbuf) {
        let link = &self.links[li];
        match (link.control_txq, self.inject.as_mut()) {
            (Some(q), _) => {
                let mut b = Burst::new();
                let _ = b.push(m);
                if Port::tx_burst_on(link.port.id(), q, &mut b) == 0 {
                    self.control.tx_dropped += 1;
                }
            }
            (None, Some(inject)) => {
                m.set_port(link.port.id());
                if inject.enqueue(m).is_err() {
                    self.control.tx_dropped += 1;
                }
            }
            (None, None) => self.control.tx_dropped += 1,
        }
    }

    fn watch_links(&mut self) {
        for l in &mut self.links {
            if let Ok(state) = l.port.link() {
                if state.up != l.last_link_up {
                    l.last_link_up = state.up;
                    event(&format!("port {}: link {state}", l.cfg.name.get_ref()));
                }
            }
        }
    }

    /// Per-port link state and counters, per-worker counters with every
    /// drop by name, control-plane counters.
    pub fn report(&self) -> String {
        let mut s = String::from("== furiwake counters ==\n");
        for l in &self.links {
            let link = l.port.link().map(|k| k.to_string()).unwrap_or_else(|e| e.to_string());
            match l.port.stats() {
                Ok(st) => {
                    let _ = writeln!(
                        s,
                        "port {}: link {link}; rx {} pkts {} bytes; tx {} pkts {} bytes; missed {}; rx-errors {}; tx-errors {}; rx-nombuf {}",
                        l.cfg.name.get_ref(),
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
                    let _ = writeln!(s, "port {}: link {link}; stats: {e}", l.cfg.name.get_ref());
                }
            }
        }
        if let Some(p) = &self.publisher {
            let snap = p.current();
            let sum = |f: &dyn Fn(&WorkerCounters) -> u64| self.workers.iter().fold(0u64, |a, w| a.wrapping_add(f(&w.counters)));
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
        for (i, w) in self.workers.iter().enumerate() {
            let c = &w.counters;
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
        let h = self.health.counters;
        let _ = writeln!(s, "health: probes {}; failures {}; state-changes {}", h.probes, h.failures, h.state_changes);
        let c = &self.control;
        let _ = writeln!(
            s,
            "control: punted {}; arp-replies {}; arp-requests {}; echo-replies {}; arp-other {}; malformed {}; not-handled {}; tx-dropped {}; neighbors {}",
            c.punted_rx,
            c.arp_replies,
            c.arp_requests,
            c.echo_replies,
            c.arp_other,
            c.malformed,
            c.not_handled,
            c.tx_dropped,
            self.neighbors.len()
        );
        if let Some(p) = &self.pool {
            let _ = write!(s, "mbufs: {} free, {} in use", p.available(), p.in_use());
        }
        s
    }

    /// Stops workers, prints the final counters, closes ports and frees
    /// rings and the pool, in that order.
    pub fn shutdown(mut self) {
        // The console socket goes first: nobody waits on a stopping box.
        self.console.server = None;
        self.stop_workers.store(true, Ordering::Relaxed);
        for (i, w) in self.workers.iter_mut().enumerate() {
            if let Some(h) = w.lcore.take() {
                let rc = h.join();
                if rc != 0 {
                    log::warn!("worker {i} returned {rc}");
                }
            }
        }
        self.health.shutdown();
        say(&self.report());
        // Rings first (they may hold mbufs), then ports, then the pool.
        self.punts.clear();
        self.inject = None;
        self.publisher = None;
        for l in &mut self.links {
            if let Err(e) = l.port.close() {
                log::warn!("port {}: {e}", l.cfg.name.get_ref());
            }
        }
        self.links.clear();
        self.pool = None;
        if self.capture {
            self.eal.disable_capture();
        }
        self.eal.cleanup();
        say("furiwake: stopped");
    }
}

/// TSC to flow-table ticks.
#[derive(Clone, Copy)]
struct Clock {
    start_tsc: u64,
    tsc_per_tick: u64,
}

/// The poll loop of one worker lcore (DPDK l3fwd's rhythm: rx burst,
/// process, flush; back off only when idle and configured to).
fn worker_loop(
    mut worker: Worker,
    mut io: MbufIo,
    stop: &AtomicBool,
    idle_sleep: Duration,
    clock: Clock,
    loops: &crate::runtime::stats::LoopStats,
) -> i32 {
    let mut idle: u32 = 0;
    let mut last = furiwake_platform::rdtsc();
    while !stop.load(Ordering::Relaxed) {
        let t0 = furiwake_platform::rdtsc();
        let now = (t0.wrapping_sub(clock.start_tsc) / clock.tsc_per_tick) as u32;
        let received = worker.poll(&mut io, now);
        // Busy ratio for `show workers`: time in polls that found packets
        // over all loop time (sleeps included). Two TSC reads a loop.
        let t1 = furiwake_platform::rdtsc();
        if received > 0 {
            loops.busy_tsc.add(t1.wrapping_sub(t0));
        }
        loops.total_tsc.add(t1.wrapping_sub(last));
        last = t1;
        if received == 0 {
            idle = idle.saturating_add(1);
            if !idle_sleep.is_zero() && idle >= 64 {
                std::thread::sleep(idle_sleep);
            }
        } else {
            idle = 0;
        }
    }
    0
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
        let c = Config::parse("c", &console_exec::render_config(&a)).unwrap();
        for other in [&b, &c] {
            assert_eq!(restart_needed(&a, other), Ok(()));
            assert_eq!(a.health_checks, other.health_checks, "same checks at other offsets");
        }
        let mut d = b.clone();
        d.platform.idle_sleep_us += 1;
        assert!(restart_needed(&a, &d).unwrap_err().contains("[platform]"));
    }
}
