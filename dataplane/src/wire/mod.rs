//! Wire formats as typed views over byte buffers, after smoltcp's `wire`:
//! `View<T: AsRef<[u8]>>` with a private `field` module of byte ranges,
//! getters for every field, setters where `T: AsMut<[u8]>`, and
//! `new_checked` wherever untrusted bytes enter.

pub mod arp;
pub mod ethernet;

pub use arp::{ArpOperation, ArpPacket};
pub use ethernet::{EtherType, EthernetAddress, EthernetFrame};

/// Why a view refused a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than the fixed header.
    Truncated,
    /// A field holds a value this view does not handle.
    Unsupported,
}

pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub(crate) fn set_be16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}
