//! The console's command parser under libFuzzer
//! (`furiwake::fuzz::console`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = furiwake::fuzz::console(data) {
        panic!("broken invariant: {e}");
    }
});
