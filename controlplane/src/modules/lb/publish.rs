//! What a health or operator change publishes: the snapshot compiled
//! from the configuration with each server's state applied, at once (a
//! pass over the servers: about 0.1 ms at 10,000), and the hash (Maglev)
//! tables of the pools whose servers' states changed, rebuilt over the
//! servers that can take connections a bounded share a turn
//! (`HashTables::step`, `maglev::Builder`) and published when done (a
//! whole table of a 10,000-member pool is about 1.5 ms of work). Until
//! then the pool keeps its table: a worker that finds a server that
//! cannot take connections there takes the next member that can
//! (`Scheduler::pick_for`), and a server that came back gets its entries
//! with the new table. A build runs to its end over the states it began
//! with, and the republish then starts one over the states of that moment,
//! so churn faster than a build delays a table by two builds at most
//! instead of starving it. A table whose members changed (a configuration
//! change) is rebuilt at once: the old one's entries name members by
//! their place. `furiwake-bench`'s `control` benches time both. The
//! other schedules (round robin's sequence, weighted round robin's, the
//! load-aware ones) are built with the configuration and skip servers
//! that cannot take connections when they pick, so a state change does
//! not touch them.

use furiwake_dataplane::lb::maglev::{Builder, DEFAULT_TABLE_SIZE};
use furiwake_dataplane::lb::{HashKey, RealServer, Schedule};
use furiwake_dataplane::state::snapshot::Snapshot;

/// Probes of the tables being rebuilt a turn (`HashTables::step`): a
/// 10,000-member pool's table in about 14 turns, each share at most
/// about 0.3 ms (`furiwake-bench --bench control`, release).
pub const TABLE_STEPS_PER_TURN: u64 = 50_000;

/// What health and the operator say of one live server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerState {
    pub enabled: bool,
    pub sticky_only: bool,
    pub reset: bool,
    pub epoch: u32,
}

/// A pool's members as a hash table sees them: address, port and
/// effective weight (0 when down or disabled).
type Members = Vec<(u32, u16, u32)>;

/// One service's hash table: the one published and what it was built
/// over; the one being built, if its servers' states changed since.
struct Table {
    key: HashKey,
    built: Members,
    schedule: Schedule,
    next: Option<(Members, Builder)>,
}

/// The hash tables, per service slot.
#[derive(Default)]
pub struct HashTables(Vec<Option<Table>>);

impl std::fmt::Debug for HashTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HashTables({} slots, {} being built)", self.0.len(), self.pending())
    }
}

impl HashTables {
    /// Tables being built.
    pub fn pending(&self) -> usize {
        self.0.iter().flatten().filter(|t| t.next.is_some()).count()
    }

    /// Moves the tables being built on by `budget` probes in all (the
    /// first one pending takes them: a turn's share stays bounded however
    /// many pools changed); true when it was finished (the snapshot is to
    /// be published again).
    pub fn step(&mut self, budget: u64) -> bool {
        let Some(t) = self.0.iter_mut().flatten().find(|t| t.next.is_some()) else { return false };
        let Some((members, b)) = t.next.as_mut() else { return false };
        let Some(table) = b.step(budget) else { return false };
        t.schedule = Schedule::Hash { key: t.key, table: table.into_boxed_slice() };
        t.built = std::mem::take(members);
        t.next = None;
        true
    }

    /// The schedule to publish for a service hashing `key` over
    /// `members`: the table built over them, or the last one while theirs
    /// is built (only states changed), or one built now.
    fn schedule(&mut self, slot: usize, key: HashKey, members: Members) -> Schedule {
        if self.0.len() <= slot {
            self.0.resize_with(slot + 1, || None);
        }
        let cached = &mut self.0[slot];
        let same_members = |a: &Members, b: &Members| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x.0, x.1) == (y.0, y.1));
        match cached {
            Some(t) if t.key == key && t.built == members => {
                t.next = None;
                t.schedule.clone()
            }
            // A table over no live member refuses every connection: one
            // that can take some is built at once.
            // A build under way runs to its end even when the states moved
            // on (restarted at every change it would never end under churn):
            // the republish at its end (`step`) starts one over the states
            // then.
            Some(t) if t.key == key && same_members(&t.built, &members) && t.built.iter().any(|m| m.2 > 0) => {
                if t.next.is_none() {
                    let b = Builder::new(&Schedule::hash_backends(&members), DEFAULT_TABLE_SIZE);
                    t.next = Some((members, b));
                }
                t.schedule.clone()
            }
            _ => {
                let schedule = Schedule::hashed(key, &members);
                *cached = Some(Table { key, built: members, schedule: schedule.clone(), next: None });
                schedule
            }
        }
    }
}

