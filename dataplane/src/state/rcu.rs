//! Publishing immutable snapshots to workers without locks, after grout's
//! double-buffered config with RCU-style quiescence
//! (`modules/infra/control/worker.h`).
//!
//! The control plane `publish`es a new snapshot; each worker, at a
//! quiescent point of its loop (between bursts), `refresh`es: it picks up
//! the newest snapshot and records the generation it has moved to. An old
//! snapshot is freed by `reclaim` only once every worker has moved past it,
//! so a worker's reference stays valid until its next quiescent point.
//!
//! The borrow checker enforces the quiescent point: `Reader::get` lends the
//! snapshot for as long as the `Reader` is borrowed, and `refresh` needs it
//! mutably, so safe code cannot hold a snapshot across a refresh. Nothing a
//! reader may still hold is freed by the publisher: snapshots still waiting
//! when the publisher goes, and the current one, are freed with the cell,
//! when its last handle (publisher or reader) is dropped.
//!
//! `tests::loom` model-checks the protocol (every interleaving of a
//! publisher and a reader, with the freed memory written to on drop so that
//! a read not ordered before the free is reported): `RUSTFLAGS="--cfg
//! loom" cargo test -p furiwake-dataplane --release --lib loom`.

use crate::sync::{Arc, AtomicPtr, AtomicU64, Mutex, Ordering};
use crossbeam_utils::CachePadded;

/// The shared cell. Control plane: rw; workers: ro.
pub struct Rcu<T> {
    current: AtomicPtr<T>,
    /// Bumped after `current` changes (Release); workers read it first.
    generation: AtomicU64,
    /// Per worker: the generation it last moved to. Worker: rw; control: ro.
    /// One cache line each, so workers storing theirs do not invalidate
    /// each other's line.
    seen: Box<[CachePadded<AtomicU64>]>,
    /// Snapshots the publisher retired but could not free before it went;
    /// freed with the cell. Control: rw, once, when the publisher drops.
    orphans: Mutex<Vec<Retired<T>>>,
}

/// A snapshot no longer current, kept as the raw pointer the readers
/// derived their references from. It becomes a `Box` again only to be
/// freed, once no reader can hold it: a `Box` asserts unique access, which
/// the readers' shared references would contradict while they live (Miri's
/// Stacked Borrows reports exactly that).
struct Retired<T>(*mut T);

impl<T> Retired<T> {
    /// # Safety
    /// The pointer came from `Box::into_raw` and no reference to its
    /// snapshot is alive or will be made.
    unsafe fn free(self) {
        // SAFETY: the caller's contract.
        drop(unsafe { Box::from_raw(self.0) });
    }
}

impl<T> Drop for Rcu<T> {
    fn drop(&mut self) {
        // The last handle is gone: no reader can hold anything.
        let cur = self.current.swap(std::ptr::null_mut(), Ordering::AcqRel);
        if !cur.is_null() {
            // SAFETY: `cur` came from Box::into_raw and the cell owned it;
            // no handle is left to dereference it.
            unsafe { Retired(cur).free() };
        }
        if let Ok(orphans) = self.orphans.get_mut() {
            for o in orphans.drain(..) {
                // SAFETY: as above: every handle is gone.
                unsafe { o.free() };
            }
        }
    }
}

// SAFETY: T is only shared by reference between threads (T: Sync) and
// freed on the control thread (T: Send).
unsafe impl<T: Send + Sync> Send for Rcu<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for Rcu<T> {}

/// Control plane's handle: publishes and frees.
pub struct Publisher<T> {
    cell: Arc<Rcu<T>>,
    /// Snapshots replaced at the given generation, waiting for workers.
    retired: Vec<(u64, Retired<T>)>,
}

// SAFETY: the publisher owns its retired snapshots (T: Send) and shares
// the cell (see `Rcu`'s impls).
unsafe impl<T: Send + Sync> Send for Publisher<T> {}

/// A worker's handle.
pub struct Reader<T> {
    cell: Arc<Rcu<T>>,
    worker: usize,
    generation: u64,
    ptr: *const T,
}

// SAFETY: the pointer is only dereferenced under the protocol above.
unsafe impl<T: Send + Sync> Send for Reader<T> {}

