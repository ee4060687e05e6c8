//! The parser's and the validator's tests.

use super::*;
use std::net::Ipv4Addr;

const GOOD: &str = r#"
[platform]
eal_args = ["--no-huge", "-m", "512", "--no-pci"]
control_lcore = 0
worker_lcores = [1]

[[interface]]
name = "outside"
device = "net_af_packet0,iface=lb-out"
address = "192.0.2.2/24"

[[interface]]
name = "inside"
device = "0000:03:00.0"
address = "198.51.100.1/24"

[[route]]
prefix = "0.0.0.0/0"
via = "192.0.2.1"

[[health_check]]
name = "web-ok"
kind = "http"
request = "GET /health HTTP/1.0\r\n\r\n"
expect_status = 200

[[pool]]
name = "web"
algorithm = "weighted-round-robin"
health_check = "web-ok"
servers = [ { address = "198.51.100.11:8080", weight = 3 }, { address = "198.51.100.12:8080" } ]

[[virtual_server]]
name = "www"
address = "192.0.2.100:80"
pool = "web"
"#;

fn err(text: &str) -> ConfigError {
    Config::parse("t.toml", text).unwrap_err()
}

#[test]
fn good_config_parses_with_defaults() {
    let c = Config::parse("t.toml", GOOD).unwrap();
    assert_eq!(c.interfaces.len(), 2);
    assert_eq!(c.interfaces[0].dev_name(), "net_af_packet0");
    assert!(!c.interfaces[0].is_pci());
    assert!(c.interfaces[1].is_pci());
    assert_eq!(c.interfaces[0].address, "192.0.2.2/24".parse().unwrap());
    assert_eq!(*c.pools[0].servers[1].weight.get_ref(), 1);
    assert_eq!(*c.pools[0].algorithm.get_ref(), Algorithm::WeightedRoundRobin);
    assert_eq!(c.virtual_servers[0].protocol, Protocol::Tcp);
    assert_eq!(*c.virtual_servers[0].forwarding.get_ref(), Forwarding::Nat);
    assert_eq!(*c.timeouts.tcp_established.get_ref(), 900);
    assert_eq!(*c.platform.flows_per_worker.get_ref(), 1 << 20);
    assert_eq!(*c.health_checks[0].fall.get_ref(), 3);
}

#[test]
fn typo_key_names_line_and_key() {
    let bad = GOOD.replace("address = \"192.0.2.2/24\"", "adress = \"192.0.2.2/24\"");
    let e = err(&bad);
    assert_eq!(e.line, 10, "{e}");
    assert!(e.message.contains("unknown field `adress`"), "{e}");
    assert!(e.to_string().starts_with("t.toml:10:"), "{e}");
}

#[test]
fn bad_address_names_line() {
    let bad = GOOD.replace("192.0.2.100:80", "192.0.2.300:80");
    let e = err(&bad);
    assert_eq!(e.line, 35, "{e}");
    assert!(e.message.contains("192.0.2.300:80"), "{e}");
    let bad = GOOD.replace("198.51.100.1/24", "198.51.100.1/33");
    assert_eq!(err(&bad).line, 15);
}

#[test]
fn dangling_references_refused() {
    let e = err(&GOOD.replace("pool = \"web\"", "pool = \"wbe\""));
    assert_eq!(e.line, 36, "{e}");
    assert!(e.message.contains("no pool named \"wbe\""), "{e}");
    let e = err(&GOOD.replace("health_check = \"web-ok\"", "health_check = \"nope\""));
    assert_eq!(e.line, 30, "{e}");
}

#[test]
fn duplicates_and_lcores_refused() {
    let e = err(&GOOD.replace("name = \"inside\"", "name = \"outside\""));
    assert!(e.message.contains("defined twice"), "{e}");
    assert_eq!(e.line, 13);
    let e = err(&GOOD.replace("worker_lcores = [1]", "worker_lcores = [0]"));
    assert!(e.message.contains("control lcore"), "{e}");
    assert_eq!(e.line, 5);
    let e = err(&GOOD.replace("worker_lcores = [1]", "worker_lcores = []"));
    assert!(e.message.contains("at least one"), "{e}");
    let e = err(&GOOD.replace("\"--no-pci\"]", "\"--no-pci\", \"-l\", \"0-3\"]"));
    assert!(e.message.contains("\"-l\""), "{e}");
    // dsr-tunnel: its kind named; its keys only with it; a unicast source
    // prefix; GUE alone has a port.
    let tun = GOOD.replace(":8080", ":80").replace("pool = \"web\"\n", "pool = \"web\"\nforwarding = \"dsr-tunnel\"\n");
    let e = err(&tun);
    assert!(e.message.contains("needs `tunnel` (\"ipip\", \"gre\" or \"gue\")"), "{e}");
    assert_eq!(e.line, 37);
    let gre = tun.replace("forwarding = \"dsr-tunnel\"\n", "forwarding = \"dsr-tunnel\"\ntunnel = \"gre\"\ntunnel_source = \"203.0.113.0/24\"\n");
    let c = Config::parse("t", &gre).unwrap();
    assert_eq!(c.virtual_servers[0].tunnel.as_ref().map(|t| *t.get_ref()), Some(TunnelKind::Gre));
    assert!(err(&gre.replace("\"gre\"", "\"vxlan\"")).message.contains("unknown variant `vxlan`"));
    assert!(err(&gre.replace("203.0.113.0/24", "224.0.0.0/24")).message.contains("must be a unicast prefix of /8 or longer"));
    assert!(err(&gre.replace("203.0.113.0/24", "10.0.0.0/7")).message.contains("must be a unicast prefix"));
    assert!(err(&format!("{gre}tunnel_port = 5555\n")).message.contains("tunnel_port needs tunnel = \"gue\""));
    Config::parse("t", &format!("{}tunnel_port = 5555\n", gre.replace("\"gre\"", "\"gue\""))).unwrap();
    assert!(err(&GOOD.replace("pool = \"web\"\n", "pool = \"web\"\ntunnel = \"ipip\"\n")).message.contains("tunnel needs forwarding = \"dsr-tunnel\""));
    assert!(err(&GOOD.replace("pool = \"web\"\n", "pool = \"web\"\ntunnel_source = \"203.0.113.0/24\"\n")).message.contains("tunnel_source needs forwarding"));
    let e = err(&gre.replace("198.51.100.11:80", "198.51.100.11:8080"));
    assert!(e.message.contains("(dsr-tunnel): server 198.51.100.11:8080 must listen on the VIP's port 80"), "{e}");
    // MAT rewrites no port: the servers must listen on the VIP's.
    let e = err(&GOOD.replace("pool = \"web\"\n", "pool = \"web\"\nforwarding = \"dsr-l2\"\n"));
    assert!(e.message.contains("server 198.51.100.11:8080 must listen on the VIP's port 80"), "{e}");
    assert_eq!(e.line, 31);
    let e = err(&GOOD.replace("pool = \"web\"\n", "pool = \"web\"\nforwarding = \"dsr-l2\"\n").replace(":8080", ":80").replace("198.51.100.12", "203.0.113.12"));
    assert!(e.message.contains("203.0.113.12:80 is on no interface's subnet"), "{e}");
    Config::parse("t", &GOOD.replace("pool = \"web\"\n", "pool = \"web\"\nforwarding = \"dsr-l2\"\n").replace(":8080", ":80")).unwrap();
    // L3 DSR: a code per VIP, one the servers can tell apart.
    let dscp = GOOD.replace(":8080", ":80").replace("pool = \"web\"\n", "pool = \"web\"\nforwarding = \"dsr-dscp\"\n");
    assert!(err(&dscp).message.contains("needs `dscp` (1..=63)"), "{}", err(&dscp));
    let one = dscp.replace("forwarding = \"dsr-dscp\"\n", "forwarding = \"dsr-dscp\"\ndscp = 10\n");
    Config::parse("t", &one).unwrap();
    let e = err(&format!("{one}\n[[virtual_server]]\nname = \"www2\"\naddress = \"192.0.2.101:80\"\npool = \"web\"\nforwarding = \"dsr-dscp\"\ndscp = 10\n"));
    assert!(e.message.contains("dscp 10 is also virtual_server \"www\"'s, and both send to server 198.51.100.11"), "{e}");
    Config::parse("t", &format!("{one}\n[[virtual_server]]\nname = \"www2\"\naddress = \"192.0.2.101:80\"\npool = \"web\"\nforwarding = \"dsr-dscp\"\ndscp = 11\n")).unwrap();
    assert!(err(&GOOD.replace("pool = \"web\"\n", "pool = \"web\"\ndscp = 3\n")).message.contains("dscp needs forwarding = \"dsr-dscp\""));
    let e = err(&format!("{GOOD}\n[timeouts]\ntcp_fin = 2\ntcp_est = 3\n"));
    assert!(e.message.contains("unknown field `tcp_est`"), "{e}");
    let e = err(&GOOD.replace("kind = \"http\"", "kind = \"htp\""));
    assert!(e.message.contains("unknown variant `htp`"), "{e}");
    assert_eq!(e.line, 23);
}

