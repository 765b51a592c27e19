//! The targets the issues set, evaluated as measured ratios from one run's medians, for the
//! report's table and the terminal: five always, and the network suite's two when it ran.
//! Separate because they read every suite's figures.

use std::fmt::Write as _;

use super::cpu::{cpu_median, cpu_min};
use super::footprint::memory_median;
use super::format::{fmt_bytes, fmt_ns, fmt_num, fmt_ratio};
use super::net::{net_is_vm, net_median, net_ratio};
use super::startup::{
    mark_median, phase_median, removal_median, startup_median, startup_with_removal_median,
};
use crate::results::Results;
use crate::stats::ratio;
use crate::suites::net::paths::{CONTAINER_PUBLISHED, LOOPBACK};

/// Network target: host → container through `-p` at most this × loopback's p50 latency.
pub const NET_LATENCY_MAX_RATIO: f64 = 1.3;
/// Network target: host → container through `-p` at least this × loopback's bulk throughput.
pub const NET_THROUGHPUT_MIN_RATIO: f64 = 0.8;

/// VM phase names that mean "launch → first guest instruction" (VMM setup).
pub const VMM_SETUP_NAMES: &[&str] = &["vmm_setup", "vmm-setup", "first_instruction"];
/// Mark names that mean "init started" in a VM.
/// (vcompare's VM records init start as the end of its `kernel_boot` phase.)
pub const INIT_NAMES: &[&str] = &["kernel_boot", "init", "init_start"];

/// One target row: what, measured, target, verdict.
pub struct Target {
    /// The target as the issue states it.
    pub what: &'static str,
    /// Measured figure(s) as text, or why not measured.
    pub measured: String,
    /// Some(true) met, Some(false) missed, None not measured.
    pub met: Option<bool>,
}

/// The network suite's two targets (only when it ran: other reports would carry two n/a
/// rows for a suite they did not select).
fn net_targets(r: &Results) -> Vec<Target> {
    if r.net.is_empty() {
        return Vec::new();
    }
    let (c, l) = (CONTAINER_PUBLISHED, LOOPBACK);
    let p50 = net_ratio(r, c, "p50");
    let p99 = net_ratio(r, c, "p99")
        .map(|x| format!("; p99 {}", fmt_ratio(x)))
        .unwrap_or_default();
    let bulk = net_ratio(r, c, "bulk");
    let both =
        |fig: &str, f: &dyn Fn(f64) -> String| match (net_median(r, c, fig), net_median(r, l, fig))
        {
            (Some(a), Some(b)) => Some((f(a), f(b))),
            _ => None,
        };
    vec![
        Target {
            what: "host → container through `-p`: TCP request/response p50 ≤ 1.3 × host loopback's",
            measured: match (both("p50", &fmt_ns), p50) {
                (Some((a, b)), Some(x)) => format!(
                    "{a} vs loopback {b} → ratio {x:.2}{p99} (medians over runs of each run's p50)"
                ),
                _ => "not measured (needs the loopback and container -p paths)".into(),
            },
            met: p50.map(|x| x <= NET_LATENCY_MAX_RATIO),
        },
        Target {
            what: "host → container through `-p`: TCP bulk throughput ≥ 0.8 × host loopback's",
            measured: match (both("bulk", &|v| format!("{} MiB/s", fmt_num(v))), bulk) {
                (Some((a, b)), Some(x)) => format!("{a} vs loopback {b} → ratio {x:.2}"),
                _ => "not measured (needs the loopback and container -p paths)".into(),
            },
            met: bulk.map(|x| x >= NET_THROUGHPUT_MIN_RATIO),
        },
    ]
}

/// The VM network paths as measured, for the terminal: no target (the guest's TCP stack runs
/// in the emulator on a nested host), but printed next to the goals so nobody reads them as
/// hardware-KVM figures.
pub fn net_vm_lines(r: &Results) -> Vec<String> {
    r.net
        .iter()
        .filter(|s| net_is_vm(s))
        .map(|s| {
            let f = |fig: &str, fmt: &dyn Fn(f64) -> String| {
                net_median(r, &s.path, fig)
                    .map(|v| {
                        let x = net_ratio(r, &s.path, fig)
                            .map(|x| format!(" ({} loopback)", fmt_ratio(x)))
                            .unwrap_or_default();
                        format!("{}{x}", fmt(v))
                    })
                    .unwrap_or_else(|| "–".into())
            };
            format!(
                "{}: p50 {}, p99 {}, bulk {} — no target; KVM backend: {}, so not a hardware-KVM figure",
                s.path,
                f("p50", &fmt_ns),
                f("p99", &fmt_ns),
                f("bulk", &|v| format!("{} MiB/s", fmt_num(v))),
                r.environment.kvm_backend
            )
        })
        .collect()
}

