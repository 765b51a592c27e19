//! The `## Exec` section and the exec figures (round-trip percentiles over all samples, median
//! output rate over runs, VM ÷ container ratios) that it reads, in one place.

use std::fmt::Write as _;

use super::format::{fmt_ns, fmt_num, fmt_ratio, footnoted, vm_caveat};
use crate::results::{is_vm_subject, ExecSeries, Results};
use crate::stats::{median, percentile, ratio};

/// The exec figures, in table order: round-trip p50 and p99 (ns), output bytes/s.
pub const EXEC_FIGURES: [&str; 3] = ["p50", "p99", "bytes_per_s"];

/// `subject`'s series, if it was measured.
fn series<'a>(r: &'a Results, subject: &str) -> Option<&'a ExecSeries> {
    r.exec.iter().find(|s| s.subject == subject)
}

/// One figure of `subject`: "p50" / "p99" (nearest-rank over every measured round trip, ns),
/// "bytes_per_s" (median over output runs), "output_ns" (median wall time of an output run).
pub fn exec_figure(r: &Results, subject: &str, figure: &str) -> Option<f64> {
    let s = series(r, subject)?;
    let rt: Vec<f64> = s.round_trip_ns.iter().map(|&x| x as f64).collect();
    match figure {
        "p50" => percentile(&rt, 50.0),
        "p99" => percentile(&rt, 99.0),
        "bytes_per_s" => median(&s.stream.iter().map(|x| x.bytes_per_s).collect::<Vec<_>>()),
        "output_ns" => median(
            &s.stream
                .iter()
                .map(|x| x.wall_ns as f64)
                .collect::<Vec<_>>(),
        ),
        _ => None,
    }
}

/// VM ÷ container for `figure`, from the same run: above 1 is slower for the round trip,
/// faster for bytes/s.
pub fn exec_ratio(r: &Results, figure: &str) -> Option<f64> {
    ratio(
        exec_figure(r, "vm", figure),
        exec_figure(r, "container", figure),
    )
}

/// Output bytes ÷ (median output run − round-trip p50): the rate of the copy alone, if the
/// fixed cost of an exec is what a round trip costs. An estimate, labelled so in the table.
pub fn exec_copy_rate(r: &Results, subject: &str) -> Option<f64> {
    let s = series(r, subject)?;
    let copy_ns = exec_figure(r, subject, "output_ns")? - exec_figure(r, subject, "p50")?;
    (copy_ns > 0.0).then(|| s.stream_bytes as f64 * 1e9 / copy_ns)
}

/// "1 234 MiB/s", "0.062 MiB/s": bytes/s shown in MiB/s like every throughput in the report.
fn mib_s(bytes_per_s: f64) -> String {
    format!("{} MiB/s", fmt_num(bytes_per_s / (1u64 << 20) as f64))
}

/// A cell, "–" when not measured.
fn or_dash(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "–".into())
}