#[test]
fn persistence_parses_and_bad_persistence_is_refused_with_its_line() {
    let two = format!(
        "{GOOD}\n[[virtual_server]]\nname = \"tls\"\naddress = \"192.0.2.100:8443\"\npool = \"web\"\npersistence = {{ kind = \"source-ip\", netmask = \"255.255.255.0\", timeout_s = 60 }}\npersistence_group = \"shop\"\n"
    );
    let with = |p: &str| two.replace("pool = \"web\"\n\n", &format!("pool = \"web\"\n{p}\n"));
    let c = Config::parse("t.toml", &with("persistence = { kind = \"source-ip\", netmask = \"255.255.255.0\", timeout_s = 60 }\npersistence_group = \"shop\"")).unwrap();
    let p = c.virtual_servers[0].persistence.as_ref().unwrap().get_ref();
    assert_eq!((p.kind, *p.netmask.get_ref(), *p.timeout_s.get_ref(), p.keep_on_down), (PersistenceKind::SourceIp, Ipv4Addr::new(255, 255, 255, 0), 60, false));
    assert_eq!(*c.platform.persistence_records.get_ref(), 65536);
    // Defaults: /32, 300 s.
    let c = Config::parse("t.toml", &GOOD.replace("pool = \"web\"\n", "pool = \"web\"\npersistence = { kind = \"source-ip-port\" }\n")).unwrap();
    let p = c.virtual_servers[0].persistence.as_ref().unwrap().get_ref();
    assert_eq!((*p.netmask.get_ref(), *p.timeout_s.get_ref()), (Ipv4Addr::BROADCAST, 300));

    let e = err(&with("persistence = { kind = \"source-ip\", netmask = \"255.0.255.0\" }"));
    assert!(e.message.contains("not contiguous"), "{e}");
    assert_eq!(e.line, 37);
    let e = err(&with("persistence = { kind = \"source-ip\", timeout_s = 0 }"));
    assert!(e.message.contains("timeout_s"), "{e}");
    let e = err(&with("persistence = { kind = \"source-ip-port\", netmask = \"255.255.0.0\" }"));
    assert!(e.message.contains("source-ip\\\" only") || e.message.contains("only"), "{e}");
    let e = err(&with("persistence = { kind = \"cookie\" }"));
    assert!(e.message.contains("unknown variant `cookie`"), "{e}");
    let e = err(&with("persistence_group = \"shop\""));
    assert!(e.message.contains("persistence_group needs persistence"), "{e}");
    assert_eq!(e.line, 37);
    // Group members must agree.
    let e = err(&with("persistence = { kind = \"source-ip\" }\npersistence_group = \"shop\""));
    assert!(e.message.contains("members must agree"), "{e}");
    // A NAT server shared with and without source-ip persistence: the
    // replies could not find their worker.
    let e = err(&with(""));
    assert!(e.message.contains("same (or no) source-ip persistence"), "{e}");
    assert!(e.message.contains("\"tls\""), "{e}");
    // full-NAT replies come back to a local port: no conflict.
    Config::parse("t.toml", &with("forwarding = \"full-nat\"")).unwrap();
}

#[test]
fn new_algorithms_parse() {
    for (name, want) in [("fastest", Algorithm::Fastest), ("least-bandwidth", Algorithm::LeastBandwidth), ("composite", Algorithm::Composite)] {
        let c = Config::parse("t.toml", &GOOD.replace("\"weighted-round-robin\"", &format!("\"{name}\""))).unwrap();
        assert_eq!(*c.pools[0].algorithm.get_ref(), want);
        assert!(c.pools[0].hash.is_none());
    }
    let e = err(&GOOD.replace("\"weighted-round-robin\"", "\"fastets\""));
    assert!(e.message.contains("unknown variant `fastets`"), "{e}");
    assert_eq!(e.line, 29, "{e}");
}

#[test]
fn hash_key_names_and_only_with_source_hash() {
    let sh = GOOD.replace("algorithm = \"weighted-round-robin\"", "algorithm = \"source-hash\"");
    let c = Config::parse("t.toml", &sh).unwrap();
    assert_eq!(c.pools[0].hash, None, "default: source-ip (build.rs)");
    for (name, want) in [("source-ip", HashOn::SourceIp), ("source-destination-ip", HashOn::SourceDestinationIp)] {
        let c = Config::parse("t.toml", &sh.replace("algorithm = \"source-hash\"", &format!("algorithm = \"source-hash\"\nhash = \"{name}\""))).unwrap();
        assert_eq!(c.pools[0].hash.as_ref().map(|h| *h.get_ref()), Some(want));
    }
    let e = err(&sh.replace("algorithm = \"source-hash\"", "algorithm = \"source-hash\"\nhash = \"destination-ip\""));
    assert!(e.message.contains("unknown variant `destination-ip`"), "{e}");
    assert_eq!(e.line, 30, "{e}");
    // Only with source-hash: the error points at the `hash` line.
    let e = err(&GOOD.replace("algorithm = \"weighted-round-robin\"", "algorithm = \"maglev\"\nhash = \"source-ip\""));
    assert!(e.message.contains("`hash` needs algorithm = \"source-hash\""), "{e}");
    assert_eq!((e.line, e.column), (30, 8), "{e}");
    let e = err(&GOOD.replace("algorithm = \"weighted-round-robin\"", "hash = \"source-destination-ip\""));
    assert!(e.message.contains("pool \"web\""), "default round-robin refuses it too: {e}");
    assert_eq!(e.line, 29, "{e}");
}

#[test]
fn cidr_parses_and_contains() {
    let c: Ipv4Cidr = "192.0.2.2/24".parse().unwrap();
    assert_eq!(c.network(), Ipv4Addr::new(192, 0, 2, 0));
    assert!(c.contains(Ipv4Addr::new(192, 0, 2, 200)));
    assert!(!c.contains(Ipv4Addr::new(192, 0, 3, 1)));
    let any: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
    assert!(any.contains(Ipv4Addr::new(203, 0, 113, 9)));
    assert!("1.2.3.4".parse::<Ipv4Cidr>().is_err());
}

