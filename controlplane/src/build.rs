//! Turns the configuration into the workers' `Snapshot` (control computes,
//! workers look up): server next hops resolved to ports and neighbour
//! slots, schedules precomputed, full-NAT local addresses defaulted.

use crate::config::{Algorithm, Config, Forwarding, HashOn, PersistenceKind, Protocol};
use furiwake_dataplane::sched::{HashKey, Schedule};
use furiwake_dataplane::snapshot::{self, PortView, RealServer, Snapshot, VirtualService};
use furiwake_dataplane::wire::EthernetAddress;
use std::net::Ipv4Addr;

/// A data link as the builder needs it.
#[derive(Debug, Clone)]
pub struct LinkInfo {
    pub port_id: u16,
    pub mac: EthernetAddress,
    pub address: crate::config::Ipv4Cidr,
}

/// A next hop the control plane keeps resolved by ARP; its index is its
/// neighbour slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nexthop {
    pub ip: Ipv4Addr,
    /// Index into the links.
    pub link: usize,
}

#[derive(Debug)]
pub struct Built {
    pub snapshot: Snapshot,
    pub nexthops: Vec<Nexthop>,
    /// Per link: the addresses ARP answers for (self IP, VIPs and local
    /// addresses in its subnet).
    pub owned: Vec<Vec<Ipv4Addr>>,
    /// Per snapshot server: the index of the config pool it comes from
    /// (its own pool, or the sorry pool), whose health checks apply.
    pub server_pools: Vec<usize>,
}

/// Which link reaches `ip`, and through which next hop: on-link first, then
/// the longest matching static route.
pub fn route(cfg: &Config, links: &[LinkInfo], ip: Ipv4Addr) -> Option<(usize, Ipv4Addr)> {
    if let Some(l) = links.iter().position(|l| l.address.contains(ip)) {
        return Some((l, ip));
    }
    let r = cfg.routes.iter().filter(|r| r.prefix.contains(ip)).max_by_key(|r| r.prefix.prefix_len)?;
    let l = links.iter().position(|l| l.address.contains(r.via))?;
    Some((l, r.via))
}

/// The persistence of virtual server `vs_index`: named groups are numbered
/// first, then each other virtual server is a group of its own.
fn persistence(cfg: &Config, vs_index: usize) -> Option<snapshot::Persistence> {
    let vs = cfg.virtual_servers.get(vs_index)?;
    let p = *vs.persistence.as_ref()?.get_ref();
    let mut named: Vec<&str> = cfg.virtual_servers.iter().filter_map(|v| v.persistence_group.as_ref().map(|g| g.get_ref().as_str())).collect();
    named.sort_unstable();
    named.dedup();
    let group = match &vs.persistence_group {
        Some(g) => named.iter().position(|n| *n == g.get_ref().as_str()).unwrap_or(0),
        None => named.len() + vs_index,
    };
    let ticks_per_s = 1000 / furiwake_dataplane::flow::TICK_MS;
    Some(snapshot::Persistence {
        kind: match p.kind {
            PersistenceKind::SourceIp => snapshot::PersistKind::SourceIp,
            PersistenceKind::SourceIpPort => snapshot::PersistKind::SourceIpPort,
        },
        netmask: u32::from(p.netmask),
        timeout: p.timeout_s.saturating_mul(ticks_per_s),
        group: group as u16,
        keep_on_down: p.keep_on_down,
    })
}

