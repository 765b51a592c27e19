//! `vcompare report --compare`: two runs side by side, headline medians and the ratio B / A.
//! Separate because it reads two results instead of rendering one.

use super::cpu::cpu_median;
use super::exec::exec_figure;
use super::footprint::{density_slopes, memory_median};
use super::format::{fmt_bytes, fmt_ns, fmt_num};
use super::net::{net_median, NET_FIGURES};
use super::share::{share_median, SHARE_FIGURES};
use super::snapshot::{snapshot_density_slope, snapshot_figure};
use super::startup::startup_median;
use crate::results::Results;
use crate::stats::{median, ratio, summarize};

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
    for p in &sorted_union(&a.net, &b.net, |s| s.path.clone()) {
        for f in NET_FIGURES {
            let (name, fmt): (String, &dyn Fn(f64) -> String) = match f {
                "bulk" => (format!("net {p} bulk (MiB/s)"), &fmt_num),
                _ => (format!("net {p} {f} latency"), &fmt_ns),
            };
            row(name, net_median(a, p, f), net_median(b, p, f), fmt);
        }
    }
    for s in &sorted_union(&a.exec, &b.exec, |s| s.subject.clone()) {
        for f in ["p50", "p99"] {
            row(
                format!("exec {s} round trip {f}"),
                exec_figure(a, s, f),
                exec_figure(b, s, f),
                &fmt_ns,
            );
        }
        let mib_s = |r: &Results| exec_figure(r, s, "bytes_per_s").map(|v| v / (1u64 << 20) as f64);
        row(
            format!("exec {s} output (MiB/s)"),
            mib_s(a),
            mib_s(b),
            &fmt_num,
        );
    }
    let snap_subjects = |r: &Results| {
        r.snapshot
            .as_ref()
            .map(|s| s.series.clone())
            .unwrap_or_default()
    };
    for s in &sorted_union(&snap_subjects(a), &snap_subjects(b), |s| s.subject.clone()) {
        for (f, label) in crate::suites::snapshot::FIGURES {
            let (x, y) = (snapshot_figure(a, s, f), snapshot_figure(b, s, f));
            if x.is_some() || y.is_some() {
                row(format!("snapshot {s} {label}"), x, y, &fmt_ns);
            }
        }
    }
    for s in [
        crate::suites::snapshot::RESTORED,
        crate::suites::snapshot::COLD,
    ] {
        let (x, y) = (snapshot_density_slope(a, s), snapshot_density_slope(b, s));
        if x.is_some() || y.is_some() {
            row(
                format!("snapshot density {s} (PSS per VM)"),
                x,
                y,
                &fmt_bytes,
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
