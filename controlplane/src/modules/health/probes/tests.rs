use super::super::judge::{cuts_connections, judge_http};
use super::*;
use std::sync::Arc;

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

fn neighbors(mac: [u8; 6]) -> Arc<Neighbors> {
    let n = Neighbors::new(4);
    n.set(0, furiwake_dataplane::wire::EthernetAddress(mac));
    Arc::new(n)
}

fn target(server: usize, addr: &str, c: HealthCheck) -> Target {
    Target { server, pool: "p".into(), addr: addr.parse().unwrap(), link: 0, nexthop: 0, checks: vec![c], via: None }
}

#[test]
fn rise_and_fall_drive_the_state() {
    let mut c = check(CheckKind::Tcp);
    c.rise = crate::config::unplaced(2);
    c.fall = crate::config::unplaced(3);
    let now = Instant::now();
    let mut h = Probes::new(&[], vec![target(0, "198.51.100.11:80", c)], neighbors([2; 6]), now);
    assert!(!h.is_up(0), "starts down until it passes");
    let mut changes = Vec::new();
    h.record(0, 0, Outcome::Pass(Duration::from_micros(300)), &mut changes);
    assert!(changes.is_empty());
    h.record(0, 0, Outcome::Pass(Duration::from_micros(500)), &mut changes);
    assert_eq!(changes.len(), 1);
    assert!(changes[0].up && h.is_up(0));
    assert!(h.rtt_us(0).unwrap() > 300.0);
    for _ in 0..2 {
        h.record(0, 0, Outcome::Fail("timeout".into()), &mut changes);
    }
    assert!(h.is_up(0), "two failures of fall 3");
    h.record(0, 0, Outcome::Fail("refused".into()), &mut changes);
    assert!(!h.is_up(0));
    assert_eq!(changes.last().map(|c| c.reason.as_str()), Some("refused"));
    assert!(h.is_up(7), "servers without checks are up");
    assert_eq!(h.counters.state_changes, 2);
}

/// A probe the box cannot start for its own shortage (here: no probe
/// stack on the server's link) is skipped and counted, with no verdict:
/// an up server stays up through `SKIPS_BEFORE_FAILING` of them in a row;
/// each one after that fails the check (a shortage that lasts does not
/// keep a server up unjudged). One whose next hop does not answer ARP
/// fails at once, as an unanswered connect would.
#[test]
fn the_box_s_own_shortage_is_no_verdict_on_the_server() {
    let mut c = check(CheckKind::Tcp);
    c.rise = crate::config::unplaced(1);
    c.fall = crate::config::unplaced(1);
    c.interval_ms = crate::config::unplaced(1000);
    let mut now = Instant::now();
    let mut h = Probes::new(&[], vec![target(0, "198.51.100.11:80", c.clone())], neighbors([2; 6]), now);
    let mut changes = Vec::new();
    h.record(0, 0, Outcome::Pass(Duration::from_micros(300)), &mut changes);
    assert!(h.is_up(0));
    // One start a second, each turn a second apart.
    for _ in 0..super::SKIPS_BEFORE_FAILING {
        changes.extend(h.due(now));
        now += Duration::from_secs(1);
    }
    assert!(h.is_up(0), "skipped probes took the server down: {changes:?}");
    assert!(changes.iter().all(|c| c.up), "{changes:?}");
    assert_eq!(h.counters.skipped, u64::from(super::SKIPS_BEFORE_FAILING));
    assert_eq!((h.counters.failures, h.counters.probes), (0, 0));
    assert_eq!(h.counters.last_skip, Some("no link"));
    let down = h.due(now);
    assert!(!h.is_up(0), "one skip past the limit fails");
    assert_eq!(down.last().map(|c| (c.up, c.reason.as_str())), Some((false, "not probed: no link")));
    // Unresolved: a failure at once, and fall 1 takes it down.
    let mut h = Probes::new(&[], vec![target(0, "198.51.100.11:80", c)], Arc::new(Neighbors::new(4)), now);
    h.record(0, 0, Outcome::Pass(Duration::from_micros(300)), &mut changes);
    let down = h.due(now);
    assert!(!h.is_up(0));
    assert_eq!(down.last().map(|c| (c.up, c.reason.as_str())), Some((false, "unresolved")));
    assert!(h.counters.failures == 1 && h.counters.skipped == 0, "{:?}", h.counters);
}

