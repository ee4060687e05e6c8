//! IPv6 in the configuration: `addresses`, IPv6 routes, their refusals
//! with the place in the file.

use super::*;

const BASE: &str = r#"
[platform]
eal_args = ["--no-huge", "-m", "512", "--no-pci"]
control_lcore = 0
worker_lcores = [1]

[[interface]]
name = "outside"
device = "net_af_packet0,iface=lb-out"
addresses = ["192.0.2.2/24", "2001:db8:1::2/64"]

[[interface]]
name = "inside"
device = "net_af_packet1,iface=lb-in"
address = "198.51.100.1/24"
"#;

fn with(extra: &str) -> String {
    format!("{BASE}{extra}")
}

fn err(text: &str) -> ConfigError {
    Config::parse("t.toml", text).unwrap_err()
}

#[test]
fn addresses_take_one_address_per_family_and_address_stays_valid() {
    let c = Config::parse("t.toml", &with("\n[[route]]\nprefix = \"::/0\"\nvia = \"2001:db8:1::1\"\n\n[[route]]\nprefix = \"0.0.0.0/0\"\nvia = \"192.0.2.1\"\n")).unwrap();
    assert_eq!(c.interfaces[0].address, "192.0.2.2/24".parse().unwrap());
    let v6 = c.interfaces[0].address6.unwrap();
    assert_eq!(v6.addr, "2001:db8:1::2".parse::<std::net::Ipv6Addr>().unwrap());
    assert_eq!(v6.prefix_len, 64);
    assert!(v6.contains("2001:db8:1::ffff".parse().unwrap()));
    assert!(!v6.contains("2001:db8:2::1".parse().unwrap()));
    assert_eq!(c.interfaces[1].address6, None);
    assert_eq!(c.routes4().count(), 1);
    let r6: Vec<&Route6> = c.routes6().collect();
    assert_eq!(r6.len(), 1);
    assert_eq!(r6[0].prefix.prefix_len, 0);
    // The running config renders back to what parses to the same.
    let again = Config::parse("again.toml", &render_with_secrets(&c)).unwrap();
    assert_eq!(again.interfaces[0].address6, c.interfaces[0].address6);
    assert_eq!(again.routes6().copied().collect::<Vec<_>>(), c.routes6().copied().collect::<Vec<_>>());
    assert_eq!(again.routes4().copied().collect::<Vec<_>>(), c.routes4().copied().collect::<Vec<_>>());
}

