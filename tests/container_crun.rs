//! Differential test: the same root filesystem and the same probe run through Debian's `crun`
//! (OCI bundle written here with oci-spec) and through `vcompare run --mode container`; the
//! probe must see the same isolation: PID 1, the hostname, the visible PIDs, uid 0 inside.
//!
//! Needs root (without it: a recorded skip, tests/common/skip.rs), and `crun`, `unshare`,
//! /bin/busybox and the static probe (`scripts/build-static.sh`, or
//! `VCOMPARE_PROBE=/path/to/probe`): those are installed or built, so missing = failure.
//! On hybrid cgroup hosts crun must not see /sys/fs/cgroup/unified, so it runs in a private
//! mount namespace with that mount removed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use oci_spec::runtime::{
    LinuxBuilder, LinuxIdMappingBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, ProcessBuilder,
    RootBuilder, Spec, SpecBuilder, UserBuilder,
};

fn probe_path() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("VCOMPARE_PROBE") {
        return Some(PathBuf::from(p));
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/static/x86_64-unknown-linux-gnu/release/probe");
    p.exists().then_some(p)
}

fn which(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn make_rootfs(dir: &Path, probe: &Path) {
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "root"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", dir.join("bin/sh")).unwrap();
    std::fs::copy(probe, dir.join("probe")).unwrap();
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
}

fn crun_spec(hostname: &str) -> Spec {
    let ns = |t| LinuxNamespaceBuilder::default().typ(t).build().unwrap();
    let map = LinuxIdMappingBuilder::default()
        .container_id(0u32)
        .host_id(100_000u32)
        .size(65_536u32)
        .build()
        .unwrap();
    let mut linux = LinuxBuilder::default()
        .namespaces(vec![
            ns(LinuxNamespaceType::Pid),
            ns(LinuxNamespaceType::Network),
            ns(LinuxNamespaceType::Ipc),
            ns(LinuxNamespaceType::Uts),
            ns(LinuxNamespaceType::Mount),
            ns(LinuxNamespaceType::User),
            ns(LinuxNamespaceType::Cgroup),
        ])
        .uid_mappings(vec![map])
        .gid_mappings(vec![map])
        .build()
        .unwrap();
    // Keep the OCI default masked/read-only paths, like our runtime.
    let d = oci_spec::runtime::Linux::default();
    linux.set_masked_paths(d.masked_paths().clone());
    linux.set_readonly_paths(d.readonly_paths().clone());
    let base = Spec::default();
    // Debian's crun cannot set up /sys/fs/cgroup inside a user namespace on this host; drop it.
    let mounts: Vec<_> = base
        .mounts()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.destination() != Path::new("/sys/fs/cgroup"))
        .collect();
    SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path("rootfs")
                .readonly(true)
                .build()
                .unwrap(),
        )
        .hostname(hostname)
        .mounts(mounts)
        .process(
            ProcessBuilder::default()
                .terminal(false)
                .user(UserBuilder::default().uid(0u32).gid(0u32).build().unwrap())
                .args(vec!["/probe".to_string(), "info".to_string()])
                .env(vec!["PATH=/bin".to_string()])
                .cwd("/")
                .build()
                .unwrap(),
        )
        .linux(linux)
        .build()
        .unwrap()
}

fn parse(out: &[u8], who: &str) -> serde_json::Value {
    let text = String::from_utf8_lossy(out);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| panic!("{who} printed no JSON: {text}"));
    serde_json::from_str(line).unwrap()
}

#[test]
fn probe_sees_the_same_isolation_under_crun_and_vcompare() {
    crate::require_root!();
    // Installed packages and build products are not machine capabilities: missing = failure.
    assert!(
        which("crun") && which("unshare"),
        "crun and unshare are required: scripts/install-deps.sh installs them"
    );
    let probe = probe_path()
        .expect("build the static probe first (scripts/build-static.sh) or set VCOMPARE_PROBE");
    let tmp = tempfile::Builder::new()
        .prefix("vcompare-crun-diff-")
        .tempdir()
        .unwrap();
    let hostname = "d1ff7e57c0de";

    // crun: bundle = rootfs + config.json.
    let bundle = tmp.path().join("bundle");
    make_rootfs(&bundle.join("rootfs"), &probe);
    crun_spec(hostname)
        .save(bundle.join("config.json"))
        .unwrap();
    let id = format!("vcompare-diff-{}", std::process::id());
    let script = format!(
        "umount /sys/fs/cgroup/unified 2>/dev/null; exec crun --root {} run --bundle {} {}",
        tmp.path().join("crun-state").display(),
        bundle.display(),
        id
    );
    let crun = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        crun.status.success(),
        "crun failed: {}",
        String::from_utf8_lossy(&crun.stderr)
    );
    let c = parse(&crun.stdout, "crun");

    // vcompare: the same directory as a one-layer image.
    let root = tmp.path().join("vcroot");
    let vc = |args: &[&str]| {
        common::test_host::host_cmd(env!("CARGO_BIN_EXE_vcompare"))
            .env("VCOMPARE_ROOT", &root)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let b = vc(&[
        "image",
        "build",
        bundle.join("rootfs").to_str().unwrap(),
        "--tag",
        "diff/probe:1",
        "--cmd",
        "/probe info",
    ]);
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let ours = vc(&[
        "run",
        "--rm",
        "--mode",
        "container",
        "--hostname",
        hostname,
        "diff/probe:1",
        "/probe",
        "info",
    ]);
    assert!(
        ours.status.success(),
        "vcompare failed: {}",
        String::from_utf8_lossy(&ours.stderr)
    );
    let v = parse(&ours.stdout, "vcompare");

    for key in ["pid", "hostname", "pids", "uid", "gid", "kernel_release"] {
        assert_eq!(
            c[key], v[key],
            "{key} differs: crun {} vs vcompare {}",
            c[key], v[key]
        );
    }
    assert_eq!(v["pid"], 1);
    assert_eq!(v["uid"], 0);
    assert_eq!(v["hostname"], hostname);
    assert_eq!(v["pids"], serde_json::json!([1]));
    // Both map container root to the same unprivileged host range.
    assert_eq!(
        c["uid_map"]
            .as_str()
            .map(|s| s.split_whitespace().collect::<Vec<_>>()),
        v["uid_map"]
            .as_str()
            .map(|s| s.split_whitespace().collect::<Vec<_>>())
    );
}
