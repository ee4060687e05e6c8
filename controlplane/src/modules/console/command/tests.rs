use super::*;
use crate::config::{Forwarding, TunnelKind};

fn addr(s: &str) -> AddrArg {
    s.parse().unwrap()
}

#[test]
fn parses_every_command() {
    assert_eq!(parse("").unwrap(), None);
    assert_eq!(parse("  # note").unwrap(), None);
    assert_eq!(parse("show virtual-servers").unwrap(), Some(Command::Show(Show::VirtualServers { name: None })));
    assert_eq!(parse("sh vir www").unwrap(), Some(Command::Show(Show::VirtualServers { name: Some("www".into()) })));
    assert_eq!(parse("show pools").unwrap(), Some(Command::Show(Show::Pools)));
    assert_eq!(parse("show servers web").unwrap(), Some(Command::Show(Show::Servers { pool: Some("web".into()) })));
    for (w, s) in [("stats", Show::Stats), ("arp", Show::Arp), ("ndp", Show::Ndp), ("routes", Show::Routes), ("health", Show::Health), ("workers", Show::Workers), ("config", Show::Config)] {
        assert_eq!(parse(&format!("show {w}")).unwrap(), Some(Command::Show(s)));
    }
    assert_eq!(
        parse("show connections vip 192.0.2.100:80 server 198.51.100.11 limit 5").unwrap(),
        Some(Command::Show(Show::Connections { vip: Some(addr("192.0.2.100:80")), server: Some(addr("198.51.100.11")), limit: 5 }))
    );
    assert_eq!(parse("show conn").unwrap(), Some(Command::Show(Show::Connections { vip: None, server: None, limit: DEFAULT_LIMIT })));
    assert_eq!(
        parse("show pe v www s 198.51.100.11 l 7").unwrap(),
        Some(Command::Show(Show::Persistence { vs: Some("www".into()), server: Some(addr("198.51.100.11")), limit: 7 }))
    );
    assert!(parse("show persistence virtual-server").unwrap_err().contains("needs a value"));
    assert!(parse("show persistence limit 0").unwrap_err().contains("expected a number"));
    assert_eq!(
        parse("server web 198.51.100.11:80 drain").unwrap(),
        Some(Command::Server { pool: "web".into(), addr: addr("198.51.100.11:80"), action: ServerAction::Drain })
    );
    assert_eq!(
        parse("server web 198.51.100.11:80 dis").unwrap(),
        Some(Command::Server { pool: "web".into(), addr: addr("198.51.100.11:80"), action: ServerAction::Disable })
    );
    assert_eq!(
        parse("server web 198.51.100.11 weight 3").unwrap(),
        Some(Command::Server { pool: "web".into(), addr: addr("198.51.100.11"), action: ServerAction::Weight(3) })
    );
    assert_eq!(parse("help show connections").unwrap(), Some(Command::Help(vec!["show".into(), "connections".into()])));
    assert_eq!(parse("exit").unwrap(), Some(Command::Quit));
    assert_eq!(parse("_names").unwrap(), Some(Command::Names));
}

#[test]
fn bad_input_gets_a_clear_error() {
    let e = parse("frobnicate").unwrap_err();
    assert!(e.contains("unknown command \"frobnicate\"") && e.contains("help"), "{e}");
    let e = parse("show colors").unwrap_err();
    assert!(e.contains("unknown show command \"colors\"") && e.contains("virtual-servers"), "{e}");
    let e = parse("s").unwrap_err();
    assert!(e.contains("ambiguous") && e.contains("show") && e.contains("server"), "{e}");
    assert!(parse("show").unwrap_err().contains("show what?"));
    assert!(parse("show pools extra").unwrap_err().contains("takes no arguments"));
    assert!(parse("show connections limit 0").unwrap_err().contains("limit"));
    assert!(parse("show connections limit").unwrap_err().contains("needs a value"));
    assert!(parse("show connections vip nowhere").unwrap_err().contains("not an address"));
    assert!(parse("show connections color red").unwrap_err().contains("unknown option"));
    assert!(parse("server web").unwrap_err().contains("usage: server POOL ADDR"));
    assert!(parse("server web 1.2.3.4:80").unwrap_err().contains("what to do?"));
    assert!(parse("server web 1.2.3.4:80 explode").unwrap_err().contains("unknown server action"));
    assert!(parse("server web 1.2.3.4:80 weight").unwrap_err().contains("needs a value"));
    assert!(parse("server web 1.2.3.4:80 weight -1").unwrap_err().contains("0 to 10000"));
    assert!(parse("server web 1.2.3.4:80 weight 10001").unwrap_err().contains("0 to 10000"));
    assert!(parse("server web 1.2.3.4:80 drain now").unwrap_err().contains("too many arguments"));
    assert!(parse("server web 1.2.3:80 drain").unwrap_err().contains("not an address"));
}