/// A start that comes late by more than an interval (a held-up turn,
/// in-flight full) runs once, and the next is on the check's grid after
/// now: two failures are not recorded at once for one late start.
#[test]
fn a_late_start_runs_once_and_keeps_the_grid() {
    let t0 = Instant::now();
    let i = Duration::from_millis(100);
    assert_eq!(super::next_on_grid(t0, i, t0), t0 + i);
    assert_eq!(super::next_on_grid(t0, i, t0 + Duration::from_millis(99)), t0 + i);
    assert_eq!(super::next_on_grid(t0, i, t0 + i), t0 + 2 * i);
    assert_eq!(super::next_on_grid(t0, i, t0 + Duration::from_millis(350)), t0 + 4 * i);
    let mut c = check(CheckKind::Tcp);
    c.fall = crate::config::unplaced(3);
    c.interval_ms = crate::config::unplaced(100);
    let mut h = Probes::new(&[], vec![target(0, "198.51.100.11:80", c)], Arc::new(Neighbors::new(4)), t0);
    // Half a second late: one start, one failure.
    let _ = h.due(t0 + Duration::from_millis(550));
    assert_eq!(h.counters.failures, 1, "{:?}", h.counters);
}

const SELF: [u8; 4] = [198, 51, 100, 1];
const US: [u8; 6] = [2, 0, 0, 0, 0, 1];
const THEM: [u8; 6] = [2, 0, 0, 0, 0, 0x50];

fn link() -> super::ProbeLink {
    super::ProbeLink { mac: US, address: std::net::Ipv4Addr::from(SELF), prefix_len: 16, gateway: None, address6: None, gateway6: None }
}

/// The servers of a simulated lab: a SYN to a listening server is
/// answered with a SYN-ACK (a `tcp` check passes on it), to any other with
/// a reset; resets are taken silently.
fn answer(frame: &[u8], listening: impl Fn([u8; 4]) -> bool) -> Option<Vec<u8>> {
    use furiwake_dataplane::testkit::{ipv4_frame, tcp_header};
    use furiwake_dataplane::wire::EthernetAddress;
    assert_eq!(&frame[..6], &THEM[..], "to the MAC ARP resolved");
    assert!(furiwake_dataplane::testkit::checksums_ok(frame));
    let (ip, tcp) = (&frame[14..34], &frame[34..]);
    if ip[9] != 6 || tcp[13] != 0x02 {
        return None;
    }
    let server: [u8; 4] = ip[16..20].try_into().unwrap();
    let (sport, dport) = (u16::from_be_bytes([tcp[0], tcp[1]]), u16::from_be_bytes([tcp[2], tcp[3]]));
    let seq = u32::from_be_bytes(tcp[4..8].try_into().unwrap());
    let flags = if listening(server) { 0x12 } else { 0x14 };
    let mut t = tcp_header(dport, sport, flags, 1024);
    t[8..12].copy_from_slice(&seq.wrapping_add(1).to_be_bytes());
    Some(ipv4_frame(EthernetAddress(THEM), EthernetAddress(US), server, SELF, 6, &t, true))
}

/// Runs `h` for `turns` turns of `step` each, the lab answering after
/// `delay`; returns the state changes.
fn run(h: &mut Probes, t: &mut Instant, turns: usize, step: Duration, delay: Duration, listening: &dyn Fn([u8; 4]) -> bool) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut wire: Vec<(Instant, Vec<u8>)> = Vec::new();
    for _ in 0..turns {
        let now = *t;
        // Each answer stamped with its arrival (the control loop takes it
        // off the punt ring then); the probe is judged at the turn.
        for (at, f) in wire.iter().filter(|(at, _)| *at <= now) {
            h.on_frame(0, f, *at);
        }
        wire.retain(|(at, _)| *at > now);
        changes.extend(h.poll(now));
        for f in h.take_tx(0, now) {
            if let Some(a) = answer(&f, listening) {
                wire.push((now + delay, a));
            }
        }
        *t += step;
    }
    changes
}