/// Every target, evaluated from one run's medians.
pub fn targets(r: &Results) -> Vec<Target> {
    let mut t = Vec::new();
    // Like for like: crun's `run` deletes the container, so ours counts `vcompare rm` too.
    let (c, crun) = (
        startup_with_removal_median(r, "container"),
        startup_median(r, "crun"),
    );
    let run_only = startup_median(r, "container");
    t.push(Target {
        what: "container startup median ≤ crun's (run + removal vs `crun run`, which deletes)",
        measured: match (c, crun) {
            (Some(c), Some(k)) => format!(
                "{} (run {} + `vcompare rm` {}) vs crun {} → ratio {:.2}",
                fmt_ns(c),
                run_only.map(fmt_ns).unwrap_or_else(|| "–".into()),
                removal_median(r, "container")
                    .map(fmt_ns)
                    .unwrap_or_else(|| "–".into()),
                fmt_ns(k),
                c / k
            ),
            _ => "not measured (needs container and crun startup)".into(),
        },
        met: ratio(c, crun).map(|x| x <= 1.0),
    });
    let setup = phase_median(r, "vm", VMM_SETUP_NAMES);
    t.push(Target {
        what: "VMM setup (launch → first guest instruction) ≤ 5 ms",
        measured: setup
            .map(|s| {
                let prep = phase_median(r, "vm", &["vmm_launch"])
                    .map(|p| format!("; before it, the CLI's preparation and the spawn (`vmm_launch` span: instance disk ready → VMM `main`) took {}", fmt_ns(p)))
                    .unwrap_or_default();
                format!("{} (median of the VM's `vmm_setup` span: VMM process launch, CLOCK_MONOTONIC at the top of `vcompare-vmm`'s `main` → vCPU 0's first KVM_RUN{prep})", fmt_ns(s))
            })
            .unwrap_or_else(|| "not measured (no VM run with a vmm_setup phase mark)".into()),
        met: setup.map(|s| s <= 5e6),
    });
    let ov = memory_median(r, "vm", "vmm_overhead_rss");
    let pss = |subject: &str| {
        memory_median(r, subject, "vmm_overhead_pss")
            .map(|p| format!(", PSS {}", fmt_bytes(p)))
            .unwrap_or_default()
    };
    let qov = memory_median(r, "qemu", "vmm_overhead_rss")
        .map(|q| format!("QEMU {}{}", fmt_bytes(q), pss("qemu")));
    t.push(Target {
        what: "VMM memory overhead ≤ 3 MiB RSS (same rule and instant for every VMM)",
        measured: ov
            .map(|o| {
                format!(
                    "{}{}{}",
                    fmt_bytes(o),
                    pss("vm"),
                    qov.as_ref().map(|q| format!(" ({q})")).unwrap_or_default()
                )
            })
            .unwrap_or_else(|| {
                format!(
                    "not measured (no VM memory sample){}",
                    qov.as_ref().map(|q| format!("; {q}")).unwrap_or_default()
                )
            }),
        met: ov.map(|o| o <= 3.0 * 1024.0 * 1024.0),
    });
    // The peers boot cold: compared with vcompare's cold boot (`vm-cold`; older results,
    // taken before VM snapshots, have only `vm`, which was a cold boot then).
    let cold = if r.startup.iter().any(|s| s.subject == "vm-cold") {
        "vm-cold"
    } else {
        "vm"
    };
    let (vi, qi) = (
        mark_median(r, cold, INIT_NAMES),
        mark_median(r, "qemu", &["init"]),
    );
    let other = |name: &str, what: &str| match (vi, mark_median(r, name, &["init"])) {
        (Some(v), Some(q)) => format!("; {what} {} → ratio {:.2}", fmt_ns(q), v / q),
        _ => String::new(),
    };
    let same_boot = other(
        "qemu-rootdisk",
        "QEMU booted exactly as vcompare boots (root disk, no initramfs)",
    ) + &other(
        "qemu-reference",
        "QEMU booting the reference kernel named in the notes (initramfs)",
    ) + &other(
        "firecracker",
        "Firecracker booted as vcompare boots (root disk, same kernel and arguments)",
    );
    t.push(Target {
        what: "launch → init of a cold boot (`vm-cold`) ≤ 0.8 × QEMU microvm's (same kernel, initramfs boot; start: the harness starts the instance, incl. the per-boot disk copy and spec; end: the init's first phase report)",
        measured: match (vi, qi) {
            (Some(v), Some(q)) => {
                format!(
                    "{} vs QEMU {} → ratio {:.2}{same_boot}",
                    fmt_ns(v),
                    fmt_ns(q),
                    v / q
                )
            }
            (None, Some(q)) => format!("QEMU {}; vcompare VM not measured", fmt_ns(q)),
            _ => "not measured".into(),
        },
        met: ratio(vi, qi).map(|x| x <= 0.8),
    });
    // Best of N: on a shared machine noise only ever adds time to a compute loop, so the
    // minimum is the least disturbed estimate; the medians are shown too.
    let (cc, hc) = (cpu_min(r, "container", "cpu"), cpu_min(r, "host", "cpu"));
    let (cm, hm) = (
        cpu_median(r, "container", "cpu"),
        cpu_median(r, "host", "cpu"),
    );
    t.push(Target {
        what: "compute-bound probe in the container within 2 % of host",
        measured: match (cc, hc) {
            (Some(c), Some(h)) => format!(
                "best of {}: {:.3} vs {:.3} ns/iteration → {:+.2} % (medians {:+.2} %)",
                r.cpu
                    .iter()
                    .find(|s| s.subject == "host" && s.workload == "cpu")
                    .map(|s| s.samples.len())
                    .unwrap_or(0),
                c,
                h,
                (c / h - 1.0) * 100.0,
                ratio(cm, hm).map(|x| (x - 1.0) * 100.0).unwrap_or(f64::NAN)
            ),
            _ => "not measured".into(),
        },
        met: ratio(cc, hc).map(|x| (x - 1.0).abs() <= 0.02),
    });
    t.extend(net_targets(r));
    t
}

/// The verdict cell of the report's targets table.
pub(super) fn verdict(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "n/a",
    }
}

/// The targets as plain text for the terminal at the end of `vcompare bench`.
pub fn targets_text(r: &Results) -> String {
    let mut s = String::from("targets (medians of this run):\n");
    for t in targets(r) {
        let _ = writeln!(
            s,
            "  [{}] {}: {}",
            match t.met {
                Some(true) => "met ",
                Some(false) => "MISS",
                None => "n/a ",
            },
            t.what,
            t.measured
        );
    }
    for line in net_vm_lines(r) {
        let _ = writeln!(s, "  [info] {line}");
    }
    s
}
