//! The shared directories and disks section, and the share figures (medians, ratios and
//! slowdowns against the host) it, the comparison and the share chart read.

use std::fmt::Write as _;

use super::format::{fmt_ns, fmt_num, fmt_ratio, footnoted, vm_caveat};
use crate::results::{is_vm_subject, Results, ShareSeries};
use crate::stats::{median, ratio};

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
pub(super) fn section(md: &mut String, r: &Results) {
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