/// 10,000 servers on one link, probed every second: the three that
/// listen are up after `rise` probes (plus the first interval, over which
/// the first probes are spread), the others down as refused; each RTT is
/// the lab's delay, to the microsecond, whatever the turn's length; a
/// server's source ports rotate (no 4-tuple twice in these 4 s).
#[test]
fn ten_thousand_servers_at_one_second() {
    let mut c = check(CheckKind::Tcp);
    c.rise = crate::config::unplaced(2);
    let n = 10_000u32;
    let addr = |i: u32| std::net::Ipv4Addr::from(u32::from_be_bytes([198, 51, 0, 0]) + 256 + i);
    let targets: Vec<Target> = (0..n).map(|i| target(i as usize, &format!("{}:80", addr(i)), c.clone())).collect();
    let healthy = [17u32, 5_000, 9_999];
    let listening = |ip: [u8; 4]| healthy.iter().any(|&i| addr(i).octets() == ip);
    let mut t = Instant::now();
    let mut h = Probes::new(&[link()], targets, neighbors(THEM), t);
    // Turns of 1 ms; the lab answers in 250 µs.
    let changes = run(&mut h, &mut t, 3_100, Duration::from_millis(1), Duration::from_micros(250), &listening);
    for i in healthy {
        assert!(h.is_up(i as usize), "{i} up within rise intervals + the spread");
        let rtt = h.rtt_us(i as usize).unwrap();
        assert!((250.0..=251.0).contains(&rtt), "the RTT is the lab's, not the turn's: {rtt}");
    }
    assert_eq!(changes.iter().filter(|c| c.up).count(), 3);
    assert!((0..n).filter(|i| !healthy.contains(i)).all(|i| !h.is_up(i as usize) && h.down_reason(i as usize) == Some("refused")));
    assert!(h.counters.probes >= 2 * u64::from(n) && h.counters.probes <= 4 * u64::from(n), "one probe a second each: {}", h.counters.probes);
    assert!(h.links[0].shards.len() <= 4, "sockets are reused: {} shards", h.links[0].shards.len());
    assert_eq!(h.open.len(), h.probes.iter().flatten().count(), "every probe in flight is findable");
}

/// With in-flight full, the starts due pile up; the deadlines of the
/// probes in flight still end them on time (and free their slots), so the
/// engine keeps its pace: 4 slots and a 100 ms timeout against 400 silent
/// servers make 40 timeouts a second (each judged within a turn of its
/// deadline). (Deadlines used to share one heap
/// with the starts and wait behind each start that could not run, one a
/// turn: a handful a second.)
#[test]
fn deadlines_do_not_wait_behind_starts_when_in_flight_is_full() {
    let mut c = check(CheckKind::Tcp);
    c.timeout_ms = crate::config::unplaced(100);
    c.interval_ms = crate::config::unplaced(1000);
    let addr = |i: u32| std::net::Ipv4Addr::from(u32::from_be_bytes([198, 51, 0, 0]) + 256 + i);
    let targets: Vec<Target> = (0..400).map(|i| target(i as usize, &format!("{}:80", addr(i)), c.clone())).collect();
    let mut t = Instant::now();
    let mut h = Probes::new(&[link()], targets, neighbors(THEM), t);
    h.max_in_flight = 4;
    // Nobody answers; turns of 1 ms for 1.05 s.
    for _ in 0..1_050 {
        let _ = h.poll(t);
        let _ = h.take_tx(0, t);
        t += Duration::from_millis(1);
    }
    assert!(h.counters.failures >= 36, "timeouts judged late: {} in 1.05 s", h.counters.failures);
    assert!(h.in_flight() <= 4);
}

