//! results.json schema: round trip, version check, and the pieces that turn raw backend data
//! into results (phase spans, probe lines).

use std::collections::BTreeMap;

use serde_json::json;
use vcompare_bench::results::{
    CpuSeries, Environment, PhaseSpan, Results, RunConfig, StartupRun, StartupSeries,
    SCHEMA_VERSION,
};
use vcompare_bench::suites::cpu::{per_op, reference_workload, script, IO_ROOTFS};
use vcompare_bench::suites::startup::{
    base_minus_spawn, marks_from_inspect, phase_spans, PHASE_BASE_FIELD, TAIL_SPAN,
};

fn sample() -> Results {
    let mut r = Results::new(
        Environment {
            date: "2026-01-01T00:00:00Z".into(),
            cpu_model: "test cpu".into(),
            cpus: 2,
            kvm_backend: "hardware KVM".into(),
            ..Default::default()
        },
        RunConfig {
            modes: vec!["host".into(), "container".into()],
            runs: 2,
            vm_runs: 1,
            image: "img".into(),
            ..Default::default()
        },
    );
    r.startup.push(StartupSeries {
        subject: "container".into(),
        definition: "d".into(),
        runs: vec![StartupRun {
            wall_ns: 10,
            phases: vec![PhaseSpan {
                name: "exec".into(),
                duration_ns: 4,
            }],
            marks: BTreeMap::from([("exec".to_string(), 4)]),
            remove_ns: Some(3),
        }],
    });
    r.cpu.push(CpuSeries {
        workload: "cpu".into(),
        subject: "host".into(),
        args: vec!["cpu".into(), "5".into()],
        unit: "ns/iteration".into(),
        samples: vec![1.5],
        raw: vec![json!({"workload": "cpu"})],
    });
    r.skip("peer firecracker", "not on PATH");
    r
}

#[test]
fn round_trip_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let r = sample();
    let path = r.save(dir.path()).unwrap();
    assert!(path.ends_with("results.json"));
    let back = Results::load(dir.path()).unwrap();
    assert_eq!(back, r);
    // Loading the file itself works too.
    assert_eq!(Results::load(&path).unwrap(), r);
}

#[test]
fn other_schema_versions_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = serde_json::to_value(sample()).unwrap();
    v["schema_version"] = json!(SCHEMA_VERSION + 1);
    std::fs::write(dir.path().join("results.json"), v.to_string()).unwrap();
    let e = Results::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("schema_version"), "{e}");
}

#[test]
fn stored_fixture_parses() {
    let r = Results::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/bench_fixture"
    )))
    .unwrap();
    assert!(!r.startup.is_empty());
    assert!(!r.environment.kvm_backend.is_empty());
}

#[test]
fn phase_spans_sum_to_wall_time() {
    let marks = vec![
        ("namespaces".to_string(), 300),
        ("cgroup".to_string(), 100),
        ("exec".to_string(), 500),
    ];
    // Process started 50 ns after the spawn instant.
    let spans = phase_spans(&marks, 50, 1000);
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["cgroup", "namespaces", "exec", TAIL_SPAN]);
    assert_eq!(
        spans.iter().map(|s| s.duration_ns).collect::<Vec<_>>(),
        [150, 200, 200, 450]
    );
    assert_eq!(spans.iter().map(|s| s.duration_ns).sum::<u64>(), 1000);
    // Marks past the exit are clamped, never negative.
    let spans = phase_spans(&[("x".into(), 5000)], 0, 1000);
    assert_eq!(spans.iter().map(|s| s.duration_ns).sum::<u64>(), 1000);
    assert!(phase_spans(&[], 0, 1000).is_empty());
}

#[test]
fn marks_come_from_inspect_json() {
    let v = json!({"phases": [{"name": "cgroup", "at_ns": 5}, {"name": "exec", "at_ns": 9}, {"bad": 1}]});
    assert_eq!(
        marks_from_inspect(&v),
        vec![("cgroup".to_string(), 5), ("exec".to_string(), 9)]
    );
    assert!(marks_from_inspect(&json!({})).is_empty());
}

#[test]
fn probe_lines_become_per_operation_costs() {
    assert_eq!(
        per_op(&json!({"workload": "cpu", "ns_per_iter": 1.25})),
        Some(1.25)
    );
    assert_eq!(
        per_op(&json!({"workload": "syscalls", "ns_per_call": 90.0})),
        Some(90.0)
    );
    assert_eq!(
        per_op(&json!({"workload": "io", "elapsed_ns": 8_000_000, "mib": 4})),
        Some(2000.0)
    );
    assert_eq!(per_op(&json!({"workload": "sleep"})), None);
    let s = script("/bin/probe", &["/io", "/"], true);
    assert!(
        s.contains("/bin/probe io /io 2 && /bin/probe io / 2")
            && s.contains("/bin/probe syscalls 2000"),
        "{s}"
    );
    // The instance's own root fs is a separate row, referenced to the host's `io`.
    assert_eq!(reference_workload(IO_ROOTFS), "io");
    assert_eq!(reference_workload("io"), "io");
}

#[test]
fn removal_is_optional_in_the_schema() {
    let run = StartupRun {
        wall_ns: 10,
        phases: vec![],
        marks: BTreeMap::new(),
        remove_ns: None,
    };
    let text = serde_json::to_string(&run).unwrap();
    assert!(!text.contains("remove_ns"), "{text}");
    let back: StartupRun = serde_json::from_str(&text).unwrap();
    assert_eq!(back.with_removal_ns(), 10);
    let with: StartupRun = serde_json::from_str(r#"{"wall_ns": 10, "remove_ns": 5}"#).unwrap();
    assert_eq!(with.with_removal_ns(), 15);
}

#[test]
fn marks_are_rebased_on_the_spawn_when_the_record_says_when_main_was() {
    let rec = json!({ PHASE_BASE_FIELD: 1_000_500u64, "phases": [] });
    assert_eq!(base_minus_spawn(&rec, 1_000_000), Some(500));
    assert_eq!(base_minus_spawn(&json!({}), 1_000_000), None);
}
