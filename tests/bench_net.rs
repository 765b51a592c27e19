//! The network suite (`vcompare bench --suite net`): the host loopback baseline driven
//! through the suite's own code with the image's probe on both sides, and the whole suite
//! through the CLI. Both run in the test process's own network namespace
//! (`common::test_host`), so the suite's bridge, veths, TAP and nftables rules never touch
//! the machine's real interfaces. Correctness only: every figure must be present and
//! positive, every instance and the suite's network gone afterwards; no speed is asserted.

mod common;

use serde_json::Value;
use std::path::PathBuf;
use vcompare_bench::harness::Harness;
use vcompare_bench::results::{NetSeries, Results};
use vcompare_bench::suites::{net, Plan};

/// The default image's rootfs in `env`'s data root, built by one container run without a
/// network.
fn image_rootfs(env: &common::Env) -> PathBuf {
    env.ok(&[
        "run",
        "--network",
        "none",
        "--rm",
        "vcompare/probe",
        "/bin/probe",
        "true",
    ]);
    let v: Value = serde_json::from_str(&env.ok(&["image", "inspect", "vcompare/probe"]))
        .expect("image inspect prints JSON");
    PathBuf::from(v["rootfs"].as_str().expect("rootfs path in image inspect"))
}

/// Every run of `s` has request/response and bulk figures that make sense.
fn assert_sane(s: &NetSeries, runs: usize) {
    assert_eq!(s.runs.len(), runs, "{}: {:?}", s.path, s.runs);
    for run in &s.runs {
        let rr = run.rr.as_ref().expect("request/response figures");
        assert!(rr.transactions > 0 && rr.p50_ns > 0, "{}: {rr:?}", s.path);
        assert!(rr.min_ns <= rr.p50_ns && rr.p50_ns <= rr.p99_ns && rr.p99_ns <= rr.max_ns);
        assert_eq!((rr.request_bytes, rr.response_bytes), (100, 200));
        let st = run.stream.as_ref().expect("bulk figures");
        assert!(
            st.received_bytes > 0 && st.received_bytes == st.sent_bytes,
            "{st:?}"
        );
        assert!(st.mib_s > 0.0);
    }
}

/// Network names in `env`'s data root that the suite would have created.
fn bench_networks(env: &common::Env) -> Vec<String> {
    let o = env.run(&["network", "ls"]);
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with("vcbench-net-"))
        .map(str::to_string)
        .collect()
}

#[test]
fn loopback_baseline_runs_the_image_probe_on_both_sides() {
    crate::require_root!();
    let env = common::Env::new();
    let mut h = harness(&env, 2);
    // No modes: only the loopback baseline, which needs no network and no instance.
    let plan = Plan {
        suites: vec!["net".into()],
        ..Plan::default()
    };
    let r = common::test_host::in_netns(move || {
        let mut r = Results::new(Default::default(), Default::default());
        net::run(&mut h, &plan, &mut r);
        r
    });
    assert!(r.skipped.is_empty(), "skipped: {:?}", r.skipped);
    assert_eq!(r.net.len(), 1, "{:?}", r.net);
    let s = &r.net[0];
    assert_eq!(
        (s.path.as_str(), s.client.as_str(), s.server.as_str()),
        ("loopback", "host", "host")
    );
    assert_sane(s, 2);
    // The recorded command line is the suite's definition, read back by the probe's parser.
    let (_, params) = net::Params::parse(&s.args[1..]).expect("recorded args parse");
    assert_eq!(params, net::params());
    assert!(
        r.notes.iter().any(|n| n.contains("warm-up round")),
        "{:?}",
        r.notes
    );

    let md = vcompare_bench::report::markdown::render(&r, &[]);
    assert!(md.contains("## Network (TCP)"), "{md}");
    assert!(md.contains("| loopback | host → host | 2 |"), "{md}");
    // The two network targets are listed, not measured without the container path.
    let t = vcompare_bench::report::markdown::targets(&r);
    let net_targets: Vec<_> = t.iter().filter(|t| t.what.contains("`-p`")).collect();
    assert_eq!(net_targets.len(), 2);
    assert!(net_targets.iter().all(|t| t.met.is_none()));
    assert!(bench_networks(&env).is_empty());
    assert!(env.ok(&["ps", "-aq"]).trim().is_empty());
}

