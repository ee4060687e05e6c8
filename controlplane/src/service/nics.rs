//! The data NICs a configuration names by PCI address, bound to a
//! userspace I/O driver before DPDK starts and given back to the kernel
//! driver they had at stop (as `dpdk-devbind.py` does by hand): through
//! sysfs, `driver_override` and `drivers_probe`. What each NIC had is
//! recorded in a state file under `/run`, so `furiwake nics release`
//! (the service's `ExecStopPost=`) gives them back after a crash too.
//!
//! NICs whose PMD works beside the kernel driver (mlx5, mlx4: the
//! "bifurcated" model) keep it; NICs already on a userspace driver are
//! left as the operator bound them.

use crate::config::{Config, PciDriver};
use std::fs;
use std::path::{Path, PathBuf};

/// Where the drivers the NICs had are recorded.
pub const STATE: &str = "/run/furiwake/nics";

/// Drivers DPDK's PMDs use through the kernel (no binding).
const BIFURCATED: [&str; 2] = ["mlx5_core", "mlx4_core"];
/// Userspace I/O drivers.
const USERSPACE: [&str; 3] = ["vfio-pci", "uio_pci_generic", "igb_uio"];

/// The sysfs tree (`/sys`; another root in tests).
pub struct Sysfs {
    root: PathBuf,
}

/// What to do with one NIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Bind to `to`, remembering `from` (None: no driver had it).
    Bind { addr: String, from: Option<String>, to: &'static str },
    /// Leave it: the reason.
    Leave { addr: String, why: String },
}

/// The PCI addresses of `cfg`'s data NICs (members of bonds included),
/// in sysfs's form (`DDDD:BB:DD.F`), each once.
pub fn pci_addresses(cfg: &Config) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |dev: &str| {
        if crate::config::model::is_pci_address(dev) {
            let a = dev.split(',').next().unwrap_or(dev).to_ascii_lowercase();
            let a = if a.matches(':').count() == 1 { format!("0000:{a}") } else { a };
            if !out.contains(&a) {
                out.push(a);
            }
        }
    };
    for i in &cfg.interfaces {
        add(i.device.get_ref());
        for m in i.bond.iter().flat_map(|b| b.members.get_ref()) {
            add(m.get_ref());
        }
    }
    out
}

/// The plan for one NIC whose current driver is `current`; `target` is
/// the userspace driver chosen for the box.
pub fn plan(addr: &str, current: Option<&str>, target: &'static str) -> Step {
    match current {
        Some(d) if BIFURCATED.contains(&d) => Step::Leave { addr: addr.into(), why: format!("{d}: DPDK drives it beside its kernel driver") },
        Some(d) if USERSPACE.contains(&d) => Step::Leave { addr: addr.into(), why: format!("already on {d}") },
        from => Step::Bind { addr: addr.into(), from: from.map(str::to_string), to: target },
    }
}

impl Sysfs {
    pub fn new(root: impl Into<PathBuf>) -> Sysfs {
        Sysfs { root: root.into() }
    }

    fn dev(&self, addr: &str) -> PathBuf {
        self.root.join("bus/pci/devices").join(addr)
    }

    /// The driver bound to `addr`, if any.
    pub fn driver(&self, addr: &str) -> Result<Option<String>, String> {
        let dev = self.dev(addr);
        if !dev.exists() {
            return Err(format!("{addr}: no such PCI device"));
        }
        Ok(fs::read_link(dev.join("driver")).ok().and_then(|l| l.file_name().map(|n| n.to_string_lossy().into_owned())))
    }

