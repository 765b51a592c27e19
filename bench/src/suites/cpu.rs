//! CPU overhead: the same probe workloads in host, container and VM, each timed *inside* by
//! the probe (monotonic clock around the loop), reported per operation and as a ratio to host.
//! All workloads of one run execute in one shell (`sh -c "probe cpu …; probe syscalls …"`), so
//! a VM pays one boot per run. VM sizes are smaller for syscalls / page faults / I/O (each costs
//! ~0.3–2.5 ms in a nested PVM guest); per-operation figures stay comparable.
//!
//! File I/O is measured like for like: `io` writes into the same host directory (on the data
//! root's file system) everywhere — directly on the host, bind-mounted into the container
//! (`-v DIR:/io`), shared into the VM over virtio-9p (`-v DIR:/io`). The instance's own root
//! file system is a separate, labelled row, `io-rootfs` (container: `/` on overlay, whose upper
//! dir lies on the same host file system; VM: `/` on ext4 on virtio-blk), with the host
//! directory as its reference. In an instance the two runs alternate their order per round.

use serde_json::Value;

use super::{
    alternating_rounds, cost, host_command, instance_timeout, run_instance, vm_failed, Plan,
};
use crate::error::{io_at, Result};
use crate::harness::{json_lines, output, Harness};
use crate::results::{CpuSeries, Results};

/// One workload: name, probe arguments for host/container, for VM, and how to get per-op cost.
pub struct Workload {
    /// Probe command word.
    pub name: &'static str,
    /// Arguments after the command word for host and container (`{dir}` = I/O directory).
    pub args: &'static [&'static str],
    /// Arguments in a VM guest (smaller where the nested guest is slow).
    pub vm_args: &'static [&'static str],
    /// Unit of the per-operation figure.
    pub unit: &'static str,
}

/// The workloads, in the order they run.
pub const WORKLOADS: &[Workload] = &[
    Workload {
        name: "cpu",
        args: &["50000000"],
        vm_args: &["50000000"],
        unit: "ns/iteration",
    },
    Workload {
        name: "syscalls",
        args: &["200000"],
        vm_args: &["2000"],
        unit: "ns/syscall",
    },
    Workload {
        name: "pagefaults",
        args: &["64"],
        vm_args: &["4"],
        unit: "ns/page",
    },
    Workload {
        name: "io",
        args: &["{dir}", "16"],
        // 2 MiB per place in a VM: a boot measures two places (shared dir, root fs) and every
        // MiB costs seconds in a nested guest; the per-MiB figure stays comparable.
        vm_args: &["{dir}", "2"],
        unit: "µs/MiB (write+fsync+read)",
    },
];

/// Where the shared host I/O directory appears inside instances.
pub const IO_PATH: &str = "/io";
/// The workload row of I/O on an instance's own root file system.
pub const IO_ROOTFS: &str = "io-rootfs";

/// What each I/O row measures, stated in the report.
pub fn io_definition(workload: &str) -> &'static str {
    if workload == IO_ROOTFS {
        "the instance's own root file system: container `/` (overlay; upper dir on the data root's file system), VM `/` (ext4 on virtio-blk, the instance's disk copy); ratio to the host's `io` row (host directory)"
    } else {
        "one host directory on the data root's file system, the same for every subject: host: the directory itself; container: bind-mounted at /io (`-v DIR:/io`); VM: shared at /io over virtio-9p (`-v DIR:/io`)"
    }
}

/// The reference row a workload's ratio is taken against (the host has no instance root fs).
pub fn reference_workload(workload: &str) -> &str {
    if workload == IO_ROOTFS {
        "io"
    } else {
        workload
    }
}

/// Per-operation cost from one probe JSON line.
pub fn per_op(line: &Value) -> Option<f64> {
    let f = |k: &str| line.get(k).and_then(Value::as_f64);
    match line.get("workload")?.as_str()? {
        "cpu" => f("ns_per_iter"),
        "syscalls" => f("ns_per_call"),
        "pagefaults" => f("ns_per_page"),
        "io" => Some(f("elapsed_ns")? / f("mib")?.max(1.0) / 1000.0),
        _ => None,
    }
}

/// The shell script running every workload with `probe` at `probe_path`, I/O under each of
/// `io_dirs` in that order (one `probe io` per directory).
pub fn script(probe_path: &str, io_dirs: &[&str], vm: bool) -> String {
    WORKLOADS
        .iter()
        .flat_map(|w| {
            let dirs: Vec<&str> = if w.name == "io" {
                io_dirs.to_vec()
            } else {
                vec![""]
            };
            dirs.into_iter().map(move |dir| {
                let args: Vec<String> = (if vm { w.vm_args } else { w.args })
                    .iter()
                    .map(|a| a.replace("{dir}", dir))
                    .collect();
                format!("{probe_path} {} {}", w.name, args.join(" "))
            })
        })
        .collect::<Vec<_>>()
        .join(" && ")
}

