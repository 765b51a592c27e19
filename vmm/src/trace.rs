//! Per-step timings of the VMM setup, as `tracing` debug events (target
//! `vcompare_vmm::trace`; `RUST_LOG=vcompare_vmm=debug` or the CLI's `--debug` shows them),
//! to find what costs time between the VMM's launch and the guest's first instruction
//! (issue #4's ≤ 5 ms target). Off by default; when off, a step is one branch.

use std::time::{Duration, Instant};

/// A stopwatch that emits the time since its previous step (and since its start).
pub struct Trace {
    on: bool,
    label: &'static str,
    start: Instant,
    last: Instant,
}

impl Trace {
    /// A trace named `label` (e.g. the thread it runs on) counting from `start` (e.g. the
    /// VMM's launch), emitting only if `on` (see [`crate::config::DebugOptions::trace`]).
    pub fn new(label: &'static str, start: Instant, on: bool) -> Self {
        Trace {
            on,
            label,
            start,
            last: Instant::now(),
        }
    }

    /// Whether steps are emitted.
    pub fn on(&self) -> bool {
        self.on
    }

    /// Emits a debug event "vmm setup step" with the fields `thread` (the label), `step`
    /// (`what`), `step_ms` (since the previous step) and `at_ms` (since the start).
    pub fn step(&mut self, what: &str) {
        if self.on {
            let now = Instant::now();
            tracing::debug!(
                thread = self.label,
                step = what,
                step_ms = ms(now - self.last),
                at_ms = ms(now - self.start),
                "vmm setup step"
            );
            self.last = now;
        }
    }
}

/// `d` in milliseconds, to the microsecond (readable fields).
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Whether the installed `tracing` subscriber wants the setup steps (DEBUG for
/// `vcompare_vmm::trace`).
pub fn wanted() -> bool {
    tracing::enabled!(target: "vcompare_vmm::trace", tracing::Level::DEBUG)
}
