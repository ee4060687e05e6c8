//! Packet-buffer pools (`rte_pktmbuf_pool_create`). Backed by hugepages or,
//! under `--no-huge`, by ordinary memory; the API is the same.

use crate::error::{Error, Result};
use crate::mbuf::Mbuf;
use dpdk_sys::rte_mempool;
use furiwake_dataplane::{Burst, BURST_SIZE};
use std::ffi::CString;
use std::ptr::NonNull;

#[derive(Debug)]
pub struct Mempool {
    raw: NonNull<rte_mempool>,
    name: String,
}

// SAFETY: rte_mempool operations are thread-safe (per-lcore caches plus an
// atomic backing ring); the pool is freed only on drop, when no Mbuf of it
// may remain in use (callers stop ports first).
unsafe impl Send for Mempool {}
// SAFETY: see Send.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Creates a pool of `count` mbufs with `data_room` bytes each (use
    /// `RTE_MBUF_DEFAULT_BUF_SIZE` for standard frames), a per-lcore cache
    /// of `cache` mbufs, on NUMA `socket` (-1: any).
    pub fn new(name: &str, count: u32, cache: u32, data_room: u16, socket: i32) -> Result<Self> {
        let cname = CString::new(name).map_err(|_| Error::Usage(format!("mempool name {name:?} holds a NUL byte")))?;
        // SAFETY: cname is a valid C string; DPDK copies it.
        let raw = unsafe { dpdk_sys::rte_pktmbuf_pool_create(cname.as_ptr(), count, cache, 0, data_room, socket) };
        let raw = NonNull::new(raw).ok_or_else(|| Error::last("rte_pktmbuf_pool_create"))?;
        Ok(Self { raw, name: name.to_string() })
    }

    pub fn as_ptr(&self) -> *mut rte_mempool {
        self.raw.as_ptr()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Mbufs free in the pool (including per-lcore caches).
    pub fn available(&self) -> u32 {
        // SAFETY: valid pool.
        unsafe { dpdk_sys::rte_mempool_avail_count(self.raw.as_ptr()) }
    }

    /// Mbufs currently allocated from the pool.
    pub fn in_use(&self) -> u32 {
        // SAFETY: valid pool.
        unsafe { dpdk_sys::rte_mempool_in_use_count(self.raw.as_ptr()) }
    }

    /// One empty mbuf, or `None` when the pool is exhausted.
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: valid pool; a non-null result is a fresh mbuf we now own.
        NonNull::new(unsafe { dpdk_sys::fw_pktmbuf_alloc(self.raw.as_ptr()) }).map(|m| unsafe { Mbuf::from_raw(m) })
    }

    /// Fills an empty burst with `n` (at most a burst) empty mbufs, all or
    /// nothing.
    pub fn alloc_burst(&self, burst: &mut Burst<Mbuf>, n: usize) -> Result<()> {
        if !burst.is_empty() || n > BURST_SIZE {
            return Err(Error::Usage("alloc_burst needs an empty burst and n <= BURST_SIZE".into()));
        }
        let slots = burst.slots_mut().as_mut_ptr() as *mut *mut dpdk_sys::rte_mbuf;
        // SAFETY: slots has room for BURST_SIZE pointers; Option<Mbuf> is
        // layout-compatible with *mut rte_mbuf; on success all n are filled.
        let ret = unsafe { dpdk_sys::fw_pktmbuf_alloc_bulk(self.raw.as_ptr(), slots, n as u32) };
        if ret != 0 {
            return Err(Error::NoMemory { what: "rte_pktmbuf_alloc_bulk" });
        }
        // SAFETY: the first n slots now hold valid mbufs.
        unsafe { burst.set_len(n) };
        Ok(())
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        // SAFETY: the pool was created by us and is freed once.
        unsafe { dpdk_sys::rte_mempool_free(self.raw.as_ptr()) }
    }
}
