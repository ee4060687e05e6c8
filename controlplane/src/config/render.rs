//! A `Config` back to TOML: what `show config` prints (`render`, secrets
//! redacted) and `config save` writes (`render_with_secrets`, which
//! `Config::parse` reads back to an equal configuration).

use super::model::Config;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// Whether the secrets (`[sync] key`, `[[vrrp]] auth_password`) are
/// written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Secrets {
    /// `<redacted>`: what every output shows.
    Redacted,
    /// The real values: only for the file `config save` writes and for
    /// checking a run-time change as a file (never shown).
    Included,
}

/// The running configuration as TOML with its secrets redacted (what
/// `show config` prints): the `[sync] key` as `"<redacted sha256:...>"`
/// (the first 8 hex digits of the SHA-256 of its bytes, to compare the
/// two boxes' keys), a VRRP `auth_password` as `"<redacted>"` (8
/// characters at most: a digest would give it away). Not a valid file.
pub fn render(cfg: &Config) -> String {
    render_as(cfg, Secrets::Redacted)
}

/// The running configuration as TOML, secrets included: the text
/// `config save` writes, which parses back to an equal configuration.
/// Never print it.
pub fn render_with_secrets(cfg: &Config) -> String {
    render_as(cfg, Secrets::Included)
}

/// What `show config` says of the sync key: its SHA-256 fingerprint.
pub fn key_fingerprint(key: &[u8]) -> String {
    let digest = Sha256::digest(key);
    let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("<redacted sha256:{hex}>")
}

