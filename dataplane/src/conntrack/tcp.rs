//! TCP connection tracking as a middlebox sees it.
//!
//! The states follow RFC 9293 §3.3.2 ("State Machine Overview"), folded to
//! what a load balancer can observe from both directions: it sees SYN,
//! SYN-ACK and ACK go by (SYN-SENT -> SYN-RECEIVED -> ESTABLISHED), then
//! each side's FIN (FIN-WAIT / CLOSE-WAIT, and TIME-WAIT once both have
//! closed). As in IPVS's `tcp_state_table` (ip_vs_proto_tcp.c), the states
//! exist to pick an idle timeout, not to validate sequence numbers: an
//! unexpected segment leaves the state alone.
//!
//! Rules, in order:
//!
//! 1. RST from either side -> CLOSE (RFC 9293 §3.5.3: a valid reset aborts
//!    the connection in any state; the endpoints validate it, a load
//!    balancer in the middle cannot and trusts it, as IPVS does).
//! 2. SYN_SENT: SYN+ACK from the reply side -> SYN_RECV; anything else
//!    (a retransmitted SYN included) stays.
//! 3. SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT: a FIN records that its
//!    direction has closed. Both closed -> TIME_WAIT; only the original
//!    side -> FIN_WAIT; only the reply side -> CLOSE_WAIT. Without any FIN,
//!    SYN_RECV + original ACK without SYN -> ESTABLISHED.
//! 4. TIME_WAIT, CLOSE: a new SYN without ACK from the original side
//!    reopens the entry -> SYN_SENT (client port reuse: RFC 9293 §3.6.1,
//!    MAY-2, lets an endpoint reopen a connection from TIME-WAIT on a new
//!    SYN); FIN bits are cleared.

use super::key::Dir;
use super::state::FlowState;

/// TCP header flag bits (RFC 9293 §3.1).
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

/// `fin_seen` bit: the original direction (client) sent FIN.
pub const FIN_ORIGINAL: u8 = 0x01;
/// `fin_seen` bit: the reply direction (server) sent FIN.
pub const FIN_REPLY: u8 = 0x02;

#[inline(always)]
fn fin_bit(dir: Dir) -> u8 {
    match dir {
        Dir::Original => FIN_ORIGINAL,
        Dir::Reply => FIN_REPLY,
    }
}

/// The FIN bits a connection in `state` has seen, as `next_state` leaves
/// them: for an entry installed in that state (state sync) rather than
/// driven there by segments.
#[inline]
pub fn fin_bits_of(state: FlowState) -> u8 {
    match state {
        FlowState::FinWait => FIN_ORIGINAL,
        FlowState::CloseWait => FIN_REPLY,
        FlowState::TimeWait => FIN_ORIGINAL | FIN_REPLY,
        _ => 0,
    }
}

/// The state after a segment with `tcp_flags` travelling `dir`.
/// `fin_seen` holds the per-direction FIN bits (`FIN_ORIGINAL`,
/// `FIN_REPLY`) and is updated in place. UDP and ICMP states are returned
/// unchanged.
#[inline]
pub fn next_state(state: FlowState, dir: Dir, tcp_flags: u8, fin_seen: &mut u8) -> FlowState {
    use FlowState::*;
    if tcp_flags & TCP_RST != 0 {
        return if state.is_tcp() { Close } else { state };
    }
    let syn = tcp_flags & TCP_SYN != 0;
    let ack = tcp_flags & TCP_ACK != 0;
    let fin = tcp_flags & TCP_FIN != 0;
    match state {
        SynSent => {
            if dir == Dir::Reply && syn && ack {
                SynRecv
            } else {
                SynSent
            }
        }
        SynRecv | Established | FinWait | CloseWait => {
            if fin {
                *fin_seen |= fin_bit(dir);
            }
            match *fin_seen & (FIN_ORIGINAL | FIN_REPLY) {
                b if b == FIN_ORIGINAL | FIN_REPLY => TimeWait,
                FIN_ORIGINAL => FinWait,
                FIN_REPLY => CloseWait,
                _ if state == SynRecv && dir == Dir::Original && ack && !syn => Established,
                _ => state,
            }
        }
        TimeWait | Close => {
            if dir == Dir::Original && syn && !ack {
                *fin_seen = 0;
                SynSent
            } else {
                state
            }
        }
        // The server's first answer: the flow is assured (Linux
        // conntrack's `IPS_ASSURED`).
        UdpUnreplied if dir == Dir::Reply => Udp,
        Udp | Icmp | UdpUnreplied => state,
    }
}

