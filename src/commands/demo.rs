//! `vcompare demo`: the lecture in one command. Builds the default image if needed, runs the
//! probe's `info` on the host and inside a container and a microVM, prints what each sees side
//! by side, then runs a short startup + memory benchmark and writes a report with charts.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use super::table;
use super::Ctx;
use crate::cli::BenchArgs;
use crate::default_image::{self, REFERENCE};

/// Runs `vcompare <args>` (this binary, same data dir) and parses the probe's JSON output.
fn probe_in(ctx: &Ctx, mode: &str) -> Result<Value, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe)
        .arg("--root")
        .arg(&ctx.root)
        .args([
            "run",
            "--rm",
            "--mode",
            mode,
            REFERENCE,
            "/bin/probe",
            "info",
        ])
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .rev()
        .find_map(|l| {
            serde_json::from_str::<Value>(l.trim())
                .ok()
                .filter(Value::is_object)
        })
        .ok_or_else(|| {
            let err = String::from_utf8_lossy(&out.stderr);
            err.lines().last().unwrap_or("no output").to_string()
        })
}

fn host_probe() -> Result<Value, String> {
    let probe = crate::artifacts::find_static("probe").map_err(|e| e.to_string())?;
    let out = Command::new(probe)
        .arg("info")
        .output()
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

fn field(v: &Result<Value, String>, key: &str) -> String {
    match v {
        Err(_) => "-".into(),
        Ok(v) => match key {
            "pids" => v
                .get("pids")
                .and_then(Value::as_array)
                .map(|a| {
                    if a.len() > 6 {
                        format!("{} pids", a.len())
                    } else {
                        a.iter()
                            .map(|x| x.to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    }
                })
                .unwrap_or_else(|| "-".into()),
            "mem_total_bytes" => v
                .get(key)
                .and_then(Value::as_u64)
                .map(table::bytes)
                .unwrap_or_else(|| "-".into()),
            _ => match v.get(key) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => "-".into(),
                Some(x) => x.to_string(),
            },
        },
    }
}

/// The demo's short benchmark: startup and memory only, few runs, one VM boot, crun as the
/// peer; a few minutes on a nested host, a report with charts at the end.
fn short_bench(ctx: &Ctx, out: Option<PathBuf>, vm: bool) -> anyhow::Result<i32> {
    let args = BenchArgs {
        modes: if vm {
            "host,container,vm"
        } else {
            "host,container"
        }
        .into(),
        peers: "crun".into(),
        suite: "startup,memory".into(),
        runs: 5,
        vm_runs: Some(1),
        // One boot per VM figure keeps the demo to minutes; the report notes the cold boots.
        no_vm_warm_up: true,
        share: Default::default(),
        image: REFERENCE.into(),
        out: Some(out.unwrap_or_else(|| {
            let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                .to_string()
                .replace(':', "");
            PathBuf::from(format!("vcompare-demo-{stamp}"))
        })),
    };
    super::bench::bench(ctx, &args)
}

/// `vcompare demo`.
pub fn demo(ctx: &Ctx, out: Option<PathBuf>) -> anyhow::Result<i32> {
    let image = default_image::resolve_or_build(&ctx.store, REFERENCE)?;
    println!("== the image store ==");
    super::image::image(
        ctx,
        &crate::cli::ImageCommand::Ls {
            format: crate::cli::Format::Table,
            quiet: false,
        },
    )?;
    println!(
        "\n== the same probe, three ways (image {} {}) ==",
        image.reference,
        image.record.short_id()
    );
    let host = host_probe();
    let container = probe_in(ctx, "container");
    let has_kvm = std::path::Path::new("/dev/kvm").exists();
    let vm = if has_kvm {
        probe_in(ctx, "vm")
    } else {
        Err("no /dev/kvm on this host: showing the container half only".into())
    };
    let rows: Vec<Vec<String>> = [
        ("pid", "PID"),
        ("ppid", "parent PID"),
        ("uid", "uid"),
        ("hostname", "hostname"),
        ("kernel_release", "kernel release"),
        ("cpus_online_count", "CPUs"),
        ("mem_total_bytes", "memory total"),
        ("pids", "PIDs visible"),
        ("mount_count", "mounts"),
    ]
    .iter()
    .map(|(k, label)| {
        vec![
            label.to_string(),
            field(&host, k),
            field(&container, k),
            field(&vm, k),
        ]
    })
    .collect();
    table::print(&["", "HOST", "CONTAINER", "MICROVM"], &rows);
    for (name, r) in [("container", &container), ("microvm", &vm)] {
        if let Err(e) = r {
            println!("{name}: not shown: {e}");
        }
    }
    println!(
        "\nVM figures on this host: KVM backend {}.",
        super::doctor::kvm_backend()
    );
    println!("\n== a short startup + memory benchmark (full suite: `vcompare bench`) ==");
    short_bench(ctx, out, has_kvm && vm.is_ok())
}