/// `key = value` placed where `key` belongs in `GOOD`: the text, the line
/// of the value and its column.
fn place(key: &str, value: &str) -> (String, usize, usize) {
    let platform = ["flows_per_worker", "flows_per_worker_v6", "mbufs", "rx_descriptors", "tx_descriptors", "idle_sleep_us", "control_idle_sleep_us", "persistence_records"];
    let check = ["interval_ms", "timeout_ms", "fall", "rise", "port"];
    let server = ["max_connections", "priority"];
    let timeouts = ["tcp_syn", "tcp_established", "tcp_fin", "tcp_time_wait", "tcp_close", "udp", "icmp", "udp_unreplied"];
    let (text, line) = if platform.contains(&key) {
        (GOOD.replace("worker_lcores = [1]\n", &format!("worker_lcores = [1]\n{key} = {value}\n")), 6)
    } else if key == "control_lcore" {
        (GOOD.replace("control_lcore = 0", &format!("control_lcore = {value}")), 4)
    } else if key == "worker_lcores" {
        (GOOD.replace("control_lcore = 0", "control_lcore = 5").replace("worker_lcores = [1]", &format!("worker_lcores = [1, {value}]")), 5)
    } else if check.contains(&key) {
        (GOOD.replace("expect_status = 200\n", &format!("expect_status = 200\n{key} = {value}\n")), 26)
    } else if key == "expect_status" {
        (GOOD.replace("expect_status = 200", &format!("expect_status = {value}")), 25)
    } else if key == "weight" {
        (GOOD.replace("weight = 3", &format!("weight = {value}")), 31)
    } else if server.contains(&key) {
        (GOOD.replace("weight = 3", &format!("weight = 3, {key} = {value}")), 31)
    } else if key == "timeout_s" {
        (format!("{GOOD}persistence = {{ kind = \"source-ip\", timeout_s = {value} }}\n"), 37)
    } else if timeouts.contains(&key) {
        (format!("{GOOD}\n[timeouts]\n{key} = {value}\n"), 39)
    } else if ["vrid", "advert_interval_ms", "preempt_delay_ms", "track_interval_ms", "track_fall", "track_pool_min_up", "garp_count", "garp_interval_ms"].contains(&key) {
        let vrid = if key == "vrid" { String::new() } else { "vrid = 51\n".into() };
        let text = ha(&format!("\n[[vrrp]]\nname = \"o\"\ninterface = \"outside\"\naddresses = [\"192.0.2.100\"]\n{vrid}{key} = {value}\n"));
        let line = text.lines().position(|l| l.starts_with(&format!("{key} = "))).unwrap_or(0) + 1;
        (text, line)
    } else if key == "dscp" {
        let text = GOOD.replace(":8080", ":80").replace("pool = \"web\"\n", &format!("pool = \"web\"\nforwarding = \"dsr-dscp\"\ndscp = {value}\n"));
        let line = text.lines().position(|l| l.starts_with("dscp = ")).unwrap_or(0) + 1;
        (text, line)
    } else if key == "tunnel_port" {
        let text = GOOD.replace(":8080", ":80").replace("pool = \"web\"\n", &format!("pool = \"web\"\nforwarding = \"dsr-tunnel\"\ntunnel = \"gue\"\ntunnel_port = {value}\n"));
        let line = text.lines().position(|l| l.starts_with("tunnel_port = ")).unwrap_or(0) + 1;
        (text, line)
    } else if key == "vlan" {
        (GOOD.replace("address = \"192.0.2.2/24\"\n", &format!("address = \"192.0.2.2/24\"\nvlan = {value}\n")), 11)
    } else if key == "mtu" {
        (GOOD.replace("address = \"192.0.2.2/24\"\n", &format!("address = \"192.0.2.2/24\"\nmtu = {value}\n")), 11)
    } else if ["refresh_s", "bulk_limit_ms"].contains(&key) {
        let text = ha(&format!("\n[sync]\ninterface = \"inside\"\npeer = \"198.51.100.4\"\nkey = \"{KEY16}\"\n{key} = {value}\n"));
        let line = text.lines().position(|l| l.starts_with(&format!("{key} = "))).unwrap_or(0) + 1;
        (text, line)
    } else {
        panic!("no place for {key}")
    };
    let at = text.lines().nth(line - 1).unwrap_or_default();
    let column = at.find(&format!("{key} = {value}")).map_or(0, |c| c + key.len() + 3) + 1;
    let column = if key == "worker_lcores" { at.rfind(value).map_or(0, |c| c + 1) } else { column };
    (text, line, column)
}

/// Every bounded key: its lowest and highest values pass; one below and one
/// above are refused at the value with the key's range, and so is a value
/// too large or negative for the key's type.
#[test]
fn every_bounded_value_is_refused_outside_its_range_with_its_place() {
    for b in bounds::ALL {
        for ok in [b.min, b.max] {
            let value = ok.to_string();
            let (text, _, _) = place(b.key, &value);
            if let Err(e) = Config::parse("t.toml", &text) {
                panic!("{} = {value} refused: {e}", b.key);
            }
        }
        let mut bad: Vec<String> = vec![(b.max + 1).to_string(), "4000000000".into(), "-1".into(), "99999999999".into()];
        if b.min > 0 {
            bad.push((b.min - 1).to_string());
        }
        for value in bad {
            if value.parse::<i128>().is_ok_and(|v| v >= i128::from(b.min) && v <= i128::from(b.max)) {
                continue;
            }
            let (text, line, column) = place(b.key, &value);
            let e = Config::parse("t.toml", &text).expect_err(&format!("{} = {value} accepted", b.key));
            assert_eq!(e.message, format!("{} {value} is out of range: allowed {}..={}", b.key, b.min, b.max), "{e}");
            assert_eq!((e.line, e.column), (line, column), "{} = {value}: {e}", b.key);
        }
    }
}

#[test]
fn the_weight_bound_is_the_consoles() {
    assert_eq!(bounds::WEIGHT.max, u64::from(MAX_WEIGHT));
    assert_eq!(crate::console::command::MAX_WEIGHT, MAX_WEIGHT);
    assert_eq!(MAX_WEIGHT, 10_000);
    let e = err(&GOOD.replace("weight = 3", "weight = 4000000000"));
    assert_eq!(e.to_string(), "t.toml:31:56: weight 4000000000 is out of range: allowed 0..=10000");
}

/// The keys of `ALL` name one bound each (the parse error's range is
/// found by the key alone).
#[test]
fn bounded_keys_are_unique() {
    let mut keys: Vec<&str> = bounds::ALL.iter().map(|b| b.key).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), bounds::ALL.len());
    assert!(bounds::ALL.iter().all(|b| b.min <= b.max));
}

#[test]
fn refusal_at_finds_the_key_of_an_integer() {
    let r = |text: &str, value: &str| {
        let start = text.rfind(value).unwrap();
        bounds::refusal_at(text, start..start + value.len())
    };
    assert_eq!(r("[pool]\nx = { weight = -1 }", "-1").as_deref(), Some("weight -1 is out of range: allowed 0..=10000"));
    assert_eq!(r("worker_lcores = [\n  1,\n  -2 ]", "-2").as_deref(), Some("worker_lcores -2 is out of range: allowed 0..=127"));
    assert_eq!(r("priority=70_000", "70_000").as_deref(), Some("priority 70_000 is out of range: allowed 0..=65535"));
    // Not an integer, or not a bounded key: the parser's own words stay.
    assert_eq!(r("weight = \"x\"", "\"x\""), None);
    assert_eq!(r("weight = 1.5", "1.5"), None);
    assert_eq!(r("name = 5", "5"), None);
    assert_eq!(bounds::refusal_at("weight = 5", 100..102), None);
}

#[test]
fn address_ports_and_prefixes_are_bounded() {
    let e = err(&GOOD.replace("198.51.100.12:8080", "198.51.100.12:0"));
    assert_eq!((e.line, e.column), (31, 73), "{e}");
    assert_eq!(e.message, "server 198.51.100.12:0: port 0 is out of range: allowed 1..=65535");
    let e = err(&GOOD.replace("192.0.2.100:80", "192.0.2.100:0"));
    assert_eq!((e.line, e.column), (35, 11), "{e}");
    assert!(e.message.contains("port 0 is out of range: allowed 1..=65535"), "{e}");
    let e = err(&format!("{GOOD}\n[management]\nlisten = \"127.0.0.1:0\"\n"));
    assert_eq!((e.line, e.column), (39, 10), "{e}");
    assert!(e.message.contains("port 0 is out of range: allowed 1..=65535"), "{e}");
    Config::parse("t.toml", &format!("{GOOD}\n[management]\nlisten = \"127.0.0.1:65535\"\n")).unwrap();
    let e = err(&GOOD.replace("192.0.2.100:80", "192.0.2.100:65536"));
    assert_eq!(e.line, 35, "{e}");
    assert!(e.message.contains("192.0.2.100:65536"), "{e}");

    let e = err(&GOOD.replace("198.51.100.1/24", "198.51.100.1/33"));
    assert_eq!(e.line, 15, "{e}");
    assert!(e.message.contains("prefix length 33 is out of range: allowed 0..=32"), "{e}");
    let e = err(&GOOD.replace("198.51.100.1/24", "198.51.100.1/300"));
    assert!(e.message.contains("prefix length 300 is out of range: allowed 0..=32"), "{e}");

    let netmask = |m: &str| format!("{GOOD}persistence = {{ kind = \"source-ip\", netmask = \"{m}\" }}\n");
    for ok in ["255.0.0.0", "255.255.255.255"] {
        Config::parse("t.toml", &netmask(ok)).unwrap();
    }
    let e = err(&netmask("254.0.0.0"));
    assert_eq!((e.line, e.column), (37, 47), "{e}");
    assert_eq!(e.message, "netmask 254.0.0.0 (/7) is out of range: allowed /8..=/32");
    assert!(err(&netmask("0.0.0.0")).message.contains("(/0) is out of range"));
}

