//! Fuzzes the 9P2000.L message decoder: `split_header` and `decode` on arbitrary bytes must
//! return a result, never panic or read out of bounds.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::fuzz_wire(data));
