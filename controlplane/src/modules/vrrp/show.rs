//! VRRP's console face (`show vrrp`), metrics and report line.

use super::Vrrp;
use crate::modules::metrics::{labels, Text};
use crate::modules::text::table;
use std::fmt::Write as _;
use std::time::SystemTime;

fn ago(t: SystemTime) -> String {
    SystemTime::now().duration_since(t).map_or("now".into(), |d| format!("{:.1}s ago", d.as_secs_f64()))
}

impl Vrrp {
    /// `show vrrp`: each instance's state, priorities, master, last
    /// transition and why; then the adverts counted.
    pub fn show(&self) -> String {
        if self.instances.is_empty() {
            return "no [[vrrp]] instance configured".into();
        }
        let rows: Vec<Vec<String>> = self
            .instances
            .iter()
            .map(|i| {
                let lowered = if i.lowered_by.is_empty() { String::new() } else { format!(" (lowered by: {})", i.lowered_by.join(", ")) };
                vec![
                    i.name().to_string(),
                    format!("{}/{}", i.cfg.interface.get_ref(), i.vrid()),
                    format!("v{}", i.version()),
                    i.state_name().to_string(),
                    i.priority.to_string(),
                    format!("{}{lowered}", i.effective),
                    i.master.map_or("-".into(), |m| m.to_string()),
                    i.cfg.group.as_ref().map_or("-".into(), |g| g.get_ref().clone()),
                ]
            })
            .collect();
        let mut out = table(&["INSTANCE", "INTERFACE/VRID", "VER", "STATE", "PRIORITY", "EFFECTIVE", "MASTER", "GROUP"], &rows);
        out.push('\n');
        for i in &self.instances {
            let _ = write!(out, "\n{}: addresses {}", i.name(), i.cfg.addresses.iter().map(|a| a.get_ref().to_string()).collect::<Vec<_>>().join(", "));
            if let Some(f) = &i.fault {
                let _ = write!(out, "; FAULT: {f}");
            }
            if i.released {
                out.push_str("; released (no preemption)");
            }
            match &i.last {
                Some(t) => {
                    let _ = write!(out, "\n  last transition {} -> {} {} because {}", t.from, t.to, ago(t.at), t.why);
                }
                None => out.push_str("\n  no transition yet"),
            }
            let c = &i.counters;
            let _ = write!(
                out,
                "\n  adverts sent {} (priority 0: {}), received {} (priority 0: {}); became master {} times",
                c.adverts_sent, c.priority_zero_sent, c.adverts_received, c.priority_zero_received, c.became_master
            );
            for (r, n) in &c.refused {
                let _ = write!(out, "\n  refused {r}: {n}");
            }
        }
        for (r, n) in &self.refused {
            let _ = write!(out, "\nadverts refused {r}: {n}");
        }
        if self.hold {
            out.push_str("\npreemption held: waiting for the peer's bulk dump");
        }
        out
    }

    /// The instances' families.
    pub fn metrics(&self, t: &mut Text) {
        if self.instances.is_empty() {
            return;
        }
        let per = |f: &dyn Fn(&super::Instance) -> u64| self.instances.iter().map(|i| (labels(&[("instance", i.name())]), f(i))).collect::<Vec<_>>();
        let states: Vec<(String, u64)> = self
            .instances
            .iter()
            .flat_map(|i| ["INIT", "BACKUP", "MASTER", "FAULT"].into_iter().map(move |s| (labels(&[("instance", i.name()), ("state", s)]), u64::from(i.state_name() == s))))
            .collect();
        t.family("vrrp_state", "gauge", "1 for the state each VRRP instance is in.", states);
        t.family("vrrp_priority", "gauge", "Configured priority.", per(&|i| u64::from(i.priority)));
        t.family("vrrp_effective_priority", "gauge", "Priority after tracking.", per(&|i| u64::from(i.effective)));
        t.family("vrrp_transitions_total", "counter", "State changes.", per(&|i| i.counters.transitions));
        t.family("vrrp_became_master_total", "counter", "Transitions to MASTER.", per(&|i| i.counters.became_master));
        t.family("vrrp_adverts_sent_total", "counter", "Adverts sent.", per(&|i| i.counters.adverts_sent));
        t.family("vrrp_adverts_received_total", "counter", "Adverts accepted.", per(&|i| i.counters.adverts_received));
        let mut refused: Vec<(String, u64)> = Vec::new();
        for i in &self.instances {
            for (r, n) in &i.counters.refused {
                refused.push((labels(&[("instance", i.name()), ("reason", r)]), *n));
            }
        }
        for (r, n) in &self.refused {
            refused.push((labels(&[("instance", ""), ("reason", r)]), *n));
        }
        t.family("vrrp_adverts_refused_total", "counter", "Adverts refused, by reason.", refused);
    }

    /// The report's `vrrp:` line.
    pub fn report(&self, s: &mut String) {
        for i in &self.instances {
            let _ = writeln!(
                s,
                "vrrp {}: state {} priority {} effective {} adverts_sent {} adverts_received {} became_master {}",
                i.name(),
                i.state_name(),
                i.priority,
                i.effective,
                i.counters.adverts_sent,
                i.counters.adverts_received,
                i.counters.became_master
            );
        }
    }
}
