//! The L7 engine (README, "L7 virtual servers"; docs/architecture.md, "The
//! exception path"): `protocol = "http"` virtual servers served by the
//! appliance's own reverse proxy. The workers deliver their clients'
//! connections to the host link (`Forwarding::Local`); the kernel in the
//! appliance's network namespace terminates TCP; this engine (tokio,
//! hyper) reads each request, picks a server with the pool's scheduler
//! over the same snapshot the workers read, and opens its own connection
//! from the virtual server's source address, which leaves through the
//! workers again (`Forwarding::LocalOut`).
//!
//! - `view`: what the engine serves, from each published snapshot.
//! - `engine`: the listeners and the proxy, on the engine's threads.
//! - `activity`: a client connection's deadlines (idle and head, a client
//!   that takes nothing, an upgraded connection's idle limit);
//!   `patience`: bodies that pause.
//! - `persist`: cookies, session IDs and headers that keep a client on
//!   its server; the table of learned values.
//! - `proxyproto`: the PROXY protocol's header (versions 1 and 2).
//! - `switch`: the rule that picks the pool; a script's body prefix.
//! - `script`: the rules' scripts (Rhai) and the functions they call.

mod activity;
mod conn;
mod patience;
mod engine;
mod passthrough;
mod peek;
pub mod persist;
mod proxyproto;
mod script;
mod stats;
mod switch;
mod tls;
mod view;

use crate::config::Config;
use crate::out::say;
use crate::runtime::Netns;
use furiwake_dataplane::state::snapshot::Snapshot;
use hyper::Response;
use std::sync::atomic::{AtomicU64, Ordering};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use view::View;

/// The engine's counters (relaxed atomics, written by its threads).
#[derive(Debug, Default)]
pub struct Counters {
    pub connections: AtomicU64,
    /// Closed at once: the engine held `connection_cap` connections.
    pub refused: AtomicU64,
    /// Closed at the head deadline: idle since the last answer, or a head
    /// that did not complete in time (slowloris).
    pub idle_closed: AtomicU64,
    /// Closed because the client accepted no byte of an answer for
    /// `client_timeout_s`.
    pub stalled: AtomicU64,
    pub requests: AtomicU64,
    /// TLS handshakes completed, of them resumed (a ticket or a session
    /// ID) and with h2 chosen by ALPN; handshakes that failed or timed out.
    pub tls_handshakes: AtomicU64,
    pub tls_resumed: AtomicU64,
    pub tls_h2: AtomicU64,
    pub tls_failed: AtomicU64,
    /// Answers by status class: 1xx .. 5xx.
    pub responses: [AtomicU64; 5],
    /// Requests each rule picked the pool of, by (virtual server, rule).
    rule_hits: Mutex<BTreeMap<(String, usize), u64>>,
    /// Script runs by (virtual server, rule): runs, errors (a failure, an
    /// unknown pool, a value of another type), limits passed.
    scripts: Mutex<BTreeMap<(String, usize), [u64; 3]>>,
}

/// What a script run is counted as (`Counters::scripts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ran {
    Fine = 0,
    Error = 1,
    Limit = 2,
}

impl Counters {
    /// Forgets the rule and script counts of virtual servers a reload
    /// removed.
    fn retain(&self, live: &[&str]) {
        self.rule_hits.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|(vs, _), _| live.contains(&vs.as_str()));
        self.scripts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|(vs, _), _| live.contains(&vs.as_str()));
    }

    /// Counts a request rule `index` of virtual server `vs` matched.
    fn hit(&self, vs: &str, index: usize) {
        let mut h = self.rule_hits.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *h.entry((vs.to_string(), index)).or_insert(0) += 1;
    }

    /// Counts a run of rule `index`'s script: run, and `how`.
    fn ran(&self, vs: &str, index: usize, how: Ran) {
        let mut h = self.scripts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = h.entry((vs.to_string(), index)).or_insert([0; 3]);
        n[0] += 1;
        if how != Ran::Fine {
            n[how as usize] += 1;
        }
    }

    fn runs(&self, vs: &str, index: usize) -> [u64; 3] {
        let h = self.scripts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        h.get(&(vs.to_string(), index)).copied().unwrap_or_default()
    }

    fn hits(&self, vs: &str, index: usize) -> u64 {
        let h = self.rule_hits.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        h.get(&(vs.to_string(), index)).copied().unwrap_or(0)
    }

    /// Counts `r` by its status class and hands it back.
    fn count<B>(&self, r: Response<B>) -> Response<B> {
        let class = (r.status().as_u16() / 100).clamp(1, 5) as usize - 1;
        if let Some(c) = self.responses.get(class) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}

