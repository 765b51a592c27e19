//! Fuzzes the 9P2000.L file server: the input is a sequence of size-prefixed T-messages fed
//! to one `Server` on a freshly laid share (after an automatic Tversion and Tattach of fid 0).
//! Every reply must be well formed, nothing may panic, and the canary directory next to the
//! share must be unchanged afterwards.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::with_process_sandbox(|sandbox| harness::fuzz_server(sandbox, data))
});
