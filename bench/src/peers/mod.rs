//! Other runtimes measured side by side with vcompare in the same run: crun and runc for
//! containers, QEMU microvm and Firecracker for VMs. A peer that is not installed is
//! skipped with a note, never an error.

pub mod crun;
pub mod firecracker;
pub mod qemu;
pub mod runc;

use std::path::{Path, PathBuf};

use oci_spec::runtime::{ProcessBuilder, RootBuilder, Spec};

use crate::error::{io_at, BenchError, Result};

/// `PATH` lookup of `prog`, so a missing peer is detected before any measurement.
pub fn which(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// First non-empty line of `prog ARGS` (its version), if it runs.
pub fn version(prog: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(prog).args(args).output().ok()?;
    let t = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    String::from_utf8_lossy(&t)
        .lines()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
}

/// Writes an OCI bundle at `dir` (config.json only) whose read-only root is `rootfs` and whose
/// process is `args`: the same image and command vcompare runs, for crun and runc. The spec is
/// the OCI default (pid, net, ipc, uts, mount namespaces, the usual /proc /dev /sys mounts, no
/// user namespace) — stated in the report next to the peers' numbers.
pub fn write_bundle(dir: &Path, rootfs: &Path, args: &[&str]) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(io_at(dir))?;
    let spec_err = |e: oci_spec::OciSpecError| BenchError::Parse {
        what: "OCI runtime spec".into(),
        detail: e.to_string(),
    };
    let mut spec = Spec::default();
    let mut process = spec
        .process()
        .clone()
        .unwrap_or_else(|| ProcessBuilder::default().build().expect("default process"));
    process.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
    process.set_terminal(Some(false));
    spec.set_process(Some(process));
    spec.set_root(Some(
        RootBuilder::default()
            .path(rootfs)
            .readonly(true)
            .build()
            .map_err(spec_err)?,
    ));
    spec.set_hostname(Some("vcompare-peer".into()));
    let path = dir.join("config.json");
    let text = serde_json::to_string_pretty(&spec).map_err(|source| BenchError::Json {
        path: path.clone(),
        source,
    })?;
    std::fs::write(&path, text).map_err(io_at(&path))?;
    Ok(dir.to_path_buf())
}