/// Too many virtual servers: refused at the first one beyond the limit.
#[test]
fn the_virtual_server_count_is_bounded() {
    let max = furiwake_dataplane::limits::MAX_SERVICES;
    let mut text = GOOD.to_string();
    for i in 0..max {
        text.push_str(&format!("\n[[virtual_server]]\nname = \"v{i}\"\naddress = \"192.0.2.100:{}\"\npool = \"web\"\n", 1000 + i));
    }
    let e = err(&text);
    assert_eq!(e.message, format!("at most {max} virtual servers"));
    assert_eq!(e.line, GOOD.lines().count() + 5 * (max - 1) + 3, "{e}");
}

/// The README's configuration reference gives every range as `bounds`
/// has it.
#[test]
fn the_readme_documents_every_range() {
    let readme = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap();
    let start = readme.find("## Configuration reference").unwrap();
    let end = readme[start..].find("\n## ").map_or(readme.len(), |e| start + e);
    let reference = &readme[start..end];
    for b in bounds::ALL {
        let range = format!("`{}..={}`", b.min, b.max);
        let documented = reference.lines().any(|l| l.contains(&format!("`{}`", b.key)) && l.contains(&range))
            || reference.contains(&format!("`{}` {range}", b.key));
        assert!(documented, "README: {} {range}", b.key);
    }
}

/// GOOD with self IPs that leave the VIP and a gateway free to float.
/// Sync keys drawn with `openssl rand -hex`: the weak-key checks accept them.
const KEY16: &str = "9c41e07b2d86f35a1ec4078b6fd2935a";
const KEY32: &str = "ac07e2b1f609af731d8373168d0240f7288bebc9b72c14e5c91499b7a8ffc345";

fn ha(extra: &str) -> String {
    GOOD.replace("198.51.100.1/24", "198.51.100.3/24").replace("192.0.2.2/24", "192.0.2.3/24") + extra
}

const VRRP: &str = r#"
[[vrrp]]
name = "outside"
interface = "outside"
vrid = 51
priority = 200
advert_interval_ms = 100
preempt_delay_ms = 0
addresses = ["192.0.2.100"]
group = "pair"
track_interfaces = ["outside", "inside"]
track_addresses = ["192.0.2.1"]

[[vrrp]]
name = "inside"
interface = "inside"
vrid = 52
addresses = ["198.51.100.1"]
group = "pair"
"#;

#[test]
fn vrrp_and_sync_parse_with_defaults_and_render_back() {
    let text = ha(&format!("{VRRP}\n[sync]\ninterface = \"inside\"\npeer = \"198.51.100.4\"\nkey = \"{KEY32}\"\n"));
    let c = Config::parse("t.toml", &text).unwrap();
    assert_eq!(c.vrrp.len(), 2);
    let v = &c.vrrp[1];
    assert_eq!((*v.version.get_ref(), *v.priority.get_ref(), *v.advert_interval_ms.get_ref(), v.preempt, v.use_vmac), (3, 100, 1000, true, true));
    assert_eq!((*v.garp_count.get_ref(), *v.track_weight.get_ref()), (5, 0));
    let s = c.sync.as_ref().unwrap();
    assert_eq!((*s.port.get_ref(), *s.refresh_s.get_ref(), s.key_bytes().len()), (8848, 30, 32));
    let again = Config::parse("rendered", &render_with_secrets(&c)).unwrap_or_else(|e| panic!("{e}\n{}", render_with_secrets(&c)));
    assert_eq!(again.vrrp, c.vrrp);
    assert_eq!(again.sync, c.sync);
}

#[test]
fn vrrp_mistakes_are_refused_at_their_line() {
    let cases: &[(&str, &str, &str)] = &[
        ("vrid = 51", "vrid = 0", "vrid 0 is out of range: allowed 1..=255"),
        ("advert_interval_ms = 100", "advert_interval_ms = 105", "counts in steps of 10 ms"),
        ("advert_interval_ms = 100", "advert_interval_ms = 100\nversion = 2", "advert_interval_ms 100 is out of range: allowed 1000..=255000"),
        ("advert_interval_ms = 100", "advert_interval_ms = 100\nauth_password = \"x\"", "auth_password is for version 2 only"),
        ("addresses = [\"192.0.2.100\"]", "addresses = [\"203.0.113.9\"]", "203.0.113.9 is in no interface's subnet"),
        ("addresses = [\"192.0.2.100\"]", "addresses = [\"192.0.2.3\"]", "is an interface's own address"),
        ("addresses = [\"198.51.100.1\"]", "addresses = [\"192.0.2.100\"]", "already belongs to vrrp \"outside\""),
        ("track_interfaces = [\"outside\", \"inside\"]", "track_interfaces = [\"uplink\"]", "no interface named \"uplink\""),
        ("vrid = 52", "vrid = 52\nunicast_peers = [\"192.0.2.4\"]", "unicast peer 192.0.2.4 is not in interface \"inside\"'s subnet"),
        ("priority = 200", "priority = 0", "priority 0 is out of range: allowed 1..=255"),
        ("priority = 200", "priority = 255", "vrrp \"outside\": priority 255 (the address owner, master from start whatever the peer says) cannot follow a sync group: at most 254 in a group"),
    ];
    for (from, to, want) in cases {
        let text = ha(&VRRP.replacen(from, to, 1));
        let e = Config::parse("t.toml", &text).unwrap_err();
        assert!(e.message.contains(want), "{to:?}: {e}");
        assert!(e.line > 40, "{to:?}: placed at {}:{}", e.line, e.column);
    }
    let dup = ha(&format!("{VRRP}{}", VRRP.replace("\"outside\"\ninterface", "\"again\"\ninterface").split("[[vrrp]]\nname = \"inside\"").next().unwrap()));
    assert!(Config::parse("t.toml", &dup).unwrap_err().message.contains("vrid 51 is already used on interface \"outside\""));
}

/// The address owner (priority 255) is master from start: refused with
/// `[sync]` (it would not wait for the bulk dump), accepted without.
#[test]
fn the_address_owner_is_refused_with_sync() {
    let owner = VRRP.replace("priority = 200", "priority = 255").replace("group = \"pair\"\n", "");
    Config::parse("t.toml", &ha(&owner)).unwrap();
    let synced = ha(&format!("{owner}\n[sync]\ninterface = \"inside\"\npeer = \"198.51.100.4\"\nkey = \"{}\"\n", "9d2f61c0a7e34b58f1c96e0d2a7b3f84e5c1907a3d6b2e8f40c7a19e5d3b6f02"));
    let e = err(&synced);
    assert!(e.message.contains("vrrp \"outside\": priority 255 (the address owner, master from start whatever the peer says) would not wait for the [sync] peer's connection table"), "{e}");
    assert!(e.line > 40, "placed at {}:{}", e.line, e.column);
    let lower = synced.replace("priority = 255", "priority = 254");
    Config::parse("t.toml", &lower).unwrap();
}

#[test]
fn a_full_nat_vip_on_vrrp_needs_floating_local_addresses_and_sync_a_real_key() {
    let fnat = ha(VRRP).replace("pool = \"web\"\n", "pool = \"web\"\nforwarding = \"full-nat\"\n");
    assert!(err(&fnat).message.contains("needs local_addresses that are VRRP addresses too"), "{}", err(&fnat));
    let fixed_local = fnat.replace("forwarding = \"full-nat\"\n", "forwarding = \"full-nat\"\nlocal_addresses = [\"198.51.100.50\"]\n");
    assert!(err(&fixed_local).message.contains("local address 198.51.100.50 is on no [[vrrp]]"));
    let floating = fixed_local.replace("addresses = [\"198.51.100.1\"]", "addresses = [\"198.51.100.1\", \"198.51.100.50\"]");
    Config::parse("t.toml", &floating).unwrap();
    let short = ha(&format!("{VRRP}\n[sync]\ninterface = \"inside\"\npeer = \"198.51.100.4\"\nkey = \"abcd\"\n"));
    assert!(err(&short).message.contains("sync: key must be 16 to 64 bytes"));
    let far = ha(&format!("{VRRP}\n[sync]\ninterface = \"inside\"\npeer = \"192.0.2.4\"\nkey = \"{KEY16}\"\n"));
    assert!(err(&far).message.contains("sync: peer 192.0.2.4 is not in interface \"inside\"'s subnet"));
}

