//! Owned packet buffers.

use dpdk_sys::rte_mbuf;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The offset in `rte_mbuf` of the punt stamp (a dynamic field of 8
/// bytes), plus one; 0 while none is registered.
static PUNT_STAMP: AtomicUsize = AtomicUsize::new(0);

/// Whether punted frames carry their worker's stamp (`Mbuf::punt_stamp`).
pub fn punt_stamp_registered() -> bool {
    PUNT_STAMP.load(Ordering::Relaxed) != 0
}

/// Registers the punt stamp's dynamic field (after EAL init). Without one
/// (the dynamic-field area full) frames go unstamped and the control
/// lcore takes their time as it dequeues them.
pub(crate) fn register_punt_stamp() {
    if punt_stamp_registered() {
        return;
    }
    // SAFETY: registration of an application field, after EAL init.
    let off = unsafe { dpdk_sys::fw_punt_stamp_field() };
    if let Ok(off) = usize::try_from(off) {
        PUNT_STAMP.store(off + 1, Ordering::Relaxed);
    }
}

/// One `rte_mbuf` owned by Rust: freed back to its pool when dropped.
///
/// `repr(transparent)` over a non-null pointer: `Option<Mbuf>` has the
/// layout of `*mut rte_mbuf`, so bursts hand arrays straight to the PMD.
#[repr(transparent)]
#[derive(Debug)]
pub struct Mbuf(NonNull<rte_mbuf>);

// SAFETY: an mbuf is owned by exactly one Mbuf at a time; DPDK mbufs may be
// freed on any thread (mempools are thread-safe).
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    /// `m` must be a valid mbuf no one else will free.
    #[inline(always)]
    pub unsafe fn from_raw(m: NonNull<rte_mbuf>) -> Self {
        Self(m)
    }

    /// Gives up ownership.
    #[inline(always)]
    pub fn into_raw(self) -> NonNull<rte_mbuf> {
        let p = self.0;
        std::mem::forget(self);
        p
    }

    #[inline(always)]
    pub fn as_ptr(&self) -> *mut rte_mbuf {
        self.0.as_ptr()
    }

    #[inline(always)]
    fn raw(&self) -> &rte_mbuf {
        // SAFETY: we own a valid mbuf.
        unsafe { self.0.as_ref() }
    }

    /// Bytes in the first segment.
    #[inline(always)]
    pub fn data_len(&self) -> usize {
        self.raw().data_len as usize
    }

    /// Bytes in the whole chain.
    #[inline(always)]
    pub fn pkt_len(&self) -> usize {
        self.raw().pkt_len as usize
    }

    /// The ethdev port it was received on.
    #[inline(always)]
    pub fn port(&self) -> u16 {
        self.raw().port
    }

    /// Stamps the frame with `tsc`, the time a worker received it, for
    /// the control lcore it is punted to (`punt_stamp`).
    #[inline(always)]
    pub fn stamp_punt(&mut self, tsc: u64) {
        let Some(off) = PUNT_STAMP.load(Ordering::Relaxed).checked_sub(1) else { return };
        // SAFETY: `off` is a registered dynamic field of 8 bytes, aligned
        // to 8, inside the mbuf we own exclusively.
        unsafe { self.0.as_ptr().cast::<u8>().add(off).cast::<u64>().write(tsc) };
    }

    /// The TSC a worker stamped the frame with when it punted it.
    #[inline(always)]
    pub fn punt_stamp(&self) -> Option<u64> {
        let off = PUNT_STAMP.load(Ordering::Relaxed).checked_sub(1)?;
        // SAFETY: as in `stamp_punt`; read-only.
        Some(unsafe { self.0.as_ptr().cast::<u8>().add(off).cast::<u64>().read() })
    }

    #[inline(always)]
    pub fn set_port(&mut self, port: u16) {
        // SAFETY: we own the mbuf exclusively.
        unsafe { (*self.0.as_ptr()).port = port };
    }

    /// The first segment's data.
    #[inline(always)]
    pub fn data(&self) -> &[u8] {
        let m = self.raw();
        // SAFETY: buf_addr + data_off points at data_len initialised bytes
        // inside the mbuf's buffer, which we own.
        unsafe {
            std::slice::from_raw_parts((m.buf_addr as *const u8).add(m.data_off as usize), m.data_len as usize)
        }
    }

    #[inline(always)]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let m = self.raw();
        let (addr, off, len) = (m.buf_addr as *mut u8, m.data_off as usize, m.data_len as usize);
        // SAFETY: as in `data`, and &mut self gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(addr.add(off), len) }
    }

    /// Grows the data at the tail by `len` bytes; returns them, or `None`
    /// when the buffer has no room.
    pub fn append(&mut self, len: u16) -> Option<&mut [u8]> {
        // SAFETY: valid owned mbuf; DPDK checks the tailroom.
        let p = unsafe { dpdk_sys::fw_pktmbuf_append(self.0.as_ptr(), len) };
        // SAFETY: on success p points at `len` bytes inside our buffer.
        (!p.is_null()).then(|| unsafe { std::slice::from_raw_parts_mut(p as *mut u8, len as usize) })
    }

    /// Grows the data at the head by `len` bytes (into the headroom).
    pub fn prepend(&mut self, len: u16) -> Option<&mut [u8]> {
        // SAFETY: valid owned mbuf; DPDK checks the headroom.
        let p = unsafe { dpdk_sys::fw_pktmbuf_prepend(self.0.as_ptr(), len) };
        // SAFETY: on success p points at `len` bytes inside our buffer.
        (!p.is_null()).then(|| unsafe { std::slice::from_raw_parts_mut(p as *mut u8, len as usize) })
    }

    /// Removes `len` bytes from the head. False if there are fewer.
    pub fn adj(&mut self, len: u16) -> bool {
        // SAFETY: valid owned mbuf; DPDK checks the length.
        !unsafe { dpdk_sys::fw_pktmbuf_adj(self.0.as_ptr(), len) }.is_null()
    }

    /// Removes `len` bytes from the tail. False if there are fewer.
    pub fn trim(&mut self, len: u16) -> bool {
        // SAFETY: valid owned mbuf; DPDK checks the length.
        unsafe { dpdk_sys::fw_pktmbuf_trim(self.0.as_ptr(), len) == 0 }
    }

    /// Resizes a single-segment packet to `len` bytes: grows the tail into
    /// the tailroom (`rte_pktmbuf_append`; the new bytes hold whatever the
    /// buffer held) or trims it (`rte_pktmbuf_trim`). False, the mbuf
    /// unchanged, for a chain of segments or when the buffer has no room.
    pub fn set_len(&mut self, len: usize) -> bool {
        let m = self.raw();
        if m.nb_segs != 1 {
            return false;
        }
        let cur = m.data_len as usize;
        match len.cmp(&cur) {
            std::cmp::Ordering::Equal => true,
            std::cmp::Ordering::Greater => u16::try_from(len - cur).is_ok_and(|n| self.append(n).is_some()),
            std::cmp::Ordering::Less => u16::try_from(cur - len).is_ok_and(|n| self.trim(n)),
        }
    }

    /// Copies `bytes` in as the whole packet; false if it does not fit.
    pub fn set_data(&mut self, bytes: &[u8]) -> bool {
        let cur = self.data_len();
        if cur > 0 && !self.trim(cur as u16) {
            return false;
        }
        let Ok(len) = u16::try_from(bytes.len()) else { return false };
        match self.append(len) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                true
            }
            None => false,
        }
    }
}

