//! VRRP (RFC 5798 v3, RFC 3768 v2) failover of the virtual addresses, on
//! the control lcore over the DPDK ports (issue 12).
//!
//! - `fsm`: the RFC 5798 §6.4 state machine as a pure function.
//! - `instance`: one instance around it: FAULT from tracking, effective
//!   priority, preemption delay and hold, release, last transition.
//! - `frames`: adverts in frames, built and checked (§7.1).
//! - `show`: `show vrrp`, metrics, the report line.
//!
//! Its step in the control loop (`step`, every turn): the adverts punted
//! since the last turn (workers punt protocol 112 to 224.0.0.18 or to a
//! self IP), tracking (links once a second, tracked addresses by ARP,
//! pools by health), the timers; then what the instances asked: adverts
//! out, addresses taken or given up. Owning an address is three things,
//! done in this order on a takeover: the lb module publishes its virtual
//! servers out of `standby` (workers forward them), the ARP module answers
//! for it (with the virtual MAC), and, once every worker runs the new
//! snapshot, gratuitous ARPs announce it (README, "Takeover ordering").

pub mod frames;
pub mod fsm;
pub mod instance;
mod show;

use crate::config::Config;
use crate::modules::arp::Arp;
use crate::modules::health::Health;
use crate::modules::lb::Lb;
use crate::out::event;
use crate::runtime::Runtime;
use furiwake_dataplane::wire::EthernetAddress;
use instance::{Instance, Out};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::time::Instant;

/// Adverts kept between two turns at most (a flood is counted, not kept).
const INBOX: usize = 256;

/// Gratuitous ARPs still to send for an instance that became master.
struct Garp {
    left: u32,
    next: u64,
    /// The snapshot generation every worker must run first.
    generation: Option<u64>,
}

/// A tracked address: asked every `track_interval_ms`.
#[derive(Default)]
struct Probe {
    last_ask: Option<u64>,
}

pub struct Vrrp {
    instances: Vec<Instance>,
    epoch: Instant,
    inbox: Vec<(usize, frames::Received)>,
    garps: Vec<Option<Garp>>,
    probes: HashMap<Ipv4Addr, Probe>,
    /// Preemption held (connection sync's bulk dump not finished).
    hold: bool,
    /// Adverts refused before any instance: by reason.
    refused: BTreeMap<&'static str, u64>,
    started: bool,
    /// `[sync]` is configured: no instance may become the address owner
    /// (priority 255), as check-config says.
    synced: bool,
}

impl Vrrp {
    pub fn new(cfg: &Config, rt: &Runtime) -> Self {
        let mut instances = Vec::new();
        for v in &cfg.vrrp {
            let Some(link) = rt.links().iter().position(|l| l.name() == v.interface.get_ref()) else { continue };
            let l = &rt.links()[link];
            let mac = if v.use_vmac { frames::virtual_mac(*v.vrid.get_ref()) } else { l.mac() };
            instances.push(Instance::new(v.clone(), link, l.address().addr, mac));
        }
        Self::of(instances, cfg.sync.is_some())
    }

    fn of(instances: Vec<Instance>, synced: bool) -> Self {
        let garps = instances.iter().map(|_| None).collect();
        Vrrp { instances, epoch: Instant::now(), inbox: Vec::new(), garps, probes: HashMap::new(), hold: false, refused: BTreeMap::new(), started: false, synced }
    }

    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    pub fn instances(&self) -> &[Instance] {
        &self.instances
    }

    fn now_cs(&self) -> u64 {
        (self.epoch.elapsed().as_millis() / 10) as u64
    }

    /// Every VRRP address: its link and the MAC it answers with.
    pub fn floating(&self, rt: &Runtime) -> HashMap<Ipv4Addr, (usize, EthernetAddress)> {
        let mut m = HashMap::new();
        for i in &self.instances {
            for a in i.cfg.addresses.iter().map(|a| *a.get_ref()) {
                let Some(li) = rt.links().iter().position(|l| l.address().contains(a)) else { continue };
                let mac = if li == i.link { i.mac } else { rt.links()[li].mac() };
                m.insert(a, (li, mac));
            }
        }
        m
    }

    /// The addresses of instances that are not master here.
    pub fn standby(&self) -> HashSet<Ipv4Addr> {
        self.instances.iter().filter(|i| !i.is_master()).flat_map(|i| i.cfg.addresses.iter().map(|a| *a.get_ref())).collect()
    }

    /// Holds (or lets go) preemption: a returning node waits for the
    /// peer's bulk dump (`[sync] bulk_limit_ms`).
    pub fn hold_preempt(&mut self, hold: bool) {
        self.hold = hold;
    }

