//! The VRRP state machine of RFC 5798 §6.4 as a pure function:
//! `(state, event, now) -> (state, actions)`. No I/O and no clock: the
//! caller feeds it the time (centiseconds, the protocol's unit), the
//! adverts it received and its timers' expiry, and carries out the actions
//! (send an advert, announce the addresses, take or drop them). Every
//! transition is a table-driven test.

use std::net::Ipv4Addr;

/// What an instance is configured with (its effective priority after
/// tracking included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// 1 to 254; 255 for the owner of the addresses (RFC 5798 §6.1).
    pub priority: u8,
    /// Advertisement_Interval, in centiseconds.
    pub advert_cs: u16,
    /// Preempt_Mode: a higher-priority backup takes over from a
    /// lower-priority master.
    pub preempt: bool,
    /// The primary address adverts leave from; it breaks priority ties
    /// (the higher address wins, RFC 5798 §6.4.3).
    pub address: Ipv4Addr,
    /// 3 (RFC 5798) or 2 (RFC 3768): they differ in the skew.
    pub version: u8,
}

impl Params {
    /// Skew_Time: lower priorities wait longer. RFC 5798 §6.1 (v3):
    /// `((256 - Priority) * Master_Adver_Interval) / 256`; RFC 3768 §6.1
    /// (v2): `(256 - Priority) / 256` seconds, whatever the interval.
    pub fn skew_cs(&self, master_adver_cs: u16) -> u64 {
        let unit = if self.version == 2 { 100 } else { u64::from(master_adver_cs) };
        (256 - u64::from(self.priority)) * unit / 256
    }

    /// The address owner (priority 255, RFC 5798 §6.1).
    pub fn is_owner(&self) -> bool {
        self.priority == 255
    }

    /// Master_Down_Interval: three intervals and the skew.
    pub fn master_down_cs(&self, master_adver_cs: u16) -> u64 {
        3 * u64::from(master_adver_cs) + self.skew_cs(master_adver_cs)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Initialize,
    /// Waiting for the master's adverts; becomes master when none came
    /// until `master_down_at`.
    Backup { master_adver_cs: u16, master_down_at: u64 },
    /// Sending adverts; the next at `advert_at`.
    Master { advert_at: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Startup,
    Shutdown,
    /// The time is `now`: a due timer fires.
    Tick,
    /// An advert for this VRID passed the checks of RFC 5798 §7.1.
    Advert { priority: u8, interval_cs: u16, src: Ipv4Addr },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send an advert with this priority (0: the master is leaving).
    SendAdvert { priority: u8 },
    /// Own the virtual addresses: answer ARP for them, forward their
    /// traffic, and announce them with gratuitous ARP.
    TakeAddresses,
    /// Stop answering for the virtual addresses.
    DropAddresses,
}

/// At most three actions come from one step.
pub type Actions = ([Option<Action>; 3], usize);

fn acts(list: &[Action]) -> Actions {
    let mut out = [None; 3];
    for (slot, a) in out.iter_mut().zip(list) {
        *slot = Some(*a);
    }
    (out, list.len().min(3))
}

/// One transition (RFC 5798 §6.4.1 to §6.4.3).
pub fn step(state: State, p: &Params, event: Event, now: u64) -> (State, Actions) {
    let become_master = |now: u64| {
        (State::Master { advert_at: now + u64::from(p.advert_cs) }, acts(&[Action::SendAdvert { priority: p.priority }, Action::TakeAddresses]))
    };
    let backup = |master_adver_cs: u16, now: u64| State::Backup { master_adver_cs, master_down_at: now + p.master_down_cs(master_adver_cs) };
    match (state, event) {
        // §6.4.1: the owner starts as master, anyone else as backup.
        (State::Initialize, Event::Startup) if p.is_owner() => become_master(now),
        (State::Initialize, Event::Startup) => (backup(p.advert_cs, now), acts(&[])),
        (State::Initialize, _) => (state, acts(&[])),
        // §7.1: the address owner discards every advert (it stays master;
        // the caller counts them, `address-owner`).
        (_, Event::Advert { .. }) if p.is_owner() => (state, acts(&[])),

        // §6.4.2.
        (State::Backup { .. }, Event::Shutdown) => (State::Initialize, acts(&[])),
        (State::Backup { master_down_at, .. }, Event::Tick) if now >= master_down_at => become_master(now),
        (State::Backup { master_adver_cs, .. }, Event::Advert { priority: 0, .. }) => {
            // The master left: wait only the skew.
            (State::Backup { master_adver_cs, master_down_at: now + p.skew_cs(master_adver_cs) }, acts(&[]))
        }
        (State::Backup { .. }, Event::Advert { priority, interval_cs, .. }) if !p.preempt || priority >= p.priority => {
            (backup(interval_cs, now), acts(&[]))
        }
        (State::Backup { .. }, _) => (state, acts(&[])),

        // §6.4.3.
        (State::Master { .. }, Event::Shutdown) => (State::Initialize, acts(&[Action::SendAdvert { priority: 0 }, Action::DropAddresses])),
        (State::Master { advert_at }, Event::Tick) if now >= advert_at => {
            (State::Master { advert_at: now + u64::from(p.advert_cs) }, acts(&[Action::SendAdvert { priority: p.priority }]))
        }
        (State::Master { .. }, Event::Advert { priority: 0, .. }) => {
            (State::Master { advert_at: now + u64::from(p.advert_cs) }, acts(&[Action::SendAdvert { priority: p.priority }]))
        }
        (State::Master { .. }, Event::Advert { priority, interval_cs, src }) if priority > p.priority || (priority == p.priority && src > p.address) => {
            (backup(interval_cs, now), acts(&[Action::DropAddresses]))
        }
        (State::Master { .. }, _) => (state, acts(&[])),
    }
}

#[cfg(test)]
mod tests;