    fn write(&self, path: &Path, value: &str) -> Result<(), String> {
        fs::write(path, value).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Moves `addr` to `driver` (`""`: whichever kernel driver claims it).
    pub fn rebind(&self, addr: &str, driver: &str) -> Result<(), String> {
        let dev = self.dev(addr);
        if dev.join("driver").exists() {
            self.write(&dev.join("driver/unbind"), addr)?;
        }
        self.write(&dev.join("driver_override"), if driver.is_empty() { "\n" } else { driver })?;
        // drivers_probe reports an error when no driver takes the device;
        // what it is bound to afterwards is checked below.
        let _ = self.write(&self.root.join("bus/pci/drivers_probe"), addr);
        match (driver, self.driver(addr)?) {
            ("", _) => Ok(()),
            (want, Some(got)) if got == want => Ok(()),
            (want, got) => Err(format!("{addr}: {want} did not take it (bound to {})", got.as_deref().unwrap_or("nothing"))),
        }
    }

    /// Refuses a device that is not a network controller (PCI class 02),
    /// or whose kernel interface is up: a wrong address in the
    /// configuration must not take the disk controller or the
    /// management NIC from the kernel (as `dpdk-devbind.py` refuses an
    /// active interface).
    pub fn check_bindable(&self, addr: &str) -> Result<(), String> {
        let dev = self.dev(addr);
        let class = fs::read_to_string(dev.join("class")).map_err(|e| format!("{addr}: class: {e}"))?;
        if !class.trim().starts_with("0x02") {
            return Err(format!("{addr}: not a network controller (PCI class {}); check the address in the configuration", class.trim()));
        }
        for e in kernel_interfaces(&dev) {
            let name = e.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            // IFF_UP; a flags file that cannot be read counts as up.
            let flags = fs::read_to_string(e.join("flags")).ok().and_then(|f| u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok());
            if flags.is_none_or(|f| f & 1 != 0) {
                return Err(format!("{addr}: its kernel interface {name} is up; take it down (ip link set {name} down) or set [platform] pci_driver = \"none\""));
            }
        }
        Ok(())
    }

    /// True when the kernel has an IOMMU group (vfio-pci's normal mode).
    fn has_iommu(&self) -> bool {
        fs::read_dir(self.root.join("kernel/iommu_groups")).is_ok_and(|mut d| d.next().is_some())
    }

    /// The userspace driver for this box: `want`, or for `auto` vfio-pci
    /// (with no-IOMMU mode where there is no IOMMU) when the kernel has
    /// it, else uio_pci_generic. Loads the module.
    pub fn userspace_driver(&self, want: PciDriver) -> Result<&'static str, String> {
        let vfio = || -> Result<(), String> {
            modprobe("vfio-pci")?;
            if !self.has_iommu() {
                let p = self.root.join("module/vfio/parameters/enable_unsafe_noiommu_mode");
                if !p.exists() {
                    return Err("no IOMMU, and this kernel's vfio has no no-IOMMU mode".into());
                }
                self.write(&p, "1")?;
            }
            Ok(())
        };
        match want {
            PciDriver::VfioPci => vfio().map(|()| "vfio-pci"),
            PciDriver::UioPciGeneric => modprobe("uio_pci_generic").map(|()| "uio_pci_generic"),
            PciDriver::Auto => match vfio() {
                Ok(()) => Ok("vfio-pci"),
                Err(e) => {
                    log::info!("nics: vfio-pci: {e}; using uio_pci_generic");
                    modprobe("uio_pci_generic").map(|()| "uio_pci_generic")
                }
            },
            PciDriver::None => Err("pci_driver is none".into()),
        }
    }
}

/// The kernel interfaces of a PCI device: `DEV/net/IF`, or, for virtio,
/// `DEV/virtioN/net/IF` (the interface hangs off the virtio device).
fn kernel_interfaces(dev: &Path) -> Vec<PathBuf> {
    let ifaces = |d: PathBuf| fs::read_dir(d.join("net")).into_iter().flatten().flatten().map(|e| e.path()).collect::<Vec<_>>();
    let mut out = ifaces(dev.to_path_buf());
    for e in fs::read_dir(dev).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with("virtio") {
            out.extend(ifaces(e.path()));
        }
    }
    out
}

fn modprobe(module: &str) -> Result<(), String> {
    match std::process::Command::new("modprobe").arg(module).status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("modprobe {module}: {s}")),
        Err(e) => Err(format!("modprobe {module}: {e}")),
    }
}

