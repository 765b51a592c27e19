//! The harness's error type: every failure names the command or file involved, so a broken
//! benchmark run says what to fix instead of producing a silently empty report.

use std::path::PathBuf;

/// Why a benchmark step, a results file or a chart failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Reading or writing a file or directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A program could not be started at all (not installed, not executable).
    #[error("cannot start `{cmd}`: {source}")]
    Spawn {
        /// The command line, for the message.
        cmd: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A program ran but failed; `detail` is the last line of its stderr.
    #[error("`{cmd}` failed ({status}): {detail}")]
    Failed {
        /// The command line, for the message.
        cmd: String,
        /// Exit status as text.
        status: String,
        /// The last non-empty stderr line (or stdout if stderr was empty).
        detail: String,
    },
    /// A program did not finish or reach the expected state in time.
    #[error("`{cmd}` timed out after {secs} s: {detail}")]
    Timeout {
        /// The command line, for the message.
        cmd: String,
        /// How long we waited.
        secs: u64,
        /// What we were waiting for.
        detail: String,
    },
    /// Output was not in the expected form (probe JSON, `vcompare inspect` JSON).
    #[error("unexpected output from {what}: {detail}")]
    Parse {
        /// Which output.
        what: String,
        /// What was wrong.
        detail: String,
    },
    /// A results.json could not be (de)serialised.
    #[error("results JSON {path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The serde error.
        source: serde_json::Error,
    },
    /// A chart could not be drawn (no font, backend error).
    #[error("chart {name}: {detail}")]
    Chart {
        /// The chart's file stem.
        name: String,
        /// What went wrong.
        detail: String,
    },
}

/// Shorthand used across the crate.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;

/// Wraps an io::Error with the path it concerns (for `map_err`).
pub fn io_at(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> BenchError {
    let path = path.into();
    move |source| BenchError::Io { path, source }
}