/// A harness over `env`'s data root with `runs` measured rounds.
fn harness(env: &common::Env, runs: usize) -> Harness {
    let rootfs = image_rootfs(env);
    Harness::new(
        PathBuf::from(env!("CARGO_BIN_EXE_vcompare")),
        env.root(),
        "vcompare/probe:latest".into(),
        rootfs,
        runs,
        1,
    )
    .expect("harness")
}

#[test]
fn every_path_is_measured_and_nothing_is_left_behind() {
    crate::require_root!();
    crate::skip_unless!(
        common::skip::kvm_usable(),
        "needs a read-write /dev/kvm for the VM paths"
    );
    common::vmm_binary();
    let env = common::Env::new();
    let mut h = harness(&env, 1);
    let plan = Plan {
        modes: vec!["host".into(), "container".into(), "vm".into()],
        suites: vec!["net".into()],
        ..Plan::default()
    };
    let r = common::test_host::in_netns(move || {
        let mut r = Results::new(Default::default(), Default::default());
        net::run(&mut h, &plan, &mut r);
        r
    });
    let paths: Vec<&str> = r.net.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "loopback",
            "container -p",
            "container-container",
            "vm -p",
            "container-vm"
        ],
        "skipped: {:?}",
        r.skipped
    );
    for s in &r.net {
        assert_sane(s, 1);
    }
    assert!(r.skipped.is_empty(), "skipped: {:?}", r.skipped);
    // Every target has a verdict; the VM paths are printed as measured, with the backend.
    let t = vcompare_bench::report::markdown::targets(&r);
    assert!(t
        .iter()
        .filter(|t| t.what.contains("`-p`"))
        .all(|t| t.met.is_some()));
    let text = vcompare_bench::report::markdown::targets_text(&r);
    assert!(
        text.contains("[info] vm -p:") && text.contains("[info] container-vm:"),
        "{text}"
    );
    // Nothing left behind: no instance, no bench network (its bridge and rules go with it).
    assert!(env.ok(&["ps", "-aq"]).trim().is_empty());
    assert!(bench_networks(&env).is_empty());
    common::test_host::assert_no_network_leftovers();
}

#[test]
fn cli_runs_the_net_suite_and_prints_its_goal_lines() {
    crate::require_root!();
    let env = common::Env::new();
    let out = env.scratch("out");
    // Host mode only: the loopback baseline, enough to check the CLI's plumbing (flag,
    // results, report, goal lines); the paths themselves are the test above.
    let o = env.run(&[
        "bench",
        "--suite",
        "net",
        "--modes",
        "host",
        "--peers",
        "none",
        "--runs",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "vcompare bench --suite net failed: {}\n{stdout}",
        String::from_utf8_lossy(&o.stderr)
    );
    let r = Results::load(&out).expect("results.json loads");
    assert_eq!(r.config.suites, ["net"]);
    assert_eq!(r.net.len(), 1);
    assert_sane(&r.net[0], 1);
    assert!(
        stdout.contains("host → container through `-p`: TCP request/response p50"),
        "{stdout}"
    );
    assert!(
        stdout.contains("host → container through `-p`: TCP bulk throughput"),
        "{stdout}"
    );
    let md = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    assert!(md.contains("## Network (TCP)"), "{md}");
    let text = std::fs::read_to_string(out.join("results.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(v["net"][0]["runs"][0]["rr"]["p99_ns"]
        .as_u64()
        .is_some_and(|n| n > 0));
}
