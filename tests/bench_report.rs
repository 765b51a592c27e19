//! Report rendering from stored results: markdown content, the VM caveat, chart files.

use std::collections::BTreeMap;

use vcompare_bench::report::{self, markdown};
use vcompare_bench::results::{
    DensityPoint, DensitySeries, DiskSeries, MemorySeries, PhaseSpan, Results, StartupRun,
    StartupSeries,
};

const PVM: &str = "nested (PVM): guest kernel code emulated";

fn fixture() -> Results {
    Results::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/bench_fixture"
    )))
    .unwrap()
}

/// The stored fixture plus synthetic VM figures, so the VM paths are drawn too.
fn with_vm() -> Results {
    let mut r = fixture();
    r.environment.kvm_backend = PVM.into();
    // Replace whatever VM figures the stored run has with known synthetic ones.
    r.startup
        .retain(|s| s.subject != "vm" && s.subject != "qemu");
    r.memory
        .retain(|s| s.subject != "vm" && s.subject != "qemu");
    r.density.retain(|s| s.subject != "vm");
    r.disk.retain(|s| s.subject != "vm");
    let run = |total: u64| StartupRun {
        wall_ns: total,
        phases: vec![
            PhaseSpan {
                name: "vmm_setup".into(),
                duration_ns: 3_000_000,
            },
            PhaseSpan {
                name: "init".into(),
                duration_ns: total / 2,
            },
            PhaseSpan {
                name: "workload+teardown".into(),
                duration_ns: total / 2 - 3_000_000,
            },
        ],
        marks: BTreeMap::from([("init".to_string(), total / 2 + 3_000_000)]),
        remove_ns: Some(40_000_000),
    };
    r.startup.push(StartupSeries {
        subject: "vm".into(),
        definition: "synthetic".into(),
        runs: vec![run(20_000_000_000), run(21_000_000_000)],
    });
    r.startup.push(StartupSeries {
        subject: "qemu".into(),
        definition: "synthetic".into(),
        runs: vec![StartupRun {
            wall_ns: 25_000_000_000,
            phases: vec![],
            marks: BTreeMap::from([("init".to_string(), 24_000_000_000)]),
            remove_ns: None,
        }],
    });
    r.memory.push(MemorySeries {
        subject: "vm".into(),
        metric: "vmm_overhead_rss".into(),
        definition: "synthetic".into(),
        samples_bytes: vec![2 << 20],
    });
    r.density.push(DensitySeries {
        subject: "vm".into(),
        workload: "w".into(),
        points: vec![
            DensityPoint {
                instances: 1,
                available_drop_bytes: 300 << 20,
                pss_sum_bytes: 260 << 20,
            },
            DensityPoint {
                instances: 2,
                available_drop_bytes: 600 << 20,
                pss_sum_bytes: 520 << 20,
            },
        ],
    });
    r.disk.push(DiskSeries {
        subject: "vm".into(),
        definition: "synthetic".into(),
        allocated_bytes: vec![64 << 20],
        apparent_bytes: vec![128 << 20],
    });
    r
}

#[test]
fn markdown_has_tables_targets_and_environment() {
    let r = fixture();
    let md = markdown::render(&r, &[]);
    for needle in [
        "# vcompare benchmark report",
        "## Targets",
        "## Startup",
        "| subject | n | median | p90 |",
        "## Environment",
        &r.environment.cpu_model,
    ] {
        assert!(md.contains(needle), "missing {needle:?}");
    }
}

#[test]
fn vm_numbers_carry_the_backend_caveat() {
    let r = with_vm();
    let md = markdown::render(&r, &[]);
    assert!(md.contains(PVM));
    let t = markdown::targets(&r);
    assert_eq!(t.len(), 5);
    // Synthetic: vmm_setup 3 ms ≤ 5 ms; overhead 2 MiB ≤ 3 MiB; init 13 s vs 24 s → 0.54 ≤ 0.8.
    assert_eq!(t[1].met, Some(true));
    assert_eq!(t[2].met, Some(true));
    assert_eq!(t[3].met, Some(true), "{}", t[3].measured);
}

