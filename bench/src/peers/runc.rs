//! runc (Go, the reference OCI runtime) as a container peer: `runc run -b BUNDLE ID`, which
//! creates, starts, waits for and deletes the container — the same span as `vcompare run`.

use std::path::Path;
use std::process::Command;

/// Whether runc is on PATH.
pub fn available() -> bool {
    super::which("runc").is_some()
}

/// `runc --version` first line.
pub fn version() -> Option<String> {
    super::version("runc", &["--version"])
}

/// The command that runs `bundle` once as container `id`.
pub fn command(bundle: &Path, id: &str) -> Command {
    let mut c = Command::new("runc");
    c.arg("run")
        .arg("-b")
        .arg(bundle)
        .arg(id)
        .stdin(std::process::Stdio::null());
    c
}