/// `base` with each server's state (`state(i, server)`; None: not live,
/// no new connection and nothing cut) and each service's standby flag
/// (`standby(vip)`); hash tables from `tables` (see the module's doc).
pub fn with_states(base: &Snapshot, state: impl Fn(usize, &RealServer) -> Option<ServerState>, standby: impl Fn(u32) -> bool, tables: &mut HashTables) -> Snapshot {
    let mut snap = base.clone();
    for (i, s) in snap.servers.iter_mut().enumerate() {
        match state(i, s) {
            Some(st) => (s.enabled, s.sticky_only, s.reset, s.epoch) = (st.enabled, st.sticky_only, st.reset, st.epoch),
            None => (s.enabled, s.sticky_only, s.reset) = (false, false, false),
        }
    }
    for vs in &mut snap.services {
        vs.standby = standby(vs.ip);
    }
    for (slot, vs) in snap.services.iter_mut().enumerate() {
        let Schedule::Hash { key, .. } = vs.schedule else { continue };
        let members: Members = vs.members.iter().filter_map(|g| snap.servers.get(*g as usize)).map(|s| (s.hash_word(), s.port, if s.enabled { s.weight } else { 0 })).collect();
        vs.schedule = tables.schedule(slot, key, members);
    }
    snap
}

#[cfg(test)]
mod tests {
    use super::*;
    use furiwake_dataplane::state::snapshot::{Forwarding, VirtualService};

    /// Two Maglev pools: a change in one publishes the states at once with
    /// the old tables, then rebuilds the changed pool's table only, over
    /// turns, into the table a rebuild from scratch makes.
    #[test]
    fn a_change_rebuilds_the_changed_pools_table_only() {
        let mut base = Snapshot::default();
        for p in 0..2u16 {
            let members: Vec<u16> = (0..100).map(|i| p * 100 + i).collect();
            base.servers.extend((0..100u32).map(|i| RealServer { ip: 0x0a00_0000 + u32::from(p) * 256 + i, port: 80, weight: 1, enabled: true, vs: p, ..RealServer::default() }));
            let input: Vec<(u32, u16, u32)> = members.iter().map(|&g| (base.servers[g as usize].ip, 80, 1)).collect();
            base.services.push(VirtualService { members: members.into(), schedule: Schedule::hashed(HashKey::FiveTuple, &input), ..VirtualService::test(Forwarding::Nat) });
        }
        let up = |down: Option<usize>| move |i: usize, _: &RealServer| Some(ServerState { enabled: Some(i) != down, ..ServerState::default() });
        let mut tables = HashTables::default();
        let first = with_states(&base, up(None), |_| false, &mut tables);
        let table_ptr = |s: &Snapshot, v: usize| match &s.services[v].schedule {
            Schedule::Hash { table, .. } => (table.as_ptr(), table.to_vec()),
            _ => panic!("not a hash schedule"),
        };
        let second = with_states(&base, up(Some(150)), |_| false, &mut tables);
        assert!(!second.servers[150].enabled && second.servers[149].enabled, "the state is published at once");
        assert_eq!(table_ptr(&second, 1).1, table_ptr(&first, 1).1, "with the old table while the new one is built");
        assert_eq!(tables.pending(), 1, "pool 1's only");
        let mut turns = 0;
        while !tables.step(10_000) {
            turns += 1;
        }
        assert!(turns > 2, "built over turns: {turns}");
        assert_eq!(tables.pending(), 0);
        let third = with_states(&base, up(Some(150)), |_| false, &mut tables);
        assert_eq!(table_ptr(&third, 0).1, table_ptr(&first, 0).1, "pool 0 unchanged");
        let changed = table_ptr(&third, 1).1;
        let mut fresh = HashTables::default();
        assert_eq!(changed, table_ptr(&with_states(&base, up(Some(150)), |_| false, &mut fresh), 1).1, "the table a rebuild from scratch makes");
        assert!(!changed.contains(&50), "member 50 of pool 1 (server 150) is down: no entry");
        let fourth = with_states(&base, up(None), |_| false, &mut tables);
        assert_eq!(table_ptr(&fourth, 1).1, changed, "back up: the down one's table until the new one is built");
        assert!(tables.step(u64::MAX));
        assert_eq!(table_ptr(&with_states(&base, up(None), |_| false, &mut tables), 1).1, table_ptr(&first, 1).1, "and then the first table again");
        // Review finding: every member down, then one back: its table at
        // once (the old one, over no live member, would refuse everything).
        let pool1 = |g: usize| (100..200).contains(&g);
        let _ = with_states(&base, |i, _| Some(ServerState { enabled: !pool1(i), ..ServerState::default() }), |_| false, &mut tables);
        while tables.step(u64::MAX) {}
        let one = with_states(&base, |i, _| Some(ServerState { enabled: !pool1(i) || i == 123, ..ServerState::default() }), |_| false, &mut tables);
        assert!(table_ptr(&one, 1).1.iter().all(|p| *p == 23), "the returning server takes the whole table at once");
        assert_eq!(tables.pending(), 0);
        // A configuration change that moves a member: its table at once
        // (the old one's entries name members by their place).
        let mut moved = base.clone();
        moved.servers[199].ip += 1000;
        let now = with_states(&moved, up(None), |_| false, &mut tables);
        let mut fresh = HashTables::default();
        assert_eq!(table_ptr(&now, 1).1, table_ptr(&with_states(&moved, up(None), |_| false, &mut fresh), 1).1);
        assert_eq!(tables.pending(), 0);
    }