fn render_as(cfg: &Config, secrets: Secrets) -> String {
    let mut s = String::new();
    let p = &cfg.platform;
    let list = |v: &[String]| v.iter().map(|a| q(a)).collect::<Vec<_>>().join(", ");
    let _ = writeln!(s, "[platform]\neal_args = [{}]\ncontrol_lcore = {}", list(&p.eal_args), p.control_lcore.get_ref());
    let lcores: Vec<String> = p.worker_lcore_ids().iter().map(u32::to_string).collect();
    let _ = writeln!(
        s,
        "worker_lcores = [{}]\nflows_per_worker = {}\nmbufs = {}\nrx_descriptors = {}\ntx_descriptors = {}\nidle_sleep_us = {}\ncontrol_idle_sleep_us = {}\npersistence_records = {}\npci_driver = {}",
        lcores.join(", "),
        p.flows_per_worker.get_ref(),
        p.mbufs.get_ref(),
        p.rx_descriptors.get_ref(),
        p.tx_descriptors.get_ref(),
        p.idle_sleep_us.get_ref(),
        p.control_idle_sleep_us.get_ref(),
        p.persistence_records.get_ref(),
        q(p.pci_driver.as_str())
    );
    if let Some(f) = &p.flows_per_worker_v6 {
        let _ = writeln!(s, "flows_per_worker_v6 = {}", f.get_ref());
    }
    for i in &cfg.interfaces {
        let _ = writeln!(s, "\n[[interface]]\nname = {}\ndevice = {}", q(i.name.get_ref()), q(i.device.get_ref()));
        let _ = match &i.address6 {
            None => writeln!(s, "address = {}", q(&i.address.to_string())),
            Some(v6) => writeln!(s, "addresses = [{}, {}]", q(&i.address.to_string()), q(&v6.to_string())),
        };
        if let Some(v) = &i.vlan {
            let _ = writeln!(s, "vlan = {}", v.get_ref());
        }
        if i.rss != super::link::RssSide::Auto {
            let _ = writeln!(s, "rss = {}", q(i.rss.as_str()));
        }
        if i.route {
            let _ = writeln!(s, "route = true");
        }
        if let Some(m) = &i.mtu {
            let _ = writeln!(s, "mtu = {}", m.get_ref());
        }
        if let Some(b) = &i.bond {
            let members: Vec<String> = b.members.get_ref().iter().map(|m| q(m.get_ref())).collect();
            let _ = writeln!(s, "bond = {{ mode = {}, members = [{}] }}", q(b.mode.get_ref().name()), members.join(", "));
        }
    }
    for r in &cfg.routes {
        let (prefix, via) = match r.get_ref() {
            super::AnyRoute::V4(r) => (r.prefix.to_string(), r.via.to_string()),
            super::AnyRoute::V6(r) => (r.prefix.to_string(), r.via.to_string()),
        };
        let _ = writeln!(s, "\n[[route]]\nprefix = {}\nvia = {}", q(&prefix), q(&via));
    }
    for h in &cfg.health_checks {
        let _ = writeln!(
            s,
            "\n[[health_check]]\nname = {}\nkind = {}\ninterval_ms = {}\ntimeout_ms = {}\nfall = {}\nrise = {}",
            q(h.name.get_ref()),
            q(&kebab(&h.kind)),
            h.interval_ms.get_ref(),
            h.timeout_ms.get_ref(),
            h.fall.get_ref(),
            h.rise.get_ref()
        );
        if let Some(port) = &h.port {
            let _ = writeln!(s, "port = {}", port.get_ref());
        }
        if let Some(st) = &h.expect_status {
            let _ = writeln!(s, "expect_status = {}", st.get_ref());
        }
        for (k, v) in [("request", &h.request), ("expect_body", &h.expect_body), ("send", &h.send), ("expect", &h.expect), ("command", &h.command)] {
            if let Some(v) = v {
                let _ = writeln!(s, "{k} = {}", q(v));
            }
        }
    }
    for pool in &cfg.pools {
        let _ = writeln!(s, "\n[[pool]]\nname = {}\nalgorithm = {}", q(pool.name.get_ref()), q(&kebab(pool.algorithm.get_ref())));
        if let Some(h) = &pool.health_check {
            let _ = writeln!(s, "health_check = {}", q(h.get_ref()));
        }
        if !pool.health_checks.is_empty() {
            let hs: Vec<String> = pool.health_checks.iter().map(|h| q(h.get_ref())).collect();
            let _ = writeln!(s, "health_checks = [{}]", hs.join(", "));
        }
        if let Some(h) = &pool.hash {
            let _ = writeln!(s, "hash = {}", q(&kebab(h.get_ref())));
        }
        if let Some(sp) = &pool.sorry_pool {
            let _ = writeln!(s, "sorry_pool = {}", q(sp.get_ref()));
        }
        let _ = writeln!(s, "on_down = {}\nslow_down = {}\nservers = [", q(&kebab(&pool.on_down)), pool.slow_down);
        for sv in &pool.servers {
            let _ = writeln!(
                s,
                "  {{ address = {}, weight = {}, max_connections = {}, priority = {} }},",
                q(&sv.address.get_ref().to_string()),
                sv.weight.get_ref(),
                sv.max_connections.get_ref(),
                sv.priority.get_ref()
            );
        }
        s.push_str("]\n");
    }
    for v in &cfg.virtual_servers {
        let _ = writeln!(
            s,
            "\n[[virtual_server]]\nname = {}\naddress = {}\nprotocol = {}\npool = {}",
            q(v.name.get_ref()),
            q(&v.address.get_ref().to_string()),
            q(&kebab(&v.protocol)),
            q(v.pool.get_ref())
        );
        // The L7 engine's virtual servers have no forwarding mode.
        if !v.engine_served() {
            let _ = writeln!(s, "forwarding = {}", q(&kebab(v.forwarding.get_ref())));
        }
        if !v.local_addresses.is_empty() {
            let la: Vec<String> = v.local_addresses.iter().map(|a| q(&a.to_string())).collect();
            let _ = writeln!(s, "local_addresses = [{}]", la.join(", "));
        }
        if let Some(p) = &v.persistence {
            let p = p.get_ref();
            let mut extra = String::new();
            for (k, v) in [("cookie", &p.cookie), ("path", &p.path), ("query", &p.query), ("header", &p.header)] {
                if let Some(v) = v {
                    extra.push_str(&format!(", {k} = {}", q(v.get_ref())));
                }
            }
            if let Some(e) = &p.expires_s {
                extra.push_str(&format!(", expires_s = {}", e.get_ref()));
            }
            for (k, on) in [("secure", p.secure), ("http_only", p.http_only), ("html_only", p.html_only)] {
                if on {
                    extra.push_str(&format!(", {k} = true"));
                }
            }
            if let Some(x) = &p.same_site {
                extra.push_str(&format!(", same_site = {}", q(&kebab(x.get_ref()))));
            }
            let _ = writeln!(
                s,
                "persistence = {{ kind = {}, netmask = {}, prefix6 = {}, timeout_s = {}, keep_on_down = {}{extra} }}",
                q(&kebab(&p.kind)),
                q(&p.netmask.get_ref().to_string()),
                p.prefix6.get_ref(),
                p.timeout_s.get_ref(),
                p.keep_on_down
            );
        }
        if let Some(d) = &v.dscp {
            let _ = writeln!(s, "dscp = {}", d.get_ref());
        }
        if let Some(t) = &v.tunnel {
            let _ = writeln!(s, "tunnel = {}", q(&kebab(t.get_ref())));
        }
        if let Some(c) = &v.tunnel_source {
            let _ = writeln!(s, "tunnel_source = {}", q(&c.get_ref().to_string()));
        }
        if let Some(p) = &v.tunnel_port {
            let _ = writeln!(s, "tunnel_port = {}", p.get_ref());
        }
        if let Some(i) = &v.interface {
            let _ = writeln!(s, "interface = {}", q(i.get_ref()));
        }
        if let Some(p) = &v.pair {
            let _ = writeln!(s, "pair = {}", q(p.get_ref()));
        }
        if let Some(m) = &v.syn_proxy {
            let _ = writeln!(s, "syn_proxy = {}", q(&kebab(m.get_ref())));
        }
        if v.proxy_protocol.is_some() {
            let _ = writeln!(s, "proxy_protocol = \"v2\"");
        }
        if let Some(g) = &v.persistence_group {
            let _ = writeln!(s, "persistence_group = {}", q(g.get_ref()));
        }
        if !v.client_address.is_empty() {
            let list: Vec<String> = v.client_address.iter().map(|c| q(&kebab(c.get_ref()))).collect();
            let _ = writeln!(s, "client_address = [{}]", list.join(", "));
        }
        if let Some(m) = &v.x_forwarded_for {
            let _ = writeln!(s, "x_forwarded_for = {}", q(&kebab(m.get_ref())));
        }
        if !v.trusted_proxies.is_empty() {
            let list: Vec<String> = v.trusted_proxies.iter().map(|c| q(&c.to_string())).collect();
            let _ = writeln!(s, "trusted_proxies = [{}]", list.join(", "));
        }
        if let Some(l) = &v.limits {
            let _ = writeln!(s, "{}", l.get_ref().render());
        }
        if let Some(p) = &v.sorry_page {
            let _ = writeln!(s, "sorry_page = {}", q(p.get_ref()));
        }
        if let Some(t) = &v.tls {
            let _ = writeln!(s, "{}", t.get_ref().render(&q));
        }
        if let Some(t) = &v.server_tls {
            let _ = writeln!(s, "{}", t.get_ref().render(&q));
        }
        // Last: the tables belong to this virtual server.
        for r in &v.rule {
            s.push_str(&r.render(&q));
        }
        for a in &v.http_request {
            s.push_str(&a.render("http_request", &q));
        }
        for a in &v.http_response {
            s.push_str(&a.render("http_response", &q));
        }
    }
    let t = &cfg.timeouts;
    let _ = writeln!(
        s,
        "\n[timeouts]\ntcp_syn = {}\ntcp_established = {}\ntcp_fin = {}\ntcp_time_wait = {}\ntcp_close = {}\nudp = {}\nicmp = {}\nudp_unreplied = {}",
        t.tcp_syn.get_ref(),
        t.tcp_established.get_ref(),
        t.tcp_fin.get_ref(),
        t.tcp_time_wait.get_ref(),
        t.tcp_close.get_ref(),
        t.udp.get_ref(),
        t.icmp.get_ref(),
        t.udp_unreplied.get_ref()
    );
    let _ = writeln!(s, "{}", cfg.defence.render());
    if cfg.has_l7() || cfg.l7 != crate::config::L7::default() {
        let _ = write!(s, "{}", cfg.l7.render());
    }
    let _ = writeln!(s, "\n[logging]\nlevel = {}", q(&kebab(&cfg.logging.level)));
    if let Some(l) = &cfg.management.listen {
        let _ = writeln!(s, "\n[management]\nlisten = {}", q(&l.get_ref().to_string()));
    }
    let _ = writeln!(s, "\n[console]\nsocket = {}", q(&cfg.console.socket));
    if let Some(d) = &cfg.console.device {
        let _ = writeln!(s, "device = {}", q(d));
    }
    if let Some(d) = &cfg.console.save_dir {
        let _ = writeln!(s, "save_dir = {}", q(d.get_ref()));
    }
    if let Some(g) = &cfg.console.group {
        let _ = writeln!(s, "group = {}", q(g));
    }
    render_ha(cfg, secrets, &mut s);
    for r in &cfg.snat {
        let _ = writeln!(s, "\n[[snat]]\nname = {}\nsources = {}\naddress = {}", q(r.name.get_ref()), q(&r.sources.get_ref().to_string()), q(&r.address.get_ref().to_string()));
        if let Some(i) = &r.interface {
            let _ = writeln!(s, "interface = {}", q(i.get_ref()));
        }
        if let Some(p) = &r.ports {
            let _ = writeln!(s, "ports = {}", q(p.get_ref()));
        }
    }
    s.trim_end().to_string()
}