    /// A punted frame: VRRP's when it is IPv4 protocol 112 (true).
    pub fn on_frame(&mut self, li: usize, frame: &[u8]) -> bool {
        if self.instances.is_empty() || !frames::is_vrrp(frame) {
            return false;
        }
        match frames::receive(frame) {
            Ok(r) if self.inbox.len() < INBOX => self.inbox.push((li, r)),
            Ok(_) => *self.refused.entry("inbox-full").or_default() += 1,
            Err(e) => *self.refused.entry(e.name()).or_default() += 1,
        }
        true
    }

    /// The control-loop step: see the module's doc.
    /// `settled`: the peer's synced records are all in the workers' tables
    /// (no gratuitous ARP before that).
    pub fn step(&mut self, rt: &mut Runtime, arp: &mut Arp, lb: &mut Lb, health: &Health, settled: bool) {
        if self.instances.is_empty() {
            return;
        }
        let now = self.now_cs();
        let mut outs: Vec<(usize, Out)> = Vec::new();
        self.track(now, rt, arp, lb, health, &mut outs);
        if !self.started {
            self.started = true;
            for (k, i) in self.instances.iter_mut().enumerate() {
                let mut o = Vec::new();
                i.startup(now, &mut o);
                outs.extend(o.into_iter().map(|x| (k, x)));
            }
        }
        for (li, r) in std::mem::take(&mut self.inbox) {
            self.advert_in(li, r, now, &mut outs);
        }
        for (k, i) in self.instances.iter_mut().enumerate() {
            let mut o = Vec::new();
            i.tick(now, self.hold, &mut o);
            outs.extend(o.into_iter().map(|x| (k, x)));
        }
        self.follow_groups(now, &mut outs);
        self.carry_out(outs, now, rt, arp, lb, health);
        self.send_garps(now, rt, arp, settled);
    }

    /// Tracking: links, addresses (ARP), pools; FAULT or lowered priority,
    /// shared by a sync group's members.
    fn track(&mut self, now: u64, rt: &mut Runtime, arp: &mut Arp, lb: &Lb, health: &Health, outs: &mut Vec<(usize, Out)>) {
        let mut verdicts: Vec<Vec<String>> = Vec::new();
        for i in &self.instances {
            let mut failed = Vec::new();
            for t in &i.cfg.track_interfaces {
                let up = rt.links().iter().find(|l| l.name() == t.get_ref()).is_some_and(|l| l.is_up());
                if !up {
                    failed.push(format!("interface {} down", t.get_ref()));
                }
            }
            let interval = u64::from(*i.cfg.track_interval_ms.get_ref() / 10);
            let fall = u64::from(*i.cfg.track_fall.get_ref());
            for a in i.cfg.track_addresses.iter().map(|a| *a.get_ref()) {
                let probe = self.probes.entry(a).or_default();
                if probe.last_ask.is_none_or(|t| now >= t + interval) {
                    probe.last_ask = Some(now);
                    if let Some(li) = rt.links().iter().position(|l| l.address().contains(a)) {
                        arp.ask(rt, li, a);
                    }
                }
                let window = std::time::Duration::from_millis(10 * interval * fall);
                if arp.neighbor(a).is_none_or(|n| n.updated.elapsed() > window) {
                    failed.push(format!("address {a} unreachable"));
                }
            }
            for p in &i.cfg.track_pools {
                let up = lb.pool_up(p.get_ref(), health);
                if (up as u64) < u64::from(*i.cfg.track_pool_min_up.get_ref()) {
                    failed.push(format!("pool {} has {up} servers up", p.get_ref()));
                }
            }
            verdicts.push(failed);
        }
        // A sync group tracks as one: each member sees every member's failures.
        let groups: Vec<Option<String>> = self.instances.iter().map(|i| i.cfg.group.as_ref().map(|g| g.get_ref().clone())).collect();
        for (k, i) in self.instances.iter_mut().enumerate() {
            let mut failed: Vec<String> = Vec::new();
            for (j, v) in verdicts.iter().enumerate() {
                if j == k || (groups[k].is_some() && groups[j] == groups[k]) {
                    failed.extend(v.iter().cloned());
                }
            }
            failed.dedup();
            let mut o = Vec::new();
            if *i.cfg.track_weight.get_ref() == 0 {
                let fault = (!failed.is_empty()).then(|| failed.join(", "));
                i.track(fault, Vec::new(), now, &mut o);
            } else {
                i.track(None, failed, now, &mut o);
            }
            outs.extend(o.into_iter().map(|x| (k, x)));
        }
    }