    /// Under churn (a server's state changing at every turn, faster than
    /// a table is built) tables still get built and published: a build
    /// runs to its end, and the republish then starts one over the states
    /// of that moment. (Restarted at each change, none ever finished.)
    #[test]
    fn tables_are_built_under_churn() {
        let mut base = Snapshot::default();
        let members: Vec<u16> = (0..1000).collect();
        base.servers.extend((0..1000u32).map(|i| RealServer { ip: 0x0a00_0000 + i, port: 80, weight: 1, enabled: true, ..RealServer::default() }));
        let input: Vec<(u32, u16, u32)> = base.servers.iter().map(|s| (s.ip, 80, 1)).collect();
        base.services.push(VirtualService { members: members.into(), schedule: Schedule::hashed(HashKey::FiveTuple, &input), ..VirtualService::test(Forwarding::Nat) });
        let down = |d: usize| move |i: usize, _: &RealServer| Some(ServerState { enabled: i != d, ..ServerState::default() });
        let mut tables = HashTables::default();
        let _ = with_states(&base, down(usize::MAX), |_| false, &mut tables);
        // The turns one build takes at this budget, with nothing changing.
        let budget = DEFAULT_TABLE_SIZE as u64;
        let _ = with_states(&base, down(999), |_| false, &mut tables);
        let mut build = 1;
        while !tables.step(budget) {
            build += 1;
        }
        assert!(build >= 4, "a build over several turns: {build}");
        let _ = with_states(&base, down(999), |_| false, &mut tables);
        let mut published = 0;
        for turn in 0..400 {
            // A different server down each turn.
            let _ = with_states(&base, down(turn % 1000), |_| false, &mut tables);
            if tables.step(budget) {
                published += 1;
                let snap = with_states(&base, down(turn % 1000), |_| false, &mut tables);
                let Schedule::Hash { table, .. } = &snap.services[0].schedule else { panic!("not a hash schedule") };
                // Built over the states of when its build began: one
                // server down, at most two builds' turns before.
                let mut seen = vec![false; 1000];
                for &m in table.iter() {
                    seen[usize::from(m)] = true;
                }
                let absent: Vec<usize> = (0..1000).filter(|&i| !seen[i]).collect();
                assert!(absent.len() == 1 && turn - absent[0] <= 2 * build + 1, "turn {turn}: the table's down servers {absent:?}, a build {build} turns");
            }
        }
        assert!(published >= 400 / build / 2, "tables published under churn: {published}, a build {build} turns");
    }
}
