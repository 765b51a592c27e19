//! `VCOMPARE_VMM_TRACE=1`: per-step timings of the VMM setup on stderr, to find what costs
//! time between the VMM's launch and the guest's first instruction (issue #4's ≤ 5 ms target).
//! Off by default; when off, a step is one branch.

use std::time::Instant;

/// Environment variable that turns the trace on (read by
/// [`crate::config::DebugOptions::from_env`]).
pub use crate::config::TRACE_ENV;

/// A stopwatch that prints the time since its previous step (and since its start).
pub struct Trace {
    on: bool,
    label: &'static str,
    start: Instant,
    last: Instant,
}

impl Trace {
    /// A trace named `label` (e.g. the thread it runs on) counting from `start` (e.g. the
    /// VMM's launch), printing only if `on` ([`TRACE_ENV`] is set).
    pub fn new(label: &'static str, start: Instant, on: bool) -> Self {
        Trace {
            on,
            label,
            start,
            last: Instant::now(),
        }
    }

    /// Whether steps are printed.
    pub fn on(&self) -> bool {
        self.on
    }

    /// Prints "vmm[label]: what: +step ms (total ms)".
    pub fn step(&mut self, what: &str) {
        if self.on {
            let now = Instant::now();
            eprintln!(
                "vmm[{}]: {what}: +{:.3} ms (at {:.3} ms)",
                self.label,
                (now - self.last).as_secs_f64() * 1e3,
                (now - self.start).as_secs_f64() * 1e3
            );
            self.last = now;
        }
    }
}
