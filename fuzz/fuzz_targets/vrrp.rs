//! VRRP adverts under libFuzzer (`furiwake::fuzz::vrrp`: the frame checks
//! and the wire parser never panic, accepted adverts read back the same,
//! the instances' checks and state machine never panic).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = furiwake::fuzz::vrrp(data) {
        panic!("broken invariant: {e}");
    }
});
