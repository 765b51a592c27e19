//! The one clock every phase timestamp is taken on, so that marks written by the CLI, the
//! container runtime, the VMM process and the benchmark harness can be subtracted.

/// `CLOCK_MONOTONIC` now, in nanoseconds. Unlike `Instant`, the raw value can cross a process
/// boundary (the VMM and the runtime's child report marks to the CLI as numbers).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC cannot fail on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    #[test]
    fn never_goes_back_and_matches_instant_elapsed() {
        let a = super::monotonic_ns();
        let t = std::time::Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = super::monotonic_ns();
        let elapsed = t.elapsed().as_nanos() as u64;
        assert!(b > a);
        // Both read CLOCK_MONOTONIC: the spans agree to well within the sleep.
        assert!(
            (b - a).abs_diff(elapsed) < 10_000_000,
            "{} vs {elapsed}",
            b - a
        );
    }
}