/// A cell holding `initial`, for `workers` readers.
pub fn rcu<T: Send + Sync>(initial: Box<T>, workers: usize) -> (Publisher<T>, Vec<Reader<T>>) {
    let ptr = Box::into_raw(initial);
    let cell = Arc::new(Rcu {
        current: AtomicPtr::new(ptr),
        generation: AtomicU64::new(1),
        seen: (0..workers).map(|_| CachePadded::new(AtomicU64::new(1))).collect(),
        orphans: Mutex::new(Vec::new()),
    });
    let readers = (0..workers).map(|w| Reader { cell: Arc::clone(&cell), worker: w, generation: 1, ptr }).collect();
    (Publisher { cell, retired: Vec::new() }, readers)
}

impl<T> Publisher<T> {
    /// Makes `next` the current snapshot; returns its generation.
    pub fn publish(&mut self, next: Box<T>) -> u64 {
        let old = self.cell.current.swap(Box::into_raw(next), Ordering::AcqRel);
        let generation = self.cell.generation.fetch_add(1, Ordering::AcqRel) + 1;
        // `old` came from Box::into_raw and is owned by the cell until now;
        // it is freed only after every worker moved past it (`reclaim`).
        self.retired.push((generation, Retired(old)));
        self.reclaim();
        generation
    }

    /// The oldest generation a worker may still be using: every worker has
    /// moved to this one or a later one.
    pub fn min_seen(&self) -> u64 {
        self.cell.seen.iter().map(|s| s.load(Ordering::Acquire)).min().unwrap_or(u64::MAX)
    }

    /// Frees retired snapshots no worker can still be using. Returns how
    /// many are still waiting.
    pub fn reclaim(&mut self) -> usize {
        let min_seen = self.min_seen();
        let mut i = 0;
        while let Some((replaced_at, _)) = self.retired.get(i) {
            if *replaced_at > min_seen {
                i += 1;
                continue;
            }
            let (_, r) = self.retired.swap_remove(i);
            // SAFETY: every worker's `seen` passed the generation that
            // replaced it (Acquire in `min_seen` pairs with the readers'
            // Release): no reader holds or will take a reference to it.
            unsafe { r.free() };
        }
        self.retired.len()
    }

    /// The current snapshot, for the control plane's own reading.
    pub fn current(&self) -> &T {
        // SAFETY: only the publisher replaces or frees snapshots, and it is
        // borrowed here.
        unsafe { &*self.cell.current.load(Ordering::Acquire) }
    }

    pub fn generation(&self) -> u64 {
        self.cell.generation.load(Ordering::Acquire)
    }
}

impl<T> Drop for Publisher<T> {
    fn drop(&mut self) {
        self.reclaim();
        // What a reader may still use goes with the cell, freed when the
        // last reader is dropped too (`Rcu::drop`).
        if !self.retired.is_empty() {
            if let Ok(mut orphans) = self.cell.orphans.lock() {
                orphans.extend(self.retired.drain(..).map(|(_, r)| r));
            }
        }
    }
}

impl<T> Reader<T> {
    /// Quiescent point: moves to the newest snapshot. Returns true when it
    /// changed. Cheap when nothing changed (one relaxed-enough load).
    #[inline]
    pub fn refresh(&mut self) -> bool {
        let g = self.cell.generation.load(Ordering::Acquire);
        if g == self.generation {
            return false;
        }
        self.ptr = self.cell.current.load(Ordering::Acquire);
        self.generation = g;
        if let Some(seen) = self.cell.seen.get(self.worker) {
            seen.store(g, Ordering::Release);
        }
        true
    }