/// The published sample key and keys anyone would guess are refused at
/// the key's line; drawn keys of 16, 32 and 64 bytes pass.
#[test]
fn guessable_sync_keys_are_refused_at_their_line() {
    let sync = |key: &str| ha(&format!("{VRRP}\n[sync]\ninterface = \"inside\"\npeer = \"198.51.100.4\"\nkey = \"{key}\"\n"));
    let line = sync(KEY16).lines().position(|l| l.starts_with("key = ")).unwrap() + 1;
    let count: String = (0u8..32).map(|b| format!("{b:02x}")).collect();
    let down: String = (0u8..32).map(|b| format!("{:02x}", 200 - 3 * b)).collect();
    for (key, why) in [
        ("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff".to_string(), "the documented sample key"),
        ("00".repeat(32), "too few distinct bytes"),
        ("ab".repeat(16), "too few distinct bytes"),
        ("0123456789abcdef".repeat(4), "too few distinct bytes"),
        // 20 distinct bytes twice: enough distinct values, one block.
        ("9b41d256875a892b73982874e292b27e16c43e6c".repeat(2), "a repeated pattern"),
        (count, "a repeated pattern"),
        (down, "a repeated pattern"),
    ] {
        let e = err(&sync(&key));
        assert_eq!(e.line, line, "{key}: {e}");
        assert!(e.message.contains(why) && e.message.contains("openssl rand -hex 32"), "{key}: {why}: {e}");
    }
    let k64 = format!("{KEY32}638d35a4758b419b41d256875a892b73982874e292b27e16c43e6cfc3a8cbda7");
    for key in [KEY16, KEY32, k64.as_str()] {
        Config::parse("t.toml", &sync(key)).unwrap_or_else(|e| panic!("{key}: {e}"));
    }
}

/// `show config`'s rendering and `{:?}` carry neither the sync key nor
/// the VRRP password; the rendering for `config save` carries both and
/// parses back to the same configuration.
#[test]
fn secrets_are_redacted_everywhere_but_in_the_saved_rendering() {
    let v2 = VRRP.replacen("advert_interval_ms = 100\n", "advert_interval_ms = 1000\nversion = 2\nauth_password = \"pa55w0rd\"\n", 1);
    let c = Config::parse("t.toml", &ha(&format!("{v2}\n[sync]\ninterface = \"inside\"\npeer = \"198.51.100.4\"\nkey = \"{KEY32}\"\n"))).unwrap();
    let shown = render(&c);
    let debug = format!("{c:?} {:?} {:?}", c.sync, c.vrrp);
    for (what, text) in [("show config", &shown), ("Debug", &debug)] {
        assert!(!text.contains(KEY32) && !text.contains(&KEY32[..16]), "{what} shows the key:\n{text}");
        assert!(!text.contains("pa55w0rd"), "{what} shows the password:\n{text}");
        assert!(text.contains("<redacted"), "{what}: {text}");
    }
    // The fingerprint: the first 4 bytes of SHA-256 over the key's bytes
    // (`echo KEY | xxd -r -p | sha256sum`), to compare the pair's keys.
    assert!(shown.contains("key = \"<redacted sha256:3ad974ff>\""), "{shown}");
    assert!(shown.contains("auth_password = \"<redacted>\""), "{shown}");
    let saved = render_with_secrets(&c);
    assert!(saved.contains(KEY32) && saved.contains("pa55w0rd"));
    let again = Config::parse("saved.toml", &saved).unwrap();
    assert_eq!((&again.sync, &again.vrrp), (&c.sync, &c.vrrp));
    assert_eq!(render_with_secrets(&again), saved);
}

/// A bond: its device names the bond, its members are devices of their
/// own; refused otherwise at the place; rendered back; the EAL gets the
/// members before the bond, which names them.
#[test]
fn bonds_parse_refuse_their_mistakes_and_reach_the_eal_in_order() {
    let bonded = GOOD.replace(
        "device = \"net_af_packet0,iface=lb-out\"\n",
        "device = \"net_bonding0\"\nbond = { mode = \"active-backup\", members = [\"net_af_packet0,iface=lb-out\", \"net_af_packet2,iface=lb-out2\"] }\n",
    );
    let c = Config::parse("t", &bonded).unwrap();
    let args = crate::runtime::eal_args(&c).join(" ");
    assert!(args.contains("--vdev net_af_packet0,iface=lb-out --vdev net_af_packet2,iface=lb-out2 --vdev net_bonding0,mode=1,slave=net_af_packet0,slave=net_af_packet2 -a 0000:03:00.0"), "{args}");
    let lacp = Config::parse("t", &bonded.replace("active-backup", "802.3ad")).unwrap();
    assert!(crate::runtime::eal_args(&lacp).join(" ").contains("net_bonding0,mode=4,slave=net_af_packet0,slave=net_af_packet2,xmit_policy=l34"));
    let again = Config::parse("t", &render(&c)).unwrap();
    assert_eq!(again.interfaces[0].bond, c.interfaces[0].bond, "rendered back");
    for (text, want, line) in [
        (bonded.replace("\"net_af_packet0,iface=lb-out\", ", ""), "a bond has 2 to 8 members, not 1", 10),
        (bonded.replace("net_af_packet2,iface=lb-out2", "net_af_packet0,iface=other"), "device \"net_af_packet0\" is used twice", 10),
        (bonded.replace("net_af_packet2,iface=lb-out2", "0000:03:00.0"), "device \"0000:03:00.0\" is used by two interfaces", 15),
        (bonded.replace("device = \"net_bonding0\"", "device = \"net_bonding0,mode=1\""), "with `bond`, device names the bond", 9),
        (bonded.replace("device = \"net_bonding0\"", "device = \"net_af_packet5,iface=x\""), "with `bond`, device names the bond", 9),
        (GOOD.replace("net_af_packet0,iface=lb-out", "net_bonding0"), "a net_bonding device needs `bond`", 9),
        (bonded.replace("active-backup", "round-robin"), "unknown variant `round-robin`", 10),
    ] {
        let e = err(&text);
        assert!(e.message.contains(want), "{want}: {e}");
        assert_eq!(e.line, line, "{want}: {e}");
    }
}

/// VLAN interfaces: several on one device, each its own VLAN (one may be
/// untagged); the device reaches the EAL once; mistakes refused at their
/// place.
#[test]
fn vlan_interfaces_share_a_port() {
    let two = GOOD.replace(
        "[[interface]]\nname = \"inside\"\ndevice = \"0000:03:00.0\"\naddress = \"198.51.100.1/24\"\n",
        "[[interface]]\nname = \"inside\"\ndevice = \"net_af_packet0,iface=lb-out\"\naddress = \"198.51.100.1/24\"\nvlan = 20\n",
    );
    let c = Config::parse("t", &two).unwrap();
    let args = crate::runtime::eal_args(&c).join(" ");
    assert_eq!(args.matches("net_af_packet0").count(), 1, "{args}");
    assert_eq!(Config::parse("t", &render(&c)).unwrap().interfaces[1].vlan.as_ref().map(|v| *v.get_ref()), Some(20));
    let e = err(&two.replace("vlan = 20\n", ""));
    assert!(e.message.contains("device \"net_af_packet0\" is used by two interfaces without a vlan"), "{e}");
    let e = err(&two.replace("address = \"192.0.2.2/24\"\n", "address = \"192.0.2.2/24\"\nvlan = 20\n"));
    assert!(e.message.contains("is used by two interfaces with vlan 20"), "{e}");
    assert_eq!(e.line, 17);
    let e = err(&two.replace("iface=lb-out\"\naddress = \"198.51", "iface=lb-out,qpairs=2\"\naddress = \"198.51"));
    assert!(e.message.contains("VLAN interfaces of one port name it alike"), "{e}");
}

/// `[[snat]]`: parsed with its range; the address on a link and nobody
/// else's; the range within the full-NAT ports; rendered back.
#[test]
fn snat_rules_parse_and_refuse_their_mistakes() {
    let rule = |addr: &str, ports: &str| format!("{GOOD}\n[[snat]]\nname = \"servers\"\nsources = \"198.51.100.0/24\"\naddress = \"{addr}\"\n{ports}");
    let c = Config::parse("t", &rule("192.0.2.3", "ports = \"20000-29999\"\n")).unwrap();
    assert_eq!(c.snat[0].port_range(), Some((20000, 29999)));
    assert_eq!(Config::parse("t", &rule("192.0.2.3", "")).unwrap().snat[0].port_range(), Some((1024, 49151)));
    assert_eq!(Config::parse("t", &render(&c)).unwrap().snat, c.snat, "rendered back");
    for (text, want) in [
        (rule("192.0.2.3", "ports = \"20000-70000\"\n"), "within 1024-49151"),
        (rule("192.0.2.3", "ports = \"62000-63000\"\n"), "within 1024-49151"),
        (rule("192.0.2.3", "ports = \"3000-2000\"\n"), "within 1024-49151"),
        (rule("203.0.113.3", ""), "is on no interface's subnet"),
        (rule("192.0.2.2", ""), "already a self IP"),
        (rule("192.0.2.100", ""), "already a self IP, VIP"),
    ] {
        let e = err(&text);
        assert!(e.message.contains(want), "{want}: {e}");
    }
}

