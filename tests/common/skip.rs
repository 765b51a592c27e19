//! The one way a test says "this machine cannot run me".
//!
//! nextest counts a test that returns early as passed, so a silent `return` would hide a missing
//! capability. A skip therefore prints `SKIPPED: <test>: <reason>` and appends that line to the
//! file named by `VCOMPARE_SKIP_LOG`; `scripts/test.sh` lists and counts those lines after the
//! run. On the machine kind the project targets (Debian 12, root, `/dev/kvm`), `scripts/test.sh`
//! sets `VCOMPARE_NO_SKIP=1` and every skip becomes a failure naming the missing capability.
//!
//! Shared by the root package's tests and the container crate's tests (`#[path]` include).
#![allow(dead_code)]

use std::io::Write;

/// Records a skip of the running test (or fails it where skipping is not allowed).
pub fn record(reason: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("unknown test");
    if std::env::var_os("VCOMPARE_NO_SKIP").is_some() {
        panic!("{test} would be skipped, but this machine kind must run it: {reason}");
    }
    let line = format!("SKIPPED: {test}: {reason}");
    eprintln!("{line}");
    if let Some(log) = std::env::var_os("VCOMPARE_SKIP_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// True when this process runs as root (namespaces, cgroups, mounts need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// True when `/dev/kvm` opens read-write for this process.
pub fn kvm_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// `skip_unless!(cond, "reason")`: records a skip and returns from the test when `cond` is false.
#[macro_export]
macro_rules! skip_unless {
    ($cond:expr, $reason:expr) => {
        if !$cond {
            $crate::common::skip::record($reason);
            return;
        }
    };
}

/// `require_root!()`: skips (or, on the target machine kind, fails) unless running as root.
#[macro_export]
macro_rules! require_root {
    () => {
        $crate::skip_unless!(
            $crate::common::skip::is_root(),
            "needs root (namespaces, cgroups and mounts)"
        )
    };
}