pub struct L7 {
    runtime: Option<tokio::runtime::Runtime>,
    views: watch::Sender<Arc<View>>,
    counters: Arc<Counters>,
    stats: Arc<stats::Stats>,
    table: Arc<persist::Table>,
    threads: usize,
}

/// `show l7`'s line of rule `r` of virtual server `vs`: its pool (or its
/// script's), hits, and its script's runs.
fn rule_line(v: &View, c: &Counters, vs: &str, r: &view::Rule) -> String {
    let name = |slot: u16| v.snap.services.get(slot as usize).map_or("?", |p| p.name.split_once('#').map_or(p.name.as_str(), |(_, p)| p));
    let hits = c.hits(vs, r.index);
    let pool = r.slot.map(|p| format!("pool {}", name(p)));
    match &r.script {
        None => format!("    rule {}: {}; hits {hits}\n", r.index + 1, pool.unwrap_or_default()),
        Some(s) => {
            let pools: Vec<&str> = s.pools.iter().map(|(n, _)| n.as_str()).collect();
            let [runs, errors, limits] = c.runs(vs, r.index);
            let mut what = vec!["script".to_string()];
            what.extend((!pools.is_empty()).then(|| format!("pools [{}]", pools.join(", "))));
            what.extend(pool);
            format!("    rule {}: {}; hits {hits}; script runs {runs} errors {errors} limits {limits}\n", r.index + 1, what.join(", "))
        }
    }
}

/// The CPUs the engine's threads may use: `[l7] cpus`, or every CPU the
/// process may use but the worker lcores' (an lcore is its CPU unless
/// the operator mapped them otherwise).
fn cpus(cfg: &Config) -> Vec<usize> {
    if let Some(c) = &cfg.l7.cpus {
        return c.get_ref().iter().map(|c| *c as usize).collect();
    }
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: our own thread's affinity into a set of the size given.
    let ok = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } == 0;
    let workers = cfg.platform.worker_lcore_ids();
    let all: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: CPU_ISSET reads the set within its size.
        .filter(|c| ok && unsafe { libc::CPU_ISSET(*c, &set) })
        .collect();
    let free: Vec<usize> = all.iter().copied().filter(|c| !workers.contains(&(*c as u32))).collect();
    if free.is_empty() {
        all
    } else {
        free
    }
}

/// Pins the calling thread to `cpus` (none: left as it is).
fn pin(cpus: &[usize]) {
    if cpus.is_empty() {
        return;
    }
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for c in cpus.iter().filter(|c| **c < libc::CPU_SETSIZE as usize) {
        // SAFETY: CPU_SET writes within the set's size (checked above).
        unsafe { libc::CPU_SET(*c, &mut set) };
    }
    // SAFETY: the calling thread's affinity from a valid set.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        log::warn!("l7: pinning to CPUs {cpus:?}: {}", std::io::Error::last_os_error());
    }
}

impl L7 {
    /// Starts the engine's threads in `netns`, serving nothing until the
    /// first `update`.
    pub fn start(cfg: &Config, netns: Netns) -> Result<L7, String> {
        let threads = *cfg.l7.threads.get_ref() as usize;
        engine::raise_nofile();
        let cpus = cpus(cfg);
        let netns = Arc::new(netns);
        let ns = Arc::clone(&netns);
        let pinned = cpus.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("fw-l7")
            .enable_all()
            .on_thread_start(move || {
                // Its sockets open in the appliance's namespace; a thread
                // that cannot enter it must not open them elsewhere.
                if let Err(e) = ns.enter() {
                    log::error!("l7: entering the appliance's network namespace: {e}");
                    std::process::abort();
                }
                pin(&pinned);
            })
            .build()
            .map_err(|e| format!("l7: the engine's runtime: {e}"))?;
        let counters = Arc::new(Counters::default());
        let (views, rx) = watch::channel(Arc::new(View::default()));
        let table = Arc::new(persist::Table::default());
        let scripts = Arc::new(script::Runner::new(u64::from(*cfg.l7.script_max_operations.get_ref())));
        let log = cfg.l7.access_log.as_ref().map(|p| (p.get_ref().as_str(), *cfg.l7.access_log_rate.get_ref()));
        let stats = Arc::new(stats::Stats::new(log)?);
        let shared = Arc::new(engine::Shared::new(Arc::clone(&counters), Arc::clone(&table), scripts, Arc::clone(&stats)));
        runtime.spawn(conn::run(shared, rx));
        say(&format!("l7: engine up, {threads} thread(s) on CPUs {cpus:?}"));
        Ok(L7 { runtime: Some(runtime), views, counters, stats, table, threads })
    }

