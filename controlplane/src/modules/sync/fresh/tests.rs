use super::*;
use crate::modules::sync::wire::MessageType;

fn h(sender: u32, seq: u64, nonce: u64, echo: u64) -> Header {
    Header { msg: MessageType::Records, sender, seq, nonce, echo, ..Header::default() }
}

fn secs(t0: Instant, s: u64) -> Instant {
    t0 + Duration::from_secs(s)
}

#[test]
fn the_window_takes_each_sequence_once_within_64() {
    let mut w = Window::starting(100);
    assert!(!w.take(100), "duplicate");
    assert!(w.take(102) && w.take(101), "reordered: the late one is taken");
    assert!(!w.take(101) && !w.take(102));
    assert!(w.take(102 - 63), "within 64 of the top (102)");
    assert!(!w.take(102 - 64), "older than the window");
    assert!(w.take(1000) && !w.take(1000 - 64) && w.take(1000 - 63));
    assert!(w.take(1000 + 200) && !w.take(1000), "a jump beyond 64 clears the map");
    assert!(!Window::default().take(0), "0 is never a sequence number");
}

#[test]
fn nonces_rotate_and_the_previous_stays_valid() {
    let t0 = Instant::now();
    let mut n = Nonces::new([7; 32], t0);
    let first = n.current();
    assert!(n.fresh(first) && !n.fresh(0) && !n.fresh(first ^ 1));
    n.rotate(secs(t0, 59));
    assert_eq!(n.current(), first, "not yet");
    n.rotate(secs(t0, 60));
    let second = n.current();
    assert_ne!(second, first);
    assert!(n.fresh(first) && n.fresh(second));
    n.rotate(secs(t0, 120));
    assert!(!n.fresh(first), "two rotations: the first is dead");
    assert_ne!(Nonces::new([8; 32], t0).current(), first, "another boot, another nonce");
}

/// The two boxes start: unfresh Hellos first, then each echoes the other.
#[test]
fn two_boxes_find_each_other() {
    let t0 = Instant::now();
    let mut f = Freshness::default();
    let ours = 0x5555;
    assert_eq!(f.echo(t0), 0);
    assert_eq!(f.check(&h(0xa, 1, 0xaaa, 0), false, t0), Verdict::Unfresh);
    assert_eq!(f.echo(t0), 0xaaa, "the candidate's nonce is echoed");
    assert_eq!(f.check(&h(0xa, 2, 0xaaa, ours), true, t0), Verdict::NewSender);
    assert_eq!(f.sender(), Some(0xa));
    assert_eq!(f.check(&h(0xa, 3, 0xaab, ours), true, t0), Verdict::Fresh);
    assert_eq!(f.echo(t0), 0xaab, "a rotated nonce is learnt");
    assert_eq!(f.check(&h(0xa, 3, 0xaab, ours), true, t0), Verdict::Stale);
    assert_eq!(f.check(&h(0xa, 4, 0xaab, 0x1234), false, t0), Verdict::Unfresh, "an unknown echo: a Hello at most");
}

/// The review's attack (S5): a datagram of the peer's earlier boot,
/// replayed after this box restarted. It cannot echo this boot's nonce, so
/// nothing in it is taken, and the real peer stays or becomes current.
#[test]
fn a_replay_after_a_restart_takes_nothing_and_displaces_no_one() {
    let t0 = Instant::now();
    let mut f = Freshness::default();
    let ours = 0x5555;
    // The replay comes first: a candidate, unfresh.
    assert_eq!(f.check(&h(0x01d, 900, 0xdead, 0x4444), false, t0), Verdict::Unfresh);
    // The real peer (another id) waits for the candidate's trial...
    assert_eq!(f.check(&h(0xa, 1, 0xaaa, 0x4444), false, t0), Verdict::NotCurrent);
    // ...unless it is fresh already (it heard this boot's Hello).
    assert_eq!(f.check(&h(0xa, 2, 0xaaa, ours), true, secs(t0, 1)), Verdict::NewSender);
    assert_eq!(f.sender(), Some(0xa));
    // Now every replay is refused, fresh or not, while the peer talks.
    assert_eq!(f.check(&h(0x01d, 901, 0xdead, 0x4444), false, secs(t0, 2)), Verdict::NotCurrent);
    assert_eq!(f.check(&h(0xb, 1, 0xbbb, ours), true, secs(t0, 2)), Verdict::NotCurrent, "fresh, but the current sender is live");
    assert_eq!(f.check(&h(0xa, 3, 0xaaa, ours), true, secs(t0, 2)), Verdict::Fresh);
    assert_eq!(f.echo(secs(t0, 2)), 0xaaa);
    for s in 3..100 {
        assert_eq!(f.check(&h(0xa, s + 1, 0xaaa, ours), true, secs(t0, s)), Verdict::Fresh);
        assert_eq!(f.check(&h(0x01d + s as u32, 1, 0xdead, ours), true, secs(t0, s)), Verdict::NotCurrent, "after {s} s");
    }
}