pub fn build(cfg: &Config, links: &[LinkInfo]) -> Result<Built, String> {
    let mut snap = Snapshot::default();
    for l in links {
        let id = l.port_id as usize;
        if snap.ports.len() <= id {
            snap.ports.resize(id + 1, None);
        }
        snap.ports[id] = Some(PortView { mac: l.mac, self_ip: u32::from(l.address.addr) });
        snap.self_ips.push(u32::from(l.address.addr));
    }
    let mut nexthops: Vec<Nexthop> = Vec::new();
    let mut server_pools: Vec<usize> = Vec::new();
    let mut owned: Vec<Vec<Ipv4Addr>> = links.iter().map(|l| vec![l.address.addr]).collect();
    let own = |ip: Ipv4Addr, owned: &mut Vec<Vec<Ipv4Addr>>| {
        if let Some(l) = links.iter().position(|l| l.address.contains(ip)) {
            if !owned[l].contains(&ip) {
                owned[l].push(ip);
            }
        }
    };

    for (vs_index, vs) in cfg.virtual_servers.iter().enumerate() {
        let name = vs.name.get_ref();
        let pool = cfg
            .pools
            .iter()
            .find(|p| p.name.get_ref() == vs.pool.get_ref())
            .ok_or_else(|| format!("virtual_server {name}: no pool {:?}", vs.pool.get_ref()))?;
        let first = snap.servers.len() as u16;
        // The pool's servers, then its sorry pool's below every priority.
        let pool_index = |name: &str| cfg.pools.iter().position(|p| p.name.get_ref() == name).unwrap_or(0);
        let mut members: Vec<(&crate::config::Server, usize, i32)> =
            pool.servers.iter().map(|s| (s, pool_index(pool.name.get_ref()), s.priority as i32)).collect();
        if let Some(sorry) = pool.sorry_pool.as_ref().and_then(|n| cfg.pools.iter().find(|p| p.name.get_ref() == n.get_ref())) {
            members.extend(sorry.servers.iter().map(|s| (s, pool_index(sorry.name.get_ref()), -1)));
        }
        for (s, member_pool, priority) in &members {
            let addr = *s.address.get_ref();
            let (link, via) = route(cfg, links, *addr.ip())
                .ok_or_else(|| format!("pool {}: server {addr} is on no interface's subnet and no route reaches it", pool.name.get_ref()))?;
            let slot = match nexthops.iter().position(|n| n.ip == via && n.link == link) {
                Some(i) => i,
                None => {
                    nexthops.push(Nexthop { ip: via, link });
                    nexthops.len() - 1
                }
            };
            if nexthops.len() > snapshot::MAX_NEXTHOPS {
                return Err(format!("more than {} next hops", snapshot::MAX_NEXTHOPS));
            }
            snap.servers.push(RealServer {
                ip: u32::from(*addr.ip()),
                port: addr.port(),
                weight: s.weight,
                enabled: s.weight > 0,
                tx_port: links[link].port_id,
                nexthop: slot as u16,
                vs: vs_index as u16,
                reset: false,
                max_connections: s.max_connections,
                priority: *priority,
                epoch: 0,
                sticky_only: false,
            });
            server_pools.push(*member_pool);
        }
        let count = members.len();
        let member_weights: Vec<u32> = members.iter().map(|(s, _, _)| s.weight).collect();
        let schedule = match pool.algorithm.get_ref() {
            Algorithm::RoundRobin => Schedule::round_robin(count),
            Algorithm::WeightedRoundRobin => Schedule::weighted(&member_weights),
            Algorithm::LeastConnections => Schedule::LeastConnections { weighted: false },
            Algorithm::WeightedLeastConnections => Schedule::LeastConnections { weighted: true },
            Algorithm::SourceHash => {
                let key = match pool.hash.as_ref().map(|h| *h.get_ref()).unwrap_or_default() {
                    HashOn::SourceIp => HashKey::SourceIp,
                    HashOn::SourceDestinationIp => HashKey::SourceDestIp,
                };
                Schedule::hashed(key, &member_weights)
            }
            Algorithm::Maglev => Schedule::hashed(HashKey::FiveTuple, &member_weights),
            Algorithm::Fastest => Schedule::Fastest,
            Algorithm::LeastBandwidth => Schedule::LeastBandwidth,
            Algorithm::Composite => Schedule::Composite,
        };
        let forwarding = match vs.forwarding.get_ref() {
            Forwarding::Nat => snapshot::Forwarding::Nat,
            Forwarding::FullNat => snapshot::Forwarding::FullNat,
            other => return Err(format!("virtual_server {name}: forwarding {other:?} is not supported by this build")),
        };
        let local_addrs: Vec<u32> = match forwarding {
            snapshot::Forwarding::Nat => Vec::new(),
            snapshot::Forwarding::FullNat if !vs.local_addresses.is_empty() => vs.local_addresses.iter().map(|a| u32::from(*a)).collect(),
            snapshot::Forwarding::FullNat => {
                // Default: the self IP of the interface facing the servers.
                let server_port = snap.servers.get(first as usize).map(|s| s.tx_port);
                let link = links.iter().find(|l| Some(l.port_id) == server_port).or(links.first());
                link.map(|l| vec![u32::from(l.address.addr)]).unwrap_or_default()
            }
        };
        for a in &local_addrs {
            own(Ipv4Addr::from(*a), &mut owned);
        }
        own(*vs.address.ip(), &mut owned);
        snap.services.push(VirtualService {
            name: name.clone(),
            ip: u32::from(*vs.address.ip()),
            port: vs.address.port(),
            proto: match vs.protocol {
                Protocol::Tcp => 6,
                Protocol::Udp => 17,
            },
            forwarding,
            first_server: first,
            server_count: count as u16,
            schedule,
            local_addrs: local_addrs.into_boxed_slice(),
            persistence: persistence(cfg, vs_index),
        });
    }
    snap.persist_records = cfg.platform.persistence_records;
    snap.index();
    Ok(Built { snapshot: snap, nexthops, owned, server_pools })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = r#"
[platform]
worker_lcores = [1]
[[interface]]
name = "outside"
device = "net_null0"
address = "192.0.2.2/24"
[[interface]]
name = "inside"
device = "net_null1"
address = "198.51.100.1/24"
[[route]]
prefix = "203.0.113.0/24"
via = "198.51.100.254"
[[pool]]
name = "web"
algorithm = "weighted-round-robin"
servers = [ { address = "198.51.100.11:80", weight = 3 }, { address = "203.0.113.7:8080" } ]
[[virtual_server]]
name = "www"
address = "192.0.2.100:80"
pool = "web"
[[virtual_server]]
name = "app"
address = "192.0.2.101:80"
forwarding = "full-nat"
pool = "web"
"#;

    fn links() -> Vec<LinkInfo> {
        vec![
            LinkInfo { port_id: 0, mac: EthernetAddress([2, 0, 0, 0, 0, 1]), address: "192.0.2.2/24".parse().unwrap() },
            LinkInfo { port_id: 1, mac: EthernetAddress([2, 0, 0, 0, 0, 2]), address: "198.51.100.1/24".parse().unwrap() },
        ]
    }

    #[test]
    fn servers_get_ports_nexthops_and_schedules() {
        let cfg = Config::parse("t", CFG).unwrap();
        let b = build(&cfg, &links()).unwrap();
        let s = &b.snapshot;
        assert_eq!(s.services.len(), 2);
        assert_eq!(s.servers.len(), 4, "one entry per (service, server)");
        assert_eq!(s.servers[0].tx_port, 1);
        assert_eq!(b.nexthops, vec![
            Nexthop { ip: "198.51.100.11".parse().unwrap(), link: 1 },
            Nexthop { ip: "198.51.100.254".parse().unwrap(), link: 1 },
        ]);
        assert_eq!(s.servers[1].nexthop, 1, "routed server goes via the gateway");
        assert_eq!(s.services[0].schedule, Schedule::weighted(&[3, 1]));
        assert_eq!(s.find_service(u32::from(Ipv4Addr::new(192, 0, 2, 101)), 80, 6), Some(1));
        // full-NAT defaults to the self IP facing the servers.
        assert_eq!(&*s.services[1].local_addrs, &[u32::from(Ipv4Addr::new(198, 51, 100, 1))]);
        assert!(s.is_local(u32::from(Ipv4Addr::new(198, 51, 100, 1))));
        assert_eq!(b.owned[0], vec![Ipv4Addr::new(192, 0, 2, 2), Ipv4Addr::new(192, 0, 2, 100), Ipv4Addr::new(192, 0, 2, 101)]);
    }

    #[test]
    fn algorithms_become_schedules() {
        let with = |algo: &str| {
            let cfg = Config::parse("t", &CFG.replace("algorithm = \"weighted-round-robin\"", algo)).unwrap();
            build(&cfg, &links()).unwrap().snapshot.services[0].schedule.clone()
        };
        assert_eq!(with("algorithm = \"fastest\""), Schedule::Fastest);
        assert_eq!(with("algorithm = \"least-bandwidth\""), Schedule::LeastBandwidth);
        assert_eq!(with("algorithm = \"composite\""), Schedule::Composite);
        assert_eq!(with("algorithm = \"source-hash\""), Schedule::hashed(HashKey::SourceIp, &[3, 1]));
        assert_eq!(with("algorithm = \"source-hash\"\nhash = \"source-ip\""), Schedule::hashed(HashKey::SourceIp, &[3, 1]));
        assert_eq!(with("algorithm = \"source-hash\"\nhash = \"source-destination-ip\""), Schedule::hashed(HashKey::SourceDestIp, &[3, 1]));
    }

    #[test]
    fn unreachable_server_is_refused() {
        let cfg = Config::parse("t", &CFG.replace("203.0.113.7", "100.64.0.1")).unwrap();
        let e = build(&cfg, &links()).unwrap_err();
        assert!(e.contains("100.64.0.1:8080"), "{e}");
    }
}
