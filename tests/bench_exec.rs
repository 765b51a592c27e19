//! The exec suite (`vcompare bench --suite exec`) through the CLI: `vcompare exec` round trips
//! and output throughput into a detached container and a detached microVM. Correctness only:
//! every figure present and positive, each output run exactly the stated size, the report
//! section rendered, no instance left behind; no speed is asserted.

mod common;

use serde_json::Value;
use vcompare_bench::results::{ExecSeries, Results};
use vcompare_bench::suites::exec::{self, ROUND_TRIPS_PER_ROUND};

/// Runs `vcompare bench --suite exec --modes MODES --runs RUNS` into a fresh directory, with
/// the output size set to `mib` MiB if given, and returns its results and report.
fn bench(env: &common::Env, modes: &str, runs: usize, mib: Option<u64>) -> (Results, String) {
    let out = env.scratch("out");
    let runs_s = runs.to_string();
    let mut cmd = env.cmd(&[
        "bench",
        "--suite",
        "exec",
        "--modes",
        modes,
        "--peers",
        "none",
        "--runs",
        &runs_s,
        "--vm-runs",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    match mib {
        Some(m) => cmd.env(exec::STREAM_MIB_ENV, m.to_string()),
        None => cmd.env_remove(exec::STREAM_MIB_ENV),
    };
    let o = cmd.output().expect("run vcompare bench");
    assert!(
        o.status.success(),
        "vcompare bench --suite exec failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    let r = Results::load(&out).expect("results.json loads");
    assert_eq!(r.config.suites, ["exec"]);
    let md = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    // The raw file carries the section under its own key.
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert!(v["exec"].is_array(), "{v}");
    (r, md)
}

/// Every figure of `s` is present, positive and of the stated size (`mib` MiB per output run).
fn assert_sane(s: &ExecSeries, runs: usize, mib: u64) {
    assert_eq!(
        s.round_trip_ns.len(),
        runs * ROUND_TRIPS_PER_ROUND,
        "{}: {:?}",
        s.subject,
        s.round_trip_ns
    );
    assert!(s.round_trip_ns.iter().all(|&ns| ns > 0), "{s:?}");
    assert_eq!(s.round_trip_args[0], "exec");
    assert_eq!(&s.round_trip_args[2..], ["/bin/probe", "true"]);
    assert_eq!(s.stream_bytes, mib << 20);
    assert_eq!(&s.stream_args[2..], exec::stream_command(mib));
    assert_eq!(s.stream.len(), runs, "{}: {:?}", s.subject, s.stream);
    for run in &s.stream {
        assert_eq!(run.bytes, s.stream_bytes, "{run:?}");
        assert!(run.wall_ns > 0 && run.bytes_per_s > 0.0, "{run:?}");
    }
    // The instance ran without a network, detached, in its own mode.
    let inst = s.instance.join(" ");
    assert!(
        inst.starts_with("run --network none -d --mode ") && inst.contains(&s.subject),
        "{inst}"
    );
}

/// Figures the report reads back, for `subject`.
fn assert_figures(r: &Results, subject: &str) {
    use vcompare_bench::report::markdown::exec_figure;
    let p50 = exec_figure(r, subject, "p50").expect("p50");
    let p99 = exec_figure(r, subject, "p99").expect("p99");
    assert!(p50 > 0.0 && p99 >= p50, "{subject}: {p50} {p99}");
    assert!(exec_figure(r, subject, "bytes_per_s").is_some_and(|b| b > 0.0));
}

#[test]
fn container_exec_is_measured_and_nothing_is_left_behind() {
    crate::require_root!();
    let env = common::Env::new();
    // The default output size.
    let (r, md) = bench(&env, "container", 2, None);
    assert!(r.skipped.is_empty(), "skipped: {:?}", r.skipped);
    assert_eq!(r.exec.len(), 1, "{:?}", r.exec);
    let s = &r.exec[0];
    assert_eq!(s.subject, "container");
    assert_sane(s, 2, exec::STREAM_MIB_DEFAULT);
    assert_figures(&r, "container");
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("exec: one detached instance per mode")),
        "{:?}",
        r.notes
    );
    assert!(md.contains("## Exec"), "{md}");
    assert!(md.contains("| container | 20 |"), "{md}");
    assert!(!md.contains("VM ÷ container**"), "{md}");
    assert!(env.ok(&["ps", "-aq"]).trim().is_empty());
}

#[test]
fn container_and_vm_exec_side_by_side() {
    crate::require_root!();
    crate::skip_unless!(
        common::skip::kvm_usable(),
        "needs a read-write /dev/kvm for the VM half"
    );
    common::vmm_binary();
    let env = common::Env::new();
    // 1 MiB per output run: a nested guest moves well under 1 MiB/s through vsock, and the
    // definition does not depend on the size.
    let (r, md) = bench(&env, "container,vm", 1, Some(1));
    assert!(r.skipped.is_empty(), "skipped: {:?}", r.skipped);
    let subjects: Vec<&str> = r.exec.iter().map(|s| s.subject.as_str()).collect();
    assert_eq!(subjects, ["container", "vm"]);
    for s in &r.exec {
        assert_sane(s, 1, 1);
    }
    assert_figures(&r, "container");
    assert_figures(&r, "vm");
    use vcompare_bench::report::markdown::exec_ratio;
    for f in ["p50", "p99", "bytes_per_s"] {
        assert!(exec_ratio(&r, f).is_some_and(|x| x > 0.0), "{f}");
    }
    assert!(md.contains("## Exec"), "{md}");
    assert!(md.contains("| vm ¹ | 10 |"), "{md}");
    assert!(md.contains("| **VM ÷ container** ¹ |"), "{md}");
    assert!(md.contains("KVM backend:"), "{md}");
    assert!(env.ok(&["ps", "-aq"]).trim().is_empty());
}
