//! Summary statistics over raw samples. The report shows medians and p90 (robust on a noisy,
//! shared 2-core machine) next to min/max/mean, and ratios of medians for "A vs B" targets.

use serde::{Deserialize, Serialize};

/// Summary of one series of samples, in the samples' unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of samples summarised.
    pub n: usize,
    /// Middle value (mean of the two middle ones for even n): the headline figure.
    pub median: f64,
    /// 90th percentile (nearest-rank): the tail a user actually waits for.
    pub p90: f64,
    /// Smallest sample: the best case, least disturbed by neighbours.
    pub min: f64,
    /// Largest sample: shows outliers from the shared machine.
    pub max: f64,
    /// Arithmetic mean: for readers who expect it; sensitive to outliers.
    pub mean: f64,
}

/// Sorted copy of `xs` with NaNs removed, so order statistics are well defined.
fn sorted(xs: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| !x.is_nan()).collect();
    v.sort_by(|a, b| a.partial_cmp(b).expect("NaNs were filtered"));
    v
}

/// Median of `xs`; `None` when there are no samples (a skipped measurement is not a zero).
pub fn median(xs: &[f64]) -> Option<f64> {
    let v = sorted(xs);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// Nearest-rank percentile `p` (0..=100) of `xs`: always one of the samples, so a p90 of
/// three runs is honestly the slowest one rather than an interpolated value.
pub fn percentile(xs: &[f64], p: f64) -> Option<f64> {
    let v = sorted(xs);
    if v.is_empty() {
        return None;
    }
    let rank = ((p.clamp(0.0, 100.0) / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

/// Arithmetic mean of `xs`, `None` when empty.
pub fn mean(xs: &[f64]) -> Option<f64> {
    let v = sorted(xs);
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// All summary figures at once; `None` when there are no samples.
pub fn summarize(xs: &[f64]) -> Option<Summary> {
    let v = sorted(xs);
    Some(Summary {
        n: v.len(),
        median: median(&v)?,
        p90: percentile(&v, 90.0)?,
        min: *v.first()?,
        max: *v.last()?,
        mean: mean(&v)?,
    })
}

/// Same as [`summarize`] for integer samples (nanoseconds, bytes).
pub fn summarize_u64(xs: &[u64]) -> Option<Summary> {
    summarize(&xs.iter().map(|&x| x as f64).collect::<Vec<_>>())
}

/// `a / b`, `None` if either is missing or `b` is zero: ratios are how targets are stated.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

/// Least-squares slope and intercept of y over x, for "memory per extra instance" from a
/// density series; `None` with fewer than two distinct x values.
pub fn linear_fit(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let slope = sxy / sxx;
    Some((slope, my - slope * mx))
}

/// Empirical CDF points (value, fraction ≤ value) for the startup distribution chart.
pub fn cdf(xs: &[f64]) -> Vec<(f64, f64)> {
    let v = sorted(xs);
    let n = v.len() as f64;
    v.iter()
        .enumerate()
        .map(|(i, &x)| (x, (i + 1) as f64 / n))
        .collect()
}