    /// An advert that passed the header checks: the instance's own checks
    /// (RFC 5798 §7.1; RFC 3768 §7.1 for v2's interval and password).
    fn advert_in(&mut self, li: usize, r: frames::Received, now: u64, outs: &mut Vec<(usize, Out)>) {
        let Some(k) = self.instances.iter().position(|i| i.link == li && i.vrid() == r.repr.vrid) else {
            *self.refused.entry("unknown-vrid").or_default() += 1;
            return;
        };
        let i = &mut self.instances[k];
        if r.src == i.address {
            return;
        }
        match i.check_advert(r.src, &r.repr) {
            Err(reason) => {
                i.refuse(reason);
                return;
            }
            Ok(Some(note)) => i.refuse(note),
            Ok(None) => {}
        }
        let mut o = Vec::new();
        i.advert_in(r.repr.priority, r.repr.interval_cs, r.src, now, self.hold, &mut o);
        outs.extend(o.into_iter().map(|x| (k, x)));
    }

    /// Sync groups: a member that became master takes the others along; a
    /// member that left mastership takes the others out.
    fn follow_groups(&mut self, now: u64, outs: &mut Vec<(usize, Out)>) {
        let mut moves: Vec<(String, bool, String)> = Vec::new();
        for (k, o) in outs.iter() {
            let i = &self.instances[*k];
            let Some(g) = i.cfg.group.as_ref().map(|g| g.get_ref().clone()) else { continue };
            match o {
                Out::Take => moves.push((g, true, i.name().to_string())),
                Out::Drop => moves.push((g, false, i.name().to_string())),
                Out::Advert { .. } => {}
            }
        }
        for (g, to_master, who) in moves {
            for (k, i) in self.instances.iter_mut().enumerate() {
                if i.cfg.group.as_ref().is_some_and(|x| *x.get_ref() == g) && i.name() != who && i.is_master() != to_master {
                    let mut o = Vec::new();
                    let why = format!("sync group {g}: {who} {}", if to_master { "became master" } else { "left mastership" });
                    i.follow(to_master, now, &why, &mut o);
                    outs.extend(o.into_iter().map(|x| (k, x)));
                }
            }
        }
    }

    /// Adverts out; on a change of ownership, the snapshot and ARP.
    fn carry_out(&mut self, outs: Vec<(usize, Out)>, now: u64, rt: &mut Runtime, arp: &mut Arp, lb: &mut Lb, health: &Health) {
        let mut changed = Vec::new();
        for (k, o) in &outs {
            match o {
                Out::Advert { priority } => self.send_advert(*k, *priority, rt, arp),
                Out::Take | Out::Drop => changed.push(*k),
            }
        }
        // Every transition, with its cause.
        for i in self.instances.iter_mut() {
            for t in std::mem::take(&mut i.unlogged) {
                event(&format!("vrrp {}: {} -> {} ({}); priority {} effective {}", i.name(), t.from, t.to, t.why, i.priority, i.effective));
            }
        }
        if changed.is_empty() {
            // Transitions without an ownership change (BACKUP <-> FAULT, INIT).
            return;
        }
        let standby = self.standby();
        arp.set_vrrp(self.floating(rt), standby.clone());
        let generation = lb.set_standby(standby, rt, health);
        for k in changed {
            if self.instances[k].is_master() {
                let count = *self.instances[k].cfg.garp_count.get_ref();
                self.garps[k] = Some(Garp { left: count, next: now, generation });
            } else {
                self.garps[k] = None;
            }
        }
    }

    fn send_advert(&mut self, k: usize, priority: u8, rt: &mut Runtime, arp: &mut Arp) {
        let i = &mut self.instances[k];
        let repr = i.advert(priority);
        let peers: Vec<Ipv4Addr> = i.cfg.unicast_peers.iter().map(|p| *p.get_ref()).collect();
        let mut sent = 0;
        if peers.is_empty() {
            let (dst, dst_mac) = frames::group();
            let f = frames::advert_frame(i.mac, dst_mac, i.address, dst, &repr);
            rt.send_frame(i.link, &f);
            sent += 1;
        }
        for p in peers {
            let dst_mac = arp.neighbor(p).map_or(EthernetAddress::BROADCAST, |n| n.mac);
            if dst_mac == EthernetAddress::BROADCAST {
                arp.ask(rt, i.link, p);
            }
            let f = frames::advert_frame(i.mac, dst_mac, i.address, p, &repr);
            rt.send_frame(i.link, &f);
            sent += 1;
        }
        i.counters.adverts_sent += sent;
        if priority == 0 {
            i.counters.priority_zero_sent += sent;
        }
    }

