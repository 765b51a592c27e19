//! Smoke run of the real `vcompare bench` with its default suites and peers at minimal sizes
//! (`--runs 1 --vm-runs 1`, a private `--root`): the run must finish, `results.json` must have
//! the schema `vcompare report` reads, there must be an entry for every default suite, and
//! every default peer must either have measurements or be skipped with a reason. VM subjects
//! are included (this machine kind has /dev/kvm): without the VM warm-up boots
//! (`--no-vm-warm-up`, which the results must then note) that is about eight boots of the
//! nested guest, a few minutes. Correctness only: no figure is compared with a
//! speed, only checked to be present and positive.

mod common;

use serde_json::Value;

/// The default suites and peers of `vcompare bench` (src/cli.rs `BenchArgs`).
const DEFAULT_SUITES: &[&str] = &["startup", "cpu", "memory", "density", "disk"];
const DEFAULT_PEERS: &[&str] = &["crun", "runc", "qemu", "firecracker"];

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{key} missing or not a string in {v}"))
}

fn array<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    v.get(key)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{key} missing or not an array"))
}

/// The reason of a `skipped[]` entry naming `subject` as one of its words ("peer qemu",
/// "startup qemu-rootdisk", "memory qemu"), if there is one with a non-empty reason.
fn skip_reason<'a>(r: &'a Value, subject: &str) -> Option<&'a str> {
    array(r, "skipped")
        .iter()
        .filter(|s| {
            str_field(s, "what")
                .split_whitespace()
                .any(|w| w == subject)
        })
        .map(|s| str_field(s, "reason"))
        .find(|reason| !reason.trim().is_empty())
}

/// Whether the startup suite has at least one run of `subject`, each with a positive wall time.
fn measured(r: &Value, subject: &str) -> bool {
    array(r, "startup")
        .iter()
        .filter(|s| str_field(s, "subject") == subject)
        .any(|s| {
            let runs = array(s, "runs");
            !runs.is_empty()
                && runs
                    .iter()
                    .all(|run| run["wall_ns"].as_u64().is_some_and(|w| w > 0))
        })
}

#[test]
fn default_bench_covers_every_suite_and_accounts_for_every_peer() {
    crate::require_root!();
    crate::skip_unless!(
        common::skip::kvm_usable(),
        "needs a read-write /dev/kvm to boot microVMs"
    );
    common::vmm_binary();
    let env = common::Env::new();
    let out = env.scratch("out");
    let o = env.run(&[
        "bench",
        "--runs",
        "1",
        "--vm-runs",
        "1",
        "--no-vm-warm-up",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        o.status.success(),
        "vcompare bench failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );

    // The schema, read the way `vcompare report` reads it …
    let typed = vcompare_bench::Results::load(&out).expect("results.json loads");
    assert_eq!(
        typed.schema_version,
        vcompare_bench::results::SCHEMA_VERSION
    );
    // … and field by field as JSON, so a renamed field fails here.
    let text = std::fs::read_to_string(out.join("results.json")).unwrap();
    let r: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(r["schema_version"], 1);
    let e = &r["environment"];
    for key in [
        "date",
        "cpu_model",
        "host_kernel",
        "kvm_backend",
        "vcompare_revision",
    ] {
        assert!(!str_field(e, key).is_empty(), "environment.{key} is empty");
    }
    assert!(e["cpus"].as_u64().is_some_and(|n| n > 0));
    assert!(e["memory_total_bytes"].as_u64().is_some_and(|n| n > 0));
    let c = &r["config"];
    let suites: Vec<&str> = array(c, "suites")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(suites, DEFAULT_SUITES);
    let peers: Vec<&str> = array(c, "peers").iter().filter_map(Value::as_str).collect();
    assert_eq!(peers, DEFAULT_PEERS);
    assert_eq!(c["runs"], 1);
    assert_eq!(c["vm_runs"], 1);

    // One entry per default suite (a section with data), every series with its definition.
    for suite in DEFAULT_SUITES {
        assert!(
            !array(&r, suite).is_empty(),
            "no {suite} entry in results.json"
        );
    }
    for s in array(&r, "startup") {
        assert!(!str_field(s, "definition").is_empty(), "{s}");
    }
    for s in array(&r, "memory") {
        assert!(!str_field(s, "definition").is_empty(), "{s}");
        let v = array(s, "samples_bytes");
        assert!(
            !v.is_empty() && v.iter().all(|b| b.as_u64().is_some_and(|b| b > 0)),
            "{s}"
        );
    }
    for s in array(&r, "cpu") {
        let v = array(s, "samples");
        assert!(
            !v.is_empty() && v.iter().all(|x| x.as_f64().is_some_and(|x| x > 0.0)),
            "{s}"
        );
    }
    for s in array(&r, "disk") {
        assert!(!str_field(s, "definition").is_empty(), "{s}");
    }
    assert!(
        array(&r, "notes")
            .iter()
            .any(|n| n.as_str().is_some_and(|n| n.contains("--no-vm-warm-up"))),
        "the cold first VM boots are not noted: {:?}",
        r["notes"]
    );
    for s in array(&r, "skipped") {
        assert!(
            !str_field(s, "reason").trim().is_empty(),
            "skip without a reason: {s}"
        );
    }

    // Our own subjects, VM included (this machine has /dev/kvm).
    for subject in ["host", "container", "vm"] {
        assert!(
            measured(&r, subject),
            "startup {subject} not measured; skipped: {:?}",
            r["skipped"]
        );
    }
    let has_memory = |subject: &str, metric: &str| {
        array(&r, "memory")
            .iter()
            .any(|s| str_field(s, "subject") == subject && str_field(s, "metric") == metric)
    };
    for metric in ["vmm_overhead_rss", "vmm_overhead_pss", "guest_touched"] {
        assert!(has_memory("vm", metric), "no vm {metric}");
    }
    assert!(array(&r, "startup")
        .iter()
        .filter(|s| str_field(s, "subject") == "container")
        .flat_map(|s| array(s, "runs"))
        .all(|run| run["remove_ns"].as_u64().is_some_and(|n| n > 0)));

    // Every default peer: measured, or skipped with a reason — for QEMU each of its two
    // startup subjects and its memory sample.
    for peer in DEFAULT_PEERS {
        let parts: Vec<(&str, bool)> = match *peer {
            "qemu" => vec![
                ("qemu", measured(&r, "qemu")),
                ("qemu-rootdisk", measured(&r, "qemu-rootdisk")),
                (
                    "qemu",
                    has_memory("qemu", "vmm_overhead_rss")
                        && has_memory("qemu", "vmm_overhead_pss"),
                ),
            ],
            p => vec![(p, measured(&r, p))],
        };
        for (subject, ok) in parts {
            assert!(
                ok || skip_reason(&r, subject).is_some(),
                "peer {peer} ({subject}): neither measured nor skipped with a reason; skipped: {:?}",
                r["skipped"]
            );
        }
    }

    // The rendered report states the definitions.
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for needle in [
        "## Startup",
        "## Memory per instance",
        "launch → init",
        "guest RAM =",
    ] {
        assert!(md.contains(needle), "report.md lacks {needle:?}");
    }
}