/// The exec section: method, the table with the VM ÷ container row, the commands.
pub(super) fn section(md: &mut String, r: &Results) {
    let _ = writeln!(md, "## Exec\n\n`vcompare exec` into a running instance, timed from outside as every CLI spawn: one detached instance per mode (`run --network none -d … /bin/probe sleep 1000000`, started once, not timed), one untimed warm-up round, then the measured rounds, modes rotating every round. **round trip**: spawn of `vcompare exec NAME /bin/probe true` → its exit (pidfd); it contains the CLI's own start, the way into the instance (container: its namespaces and cgroup; VM: the VMM's vsock socket and the guest agent's handshake), the process's start and exit there, and the status back; p50 and p99 are nearest-rank over every measured call of the run. **output**: `vcompare exec NAME /bin/dd if=/dev/zero bs=65536 count=N status=none`, the CLI's stdout a pipe the harness reads to EOF and counts (each run must deliver exactly N × 64 KiB); bytes/s = those bytes ÷ (spawn → the later of the exit and EOF), so it contains a round trip plus the copy — in a container `dd` writes straight into the harness's pipe, in a VM the bytes travel pipe → guest agent → virtio-vsock → VMM → Unix socket → `vcompare` → pipe. Median over runs. **copy only (estimate)**: bytes ÷ (median output run − round-trip p50). The last row is VM ÷ container from the same run: **above 1 is slower for the round trip, faster for bytes/s**. No target is set for exec; the ratios are reported as measured.\n");
    let _ = writeln!(md, "| mode | round trips | round trip p50 | round trip p99 | output runs × bytes | output bytes/s (median) | copy only (estimate) |\n|---|---|---|---|---|---|---|");
    for s in &r.exec {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} × {} | {} | {} |",
            footnoted(&s.subject, &s.subject),
            s.round_trip_ns.len(),
            or_dash(exec_figure(r, &s.subject, "p50"), fmt_ns),
            or_dash(exec_figure(r, &s.subject, "p99"), fmt_ns),
            s.stream.len(),
            fmt_num(s.stream_bytes as f64),
            or_dash(exec_figure(r, &s.subject, "bytes_per_s"), mib_s),
            or_dash(exec_copy_rate(r, &s.subject), mib_s),
        );
    }
    let both = series(r, "vm").is_some() && series(r, "container").is_some();
    if both {
        let copy = ratio(exec_copy_rate(r, "vm"), exec_copy_rate(r, "container"));
        let _ = writeln!(
            md,
            "| **VM ÷ container** ¹ | | {} | {} | | {} | {} |",
            or_dash(exec_ratio(r, "p50"), fmt_ratio),
            or_dash(exec_ratio(r, "p99"), fmt_ratio),
            or_dash(exec_ratio(r, "bytes_per_s"), fmt_ratio),
            or_dash(copy, fmt_ratio),
        );
    }
    md.push('\n');
    for s in &r.exec {
        let _ = writeln!(
            md,
            "- **{}**: instance `vcompare {}`; round trip `vcompare {}`; output `vcompare {}` — {}",
            s.subject,
            s.instance.join(" "),
            s.round_trip_args.join(" "),
            s.stream_args.join(" "),
            s.stream_definition
        );
    }
    md.push('\n');
    if r.exec.iter().any(|s| is_vm_subject(&s.subject)) {
        let _ = writeln!(md, "¹ {}. The guest agent's process start, its pipe reads and the virtio-vsock transport are guest kernel code: on a nested (PVM) host they run in KVM's instruction emulator, so the VM row and the ratios are reported as measured and are not hardware-KVM figures.\n", vm_caveat(r));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::ExecStreamRun;

    fn series(subject: &str, rt_ms: u64, secs_per_run: f64) -> ExecSeries {
        ExecSeries {
            subject: subject.into(),
            instance: vec!["run".into()],
            round_trip_args: vec!["exec".into(), "n".into(), "true".into()],
            round_trip_definition: "d".into(),
            round_trip_ns: (1..=100).map(|i| i * rt_ms * 10_000).collect(),
            stream_args: vec!["exec".into()],
            stream_definition: "d".into(),
            stream_bytes: 64 << 20,
            stream: vec![ExecStreamRun::new(64 << 20, (secs_per_run * 1e9) as u64); 3],
        }
    }

    #[test]
    fn percentiles_rates_and_ratios() {
        let mut r = Results::new(Default::default(), Default::default());
        r.exec = vec![series("container", 20, 0.1), series("vm", 200, 10.0)];
        // 100 samples i × 200 µs: p50 = the 50th, p99 = the 99th.
        assert_eq!(exec_figure(&r, "container", "p50"), Some(10_000_000.0));
        assert_eq!(exec_figure(&r, "container", "p99"), Some(19_800_000.0));
        assert_eq!(
            exec_figure(&r, "container", "bytes_per_s"),
            Some(640.0 * 1048576.0)
        );
        assert_eq!(exec_ratio(&r, "p50"), Some(10.0));
        assert_eq!(exec_ratio(&r, "bytes_per_s"), Some(0.01));
        // 64 MiB in 100 ms − 10 ms.
        let c = exec_copy_rate(&r, "container").unwrap();
        assert!((c - 64.0 * 1048576.0 / 0.09).abs() < 1.0, "{c}");
        let mut md = String::new();
        section(&mut md, &r);
        assert!(
            md.contains("| container | 100 | 10.0 ms | 19.8 ms | 3 × 67 108 864 | 640.0 MiB/s |"),
            "{md}"
        );
        assert!(md.contains("| vm ¹ | 100 |"), "{md}");
        assert!(
            md.contains("| **VM ÷ container** ¹ | | 10.0× | 10.0× | | 0.010× |"),
            "{md}"
        );
        assert!(md.contains("¹ KVM backend"), "{md}");
    }

    #[test]
    fn container_only_has_no_ratio_row() {
        let mut r = Results::new(Default::default(), Default::default());
        r.exec = vec![series("container", 20, 0.1)];
        let mut md = String::new();
        section(&mut md, &r);
        assert!(!md.contains("VM ÷ container**"), "{md}");
        assert!(!md.contains('¹'), "{md}");
        assert_eq!(exec_ratio(&r, "p50"), None);
    }
}
