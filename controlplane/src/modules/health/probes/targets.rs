//! The targets' side of the engine: rise and fall, what the console
//! reads, retargeting on a configuration change, stopping probes.

use super::super::judge::{kill_group, Outcome};
use super::super::ports::Rotation;
use super::{Change, CheckState, CheckStatus, Pending, Probes, Target, TargetState, NONE};
use std::collections::HashMap;
use std::time::{Duration, Instant};

impl Probes {
    /// Counts `outcome` of check `ci` of target `ti` towards rise/fall.
    pub(super) fn record(&mut self, ti: usize, ci: usize, outcome: Outcome, changes: &mut Vec<Change>) {
        let Some(ts) = self.targets.get_mut(ti) else { return };
        let (Some(check), Some(st)) = (ts.target.checks.get(ci), ts.checks.get_mut(ci)) else { return };
        let mut rtt = None;
        match outcome {
            Outcome::Pass(d) => {
                st.ok_run += 1;
                st.fail_run = 0;
                if st.ok_run >= (*check.rise.get_ref()).max(1) {
                    st.passing = true;
                }
                let us = d.as_secs_f64() * 1e6;
                ts.rtt_ewma_us = Some(ts.rtt_ewma_us.map_or(us, |e| e * 0.8 + us * 0.2));
                self.rtt_changed.push(ti);
                rtt = Some(d);
            }
            Outcome::Fail(reason) => {
                self.counters.failures += 1;
                st.fail_run += 1;
                st.ok_run = 0;
                if st.fail_run >= (*check.fall.get_ref()).max(1) {
                    st.passing = false;
                }
                st.last_reason = reason;
            }
        }
        let up = ts.checks.iter().all(|c| c.passing);
        if up != ts.up {
            ts.up = up;
            self.counters.state_changes += 1;
            let reason = if up { String::new() } else { ts.checks.iter().find(|c| !c.passing).map(|c| c.last_reason.clone()).unwrap_or_default() };
            changes.push(Change { target: ti, up, reason, rtt });
        }
    }

    /// The target of change `i`.
    pub fn target(&self, i: usize) -> Option<&Target> {
        self.targets.get(i).map(|t| &t.target)
    }

