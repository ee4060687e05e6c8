//! The configuration parser under libFuzzer (`furiwake::fuzz::config`:
//! no panic, refusals placed, accepted configs render stably).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = furiwake::fuzz::config(data) {
        panic!("broken invariant: {e}");
    }
});