    /// Serves what `snap` says (listeners follow its `http` virtual
    /// servers; requests use its pools' states from now on).
    pub fn update(&self, cfg: &Config, snap: &Snapshot) {
        let _ = self.views.send(Arc::new(View::of(cfg, snap)));
    }

    /// The persistence records learned here since the last call, for the
    /// HA peer.
    pub fn take_learned(&self) -> Vec<persist::Learned> {
        self.table.take_journal()
    }

    /// Every live learned record, for a peer that (re)starts.
    ///
    /// The table keeps hashes, not values: the values live in a second
    /// journal kept for this (`persist::Table::replay`).
    pub fn all_learned(&self) -> Vec<persist::Learned> {
        self.table.replay()
    }

    /// The HA peer's records (the peer's clients of a failover find
    /// their servers here).
    pub fn install(&self, records: impl IntoIterator<Item = persist::Learned>) {
        for (g, v, a, t) in records {
            self.table.put(&g, &v, a, std::time::Duration::from_secs(u64::from(t)));
        }
    }

    /// `show persistence`: the learned records of `group` (all when
    /// None) on `server`, how many and up to `limit` of them as rows
    /// (group, value, server, connections, expiry, where).
    pub fn records(&self, group: Option<&str>, server: Option<std::net::IpAddr>, limit: usize) -> (usize, Vec<Vec<String>>) {
        let (n, shown) = self.table.records(group, server, limit);
        let rows = shown
            .into_iter()
            .map(|r| {
                let left = r.timeout.saturating_sub(r.idle).as_secs();
                vec![r.group, r.value, r.to.to_string(), "-".into(), format!("{left} s (idle {} s)", r.idle.as_secs()), "l7".into()]
            })
            .collect();
        (n, rows)
    }

    /// `show l7`.
    pub fn show(&self) -> String {
        let v = self.views.borrow();
        let c = &self.counters;
        let mut s = format!("L7 engine: {} thread(s)\n", self.threads);
        let by_vs = self.stats.snapshot();
        for svc in &v.services {
            let sources: Vec<String> = svc.sources.iter().map(ToString::to_string).collect();
            let kind = if svc.passthrough { "tcp (TLS passed through, tls-session-id)" } else if svc.tls.is_some() { "https" } else { "http" };
            let tls = if svc.to_servers.is_some() { "; TLS to the servers" } else { "" };
            s.push_str(&format!("  {} {kind} {} from {}{tls}\n", svc.name, svc.addr, sources.join(", ")));
            if let Some(st) = by_vs.get(&svc.name) {
                let [c1, c2, c3, c4, c5] = st.classes;
                s.push_str(&format!("    answers 1xx {c1} 2xx {c2} 3xx {c3} 4xx {c4} 5xx {c5}; half within {}, 99% within {}\n", stats::quantile(st, 0.5), stats::quantile(st, 0.99)));
            }
            for r in &svc.rules {
                s.push_str(&rule_line(&v, c, &svc.name, r));
            }
        }
        let r: Vec<u64> = c.responses.iter().map(|x| x.load(Ordering::Relaxed)).collect();
        s.push_str(&format!(
            "connections {} refused {} idle-closed {} stalled {} requests {} responses 1xx {} 2xx {} 3xx {} 4xx {} 5xx {}",
            c.connections.load(Ordering::Relaxed),
            c.refused.load(Ordering::Relaxed),
            c.idle_closed.load(Ordering::Relaxed),
            c.stalled.load(Ordering::Relaxed),
            c.requests.load(Ordering::Relaxed),
            r[0], r[1], r[2], r[3], r[4]
        ));
        let tls = [&c.tls_handshakes, &c.tls_resumed, &c.tls_h2, &c.tls_failed].map(|x| x.load(Ordering::Relaxed));
        if v.services.iter().any(|s| s.tls.is_some()) || tls.iter().any(|n| *n > 0) {
            s.push_str(&format!("\ntls handshakes {} resumed {} h2 {} failed {}", tls[0], tls[1], tls[2], tls[3]));
        }
        let (n, some) = self.table.summary(20);
        let (too_long, evicted) = (self.table.too_long.load(Ordering::Relaxed), self.table.evicted.load(Ordering::Relaxed));
        if n + (too_long + evicted) as usize > 0 {
            s.push_str(&format!("\npersistence records {n}; too-long {too_long}; evicted {evicted}"));
            for (a, idle) in some {
                s.push_str(&format!("\n  -> {a} idle {} s", idle.as_secs()));
            }
        }
        s
    }

