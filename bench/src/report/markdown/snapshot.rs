//! The `## Snapshot` section and the snapshot figures it reads (medians per subject and
//! figure, restored ÷ cold ratios, density slopes), in one place so the section and
//! `report --compare` read the same numbers.

use std::fmt::Write as _;

use super::footprint::series_slopes;
use super::format::{fmt_bytes, fmt_ns, fmt_ratio, footnoted, vm_caveat};
use crate::results::{Results, SnapshotSeries};
use crate::stats::{median, ratio};
use crate::suites::snapshot::{COLD, FC_COLD, FC_RESTORED, FIGURES, RESTORED};

/// `subject`'s series, if it was measured.
fn series<'a>(r: &'a Results, subject: &str) -> Option<&'a SnapshotSeries> {
    r.snapshot
        .as_ref()?
        .series
        .iter()
        .find(|s| s.subject == subject)
}

/// Median of `figure` (a name of [`FIGURES`]) over `subject`'s runs, ns.
pub fn snapshot_figure(r: &Results, subject: &str, figure: &str) -> Option<f64> {
    let s = series(r, subject)?;
    median(
        &s.runs
            .iter()
            .filter_map(|run| run.get(figure).map(|&v| v as f64))
            .collect::<Vec<_>>(),
    )
}

/// Restored ÷ cold for `figure`, ours (from the same run): below 1 is the restore's gain.
pub fn snapshot_ratio(r: &Results, figure: &str) -> Option<f64> {
    ratio(
        snapshot_figure(r, RESTORED, figure),
        snapshot_figure(r, COLD, figure),
    )
}

/// Memory per extra VM (slope of the summed VMM PSS) of the density series `subject`, bytes.
pub fn snapshot_density_slope(r: &Results, subject: &str) -> Option<f64> {
    let s = r
        .snapshot
        .as_ref()?
        .density
        .iter()
        .find(|d| d.subject == subject)?;
    series_slopes(s).0
}

/// A cell, "–" when not measured.
fn cell(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "–".into())
}

