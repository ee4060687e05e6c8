//! Any bytes as a received frame, through every wire view and rewrite
//! (`furiwake_dataplane::wire::fuzz_parse`). Run from dataplane/fuzz:
//!
//! ```text
//! RUSTC_BOOTSTRAP=1 cargo fuzz run parse_frame
//! ```
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // fuzz_parse rewrites in place; the input is libFuzzer's, so copy. A
    // fixed stack buffer keeps the allocator out of the loop: frames past
    // a jumbo frame's 9216 bytes are cut.
    let mut frame = [0u8; 9216];
    let n = data.len().min(frame.len());
    frame[..n].copy_from_slice(&data[..n]);
    furiwake_dataplane::wire::fuzz_parse(&mut frame[..n]);
});
