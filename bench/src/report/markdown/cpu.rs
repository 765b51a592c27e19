//! The CPU overhead section: per-workload probe costs of host, container and VM with ratios
//! to the host, and the CPU medians it and the targets read.

use std::fmt::Write as _;

use super::chart;
use super::format::{fmt_num, fmt_ratio, vm_caveat};
use crate::results::Results;
use crate::stats::{median, ratio};

/// Median per-op cost of a workload, in the series' unit.
pub fn cpu_median(r: &Results, subject: &str, workload: &str) -> Option<f64> {
    median(
        &r.cpu
            .iter()
            .find(|s| s.subject == subject && s.workload == workload)?
            .samples,
    )
}

/// Smallest per-op cost of a workload (least disturbed by neighbours).
pub fn cpu_min(r: &Results, subject: &str, workload: &str) -> Option<f64> {
    r.cpu
        .iter()
        .find(|s| s.subject == subject && s.workload == workload)?
        .samples
        .iter()
        .cloned()
        .reduce(f64::min)
}

/// Writes the "CPU overhead" section (table, probe arguments, I/O definitions, chart).
pub(super) fn section(md: &mut String, r: &Results, charts: &[String]) {
    let vm = r.has_vm_numbers();
    let _ = writeln!(md, "## CPU overhead\n\nThe same probe workloads, timed inside by the probe (monotonic clock around the loop), per operation; ratio = subject median / host median (1.00 = no overhead, higher = slower). VM runs use smaller sizes for syscalls, page faults and I/O (each costs far more in the nested guest); the per-operation figures stay comparable.\n");
    let _ = writeln!(
        md,
        "| workload | unit | host | container (× host) | vm ¹ (× host) |\n|---|---|---|---|---|"
    );
    let mut workloads: Vec<&str> = Vec::new();
    for s in &r.cpu {
        if !workloads.contains(&s.workload.as_str()) {
            workloads.push(&s.workload);
        }
    }
    for w in workloads {
        let unit = r
            .cpu
            .iter()
            .find(|s| s.workload == w)
            .map(|s| s.unit.clone())
            .unwrap_or_default();
        let h = cpu_median(r, "host", crate::suites::cpu::reference_workload(w));
        let cell = |sub: &str| match cpu_median(r, sub, w) {
            Some(v) => format!(
                "{}{}",
                fmt_num(v),
                ratio(Some(v), h)
                    .map(|x| format!(" ({})", fmt_ratio(x)))
                    .unwrap_or_default()
            ),
            None => "–".into(),
        };
        let args: Vec<String> = r
            .cpu
            .iter()
            .filter(|s| s.workload == w)
            .map(|s| format!("{}: `probe {}`", s.subject, s.args.join(" ")))
            .collect();
        let host_cell = match (h, w == crate::suites::cpu::IO_ROOTFS) {
            (Some(v), true) => format!("{} (the `io` row)", fmt_num(v)),
            (Some(v), false) => fmt_num(v),
            (None, _) => "–".into(),
        };
        let _ = writeln!(
            md,
            "| {w} | {unit} | {} | {} | {} |",
            host_cell,
            cell("container"),
            cell("vm")
        );
        let _ = args;
    }
    md.push('\n');
    for s in &r.cpu {
        let _ = writeln!(
            md,
            "- {} {}: `probe {}`, {} run{}",
            s.subject,
            s.workload,
            s.args.join(" "),
            s.samples.len(),
            if s.samples.len() == 1 { "" } else { "s" }
        );
    }
    let _ = writeln!(md, "\n`DIR` for `io` (like for like): {}. `DIR` for `{}` (a separate row, not like for like): {}. In an instance the two I/O runs alternate their order per round. The host runs the probe from the image's rootfs with the image's environment, so the binary and environment size are identical.", crate::suites::cpu::io_definition("io"), crate::suites::cpu::IO_ROOTFS, crate::suites::cpu::io_definition(crate::suites::cpu::IO_ROOTFS));
    md.push('\n');
    if vm {
        let _ = writeln!(md, "¹ {}.\n", vm_caveat(r));
    }
    chart(md, charts, "cpu_overhead", "CPU overhead ratios");
}
