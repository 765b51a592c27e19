//! The logging facade end to end: `--debug` or `RUST_LOG` turn on the `tracing` debug
//! diagnostics on stderr (the image digest among them); without either, a run prints none.
//! Needs root (a container run; a missing capability is a skip through tests/common/skip.rs).

mod common;

use common::{text, Env};

/// `run --rm --mode container vcompare/probe /bin/probe true` (the built-in default image).
const RUN: [&str; 7] = [
    "run",
    "--rm",
    "--mode",
    "container",
    "vcompare/probe",
    "/bin/probe",
    "true",
];

/// The DEBUG lines of a run's stderr.
fn debug_lines(stderr: &[u8]) -> Vec<String> {
    text(stderr)
        .lines()
        .filter(|l| l.contains(" DEBUG "))
        .map(str::to_string)
        .collect()
}

/// Asserts the run succeeded and logged the resolved image's digest at DEBUG.
fn assert_digest_logged(o: &std::process::Output, how: &str) {
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{how}: {err}");
    let lines = debug_lines(&o.stderr);
    assert!(
        lines.iter().any(|l| l.contains("digest=sha256:")),
        "{how}: no DEBUG line names the image digest:\n{err}"
    );
}

#[test]
fn debug_flag_shows_debug_lines_and_default_shows_none() {
    crate::require_root!();
    let env = Env::new();
    let mut args = vec!["--debug"];
    args.extend(RUN);
    let o = env.cmd(&args).env_remove("RUST_LOG").output().unwrap();
    assert_digest_logged(&o, "--debug");

    let o = env.cmd(&RUN).env_remove("RUST_LOG").output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(
        debug_lines(&o.stderr),
        Vec::<String>::new(),
        "a run without --debug or RUST_LOG must print no DEBUG line"
    );
}

#[test]
fn rust_log_shows_debug_lines_without_the_flag() {
    crate::require_root!();
    let env = Env::new();
    let o = env.cmd(&RUN).env("RUST_LOG", "debug").output().unwrap();
    assert_digest_logged(&o, "RUST_LOG=debug");
}