    /// Gratuitous ARPs of masters, once the workers run the snapshot that
    /// forwards their VIPs.
    fn send_garps(&mut self, now: u64, rt: &mut Runtime, arp: &mut Arp, settled: bool) {
        let floating = self.floating(rt);
        let min_seen = rt.workers().min_seen();
        for (k, g) in self.garps.iter_mut().enumerate() {
            let Some(garp) = g else { continue };
            if garp.generation.is_some_and(|gen| min_seen < gen || !settled) || now < garp.next {
                continue;
            }
            let i = &self.instances[k];
            for a in i.cfg.addresses.iter().map(|a| *a.get_ref()) {
                if let Some((li, mac)) = floating.get(&a) {
                    arp.gratuitous(rt, *li, *mac, a);
                }
            }
            garp.left = garp.left.saturating_sub(1);
            garp.next = now + u64::from(*i.cfg.garp_interval_ms.get_ref() / 10);
            garp.generation = None;
            if garp.left == 0 {
                *g = None;
            }
        }
    }

    /// Orderly stop: every master sends its priority-0 advert (RFC 5798
    /// §6.4.3), so the peer takes over after its skew time, not after the
    /// master-down interval.
    pub fn shutdown(&mut self, rt: &mut Runtime, arp: &mut Arp) {
        let now = self.now_cs();
        for k in 0..self.instances.len() {
            let mut o = Vec::new();
            self.instances[k].shutdown(now, "shutting down", &mut o);
            for x in o {
                if let Out::Advert { priority } = x {
                    self.send_advert(k, priority, rt, arp);
                }
            }
        }
    }

    /// `vrrp NAME priority N`.
    pub fn set_priority(&mut self, name: &str, priority: u8) -> Result<String, String> {
        let k = self.instances.iter().position(|i| i.name() == name).ok_or_else(|| format!("no vrrp instance {name:?}"))?;
        if priority == 0 {
            return Err("priority: allowed 1..=255".into());
        }
        let group = self.instances[k].cfg.group.as_ref().map(|g| g.get_ref().clone());
        if priority == 255 && (self.synced || group.is_some()) {
            return Err(format!("priority 255 (the address owner) is refused {}, as check-config refuses it: at most 254", if self.synced { "with [sync]" } else { "in a sync group" }));
        }
        // A release ends for the whole group (it was released as one).
        for i in self.instances.iter_mut().filter(|i| group.is_some() && i.cfg.group.as_ref().map(|g| g.get_ref()) == group.as_ref()) {
            i.released = false;
        }
        let i = &mut self.instances[k];
        let was = i.priority;
        i.priority = priority;
        i.effective = priority;
        i.released = false;
        event(&format!("vrrp {name}: priority {was} -> {priority} (operator)"));
        Ok(format!("vrrp {name}: priority {priority} (was {was}); it takes effect in the next advert"))
    }

    /// `vrrp NAME release`: an orderly handover to the peer.
    pub fn release(&mut self, name: &str, rt: &mut Runtime, arp: &mut Arp, lb: &mut Lb, health: &Health) -> Result<String, String> {
        let k = self.instances.iter().position(|i| i.name() == name).ok_or_else(|| format!("no vrrp instance {name:?}"))?;
        if !self.instances[k].is_master() {
            return Err(format!("vrrp {name} is {}, not MASTER: nothing to release", self.instances[k].state_name()));
        }
        if self.instances[k].effective == 255 {
            // It discards the peer's adverts (RFC 5798 §7.1): released, it
            // would take the addresses back after its master-down interval.
            return Err(format!("vrrp {name} is the address owner (priority 255): set a lower priority first (vrrp {name} priority N)"));
        }
        // The whole sync group hands over, or its other members would
        // preempt back and take the released one along.
        let group = self.instances[k].cfg.group.as_ref().map(|g| g.get_ref().clone());
        let now = self.now_cs();
        let mut outs: Vec<(usize, Out)> = Vec::new();
        for (j, i) in self.instances.iter_mut().enumerate() {
            if j == k || (group.is_some() && i.cfg.group.as_ref().map(|g| g.get_ref()) == group.as_ref()) {
                let mut o = Vec::new();
                i.release(now, &mut o);
                i.released = true;
                outs.extend(o.into_iter().map(|x| (j, x)));
            }
        }
        self.carry_out(outs, now, rt, arp, lb, health);
        Ok(format!("vrrp {name}: released{}; the peer takes over (this box does not preempt until it is master again or its priority is set)", group.map_or(String::new(), |g| format!(" with its sync group {g}"))))
    }
}

#[cfg(test)]
mod tests;