/// `RoundRobin` -> `round-robin`: the config's spelling from a variant's
/// Debug name.
pub fn kebab(v: &impl std::fmt::Debug) -> String {
    let s = format!("{v:?}");
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `[[vrrp]]` and `[sync]` as TOML, for `render`.
fn render_ha(cfg: &Config, secrets: Secrets, s: &mut String) {
    let addrs = |v: &[toml::Spanned<std::net::Ipv4Addr>]| v.iter().map(|a| q(&a.get_ref().to_string())).collect::<Vec<_>>().join(", ");
    let names = |v: &[toml::Spanned<String>]| v.iter().map(|a| q(a.get_ref())).collect::<Vec<_>>().join(", ");
    for v in &cfg.vrrp {
        let _ = writeln!(
            s,
            "\n[[vrrp]]\nname = {}\ninterface = {}\nvrid = {}\nversion = {}\npriority = {}\nadvert_interval_ms = {}\npreempt = {}\npreempt_delay_ms = {}\naddresses = [{}]",
            q(v.name.get_ref()),
            q(v.interface.get_ref()),
            v.vrid.get_ref(),
            v.version.get_ref(),
            v.priority.get_ref(),
            v.advert_interval_ms.get_ref(),
            v.preempt,
            v.preempt_delay_ms.get_ref(),
            addrs(&v.addresses)
        );
        if let Some(g) = &v.group {
            let _ = writeln!(s, "group = {}", q(g.get_ref()));
        }
        let _ = writeln!(
            s,
            "track_interfaces = [{}]\ntrack_addresses = [{}]\ntrack_interval_ms = {}\ntrack_fall = {}\ntrack_pools = [{}]\ntrack_pool_min_up = {}\ntrack_weight = {}\nunicast_peers = [{}]",
            names(&v.track_interfaces),
            addrs(&v.track_addresses),
            v.track_interval_ms.get_ref(),
            v.track_fall.get_ref(),
            names(&v.track_pools),
            v.track_pool_min_up.get_ref(),
            v.track_weight.get_ref(),
            addrs(&v.unicast_peers)
        );
        if let Some(p) = &v.auth_password {
            let p = if secrets == Secrets::Included { p.get_ref().as_str() } else { "<redacted>" };
            let _ = writeln!(s, "auth_password = {}", q(p));
        }
        let _ = writeln!(s, "use_vmac = {}\ngarp_count = {}\ngarp_interval_ms = {}", v.use_vmac, v.garp_count.get_ref(), v.garp_interval_ms.get_ref());
    }
    if let Some(y) = &cfg.sync {
        // A key_file stays where it is: only its path is written.
        let key = match (&y.key, &y.key_file) {
            (_, Some(f)) => format!("key_file = {}", q(f.get_ref())),
            (Some(k), None) if secrets == Secrets::Included => format!("key = {}", q(k.get_ref())),
            _ => format!("key = {}", q(&key_fingerprint(&y.key_bytes()))),
        };
        let _ = writeln!(
            s,
            "\n[sync]\ninterface = {}\npeer = {}\nport = {}\n{key}\nrefresh_s = {}\nbulk_limit_ms = {}",
            q(y.interface.get_ref()),
            q(&y.peer.get_ref().to_string()),
            y.port.get_ref(),
            y.refresh_s.get_ref(),
            y.bulk_limit_ms.get_ref()
        );
        if let Some(k) = &y.previous_key {
            let shown = match secrets {
                Secrets::Included => k.get_ref().clone(),
                _ => key_fingerprint(&y.previous_key_bytes().unwrap_or_default()),
            };
            let _ = writeln!(s, "previous_key = {}", q(&shown));
        }
    }
}

/// TOML text of a string (basic string, escaped).
fn q(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(o, "\\u{:04X}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn kebab_names_match_the_config_spelling() {
        assert_eq!(kebab(&crate::config::Algorithm::WeightedRoundRobin), "weighted-round-robin");
        assert_eq!(kebab(&crate::config::Forwarding::FullNat), "full-nat");
        assert_eq!(kebab(&crate::config::CheckKind::SendExpect), "send-expect");
        assert_eq!(kebab(&crate::config::OnDown::Keep), "keep");
    }

    #[test]
    fn running_config_renders_as_a_valid_equivalent_config() {
        let text = r#"
[platform]
eal_args = ["--no-huge", "-m", "256"]
worker_lcores = [1]
[[interface]]
name = "outside"
device = "net_null0"
address = "192.0.2.2/24"
[[route]]
prefix = "0.0.0.0/0"
via = "192.0.2.1"
[[health_check]]
name = "web-ok"
kind = "http"
request = "GET /health HTTP/1.0\r\n\r\n"
expect_body = "OK \"quoted\""
[[pool]]
name = "web"
algorithm = "weighted-round-robin"
health_check = "web-ok"
servers = [ { address = "192.0.2.11:80", weight = 3, priority = 1 }, { address = "192.0.2.12:80" } ]
[[pool]]
name = "sorry"
servers = [ { address = "192.0.2.13:80" } ]
[[virtual_server]]
name = "www"
address = "192.0.2.100:80"
forwarding = "full-nat"
local_addresses = ["192.0.2.50"]
pool = "web"
persistence = { kind = "source-ip", netmask = "255.255.255.0", timeout_s = 60, keep_on_down = true }
persistence_group = "shop"
[[pool]]
name = "hashed"
algorithm = "source-hash"
hash = "source-destination-ip"
servers = [ { address = "192.0.2.14:80" } ]
[console]
socket = "/tmp/x.sock"
[logging]
level = "debug"
[management]
listen = "127.0.0.1:9100"
"#;
        let cfg = Config::parse("t", text).unwrap();
        let rendered = render(&cfg);
        let again = Config::parse("rendered", &rendered).unwrap_or_else(|e| panic!("{e}\n{rendered}"));
        assert_eq!(render(&again), rendered);
        assert_eq!(*again.pools[0].servers[0].weight.get_ref(), 3);
        assert_eq!(*again.pools[0].servers[0].priority.get_ref(), 1);
        assert_eq!(again.health_checks[0].request.as_deref(), Some("GET /health HTTP/1.0\r\n\r\n"));
        assert_eq!(again.health_checks[0].expect_body.as_deref(), Some("OK \"quoted\""));
        assert_eq!(again.virtual_servers[0].local_addresses, vec![Ipv4Addr::new(192, 0, 2, 50)]);
        assert_eq!(again.console.socket, "/tmp/x.sock");
        let p = again.virtual_servers[0].persistence.as_ref().unwrap().get_ref();
        assert_eq!((*p.netmask.get_ref(), *p.timeout_s.get_ref(), p.keep_on_down), (Ipv4Addr::new(255, 255, 255, 0), 60, true));
        assert_eq!(again.virtual_servers[0].persistence_group.as_ref().map(|g| g.get_ref().as_str()), Some("shop"));
        assert_eq!(again.pools[2].hash.as_ref().map(|h| *h.get_ref()), Some(crate::config::HashOn::SourceDestinationIp));
        assert_eq!(again.logging.level, crate::config::LogLevel::Debug);
        assert_eq!(again.management.listen.as_ref().map(|l| *l.get_ref()), Some("127.0.0.1:9100".parse().unwrap()));
        assert_eq!(again.routes.len(), 1);
    }
}
