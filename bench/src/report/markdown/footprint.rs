//! What an instance costs the host: the memory-per-instance, density and disk-per-instance
//! sections, and the memory medians and density slopes they, the targets and the charts read.

use std::fmt::Write as _;

use super::chart;
use super::format::{fmt_bytes, footnoted, vm_caveat};
use crate::harness::VMM_OVERHEAD_RULE;
use crate::results::{is_vm_subject, Results};
use crate::stats::{linear_fit, median, summarize_u64};

/// Median of a memory metric, bytes.
pub fn memory_median(r: &Results, subject: &str, metric: &str) -> Option<f64> {
    let s = r
        .memory
        .iter()
        .find(|s| s.subject == subject && s.metric == metric)?;
    median(
        &s.samples_bytes
            .iter()
            .map(|&x| x as f64)
            .collect::<Vec<_>>(),
    )
}

/// (slope of PSS sum, slope of MemAvailable drop) per instance, bytes.
pub fn density_slopes(r: &Results, subject: &str) -> (Option<f64>, Option<f64>) {
    match r.density.iter().find(|s| s.subject == subject) {
        Some(s) => series_slopes(s),
        None => (None, None),
    }
}

/// [`density_slopes`] of one series (also the snapshot suite's density series).
pub fn series_slopes(s: &crate::results::DensitySeries) -> (Option<f64>, Option<f64>) {
    let pss: Vec<(f64, f64)> = s
        .points
        .iter()
        .map(|p| (p.instances as f64, p.pss_sum_bytes as f64))
        .collect();
    let avail: Vec<(f64, f64)> = s
        .points
        .iter()
        .map(|p| (p.instances as f64, p.available_drop_bytes as f64))
        .collect();
    (
        linear_fit(&pss).map(|f| f.0),
        linear_fit(&avail).map(|f| f.0),
    )
}

/// Writes the "Memory per instance" section (table, VM caveat, the VMM overhead rule).
pub(super) fn memory_section(md: &mut String, r: &Results) {
    let _ = writeln!(md, "## Memory per instance\n\n| subject | metric | n | median | min | max | how |\n|---|---|---|---|---|---|---|");
    for s in &r.memory {
        let sm = summarize_u64(&s.samples_bytes);
        let f = |x: Option<f64>| x.map(fmt_bytes).unwrap_or_else(|| "–".into());
        let label = footnoted(&s.subject, &s.subject);
        let _ = writeln!(
            md,
            "| {label} | {} | {} | {} | {} | {} | {} |",
            s.metric,
            s.samples_bytes.len(),
            f(sm.map(|x| x.median)),
            f(sm.map(|x| x.min)),
            f(sm.map(|x| x.max)),
            s.definition
                .replace(VMM_OVERHEAD_RULE, "guest RAM and overhead as in ²")
        );
    }
    md.push('\n');
    if r.memory.iter().any(|s| is_vm_subject(&s.subject)) {
        let _ = writeln!(md, "¹ {}.\n", vm_caveat(r));
    }
    if r.memory
        .iter()
        .any(|s| s.definition.contains(VMM_OVERHEAD_RULE))
    {
        let _ = writeln!(md, "² One rule for every VMM (vcompare's, QEMU's; Firecracker's once measured), one function, the same instant: {VMM_OVERHEAD_RULE}. PSS counts shared pages (libraries) by share; RSS in full.\n");
    }
}

/// Writes the "Density" section (points, slopes per extra instance, chart).
pub(super) fn density_section(md: &mut String, r: &Results, charts: &[String]) {
    let _ = writeln!(md, "## Density\n\nN idle instances (`{}`) started, host `MemAvailable` before − after (noisy: other work on the machine moves it) and the summed PSS of the instances' host processes; the slope of a least-squares line is the memory per extra instance.\n", r.density[0].workload);
    let _ = writeln!(
        md,
        "| subject | instances | MemAvailable drop | PSS sum |\n|---|---|---|---|"
    );
    for s in &r.density {
        for p in &s.points {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                s.subject,
                p.instances,
                fmt_bytes(p.available_drop_bytes as f64),
                fmt_bytes(p.pss_sum_bytes as f64)
            );
        }
    }
    md.push('\n');
    for s in &r.density {
        let (pss, avail) = density_slopes(r, &s.subject);
        let f = |x: Option<f64>| x.map(fmt_bytes).unwrap_or_else(|| "–".into());
        let _ = writeln!(
            md,
            "- **{}**: {} per extra instance by PSS, {} by MemAvailable{}",
            s.subject,
            f(pss),
            f(avail),
            if is_vm_subject(&s.subject) {
                format!(" ({})", vm_caveat(r))
            } else {
                String::new()
            }
        );
    }
    md.push('\n');
    chart(
        md,
        charts,
        "memory_density",
        "memory per instance / density",
    );
}

/// Writes the "Disk per instance" section (table, chart).
pub(super) fn disk_section(md: &mut String, r: &Results, charts: &[String]) {
    let _ = writeln!(md, "## Disk per instance\n\n| subject | n | allocated (median) | apparent (median) | how |\n|---|---|---|---|---|");
    for s in &r.disk {
        let a = median(
            &s.allocated_bytes
                .iter()
                .map(|&x| x as f64)
                .collect::<Vec<_>>(),
        );
        let b = median(
            &s.apparent_bytes
                .iter()
                .map(|&x| x as f64)
                .collect::<Vec<_>>(),
        );
        let f = |x: Option<f64>| x.map(fmt_bytes).unwrap_or_else(|| "–".into());
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            s.subject,
            s.allocated_bytes.len(),
            f(a),
            f(b),
            s.definition
        );
    }
    md.push('\n');
    chart(md, charts, "disk", "disk per instance");
}
