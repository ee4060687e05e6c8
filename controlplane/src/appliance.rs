//! `furiwake run`, the composition root: brings the runtime (EAL, ports,
//! workers) and the modules up from a `Config`, runs the control loop on
//! the main (control) lcore until SIGTERM/SIGINT, and takes everything
//! down again in order: console closed, workers joined, final report,
//! ports closed (their mbufs returned), rings and pool freed.
//!
//! It owns the modules and wires them; what each does is theirs
//! (`modules`), and what they run on is the runtime's (`runtime`).

use crate::config::Config;
use crate::modules::arp::Arp;
use crate::modules::console::{Console, Modules};
use crate::modules::health::Health;
use crate::modules::host::Host;
use crate::modules::l7::L7;
use crate::modules::lb::Lb;
use crate::modules::metrics::{self, MetricsServer};
use crate::modules::sync::wire::LearnedRecord;
use crate::modules::sync::{self, Sync};
use crate::modules::vrrp::Vrrp;
use crate::out::say;
use crate::runtime::Runtime;
use crate::service::notify::Notifier;
use furiwake_dataplane::Burst;
use furiwake_platform::Mbuf;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use crate::runtime::eal_args;

pub struct Appliance {
    /// The operator console: socket, device, rates, run-time changes.
    console: Console,
    /// Prometheus text on the management address.
    metrics: Option<MetricsServer>,
    lb: Lb,
    health: Health,
    vrrp: Vrrp,
    /// Connection-state sync with the HA peer (`[sync]`).
    sync: Option<Sync>,
    arp: Arp,
    /// The exception path's kernel side and the L7 engine on it, when an
    /// `http` virtual server needs them.
    host: Option<Host>,
    l7: Option<L7>,
    /// The snapshot generation they last followed.
    followed: u64,
    // Last: its pool is freed after everything that holds mbufs.
    runtime: Runtime,
}