#[test]
fn markdown_states_the_shared_definitions() {
    let mut r = with_vm();
    r.startup
        .retain(|s| s.subject != "container" && s.subject != "crun");
    r.startup.push(StartupSeries {
        subject: "container".into(),
        definition: vcompare_bench::suites::startup::definition("container"),
        runs: vec![StartupRun {
            wall_ns: 8_000_000,
            phases: vec![],
            marks: BTreeMap::new(),
            remove_ns: Some(2_000_000),
        }],
    });
    r.startup.push(StartupSeries {
        subject: "crun".into(),
        definition: vcompare_bench::suites::startup::definition("crun"),
        runs: vec![StartupRun {
            wall_ns: 15_000_000,
            phases: vec![],
            marks: BTreeMap::new(),
            remove_ns: None,
        }],
    });
    let md = markdown::render(&r, &[]);
    for needle in [
        "run + removal (median)",
        "| 10.0 ms |",
        "= median (delete inside `run`)",
        "pidfd",
        "one untimed boot",
        "same start event as vcompare's",
        "timed in the child and subtracted",
    ] {
        assert!(md.contains(needle), "missing {needle:?}");
    }
    // The container target compares run + removal with crun's run (which deletes).
    let t = markdown::targets(&r);
    assert!(t[0].measured.contains("10.0 ms"), "{}", t[0].measured);
    assert_eq!(t[0].met, Some(true));
}

#[test]
fn charts_are_written_and_not_empty() {
    let dir = tempfile::tempdir().unwrap();
    let out = report::render(&with_vm(), dir.path()).unwrap();
    assert!(std::fs::metadata(&out.report).unwrap().len() > 500);
    // The font is a Debian package (fonts-dejavu-core, installed by scripts/install-deps.sh),
    // not a machine capability: without it this test fails.
    report::charts::ensure_font()
        .expect("a TrueType font for PNG charts (apt-get install fonts-dejavu-core)");
    assert!(out.notes.is_empty(), "{:?}", out.notes);
    for stem in [
        "startup_phases",
        "startup_phases_vm",
        "startup_cdf",
        "cpu_overhead",
        "memory_density",
        "disk",
    ] {
        for ext in ["svg", "png"] {
            let p = dir.path().join(format!("{stem}.{ext}"));
            let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            assert!(len > 1000, "{} is {len} bytes", p.display());
        }
        assert!(std::fs::read_to_string(dir.path().join("report.md"))
            .unwrap()
            .contains(&format!("({stem}.png)")));
    }
    let svg = std::fs::read_to_string(dir.path().join("startup_phases_vm.svg")).unwrap();
    assert!(svg.contains("PVM"), "VM chart lacks the caveat");
}

#[test]
fn compare_shows_both_runs() {
    let a = fixture();
    let b = with_vm();
    let md = markdown::compare(&a, "run-a", &b, "run-b");
    assert!(
        md.contains("run-a")
            && md.contains("run-b")
            && md.contains("startup container (median)")
            && md.contains("| B / A |")
    );
}

/// `--compare` of a run with the exec suite against one without: the exec rows are there,
/// with the figures of the run that has them (the committed exec report).
#[test]
fn compare_shows_the_exec_rows() {
    let exec = Results::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/reports/2026-12-02-2core-nested-pvm-exec"
    )))
    .unwrap();
    let md = markdown::compare(&fixture(), "before", &exec, "exec");
    for subject in ["container", "vm"] {
        let p50 = vcompare_bench::report::markdown::exec_figure(&exec, subject, "p50").unwrap();
        let line = md
            .lines()
            .find(|l| l.starts_with(&format!("| exec {subject} round trip p50 |")))
            .unwrap_or_else(|| panic!("no {subject} p50 row in {md}"));
        assert_eq!(
            line,
            format!(
                "| exec {subject} round trip p50 | – | {} | – |",
                markdown::fmt_ns(p50)
            )
        );
        assert!(
            md.contains(&format!("| exec {subject} output (MiB/s) | – |")),
            "{md}"
        );
    }
}

#[test]
fn formatting_scales() {
    assert_eq!(markdown::fmt_ns(1_500_000.0), "1.5 ms");
    assert_eq!(markdown::fmt_ns(20_000_000_000.0), "20.00 s");
    assert_eq!(markdown::fmt_bytes(3.0 * 1024.0 * 1024.0), "3.0 MiB");
}