/// The attack of review finding S2: TCP, UDP and other IP sent to the
/// self IP reach the probe engine (the workers punt them); fed to smoltcp
/// they would be answered one for one (a reset, ICMP unreachable) with
/// no rate limit. Dropped and counted instead: the engine sends nothing
/// but the probe's own SYN.
#[test]
fn the_probe_stack_answers_nothing_it_did_not_ask_for() {
    use furiwake_dataplane::testkit::{ipv4_frame, tcp_header, udp_datagram};
    use furiwake_dataplane::wire::EthernetAddress;
    let now = Instant::now();
    let mut h = Probes::new(&[link()], vec![target(0, "198.51.100.11:80", check(CheckKind::Tcp))], neighbors(THEM), now);
    h.poll(now);
    let syn_to_server = |f: &Vec<u8>| f.get(30..34) == Some(&[198, 51, 100, 11]) && f.get(47) == Some(&0x02) && f.get(..6) == Some(&THEM[..]);
    let first = h.take_tx(0, now);
    assert!(!first.is_empty() && first.iter().all(syn_to_server), "the probe starts with its SYN, to the resolved MAC: {first:02x?}");
    let (them, us) = (EthernetAddress(THEM), EthernetAddress(US));
    let frames = [
        ipv4_frame(them, us, [198, 51, 100, 50], SELF, 6, &tcp_header(40000, 80, 0x02, 1024), true),
        ipv4_frame(them, us, [198, 51, 100, 50], SELF, 6, &tcp_header(40000, 61000, 0x10, 1024), true),
        ipv4_frame(them, us, [198, 51, 100, 11], SELF, 17, &udp_datagram(80, 61000, b"x"), true),
        ipv4_frame(them, us, [198, 51, 100, 50], SELF, 17, &udp_datagram(40000, 53, b"x"), true),
        ipv4_frame(them, us, [198, 51, 100, 50], SELF, 47, &[0; 8], false),
        ipv4_frame(them, us, [198, 51, 100, 11], [198, 51, 100, 2], 6, &tcp_header(80, 61000, 0x12, 1024), true),
    ];
    for f in &frames {
        h.on_frame(0, f, now);
    }
    let later = now + Duration::from_millis(1);
    h.poll(later);
    let sent = h.take_tx(0, later);
    assert!(sent.iter().all(syn_to_server), "the stack answered an unsolicited frame: {sent:02x?}");
    assert_eq!(h.counters.unsolicited, frames.len() as u64);
}

/// A server whose next hop ARP has not resolved is not probed: the probe
/// fails as `unresolved` and nothing is sent.
#[test]
fn an_unresolved_server_is_not_probed() {
    let now = Instant::now();
    let mut h = Probes::new(&[link()], vec![target(0, "198.51.100.11:80", check(CheckKind::Tcp))], Arc::new(Neighbors::new(4)), now);
    h.poll(now);
    assert!(h.take_tx(0, now).is_empty());
    assert_eq!(h.check_status(0)[0].last_result(), "fail: unresolved");
}

/// A configuration change while a probe waits for an answer that never
/// comes: the kept target's probe still times out, and the check goes on
/// being probed.
#[test]
fn a_probe_in_flight_survives_a_retarget_and_times_out() {
    let now = Instant::now();
    let t = target(0, "198.51.100.11:80", check(CheckKind::Tcp));
    let mut h = Probes::new(&[link()], vec![t.clone()], neighbors(THEM), now);
    h.poll(now);
    assert_eq!(h.take_tx(0, now).len(), 1, "the SYN");
    h.retarget(vec![t], now + Duration::from_millis(1));
    let later = now + Duration::from_millis(600);
    h.poll(later);
    assert_eq!(h.check_status(0)[0].last_result(), "fail: timeout");
    let rst = h.take_tx(0, later);
    assert!(rst.len() == 1 && rst[0][47] & 0x04 != 0, "the probe ends with a reset: {rst:02x?}");
    let next = now + Duration::from_millis(1001);
    h.poll(next);
    let syn = h.take_tx(0, next);
    assert!(syn.len() == 1 && syn[0][47] == 0x02, "probed again a second later: {syn:02x?}");
}