/// Gateway services (firewall load balancing): the wildcard address, an
/// interface, a pair that pairs back with as many members; members' ports
/// mean nothing; `route` on an interface.
#[test]
fn gateway_services_and_route_interfaces() {
    let base = GOOD.replace("address = \"198.51.100.1/24\"\n", "address = \"198.51.100.1/24\"\nroute = true\n");
    let gw = |extra: &str| {
        format!(
            "{base}\n[[pool]]\nname = \"fw-a\"\nservers = [ {{ address = \"192.0.2.11:0\" }}, {{ address = \"192.0.2.12:0\" }} ]\n\n[[pool]]\nname = \"fw-b\"\nservers = [ {{ address = \"198.51.100.21:0\" }}, {{ address = \"198.51.100.22:0\" }} ]\n\n\
             [[virtual_server]]\nname = \"gw-a\"\naddress = \"0.0.0.0:0\"\nforwarding = \"gateway\"\ninterface = \"outside\"\npool = \"fw-a\"\npair = \"gw-b\"\n\n\
             [[virtual_server]]\nname = \"gw-b\"\naddress = \"0.0.0.0:0\"\nforwarding = \"gateway\"\ninterface = \"inside\"\npool = \"fw-b\"\npair = \"gw-a\"\n{extra}"
        )
    };
    let c = Config::parse("t", &gw("")).unwrap();
    assert!(c.interfaces[1].route);
    let again = Config::parse("t", &render(&c)).unwrap();
    assert_eq!(again.virtual_servers.iter().filter_map(|v| v.pair.as_ref().map(|p| p.get_ref().clone())).collect::<Vec<_>>(), vec!["gw-b", "gw-a"]);
    for (text, want) in [
        (gw("").replace("pair = \"gw-a\"\n", ""), "must be a gateway service pairing back"),
        (gw("").replace("interface = \"inside\"\n", "interface = \"outside\"\n"), "has another gateway service"),
        (gw("").replace("interface = \"outside\"\n", "interface = \"nowhere\"\n"), "no interface named \"nowhere\""),
        (gw("").replace("interface = \"outside\"\n", ""), "needs `interface`"),
        (gw("").replacen("address = \"0.0.0.0:0\"", "address = \"192.0.2.200:80\"", 1), "takes any destination: address = \"0.0.0.0:0\""),
        (GOOD.replace("pool = \"web\"\n", "pool = \"web\"\ninterface = \"outside\"\n"), "interface and pair belong to forwarding = \"gateway\""),
    ] {
        let e = err(&text);
        assert!(e.message.contains(want), "{want}: {e}");
    }
}

#[test]
fn defence_defaults_ranges_and_round_trip() {
    let c = Config::parse("t.toml", GOOD).unwrap();
    assert_eq!(c.defence.embryonic_max(65536), 16384, "a quarter of the table by default");
    assert_eq!(*c.defence.icmp_rate.get_ref(), 1000);
    assert_eq!(*c.timeouts.tcp_syn.get_ref(), 10, "half-open entries are short-lived");
    let text = format!("{GOOD}\n[defence]\nembryonic_per_worker = 5000\nicmp_rate = 20\nicmp_burst = 5\n");
    let c = Config::parse("t.toml", &text).unwrap();
    assert_eq!((c.defence.embryonic_max(65536), *c.defence.icmp_rate.get_ref(), *c.defence.icmp_burst.get_ref()), (5000, 20, 5));
    assert_eq!((c.defence.unreplied_per_service(65536), c.defence.unreplied_per_source(65536)), (2500, 78), "half and 1/64 of the budget");
    let again = Config::parse("r.toml", &render(&c)).unwrap();
    assert_eq!(again.defence, c.defence);
    let c = Config::parse("t.toml", &format!("{GOOD}\n[defence]\nunreplied_per_service = 700\nunreplied_per_source = 9\n")).unwrap();
    assert_eq!((c.defence.unreplied_per_service(65536), c.defence.unreplied_per_source(65536)), (700, 9));
    assert_eq!(Config::parse("r.toml", &render(&c)).unwrap().defence, c.defence);
    assert!(err(&format!("{GOOD}\n[defence]\nunreplied_per_source = 0\n")).to_string().contains("unreplied_per_source 0 is out of range"));
    assert_eq!(Config::parse("t.toml", GOOD).unwrap().defence.unreplied_per_source(1024), 16, "at least 16");
    let lines = GOOD.lines().count() + 3;
    let e = err(&format!("{GOOD}\n[defence]\nembryonic_per_worker = 0\n"));
    assert_eq!(e.line, lines, "{e}");
    assert!(e.to_string().contains("embryonic_per_worker 0 is out of range"), "{e}");
    let e = err(&format!("{GOOD}\n[defence]\nicmp_burst = 0\n"));
    assert!(e.to_string().contains("icmp_burst 0 is out of range"), "{e}");
    let text = format!("{GOOD}\n[defence.punt]\nicmp = 10\nother = 100\n");
    let c = Config::parse("t.toml", &text).unwrap();
    assert_eq!(c.defence.punt.rates(), [2000, 1000, 100_000, 2000, 20_000, 10, 100]);
    assert_eq!(Config::parse("r.toml", &render(&c)).unwrap().defence, c.defence);
    let e = err(&format!("{GOOD}\n[defence.punt]\narp = 20000000\n"));
    assert!(e.to_string().contains("arp 20000000 is out of range"), "{e}");
    let e = err(&format!("{GOOD}\n[defence]\nsyn_flood = 1\n"));
    assert!(e.to_string().contains("syn_flood"), "{e}");
    assert!(restart_needed(&Config::parse("t.toml", GOOD).unwrap(), &c).unwrap_err().contains("[defence]"));
}

#[test]
fn syn_proxy_per_virtual_server() {
    let on = format!("{GOOD}syn_proxy = \"on\"\n");
    let c = Config::parse("t.toml", &on).unwrap();
    assert_eq!(c.virtual_servers[0].syn_proxy.as_ref().map(|m| *m.get_ref()), Some(SynProxyMode::On));
    assert_eq!(Config::parse("r.toml", &render(&c)).unwrap().virtual_servers[0].syn_proxy.as_ref().map(|m| *m.get_ref()), Some(SynProxyMode::On));
    let line = on.lines().count();
    let e = err(&on.replace("address = \"192.0.2.100:80\"", "address = \"192.0.2.100:80\"\nforwarding = \"dsr-l2\""));
    assert_eq!(e.line, line + 1, "{e}");
    assert!(e.to_string().contains("syn_proxy = \"on\" needs a TCP virtual server"), "{e}");
    let e = err(&format!("{GOOD}syn_proxy = \"sometimes\"\n"));
    assert!(e.to_string().contains("sometimes"), "{e}");
    let c = Config::parse("t.toml", &format!("{GOOD}\n[defence]\nsyn_proxy_threshold = 100\n")).unwrap();
    assert_eq!(c.defence.syn_proxy_threshold(65536), 100);
    assert_eq!(Config::parse("t.toml", GOOD).unwrap().defence.syn_proxy_threshold(65536), 4096);
}

/// GOOD plus an `http` virtual server `site` on VIP:8080 with `extra`.
fn with_http(extra: &str) -> String {
    format!("{GOOD}\n[[virtual_server]]\nname = \"site\"\naddress = \"192.0.2.100:8080\"\nprotocol = \"http\"\npool = \"web\"\n{extra}\n")
}