/// The peer restarts: its new id is taken once the old one fell silent,
/// and the old one is retired (its replays are refused for good).
#[test]
fn a_restarted_peer_replaces_its_silent_old_id() {
    let t0 = Instant::now();
    let mut f = Freshness::default();
    let ours = 0x5555;
    assert_eq!(f.check(&h(0xa, 1, 0xaaa, ours), true, t0), Verdict::NewSender);
    assert_eq!(f.check(&h(0xb, 1, 0xbbb, ours), true, secs(t0, 2)), Verdict::NotCurrent, "too early");
    assert_eq!(f.check(&h(0xb, 2, 0xbbb, 0), false, secs(t0, 4)), Verdict::Unfresh, "silent: the new id is the candidate");
    assert_eq!(f.echo(secs(t0, 4)), 0xbbb);
    assert_eq!(f.check(&h(0xb, 3, 0xbbb, ours), true, secs(t0, 5)), Verdict::NewSender);
    assert_eq!((f.sender(), f.restarts), (Some(0xb), 1));
    assert_eq!(f.check(&h(0xa, 2, 0xaaa, ours), true, secs(t0, 100)), Verdict::NotCurrent, "retired");
    assert_eq!(f.check(&h(0xb, 2, 0xbbb, ours), true, secs(t0, 5)), Verdict::Stale, "the candidate's window goes on");
}

/// Replays of old boots cannot hold the candidate's place: the real peer's
/// datagrams were sent later (by its clock) and take it at once.
#[test]
fn the_peers_newest_boot_takes_the_candidate_place_from_replays() {
    let t0 = Instant::now();
    let mut f = Freshness::default();
    let ours = 0x5555;
    let at = |sender: u32, seq: u64, sent_us: u64, echo: u64| Header { sent_us, ..h(sender, seq, 0xaaa + u64::from(sender), echo) };
    assert_eq!(f.check(&at(0x100, 7, 1_000, 0x4444), false, t0), Verdict::Unfresh, "a replay first");
    assert_eq!(f.check(&at(0x101, 9, 1_500, 0x4444), false, t0), Verdict::Unfresh, "a later capture displaces it");
    assert_eq!(f.check(&at(0x100, 8, 1_100, 0x4444), false, t0), Verdict::NotCurrent, "an older one does not");
    assert_eq!(f.check(&at(0xa, 1, 9_000, 0x4444), false, t0), Verdict::Unfresh, "the real peer, sent now");
    assert_eq!(f.echo(t0), 0xaaa + 0xa);
    for seq in 10..100 {
        assert_eq!(f.check(&at(0x101, seq, 1_600, 0x4444), false, t0), Verdict::NotCurrent, "captures cannot take it back");
    }
    assert_eq!(f.check(&at(0xa, 2, 10_000, ours), true, t0), Verdict::NewSender);
}

/// With the peer's clock gone back (its newest boot looks older than the
/// captures), replays still cannot hold the candidate's place for ever:
/// each gives way after its trial and is barred, and the real peer gets in.
#[test]
fn replays_cannot_squat_the_candidate_place() {
    let t0 = Instant::now();
    let mut f = Freshness::default();
    let ours = 0x5555;
    let mut t = t0;
    let mut real_in = None;
    for round in 0..40u64 {
        // Three old boots replayed in turn, many times a second, and the
        // real peer's Hello once a second.
        for ms in (0..1000).step_by(50) {
            let at = t + Duration::from_millis(ms);
            let old = 0x0100 + (ms / 50 % 3) as u32;
            let _ = f.check(&h(old, round * 100 + ms, 0xdead, 0x4444), false, at);
        }
        t = secs(t, 1);
        // The real peer answers with our nonce once we echo its own.
        let fresh = f.echo(t) == 0xaaa;
        let v = f.check(&h(0xa, round + 1, 0xaaa, if fresh { ours } else { 0x4444 }), fresh, t);
        if v == Verdict::NewSender {
            real_in = Some(round);
            break;
        }
    }
    // Each old id holds the place for one trial, then is barred: the real
    // peer is in after three trials at most.
    assert!(real_in.is_some_and(|r| r <= 3 * TRIAL.as_secs() + 1), "{real_in:?}");
    assert_eq!(f.sender(), Some(0xa));
}

/// The test this replaces said an old boot's id was "forgotten after 4
/// restarts" and taken as a new sender (review S5). Now, after any number
/// of peer restarts, a capture of its first boot takes nothing: while the
/// peer talks it is `NotCurrent`; once the peer is silent it is at most an
/// unfresh candidate (it cannot echo a nonce of ours drawn after it).
#[test]
fn an_old_boot_never_comes_back_after_many_restarts() {
    let t0 = Instant::now();
    let mut f = Freshness::default();
    let ours = 0x5555;
    let mut t = t0;
    for id in 1..=12u32 {
        assert_eq!(f.check(&h(id, 1, u64::from(id), ours), true, t), Verdict::NewSender, "boot {id}");
        t = secs(t, 10);
    }
    assert_eq!(f.restarts, 11);
    let now = secs(t, 0);
    assert_eq!(f.check(&h(12, 2, 12, ours), true, now), Verdict::Fresh);
    // Boot 1's capture echoes a nonce of ours from long ago.
    assert_eq!(f.check(&h(1, 500, 1, 0x4444), false, now), Verdict::NotCurrent, "the peer talks");
    let later = secs(now, 5);
    let v = f.check(&h(1, 501, 1, 0x4444), false, later);
    assert_eq!(v, Verdict::Unfresh, "silent peer: a candidate at most, nothing taken");
    assert_eq!(f.sender(), Some(12));
}