#[test]
fn help_lists_every_command_and_each_one() {
    let all = help(&[]).unwrap();
    for s in SPECS {
        assert!(all.contains(s.words) && all.contains(s.summary), "{}", s.words);
    }
    let one = help(&["show".into(), "conn".into()]).unwrap();
    assert!(one.starts_with("show connections [vip ADDR]"), "{one}");
    assert!(!one.contains("show pools"), "{one}");
    let server = help(&["server".into()]).unwrap();
    assert!(server.contains("drain") && server.contains("weight N") && server.contains("survives health changes"), "{server}");
    assert!(help(&["frob".into()]).unwrap_err().contains("unknown command"));
}

fn names() -> Names {
    Names {
        pools: vec![
            ("web".into(), vec!["198.51.100.11:80".into(), "198.51.100.12:80".into()]),
            ("sorry".into(), vec!["198.51.100.13:80".into()]),
        ],
        virtual_servers: vec![("www".into(), "192.0.2.100:80".into()), ("dns".into(), "192.0.2.100:53".into())],
    }
}

#[test]
fn completes_commands_and_object_names() {
    let n = names();
    let c = |l: &str| complete(l, &n);
    assert_eq!(
        c(""),
        (0, ["config", "exit", "help", "log", "pool", "quit", "server", "show", "virtual-server", "vrrp"].iter().map(|s| s.to_string()).collect())
    );
    assert_eq!(c("sh"), (0, vec!["show".into()]));
    assert_eq!(c("show vi"), (5, vec!["virtual-servers".into()]));
    assert_eq!(c("show s").1, vec!["servers".to_string(), "stats".into(), "sync".into()]);
    assert_eq!(c("show servers ").1, vec!["sorry".to_string(), "web".into()]);
    assert_eq!(c("show virtual-servers w").1, vec!["www".to_string()]);
    assert_eq!(c("server w"), (7, vec!["web".into()]));
    assert_eq!(c("server web 198.51.100.1").1, vec!["198.51.100.11:80".to_string(), "198.51.100.12:80".into()]);
    assert_eq!(c("server sorry ").1, vec!["198.51.100.13:80".to_string()]);
    assert_eq!(c("server web 198.51.100.11:80 d").1, vec!["disable".to_string(), "drain".into()]);
    assert_eq!(c("server nopool ").1, Vec::<String>::new());
    assert_eq!(c("show connections ").1, vec!["limit".to_string(), "server".into(), "vip".into()]);
    assert_eq!(c("show connections vip ").1, vec!["192.0.2.100:53".to_string(), "192.0.2.100:80".into()]);
    assert_eq!(c("show connections vip 192.0.2.100:80 ").1, vec!["limit".to_string(), "server".into()]);
    assert_eq!(c("show connections server 198.51.100.13").1, vec!["198.51.100.13:80".to_string()]);
    assert_eq!(c("show persistence ").1, vec!["limit".to_string(), "server".into(), "virtual-server".into()]);
    assert_eq!(c("show persistence virtual-server w").1, vec!["www".to_string()]);
    assert_eq!(c("help sh").1, vec!["show".to_string()]);
    assert_eq!(c("help show co").1, vec!["config".to_string(), "connections".into()]);
    assert_eq!(c("frob ").1, Vec::<String>::new());
}

#[test]
fn names_round_trip() {
    let n = names();
    assert_eq!(Names::parse(&n.render()), n);
    let empty = Names { pools: vec![("empty".into(), vec![])], virtual_servers: vec![] };
    assert_eq!(Names::parse(&empty.render()), empty);
}

#[test]
fn framing_round_trip() {
    let text = "line one\n.starts with a dot\n..two dots\n.ok\n";
    let framed = encode(&Ok(text.to_string()));
    let mut got = Vec::new();
    let mut end = None;
    for l in framed.lines() {
        match decode(l) {
            Framed::Text(t) => got.push(t.to_string()),
            Framed::End { ok } => {
                end = Some(ok);
                break;
            }
        }
    }
    assert_eq!(got.join("\n") + "\n", text);
    assert_eq!(end, Some(true));
    assert!(encode(&Err("bad".into())).ends_with("bad\n.error\n"));
    assert_eq!(encode(&Ok(String::new())), ".ok\n");
}

