//! criterion benches of the startup paths, driving the real `vcompare` binary like a user:
//! - `startup/host_probe_true`: spawn the static probe directly (the floor);
//! - `startup/container_run_rm`: `vcompare run --network none --rm vcompare/probe /bin/probe
//!   true` (no network, as in every suite but `net`: see `suites::Network::None`);
//! - `image/build_and_first_run`: `vcompare image build` of a 64-file directory plus the first
//!   `run` (layer tar + digest, then layer apply into the rootfs cache).
//!
//! The binary is `$VCOMPARE_BIN`, else `target/release/vcompare` under `$CARGO_TARGET_DIR` or
//! the workspace. Each iteration is a whole process, so `iter_custom` times exactly the spawn →
//! exit span and flat sampling keeps the sample count small. Run: `cargo bench -p vcompare-bench`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use vcompare_bench::suites::{run_args, Network};

fn vcompare_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("VCOMPARE_BIN")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
    {
        return Some(p);
    }
    let ws = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let targets = [
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from),
        Some(ws.join("target")),
    ];
    targets
        .into_iter()
        .flatten()
        .map(|t| t.join("release/vcompare"))
        .find(|p| p.is_file())
}

fn root() -> PathBuf {
    std::env::var_os("VCOMPARE_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("vcompare-criterion"))
}

fn run_ok(cmd: &mut Command) -> Duration {
    let t = Instant::now();
    let st = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("spawn");
    let d = t.elapsed();
    assert!(st.success(), "{cmd:?} failed: {st}");
    d
}

fn benches(c: &mut Criterion) {
    let Some(bin) = vcompare_bin() else {
        eprintln!("vcompare binary not found: build it with `cargo build --release` or set VCOMPARE_BIN; skipping");
        return;
    };
    let root = root();
    let vc = |args: &[&str]| {
        let mut cmd = Command::new(&bin);
        cmd.arg("--root").arg(&root).args(args);
        cmd
    };
    // Builds the default image and its rootfs cache once.
    run_ok(&mut vc(&run_args(
        Network::None,
        &["--rm", "vcompare/probe", "/bin/probe", "true"],
    )));
    let rootfs = {
        let out = vc(&["image", "inspect", "vcompare/probe"])
            .output()
            .expect("inspect");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v.get("rootfs").and_then(|r| r.as_str()).map(PathBuf::from)
    };

    let mut g = c.benchmark_group("startup");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    if let Some(probe) = rootfs
        .as_ref()
        .map(|r| r.join("bin/probe"))
        .filter(|p| p.is_file())
    {
        g.bench_function("host_probe_true", |b| {
            b.iter_custom(|n| {
                (0..n)
                    .map(|_| run_ok(Command::new(&probe).arg("true")))
                    .sum()
            })
        });
    }
    g.bench_function("container_run_rm", |b| {
        b.iter_custom(|n| {
            (0..n)
                .map(|_| {
                    run_ok(&mut vc(&run_args(
                        Network::None,
                        &["--rm", "vcompare/probe", "/bin/probe", "true"],
                    )))
                })
                .sum()
        })
    });
    g.finish();

    let src = std::env::temp_dir().join(format!("vcompare-criterion-src-{}", std::process::id()));
    std::fs::create_dir_all(src.join("bin")).expect("mkdir");
    for i in 0..64 {
        std::fs::write(src.join(format!("f{i}")), vec![i as u8; 4096]).expect("write");
    }
    if let Some(probe) = rootfs.as_ref().map(|r| r.join("bin/probe")) {
        let _ = std::fs::copy(probe, src.join("bin/probe"));
    }
    let mut g = c.benchmark_group("image");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    let mut k = 0u64;
    g.bench_function("build_and_first_run", |b| {
        b.iter_custom(|n| {
            (0..n)
                .map(|_| {
                    k += 1;
                    // A distinct file per iteration gives a new layer digest, so apply really runs.
                    std::fs::write(src.join("iteration"), k.to_string()).expect("write");
                    let tag = format!("vcompare-criterion/layer:{k}");
                    let src_s = src.to_string_lossy().to_string();
                    run_ok(&mut vc(&["image", "build", &src_s, "--tag", &tag]))
                        + run_ok(&mut vc(&run_args(
                            Network::None,
                            &["--rm", &tag, "/bin/probe", "true"],
                        )))
                })
                .sum()
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&src);
}

criterion_group!(all, benches);
criterion_main!(all);