/// The snapshot section: the timing table with the ratio row, the snapshot's size and cost,
/// density from one snapshot vs cold boots, the definitions.
pub(super) fn section(md: &mut String, r: &Results) {
    let Some(s) = &r.snapshot else { return };
    let _ = writeln!(md, "## Snapshot\n\nA VM restored from the snapshot of its VM kind vs the same VM booted cold (`--no-snapshot`), measured side by side in one run (rounds alternate the order), and Firecracker's snapshot/restore and cold boot of the same kernel, arguments and disk. Medians over the measured runs; the **restored ÷ cold** row is from the same run (below 1 = the restore is faster). Figures of our VM come from its VMM's marks (`vcompare inspect`): launch = the `vcompare-vmm` process's `main`; Firecracker's from the harness (launch = its spawn), so they include the exec of the binary.\n");
    let present: Vec<(&str, &str)> = FIGURES
        .iter()
        .copied()
        .filter(|(f, _)| {
            s.series
                .iter()
                .any(|x| x.runs.iter().any(|run| run.contains_key(*f)))
        })
        .collect();
    let _ = write!(md, "| subject | n |");
    for (_, label) in &present {
        let _ = write!(md, " {label} |");
    }
    let _ = writeln!(md, "\n|---|---|{}", "---|".repeat(present.len()));
    for x in &s.series {
        let _ = write!(md, "| {} | {} |", footnoted(&x.subject, "vm"), x.runs.len());
        for (f, _) in &present {
            let _ = write!(md, " {} |", cell(snapshot_figure(r, &x.subject, f), fmt_ns));
        }
        md.push('\n');
    }
    if series(r, RESTORED).is_some() && series(r, COLD).is_some() {
        let _ = write!(md, "| **restored ÷ cold** | |");
        for (f, _) in &present {
            let _ = write!(md, " {} |", cell(snapshot_ratio(r, f), fmt_ratio));
        }
        md.push('\n');
    }
    if series(r, FC_RESTORED).is_some() && series(r, FC_COLD).is_some() {
        let fc = ratio(
            snapshot_figure(r, FC_RESTORED, "launch_to_exec"),
            snapshot_figure(r, FC_COLD, "launch_to_init"),
        );
        let _ = writeln!(
            md,
            "\nFirecracker: restore launch → entrypoint exec'd ÷ cold launch → init = {}.",
            cell(fc, fmt_ratio)
        );
    }
    md.push('\n');
    let _ = writeln!(md, "| snapshot | memory file allocated | memory file logical | pause to take it |\n|---|---|---|---|");
    let _ = writeln!(
        md,
        "| vcompare (whole directory allocated: {}) | {} | {} | {} |",
        cell(s.dir_allocated_bytes.map(|b| b as f64), fmt_bytes),
        cell(s.memory_allocated_bytes.map(|b| b as f64), fmt_bytes),
        cell(s.memory_logical_bytes.map(|b| b as f64), fmt_bytes),
        cell(s.taken_pause_ms.map(|m| m * 1e6), fmt_ns),
    );
    if let Some(f) = &s.firecracker {
        let _ = writeln!(
            md,
            "| firecracker (`PUT /snapshot/create` Full: {}) | {} | {} | {} (`PATCH /vm Paused`) + create |",
            fmt_ns(f.create_ns as f64),
            fmt_bytes(f.memory_allocated_bytes as f64),
            fmt_bytes(f.memory_logical_bytes as f64),
            fmt_ns(f.pause_ns as f64),
        );
    }
    md.push('\n');
    if !s.density.is_empty() {
        let _ = writeln!(md, "Density: VMs started one after another (each up before the next), summed PSS of their VMM processes after each start; memory per extra VM = slope of that sum.\n\n| VMs | n | PSS sum at n | memory per extra VM (PSS slope) |\n|---|---|---|---|");
        for d in &s.density {
            let last = d.points.last();
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                footnoted(&d.subject, "vm"),
                last.map(|p| p.instances).unwrap_or(0),
                cell(last.map(|p| p.pss_sum_bytes as f64), fmt_bytes),
                cell(snapshot_density_slope(r, &d.subject), fmt_bytes),
            );
        }
        let dr = ratio(
            snapshot_density_slope(r, RESTORED),
            snapshot_density_slope(r, COLD),
        );
        if dr.is_some() {
            let _ = writeln!(md, "| **restored ÷ cold** | | | {} |", cell(dr, fmt_ratio));
        }
        md.push('\n');
    }
    for x in &s.series {
        let _ = writeln!(md, "- **{}**: {}", x.subject, x.definition);
    }
    let _ = writeln!(md, "\n¹ {}.\n", vm_caveat(r));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{DensityPoint, DensitySeries, SnapshotResults};

    fn runs(pairs: &[(&str, u64)], n: u64) -> Vec<std::collections::BTreeMap<String, u64>> {
        (1..=n)
            .map(|i| pairs.iter().map(|(k, v)| (k.to_string(), v * i)).collect())
            .collect()
    }

    #[test]
    fn medians_ratios_and_slopes() {
        let mut r = Results::new(Default::default(), Default::default());
        let ser = |subject: &str, pairs: &[(&str, u64)]| SnapshotSeries {
            subject: subject.into(),
            definition: "d".into(),
            runs: runs(pairs, 3),
        };
        let dens = |subject: &str, per: u64| DensitySeries {
            subject: subject.into(),
            workload: "w".into(),
            points: (1..=4)
                .map(|n| DensityPoint {
                    instances: n,
                    available_drop_bytes: 0,
                    pss_sum_bytes: 1_000_000 + per * n as u64,
                })
                .collect(),
        };
        r.snapshot = Some(SnapshotResults {
            series: vec![
                ser(RESTORED, &[("launch_to_first_run", 10), ("wall", 100)]),
                ser(COLD, &[("launch_to_first_run", 5), ("wall", 400)]),
            ],
            memory_allocated_bytes: Some(40 << 20),
            memory_logical_bytes: Some(256 << 20),
            taken_pause_ms: Some(12.5),
            density: vec![dens(RESTORED, 4 << 20), dens(COLD, 16 << 20)],
            ..Default::default()
        });
        assert_eq!(snapshot_figure(&r, RESTORED, "wall"), Some(200.0));
        assert_eq!(snapshot_ratio(&r, "wall"), Some(0.25));
        assert_eq!(snapshot_ratio(&r, "launch_to_first_run"), Some(2.0));
        let s = snapshot_density_slope(&r, RESTORED).unwrap();
        assert!((s - (4u64 << 20) as f64).abs() < 1.0, "{s}");
        let mut md = String::new();
        section(&mut md, &r);
        assert!(md.contains("## Snapshot"), "{md}");
        assert!(
            md.contains("| **restored ÷ cold** | | 2.00× | 0.25× |"),
            "{md}"
        );
        assert!(md.contains("| 40.0 MiB | 256.0 MiB | 12.5 ms |"), "{md}");
        assert!(md.contains("| **restored ÷ cold** | | | 0.25× |"), "{md}");
    }
}
