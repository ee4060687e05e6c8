//! One VRRP instance around the pure state machine (`fsm`): the FAULT
//! state of tracking, the effective priority, preemption delay and hold,
//! the operator's release, the last transition and why, and its counters.
//! No I/O: what to send and what to own comes back as `Out`.

use super::fsm::{self, Action, Event, Params, State};
use crate::config::Vrrp as VrrpConfig;
use furiwake_dataplane::wire::EthernetAddress;
use furiwake_dataplane::wire::vrrp::{VrrpRepr, AUTH_LEN};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::SystemTime;

/// What an instance asks of the module after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    Advert { priority: u8 },
    Take,
    Drop,
}

/// A state change, for `show vrrp` and the log.
#[derive(Debug, Clone)]
pub struct Transition {
    pub at: SystemTime,
    pub from: &'static str,
    pub to: &'static str,
    pub why: String,
}

#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub adverts_sent: u64,
    pub adverts_received: u64,
    pub priority_zero_sent: u64,
    pub priority_zero_received: u64,
    pub became_master: u64,
    pub transitions: u64,
    /// Adverts refused by this instance's checks, by reason.
    pub refused: BTreeMap<&'static str, u64>,
}

pub struct Instance {
    pub cfg: VrrpConfig,
    /// Index of its link.
    pub link: usize,
    /// The link's self IP: adverts leave from it and it breaks ties.
    pub address: Ipv4Addr,
    /// Source of adverts and the MAC its addresses answer with.
    pub mac: EthernetAddress,
    pub state: State,
    /// Why it is in FAULT (tracking), if it is.
    pub fault: Option<String>,
    /// The configured priority (`vrrp NAME priority N` changes it).
    pub priority: u8,
    /// After tracking.
    pub effective: u8,
    /// The trackers that lowered the priority.
    pub lowered_by: Vec<String>,
    /// The master's address as last seen (ours while master).
    pub master: Option<Ipv4Addr>,
    pub last: Option<Transition>,
    /// `vrrp NAME release`: no preemption until it next becomes master.
    pub released: bool,
    /// When a lower-priority master was first seen (preempt_delay).
    lower_seen: Option<u64>,
    /// The master that said priority 0 last (the backup then waits only
    /// the skew time), for the transition's cause.
    left: Option<Ipv4Addr>,
    /// Transitions not yet logged (the module logs them after its step).
    pub unlogged: Vec<Transition>,
    pub counters: Counters,
}

impl Instance {
    pub fn new(cfg: VrrpConfig, link: usize, address: Ipv4Addr, mac: EthernetAddress) -> Self {
        let priority = *cfg.priority.get_ref();
        Instance {
            cfg,
            link,
            address,
            mac,
            state: State::Initialize,
            fault: None,
            priority,
            effective: priority,
            lowered_by: Vec::new(),
            master: None,
            last: None,
            released: false,
            lower_seen: None,
            left: None,
            unlogged: Vec::new(),
            counters: Counters::default(),
        }
    }

    pub fn name(&self) -> &str {
        self.cfg.name.get_ref()
    }

    pub fn vrid(&self) -> u8 {
        *self.cfg.vrid.get_ref()
    }

    pub fn version(&self) -> u8 {
        *self.cfg.version.get_ref()
    }

    /// The advert interval in centiseconds.
    pub fn advert_cs(&self) -> u16 {
        u16::try_from(self.cfg.advert_interval_ms.get_ref() / 10).unwrap_or(u16::MAX)
    }

