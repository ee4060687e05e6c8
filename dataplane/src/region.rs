//! The memory of the big tables (connection table, its buckets and
//! tracks, persistence records): a fixed-size slice allocated once, from
//! the appliance's hugepages when it has set a [`Backing`] (DPDK's
//! `rte_malloc`, NUMA-local: fewer TLB misses on a table a worker
//! touches at random, as DPVS and VPP keep theirs), else from the heap
//! (tests, benchmarks, `--no-huge`; in the benchmark harness a table of
//! 2 MiB or more there is a mapping advised for transparent huge pages,
//! `transparent_huge`). A backing that has no
//! room left gives nothing and the heap serves: `placed()` tells the
//! operator where the bytes went.
//!
//! Allocation and release only; the packet path sees a `&[T]`.

use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;
use std::alloc::Layout;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

/// Memory for tables, other than the heap.
///
/// # Safety
/// A non-null pointer `alloc` returns must be valid for reads and writes
/// of `bytes` bytes, aligned to `align`, not aliased by anything else, and
/// stay so until passed to `free`, which any thread may call.
pub unsafe trait Backing: Sync {
    /// `bytes` bytes aligned to `align`, preferably on NUMA node `node`
    /// (None: the calling thread's); null when there is no room.
    fn alloc(&self, bytes: usize, align: usize, node: Option<u32>) -> *mut u8;
    /// Frees what `alloc` returned.
    ///
    /// # Safety
    /// `p` came from this backing's `alloc` and is freed once.
    unsafe fn free(&self, p: *mut u8);
}

static BACKING: OnceLock<&'static dyn Backing> = OnceLock::new();
/// Bytes of tables on the backing and on the heap.
static ON_BACKING: AtomicU64 = AtomicU64::new(0);
static ON_HEAP: AtomicU64 = AtomicU64::new(0);
/// Bytes of side tables reserved on the heap, committed as written.
static ON_DEMAND: AtomicU64 = AtomicU64::new(0);

/// Types whose all-zero bytes are a valid value (`Region::demand_zeroed`).
///
/// # Safety
/// Every field of the type is an integer, an array of integers or another
/// `Zeroable`, with no padding that matters and no invalid bit pattern.
pub unsafe trait Zeroable: Copy {}

/// Tables off the backing on transparent huge pages (`transparent_huge`).
static TRANSPARENT_HUGE: AtomicBool = AtomicBool::new(false);

/// From now on, tables of 2 MiB or more that the backing does not take
/// are mappings advised for transparent huge pages instead of heap memory:
/// the benchmark harness's stand-in (it runs `--no-huge`) for the
/// hugepages the appliance keeps its tables on. Off by default: in the
/// appliance's `--no-huge` fallback it made the health probes' RTTs 2-5 ms
/// longer in the 10,000-member test, for a reason not found.
pub fn transparent_huge(on: bool) {
    TRANSPARENT_HUGE.store(on, Ordering::Relaxed);
}

/// Bytes of side tables reserved (`Region::demand_zeroed`): an upper
/// bound of what they commit.
pub fn demand_reserved() -> u64 {
    ON_DEMAND.load(Ordering::Relaxed)
}

thread_local! {
    /// The NUMA node tables made on this thread go to (`on_node`).
    static NODE: Cell<Option<u32>> = const { Cell::new(None) };
}

/// Sets the backing of every table made from now on (once per process).
/// False when one was set before.
pub fn set_backing(b: &'static dyn Backing) -> bool {
    BACKING.set(b).is_ok()
}

/// Runs `f` with the tables it makes placed on NUMA node `node` (the
/// control thread builds each worker's before the worker runs).
pub fn on_node<R>(node: u32, f: impl FnOnce() -> R) -> R {
    let before = NODE.with(|n| n.replace(Some(node)));
    let r = f();
    NODE.with(|n| n.set(before));
    r
}

/// Bytes of tables on the backing (hugepages) and on the heap, now.
pub fn placed() -> (u64, u64) {
    (ON_BACKING.load(Ordering::Relaxed), ON_HEAP.load(Ordering::Relaxed))
}

