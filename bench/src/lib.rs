//! vcompare's benchmark harness: it drives the real `vcompare` binary (and peers such as crun,
//! runc and QEMU) as a user would, keeps every raw sample in a `results.json`, and renders
//! `report.md` with charts. Statistics and rendering are pure functions over [`results::Results`],
//! so a results file from any machine can be re-rendered anywhere.

pub mod error;
pub mod harness;
pub mod peers;
pub mod report;
pub mod results;
pub mod stats;
pub mod suites;

pub use error::{BenchError, Result};
pub use results::Results;
