//! What a running appliance cannot change without a restart. Configurations
//! are compared by value: `toml::Spanned` compares its value alone, so the
//! same file at other byte offsets compares equal.

use super::model::Config;

/// What a running appliance cannot change: ports, lcores and memory
/// (`[platform]`, `[[interface]]`), the workers' timeouts, the management
/// and console sockets. Returns which, for the operator.
pub fn restart_needed(old: &Config, new: &Config) -> Result<(), String> {
    let mut differs = Vec::new();
    if old.platform != new.platform {
        differs.push("[platform]");
    }
    let ifaces = |c: &Config| {
        c.interfaces
            .iter()
            .map(|i| {
                let bond = i.bond.as_ref().map(|b| (*b.mode.get_ref(), b.members.get_ref().iter().map(|m| m.get_ref().clone()).collect::<Vec<_>>()));
                (i.name.get_ref().clone(), i.device.get_ref().clone(), i.address.to_string(), i.address6.map(|a| a.to_string()), i.vlan.as_ref().map(|v| *v.get_ref()), i.mtu.as_ref().map(|m| *m.get_ref()), bond, i.rss)
            })
            .collect::<Vec<_>>()
    };
    if ifaces(old) != ifaces(new) {
        differs.push("[[interface]]");
    }
    if old.timeouts != new.timeouts {
        differs.push("[timeouts]");
    }
    if old.defence != new.defence {
        differs.push("[defence]");
    }
    // The host link and the engine's threads are made at start.
    if old.l7 != new.l7 {
        differs.push("[l7]");
    }
    if old.has_l7() != new.has_l7() {
        differs.push("the first or last protocol = \"http\" virtual server (the host link)");
    }
    if old.management.listen != new.management.listen {
        differs.push("[management]");
    }
    if old.console != new.console {
        differs.push("[console]");
    }
    if old.vrrp != new.vrrp {
        differs.push("[[vrrp]]");
    }
    // The keys change at once (a re-keying: README, "Re-keying the sync").
    let sync_same = match (&old.sync, &new.sync) {
        (Some(a), Some(b)) => a.same_but_keys(b),
        (a, b) => a == b,
    };
    if !sync_same {
        differs.push("[sync] (but its keys)");
    }
    // Source-NAT port pools are made once per address.
    if old.snat != new.snat {
        differs.push("[[snat]]");
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
        let c = Config::parse("c", &crate::config::render(&a)).unwrap();
        for other in [&b, &c] {
            assert_eq!(restart_needed(&a, other), Ok(()));
            assert_eq!(a.health_checks, other.health_checks, "same checks at other offsets");
        }
        let mut d = b.clone();
        *d.platform.idle_sleep_us.get_mut() += 1;
        assert!(restart_needed(&a, &d).unwrap_err().contains("[platform]"));
    }
}
