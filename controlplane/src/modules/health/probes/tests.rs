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
