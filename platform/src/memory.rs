//! DPDK's heap (`rte_malloc`, on the EAL's hugepages) as the backing of
//! the dataplane's big tables (`furiwake_dataplane::region`).

use dpdk_sys as sys;
use furiwake_dataplane::region::Backing;

/// `rte_malloc_socket` on the node asked for (else the calling lcore's,
/// else any), `rte_free`.
pub struct Hugepages;

/// The one instance `set_backing` takes.
pub static HUGEPAGES: Hugepages = Hugepages;

// SAFETY: rte_malloc_socket returns NULL or a block of at least `bytes`
// bytes aligned to `align` (a power of two), owned by the caller until
// rte_free, which is thread-safe (DPDK's heap locks). The block lives
// until `rte_eal_cleanup` unmaps DPDK's memory: every table is in a
// worker, which its lcore drops before the runtime's `release` cleans
// up (`Runtime::stop_workers` then `release`).
unsafe impl Backing for Hugepages {
    fn alloc(&self, bytes: usize, align: usize, node: Option<u32>) -> *mut u8 {
        // SAFETY: rte_socket_id only reads the calling thread's lcore state.
        let node = node.map_or_else(|| unsafe { sys::rte_socket_id() } as i32, |n| n as i32);
        // SOCKET_ID_ANY (a macro bindgen does not see) is -1.
        for socket in [node, -1] {
            // SAFETY: a NULL type is allowed; size and alignment (a power
            // of two, from a Layout) are checked by DPDK, which returns
            // NULL when it cannot serve them.
            let p = unsafe { sys::rte_malloc_socket(std::ptr::null(), bytes, align as u32, socket) };
            if !p.is_null() {
                return p.cast();
            }
        }
        std::ptr::null_mut()
    }

    unsafe fn free(&self, p: *mut u8) {
        // SAFETY: the caller passes what rte_malloc_socket returned, once.
        unsafe { sys::rte_free(p.cast()) }
    }
}

/// The NUMA node of `lcore` (0 when DPDK does not know).
pub fn lcore_node(lcore: u32) -> u32 {
    if lcore >= sys::RTE_MAX_LCORE {
        return 0;
    }
    // SAFETY: a plain lookup in the EAL's lcore table, which DPDK does not
    // bounds-check: `lcore` is below RTE_MAX_LCORE (checked above).
    let n = unsafe { sys::rte_lcore_to_socket_id(lcore) };
    if n == u32::MAX { 0 } else { n }
}
