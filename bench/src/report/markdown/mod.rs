//! `report.md`: tables of medians, p90, min, max and ratios, each figure next to the start and
//! end event it measures, the targets as measured ratios, the environment, and the charts.
//!
//! This file holds [`render`], the report's frame (title, method, targets table, skipped
//! measurements, notes, environment) calling one section per suite; number formatting, the
//! targets, each section with the medians it reads, and the two-run comparison have their own
//! file below. Everything public is re-exported here, so `report::markdown::…` paths stay.

mod compare;
mod cpu;
mod exec;
mod footprint;
mod format;
mod net;
mod share;
mod snapshot;
mod startup;
mod targets;

pub use compare::compare;
pub use cpu::{cpu_median, cpu_min};
pub use exec::{exec_copy_rate, exec_figure, exec_ratio, EXEC_FIGURES};
pub use footprint::{density_slopes, memory_median};
pub use format::{fmt_bytes, fmt_ns, fmt_num, fmt_ratio, vm_caveat};
pub use net::{net_is_vm, net_median, net_ratio, net_samples, net_slowdown, NET_FIGURES};
pub use share::{share_median, share_ratio, share_samples, share_slowdown, SHARE_FIGURES};
pub use snapshot::{snapshot_density_slope, snapshot_figure, snapshot_ratio};
pub use startup::{
    mark_median, phase_median, removal_median, startup_median, startup_with_removal_median,
};
pub use targets::{targets, targets_text, Target, INIT_NAMES, VMM_SETUP_NAMES};

use std::fmt::Write as _;

use crate::results::Results;
use targets::verdict;

/// Embeds chart `stem` (PNG, with a link to the SVG) if the caller drew it.
fn chart(md: &mut String, charts: &[String], stem: &str, alt: &str) {
    if charts.iter().any(|c| c == stem) {
        let _ = writeln!(md, "![{alt}]({stem}.png)\n\n([SVG]({stem}.svg))\n");
    }
}

/// Optional chart files to embed (stem → exists), decided by the caller.
pub fn render(r: &Results, charts: &[String]) -> String {
    let mut md = String::new();
    let e = &r.environment;
    let vm = r.has_vm_numbers();
    let _ = writeln!(md, "# vcompare benchmark report\n");
    let _ = writeln!(
        md,
        "Measured {} on {} ({} CPUs, {} RAM), host kernel {}, vcompare {}.\n",
        e.date,
        e.cpu_model,
        e.cpus,
        fmt_bytes(e.memory_total_bytes as f64),
        e.host_kernel,
        e.vcompare_revision
    );
    if vm || e.kvm_backend.contains("PVM") {
        let _ = writeln!(md, "> **VM figures: {}.** They are not representative of hardware KVM: guest kernel code is emulated instruction by instruction on this host, guest user code runs natively.\n", e.kvm_backend);
    }
    for n in &e.machine_notes {
        let _ = writeln!(md, "> {n}\n");
    }
    let _ = writeln!(md, "## Method\n");
    let _ = writeln!(
        md,
        "- One run of `vcompare bench` (suites: {}; modes: {}; peers: {}; image `{}`), {:.0} s in total.\n- {} timed runs per host/container/peer figure; {} per VM figure (`--vm-runs`: a VM boot is slow on a nested host).\n- Warm-up, the same for every subject: host, container, crun and runc get one untimed round (or sample) in every suite before the measured ones; every VM subject (vcompare's VM and each QEMU subject) gets one untimed boot before its first measured boot of the run (unless the notes say `--no-vm-warm-up`; the image's VM disk is built before any of them).\n- Subjects alternate order every round (A B, B A, …), and so do the places inside one instance (share suite, the two I/O rows of the cpu suite), so drift hits all of them. Exits are seen through a pidfd (`pidfd_open` + `poll`) for every subject, so an end instant is exact, not late by a polling interval. Headline figures are **medians**; p90, min, max and mean are shown alongside; every raw sample is in `results.json`.\n",
        r.config.suites.join(", "), r.config.modes.join(", "), r.config.peers.join(", "), r.config.image, r.config.duration_secs, r.config.runs, r.config.vm_runs
    );
    let _ = writeln!(
        md,
        "## Targets\n\n| target | measured (medians, this run) | verdict |\n|---|---|---|"
    );
    for t in targets(r) {
        let _ = writeln!(md, "| {} | {} | {} |", t.what, t.measured, verdict(t.met));
    }
    md.push('\n');
    if !r.startup.is_empty() {
        startup::section(&mut md, r, charts);
    }
    if !r.cpu.is_empty() {
        cpu::section(&mut md, r, charts);
    }
    if !r.memory.is_empty() {
        footprint::memory_section(&mut md, r);
    }
    if !r.density.is_empty() {
        footprint::density_section(&mut md, r, charts);
    }
    if !r.disk.is_empty() {
        footprint::disk_section(&mut md, r, charts);
    }
    if !r.share.is_empty() {
        share::section(&mut md, r);
        chart(
            &mut md,
            charts,
            "share",
            "shared directories and disks vs host",
        );
    }
    if !r.net.is_empty() {
        net::section(&mut md, r);
        chart(&mut md, charts, "net", "network paths vs host loopback");
    }
    if !r.exec.is_empty() {
        exec::section(&mut md, r);
    }
    if r.snapshot.is_some() {
        snapshot::section(&mut md, r);
    }
    if !r.skipped.is_empty() {
        let _ = writeln!(md, "## Not measured in this run\n");
        for s in &r.skipped {
            let _ = writeln!(md, "- **{}**: {}", s.what, s.reason);
        }
        md.push('\n');
    }
    if !r.notes.is_empty() {
        let _ = writeln!(md, "## Notes\n");
        for n in &r.notes {
            let _ = writeln!(md, "- {n}");
        }
        md.push('\n');
    }
    let _ = writeln!(md, "## Environment\n\n| | |\n|---|---|\n| date | {} |\n| CPU | {} × {} |\n| memory | {} |\n| host kernel | {} |\n| cgroups | {} |\n| KVM backend | {} |\n| vcompare | {} |", e.date, e.cpus, e.cpu_model, fmt_bytes(e.memory_total_bytes as f64), e.host_kernel, e.cgroup, e.kvm_backend, e.vcompare_revision);
    for (p, v) in &e.peers {
        let _ = writeln!(md, "| {p} | {v} |");
    }
    md
}
