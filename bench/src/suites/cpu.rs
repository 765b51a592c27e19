//! CPU overhead: the same probe workloads in host, container and VM, each timed *inside* by
//! the probe (monotonic clock around the loop), reported per operation and as a ratio to host.
//! All workloads of one run execute in one shell (`sh -c "probe cpu …; probe syscalls …"`), so
//! a VM pays one boot per run. VM sizes are smaller for syscalls / page faults / I/O (each costs
//! ~0.3–2.5 ms in a nested PVM guest); per-operation figures stay comparable.

use serde_json::Value;

use super::{
    alternating_rounds, cost, host_command, instance_timeout, run_instance, vm_failed, Plan,
};
use crate::error::Result;
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
        vm_args: &["{dir}", "4"],
        unit: "µs/MiB (write+fsync+read)",
    },
];

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

/// The shell script running every workload with `probe` at `probe_path`, I/O under `dir`.
pub fn script(probe_path: &str, dir: &str, vm: bool) -> String {
    WORKLOADS
        .iter()
        .map(|w| {
            let args: Vec<String> = (if vm { w.vm_args } else { w.args })
                .iter()
                .map(|a| a.replace("{dir}", dir))
                .collect();
            format!("{probe_path} {} {}", w.name, args.join(" "))
        })
        .collect::<Vec<_>>()
        .join(" && ")
}

fn args_of(name: &str, vm: bool) -> Vec<String> {
    let w = WORKLOADS.iter().find(|w| w.name == name);
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

fn once(h: &mut Harness, subject: &str) -> Result<Vec<Value>> {
    match subject {
        "host" => {
            let probe = h.rootfs.join("bin/probe");
            let dir = h.scratch.join("io");
            std::fs::create_dir_all(&dir).ok();
            let s = script(&probe.to_string_lossy(), &dir.to_string_lossy(), false);
            let mut c = host_command("/bin/sh");
            c.arg("-c").arg(&s);
            Ok(json_lines(&output(c, "host workloads")?.stdout))
        }
        mode => {
            let s = script("/bin/probe", "/", mode == "vm");
            let cmd = ["/bin/sh", "-c", &s];
            let out = run_instance(h, mode, &[], &cmd, "workloads", instance_timeout(mode))?;
            Ok(json_lines(&out))
        }
    }
}

fn record(results: &mut Results, subject: &str, lines: Vec<Value>) {
    for line in lines {
        let Some(w) = line
            .get("workload")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            continue;
        };
        let Some(v) = per_op(&line) else { continue };
        let unit = WORKLOADS
            .iter()
            .find(|x| x.name == w)
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

/// Runs the CPU suite: `runs` alternating host/container rounds, then `vm_runs` VM boots.
pub fn run(h: &mut Harness, plan: &Plan, results: &mut Results) {
    alternating_rounds(
        h,
        plan,
        results,
        "cpu",
        |_| cost::CPU_SCRIPT,
        |h, subject, _, results| {
            record(results, subject, once(h, subject)?);
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
        for round in 0..boots {
            let r = once(h, "vm");
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