#[test]
fn an_http_virtual_server_parses_without_forwarding_and_renders_back() {
    let c = Config::parse("t.toml", &with_http("local_addresses = [\"198.51.100.50\"]")).unwrap();
    assert!(c.has_l7());
    let v = &c.virtual_servers[1];
    assert_eq!(v.protocol, Protocol::Http);
    assert_eq!(v.protocol.transport(), Protocol::Tcp);
    assert_eq!(v.local_addresses, vec![Ipv4Addr::new(198, 51, 100, 50)]);
    let text = render(&c);
    assert!(text.contains("protocol = \"http\"") && text.contains("[l7]\nthreads = 1"), "{text}");
    let again = Config::parse("r.toml", &text).unwrap();
    assert_eq!(render(&again), text);
}

#[test]
fn an_http_virtual_server_refuses_what_does_not_apply_with_its_place() {
    for (extra, line, needle) in [
        ("forwarding = \"full-nat\"", 43, "forwarding does not apply"),
        ("persistence = { kind = \"source-ip\" }", 43, "is the workers' (L4)"),
        ("persistence = { kind = \"cookie-hash\" }", 43, "cookie-hash needs `cookie`"),
        ("persistence = { kind = \"session-id\", expires_s = 60 }", 43, "expires_s does not apply"),
        ("persistence = { kind = \"header\" }", 43, "needs `header`"),
        ("persistence = { kind = \"cookie-insert\", cookie = \"a;b\" }", 43, "no cookie name"),
        ("persistence = { kind = \"cookie-insert\", expires_s = 0 }", 43, "expires_s 0 is out of range"),
        ("local_addresses = [\"203.0.113.9\"]", 39, "on no interface's subnet"),
        ("local_addresses = [\"192.0.2.100\"]", 39, "a VIP"),
    ] {
        let e = err(&with_http(extra));
        assert!(e.message.contains(needle), "{extra}: {e}");
        assert_eq!(e.line, line, "{extra}: {e}");
    }
    // One transport port, one virtual server: http and tcp on VIP:80.
    let e = err(&format!("{GOOD}\n[[virtual_server]]\nname = \"site\"\naddress = \"192.0.2.100:80\"\nprotocol = \"http\"\npool = \"web\"\n"));
    assert!(e.message.contains("already served"), "{e}");
    let e = err(&format!("{}\n[l7]\nthreads = 0\n", with_http("")));
    assert!(e.message.contains("threads 0 is out of range"), "{e}");
    let e = err(&format!("{}\n[l7]\ncpus = []\n", with_http("")));
    assert!(e.message.contains("at least one CPU"), "{e}");
}

#[test]
fn the_host_link_and_the_engine_take_effect_at_restart() {
    let old = Config::parse("t.toml", GOOD).unwrap();
    let new = Config::parse("t.toml", &with_http("")).unwrap();
    let e = restart_needed(&old, &new).unwrap_err();
    assert!(e.contains("protocol = \"http\""), "{e}");
    let more = Config::parse("t.toml", &format!("{}\n[l7]\nthreads = 2\n", with_http(""))).unwrap();
    assert!(restart_needed(&new, &more).unwrap_err().contains("[l7]"));
    // Another http virtual server once the engine runs: no restart.
    let two = Config::parse("t.toml", &format!("{}\n[[virtual_server]]\nname = \"b\"\naddress = \"192.0.2.101:80\"\nprotocol = \"http\"\npool = \"web\"\n", with_http(""))).unwrap();
    assert!(restart_needed(&new, &two).is_ok());
}

#[test]
fn l7_persistence_renders_back_and_needs_http() {
    let c = Config::parse("t.toml", &with_http("persistence = { kind = \"cookie-insert\", cookie = \"SRV\", expires_s = 60, secure = true, http_only = true, same_site = \"strict\", html_only = true }")).unwrap();
    let text = render(&c);
    assert!(text.contains("cookie = \"SRV\"") && text.contains("same_site = \"strict\"") && text.contains("html_only = true"), "{text}");
    assert_eq!(render(&Config::parse("r.toml", &text).unwrap()), text);
    let e = err(&GOOD.replace("pool = \"web\"\n", "pool = \"web\"\npersistence = { kind = \"cookie-insert\" }\n"));
    assert!(e.message.contains("needs protocol = \"http\""), "{e}");
}

