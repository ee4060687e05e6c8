//! `rte_ring` carrying owned values (mbufs, or boxed messages).
//!
//! `Ring::new` makes a multi-producer/multi-consumer ring that any thread
//! may use through `&Ring`. `spsc` makes a single-producer/single-consumer
//! ring (cheaper: no CAS) and returns its two ends, each usable by one
//! thread at a time, so the SP/SC contract is kept by the types.

use crate::error::{Error, Result};
use crate::mbuf::Mbuf;
use dpdk_sys as sys;
use furiwake_dataplane::{Burst, BURST_SIZE};
use std::ffi::{c_void, CString};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;

/// A value that travels through a ring as one pointer.
pub trait RingItem: Send + Sized {
    fn into_ptr(self) -> *mut c_void;
    /// # Safety
    /// `p` must come from `into_ptr` of the same type, and be used once.
    unsafe fn from_ptr(p: *mut c_void) -> Self;
}

impl RingItem for Mbuf {
    fn into_ptr(self) -> *mut c_void {
        self.into_raw().as_ptr() as *mut c_void
    }
    unsafe fn from_ptr(p: *mut c_void) -> Self {
        // SAFETY: the caller passes a pointer made by into_ptr, non-null.
        unsafe { Mbuf::from_raw(NonNull::new_unchecked(p as *mut sys::rte_mbuf)) }
    }
}

impl<T: Send> RingItem for Box<T> {
    fn into_ptr(self) -> *mut c_void {
        Box::into_raw(self) as *mut c_void
    }
    unsafe fn from_ptr(p: *mut c_void) -> Self {
        // SAFETY: the caller passes a pointer made by Box::into_raw.
        unsafe { Box::from_raw(p as *mut T) }
    }
}

#[derive(Debug)]
pub struct Ring<T: RingItem> {
    raw: NonNull<sys::rte_ring>,
    _items: PhantomData<T>,
}

// SAFETY: rte_ring is a concurrent queue; items are Send. Rings reachable
// through `&Ring` are MP/MC; SP/SC ones are only reachable through one
// Producer and one Consumer.
unsafe impl<T: RingItem> Send for Ring<T> {}
// SAFETY: see Send.
unsafe impl<T: RingItem> Sync for Ring<T> {}

impl<T: RingItem> Ring<T> {
    /// A multi-producer/multi-consumer ring holding at least `count` items.
    pub fn new(name: &str, count: u32) -> Result<Arc<Self>> {
        Self::create(name, count, 0).map(Arc::new)
    }

    fn create(name: &str, count: u32, flags: u32) -> Result<Self> {
        let cname = CString::new(name).map_err(|_| Error::Usage(format!("ring name {name:?} holds a NUL byte")))?;
        // SAFETY: valid C string; EXACT_SZ makes `count` usable slots.
        let raw = unsafe { sys::rte_ring_create(cname.as_ptr(), count, -1, flags | sys::RING_F_EXACT_SZ) };
        let raw = NonNull::new(raw).ok_or_else(|| Error::last("rte_ring_create"))?;
        Ok(Self { raw, _items: PhantomData })
    }

    pub fn as_ptr(&self) -> *mut sys::rte_ring {
        self.raw.as_ptr()
    }

    pub fn len(&self) -> usize {
        // SAFETY: valid ring.
        unsafe { sys::fw_ring_count(self.raw.as_ptr()) as usize }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Enqueues one item, or gives it back when the ring is full.
    pub fn enqueue(&self, item: T) -> std::result::Result<(), T> {
        let p = item.into_ptr();
        // SAFETY: one valid pointer; ownership passes to the ring on success.
        let n = unsafe { sys::fw_ring_enqueue_burst(self.raw.as_ptr(), &p, 1, std::ptr::null_mut()) };
        if n == 1 {
            Ok(())
        } else {
            // SAFETY: the ring did not take p; it is still ours.
            Err(unsafe { T::from_ptr(p) })
        }
    }

    pub fn dequeue(&self) -> Option<T> {
        let mut p: *mut c_void = std::ptr::null_mut();
        // SAFETY: room for one pointer.
        let n = unsafe { sys::fw_ring_dequeue_burst(self.raw.as_ptr(), &mut p, 1, std::ptr::null_mut()) };
        // SAFETY: a dequeued pointer was enqueued by into_ptr of T.
        (n == 1).then(|| unsafe { T::from_ptr(p) })
    }

    /// Moves as many packets of `burst` as fit; the rest stay in it.
    pub fn enqueue_burst(&self, burst: &mut Burst<T>) -> usize {
        let mut ptrs = [std::ptr::null_mut::<c_void>(); BURST_SIZE];
        let n = burst.len();
        for (slot, item) in ptrs.iter_mut().zip(burst.drain()) {
            *slot = item.into_ptr();
        }
        // SAFETY: ptrs[..n] are valid items; the ring takes the first `sent`.
        let sent = unsafe { sys::fw_ring_enqueue_burst(self.raw.as_ptr(), ptrs.as_ptr(), n as u32, std::ptr::null_mut()) } as usize;
        for &p in &ptrs[sent..n] {
            // SAFETY: not taken by the ring: still ours, and the burst has room.
            let _ = burst.push(unsafe { T::from_ptr(p) });
        }
        sent
    }

    /// Fills an empty `burst` with up to a burst of items.
    pub fn dequeue_burst(&self, burst: &mut Burst<T>) -> usize {
        let mut ptrs = [std::ptr::null_mut::<c_void>(); BURST_SIZE];
        let room = BURST_SIZE - burst.len();
        // SAFETY: ptrs has room for `room` pointers.
        let n = unsafe { sys::fw_ring_dequeue_burst(self.raw.as_ptr(), ptrs.as_mut_ptr(), room as u32, std::ptr::null_mut()) } as usize;
        for &p in &ptrs[..n] {
            // SAFETY: dequeued pointers were enqueued by into_ptr of T; the
            // burst has room for them.
            let _ = burst.push(unsafe { T::from_ptr(p) });
        }
        n
    }
}

impl<T: RingItem> Drop for Ring<T> {
    fn drop(&mut self) {
        while let Some(item) = self.dequeue() {
            drop(item);
        }
        // SAFETY: created by us, freed once; no other handle remains.
        unsafe { sys::rte_ring_free(self.raw.as_ptr()) }
    }
}

/// The sending end of an SPSC ring.
#[derive(Debug)]
pub struct Producer<T: RingItem>(Arc<Ring<T>>);
/// The receiving end of an SPSC ring.
#[derive(Debug)]
pub struct Consumer<T: RingItem>(Arc<Ring<T>>);

/// A single-producer/single-consumer ring of at least `count` items.
pub fn spsc<T: RingItem>(name: &str, count: u32) -> Result<(Producer<T>, Consumer<T>)> {
    let ring = Arc::new(Ring::create(name, count, sys::RING_F_SP_ENQ | sys::RING_F_SC_DEQ)?);
    Ok((Producer(Arc::clone(&ring)), Consumer(ring)))
}

impl<T: RingItem> Producer<T> {
    #[inline]
    pub fn enqueue(&mut self, item: T) -> std::result::Result<(), T> {
        self.0.enqueue(item)
    }
    pub fn enqueue_burst(&mut self, burst: &mut Burst<T>) -> usize {
        self.0.enqueue_burst(burst)
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T: RingItem> Consumer<T> {
    #[inline]
    pub fn dequeue(&mut self) -> Option<T> {
        self.0.dequeue()
    }
    pub fn dequeue_burst(&mut self, burst: &mut Burst<T>) -> usize {
        self.0.dequeue_burst(burst)
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