impl Drop for Mbuf {
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: we own the mbuf; it is freed once, here.
        unsafe { dpdk_sys::fw_pktmbuf_free(self.0.as_ptr()) }
    }
}

impl furiwake_dataplane::Packet for Mbuf {
    #[inline(always)]
    fn data(&self) -> &[u8] {
        Mbuf::data(self)
    }

    #[inline(always)]
    fn data_mut(&mut self) -> &mut [u8] {
        Mbuf::data_mut(self)
    }

    #[inline(always)]
    fn port(&self) -> u16 {
        Mbuf::port(self)
    }

    #[inline]
    fn set_len(&mut self, len: usize) -> bool {
        Mbuf::set_len(self, len)
    }

    #[inline]
    fn prepend(&mut self, n: usize) -> bool {
        u16::try_from(n).is_ok_and(|n| Mbuf::prepend(self, n).is_some())
    }

    #[inline]
    fn adj(&mut self, n: usize) -> bool {
        u16::try_from(n).is_ok_and(|n| Mbuf::adj(self, n))
    }
}

#[cfg(test)]
mod tests {
    use crate::{Eal, Mempool};

    /// An EAL of this test binary (`--no-huge`, no devices); `None`, said
    /// loudly, where DPDK cannot start (except under `CI=true`), as in
    /// `tests/dpdk.rs`.
    fn eal() -> Option<&'static Eal> {
        let args = [
            "--no-huge", "-m", "64", "--no-pci", "-l", "0", "--file-prefix", "fw-platform-unit", "--no-telemetry",
            "--log-level", "lib.eal:error",
        ];
        match Eal::init(&args) {
            Ok(eal) => Some(eal),
            Err(e) if std::env::var("CI").as_deref() == Ok("true") => panic!("EAL init failed under CI: {e}"),
            Err(e) => {
                eprintln!("SKIPPED (not CI): cannot initialise DPDK EAL here: {e}");
                None
            }
        }
    }

    #[test]
    fn set_len_grows_and_trims_single_segments_only() {
        let Some(_) = eal() else { return };
        let pool = Mempool::new("t-set-len", 63, 0, 2176, -1).unwrap();
        let mut m = pool.alloc().unwrap();
        let bytes: Vec<u8> = (0..60u8).collect();
        assert!(m.set_data(&bytes));
        assert!(m.set_len(70), "grows into the tailroom");
        assert_eq!((m.data_len(), m.pkt_len()), (70, 70));
        assert_eq!(&m.data()[..60], &bytes[..], "existing bytes kept");
        assert!(m.set_len(54), "trims");
        assert_eq!((m.data_len(), m.pkt_len()), (54, 54));
        assert_eq!(m.data(), &bytes[..54]);
        assert!(m.set_len(54), "same length");
        // SAFETY: a valid mbuf of ours; the read does not outlive it.
        let room = unsafe { dpdk_sys::fw_pktmbuf_tailroom(m.as_ptr()) } as usize;
        assert!(!m.set_len(54 + room + 1), "no room");
        assert!(!m.set_len(usize::from(u16::MAX) + 100), "beyond any mbuf");
        assert_eq!(m.data_len(), 54, "unchanged");
        assert!(m.set_len(54 + room), "all of the tailroom");
        assert!(m.set_len(0));
        assert_eq!(m.data_len(), 0);

        // A chain of two segments: refused, unchanged.
        let mut tail = pool.alloc().unwrap();
        assert!(tail.set_data(&bytes[..10]));
        assert!(m.set_data(&bytes[..20]));
        let tail = tail.into_raw();
        // SAFETY: both mbufs are valid and ours; the head takes ownership of
        // the tail (freed with it, as a chain), like rte_pktmbuf_chain.
        unsafe {
            let head = m.as_ptr();
            (*head).next = tail.as_ptr();
            (*head).nb_segs = 2;
            (*head).pkt_len += 10;
        }
        assert!(!m.set_len(10));
        assert!(!m.set_len(25));
        assert_eq!((m.data_len(), m.pkt_len()), (20, 30));
        drop(m);
        assert_eq!(pool.in_use(), 0, "the chain was freed whole");
    }

    /// The punt stamp lives in its own registered field: the frame's
    /// bytes and the mbuf's own fields are untouched by it.
    #[test]
    fn a_punt_stamp_is_kept_beside_the_frame() {
        let Some(_) = eal() else { return };
        let pool = Mempool::new("t-punt-stamp", 63, 0, 2176, -1).unwrap();
        let mut m = pool.alloc().unwrap();
        let bytes: Vec<u8> = (0..64u8).collect();
        assert!(m.set_data(&bytes));
        m.set_port(3);
        m.stamp_punt(0x1234_5678_9abc_def0);
        assert_eq!(m.punt_stamp(), Some(0x1234_5678_9abc_def0), "registered at EAL init and read back");
        assert_eq!((m.data(), m.port(), m.pkt_len()), (&bytes[..], 3, 64));
        m.stamp_punt(7);
        assert_eq!(m.punt_stamp(), Some(7));
    }

    #[test]
    fn set_len_through_the_packet_trait() {
        use furiwake_dataplane::Packet;
        let Some(_) = eal() else { return };
        let pool = Mempool::new("t-set-len-trait", 63, 0, 2176, -1).unwrap();
        let mut m = pool.alloc().unwrap();
        assert!(m.set_data(&[1, 2, 3]));
        assert!(Packet::set_len(&mut m, 60));
        assert_eq!(Packet::data(&m).len(), 60);
        assert_eq!(&Packet::data(&m)[..3], &[1, 2, 3]);
        assert!(Packet::set_len(&mut m, 2));
        assert_eq!(Packet::data(&m), &[1, 2]);
    }
}