    /// INIT, BACKUP, MASTER or FAULT.
    pub fn state_name(&self) -> &'static str {
        name_of(self.state, self.fault.is_some())
    }

    pub fn is_master(&self) -> bool {
        matches!(self.state, State::Master { .. })
    }

    /// The password as it travels (v2), zero-padded.
    pub fn password(&self) -> Option<[u8; AUTH_LEN]> {
        self.cfg.auth_password.as_ref().map(|p| {
            let mut pw = [0u8; AUTH_LEN];
            for (d, s) in pw.iter_mut().zip(p.get_ref().bytes()) {
                *d = s;
            }
            pw
        })
    }

    /// The advert this instance sends with `priority`.
    pub fn advert(&self, priority: u8) -> VrrpRepr {
        VrrpRepr {
            version: self.version(),
            vrid: self.vrid(),
            priority,
            interval_cs: self.advert_cs(),
            addresses: self.cfg.addresses.iter().map(|a| *a.get_ref()).collect(),
            password: if self.version() == 2 { self.password() } else { None },
        }
    }

    fn params(&self, preempt: bool) -> Params {
        Params { priority: self.effective, advert_cs: self.advert_cs(), preempt, address: self.address, version: self.version() }
    }

    /// Feeds one event to the state machine; records a transition with
    /// `why`; pushes what must be done.
    fn run(&mut self, event: Event, now: u64, preempt: bool, why: &str, out: &mut Vec<Out>) {
        let before = self.state_name();
        self.apply(event, now, preempt, out);
        self.note(before, why);
    }

    /// One step of the state machine; its actions into `out`.
    fn apply(&mut self, event: Event, now: u64, preempt: bool, out: &mut Vec<Out>) {
        let (state, (actions, n)) = fsm::step(self.state, &self.params(preempt), event, now);
        self.state = state;
        for a in actions.iter().take(n).flatten() {
            out.push(match *a {
                Action::SendAdvert { priority } => Out::Advert { priority },
                Action::TakeAddresses => Out::Take,
                Action::DropAddresses => Out::Drop,
            });
        }
    }

    fn note(&mut self, before: &'static str, why: &str) {
        let after = self.state_name();
        if before != after {
            self.counters.transitions += 1;
            if after == "MASTER" {
                self.counters.became_master += 1;
                self.master = Some(self.address);
                self.released = false;
                self.left = None;
            }
            let t = Transition { at: SystemTime::now(), from: before, to: after, why: why.to_string() };
            self.unlogged.push(t.clone());
            self.last = Some(t);
        }
    }

    pub fn startup(&mut self, now: u64, out: &mut Vec<Out>) {
        if self.fault.is_none() {
            self.run(Event::Startup, now, false, "started", out);
        }
    }

    /// Orderly stop: a master says priority 0 (RFC 5798 §6.4.3).
    pub fn shutdown(&mut self, now: u64, why: &str, out: &mut Vec<Out>) {
        self.run(Event::Shutdown, now, false, why, out);
    }

    /// The tracking verdict: `fault` (why) puts the instance in FAULT (a
    /// master first leaves with a priority-0 advert); `lowered` are the
    /// trackers that lower the priority by `track_weight` each.
    pub fn track(&mut self, fault: Option<String>, lowered: Vec<String>, now: u64, out: &mut Vec<Out>) {
        let weight = u16::from(*self.cfg.track_weight.get_ref());
        let down = weight.saturating_mul(lowered.len() as u16);
        self.effective = if down == 0 { self.priority } else { u8::try_from((u16::from(self.priority.min(254))).saturating_sub(down).max(1)).unwrap_or(1) };
        self.lowered_by = lowered;
        match (&self.fault, fault) {
            (None, Some(why)) => {
                let before = self.state_name();
                if !matches!(self.state, State::Initialize) {
                    self.apply(Event::Shutdown, now, false, out);
                }
                self.fault = Some(why.clone());
                self.master = None;
                self.note(before, &why);
            }
            (Some(_), None) => {
                let before = self.state_name();
                self.fault = None;
                // From INIT, as at start (the owner, 255, comes back as master).
                self.state = State::Initialize;
                self.apply(Event::Startup, now, false, out);
                self.note(before, "tracking recovered");
            }
            (Some(_), Some(why)) => self.fault = Some(why),
            (None, None) => {}
        }
    }

    /// Timers: master adverts, the backup's master-down timer.
    pub fn tick(&mut self, now: u64, preempt_hold: bool, out: &mut Vec<Out>) {
        if self.fault.is_some() {
            return;
        }
        let why = match (self.state, self.left) {
            (State::Backup { master_adver_cs, .. }, Some(src)) => {
                format!("master {src} left (priority-0 advert); waited the skew time, {} ms", self.params(false).skew_cs(master_adver_cs) * 10)
            }
            (State::Backup { master_adver_cs, .. }, None) => {
                format!("no advert from the master for {} ms (master-down interval)", self.params(false).master_down_cs(master_adver_cs) * 10)
            }
            _ => String::new(),
        };
        let preempt = self.preempt_allowed(now, preempt_hold);
        self.run(Event::Tick, now, preempt, &why, out);
    }

    fn preempt_allowed(&self, now: u64, hold: bool) -> bool {
        let delay = u64::from(*self.cfg.preempt_delay_ms.get_ref() / 10);
        self.cfg.preempt && !self.released && !hold && (delay == 0 || self.lower_seen.is_some_and(|t| now >= t + delay))
    }

    /// An advert for this instance that passed every check.
    pub fn advert_in(&mut self, priority: u8, interval_cs: u16, src: Ipv4Addr, now: u64, preempt_hold: bool, out: &mut Vec<Out>) {
        self.counters.adverts_received += 1;
        if priority == 0 {
            self.counters.priority_zero_received += 1;
        }
        self.left = (priority == 0).then_some(src);
        if self.fault.is_some() {
            return;
        }
        if priority != 0 && priority < self.effective {
            self.lower_seen.get_or_insert(now);
        } else {
            self.lower_seen = None;
        }
        let preempt = self.preempt_allowed(now, preempt_hold);
        let why = if priority == 0 {
            format!("master {src} left (priority-0 advert)")
        } else {
            format!("advert from {src} with priority {priority} (ours {})", self.effective)
        };
        let accepted = matches!(self.state, State::Backup { .. }) && priority != 0 && (!preempt || priority >= self.effective);
        self.run(Event::Advert { priority, interval_cs, src }, now, preempt, &why, out);
        if accepted || (matches!(self.state, State::Backup { .. }) && priority != 0) {
            self.master = Some(src);
        }
        if priority == 0 && matches!(self.state, State::Backup { .. }) {
            self.master = None;
        }
    }

    /// The instance's checks of an advert for its VRID that passed the
    /// header checks (`frames::receive`), in RFC 5798 §7.1's order (RFC
    /// 3768 §7.1 for v2's password and interval): `Err(reason)` discards
    /// it; `Ok(Some(reason))` accepts it and counts the reason (the
    /// owner's mismatched addresses); `Ok(None)` accepts it.
    pub fn check_advert(&self, src: Ipv4Addr, r: &VrrpRepr) -> Result<Option<&'static str>, &'static str> {
        // "MUST verify that the VRID is configured on the receiving
        // interface and the local router is not the IPvX address owner
        // (Priority = 255 (decimal))": the owner discards every advert and
        // stays master (the fsm does too).
        if self.effective == 255 {
            return Err("address-owner");
        }
        if r.version != self.version() {
            return Err("bad-version");
        }
        if !self.cfg.unicast_peers.is_empty() && !self.cfg.unicast_peers.iter().any(|p| *p.get_ref() == src) {
            return Err("unknown-peer");
        }
        // v2's password travels in the clear in every advert: it keeps
        // misconfigured routers apart, it authenticates nothing.
        if self.version() == 2 && r.password != self.password() {
            return Err("bad-auth");
        }
        // An interval of 0 would make the master-down timer fire at once
        // (`frames::receive` refuses it before); v2 wants the configured one.
        if r.interval_cs == 0 || (self.version() == 2 && r.interval_cs != self.advert_cs()) {
            return Err("bad-interval");
        }
        let ours = &self.cfg.addresses;
        if r.addresses.len() != ours.len() || !r.addresses.iter().all(|a| ours.iter().any(|o| o.get_ref() == a)) {
            // "If the packet was not generated by the address owner
            // (Priority does not equal 255 (decimal)), the receiver MUST
            // drop the packet, otherwise continue processing." Both are
            // counted (the RFC's "SHOULD log the event").
            return if r.priority == 255 { Ok(Some("address-mismatch (owner, accepted)")) } else { Err("address-mismatch") };
        }
        Ok(None)
    }

    /// Joins a sync-group member's change: to master, or back to backup.
    pub fn follow(&mut self, to_master: bool, now: u64, why: &str, out: &mut Vec<Out>) {
        if self.fault.is_some() {
            return;
        }
        match (self.state, to_master) {
            (State::Backup { master_adver_cs, .. }, true) => {
                self.run(Event::Tick, now, false, why, out);
                if !self.is_master() {
                    // Its master-down time had not come: force it.
                    self.state = State::Backup { master_adver_cs, master_down_at: now };
                    self.run(Event::Tick, now, false, why, out);
                }
            }
            (State::Master { .. }, false) => {
                let before = self.state_name();
                self.step_down(now, out);
                self.note(before, why);
            }
            _ => {}
        }
    }

    /// `vrrp NAME release`: a master hands over (priority-0 advert) and
    /// does not preempt until it becomes master again.
    pub fn release(&mut self, now: u64, out: &mut Vec<Out>) -> bool {
        if !self.is_master() {
            return false;
        }
        let before = self.state_name();
        self.released = true;
        out.push(Out::Advert { priority: 0 });
        self.step_down(now, out);
        self.note(before, "released by the operator");
        true
    }

    /// A master becomes backup without a peer's advert (its group left,
    /// or the operator released it): addresses dropped, the master-down
    /// timer started.
    fn step_down(&mut self, now: u64, out: &mut Vec<Out>) {
        let cs = self.advert_cs();
        self.state = State::Backup { master_adver_cs: cs, master_down_at: now + self.params(false).master_down_cs(cs) };
        out.push(Out::Drop);
        self.master = None;
    }

    pub fn refuse(&mut self, reason: &'static str) {
        *self.counters.refused.entry(reason).or_default() += 1;
    }
}

fn name_of(s: State, fault: bool) -> &'static str {
    match (s, fault) {
        (_, true) => "FAULT",
        (State::Initialize, _) => "INIT",
        (State::Backup { .. }, _) => "BACKUP",
        (State::Master { .. }, _) => "MASTER",
    }
}

#[cfg(test)]
mod tests;
