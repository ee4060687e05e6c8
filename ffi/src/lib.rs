//! `dpdk-sys`: generated declarations for the system DPDK (Debian's 22.11
//! shared build) and the `fw_*` shim that exports DPDK's static-inline
//! fast-path functions as real symbols. Nothing here is safe to call
//! directly; `furiwake-platform` is the only crate that uses it.
#![allow(non_upper_case_globals, non_camel_case_types, non_snake_case)]
#![allow(dead_code, improper_ctypes, clippy::all)]
// bindgen's output (bitfield accessors) has unsafe blocks without safety
// comments; nothing else is in this crate.
#![allow(clippy::undocumented_unsafe_blocks, reason = "generated code")]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