/// Review finding: a reload that changes a server's check stops its probe
/// in flight (nothing it holds leaks, nothing is credited to another
/// server) and keeps the server's health until the new check judges.
#[test]
fn a_changed_check_stops_the_probe_in_flight_and_keeps_the_health() {
    let mut now = Instant::now();
    let t = target(0, "198.51.100.11:80", check(CheckKind::Tcp));
    let mut h = Probes::new(&[link()], vec![t.clone()], neighbors(THEM), now);
    let changes = run(&mut h, &mut now, 3000, Duration::from_millis(1), Duration::from_micros(200), &|_| true);
    assert!(changes.iter().any(|c| c.up), "up before the reload: {changes:?}");
    // Fifty reloads, each changing the check (another interval) while a
    // probe of it is in flight: before the fix each left its probe (and
    // socket, port, in-flight slot) behind.
    for k in 0..50u32 {
        while h.in_flight() == 0 {
            h.poll(now);
            let _ = h.take_tx(0, now);
            now += Duration::from_millis(1);
        }
        let mut c = check(CheckKind::Tcp);
        c.interval_ms = crate::config::unplaced(1000 + k);
        h.retarget(vec![target(0, "198.51.100.11:80", c)], now);
        assert!(h.target_of(0).is_some_and(|t| t.up), "still up until the new check judges");
    }
    let changes = run(&mut h, &mut now, 5000, Duration::from_millis(1), Duration::from_micros(200), &|_| true);
    assert!(changes.iter().all(|c| c.up), "no flap: {changes:?}");
    assert!(h.in_flight() <= 1, "{} probes in flight after the reloads", h.in_flight());
}

/// The answer to a probe arrives in time (the worker's stamp) but the
/// control loop takes it late, behind a backlog in the punt rings (a
/// console command held the loop up): while the horizon of what has been
/// delivered is before the deadline, the probe is not judged timed out;
/// delivered, it passes, its RTT the lab's (review S4 M3: it used to
/// time out by the clock of the turn).
#[test]
fn an_answer_in_time_is_no_timeout_however_late_the_loop_takes_it() {
    let mut c = check(CheckKind::Tcp);
    c.timeout_ms = crate::config::unplaced(100);
    c.rise = crate::config::unplaced(1);
    let t0 = Instant::now();
    let mut h = Probes::new(&[link()], vec![target(0, "198.51.100.11:80", c)], neighbors(THEM), t0);
    let _ = h.poll(t0);
    let syn = h.take_tx(0, t0);
    let synack = syn.iter().find_map(|f| answer(f, |_| true)).expect("a SYN went out");
    let arrived = t0 + Duration::from_millis(1);
    // 200 ms on, the answer still in a ring: received by then is only
    // what was stamped before `arrived`.
    let late = t0 + Duration::from_millis(200);
    h.judge_by(Some(arrived));
    let changes = h.poll(late);
    assert!(h.counters.failures == 0 && changes.is_empty(), "judged a timeout with its answer in the ring: {changes:?}");
    h.on_frame(0, &synack, arrived);
    h.judge_by(None);
    let changes = h.poll(late + Duration::from_millis(1));
    assert_eq!(changes.iter().map(|c| (c.up, c.rtt)).collect::<Vec<_>>(), vec![(true, Some(Duration::from_millis(1)))]);
    assert_eq!(h.counters.failures, 0);
}