/// `len` values of `T`, allocated once.
pub struct Region<T: Copy> {
    ptr: NonNull<T>,
    len: usize,
    /// The backing it came from; None: the heap (or nothing, when empty).
    from: Option<&'static dyn Backing>,
    /// From `demand_zeroed`.
    demand: bool,
    /// From `huge_map` (the heap's place for a big table).
    mapped: bool,
}

// SAFETY: a Region owns its memory as a Box<[T]> would; T: Send/Sync
// carries over.
unsafe impl<T: Copy + Send> Send for Region<T> {}
// SAFETY: as above; shared access is to `&[T]` only.
unsafe impl<T: Copy + Sync> Sync for Region<T> {}

impl<T: Copy> Region<T> {
    /// No values (allocates nothing).
    pub fn empty() -> Self {
        Region { ptr: NonNull::dangling(), len: 0, from: None, demand: false, mapped: false }
    }

    /// `len` copies of `value`, on the backing when there is one with room.
    /// An allocation the heap cannot give aborts, as `vec!` does.
    pub fn filled(len: usize, value: T) -> Self {
        let Ok(layout) = Layout::array::<T>(len) else { std::alloc::handle_alloc_error(Layout::new::<T>()) };
        if layout.size() == 0 {
            return Region { ptr: NonNull::dangling(), len, from: None, demand: false, mapped: false };
        }
        let mut from = None;
        let mut p: *mut T = core::ptr::null_mut();
        if let Some(b) = BACKING.get() {
            p = b.alloc(layout.size(), layout.align(), NODE.with(Cell::get)).cast();
            if !p.is_null() {
                from = Some(*b);
            }
        }
        let mut mapped = false;
        if p.is_null() && layout.size() >= HUGE_PAGE && TRANSPARENT_HUGE.load(Ordering::Relaxed) {
            p = huge_map(layout).cast();
            mapped = !p.is_null();
        }
        if p.is_null() {
            // SAFETY: the layout's size is not zero.
            p = unsafe { std::alloc::alloc(layout) }.cast();
        }
        let Some(ptr) = NonNull::new(p) else { std::alloc::handle_alloc_error(layout) };
        for i in 0..len {
            // SAFETY: i < len, inside the allocation of `len` T's.
            unsafe { ptr.as_ptr().add(i).write(value) };
        }
        let counter = if from.is_some() { &ON_BACKING } else { &ON_HEAP };
        counter.fetch_add(layout.size() as u64, Ordering::Relaxed);
        Region { ptr, len, from, demand: false, mapped }
    }

    /// `len` all-zero values in a private anonymous mapping, whose pages
    /// the kernel commits only when first written, 4 KiB at a time
    /// (`MADV_NOHUGEPAGE`: a first write zeroes one small page, never a
    /// 2 MiB one): for a side table only some entries use. Never on the
    /// backing (hugepages are committed whole). Counted apart
    /// (`demand_reserved`). Without mmap (Miri, other systems): zeroed heap.
    pub fn demand_zeroed(len: usize) -> Self
    where
        T: Zeroable,
    {
        let Ok(layout) = Layout::array::<T>(len) else { std::alloc::handle_alloc_error(Layout::new::<T>()) };
        if layout.size() == 0 {
            return Region { ptr: NonNull::dangling(), len, from: None, demand: true, mapped: false };
        }
        let p = demand_map(layout);
        let Some(ptr) = NonNull::new(p.cast::<T>()) else { std::alloc::handle_alloc_error(layout) };
        // All-zero bytes are a valid T (`Zeroable`): the values are initialised.
        ON_DEMAND.fetch_add(layout.size() as u64, Ordering::Relaxed);
        Region { ptr, len, from: None, demand: true, mapped: false }
    }

    /// True when the values are on the backing (hugepages).
    pub fn on_backing(&self) -> bool {
        self.from.is_some()
    }
}

