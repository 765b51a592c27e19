//! The snapshot suite (`vcompare bench --suite snapshot`) through the CLI: restored vs cold
//! microVMs, the snapshot's size and pause, density from one snapshot vs cold boots, and
//! Firecracker when a binary is found (else one skip line). Correctness only: every figure
//! present, positive and consistent, each run started the way its subject says, the report
//! section rendered, no instance left behind; no speed is asserted.

mod common;

use serde_json::Value;
use vcompare_bench::peers::firecracker;
use vcompare_bench::report::markdown::{snapshot_density_slope, snapshot_figure, snapshot_ratio};
use vcompare_bench::results::Results;
use vcompare_bench::suites::snapshot::{self, COLD, FC_COLD, FC_RESTORED, RESTORED};

#[test]
fn restored_and_cold_vms_side_by_side() {
    crate::require_root!();
    crate::skip_unless!(common::skip::kvm_usable(), "needs a read-write /dev/kvm");
    common::vmm_binary();
    let env = common::Env::new();
    let out = env.scratch("out");
    let o = env
        .cmd(&[
            "bench",
            "--suite",
            "snapshot",
            "--modes",
            "vm",
            "--peers",
            "firecracker",
            "--runs",
            "1",
            "--vm-runs",
            "1",
            "--out",
            out.to_str().unwrap(),
        ])
        .env(snapshot::DENSITY_VMS_ENV, "2")
        .output()
        .expect("run vcompare bench");
    assert!(
        o.status.success(),
        "vcompare bench --suite snapshot failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    let r = Results::load(&out).expect("results.json loads");
    assert_eq!(r.config.suites, ["snapshot"]);
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert!(v["snapshot"].is_object(), "{v}");
    let s = r.snapshot.as_ref().expect("snapshot results");
    // Ours: one run each, every figure present and consistent (first KVM_RUN before exec
    // before exit).
    for subject in [RESTORED, COLD] {
        let x = s
            .series
            .iter()
            .find(|x| x.subject == subject)
            .unwrap_or_else(|| panic!("no {subject} series: {:?} {:?}", s.series, r.skipped));
        assert_eq!(x.runs.len(), 1, "{subject}: {:?}", x.runs);
        let f = &x.runs[0];
        let (setup, exec, wall) = (f["launch_to_first_run"], f["launch_to_exec"], f["wall"]);
        assert!(0 < setup && setup < exec && exec < wall, "{subject}: {f:?}");
        assert!(snapshot_figure(&r, subject, "wall").is_some());
    }
    assert!(snapshot_ratio(&r, "launch_to_exec").is_some_and(|x| x > 0.0));
    // The snapshot this run took: a memory file of the guest's RAM size, not more allocated.
    let logical = s.memory_logical_bytes.expect("memory file size");
    let alloc = s.memory_allocated_bytes.expect("memory file allocation");
    assert_eq!(logical, 256 << 20);
    assert!(alloc > 0 && alloc <= logical, "{alloc} of {logical}");
    assert!(s.taken_pause_ms.is_some_and(|p| p > 0.0), "{s:?}");
    // Density: two series of two VMs each, PSS growing with the count.
    assert_eq!(s.density.len(), 2, "{:?}", s.density);
    for d in &s.density {
        assert_eq!(d.points.len(), 2, "{d:?}");
        assert!(
            d.points[1].pss_sum_bytes > d.points[0].pss_sum_bytes,
            "{d:?}"
        );
        assert!(snapshot_density_slope(&r, &d.subject).is_some_and(|x| x > 0.0));
    }
    // Firecracker: measured when a binary is found, else one skip line naming how to add it.
    if firecracker::available() {
        for subject in [FC_COLD, FC_RESTORED] {
            let x = s.series.iter().find(|x| x.subject == subject);
            assert!(
                x.is_some_and(|x| x.runs.len() == 1),
                "{subject}: {:?} {:?}",
                s.series,
                r.skipped
            );
        }
        let fc = s.firecracker.as_ref().expect("firecracker snapshot");
        assert!(
            fc.create_ns > 0 && fc.memory_logical_bytes == 256 << 20,
            "{fc:?}"
        );
        assert!(r.environment.peers.contains_key("firecracker"));
    } else {
        let skips: Vec<_> = r
            .skipped
            .iter()
            .filter(|k| k.what == "peer firecracker")
            .collect();
        assert_eq!(skips.len(), 1, "{:?}", r.skipped);
        assert!(skips[0].reason.contains(firecracker::BINARY_ENV));
    }
    let md = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    assert!(md.contains("## Snapshot"), "{md}");
    assert!(md.contains("| **restored ÷ cold** |"), "{md}");
    assert!(env.ok(&["ps", "-aq"]).trim().is_empty());
}
