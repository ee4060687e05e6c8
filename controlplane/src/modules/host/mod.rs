//! The exception path's kernel side (docs/architecture.md, "The exception
//! path"): the appliance's own network stack, in its own network namespace
//! behind the host link (`runtime::HostLink`). This module sets it up at
//! start (`lo` and `fwhost0` up, `fwhost0` without ARP and with the data
//! links' smallest MTU, one on-link default route through it, IPv6 off,
//! the ephemeral ports `forward::HOST_PORT_MIN..=HOST_PORT_MAX` that no
//! full-NAT port or health probe uses), and after every published snapshot
//! gives `fwhost0` exactly the addresses the stack serves and connects
//! from (`sync`): the VIPs of `Local` services and their source
//! addresses. Whatever serves on it (the L7 engine now; a BGP speaker or
//! a DNS server later) takes a handle on the namespace (`netns`) and opens
//! its sockets there.

mod rtnl;

use crate::out::say;
use crate::runtime::{Netns, Runtime, HOST_IFACE};
use furiwake_dataplane::forward::{HOST_PORT_MAX, HOST_PORT_MIN};
use furiwake_dataplane::state::snapshot::{Forwarding, Snapshot};
use rtnl::Rtnl;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

pub struct Host {
    netns: Netns,
    index: u32,
    rtnl: Rtnl,
    /// The addresses `fwhost0` holds.
    addrs: BTreeSet<Ipv4Addr>,
}

/// The sysctls of the appliance's namespace, as (path, value).
fn sysctls() -> [(&'static str, String); 11] {
    [
        ("/proc/sys/net/ipv4/ip_local_port_range", format!("{HOST_PORT_MIN} {HOST_PORT_MAX}")),
        // The engine closes idle server connections: their TIME_WAITs are
        // its own, and may be reused for new connections (RFC 6191).
        ("/proc/sys/net/ipv4/tcp_tw_reuse", "1".into()),
        // An end host, not a router (a new namespace's defaults come from
        // the host's).
        ("/proc/sys/net/ipv4/ip_forward", "0".into()),
        ("/proc/sys/net/ipv4/conf/all/accept_redirects", "0".into()),
        ("/proc/sys/net/ipv4/conf/all/send_redirects", "0".into()),
        ("/proc/sys/net/ipv4/conf/all/accept_source_route", "0".into()),
        ("/proc/sys/net/ipv4/conf/default/accept_redirects", "0".into()),
        // Listeners may bind a VIP before `sync` gave it to the link.
        ("/proc/sys/net/ipv4/ip_nonlocal_bind", "1".into()),
        ("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1".into()),
        ("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1".into()),
        ("/proc/sys/net/ipv4/conf/all/rp_filter", "0".into()),
    ]
}

impl Host {
    /// Sets up the kernel side of the runtime's host link, if it has one.
    pub fn start(rt: &Runtime) -> Result<Option<Host>, String> {
        let Some(link) = rt.host() else { return Ok(None) };
        let netns = link.netns().try_clone().map_err(|e| format!("host: {e}"))?;
        let mtu = u32::from(link.mtu());
        let setup = netns.run(|| -> Result<(u32, Rtnl), String> {
            for (path, value) in sysctls() {
                std::fs::write(path, &value).map_err(|e| format!("host: {path} = {value}: {e}"))?;
            }
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{HOST_IFACE}/disable_ipv6"), "1");
            let name = std::ffi::CString::new(HOST_IFACE).map_err(|e| e.to_string())?;
            // SAFETY: a valid C string; 0 means no such interface.
            let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
            if index == 0 {
                return Err(format!("host: no {HOST_IFACE} in the appliance's namespace"));
            }
            // SAFETY: as above, for the namespace's loopback.
            let lo = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
            let mut r = Rtnl::open().map_err(|e| format!("host: rtnetlink: {e}"))?;
            r.set_link(lo, true, false, None).map_err(|e| format!("host: lo up: {e}"))?;
            r.set_link(index, true, true, Some(mtu)).map_err(|e| format!("host: {HOST_IFACE} up: {e}"))?;
            r.default_route(index).map_err(|e| format!("host: default route via {HOST_IFACE}: {e}"))?;
            Ok((index, r))
        });
        let (index, rtnl) = setup.map_err(|e| format!("host: entering the appliance's namespace: {e}"))??;
        say(&format!("host: {HOST_IFACE} up (mtu {mtu}, no ARP), ephemeral ports {HOST_PORT_MIN}-{HOST_PORT_MAX}; look inside with nsenter --net={}", netns.path()));
        Ok(Some(Host { netns, index, rtnl, addrs: BTreeSet::new() }))
    }

    /// A handle on the appliance's namespace, for what serves in it.
    pub fn netns(&self) -> Result<Netns, String> {
        self.netns.try_clone().map_err(|e| format!("host: {e}"))
    }

    /// Gives `fwhost0` the addresses `snap` says the stack serves and
    /// connects from, and takes away the others.
    pub fn sync(&mut self, snap: &Snapshot) {
        let mut want = BTreeSet::new();
        // Retired services too: their connections drain (the snapshot
        // keeps a retired slot while entries use it).
        for v in snap.services.iter().filter(|v| v.forwarding == Forwarding::Local) {
            // (A rule's pool has no address of its own.)
            if v.ip != 0 {
                want.insert(Ipv4Addr::from(v.ip));
            }
            want.extend(v.local_addrs.iter().map(|a| Ipv4Addr::from(*a)));
        }
        for a in want.difference(&self.addrs.clone()) {
            match self.rtnl.address(true, self.index, *a, 32) {
                Ok(()) => {
                    self.addrs.insert(*a);
                }
                Err(e) => log::warn!("host: adding {a} to {HOST_IFACE}: {e}"),
            }
        }
        for a in self.addrs.clone().difference(&want) {
            match self.rtnl.address(false, self.index, *a, 32) {
                Ok(()) => {
                    self.addrs.remove(a);
                }
                Err(e) => log::warn!("host: removing {a} from {HOST_IFACE}: {e}"),
            }
        }
    }

    /// The addresses `fwhost0` holds, for `show l7`.
    pub fn addresses(&self) -> impl Iterator<Item = &Ipv4Addr> {
        self.addrs.iter()
    }
}