/// An exchange of two round trips (http): the RTT is the two legs, the
/// server's and the network's, not the box's own time between the
/// handshake's answer and the request's departure (a control loop held
/// up for 50 ms adds nothing); first departure to last arrival without a
/// request (tcp) (review S4 M2).
#[test]
fn an_http_probe_s_rtt_is_its_two_legs() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let mut l = super::run::Legs::default();
    assert_eq!(l.wanted(), Some(false), "the first departure");
    l.departed(false, t0);
    assert_eq!(l.wanted(), None, "later frames are not stamped");
    l.heard = Some(t0 + ms(1));
    l.answered = l.heard;
    assert_eq!(l.rtt(t0, t0 + ms(9)), ms(1), "a tcp check: the handshake");
    l.request_next = true;
    assert_eq!(l.wanted(), Some(true), "the request's departure, once");
    assert_eq!(l.wanted(), None);
    l.departed(true, t0 + ms(51));
    l.heard = Some(t0 + ms(53));
    assert_eq!(l.rtt(t0, t0 + ms(60)), ms(3));
    assert_eq!(super::run::Legs::default().rtt(t0, t0 + ms(7)), ms(7), "nothing stamped: the time since the start");
}

/// After the control loop was held up 600 ms, the starts that fell due
/// meanwhile go out at the pace (1.5x the configured rate, 20 ms of it at
/// once), not in one burst whose answers would overrun the punt
/// policer's probe class; and the backlog is gone within 1.5 s.
#[test]
fn starts_late_after_a_stall_go_at_the_pace() {
    let mut c = check(CheckKind::Tcp);
    c.interval_ms = crate::config::unplaced(1000);
    let addr = |i: u32| std::net::Ipv4Addr::from(u32::from_be_bytes([198, 51, 0, 0]) + 256 + i);
    let targets: Vec<Target> = (0..10_000u32).map(|i| target(i as usize, &format!("{}:80", addr(i)), c.clone())).collect();
    let mut t = Instant::now();
    let mut h = Probes::new(&[link()], targets, neighbors(THEM), t);
    let (ms, us) = (Duration::from_millis(1), Duration::from_micros(10));
    let refused = |_: [u8; 4]| false;
    let _ = run(&mut h, &mut t, 1_200, ms, Duration::from_micros(250), &refused);
    let before = h.counters.probes;
    t += Duration::from_millis(600);
    // Turns of 10 µs for 5 ms: the pace is 15,000 a second with 300 at
    // once, so at most 375 (the loop without it: 32 a turn, 6,000 in 2 ms).
    let _ = run(&mut h, &mut t, 500, us, Duration::from_micros(250), &refused);
    let burst = h.counters.probes - before;
    assert!((300..=380).contains(&burst), "{burst} starts in the 5 ms after the stall");
    let _ = run(&mut h, &mut t, 1_500, ms, Duration::from_micros(250), &refused);
    let all = h.counters.probes - before;
    assert!(all as f64 >= 10_000.0 * 2.1 - 500.0, "{all} starts in 2.1 s: the backlog did not clear");
}

/// A reload that appends servers spreads their first probes over the
/// whole interval by their place among the new ones, not at the end of
/// it behind the kept ones (where the pace would make them late every
/// interval); the kept ones keep their times.
#[test]
fn servers_a_reload_appends_are_spread_over_the_interval() {
    let mut c = check(CheckKind::Tcp);
    c.interval_ms = crate::config::unplaced(1000);
    let addr = |i: u32| format!("{}:80", std::net::Ipv4Addr::from(u32::from_be_bytes([198, 51, 0, 0]) + 256 + i));
    let t0 = Instant::now();
    let mut h = Probes::new(&[link()], (0..100u32).map(|i| target(i as usize, &addr(i), c.clone())).collect(), neighbors(THEM), t0);
    let kept: Vec<_> = h.targets.iter().map(|t| t.checks[0].next_at).collect();
    let later = t0 + Duration::from_millis(300);
    h.retarget((0..150u32).map(|i| target(i as usize, &addr(i), c.clone())).collect(), later);
    assert_eq!(h.targets[..100].iter().map(|t| t.checks[0].next_at).collect::<Vec<_>>(), kept, "kept checks keep their times");
    let new: Vec<Duration> = h.targets[100..].iter().filter_map(|t| t.checks[0].next_at).map(|at| at - later).collect();
    assert_eq!(new.len(), 50);
    assert!(new.iter().min() < Some(&Duration::from_millis(50)) && new.iter().max() > Some(&Duration::from_millis(900)), "the new ones spread over the interval: {new:?}");
}
