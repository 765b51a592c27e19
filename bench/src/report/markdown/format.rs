//! Number, duration, byte and ratio formatting, and the table helpers (summary rows, the VM
//! footnote mark, the KVM backend caveat) that every report section shares. Separate so the
//! sections and the comparison format figures one way.

use crate::results::{is_vm_subject, Results};
use crate::stats::Summary;

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

/// A summary table row: label, n, median, p90, min, max, mean (dashes when not measured).
pub(super) fn summary_row(label: &str, s: Option<Summary>, f: &dyn Fn(f64) -> String) -> String {
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
pub(super) fn footnoted(label: &str, subject: &str) -> String {
    if is_vm_subject(subject) {
        format!("{label} ¹")
    } else {
        label.to_string()
    }
}