    /// Prometheus families.
    pub fn metrics(&self, t: &mut crate::modules::metrics::Text) {
        let c = &self.counters;
        t.family("l7_connections_total", "counter", "Client connections the L7 engine accepted.", vec![(String::new(), c.connections.load(Ordering::Relaxed))]);
        t.family("l7_tls_handshakes_total", "counter", "TLS handshakes the L7 engine completed with clients.", vec![(String::new(), c.tls_handshakes.load(Ordering::Relaxed))]);
        t.family("l7_tls_resumed_total", "counter", "TLS handshakes that resumed a session (ticket or session ID).", vec![(String::new(), c.tls_resumed.load(Ordering::Relaxed))]);
        t.family("l7_tls_failed_total", "counter", "TLS handshakes that failed or passed the header deadline.", vec![(String::new(), c.tls_failed.load(Ordering::Relaxed))]);
        t.family("l7_idle_closed_total", "counter", "Client connections closed at the head deadline (idle since the last answer, or a head not in time).", vec![(String::new(), c.idle_closed.load(Ordering::Relaxed))]);
        t.family("l7_stalled_total", "counter", "Client connections closed because the client read no byte of an answer for client_timeout_s.", vec![(String::new(), c.stalled.load(Ordering::Relaxed))]);
        t.family("l7_requests_total", "counter", "Requests the L7 engine read.", vec![(String::new(), c.requests.load(Ordering::Relaxed))]);
        let by_class = c.responses.iter().enumerate().map(|(i, x)| (crate::modules::metrics::labels(&[("class", &format!("{}xx", i + 1))]), x.load(Ordering::Relaxed))).collect();
        t.family("l7_responses_total", "counter", "Responses the L7 engine sent, by status class.", by_class);
        let hits = c.rule_hits.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let by_rule = hits.iter().map(|((vs, i), n)| (crate::modules::metrics::labels(&[("virtual_server", vs), ("rule", &(i + 1).to_string())]), *n)).collect();
        drop(hits);
        t.family("l7_rule_hits_total", "counter", "Requests a content-switching rule sent to its pool.", by_rule);
        let by_vs = self.stats.snapshot();
        let classes = by_vs.iter().flat_map(|(vs, s)| s.classes.iter().enumerate().map(move |(i, n)| (crate::modules::metrics::labels(&[("virtual_server", vs), ("class", &format!("{}xx", i + 1))]), *n))).collect();
        t.family("l7_virtual_server_responses_total", "counter", "Responses of each L7 virtual server, by status class.", classes);
        let series = by_vs.iter().map(|(vs, s)| (vec![("virtual_server".to_string(), vs.clone())], s.buckets.to_vec(), s.sum.as_secs_f64(), s.count)).collect();
        t.histogram("l7_response_seconds", "Time from a request's head to its answer's head, by L7 virtual server.", &stats::BUCKETS, series);
        t.family("l7_access_log_dropped_total", "counter", "Access log lines not written: over access_log_rate, or the writer behind.", vec![(String::new(), self.stats.log_dropped.load(Ordering::Relaxed))]);
        let runs = c.scripts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        for (i, (name, help)) in [("l7_script_runs_total", "Runs of a rule's script."), ("l7_script_errors_total", "Runs of a rule's script that failed or named no pool of its list."), ("l7_script_limits_total", "Runs of a rule's script stopped at a limit (operations, sizes, depth).")].into_iter().enumerate() {
            let by_rule = runs.iter().map(|((vs, r), n)| (crate::modules::metrics::labels(&[("virtual_server", vs), ("rule", &(r + 1).to_string())]), n[i])).collect();
            t.family(name, "counter", help, by_rule);
        }
    }

    /// Stops the engine: listeners closed, connections dropped.
    pub fn shutdown(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(std::time::Duration::from_secs(1));
        }
    }
}