impl Appliance {
    /// Initialises DPDK and brings every interface, module and worker up.
    pub fn start(cfg: Config) -> Result<Self, String> {
        let runtime = Runtime::start(&cfg)?;
        let (lb, initial) = Lb::new(cfg, &runtime)?;
        let mut arp = Arp::new(initial.owned, &initial.nexthops).with_nd(&runtime);
        arp.nd.set_extra(initial.owned6);
        let (routes, routes6): (Vec<_>, Vec<_>) = (lb.config().routes4().copied().collect(), lb.config().routes6().copied().collect());
        let health = Health::new(&runtime, (&routes, &routes6), initial.targets, arp.slots().clone(), Instant::now());
        // Every VRRP address starts as the peer's: a box owns none until
        // its instance becomes master.
        let vrrp = Vrrp::new(lb.config(), &runtime);
        arp.set_vrrp(vrrp.floating(&runtime), vrrp.standby());
        let mut lb = lb;
        lb.init_standby(vrrp.standby());
        let mut app = Appliance { console: Console::new(), metrics: None, lb, health, vrrp, sync: None, arp, host: None, l7: None, followed: 0, runtime };
        let snapshot = app.lb.current_snapshot(&app.health, &app.runtime);
        let setup = sync::setup(app.lb.config());
        if let Err(e) = app.runtime.launch_workers(app.lb.config(), snapshot, app.arp.slots(), app.lb.loads(), setup) {
            app.shutdown();
            return Err(e);
        }
        if let Err(e) = app.start_l7() {
            app.shutdown();
            return Err(e);
        }
        app.sync = match Sync::new(app.lb.config(), &mut app.runtime) {
            Ok(s) => s,
            Err(e) => {
                app.shutdown();
                return Err(e);
            }
        };
        for s in &app.lb.config().virtual_servers {
            say(&format!(
                "virtual-server {}: {} {:?} {:?} pool {}",
                s.name.get_ref(),
                s.address,
                s.protocol,
                s.forwarding.get_ref(),
                s.pool.get_ref()
            ));
        }
        if let Some(addr) = app.lb.config().management.listen.as_ref().map(|l| *l.get_ref()) {
            match MetricsServer::bind(addr) {
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
        app.console.open(&app.lb.config().console);
        Ok(app)
    }

    /// The exception path's kernel side and the L7 engine, when the
    /// runtime made a host link.
    fn start_l7(&mut self) -> Result<(), String> {
        let Some(host) = Host::start(&self.runtime)? else { return Ok(()) };
        self.l7 = Some(L7::start(self.lb.config(), host.netns()?)?);
        self.host = Some(host);
        self.follow();
        Ok(())
    }

    /// The kernel side's addresses and the engine follow each newly
    /// published snapshot.
    fn follow(&mut self) {
        let g = self.runtime.workers().generation();
        if g == self.followed {
            return;
        }
        self.followed = g;
        let Some(snap) = self.runtime.workers().published() else { return };
        if let Some(h) = self.host.as_mut() {
            h.sync(snap);
        }
        if let Some(l) = self.l7.as_ref() {
            l.update(self.lb.config(), snap);
        }
    }

    /// The L7 engine's learned persistence records to the HA peer (all
    /// of them when it starts), and the peer's into the engine.
    fn swap_learned(&mut self) {
        let (Some(s), Some(l)) = (self.sync.as_mut(), self.l7.as_ref()) else { return };
        let out = if s.wants_all_learned() { l.all_learned() } else { l.take_learned() };
        if !out.is_empty() {
            let records: Vec<_> = out.into_iter().map(|(group, value, server, timeout_s)| LearnedRecord { group, value, server, timeout_s }).collect();
            s.send_learned(&mut self.runtime, &mut self.arp, &records);
        }
        l.install(s.take_learned().into_iter().map(|r| (r.group, r.value, r.server, r.timeout_s)));
    }

    /// Names the configuration file (`config reload`, `config save`), the
    /// last good one they keep, and why the box runs on that one instead
    /// (the console's banner says so); `text` is what it started from,
    /// kept as the last good one once the appliance serves (`tell_ready`).
    pub fn set_config_path(&mut self, path: &Path, last_good: Option<&Path>, fallback: Option<&str>, text: &str) {
        self.console.set_config_path(path, last_good, fallback, text);
    }

    /// The appliance serves: once every port's link is up, or after
    /// `LINK_WAIT` with the ports still down named, so a cable out does not
    /// keep the service from starting. Then systemd is told (`READY=1`)
    /// and the configuration becomes the last good one. Links are looked
    /// at every 100 ms until then.
    fn tell_ready(&mut self, notify: &mut Notifier, since: Instant, last_look: &mut Instant) -> bool {
        const LINK_WAIT: Duration = Duration::from_secs(10);
        if last_look.elapsed() < Duration::from_millis(100) {
            return false;
        }
        *last_look = Instant::now();
        self.runtime.watch_links();
        let down: Vec<&str> = self.runtime.links().iter().filter(|l| !l.is_up()).map(|l| l.name().as_str()).collect();
        if !down.is_empty() && since.elapsed() < LINK_WAIT {
            return false;
        }
        let ports = self.runtime.links().len();
        let status = if down.is_empty() { format!("serving: {ports} ports up") } else { format!("serving: link down on {}", down.join(", ")) };
        notify.ready(&status);
        self.console.started_well();
        true
    }

    /// Runs the control loop until `stop` is set; prints the counters when
    /// `dump` is set (and clears it). It alone feeds systemd's watchdog.
    pub fn run(&mut self, stop: &AtomicBool, dump: &AtomicBool, notify: &mut Notifier) {
        say("furiwake: ready");
        let started = Instant::now();
        let mut told = false;
        let mut last_look = started - Duration::from_secs(1);
        let mut last_link_check = Instant::now();
        let mut last_bond_check = Instant::now();
        let mut burst = Burst::new();
        let idle = Duration::from_micros(u64::from(*self.lb.config().platform.control_idle_sleep_us.get_ref()));
        while !stop.load(Ordering::Relaxed) {
            if !told {
                told = self.tell_ready(notify, started, &mut last_look);
            }
            notify.turn(Instant::now());
            if dump.swap(false, Ordering::Relaxed) {
                say(&self.report());
            }
            let (busy, horizon) = self.drain_punted(&mut burst);
            if self.health.step(Instant::now(), horizon, &mut self.runtime) {
                self.lb.republish(&mut self.runtime, &self.health);
            }
            self.lb.step_tables(&mut self.runtime, &self.health);
            // Sync first: what the peer sent is in the installs rings
            // before VRRP may take over (README, "Takeover ordering").
            let settled = match self.sync.as_mut() {
                Some(s) => {
                    // Without VRRP the box forwards all the time: it serves.
                    let serving = self.vrrp.is_empty() || self.vrrp.instances().iter().any(|i| i.is_master());
                    s.step(&mut self.runtime, &mut self.arp, self.lb.config(), serving);
                    self.vrrp.hold_preempt(s.holds_preempt());
                    s.installs_pending() == 0
                }
                None => true,
            };
            self.swap_learned();
            self.vrrp.step(&mut self.runtime, &mut self.arp, &mut self.lb, &self.health, settled);
            self.lb.publish_loads(&self.runtime, &mut self.health);
            self.follow();
            self.arp.resolve_wanted(&mut self.runtime, Instant::now());
            self.arp.step(&mut self.runtime);
            if let Some(m) = self.metrics.as_mut() {
                m.turn(&|| metrics_text(&self.runtime, &self.lb, &self.health, &self.vrrp, self.sync.as_ref(), self.l7.as_ref()));
            }
            let mut modules = Modules {
                runtime: &mut self.runtime,
                arp: &mut self.arp,
                health: &mut self.health,
                vrrp: &mut self.vrrp,
                sync: self.sync.as_ref(),
                l7: self.l7.as_ref(),
                lb: &mut self.lb,
            };
            self.console.turn(Instant::now(), &mut modules);
            // Bond members every 100 ms (as Linux bonding's miimon=100): a
            // bond that moved announces its addresses from the new member,
            // so the switch learns where the box is now.
            if last_bond_check.elapsed() >= Duration::from_millis(100) {
                last_bond_check = Instant::now();
                if !self.runtime.watch_bonds().is_empty() {
                    self.arp.announce(&mut self.runtime);
                }
            }
            if last_link_check.elapsed() >= Duration::from_secs(1) {
                last_link_check = Instant::now();
                self.runtime.watch_links();
                self.arp.resolve_nexthops(&mut self.runtime, last_link_check);
                self.lb.collect_retired(&mut self.runtime, &mut self.arp, &mut self.health);
                self.runtime.workers_mut().reclaim();
            }
            if !busy && !self.health.busy(Instant::now()) && !idle.is_zero() {
                std::thread::sleep(idle);
            }
        }
    }

    /// The workers' punt rings: the protected classes' (ARP, VRRP, HA)
    /// first, until empty or `PROTECTED_BURSTS` bursts each, then up to
    /// `OTHER_BURSTS` bursts of each other ring, so a flood of probes,
    /// ICMP or strangers delays no advert (review S2), and the answers to
    /// 10,000 probes a second (about as many frames) do not queue behind
    /// each other for turns. True when anything came; and while a ring of
    /// the other classes (where probe answers come) may hold more, the
    /// earliest of those rings' last stamps: answers received after it
    /// may not all be in yet.
    fn drain_punted(&mut self, burst: &mut Burst<Mbuf>) -> (bool, Option<Instant>) {
        const PROTECTED_BURSTS: usize = 8;
        const OTHER_BURSTS: usize = 4;
        let mut busy = false;
        for i in 0..self.runtime.punt_rings() {
            for _ in 0..PROTECTED_BURSTS {
                if self.runtime.dequeue_protected(i, burst) == 0 {
                    break;
                }
                busy = true;
                for m in burst.drain() {
                    self.on_punted(m);
                }
            }
        }
        let mut horizon: Option<Instant> = None;
        for i in 0..self.runtime.punt_rings() {
            let mut last = None;
            for b in 0..OTHER_BURSTS {
                let n = self.runtime.dequeue_punted(i, burst);
                if n == 0 {
                    break;
                }
                busy = true;
                for m in burst.drain() {
                    last = Some(self.on_punted(m));
                }
                if b + 1 == OTHER_BURSTS && n == furiwake_dataplane::io::BURST_SIZE {
                    horizon = horizon.min(last).or(last);
                }
            }
        }
        (busy, horizon)
    }

    /// A frame a worker punted: ARP and ICMP echo to the ARP module, what
    /// the probes wait for to health.
    /// Returns when the worker received it.
    fn on_punted(&mut self, mut m: Mbuf) -> Instant {
        let at = self.runtime.punted_at(&m);
        let Some(li) = self.runtime.punted_link(&mut m) else { return at };
        if self.vrrp.on_frame(li, m.data()) || self.sync.as_mut().is_some_and(|s| s.on_frame(li, m.data())) {
            return at;
        }
        let health = &mut self.health;
        self.arp.on_punted(li, m, &mut self.runtime, &mut |frame| health.on_frame(li, frame, at));
        at
    }

    /// The metrics, in Prometheus text format.
    pub fn metrics_text(&self) -> String {
        metrics_text(&self.runtime, &self.lb, &self.health, &self.vrrp, self.sync.as_ref(), self.l7.as_ref())
    }

    /// Per-port link state and counters, per virtual server and server,
    /// per-worker counters with every drop by name, health and
    /// control-plane counters, the packet pool.
    pub fn report(&self) -> String {
        let mut s = String::from("== furiwake counters ==\n");
        self.runtime.report_ports(&mut s);
        self.lb.report(&mut s, &self.runtime, &self.health);
        self.runtime.report_workers(&mut s);
        self.health.report(&mut s);
        self.vrrp.report(&mut s);
        if let Some(y) = &self.sync {
            y.report(&mut s, &self.runtime);
        }
        if let Some(l) = &self.l7 {
            s.push_str(&l.show());
            s.push('\n');
        }
        self.arp.report(&mut s, self.runtime.punt_counters());
        self.runtime.report_mbufs(&mut s);
        s
    }

    /// Stops workers, prints the final counters, closes ports and frees
    /// rings and the pool, in that order.
    pub fn shutdown(mut self) {
        // A master hands over first (priority-0 adverts), while its workers
        // still forward; then the console socket: nobody waits on a
        // stopping box.
        self.vrrp.shutdown(&mut self.runtime, &mut self.arp);
        self.runtime.drain_control(Duration::from_millis(100));
        self.console.close();
        if let Some(l) = self.l7.as_mut() {
            l.shutdown();
        }
        self.runtime.stop_workers();
        self.health.shutdown();
        say(&self.report());
        self.runtime.release();
        say("furiwake: stopped");
    }
}

/// Each module's metric families, in the order of the report.
fn metrics_text(rt: &Runtime, lb: &Lb, health: &Health, vrrp: &Vrrp, sync: Option<&Sync>, l7: Option<&L7>) -> String {
    let mut t = metrics::Text::default();
    metrics::ports(&mut t, rt);
    lb.metrics(&mut t, rt, health);
    metrics::workers(&mut t, rt);
    health.metrics(&mut t);
    vrrp.metrics(&mut t);
    if let Some(s) = sync {
        s.metrics(&mut t, rt);
    }
    if let Some(l) = l7 {
        l.metrics(&mut t);
    }
    metrics::mbufs(&mut t, rt);
    t.into_string()
}
