//! A shard's making and its following of a new snapshot: the IPv4 shard
//! and, when a snapshot first has an IPv6 service, the IPv6 one.

use super::{nat, police, synproxy, LocalPorts, Neighbors, Owners, PersistTable, Scheduler, Shard, WorkerConfig, WorkerCounters};
use crate::conntrack::FlowTable;
use crate::state::snapshot::Snapshot;
use std::sync::Arc;

impl<A: super::family::Net> Shard<A> {
    /// A shard of `config.flows` entries (and nothing else made yet), its
    /// counters and next hops the worker's.
    pub(super) fn blank(config: WorkerConfig, counters: Arc<WorkerCounters>, neighbors: Arc<Neighbors>) -> Self {
        let table = FlowTable::keyed(config.flows, config.timeouts, config.hash_key);
        let owners = Owners::new(config.workers, config.owner_key);
        let local_ports = LocalPorts::new(config.id, &owners);
        let answers = police::TokenBucket::new(config.icmp_rate, config.icmp_burst);
        let punt = police::PuntPolicer::new(&config.punt_rates);
        Shard {
            config,
            counters,
            table,
            sched: Scheduler::default(),
            local_ports,
            owners,
            neighbors,
            loads: None,
            persist: PersistTable::default(),
            now: 0,
            dump: None,
            sync: None,
            answers,
            punt,
            rebuilt: synproxy::Rebuild { l3: 14, link: 0, dst_mac: crate::wire::EthernetAddress([0; 6]), src_mac: crate::wire::EthernetAddress([0; 6]), out: nat::synproxy::TcpOut { src: 0, dst: 0, sport: 0, dport: 0, seq: 0, ack: 0, flags: 0, win: 0, ttl: 0, opts: crate::wire::tcp::TcpOptions::default(), syn: false } },
            park: synproxy::Park::new(),
            proxy_until: 0,
            cookie_sec: 0,
            cookies_this_sec: 0,
            cookies_valid_until: 0,
            in_port: 0,
            pending: None,
            v6: None,
        }
    }
}

impl Shard<u128> {
    /// The IPv6 shard's share of `adopt_snapshot`.
    fn adopt_snapshot6(&mut self, snap: &Snapshot, v4_narrowed: &dyn Fn(u32) -> bool) {
        self.sched.resize(snap.services.len());
        if self.persist.capacity() == 0 && snap.services.iter().any(|v| v.ip6 != 0 && v.persistence.is_some()) {
            self.persist = PersistTable::keyed(snap.persist_records.max(1), self.config.hash_key);
        }
        // A translating IPv4 local address: the upper ports, when the IPv4
        // table keeps to the lower ones (`xlate::XLATE_PORT_MIN`); an
        // address IPv4 full-NAT had taken whole before (a reload that
        // added translation) gets no pool: its translated connections
        // find no local port (`no-local-port`) until a restart.
        for a in snap.local_addrs6.iter().copied() {
            match crate::forward::xlate::unmapped(a) {
                Some(v4) if v4_narrowed(v4) => self.local_ports.ensure_range(a, super::xlate::XLATE_PORT_MIN, crate::forward::LOCAL_PORT_MAX),
                Some(_) => {}
                None => self.local_ports.ensure(&[a]),
            }
        }
    }
}

impl Shard {
    /// Slow path: size per-snapshot state after a new snapshot; the IPv6
    /// shard made when the first IPv6 service comes (its table of
    /// `WorkerConfig::flows_v6` entries).
    pub(super) fn adopt_snapshot(&mut self, snap: &Snapshot) {
        if self.v6.is_none() && snap.services.iter().any(|v| v.ip6 != 0 || v.xlate) {
            // The defence's budgets in proportion to the IPv6 table.
            let (flows, flows6) = (u64::from(self.config.flows.max(1)), u64::from(self.config.flows_v6()));
            let scale = |n: u32| if n == u32::MAX { n } else { (u64::from(n) * flows6 / flows).clamp(1, u64::from(u32::MAX - 1)) as u32 };
            let c = &self.config;
            let config = WorkerConfig {
                flows: c.flows_v6(),
                embryonic_max: scale(c.embryonic_max),
                unreplied_per_service: scale(c.unreplied_per_service),
                unreplied_per_source: scale(c.unreplied_per_source),
                ..c.clone()
            };
            let mut v6 = Shard::<u128>::blank(config, Arc::clone(&self.counters), Arc::clone(&self.neighbors));
            v6.loads = self.loads.clone();
            self.v6 = Some(Box::new(v6));
        }
        // IPv4 full-NAT keeps below the translated connections' ports on
        // a translating local address (`xlate`).
        for v4 in snap.local_addrs6.iter().filter_map(|a| crate::forward::xlate::unmapped(*a)) {
            self.local_ports.ensure_range(v4, crate::forward::LOCAL_PORT_MIN, super::xlate::XLATE_PORT_MIN - 1);
        }
        if let Some(v6) = self.v6.as_mut() {
            let ports = &self.local_ports;
            v6.adopt_snapshot6(snap, &|a| ports.max_of(a).is_some_and(|m| m < super::xlate::XLATE_PORT_MIN));
        }
        self.sched.resize(snap.services.len());
        // Source NAT addresses with their own port ranges first: `ensure`
        // keeps an address's pool.
        for r in &snap.snat {
            self.local_ports.ensure_range(r.addr, r.port_min, r.port_max);
        }
        self.local_ports.ensure(&snap.local_addrs);
        if self.persist.capacity() == 0 && snap.services.iter().any(|v| v.persistence.is_some()) {
            self.persist = PersistTable::keyed(snap.persist_records.max(1), self.config.hash_key);
        }
    }
}
