//! `vcompare doctor`: what this host offers for each side of the comparison, one line each.
//! The same facts go into every benchmark report's environment block.

use std::path::Path;
use std::process::Command;

use serde::Serialize;

use super::Ctx;
use crate::cli::Format;

/// One fact about the host.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// Usable as vcompare needs it.
    pub ok: bool,
    /// What was found (versions, backend, controllers) or what is missing.
    pub detail: String,
}

fn check(name: &'static str, ok: bool, detail: impl Into<String>) -> Check {
    Check {
        name,
        ok,
        detail: detail.into(),
    }
}

/// First line of `cmd args` (stdout, else stderr), if the program runs.
pub fn version_of(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
}

/// How /dev/kvm is served here: the label every VM figure must carry.
pub fn kvm_backend() -> &'static str {
    if Path::new("/sys/module/kvm_pvm").exists() {
        "nested (PVM): guest kernel code emulated"
    } else if Path::new("/sys/module/kvm_intel").exists() {
        "hardware (Intel VMX)"
    } else if Path::new("/sys/module/kvm_amd").exists() {
        "hardware (AMD SVM)"
    } else {
        "unknown"
    }
}

/// Cgroup hierarchies mounted here: v1 controllers and the v2 mount point, if any.
pub fn cgroups() -> (Vec<String>, Option<String>) {
    let mut v1 = Vec::new();
    let mut v2 = None;
    // The kernel's controller names: a v1 mount's options also hold rw, relatime, name=….
    let controllers: Vec<String> = std::fs::read_to_string("/proc/cgroups")
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    for l in mounts.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        match f.get(2) {
            Some(&"cgroup") => {
                let opts = f.get(3).unwrap_or(&"");
                v1.extend(
                    opts.split(',')
                        .filter(|o| controllers.iter().any(|c| c == o))
                        .map(str::to_string),
                );
            }
            Some(&"cgroup2") => v2 = f.get(1).map(|s| s.to_string()),
            _ => {}
        }
    }
    v1.sort();
    v1.dedup();
    (v1, v2)
}

/// All checks.
pub fn checks() -> Vec<Check> {
    let mut out = Vec::new();
    let kvm = Path::new("/dev/kvm");
    let kvm_rw = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(kvm)
        .is_ok();
    out.push(check(
        "kvm",
        kvm_rw,
        if !kvm.exists() {
            "no /dev/kvm: VM mode unavailable (enable virtualisation or load kvm)".to_string()
        } else if !kvm_rw {
            "/dev/kvm exists but is not writable: run as root or join the kvm group".to_string()
        } else {
            format!("/dev/kvm usable, backend {}", kvm_backend())
        },
    ));
    let max_userns = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    out.push(check(
        "user namespaces",
        max_userns.is_some_and(|n| n > 0),
        format!(
            "max_user_namespaces = {}",
            max_userns
                .map(|n| n.to_string())
                .unwrap_or_else(|| "unknown".into())
        ),
    ));
    let (v1, v2) = cgroups();
    let v2_controllers = v2
        .as_ref()
        .and_then(|p| std::fs::read_to_string(Path::new(p).join("cgroup.controllers")).ok())
        .unwrap_or_default();
    let version = match (v1.is_empty(), v2.is_some()) {
        (false, true) => "hybrid (v1 + v2)",
        (false, false) => "v1",
        (true, true) => "v2",
        (true, false) => "none",
    };
    out.push(check(
        "cgroups",
        !v1.is_empty() || !v2_controllers.trim().is_empty(),
        format!(
            "{version}; v1 controllers: [{}]; v2 at {} with [{}]",
            v1.join(" "),
            v2.as_deref().unwrap_or("-"),
            v2_controllers.trim()
        ),
    ));
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    out.push(check(
        "overlayfs",
        fs.contains("overlay"),
        if fs.contains("overlay") {
            "available"
        } else {
            "missing: modprobe overlay"
        },
    ));
    let mkfs = version_of("mkfs.ext4", &["-V"]);
    out.push(check(
        "mkfs.ext4",
        mkfs.is_some(),
        mkfs.unwrap_or_else(|| "missing: apt-get install e2fsprogs".into()),
    ));
    let bb = version_of("/bin/busybox", &["--help"]).filter(|_| Path::new("/bin/busybox").exists());
    out.push(check(
        "busybox",
        bb.is_some(),
        bb.unwrap_or_else(|| "missing: apt-get install busybox-static".into()),
    ));
    let probe = crate::artifacts::find_static("probe");
    out.push(check(
        "probe",
        probe.is_ok(),
        match probe {
            Ok(p) => p.display().to_string(),
            Err(e) => e.to_string(),
        },
    ));
    for (name, cmd, args) in [
        ("crun", "crun", &["--version"][..]),
        ("runc", "runc", &["--version"][..]),
        ("qemu", "qemu-system-x86_64", &["--version"][..]),
        ("firecracker", "firecracker", &["--version"][..]),
    ] {
        let v = version_of(cmd, args);
        out.push(Check {
            name,
            ok: v.is_some(),
            detail: v.unwrap_or_else(|| format!("{cmd} not on PATH (peer skipped)")),
        });
    }
    out
}

/// `vcompare doctor`.
pub fn doctor(_ctx: &Ctx, format: Format) -> anyhow::Result<i32> {
    let c = checks();
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&c)?);
    } else {
        for x in &c {
            println!(
                "{:<4} {:<16} {}",
                if x.ok { "ok" } else { "--" },
                x.name,
                x.detail
            );
        }
    }
    Ok(0)
}