/// Binds `cfg`'s PCI NICs (`[platform] pci_driver`), recording in `state`
/// what each had. Returns one line per NIC for the log.
pub fn bind(cfg: &Config, sys: &Sysfs, state: &Path) -> Result<Vec<String>, String> {
    let addrs = pci_addresses(cfg);
    if addrs.is_empty() || cfg.platform.pci_driver == PciDriver::None {
        return Ok(Vec::new());
    }
    let mut steps = Vec::new();
    let mut target: Option<&'static str> = None;
    for a in &addrs {
        let current = sys.driver(a)?;
        let keep = current.as_deref().is_some_and(|d| BIFURCATED.contains(&d) || USERSPACE.contains(&d));
        let to = match target {
            Some(t) => t,
            None if keep => "unused",
            None => *target.insert(sys.userspace_driver(cfg.platform.pci_driver)?),
        };
        steps.push(plan(a, current.as_deref(), to));
    }
    let (mut recorded, _) = read_state(state);
    let mut lines = Vec::new();
    for s in steps {
        match s {
            Step::Leave { addr, why } => lines.push(format!("{addr}: left as it is ({why})")),
            Step::Bind { addr, from, to } => {
                sys.check_bindable(&addr)?;
                // Recorded first: a crash between the two still gives it back.
                recorded.retain(|(a, _)| *a != addr);
                recorded.push((addr.clone(), from.clone().unwrap_or_default()));
                write_state(state, &recorded)?;
                sys.rebind(&addr, to)?;
                lines.push(format!("{addr}: {} -> {to}", from.as_deref().unwrap_or("no driver")));
            }
        }
    }
    Ok(lines)
}

/// Gives every NIC recorded in `state` back to its kernel driver, then
/// removes the record. One line per NIC; errors are reported, and the
/// others still released.
pub fn release(sys: &Sysfs, state: &Path) -> (Vec<String>, bool) {
    let (records, bad) = read_state(state);
    let mut lines: Vec<String> = bad.iter().map(|l| format!("{}: ignored a line that is not `ADDRESS DRIVER`: {l:?}", state.display())).collect();
    let mut ok = bad.is_empty();
    let mut left = Vec::new();
    for (addr, from) in records {
        if sys.driver(&addr).is_err() {
            // Gone (hot-unplugged): nothing to give back, nothing to keep.
            lines.push(format!("{addr}: no longer present; forgotten"));
            continue;
        }
        match sys.rebind(&addr, "") {
            Ok(()) => {
                let now = sys.driver(&addr).ok().flatten();
                if !from.is_empty() && now.as_deref() != Some(from.as_str()) {
                    ok = false;
                    lines.push(format!("{addr}: given back, but bound to {} (had {from})", now.as_deref().unwrap_or("nothing")));
                } else {
                    lines.push(format!("{addr}: back on {}", now.as_deref().unwrap_or("no driver")));
                }
            }
            Err(e) => {
                ok = false;
                lines.push(format!("{addr}: {e}"));
                left.push((addr, from));
            }
        }
    }
    let kept = if left.is_empty() { fs::remove_file(state).or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e.to_string()) }) } else { write_state(state, &left) };
    if let Err(e) = kept {
        ok = false;
        lines.push(format!("{}: {e}", state.display()));
    }
    (lines, ok)
}

/// `ADDR DRIVER` lines (DRIVER empty: none), and the lines that are not.
fn read_state(state: &Path) -> (Vec<(String, String)>, Vec<String>) {
    let text = fs::read_to_string(state).unwrap_or_default();
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for l in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut it = l.split_whitespace();
        match (it.next(), it.next(), it.next()) {
            (Some(a), d, None) if crate::config::model::is_pci_address(a) && d.is_none_or(|d| d.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')) => {
                good.push((a.to_string(), d.unwrap_or("").to_string()));
            }
            _ => bad.push(l.to_string()),
        }
    }
    (good, bad)
}

