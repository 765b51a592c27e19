//! `report.md`: tables of medians, p90, min, max and ratios, each figure next to the start and
//! end event it measures, the targets as measured ratios, the environment, and the charts.

use std::fmt::Write as _;

use crate::harness::VMM_OVERHEAD_RULE;
use crate::results::{is_vm_subject, Results, ShareSeries};
use crate::stats::{linear_fit, median, ratio, summarize, summarize_u64, Summary};
use crate::suites::startup::TAIL_SPAN;

/// "12.3 ms", "20.1 s", "850 µs", "95 ns": durations at a readable scale.
pub fn fmt_ns(ns: f64) -> String {
    let a = ns.abs();
    if a >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if a >= 1e6 {
        format!("{:.1} ms", ns / 1e6)
    } else if a >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

/// "2.47", "138.8", "1 014 363": plain numbers with thousands grouped for big values.
pub fn fmt_num(v: f64) -> String {
    if v.abs() < 1000.0 {
        return if v.abs() < 10.0 {
            format!("{v:.3}")
        } else {
            format!("{v:.1}")
        };
    }
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    if v < 0.0 {
        format!("-{out}")
    } else {
        out
    }
}

/// "0.93×", "5.4×", "7308×", and two significant digits below 0.1 ("0.00027×").
pub fn fmt_ratio(x: f64) -> String {
    if x > 0.0 && x < 0.1 {
        let decimals = (1.0 - x.log10().floor()) as usize;
        format!("{x:.decimals$}×")
    } else if x >= 100.0 {
        format!("{x:.0}×")
    } else if x >= 10.0 {
        format!("{x:.1}×")
    } else {
        format!("{x:.2}×")
    }
}

/// "3.2 MiB", "512 KiB", "17 B".
pub fn fmt_bytes(b: f64) -> String {
    let a = b.abs();
    if a >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", b / 1024f64.powi(3))
    } else if a >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / 1024f64.powi(2))
    } else if a >= 1024.0 {
        format!("{:.0} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

/// The label VM figures carry, from the recorded backend.
pub fn vm_caveat(r: &Results) -> String {
    format!("KVM backend: {}", r.environment.kvm_backend)
}

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
fn runs_median(
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

/// (slope of PSS sum, slope of MemAvailable drop) per instance, bytes.
pub fn density_slopes(r: &Results, subject: &str) -> (Option<f64>, Option<f64>) {
    let Some(s) = r.density.iter().find(|s| s.subject == subject) else {
        return (None, None);
    };
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

/// The share suite's figures, in table order: write and read throughput (MiB/s) and
/// metadata time (µs per file).
pub const SHARE_FIGURES: [&str; 3] = ["write", "read", "metadata"];

/// Samples of one share figure: MiB/s for "write" and "read", µs per file for "metadata".
pub fn share_samples(s: &ShareSeries, figure: &str) -> Vec<f64> {
    match figure {
        "write" => s.write_mib_s.clone(),
        "read" => s.read_mib_s.clone(),
        _ => s
            .metadata_ns
            .iter()
            .map(|&ns| ns as f64 / 1e3 / s.files.max(1) as f64)
            .collect(),
    }
}

/// Median of one share figure of `place` (see [`share_samples`]).
pub fn share_median(r: &Results, place: &str, figure: &str) -> Option<f64> {
    median(&share_samples(
        r.share.iter().find(|s| s.place == place)?,
        figure,
    ))
}

/// `place`'s figure ÷ the host's: for throughput above 1 is faster, for metadata time above
/// 1 is slower (the table shows each figure's own ratio, as the issue asks).
pub fn share_ratio(r: &Results, place: &str, figure: &str) -> Option<f64> {
    ratio(
        share_median(r, place, figure),
        share_median(r, "host", figure),
    )
}

/// How many times the host's cost `place` pays (time per MiB or per file ÷ host's), so all
/// three figures read "higher = slower" on one chart.
pub fn share_slowdown(r: &Results, place: &str, figure: &str) -> Option<f64> {
    let x = share_ratio(r, place, figure)?;
    match figure {
        "metadata" => Some(x),
        _ => (x > 0.0).then(|| 1.0 / x),
    }
}

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

/// The five targets, evaluated from one run's medians.
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
    let (vi, qi) = (
        mark_median(r, "vm", INIT_NAMES),
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
    );
    t.push(Target {
        what: "launch → init ≤ 0.8 × QEMU microvm's (same kernel, initramfs boot; start: the harness starts the instance, incl. the per-boot disk copy and spec; end: the init's first phase report)",
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
    t
}

fn verdict(m: Option<bool>) -> &'static str {
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
    s
}

fn summary_row(label: &str, s: Option<Summary>, f: &dyn Fn(f64) -> String) -> String {
    match s {
        Some(s) => format!(
            "| {label} | {} | {} | {} | {} | {} | {} |\n",
            s.n,
            f(s.median),
            f(s.p90),
            f(s.min),
            f(s.max),
            f(s.mean)
        ),
        None => format!("| {label} | 0 | – | – | – | – | – |\n"),
    }
}

/// A table row label: VM subjects' rows get the ¹ that points to the KVM backend note.
fn footnoted(label: &str, subject: &str) -> String {
    if is_vm_subject(subject) {
        format!("{label} ¹")
    } else {
        label.to_string()
    }
}

/// The probe's read modes (o_direct, buffered) over a place's runs, each once.
fn read_modes(s: &ShareSeries) -> String {
    let mut v: Vec<&str> = s
        .raw
        .iter()
        .filter_map(|l| l.get("read_mode").and_then(serde_json::Value::as_str))
        .collect();
    v.sort();
    v.dedup();
    if v.is_empty() {
        "not recorded".into()
    } else {
        v.join(", ")
    }
}

/// One cell: the median (MiB/s as a number, metadata as a time per file) and its ratio to
/// the host's, "–" when not measured.
fn share_cell(r: &Results, place: &str, figure: &str) -> String {
    let Some(v) = share_median(r, place, figure) else {
        return "–".into();
    };
    let v = match figure {
        "metadata" => fmt_ns(v * 1e3),
        _ => fmt_num(v),
    };
    match share_ratio(r, place, figure).filter(|_| place != "host") {
        Some(x) => format!("{v} ({})", fmt_ratio(x)),
        None => v,
    }
}

/// The share suite's table, the start and end event of every figure, and where each place
/// is; VM rows carry the KVM backend.
fn share_section(md: &mut String, r: &Results) {
    let _ = writeln!(md, "## Shared directories and disks\n\nOne `probe io PATH MIB --small-files N` per place and run, timed inside by the probe (monotonic clock). **write**: open (create) of a new file → `fsync` returned after MIB × 1 MiB `write`s; MiB/s = MIB ÷ that time. **read**: after opening the file again — with `O_DIRECT` where the probe uses it, else buffered after asking the kernel to drop the file's pages (each place's read mode is listed below) — → the read that returns end of file. **metadata**: first `create` → last `unlink` returned, for N files of 64 B created (create + write + close), then each `stat`ed, then each deleted, in a fresh directory; shown per file. Medians over the runs; the ratio in parentheses is the place's median ÷ the host's: **above 1 is faster than the host for MiB/s, slower for metadata time**. VM runs use smaller sizes (each MiB and file costs seconds in a nested guest); MiB/s and time per file stay comparable.\n");
    let _ = writeln!(md, "| place | file system | runs | MiB × files | write MiB/s (× host) | read MiB/s (× host) | metadata per file (× host) |\n|---|---|---|---|---|---|---|");
    for s in &r.share {
        let label = footnoted(&s.place, &s.subject);
        let _ = writeln!(
            md,
            "| {label} | {} | {} | {} × {} | {} | {} | {} |",
            s.fstype,
            s.write_mib_s.len(),
            s.mib,
            s.files,
            share_cell(r, &s.place, "write"),
            share_cell(r, &s.place, "read"),
            share_cell(r, &s.place, "metadata"),
        );
    }
    md.push('\n');
    for s in &r.share {
        let _ = writeln!(
            md,
            "- **{}** ({}): {}; `probe {}`; reads: {}",
            s.place,
            s.subject,
            s.definition,
            s.args.join(" "),
            read_modes(s)
        );
    }
    let _ = writeln!(md, "\n`HOSTDIR` is one directory under the data root, used by the host run, the container bind mount and the VM share alike; the volume lives under the data root too, so host, bind mount and volume are the same host file system. A container runs both of its places in one instance, a VM both of its places in one boot (order alternating between runs).\n");
    if r.share.iter().any(|s| is_vm_subject(&s.subject)) {
        let _ = writeln!(md, "¹ {}.\n", vm_caveat(r));
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
    let has = |stem: &str| charts.iter().any(|c| c == stem);
    let chart = |md: &mut String, stem: &str, alt: &str| {
        if has(stem) {
            let _ = writeln!(md, "![{alt}]({stem}.png)\n\n([SVG]({stem}.svg))\n");
        }
    };
    if !r.startup.is_empty() {
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
            &mut md,
            "startup_phases",
            "startup phase timeline, containers",
        );
        chart(&mut md, "startup_phases_vm", "startup phase timeline, VMs");
        chart(&mut md, "startup_cdf", "startup distribution (CDF)");
    }
    if !r.cpu.is_empty() {
        let _ = writeln!(md, "## CPU overhead\n\nThe same probe workloads, timed inside by the probe (monotonic clock around the loop), per operation; ratio = subject median / host median (1.00 = no overhead, higher = slower). VM runs use smaller sizes for syscalls, page faults and I/O (each costs far more in the nested guest); the per-operation figures stay comparable.\n");
        let _ = writeln!(md, "| workload | unit | host | container (× host) | vm ¹ (× host) |\n|---|---|---|---|---|");
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
        chart(&mut md, "cpu_overhead", "CPU overhead ratios");
    }
    if !r.memory.is_empty() {
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
    if !r.density.is_empty() {
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
        chart(&mut md, "memory_density", "memory per instance / density");
    }
    if !r.disk.is_empty() {
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
        chart(&mut md, "disk", "disk per instance");
    }
    if !r.share.is_empty() {
        share_section(&mut md, r);
        chart(&mut md, "share", "shared directories and disks vs host");
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

/// The keys of two runs' series, sorted and each once: the rows a comparison shows.
fn sorted_union<T>(a: &[T], b: &[T], key: impl Fn(&T) -> String) -> Vec<String> {
    let mut v: Vec<String> = a.iter().chain(b).map(key).collect();
    v.sort();
    v.dedup();
    v
}

/// Two runs side by side: headline medians of A and B and the ratio B / A.
pub fn compare(a: &Results, la: &str, b: &Results, lb: &str) -> String {
    let mut md = format!("# vcompare: {la} vs {lb}\n\n| | A: {la} | B: {lb} |\n|---|---|---|\n| date | {} | {} |\n| CPU | {} × {} | {} × {} |\n| KVM backend | {} | {} |\n| vcompare | {} | {} |\n\n",
        a.environment.date, b.environment.date, a.environment.cpus, a.environment.cpu_model, b.environment.cpus, b.environment.cpu_model,
        a.environment.kvm_backend, b.environment.kvm_backend, a.environment.vcompare_revision, b.environment.vcompare_revision);
    md.push_str("| figure | A | B | B / A |\n|---|---|---|---|\n");
    let mut row = |name: String, x: Option<f64>, y: Option<f64>, f: &dyn Fn(f64) -> String| {
        let c = |v: Option<f64>| v.map(f).unwrap_or_else(|| "–".into());
        md.push_str(&format!(
            "| {name} | {} | {} | {} |\n",
            c(x),
            c(y),
            ratio(y, x)
                .map(|r| format!("{r:.2}"))
                .unwrap_or_else(|| "–".into())
        ));
    };
    for s in &sorted_union(&a.startup, &b.startup, |s| s.subject.clone()) {
        row(
            format!("startup {s} (median)"),
            startup_median(a, s),
            startup_median(b, s),
            &fmt_ns,
        );
    }
    let mut keys: Vec<(String, String, String)> = a
        .cpu
        .iter()
        .chain(&b.cpu)
        .map(|s| (s.workload.clone(), s.subject.clone(), s.unit.clone()))
        .collect();
    keys.sort();
    keys.dedup();
    for (w, s, u) in keys {
        row(
            format!("{w} {s} ({u})"),
            cpu_median(a, &s, &w),
            cpu_median(b, &s, &w),
            &|v| format!("{v:.1}"),
        );
    }
    let mut mk: Vec<(String, String)> = a
        .memory
        .iter()
        .chain(&b.memory)
        .map(|s| (s.subject.clone(), s.metric.clone()))
        .collect();
    mk.sort();
    mk.dedup();
    for (s, m) in mk {
        row(
            format!("memory {s} {m}"),
            memory_median(a, &s, &m),
            memory_median(b, &s, &m),
            &fmt_bytes,
        );
    }
    for s in ["container", "vm"] {
        row(
            format!("density {s} (PSS per instance)"),
            density_slopes(a, s).0,
            density_slopes(b, s).0,
            &fmt_bytes,
        );
    }
    let disk = |r: &Results, s: &str| {
        r.disk.iter().find(|d| d.subject == s).and_then(|d| {
            median(
                &d.allocated_bytes
                    .iter()
                    .map(|&x| x as f64)
                    .collect::<Vec<_>>(),
            )
        })
    };
    for s in ["container", "vm"] {
        row(
            format!("disk {s} (allocated)"),
            disk(a, s),
            disk(b, s),
            &fmt_bytes,
        );
    }
    for p in &sorted_union(&a.share, &b.share, |s| s.place.clone()) {
        for (f, unit) in SHARE_FIGURES.iter().zip(["MiB/s", "MiB/s", "µs/file"]) {
            row(
                format!("share {p} {f} ({unit})"),
                share_median(a, p, f),
                share_median(b, p, f),
                &fmt_num,
            );
        }
    }
    if a.has_vm_numbers() || b.has_vm_numbers() {
        md.push_str(&format!(
            "\nVM figures carry their run's KVM backend: A {}, B {}.\n",
            a.environment.kvm_backend, b.environment.kvm_backend
        ));
    }
    let _ = summarize(&[]);
    md
}