/// Each refusal names the line of the interface or route it is about.
#[test]
fn bad_ipv6_addresses_and_routes_are_refused_at_their_line() {
    let iface = |addrs: &str| BASE.replace(r#"addresses = ["192.0.2.2/24", "2001:db8:1::2/64"]"#, addrs);
    // A value that is no prefix is refused at its line (10); a list that
    // breaks a rule, at its interface's table (7).
    let cases: Vec<(String, &str)> = vec![
        (iface(r#"addresses = ["2001:db8:1::2/64"]"#), "has no IPv4 address"),
        (iface(r#"addresses = ["192.0.2.2/24", "2001:db8:1::2/64", "2001:db8:1::3/64"]"#), "a second IPv6 address"),
        (iface(r#"addresses = ["192.0.2.2/24", "192.0.2.3/24"]"#), "a second IPv4 address"),
        (iface(r#"addresses = ["192.0.2.2/24", "fe80::2/64"]"#), "link-local"),
        (iface(r#"addresses = ["192.0.2.2/24", "ff02::2/64"]"#), "multicast"),
        (iface(r#"addresses = ["192.0.2.2/24", "::ffff:192.0.2.9/64"]"#), "IPv4-mapped"),
        (iface(r#"addresses = ["192.0.2.2/24", "2001:db8:1::2/129"]"#), "out of range"),
        (iface(r#"addresses = ["192.0.2.2/24", "2001:db8:1::2/128"]"#), "the link's subnet"),
        (iface("address = \"192.0.2.2/24\"\naddresses = [\"192.0.2.2/24\"]"), "not both"),
        (iface(r#"addresses = ["192.0.2.2/24", "2001:db8:1::zz/64"]"#), "not an IPv6 address"),
    ];
    for (text, why) in cases {
        let e = err(&text);
        assert!(e.message.contains(why), "{why}: {e}");
        let line = if why.starts_with("not an") || why.starts_with("out of") { 10 } else { 7 };
        assert_eq!(e.line, line, "{why}: {e}");
    }
    let route = |prefix: &str, via: &str| with(&format!("\n[[route]]\nprefix = \"{prefix}\"\nvia = \"{via}\"\n"));
    let routes = [
        (route("::/0", "192.0.2.1"), "other address family"),
        (route("0.0.0.0/0", "2001:db8:1::1"), "other address family"),
        (route("::/0", "2001:db8:9::1"), "no interface's IPv6 subnet"),
        (route("::/0", "fe80::1"), "link-local"),
        (route("::/0", "nonsense"), "not an IP address"),
    ];
    for (text, why) in routes {
        let e = err(&text);
        assert!(e.message.contains(why), "{why}: {e}");
        assert_eq!(e.line, 17, "{why}: {e}");
    }
    let twice = with("\n[[route]]\nprefix = \"2001:db8:9::/48\"\nvia = \"2001:db8:1::1\"\n\n[[route]]\nprefix = \"2001:db8:9::/48\"\nvia = \"2001:db8:1::5\"\n");
    let e = err(&twice);
    assert!(e.message.contains("routed twice"), "{e}");
    assert_eq!(e.line, 21, "{e}");
    let shared = BASE.replace("address = \"198.51.100.1/24\"", "addresses = [\"198.51.100.1/24\", \"2001:db8:1::2/64\"]");
    let e = err(&shared);
    assert!(e.message.contains("another interface's too"), "{e}");
}

/// An IPv6 virtual server over IPv6 servers, `nat` or `full-nat`; the
/// rest of what IPv4 has is refused for it, each at its line, and the
/// families are never mixed.
#[test]
fn ipv6_virtual_servers_and_their_refusals() {
    let pools = "\n[[pool]]\nname = \"web6\"\nservers = [ { address = \"[2001:db8:2::11]:80\" }, { address = \"[2001:db8:2::12]:80\" } ]\n\n[[pool]]\nname = \"web4\"\nservers = [ { address = \"198.51.100.11:80\" } ]\n";
    let base = BASE.replace("address = \"198.51.100.1/24\"", "addresses = [\"198.51.100.1/24\", \"2001:db8:2::1/64\"]");
    let vs = |extra: &str| format!("{base}{pools}\n[[virtual_server]]\nname = \"www6\"\naddress = \"[2001:db8:1::100]:80\"\npool = \"web6\"\n{extra}");
    let c = Config::parse("t.toml", &vs("forwarding = \"full-nat\"\n")).unwrap();
    assert!(c.virtual_servers[0].is_v6());
    assert_eq!(c.pools[0].servers[0].address.get_ref().to_string(), "[2001:db8:2::11]:80");
    let again = Config::parse("again.toml", &render_with_secrets(&c)).unwrap();
    assert_eq!(again.virtual_servers[0].address.get_ref(), c.virtual_servers[0].address.get_ref());
    Config::parse("t.toml", &vs("protocol = \"udp\"\n")).unwrap();
    Config::parse("t.toml", &vs("").replace("[[pool]]\nname = \"web6\"\n", "[[health_check]]\nname = \"ok\"\nkind = \"icmp\"\n\n[[pool]]\nname = \"web6\"\nhealth_check = \"ok\"\n")).unwrap();
    let c = Config::parse("t.toml", &vs("persistence = { kind = \"source-ip\", prefix6 = 64, timeout_s = 60 }\n")).unwrap();
    let p = c.virtual_servers[0].persistence.as_ref().unwrap().get_ref();
    assert_eq!(*p.prefix6.get_ref(), 64);
    let again = Config::parse("again.toml", &render_with_secrets(&c)).unwrap();
    assert_eq!(*again.virtual_servers[0].persistence.as_ref().unwrap().get_ref().prefix6.get_ref(), 64, "rendered and read back");
    Config::parse("t.toml", &vs("forwarding = \"dsr-l2\"\n")).unwrap();
    Config::parse("t.toml", &vs("forwarding = \"dsr-dscp\"\ndscp = 10\n")).unwrap();
    for kind in ["ipip", "gre", "gue"] {
        Config::parse("t.toml", &vs(&format!("forwarding = \"dsr-tunnel\"\ntunnel = \"{kind}\"\n"))).unwrap();
    }
    Config::parse("t.toml", &vs("").replace("[[pool]]\nname = \"web6\"\n", "[[health_check]]\nname = \"ok\"\nkind = \"http\"\nrequest = \"GET / HTTP/1.0\\r\\n\\r\\n\"\n\n[[pool]]\nname = \"web6\"\nhealth_check = \"ok\"\n")).unwrap();
    let refused = [
        (vs("forwarding = \"gateway\"\ninterface = \"outside\"\n"), "takes any destination"),
        (vs("forwarding = \"dsr-dscp\"\ndscp = 10\n").replace("[[pool]]\nname = \"web6\"\n", "[[health_check]]\nname = \"ok\"\nkind = \"tcp\"\n\n[[pool]]\nname = \"web6\"\nhealth_check = \"ok\"\n"), "probed at the VIP"),
        (vs("forwarding = \"dsr-l2\"\n").replace("[2001:db8:1::100]:80", "[2001:db8:1::100]:81"), "the VIP's port"),
        (vs("protocol = \"http\"\n"), "L7 engine over IPv6"),
        (vs("persistence = { kind = \"source-ip\", prefix6 = 0 }\n"), "prefix6 0 is out of range"),
        (vs("persistence = { kind = \"source-ip\", prefix6 = 129 }\n"), "prefix6 129 is out of range"),
        (vs("persistence = { kind = \"source-ip-port\", prefix6 = 64 }\n"), "prefix6 applies to kind"),
        (vs("syn_proxy = \"on\"\n"), "SYN proxy over IPv6"),
        (vs("forwarding = \"full-nat\"\nproxy_protocol = \"v2\"\n"), "proxy_protocol over IPv6"),
        (vs("forwarding = \"full-nat\"\nlocal_addresses = [\"198.51.100.1\"]\n"), "local_addresses"),
        (vs("").replace("pool = \"web6\"\n", "pool = \"web4\"\n"), "must be \"full-nat\""),
        (vs("").replace("[2001:db8:1::100]:80", "[2001:db8:2::1]:80"), "self address"),
        (vs("").replace("[2001:db8:1::100]:80", "[fe80::100]:80"), "link-local"),
        (format!("{base}{pools}\n[[virtual_server]]\nname = \"www4\"\naddress = \"192.0.2.100:80\"\npool = \"web6\"\n"), "must be \"full-nat\""),
        // A rule's pool of the other family (the L7 engine would connect
        // to nothing).
        (format!("{base}{pools}\n[[virtual_server]]\nname = \"www4\"\naddress = \"192.0.2.100:80\"\nprotocol = \"http\"\npool = \"web4\"\n\n[[virtual_server.rule]]\npath_prefix = \"/x\"\npool = \"web6\"\n"), "another address family"),
        (vs("").replace("[2001:db8:2::11]:80", "[fe80::11]:80"), "link-local"),
        (vs("").replace("[2001:db8:2::11]:80", "[::]:80"), "unspecified"),
        (vs("\n[[vrrp]]\nname = \"o\"\ninterface = \"outside\"\naddresses = [\"192.0.2.100\"]\nvrid = 51\n"), "VRRP and sync over IPv6"),
        (vs("forwarding = \"dsr-tunnel\"\ntunnel = \"gre\"\ntunnel_source = \"203.0.113.0/24\"\n"), "tunnel_source over IPv6"),
        (vs("forwarding = \"dsr-tunnel\"\ntunnel = \"ipip\"\n").replace("[[pool]]\nname = \"web6\"\n", "[[health_check]]\nname = \"ok\"\nkind = \"tcp\"\n\n[[pool]]\nname = \"web6\"\nhealth_check = \"ok\"\n"), "probed at the VIP"),
        (vs("forwarding = \"dsr-l2\"\n").replace("[[pool]]\nname = \"web6\"\n", "[[health_check]]\nname = \"ok\"\nkind = \"tcp\"\n\n[[pool]]\nname = \"web6\"\nhealth_check = \"ok\"\n"), "probed at the VIP"),
    ];
    for (text, why) in refused {
        let e = err(&text);
        assert!(e.message.contains(why), "{why}: {e}");
        assert!(e.line > 1, "{why}: placed: {e}");
    }
}

/// Translation between the families (RFC 7915): a full-NAT virtual server
/// over servers of the other family is accepted both ways; other modes,
/// and what translation does not carry, are refused at their line, and a
/// virtual server's servers are of one family.
#[test]
fn translation_is_full_nat_over_servers_of_one_other_family() {
    let pools = "\n[[pool]]\nname = \"web6\"\nservers = [ { address = \"[2001:db8:2::11]:80\" } ]\n\n[[pool]]\nname = \"web4\"\nservers = [ { address = \"198.51.100.11:80\" } ]\n\n[[pool]]\nname = \"both\"\nservers = [ { address = \"198.51.100.12:80\" }, { address = \"[2001:db8:2::12]:80\" } ]\n";
    let base = BASE.replace("address = \"198.51.100.1/24\"", "addresses = [\"198.51.100.1/24\", \"2001:db8:2::1/64\"]");
    let vs = |addr: &str, pool: &str, extra: &str| format!("{base}{pools}\n[[virtual_server]]\nname = \"x\"\naddress = \"{addr}\"\npool = \"{pool}\"\nforwarding = \"full-nat\"\n{extra}");
    Config::parse("t.toml", &vs("[2001:db8:1::100]:80", "web4", "")).unwrap();
    Config::parse("t.toml", &vs("192.0.2.100:80", "web6", "")).unwrap();
    Config::parse("t.toml", &vs("192.0.2.100:80", "web6", "protocol = \"udp\"\n")).unwrap();
    let refused = [
        (vs("[2001:db8:1::100]:80", "web4", "").replace("forwarding = \"full-nat\"\n", "forwarding = \"nat\"\n"), "must be \"full-nat\""),
        (vs("192.0.2.100:80", "web6", "").replace("forwarding = \"full-nat\"\n", "forwarding = \"dsr-l2\"\n"), "must be \"full-nat\""),
        (vs("192.0.2.100:80", "both", ""), "one family per virtual server"),
        (vs("192.0.2.100:80", "web6", "persistence = { kind = \"source-ip\", timeout_s = 60 }\n"), "persistence of translated"),
        (vs("192.0.2.100:80", "web6", "syn_proxy = \"on\"\n"), "syn_proxy"),
        (vs("192.0.2.100:80", "web6", "proxy_protocol = \"v2\"\n"), "proxy_protocol"),
        (vs("192.0.2.100:80", "web6", "local_addresses = [\"198.51.100.1\"]\n"), "local_addresses"),
        (vs("192.0.2.100:80", "web6", "protocol = \"http\"\n"), "L7 engine"),
        (vs("192.0.2.100:80", "web6", "\n[[vrrp]]\nname = \"o\"\ninterface = \"outside\"\naddresses = [\"192.0.2.100\"]\nvrid = 51\n"), "[[vrrp]] or [sync]"),
    ];
    for (text, why) in refused {
        let e = err(&text);
        assert!(e.message.contains(why), "{why}: {e}");
        assert!(e.line > 1, "{why}: placed: {e}");
    }
}

/// NAT's replies are owned by the client's prefix of the service's family:
/// two IPv6 NAT services sharing a server must agree on `prefix6` (the
/// review of 2026-12-07 found them compared by `netmask` only); a
/// persistence group's IPv4 and IPv6 members each keep their family's own
/// prefix (their records are their family's table's).
#[test]
fn ipv6_nat_services_sharing_a_server_agree_on_prefix6() {
    let pools = "\n[[pool]]\nname = \"web6\"\nservers = [ { address = \"[2001:db8:2::11]:80\" } ]\n\n[[pool]]\nname = \"web4\"\nservers = [ { address = \"198.51.100.11:80\" } ]\n";
    let base = BASE.replace("address = \"198.51.100.1/24\"", "addresses = [\"198.51.100.1/24\", \"2001:db8:2::1/64\"]");
    let two = |p: u8| format!("{base}{pools}\n[[virtual_server]]\nname = \"a\"\naddress = \"[2001:db8:1::100]:80\"\npool = \"web6\"\nforwarding = \"nat\"\npersistence = {{ kind = \"source-ip\", prefix6 = 64 }}\n\n[[virtual_server]]\nname = \"b\"\naddress = \"[2001:db8:1::101]:80\"\npool = \"web6\"\nforwarding = \"nat\"\npersistence = {{ kind = \"source-ip\", prefix6 = {p} }}\n");
    let e = err(&two(128));
    assert!(e.message.contains("same (or no) source-ip persistence") && e.line > 1, "{e}");
    Config::parse("t.toml", &two(64)).unwrap();
    let group = format!("{base}{pools}\n[[virtual_server]]\nname = \"a\"\naddress = \"[2001:db8:1::100]:80\"\npool = \"web6\"\npersistence = {{ kind = \"source-ip\", prefix6 = 64 }}\npersistence_group = \"g\"\n\n[[virtual_server]]\nname = \"b\"\naddress = \"192.0.2.100:80\"\npool = \"web4\"\npersistence = {{ kind = \"source-ip\", netmask = \"255.255.255.0\" }}\npersistence_group = \"g\"\n");
    Config::parse("t.toml", &group).unwrap();
}
