//! The EAL's arguments, and packet capture.

use super::Runtime;
use crate::config::Config;
use crate::out::say;

/// The EAL arguments for `cfg`: the operator's, plus lcores, devices and a
/// file prefix.
pub fn eal_args(cfg: &Config) -> Vec<String> {
    let p = &cfg.platform;
    let mut args = p.eal_args.clone();
    let mut lcores = vec![*p.control_lcore.get_ref()];
    lcores.extend(p.worker_lcore_ids());
    let list: Vec<String> = lcores.iter().map(u32::to_string).collect();
    if !args.iter().any(|a| a == "--lcores" || a.starts_with("--lcores=")) {
        args.extend(["-l".into(), list.join(",")]);
    }
    args.extend(["--main-lcore".into(), p.control_lcore.get_ref().to_string()]);
    if !args.iter().any(|a| a.starts_with("--file-prefix")) {
        args.push("--file-prefix=furiwake".into());
    }
    let mut seen = std::collections::HashSet::new();
    for i in &cfg.interfaces {
        // VLAN interfaces of one port: the device once.
        if !seen.insert(i.dev_name()) {
            continue;
        }
        match &i.bond {
            None => {
                args.push(if i.is_pci() { "-a" } else { "--vdev" }.into());
                args.push(i.device.get_ref().clone());
            }
            // The members first: the bonding PMD finds them by name when
            // it is probed (in command-line order).
            Some(b) => {
                let mut bond = format!("{},mode={}", i.device.get_ref(), b.mode.get_ref().dpdk_mode());
                for m in b.members.get_ref() {
                    let m = m.get_ref();
                    args.push(if crate::config::model::is_pci_address(m) { "-a" } else { "--vdev" }.into());
                    args.push(m.clone());
                    bond.push_str(&format!(",slave={}", crate::config::model::dev_name(m)));
                }
                if *b.mode.get_ref() == crate::config::BondMode::Lacp {
                    // Spread flows by addresses and ports, as Linux's
                    // layer3+4 (each flow stays on one member).
                    bond.push_str(",xmit_policy=l34");
                }
                args.extend(["--vdev".into(), bond]);
            }
        }
    }
    args
}

impl Runtime {
    /// pdump, so `dpdk-dumpcap` (a DPDK secondary process) can capture the
    /// ports; secondaries need the primary's memory in hugepages.
    pub fn enable_capture(&mut self) {
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
}