#[test]
fn parses_configuration_changes() {
    let p = |l: &str| parse(l).map(|c| c.unwrap());
    assert_eq!(
        p("pool web add-server 198.51.100.14:80 weight 2"),
        Ok(Command::AddServer { pool: "web".into(), addr: "198.51.100.14:80".parse().unwrap(), weight: 2 })
    );
    assert_eq!(p("po web add 198.51.100.14:80"), Ok(Command::AddServer { pool: "web".into(), addr: "198.51.100.14:80".parse().unwrap(), weight: 1 }));
    assert!(p("pool web add-server 198.51.100.14").unwrap_err().contains("needs its port"));
    assert!(p("pool web add-server 198.51.100.14:80 weight 99999").unwrap_err().contains("0 to 10000"));
    assert_eq!(p("pool web remove-server 198.51.100.12"), Ok(Command::RemoveServer { pool: "web".into(), addr: "198.51.100.12".parse().unwrap() }));
    assert_eq!(
        p("virtual-server add api 192.0.2.101:8080 web udp full-nat"),
        Ok(Command::AddVirtualServer { name: "api".into(), addr: "192.0.2.101:8080".parse().unwrap(), pool: "web".into(), udp: true, mode: mode(Forwarding::FullNat, None, None) })
    );
    assert!(p("virtual-server add api 192.0.2.101 web").unwrap_err().contains("IP:PORT"));
    let add = |m: crate::modules::lb::VsMode| Ok(Command::AddVirtualServer { name: "api".into(), addr: "192.0.2.101:80".parse().unwrap(), pool: "web".into(), udp: false, mode: m });
    assert_eq!(p("virtual-server add api 192.0.2.101:80 web dsr-l2"), add(mode(Forwarding::DsrL2, None, None)));
    assert!(p("virtual-server add api 192.0.2.101:80 web dsr").unwrap_err().contains("ambiguous"));
    assert_eq!(p("virtual-server add api 192.0.2.101:80 web dsr-d 46"), add(mode(Forwarding::DsrDscp, Some(46), None)));
    assert_eq!(p("virtual-server add api 192.0.2.101:80 web dsr-t gue"), add(mode(Forwarding::DsrTunnel, None, Some(TunnelKind::Gue))));
    assert_eq!(p("virtual-server add api 192.0.2.101:80 web dsr-tunnel ipip"), add(mode(Forwarding::DsrTunnel, None, Some(TunnelKind::Ipip))));
    assert!(p("virtual-server add api 192.0.2.101:80 web dsr-tunnel").unwrap_err().contains("which encapsulation"));
    assert!(p("virtual-server add api 192.0.2.101:80 web dsr-tunnel vxlan").unwrap_err().contains("unknown tunnel"));
    assert!(p("virtual-server add api 192.0.2.101:80 web dsr-dscp 64").unwrap_err().contains("1 to 63"));
    assert!(p("virtual-server add api 192.0.2.101:80 web dsr-dscp").unwrap_err().contains("which code"));
    assert_eq!(p("vi rem api"), Ok(Command::RemoveVirtualServer { name: "api".into() }));
    assert!(p("v rem api").unwrap_err().contains("ambiguous command \"v\": virtual-server, vrrp"));
    assert_eq!(p("vr outside pri 250"), Ok(Command::VrrpPriority { name: "outside".into(), priority: 250 }));
    assert_eq!(p("vrrp outside release"), Ok(Command::VrrpRelease { name: "outside".into() }));
    assert!(p("vrrp outside priority 0").unwrap_err().contains("allowed 1..=255"));
    assert!(p("vrrp outside").unwrap_err().contains("usage: vrrp NAME priority N"));
    assert_eq!(p("show vrrp"), Ok(Command::Show(Show::Vrrp)));
    assert_eq!(p("sh sy"), Ok(Command::Show(Show::Sync)));
    assert_eq!(p("config reload"), Ok(Command::Reload));
    assert_eq!(p("conf save /tmp/x.toml"), Ok(Command::Save { path: Some("/tmp/x.toml".into()) }));
    assert_eq!(p("config save"), Ok(Command::Save { path: None }));
    assert!(p("config reload now").unwrap_err().contains("too many"));
    assert_eq!(p("log level debug"), Ok(Command::LogLevel("debug".into())));
    assert!(p("log level loud").unwrap_err().contains("unknown log level"));
    let n = names();
    assert_eq!(complete("pool web remove-server 198.51.100.1", &n).1, vec!["198.51.100.11:80".to_string(), "198.51.100.12:80".into()]);
    assert_eq!(complete("virtual-server remove ", &n).1, vec!["dns".to_string(), "www".into()]);
    assert_eq!(complete("config ", &n).1, vec!["reload".to_string(), "save".into()]);
}

#[test]
fn addresses_of_either_family_parse() {
    assert_eq!(addr("198.51.100.11"), AddrArg { ip: "198.51.100.11".parse().unwrap(), port: None });
    assert_eq!(addr("198.51.100.11:80"), AddrArg { ip: "198.51.100.11".parse().unwrap(), port: Some(80) });
    assert_eq!(addr("2001:db8::11"), AddrArg { ip: "2001:db8::11".parse().unwrap(), port: None });
    assert_eq!(addr("[2001:db8::11]:8080"), AddrArg { ip: "2001:db8::11".parse().unwrap(), port: Some(8080) });
    assert_eq!(addr("[2001:db8::11]:8080").to_string(), "[2001:db8::11]:8080");
    for bad in ["198.51.100.11:", "198.51.100.300", "[2001:db8::11]", "2001:db8::11:80:x", "web"] {
        assert!(bad.parse::<AddrArg>().is_err(), "{bad}");
    }
}

fn mode(forwarding: crate::config::Forwarding, dscp: Option<u8>, tunnel: Option<crate::config::TunnelKind>) -> crate::modules::lb::VsMode {
    crate::modules::lb::VsMode { forwarding, dscp, tunnel }
}