fn args_of(name: &str, vm: bool) -> Vec<String> {
    let w = WORKLOADS
        .iter()
        .find(|w| w.name == reference_workload(name));
    w.map(|w| {
        std::iter::once(w.name.to_string())
            .chain(
                (if vm { w.vm_args } else { w.args })
                    .iter()
                    .map(|s| s.replace("{dir}", "DIR")),
            )
            .collect()
    })
    .unwrap_or_default()
}

/// The host directory every subject's `io` row writes into, world-writable (a container's
/// root maps to an unprivileged host uid).
fn io_dir(h: &Harness) -> Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dir = h.scratch.join("io");
    std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).map_err(io_at(&dir))?;
    Ok(dir)
}

fn once(h: &mut Harness, subject: &str, round: usize) -> Result<Vec<Value>> {
    let dir = io_dir(h)?;
    match subject {
        "host" => {
            let probe = h.rootfs.join("bin/probe");
            let s = script(&probe.to_string_lossy(), &[&dir.to_string_lossy()], false);
            let mut c = host_command("/bin/sh");
            c.arg("-c").arg(&s);
            Ok(json_lines(&output(c, "host workloads")?.stdout))
        }
        mode => {
            let mut dirs = vec![IO_PATH, "/"];
            dirs.rotate_left(round % 2);
            let s = script("/bin/probe", &dirs, mode == "vm");
            let cmd = ["/bin/sh", "-c", &s];
            let vol = format!("{}:{IO_PATH}", dir.display());
            let out = run_instance(
                h,
                mode,
                &["-v", &vol],
                &cmd,
                "workloads",
                instance_timeout(mode),
            )?;
            Ok(json_lines(&out))
        }
    }
}

/// The row of a probe line: `io` lines written under `/` in an instance are `io-rootfs`.
fn workload_of(subject: &str, line: &Value) -> Option<String> {
    let w = line.get("workload")?.as_str()?;
    let path = line.get("path").and_then(Value::as_str).unwrap_or("");
    Some(if w == "io" && subject != "host" && path == "/" {
        IO_ROOTFS.to_string()
    } else {
        w.to_string()
    })
}

fn record(results: &mut Results, subject: &str, lines: Vec<Value>) {
    for line in lines {
        let Some(w) = workload_of(subject, &line) else {
            continue;
        };
        let Some(v) = per_op(&line) else { continue };
        let unit = WORKLOADS
            .iter()
            .find(|x| x.name == reference_workload(&w))
            .map(|x| x.unit)
            .unwrap_or("ns/op");
        let i = match results
            .cpu
            .iter()
            .position(|s| s.subject == subject && s.workload == w)
        {
            Some(i) => i,
            None => {
                results.cpu.push(CpuSeries {
                    workload: w.clone(),
                    subject: subject.into(),
                    args: args_of(&w, subject == "vm"),
                    unit: unit.into(),
                    samples: Vec::new(),
                    raw: Vec::new(),
                });
                results.cpu.len() - 1
            }
        };
        results.cpu[i].samples.push(v);
        results.cpu[i].raw.push(line);
    }
}

/// VM boots for the CPU suite: ⌈vm_runs / 3⌉ (one with the default 3): every workload runs
/// many operations inside one boot, and each boot costs tens of seconds on a nested host.
pub fn vm_boots(vm_runs: usize) -> usize {
    vm_runs.div_ceil(3).max(1)
}

/// Runs the CPU suite: a warm-up and `runs` alternating host/container rounds, then (after
/// the VM warm-up boot) ⌈vm_runs / 3⌉ VM boots.
pub fn run(h: &mut Harness, plan: &Plan, results: &mut Results) {
    alternating_rounds(
        h,
        plan,
        results,
        "cpu",
        |_| cost::CPU_SCRIPT,
        |h, subject, round, results| {
            record(results, subject, once(h, subject, round)?);
            Ok(())
        },
    );
    if super::vm_usable(
        h,
        plan,
        results,
        "cpu",
        vm_boots(h.vm_runs) as u64 * cost::VM,
    ) {
        let boots = vm_boots(h.vm_runs);
        super::vm_warm_up(h, results, "vm");
        for round in 0..boots {
            let r = once(h, "vm", round);
            h.advance(cost::VM, &format!("cpu vm {}/{boots}", round + 1));
            match r {
                Ok(lines) => record(results, "vm", lines),
                Err(e) => {
                    vm_failed(h, results, "cpu", &e);
                    break;
                }
            }
        }
    }
}
