use super::super::judge::cuts_connections;
use super::*;

fn check(kind: CheckKind) -> HealthCheck {
    let cfg = crate::config::Config::parse(
        "t",
        &format!(
            "[platform]\nworker_lcores = [1]\n[[health_check]]\nname = \"c\"\nkind = \"{}\"\nexpect_body = \"OK\"\n",
            match kind {
                CheckKind::Http => "http",
                _ => "tcp",
            }
        ),
    )
    .unwrap();
    cfg.health_checks[0].clone()
}

#[test]
fn http_responses_are_judged() {
    let c = check(CheckKind::Http);
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nOK\n";
    assert!(matches!(judge_http(&c, ok, Duration::ZERO), Outcome::Pass(_)));
    let nope = b"HTTP/1.1 200 OK\r\n\r\nNOPE\n";
    assert!(matches!(judge_http(&c, nope, Duration::ZERO), Outcome::Fail(r) if r == "body mismatch"));
    let missing = b"HTTP/1.1 404 Not Found\r\n\r\nOK";
    assert!(matches!(judge_http(&c, missing, Duration::ZERO), Outcome::Fail(r) if r == "bad status 404"));
    assert!(matches!(judge_http(&c, b"garbage", Duration::ZERO), Outcome::Fail(r) if r == "bad response"));
}

#[test]
fn reset_and_slow_down_rule() {
    use crate::config::OnDown::{Keep, Reset};
    assert!(!cuts_connections(Keep, false, Some("refused"), 5), "keep: never cut");
    assert!(cuts_connections(Reset, false, Some("timeout"), 5));
    assert!(cuts_connections(Reset, true, Some("refused"), 5), "refusing is dead, not slow");
    assert!(!cuts_connections(Reset, true, Some("timeout"), 5), "slow with live traffic: keep it");
    assert!(cuts_connections(Reset, true, Some("timeout"), 0), "slow and idle: nothing to keep");
}

#[test]
fn rise_and_fall_drive_the_state() {
    let mut c = check(CheckKind::Tcp);
    c.rise = crate::config::unplaced(2);
    c.fall = crate::config::unplaced(3);
    let target = Target { server: 0, pool: "p".into(), addr: "198.51.100.11:80".parse().unwrap(), link: 0, checks: vec![c.clone()], via: None };
    let now = Instant::now();
    let mut h = Probes::new(&[], vec![target], now);
    assert!(!h.is_up(0), "starts down until it passes");
    let mut changes = Vec::new();
    h.record(0, 0, &c, Outcome::Pass(Duration::from_micros(300)), now, &mut changes);
    assert!(changes.is_empty());
    h.record(0, 0, &c, Outcome::Pass(Duration::from_micros(500)), now, &mut changes);
    assert_eq!(changes.len(), 1);
    assert!(changes[0].up && h.is_up(0));
    assert!(h.rtt_us(0).unwrap() > 300.0);
    for _ in 0..2 {
        h.record(0, 0, &c, Outcome::Fail("timeout".into()), now, &mut changes);
    }
    assert!(h.is_up(0), "two failures of fall 3");
    h.record(0, 0, &c, Outcome::Fail("refused".into()), now, &mut changes);
    assert!(!h.is_up(0));
    assert_eq!(changes.last().map(|c| c.reason.as_str()), Some("refused"));
    assert!(h.is_up(7), "servers without checks are up");
    assert_eq!(h.counters.state_changes, 2);
}

/// The attack of review finding S2: TCP, UDP and other IP sent to the
/// self IP reach the probe stack (the workers punt them); fed to smoltcp
/// they would be answered one for one (a reset, ICMP unreachable) with
/// no rate limit. Dropped and counted instead: the stack sends nothing
/// but the probe's own ARP.
#[test]
fn the_probe_stack_answers_nothing_it_did_not_ask_for() {
    use furiwake_dataplane::testkit::{ipv4_frame, tcp_header, udp_datagram};
    use furiwake_dataplane::wire::EthernetAddress;
    let self_ip = std::net::Ipv4Addr::new(198, 51, 100, 1);
    let link = super::ProbeLink { mac: [2, 0, 0, 0, 0, 1], address: self_ip, prefix_len: 24, gateway: None };
    let target = Target { server: 0, pool: "p".into(), addr: "198.51.100.11:80".parse().unwrap(), link: 0, checks: vec![check(CheckKind::Tcp)], via: None };
    let now = Instant::now();
    let mut h = Probes::new(&[link], vec![target], now);
    h.poll(now);
    let arp_for_server = |f: &Vec<u8>| f.get(12..14) == Some(&[0x08, 0x06]) && f.get(38..42) == Some(&[198, 51, 100, 11]);
    assert!(h.take_tx(0).iter().all(arp_for_server), "the probe starts by resolving its server");
    let (them, us) = (EthernetAddress([2, 0, 0, 0, 0, 0x50]), EthernetAddress([2, 0, 0, 0, 0, 1]));
    // The sender's ARP reply first (ARP passes): the stack knows where to
    // answer, so only the filter keeps it from answering.
    let mut arp = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0x50, 0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2];
    arp.extend_from_slice(&[2, 0, 0, 0, 0, 0x50, 198, 51, 100, 50, 2, 0, 0, 0, 0, 1, 198, 51, 100, 1]);
    h.on_frame(0, &arp);
    let frames = [
        ipv4_frame(them, us, [198, 51, 100, 50], [198, 51, 100, 1], 6, &tcp_header(40000, 80, 0x02, 1024), true),
        ipv4_frame(them, us, [198, 51, 100, 50], [198, 51, 100, 1], 6, &tcp_header(40000, 61000, 0x10, 1024), true),
        ipv4_frame(them, us, [198, 51, 100, 11], [198, 51, 100, 1], 17, &udp_datagram(80, 61000, b"x"), true),
        ipv4_frame(them, us, [198, 51, 100, 50], [198, 51, 100, 1], 17, &udp_datagram(40000, 53, b"x"), true),
        ipv4_frame(them, us, [198, 51, 100, 50], [198, 51, 100, 1], 47, &[0; 8], false),
    ];
    for f in &frames {
        h.on_frame(0, f);
    }
    h.poll(now + Duration::from_millis(1));
    let sent = h.take_tx(0);
    assert!(sent.iter().all(arp_for_server), "the stack answered an unsolicited frame: {sent:02x?}");
    assert_eq!(h.counters.unsolicited, frames.len() as u64);
}