/// Writes the records atomically (a temporary file renamed over it).
fn write_state(state: &Path, recs: &[(String, String)]) -> Result<(), String> {
    if let Some(d) = state.parent() {
        fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let text: String = recs.iter().map(|(a, d)| format!("{a} {d}\n")).collect();
    let tmp = state.with_extension("tmp");
    fs::write(&tmp, text).and_then(|()| fs::rename(&tmp, state)).map_err(|e| format!("{}: {e}", state.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_addresses_come_from_interfaces_and_bond_members_once_each() {
        let cfg = Config::parse(
            "t.toml",
            r#"
[platform]
worker_lcores = [1]
[[interface]]
name = "a"
device = "0000:00:04.0"
address = "192.0.2.1/24"
[[interface]]
name = "a10"
device = "0000:00:04.0"
vlan = 10
address = "198.51.100.1/24"
[[interface]]
name = "b"
device = "net_bonding0"
address = "203.0.113.1/24"
bond = { mode = "active-backup", members = ["00:05.0", "0000:00:06.0,rx_vec_en=0"] }
[[interface]]
name = "c"
device = "net_af_packet0,iface=x"
address = "203.0.114.1/24"
"#,
        )
        .unwrap();
        assert_eq!(pci_addresses(&cfg), ["0000:00:04.0", "0000:00:05.0", "0000:00:06.0"]);
    }

    #[test]
    fn bifurcated_and_userspace_nics_are_left_others_bound() {
        assert!(matches!(plan("0000:00:04.0", Some("mlx5_core"), "vfio-pci"), Step::Leave { .. }));
        assert!(matches!(plan("0000:00:04.0", Some("vfio-pci"), "uio_pci_generic"), Step::Leave { .. }));
        assert_eq!(
            plan("0000:00:04.0", Some("virtio-pci"), "vfio-pci"),
            Step::Bind { addr: "0000:00:04.0".into(), from: Some("virtio-pci".into()), to: "vfio-pci" }
        );
        assert_eq!(plan("0000:00:04.0", None, "uio_pci_generic"), Step::Bind { addr: "0000:00:04.0".into(), from: None, to: "uio_pci_generic" });
    }

    #[test]
    fn only_network_controllers_whose_interface_is_down_are_taken() {
        let root = std::env::temp_dir().join(format!("furiwake-sysfs-{}", std::process::id()));
        let dev = |a: &str, class: &str, flags: Option<&str>| {
            let d = root.join("bus/pci/devices").join(a);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("class"), format!("{class}\n")).unwrap();
            if let Some(f) = flags {
                fs::create_dir_all(d.join("net/ens4")).unwrap();
                fs::write(d.join("net/ens4/flags"), format!("{f}\n")).unwrap();
            }
        };
        dev("0000:00:03.0", "0x010802", None);
        dev("0000:00:04.0", "0x020000", Some("0x1003"));
        dev("0000:00:05.0", "0x020000", Some("0x1002"));
        dev("0000:00:06.0", "0x020000", None);
        // virtio-net: the interface under the virtio device.
        let v = root.join("bus/pci/devices/0000:00:08.0");
        fs::create_dir_all(v.join("virtio2/net/ens8")).unwrap();
        fs::write(v.join("class"), "0x020000\n").unwrap();
        fs::write(v.join("virtio2/net/ens8/flags"), "0x1003\n").unwrap();
        let sys = Sysfs::new(&root);
        assert!(sys.check_bindable("0000:00:08.0").unwrap_err().contains("kernel interface ens8 is up"));
        fs::write(v.join("virtio2/net/ens8/flags"), "0x1002\n").unwrap();
        assert_eq!(sys.check_bindable("0000:00:08.0"), Ok(()));
        fs::remove_file(v.join("virtio2/net/ens8/flags")).unwrap();
        assert!(sys.check_bindable("0000:00:08.0").is_err(), "unreadable flags count as up");
        assert!(sys.check_bindable("0000:00:03.0").unwrap_err().contains("not a network controller (PCI class 0x010802)"));
        assert!(sys.check_bindable("0000:00:04.0").unwrap_err().contains("kernel interface ens4 is up"));
        assert_eq!(sys.check_bindable("0000:00:05.0"), Ok(()));
        assert_eq!(sys.check_bindable("0000:00:06.0"), Ok(()));
        assert!(sys.driver("0000:00:07.0").unwrap_err().contains("no such PCI device"));
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn the_state_file_round_trips_and_ignores_what_is_not_a_record() {
        let d = std::env::temp_dir().join(format!("furiwake-nics-{}", std::process::id()));
        let f = d.join("nics");
        write_state(&f, &[("0000:00:04.0".into(), "virtio-pci".into()), ("0000:00:05.0".into(), String::new())]).unwrap();
        fs::write(&f, format!("{}garbage line\n../../etc x\n0000:00:06.0 a/b\n", fs::read_to_string(&f).unwrap())).unwrap();
        let (good, bad) = read_state(&f);
        assert_eq!(good, [("0000:00:04.0".to_string(), "virtio-pci".to_string()), ("0000:00:05.0".to_string(), String::new())]);
        assert_eq!(bad, ["garbage line", "../../etc x", "0000:00:06.0 a/b"]);
        let _ = fs::remove_dir_all(&d);
    }
}