#[test]
fn rules_and_header_actions_render_as_toml_whatever_their_text() {
    // The config fuzzer's find: Rust's `{:?}` is no TOML string.
    let rule = "\n[[virtual_server.rule]]\nhost = \"a.exam\u{fe0f}ple\\\\x\\\"y\"\nheader = { name = \"X-A\", equals = \"\u{1f600}\" }\npool = \"web\"\n\n[[virtual_server.http_response]]\naction = \"set-header\"\nname = \"X-B\"\nvalue = \"a \\\"quoted\\\" value\"\n";
    let c = Config::parse("t.toml", &with_http(rule)).unwrap();
    let text = render(&c);
    let again = Config::parse("r.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(render(&again), text);
    assert_eq!(again.virtual_servers[1].rule[0].host.as_ref().map(|h| h.get_ref().as_str()), Some("a.exam\u{fe0f}ple\\x\"y"));
}

/// A test certificate for a.example and *.a.example (made by
/// tests/scripts/mkcerts.sh; loading does not look at its dates), its
/// key, and a key of another certificate.
const A_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB4jCCAYigAwIBAgIUN1i+IK/oNNAuNlj+NkfJmZg9sggwCgYIKoZIzj0EAwIw\nGzEZMBcGA1UEAwwQRnVyaXdha2UgdGVzdCBDQTAeFw0yNjEyMDYwMzEyMTJaFw0y\nNjEyMDgwMzEyMTJaMAwxCjAIBgNVBAMMAWEwWTATBgcqhkjOPQIBBggqhkjOPQMB\nBwNCAAToo+8Cx/POh6L9Lsx4PJlN+u8F94gY4ClNUeDJ7b6o6XwMjdp/QhhgYti6\n9FWiwcfFUL6ZXNM60JJTeiz7tyCDo4G4MIG1MCEGA1UdEQQaMBiCCWEuZXhhbXBs\nZYILKi5hLmV4YW1wbGUwCQYDVR0TBAIwADATBgNVHSUEDDAKBggrBgEFBQcDATAw\nBggrBgEFBQcBAQQkMCIwIAYIKwYBBQUHMAGGFGh0dHA6Ly9vY3NwLmludmFsaWQv\nMB0GA1UdDgQWBBRpBAfN0DFMQXMkGzeBLacyy98Y5TAfBgNVHSMEGDAWgBTBVXBo\nrLNkCnYh1wwIZhA+k0qWFzAKBggqhkjOPQQDAgNIADBFAiBAvp5D+t/0dP6t458P\nxWX1x+GCcwE4mjoCPb1iVKsf5QIhAIBq59xihW7emjVNZfBv7EpgbzRilJ0qwPwe\nRwAP/ebK\n-----END CERTIFICATE-----\n";
const A_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg9f20ZwkBEFk7yBTE\npc4gryezlXx3ZGTLlDRlcjAkseWhRANCAAToo+8Cx/POh6L9Lsx4PJlN+u8F94gY\n4ClNUeDJ7b6o6XwMjdp/QhhgYti69FWiwcfFUL6ZXNM60JJTeiz7tyCD\n-----END PRIVATE KEY-----\n";
const B_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgytsILnAuijeqoe+O\neIFvXQx2nm9m4KSVfYjiELt041ehRANCAAQxpqLO83TY3sW0UBm7zhAR7knxW16T\nbZP6Cqa5IgGAIwa1gqirKc9GxbTul/zmZhrmkHS1jwvwLp56guPIVH3g\n-----END PRIVATE KEY-----\n";

/// The three files in a scratch dir (keys mode 0600): (dir, cert, key, other key).
fn tls_files(tag: &str) -> (std::path::PathBuf, String, String, String) {
    use std::os::unix::fs::PermissionsExt;
    let d = std::env::temp_dir().join(format!("furiwake-tls-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    for (f, text) in [("a.pem", A_PEM), ("a.key", A_KEY), ("b.key", B_KEY)] {
        std::fs::write(d.join(f), text).unwrap();
        std::fs::set_permissions(d.join(f), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let p = |f: &str| d.join(f).display().to_string();
    (d.clone(), p("a.pem"), p("a.key"), p("b.key"))
}

/// GOOD plus an `https` virtual server on VIP:443 with `tls`.
fn with_https(tls: &str) -> String {
    format!("{GOOD}\n[[virtual_server]]\nname = \"secure\"\naddress = \"192.0.2.100:443\"\nprotocol = \"https\"\npool = \"web\"\n{tls}\n")
}

#[test]
fn an_https_virtual_server_loads_its_certificates_and_renders_back() {
    let (d, cert, key, _) = tls_files("ok");
    let text = with_https(&format!("tls = {{ certificates = [ {{ cert = \"{cert}\", key = \"{key}\" }} ], min_version = \"1.3\" }}\nserver_tls = {{ ca = \"{cert}\", server_name = \"a.example\" }}"));
    let c = Config::parse("t.toml", &text).unwrap();
    let v = &c.virtual_servers[1];
    assert_eq!(v.protocol, Protocol::Https);
    assert!(c.has_l7() && v.protocol.transport() == Protocol::Tcp);
    let sc = v.tls.as_ref().and_then(|t| t.get_ref().loaded.0.clone()).expect("loaded");
    assert_eq!(sc.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    assert!(v.server_tls.as_ref().is_some_and(|t| t.get_ref().loaded.0.is_some()));
    let r = render(&c);
    assert!(r.contains(&format!("tls = {{ certificates = [{{ cert = \"{cert}\", key = \"{key}\" }}], min_version = \"1.3\" }}")), "{r}");
    assert_eq!(render(&Config::parse("r.toml", &r).unwrap()), r);
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn tls_files_that_cannot_serve_are_refused_at_their_line() {
    use std::os::unix::fs::PermissionsExt;
    let (d, cert, key, other) = tls_files("bad");
    let line = GOOD.lines().count() + 7;
    let tls = |c: &str, k: &str| format!("tls = {{ certificates = [ {{ cert = \"{c}\", key = \"{k}\" }} ] }}");
    for (text, needle) in [
        (with_https(&tls(&cert, &other)), "KeyMismatch"),
        (with_https(&tls(&key, &key)), "no certificate in it"),
        (with_https(&tls(&cert, "a.key")), "must be an absolute path"),
        (with_https(&tls(&format!("{cert}.missing"), &key)), "No such file"),
        (with_https("tls = { certificates = [] }"), "at least one certificate"),
        (with_https(""), "needs tls = "),
        (with_http(&tls(&cert, &key)), "tls needs protocol = \"https\""),
        (with_https(&format!("{}\nserver_tls = {{ ca = \"{key}\" }}", tls(&cert, &key))), "server_tls: ca"),
    ] {
        let e = err(&text);
        assert!(e.message.contains(needle), "{needle}: {e}");
    }
    // A key others may read: refused at its certificate's line.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let e = err(&with_https(&tls(&cert, &key)));
    assert!(e.message.contains("mode 0640: others may read it"), "{e}");
    assert_eq!(e.line, line, "{e}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let tcp = format!("{GOOD}{}\n", tls(&cert, &key));
    assert!(err(&tcp).message.contains("passes TLS through"), "{}", err(&tcp));
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn tls_session_id_persistence_makes_a_tcp_virtual_server_the_engines() {
    let tcp = |extra: &str| format!("{GOOD}\n[[virtual_server]]\nname = \"tls-tcp\"\naddress = \"192.0.2.100:9443\"\npool = \"web\"\npersistence = {{ kind = \"tls-session-id\" }}\n{extra}\n");
    let c = Config::parse("t.toml", &tcp("")).unwrap();
    let v = &c.virtual_servers[1];
    assert!(v.engine_served() && c.has_l7() && v.protocol == Protocol::Tcp);
    let text = render(&c);
    assert!(!text.contains("name = \"tls-tcp\"\naddress = \"192.0.2.100:9443\"\nprotocol = \"tcp\"\npool = \"web\"\nforwarding"), "no forwarding for the engine's: {text}");
    assert_eq!(render(&Config::parse("r.toml", &text).unwrap()), text);
    for (extra, needle) in [
        ("forwarding = \"full-nat\"", "forwarding does not apply"),
        ("client_address = [\"x-forwarded-for\"]", "passes TLS through"),
    ] {
        let e = err(&tcp(extra));
        assert!(e.message.contains(needle), "{extra}: {e}");
    }
    let e = err(&with_http("persistence = { kind = \"tls-session-id\" }"));
    assert!(e.message.contains("tls-session-id keeps a tcp virtual server's"), "{e}");
}

/// `[[interface]] rss`: `auto` picks the side each port faces (the
/// servers' port queues by the destination, the clients' by the source,
/// a port facing both spreads); explicit values win; others are refused
/// with their place.
#[test]
fn rss_sides_follow_what_each_port_faces() {
    let c = Config::parse("t.toml", GOOD).unwrap();
    assert_eq!((c.rss_side(&c.interfaces[0]), c.rss_side(&c.interfaces[1])), (RssSide::Client, RssSide::Server));
    // One-arm: the servers and the default route on one port.
    let one_arm = GOOD.replace("198.51.100.11:8080", "192.0.2.11:8080").replace("198.51.100.12:8080", "192.0.2.12:8080");
    let c = Config::parse("t.toml", &one_arm).unwrap();
    assert_eq!((c.rss_side(&c.interfaces[0]), c.rss_side(&c.interfaces[1])), (RssSide::Spread, RssSide::Client));
    // Servers behind a route via the inside: still the servers' port.
    let routed = GOOD.replace("198.51.100.11:8080", "203.0.113.11:8080").replace("[[health_check]]", "[[route]]\nprefix = \"203.0.113.0/24\"\nvia = \"198.51.100.254\"\n\n[[health_check]]");
    let c = Config::parse("t.toml", &routed).unwrap();
    assert_eq!(c.rss_side(&c.interfaces[1]), RssSide::Server);
    let forced = GOOD.replace("address = \"198.51.100.1/24\"", "address = \"198.51.100.1/24\"\nrss = \"client\"");
    let c = Config::parse("t.toml", &forced).unwrap();
    assert_eq!(c.rss_side(&c.interfaces[1]), RssSide::Client);
    assert!(render(&c).contains("rss = \"client\""), "rendered with the config");
    let e = err(&GOOD.replace("address = \"198.51.100.1/24\"", "address = \"198.51.100.1/24\"\nrss = \"both\"")).to_string();
    assert!(e.contains("t.toml:16:7") && e.contains("unknown variant `both`"), "{e}");
}

/// The real-server limit (`limits::MAX_SERVERS`, issue 23): a pool of
/// 10,002 members, once refused at 4,096, is taken, and one of 65,536
/// (every `u16` slot, the last included); one of 65,537 over its virtual
/// servers is refused, saying the limit. (Built and compiled into a
/// snapshot too: every member gets its slot and next hop.)
#[test]
fn ten_thousand_members_are_taken_and_the_limit_is_65536() {
    let with = |n: usize| {
        let servers: String = (0..n).map(|i| format!("{{ address = \"198.51.100.{}:{}\" }},", 20 + i % 200, 1024 + i / 200)).collect();
        GOOD.replace(r#"servers = [ { address = "198.51.100.11:8080", weight = 3 }, { address = "198.51.100.12:8080" } ]"#, &format!("servers = [ {servers} ]"))
    };
    let cfg = Config::parse("t.toml", &with(10_002)).expect("10,002 members");
    assert_eq!(cfg.pools[0].servers.len(), 10_002);
    let links = [crate::modules::lb::build::LinkInfo {
        port_id: 0,
        vlan: 0,
        route: false,
        mac: furiwake_dataplane::wire::EthernetAddress([2, 0, 0, 0, 0, 1]),
        address: "198.51.100.1/24".parse().unwrap(),
        address6: None,
        mtu: 1500,
        host: false,
    }];
    let built = crate::modules::lb::build::build(&cfg, &links).expect("built");
    assert_eq!(built.snapshot.servers.len(), 10_002);
    assert_eq!(built.nexthops.len(), 200, "one next hop per address, not per member");
    let cfg = Config::parse("t.toml", &with(65_536)).expect("65,536 members");
    let built = crate::modules::lb::build::build(&cfg, &links).expect("built");
    assert_eq!(built.snapshot.servers.len(), 65_536);
    let slots: std::collections::BTreeSet<u16> = built.snapshot.services.iter().flat_map(|v| v.members.iter().copied()).collect();
    assert_eq!((slots.len(), slots.last()), (65_536, Some(&u16::MAX)), "every u16 a member's slot");
    let e = err(&with(furiwake_dataplane::limits::MAX_SERVERS + 1)).to_string();
    assert!(e.contains("at most 65536 real servers"), "{e}");
}
