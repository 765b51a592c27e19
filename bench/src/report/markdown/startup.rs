//! The startup section: the wall-time table with run + removal, the phase breakdown, and the
//! startup medians it and the targets read. Separate as the report's largest section.

use std::fmt::Write as _;

use super::chart;
use super::format::{fmt_ns, footnoted, summary_row, vm_caveat};
use crate::results::Results;
use crate::stats::{median, summarize_u64};
use crate::suites::startup::TAIL_SPAN;

/// Median wall time of a startup subject, ns.
pub fn startup_median(r: &Results, subject: &str) -> Option<f64> {
    runs_median(r, subject, |x| Some(x.wall_ns))
}

/// Median of run + removal (see [`crate::results::StartupRun::with_removal_ns`]), ns: the
/// figure compared with crun/runc, whose `run` deletes the container itself.
pub fn startup_with_removal_median(r: &Results, subject: &str) -> Option<f64> {
    runs_median(r, subject, |x| Some(x.with_removal_ns()))
}

/// Median of the timed removal alone, ns (subjects whose run leaves the instance behind).
pub fn removal_median(r: &Results, subject: &str) -> Option<f64> {
    runs_median(r, subject, |x| x.remove_ns)
}

/// Median over `subject`'s startup runs of what `pick` takes from each (runs without it skipped).
pub(super) fn runs_median(
    r: &Results,
    subject: &str,
    pick: impl Fn(&crate::results::StartupRun) -> Option<u64>,
) -> Option<f64> {
    let s = r.startup.iter().find(|s| s.subject == subject)?;
    median(
        &s.runs
            .iter()
            .filter_map(|x| pick(x).map(|v| v as f64))
            .collect::<Vec<_>>(),
    )
}

/// Median duration of the phase span whose name contains one of `names`, ns.
pub fn phase_median(r: &Results, subject: &str, names: &[&str]) -> Option<f64> {
    let s = r.startup.iter().find(|s| s.subject == subject)?;
    let v: Vec<f64> = s
        .runs
        .iter()
        .filter_map(|run| {
            run.phases
                .iter()
                .find(|p| names.iter().any(|n| p.name == *n))
                .map(|p| p.duration_ns as f64)
        })
        .collect();
    median(&v)
}

/// Median of a named mark (ns since spawn), e.g. "init".
pub fn mark_median(r: &Results, subject: &str, names: &[&str]) -> Option<f64> {
    let s = r.startup.iter().find(|s| s.subject == subject)?;
    let v: Vec<f64> = s
        .runs
        .iter()
        .filter_map(|run| {
            names
                .iter()
                .find_map(|n| run.marks.get(*n))
                .map(|x| *x as f64)
        })
        .collect();
    median(&v)
}

/// Writes the "Startup" section (table, definitions, phase breakdown, charts).
pub(super) fn section(md: &mut String, r: &Results, charts: &[String]) {
    let vm = r.has_vm_numbers();
    let _ = writeln!(md, "## Startup\n\nWall time from spawning the command to observing its exit (trivial command `/bin/probe true`; exit seen through a pidfd). crun and runc delete the container inside `run`; vcompare's `run` leaves the instance for `inspect`, so its removal (`vcompare rm -f`, spawn → exit) is timed separately: the **run + removal** column is the like-for-like figure against crun/runc (and the one the container target uses); the table's median is the run alone.\n");
    let _ = writeln!(
        md,
        "| subject | n | median | p90 | min | max | mean | run + removal (median) |\n|---|---|---|---|---|---|---|---|"
    );
    for s in &r.startup {
        let label = footnoted(&s.subject, &s.subject);
        let row = summary_row(
            &label,
            summarize_u64(&s.runs.iter().map(|x| x.wall_ns).collect::<Vec<_>>()),
            &fmt_ns,
        );
        let both = if s.runs.iter().any(|x| x.remove_ns.is_some()) {
            startup_with_removal_median(r, &s.subject)
                .map(fmt_ns)
                .unwrap_or_else(|| "–".into())
        } else if s.subject == "crun" || s.subject == "runc" {
            "= median (delete inside `run`)".into()
        } else {
            "–".into()
        };
        md.push_str(&format!("{} {both} |\n", row.trim_end()));
    }
    md.push('\n');
    for s in &r.startup {
        let _ = writeln!(md, "- **{}**: {}", s.subject, s.definition);
    }
    if vm {
        let _ = writeln!(md, "\n¹ {}.", vm_caveat(r));
    }
    let _ = writeln!(md, "\n### Phase breakdown (medians)\n\nEach span ends at the backend's phase mark of that name and starts at the previous mark (the first at the spawn); `{TAIL_SPAN}` runs from the last mark to the exit. Marks are recorded by vcompare in ns since its process entered `main` and re-based on the harness's spawn instant with the `main` clock reading the instance record carries, so the first span includes exec and loader (where a record lacks that reading, the notes say so and the ≈1 ms before `main` is in `{TAIL_SPAN}` instead). Spans follow the order the marks arrived in each run; where that order varies (the container's `cgroup` and `namespaces` steps overlap), a span's median mixes both orders. Container marks: `cgroup` (cgroup created, limits written; the first span also holds CLI start-up and the image lookup), `namespaces` (clone with all namespace flags, id maps written), `rootfs` (overlay built), `mounts` (/proc, /sys, /dev, pivot_root — timestamped in the child), `exec` (execve succeeded; for containers `{TAIL_SPAN}` is the workload plus teardown). VM marks: `disk` (instance disk ready; includes CLI start-up), `vmm_launch` (the `vcompare-vmm` process entered `main`: the span is the CLI's preparation — the run's spec written onto the disk, job file — and the spawn/exec), `vmm_setup` (vCPU 0's first KVM_RUN: the span is VMM launch → first guest instruction, i.e. KVM VM/memory/irqchip/vCPU creation, kernel mapping; issue #4's ≤ 5 ms target), `kernel_boot` (the guest's init started; the kernel has mounted the root disk by then), `root_mounted`, `exec` (entrypoint exec'd), `workload` (entrypoint exited), `teardown` (VMM finished); `{TAIL_SPAN}` is then the vcompare process exiting. QEMU subjects: one span, launch → init, with the same start event as vcompare's (the harness starts the instance; the per-boot disk copy and spec are inside) and the same end event (the init's first phase report).\n");
    for s in r
        .startup
        .iter()
        .filter(|s| s.runs.iter().any(|x| !x.phases.is_empty()))
    {
        let _ = write!(md, "**{}**: ", s.subject);
        let parts: Vec<String> = s
            .phase_medians_ns()
            .into_iter()
            .map(|(n, m)| format!("{} {}", n, m.map(fmt_ns).unwrap_or_else(|| "–".into())))
            .collect();
        let _ = writeln!(md, "{}\n", parts.join(" → "));
    }
    chart(
        md,
        charts,
        "startup_phases",
        "startup phase timeline, containers",
    );
    chart(
        md,
        charts,
        "startup_phases_vm",
        "startup phase timeline, VMs",
    );
    chart(md, charts, "startup_cdf", "startup distribution (CDF)");
}
