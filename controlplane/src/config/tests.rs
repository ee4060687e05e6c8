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
    assert_eq!(c.pools[0].servers[1].weight, 1);
    assert_eq!(*c.pools[0].algorithm.get_ref(), Algorithm::WeightedRoundRobin);
    assert_eq!(c.virtual_servers[0].protocol, Protocol::Tcp);
    assert_eq!(*c.virtual_servers[0].forwarding.get_ref(), Forwarding::Nat);
    assert_eq!(c.timeouts.tcp_established, 900);
    assert_eq!(c.platform.flows_per_worker, 1 << 20);
    assert_eq!(c.health_checks[0].fall, 3);
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
    let e = err(&GOOD.replace("pool = \"web\"\n", "pool = \"web\"\nforwarding = \"dsr-l2\"\n"));
    assert!(e.message.contains("not supported"), "{e}");
    assert_eq!(e.line, 37);
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
    let p = *c.virtual_servers[0].persistence.as_ref().unwrap().get_ref();
    assert_eq!((p.kind, p.netmask, p.timeout_s, p.keep_on_down), (PersistenceKind::SourceIp, Ipv4Addr::new(255, 255, 255, 0), 60, false));
    assert_eq!(c.platform.persistence_records, 65536);
    // Defaults: /32, 300 s.
    let c = Config::parse("t.toml", &GOOD.replace("pool = \"web\"\n", "pool = \"web\"\npersistence = { kind = \"source-ip-port\" }\n")).unwrap();
    let p = *c.virtual_servers[0].persistence.as_ref().unwrap().get_ref();
    assert_eq!((p.netmask, p.timeout_s), (Ipv4Addr::BROADCAST, 300));

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