impl<T: Copy> Deref for Region<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: ptr points to `len` initialised T's (or is dangling with
        // len 0 or a zero-sized T), owned by self.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> DerefMut for Region<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in deref; &mut self is the only access.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> Drop for Region<T> {
    fn drop(&mut self) {
        let Ok(layout) = Layout::array::<T>(self.len) else { return };
        if layout.size() == 0 {
            return;
        }
        let counter = if self.demand {
            &ON_DEMAND
        } else if self.from.is_some() {
            &ON_BACKING
        } else {
            &ON_HEAP
        };
        counter.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        if self.demand || self.mapped {
            unmap(self.ptr.as_ptr().cast(), layout, self.mapped);
            return;
        }
        match self.from {
            // SAFETY: allocated by this backing in `filled`, freed once here.
            Some(b) => unsafe { b.free(self.ptr.as_ptr().cast()) },
            // SAFETY: allocated by the global allocator with this layout.
            None => unsafe { std::alloc::dealloc(self.ptr.as_ptr().cast(), layout) },
        }
    }
}

impl<T: Copy + core::fmt::Debug> core::fmt::Debug for Region<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Region").field("len", &self.len).field("on_backing", &self.from.is_some()).finish()
    }
}

// SAFETY: integers.
unsafe impl Zeroable for u32 {}

/// Zeroed memory for `layout` committed on first write: an anonymous
/// mapping (pages of zeroes on demand), small pages only; null on failure.
#[cfg(all(target_os = "linux", not(miri)))]
fn demand_map(layout: Layout) -> *mut u8 {
    // SAFETY: a fresh private anonymous mapping, no address asked for; the
    // result is checked.
    let p = unsafe { libc::mmap(core::ptr::null_mut(), layout.size(), libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE, -1, 0) };
    if p == libc::MAP_FAILED {
        return core::ptr::null_mut();
    }
    // A hint; its failure changes nothing but the page size.
    // SAFETY: the range is the mapping just made.
    let _ = unsafe { libc::madvise(p, layout.size(), libc::MADV_NOHUGEPAGE) };
    p.cast()
}

/// A transparent huge page (x86-64's 2 MiB).
const HUGE_PAGE: usize = 2 << 20;

/// `layout`'s size in whole huge pages.
#[cfg_attr(not(all(target_os = "linux", not(miri))), allow(dead_code))]
fn huge_size(layout: Layout) -> usize {
    layout.size().div_ceil(HUGE_PAGE) * HUGE_PAGE
}

/// Memory for a big table when there are no hugepages to take it from
/// (`--no-huge`, the benchmarks, a backing out of room): an anonymous
/// mapping the kernel may back with transparent huge pages
/// (`MADV_HUGEPAGE`: one TLB entry per 2 MiB instead of per 4 KiB, for a
/// table read at random; with `enabled=madvise`, Debian's default, only
/// such mappings get them). Null on failure (the allocator then serves).
///
/// Mapped one huge page larger and trimmed to a 2 MiB boundary: kernels
/// before 6.7 (Debian 12's 6.1) do not align anonymous mappings so, and the
/// partial huge pages at both ends would be small ones.
#[cfg(all(target_os = "linux", not(miri)))]
fn huge_map(layout: Layout) -> *mut u8 {
    if layout.align() > HUGE_PAGE {
        return core::ptr::null_mut();
    }
    let size = huge_size(layout);
    let Some(span) = size.checked_add(HUGE_PAGE) else { return core::ptr::null_mut() };
    // SAFETY: a fresh private anonymous mapping, no address asked for; the
    // result is checked.
    let p = unsafe { libc::mmap(core::ptr::null_mut(), span, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) };
    if p == libc::MAP_FAILED {
        return core::ptr::null_mut();
    }
    let base = p as usize;
    let start = base.next_multiple_of(HUGE_PAGE);
    let (head, tail) = (start - base, base + span - (start + size));
    // SAFETY: both ranges lie inside the mapping just made, outside
    // [start, start + size), page-aligned (mmap's result and `start` are,
    // and so is `size`); an empty one is skipped.
    unsafe {
        if head > 0 {
            libc::munmap(p, head);
        }
        if tail > 0 {
            libc::munmap((start + size) as *mut libc::c_void, tail);
        }
    }
    let p = start as *mut libc::c_void;
    // A hint; its failure changes nothing but the page size.
    // SAFETY: the range is what is left of the mapping just made.
    let _ = unsafe { libc::madvise(p, size, libc::MADV_HUGEPAGE) };
    p.cast()
}

