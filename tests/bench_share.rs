//! The share suite (issue #6): its report section from stored results, and one cheap run of
//! the real `vcompare bench --suite share` on the host and in containers (4 MiB, one run; VM
//! places need a nested boot of minutes and are left to `vcompare bench`).

mod common;

use common::Env;
use vcompare_bench::report::markdown;
use vcompare_bench::results::{Results, ShareSeries};

const PVM: &str = "nested (PVM): guest kernel code emulated";

fn series(place: &str, subject: &str, write: f64, read: f64, meta_ns: u64) -> ShareSeries {
    ShareSeries {
        place: place.into(),
        subject: subject.into(),
        definition: format!("synthetic {place}"),
        fstype: "ext4".into(),
        args: vec!["io".into(), "DIR".into(), "4".into()],
        mib: 4,
        files: 100,
        write_mib_s: vec![write, write * 3.0, write],
        read_mib_s: vec![read],
        metadata_ns: vec![meta_ns],
        raw: Vec::new(),
    }
}

fn with_share() -> Results {
    let mut r = Results::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/bench_fixture"
    )))
    .unwrap();
    r.environment.kvm_backend = PVM.into();
    r.share = vec![
        series("host", "host", 200.0, 1000.0, 10_000_000),
        series("container bind", "container", 100.0, 1000.0, 20_000_000),
        series("vm 9p", "vm", 0.5, 2.0, 100_000_000_000),
    ];
    r
}

/// Size of a file (0 when missing).
fn fs_len(p: &std::path::Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

#[test]
fn share_ratios_are_medians_over_host() {
    let r = with_share();
    assert_eq!(markdown::share_median(&r, "host", "write"), Some(200.0));
    assert_eq!(
        markdown::share_ratio(&r, "container bind", "write"),
        Some(0.5)
    );
    assert_eq!(
        markdown::share_ratio(&r, "container bind", "metadata"),
        Some(2.0)
    );
    // Cost view for the chart: half the throughput is twice the time per MiB.
    assert_eq!(
        markdown::share_slowdown(&r, "container bind", "write"),
        Some(2.0)
    );
    assert_eq!(markdown::share_slowdown(&r, "vm 9p", "read"), Some(500.0));
    assert_eq!(markdown::share_median(&r, "vm 9p", "metadata"), Some(1e6));
}

#[test]
fn share_section_states_backend_and_events() {
    let r = with_share();
    let md = markdown::render(&r, &["share".to_string()]);
    assert!(md.contains("## Shared directories and disks"), "{md}");
    assert!(md.contains("| container bind | ext4 | 3 | 4 × 100 | 100.0 (0.50×) | 1 000 (1.00×) | 200.0 µs (2.00×) |"), "{md}");
    assert!(md.contains("| vm 9p ¹ | ext4 | 3 | 4 × 100 | 0.500 (0.0025×) | 2.000 (0.0020×) | 1.00 s (10000×) |"), "{md}");
    assert!(md.contains(&format!("¹ KVM backend: {PVM}.")), "{md}");
    assert!(md.contains("`fsync` returned"), "{md}");
    assert!(md.contains("reads: not recorded"), "{md}");
    assert!(md.contains("(share.png)"), "{md}");
    let dir = tempfile::tempdir().unwrap();
    let out = vcompare_bench::report::render(&r, dir.path()).unwrap();
    // The font is a Debian package (fonts-dejavu-core, scripts/install-deps.sh), not a machine
    // capability: without it the charts are missing, and that is a failure here.
    assert_eq!(out.notes, Vec::<String>::new());
    for chart in ["share.svg", "share.png"] {
        let p = dir.path().join(chart);
        assert!(out.charts.contains(&p), "{chart} not in {:?}", out.charts);
        assert!(fs_len(&p) > 0, "{chart} is empty");
    }
    let svg = std::fs::read_to_string(dir.path().join("share.svg")).unwrap();
    for place in ["container bind", "vm 9p"] {
        assert!(svg.contains(place), "share.svg does not name `{place}`");
    }
}

#[test]
fn share_suite_runs_on_host_and_in_containers() {
    crate::require_root!();
    let env = Env::new();
    let out = env.scratch("out");
    let o = out.to_str().unwrap();
    env.ok(&[
        "bench",
        "--suite",
        "share",
        "--modes",
        "host,container",
        "--peers",
        "none",
        "--runs",
        "1",
        "--share-mib",
        "4",
        "--share-files",
        "20",
        "--out",
        o,
    ]);
    let r = Results::load(&out).unwrap();
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);
    // One series per place (the order of places alternates between runs, so compare sorted).
    let mut places: Vec<&str> = r.share.iter().map(|s| s.place.as_str()).collect();
    places.sort();
    assert_eq!(places, ["container bind", "container volume", "host"]);
    for s in &r.share {
        assert_eq!((s.mib, s.files, s.write_mib_s.len()), (4, 20, 1), "{s:?}");
        assert!(s.read_mib_s[0] > 0.0 && s.metadata_ns[0] > 0, "{s:?}");
        assert_ne!(s.fstype, "unknown", "{s:?}");
    }
    assert!(
        env.ok(&["volume", "ls"]).lines().count() <= 1,
        "volume left behind"
    );
}