    /// Every target, for the console.
    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        self.targets.iter().map(|t| &t.target)
    }

    /// Where each check of snapshot server `server` stands, for the
    /// console (`show servers`, `show health`); empty without checks.
    pub fn check_status(&self, server: usize) -> Vec<CheckStatus> {
        let Some(t) = self.target_of(server) else { return Vec::new() };
        t.target
            .checks
            .iter()
            .zip(&t.checks)
            .map(|(h, c)| CheckStatus {
                name: h.name.get_ref().clone(),
                kind: h.kind,
                passing: c.passing,
                ok_run: c.ok_run,
                fail_run: c.fail_run,
                last_reason: c.last_reason.clone(),
            })
            .collect()
    }

    /// Replaces the targets (a configuration change): a target with the
    /// same server slot, address and checks keeps its state, probes in
    /// flight included; the others start down, as at start, their first
    /// probes spread over their interval so a large pool does not burst;
    /// the probes of targets that went are stopped.
    pub fn retarget(&mut self, targets: Vec<Target>, now: Instant) {
        let same = |a: &Target, b: &Target| {
            // By value: a check moved in the file is the same check.
            a.server == b.server && a.addr == b.addr && a.link == b.link && a.nexthop == b.nexthop && a.checks == b.checks && a.via == b.via
        };
        let mut old: HashMap<usize, TargetState> = std::mem::take(&mut self.targets).into_iter().map(|t| (t.target.server, t)).collect();
        self.generation = self.generation.wrapping_add(1);
        // The probes in flight keep their deadlines (`deadlines` stays).
        self.starts.clear();
        self.by_server.clear();
        // Targets that stay but changed (a check, a next hop): their
        // probes in flight stop (their checks are new); their health and
        // RTT carry over until the new checks judge.
        let mut changed: Vec<TargetState> = Vec::new();
        for (ti, t) in targets.into_iter().enumerate() {
            let state = match old.remove(&t.server) {
                Some(mut st) if same(&st.target, &t) => {
                    st.target = t;
                    st
                }
                was => {
                    let (up, rtt_ewma_us) = was.as_ref().map_or((false, None), |o| (o.up, o.rtt_ewma_us));
                    changed.extend(was);
                    // A server that was up stays up: its new checks start
                    // passing (they fall on `fall` failures, as any).
                    let checks = t.checks.iter().map(|_| CheckState { passing: up, ..CheckState::default() }).collect();
                    let ports = Rotation::new(addr_word(t.addr.ip()), t.addr.port(), self.secret);
                    TargetState { target: t, checks, up, rtt_ewma_us, ports }
                }
            };
            if self.by_server.len() <= state.target.server {
                self.by_server.resize(state.target.server + 1, NONE);
            }
            self.by_server[state.target.server] = ti as u32;
            self.targets.push(state);
        }
        // Kept checks keep their time; new ones spread over one interval,
        // by their place among the new ones (servers a reload appends do
        // not bunch at the end of it, probed late by the pace each time).
        let fresh = self.targets.iter().filter(|t| t.checks.iter().any(|c| c.next_at.is_none())).count().max(1) as u64;
        let mut j = 0u64;
        for (ti, t) in self.targets.iter_mut().enumerate() {
            let new = t.checks.iter().any(|c| c.next_at.is_none());
            for (ci, (c, h)) in t.checks.iter_mut().zip(&t.target.checks).enumerate() {
                let interval = u64::from(*h.interval_ms.get_ref());
                let at = c.next_at.unwrap_or(now + Duration::from_millis(interval * j / fresh + 10 * ci as u64));
                c.next_at = Some(at);
                self.starts.push(at, (ti as u32, ci as u16, self.generation));
            }
            j += u64::from(new);
            // Probes in flight name their target by index.
            for pid in t.checks.iter().filter_map(|c| c.probe) {
                if let Some(p) = self.probes.get_mut(pid).and_then(Option::as_mut) {
                    p.target = ti;
                }
            }
        }
        self.rtt_changed = (0..self.targets.len()).collect();
        let per_sec: f64 = self.targets.iter().flat_map(|t| &t.target.checks).map(|c| 1000.0 / f64::from((*c.interval_ms.get_ref()).max(1))).sum();
        self.pace.set_rate(per_sec);
        for st in old.into_values().chain(changed) {
            for pid in st.checks.iter().filter_map(|c| c.probe) {
                self.stop(pid);
            }
        }
    }

    /// Ends probe `pid` unjudged (its target went, or shutdown).
    pub(super) fn stop(&mut self, pid: usize) {
        let Some(p) = self.probes.get_mut(pid).and_then(Option::as_mut) else { return };
        let pending = std::mem::replace(&mut p.pending, Pending::Done);
        p.target = usize::MAX;
        let tcp = matches!(pending, Pending::Tcp { .. });
        match pending {
            Pending::Done => return,
            Pending::Script { mut child } => kill_group(&mut child),
            _ => {}
        }
        if let Some((li, si, h, _)) = p.at {
            if let Some(s) = self.links.get_mut(li).and_then(|l| l.shards.get_mut(si)) {
                s.close(h, tcp);
            }
        }
        self.finished.push(pid);
    }

    /// Ends every probe (scripts killed).
    pub fn shutdown(&mut self) {
        for pid in 0..self.probes.len() {
            self.stop(pid);
        }
    }
}

/// 32 bits of a server's address for its port rotation's key.
fn addr_word(a: std::net::IpAddr) -> u32 {
    match a {
        std::net::IpAddr::V4(v) => u32::from(v),
        std::net::IpAddr::V6(v) => {
            let x = u128::from(v);
            (x as u32) ^ ((x >> 32) as u32) ^ ((x >> 64) as u32) ^ ((x >> 96) as u32)
        }
    }
}