/// The state after a client segment when the box sees the client's
/// direction only (direct server return; IPVS's input-only table,
/// `tcp_states_dos` in ip_vs_proto_tcp.c): the handshake completes on the
/// client's first ACK, its FIN closes (the server's is never seen, so the
/// FIN timeout runs), RST closes, and a new SYN reopens a closing entry.
#[inline]
pub fn next_state_input_only(state: FlowState, tcp_flags: u8, fin_seen: &mut u8) -> FlowState {
    use FlowState::*;
    if tcp_flags & TCP_RST != 0 {
        return if state.is_tcp() { Close } else { state };
    }
    let syn = tcp_flags & TCP_SYN != 0;
    let ack = tcp_flags & TCP_ACK != 0;
    let fin = tcp_flags & TCP_FIN != 0;
    match state {
        SynSent | SynRecv | Established if fin => {
            *fin_seen |= FIN_ORIGINAL;
            FinWait
        }
        SynSent | SynRecv if ack && !syn => Established,
        FinWait | CloseWait | TimeWait | Close if syn && !ack => {
            *fin_seen = 0;
            SynSent
        }
        s => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FlowState::*;

    #[test]
    fn input_only_follows_the_client_alone() {
        let mut fin = 0;
        let mut s = SynSent;
        for (flags, want) in [(TCP_SYN, SynSent), (TCP_ACK, Established), (TCP_ACK | TCP_PSH, Established), (TCP_FIN | TCP_ACK, FinWait), (TCP_ACK, FinWait), (TCP_SYN, SynSent), (TCP_ACK, Established), (TCP_RST, Close)] {
            s = next_state_input_only(s, flags, &mut fin);
            assert_eq!(s, want, "flags {flags:#04x}");
        }
        assert_eq!(next_state_input_only(Udp, TCP_RST, &mut fin), Udp);
    }

    const SYN: u8 = TCP_SYN;
    const SYN_ACK: u8 = TCP_SYN | TCP_ACK;
    const ACK: u8 = TCP_ACK;
    const FIN_ACK: u8 = TCP_FIN | TCP_ACK;
    const RST: u8 = TCP_RST;
    const O: Dir = Dir::Original;
    const R: Dir = Dir::Reply;

    /// Runs `steps` from `start`, checking the state after each.
    fn run(start: FlowState, steps: &[(Dir, u8, FlowState)]) -> u8 {
        let mut s = start;
        let mut fin = 0;
        for (i, &(dir, flags, want)) in steps.iter().enumerate() {
            s = next_state(s, dir, flags, &mut fin);
            assert_eq!(s, want, "step {i}: {dir:?} flags {flags:#04x}");
        }
        fin
    }

    #[test]
    fn flow_tcp_full_open_close_client_first() {
        let fin = run(
            SynSent,
            &[
                (O, SYN, SynSent), // retransmitted SYN
                (R, SYN_ACK, SynRecv),
                (R, SYN_ACK, SynRecv), // retransmitted SYN-ACK
                (O, ACK, Established),
                (R, ACK | TCP_PSH, Established),
                (O, FIN_ACK, FinWait),
                (O, FIN_ACK, FinWait), // retransmitted FIN
                (R, ACK, FinWait),
                (R, FIN_ACK, TimeWait),
                (O, ACK, TimeWait),
            ],
        );
        assert_eq!(fin, FIN_ORIGINAL | FIN_REPLY);
    }

    #[test]
    fn flow_tcp_server_closes_first() {
        run(
            SynSent,
            &[
                (R, SYN_ACK, SynRecv),
                (O, ACK, Established),
                (R, FIN_ACK, CloseWait),
                (O, ACK, CloseWait),
                (O, FIN_ACK, TimeWait),
            ],
        );
    }

    #[test]
    fn flow_tcp_handshake_corner_cases() {
        // A SYN from the reply side (simultaneous open) or an ACK from the
        // client before the SYN-ACK does not advance SYN_SENT.
        run(SynSent, &[(R, SYN, SynSent), (O, ACK, SynSent), (R, ACK, SynSent)]);
        // SYN_RECV needs the client's ACK, without SYN.
        run(SynRecv, &[(O, SYN, SynRecv), (O, SYN_ACK, SynRecv), (R, ACK, SynRecv), (O, ACK, Established)]);
        // FIN in SYN_RECV.
        run(SynRecv, &[(O, FIN_ACK, FinWait)]);
        run(SynRecv, &[(R, FIN_ACK, CloseWait)]);
    }

    #[test]
    fn flow_tcp_rst_from_either_side() {
        for start in [SynSent, SynRecv, Established, FinWait, CloseWait, TimeWait, Close] {
            for dir in [O, R] {
                let mut fin = 0;
                assert_eq!(next_state(start, dir, RST, &mut fin), Close, "{start:?} {dir:?}");
                assert_eq!(next_state(start, dir, RST | ACK, &mut fin), Close);
            }
        }
        run(SynSent, &[(R, SYN_ACK, SynRecv), (O, ACK, Established), (R, RST, Close), (R, ACK, Close)]);
    }

    #[test]
    fn flow_tcp_port_reuse() {
        let mut fin = FIN_ORIGINAL | FIN_REPLY;
        assert_eq!(next_state(TimeWait, O, SYN, &mut fin), SynSent);
        assert_eq!(fin, 0);
        let mut fin = 0;
        assert_eq!(next_state(Close, O, SYN, &mut fin), SynSent);
        // Not from the reply side, not with ACK.
        let mut fin = FIN_ORIGINAL | FIN_REPLY;
        assert_eq!(next_state(TimeWait, R, SYN, &mut fin), TimeWait);
        assert_eq!(next_state(TimeWait, O, SYN_ACK, &mut fin), TimeWait);
        assert_eq!(next_state(Close, O, ACK, &mut fin), Close);
        assert_eq!(fin, FIN_ORIGINAL | FIN_REPLY);
        // ESTABLISHED ignores a stray SYN.
        let mut fin = 0;
        assert_eq!(next_state(Established, O, SYN, &mut fin), Established);
    }

    #[test]
    fn flow_tcp_non_tcp_states_unchanged() {
        let mut fin = 0;
        for flags in [0, SYN, RST, FIN_ACK] {
            assert_eq!(next_state(Udp, O, flags, &mut fin), Udp);
            assert_eq!(next_state(Icmp, R, flags, &mut fin), Icmp);
        }
        assert_eq!(fin, 0);
    }
}