    /// The snapshot this worker moved to at its last `refresh`, lent for
    /// as long as the reader is borrowed: `refresh` (which takes `&mut
    /// self`) cannot run while the reference lives. This does not compile:
    ///
    /// ```compile_fail
    /// let (_publisher, mut readers) = furiwake_dataplane::state::rcu::rcu(Box::new(1u32), 1);
    /// let reader = &mut readers[0];
    /// let held = reader.get();
    /// reader.refresh();
    /// assert_eq!(*held, 1);
    /// ```
    #[inline]
    pub fn get(&self) -> &T {
        // SAFETY: the publisher frees a snapshot only after every worker's
        // `seen` passed the generation that replaced it (and never one it
        // did not retire); this reader's `seen` moves only in `refresh`,
        // which the borrow of `self` excludes while the reference lives.
        // The cell (kept alive by our Arc) frees the current snapshot and
        // orphans only when every handle is gone.
        unsafe { &*self.ptr }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::cell::UnsafeCell;

    /// A snapshot whose memory is written when it is freed: loom reports a
    /// reader's access that is not ordered before the free.
    struct Probe(UnsafeCell<u64>);

    // SAFETY: the test's point: the cell's protocol makes the accesses
    // ordered, and loom checks that they are.
    unsafe impl Sync for Probe {}

    impl Drop for Probe {
        fn drop(&mut self) {
            self.0.with_mut(|v| {
                // SAFETY: loom checks this write against every read.
                unsafe { *v = u64::MAX }
            });
        }
    }

    fn read(r: &Reader<Probe>) -> u64 {
        // SAFETY: loom checks this read against the free's write.
        r.get().0.with(|v| unsafe { *v })
    }

    #[test]
    fn a_reader_never_reads_a_freed_snapshot() {
        loom::model(|| {
            let (mut p, mut readers) = rcu(Box::new(Probe(UnsafeCell::new(1))), 1);
            let Some(mut r) = readers.pop() else { return };
            let t = loom::thread::spawn(move || {
                let mut last = read(&r);
                for _ in 0..2 {
                    r.refresh();
                    let v = read(&r);
                    assert!(v >= last && v <= 3, "snapshots go forward: {last} then {v}");
                    last = v;
                }
            });
            p.publish(Box::new(Probe(UnsafeCell::new(2))));
            p.publish(Box::new(Probe(UnsafeCell::new(3))));
            p.reclaim();
            t.join().unwrap();
            assert!(p.reclaim() <= 2, "at most the two replaced snapshots wait");
        });
    }

    #[test]
    fn the_publisher_may_go_first() {
        loom::model(|| {
            let (mut p, mut readers) = rcu(Box::new(Probe(UnsafeCell::new(1))), 1);
            let Some(mut r) = readers.pop() else { return };
            let t = loom::thread::spawn(move || {
                r.refresh();
                assert!(read(&r) <= 2);
            });
            p.publish(Box::new(Probe(UnsafeCell::new(2))));
            drop(p);
            t.join().unwrap();
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    struct Counted(u32, Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn old_snapshot_freed_only_after_every_worker_moved() {
        let drops = Arc::new(AtomicUsize::new(0));
        let (mut p, mut readers) = rcu(Box::new(Counted(1, Arc::clone(&drops))), 2);
        assert_eq!(readers[0].get().0, 1);
        p.publish(Box::new(Counted(2, Arc::clone(&drops))));
        assert_eq!(readers[0].get().0, 1, "no refresh yet");
        assert!(readers[0].refresh());
        assert_eq!(readers[0].get().0, 2);
        assert_eq!(p.reclaim(), 1, "worker 1 still on generation 1");
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        assert!(readers[1].refresh());
        assert!(!readers[1].refresh());
        assert_eq!(p.reclaim(), 0);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        drop(readers);
        drop(p);
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    }

    #[test]
    #[cfg_attr(miri, ignore = "spinning readers over 2000 publishes: far too slow under Miri; loom checks the protocol")]
    fn concurrent_readers_never_see_freed_memory() {
        let (mut p, readers) = rcu(Box::new(vec![0u64; 64]), 2);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let handles: Vec<_> = readers
            .into_iter()
            .map(|mut r| {
                let (stop, seen) = (Arc::clone(&stop), Arc::clone(&seen));
                std::thread::spawn(move || {
                    let mut checks = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        r.refresh();
                        let v = r.get();
                        // Every snapshot is uniform; a freed one would not be.
                        assert!(v.iter().all(|x| *x == v[0]));
                        checks += 1;
                        // Each reader counts once a thousand checks (and at
                        // its first): the publisher goes on until both did.
                        if checks == 1 || checks == 1000 {
                            seen.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    checks
                })
            })
            .collect();
        // At least 2000 publishes, and on until each reader has read a
        // thousand times while they went on (an optimised publisher can
        // finish before a reader thread is first scheduled, and on a busy
        // machine one reader may run long before the other).
        let mut i = 1u64;
        let start = std::time::Instant::now();
        while i < 2000 || (seen.load(Ordering::Relaxed) < 4 && start.elapsed() < std::time::Duration::from_secs(60)) {
            p.publish(Box::new(vec![i; 64]));
            p.reclaim();
            if i >= 2000 {
                std::thread::yield_now();
            }
            i += 1;
        }
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            assert!(h.join().unwrap() > 0);
        }
    }
}