/// Frees what `demand_map` (`huge` false) or `huge_map` gave for `layout`.
#[cfg(all(target_os = "linux", not(miri)))]
fn unmap(p: *mut u8, layout: Layout, huge: bool) {
    let size = if huge { huge_size(layout) } else { layout.size() };
    // SAFETY: `p` and `size` are those of the mapping `demand_map` or
    // `huge_map` made, unmapped once (by the Region's drop).
    let _ = unsafe { libc::munmap(p.cast(), size) };
}

#[cfg(not(all(target_os = "linux", not(miri))))]
fn huge_map(_layout: Layout) -> *mut u8 {
    core::ptr::null_mut()
}

#[cfg(not(all(target_os = "linux", not(miri))))]
fn demand_map(layout: Layout) -> *mut u8 {
    // SAFETY: the layout's size is not zero (checked by the caller).
    unsafe { std::alloc::alloc_zeroed(layout) }
}

#[cfg(not(all(target_os = "linux", not(miri))))]
fn unmap(p: *mut u8, layout: Layout, _huge: bool) {
    // SAFETY: only `demand_map` gives memory here (`huge_map` gives none),
    // from the global allocator with this layout; freed once.
    unsafe { std::alloc::dealloc(p, layout) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table of 2 MiB or more off the backing is a mapping advised
    /// for transparent huge pages (the kernel decides whether it gets
    /// them), values set, and freed.
    #[test]
    #[cfg(target_os = "linux")]
    #[cfg_attr(miri, ignore = "mmap")]
    fn a_big_region_off_the_backing_is_mapped_for_huge_pages() {
        transparent_huge(true);
        let mut r = Region::filled((3 << 20) / 8 + 1, 5u64);
        assert!(r.mapped && !r.on_backing());
        assert_eq!(r.as_ptr() as usize % HUGE_PAGE, 0, "on a huge page boundary");
        assert!(r.iter().all(|&v| v == 5));
        let last = r.len() - 1;
        r[last] = 6;
        assert_eq!(r.iter().copied().sum::<u64>(), 5 * last as u64 + 6);
        drop(r);
        let small = Region::filled(1000, 1u8);
        assert!(!small.mapped);
    }

    #[test]
    fn a_region_holds_its_values_and_frees_them() {
        let mut r = Region::filled(1000, 7u32);
        assert_eq!(r.len(), 1000);
        assert!(r.iter().all(|&v| v == 7));
        r[999] = 8;
        assert_eq!(r.iter().copied().sum::<u32>(), 7 * 999 + 8);
        let e = Region::<u64>::empty();
        assert!(e.is_empty());
        let z = Region::filled(3, ());
        assert_eq!(z.len(), 3);
        let none = Region::filled(0, 1u8);
        assert!(none.is_empty() && !none.on_backing());
        let mut z = Region::<u32>::demand_zeroed(1 << 16);
        assert!(z.iter().all(|&v| v == 0) && !z.on_backing());
        z[12345] = 9;
        // (Other tests' tables come and go meanwhile: this one's bytes
        // are in the count while it lives.)
        assert!(demand_reserved() >= 4 << 16);
        drop(z);
    }

    #[test]
    fn tables_go_to_the_node_asked_for_on_this_thread_only() {
        assert_eq!(NODE.with(Cell::get), None);
        let inner = on_node(1, || NODE.with(Cell::get));
        assert_eq!(inner, Some(1));
        assert_eq!(NODE.with(Cell::get), None);
    }
}
