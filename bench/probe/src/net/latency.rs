//! Order statistics of one connection's transaction latencies. Nearest-rank percentiles (the
//! reported p99 is one of the measured transactions, never an interpolation), computed in the
//! probe so a report carries the distribution's shape without every raw sample.

/// Summary of the timed transactions of one connection, in ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencySummary {
    /// Timed transactions.
    pub n: u64,
    /// Median: the typical round trip.
    pub p50_ns: u64,
    /// 90th percentile.
    pub p90_ns: u64,
    /// 99th percentile: the tail a request/response workload waits for.
    pub p99_ns: u64,
    /// Fastest transaction: the path's floor.
    pub min_ns: u64,
    /// Slowest transaction: shows scheduler hiccups on a shared machine.
    pub max_ns: u64,
    /// Arithmetic mean (rounded down).
    pub mean_ns: u64,
}

/// Nearest-rank percentile `p` (0..=100) of sorted, non-empty `v`.
fn nearest_rank(v: &[u64], p: f64) -> u64 {
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

impl LatencySummary {
    /// Summarises `samples` (sorted in place); `None` when nothing was timed.
    pub fn of(samples: &mut [u64]) -> Option<LatencySummary> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let sum: u128 = samples.iter().map(|&x| x as u128).sum();
        Some(LatencySummary {
            n: samples.len() as u64,
            p50_ns: nearest_rank(samples, 50.0),
            p90_ns: nearest_rank(samples, 90.0),
            p99_ns: nearest_rank(samples, 99.0),
            min_ns: samples[0],
            max_ns: samples[samples.len() - 1],
            mean_ns: (sum / samples.len() as u128) as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<u64> = (1..=100).rev().collect();
        let s = LatencySummary::of(&mut v).unwrap();
        assert_eq!(
            (s.n, s.p50_ns, s.p90_ns, s.p99_ns, s.min_ns, s.max_ns, s.mean_ns),
            (100, 50, 90, 99, 1, 100, 50)
        );
        let mut one = vec![7];
        let s = LatencySummary::of(&mut one).unwrap();
        assert_eq!((s.p50_ns, s.p99_ns, s.max_ns), (7, 7, 7));
        assert!(LatencySummary::of(&mut []).is_none());
    }

    #[test]
    fn p99_of_small_sets_is_the_slowest() {
        let mut v = vec![10, 30, 20];
        assert_eq!(LatencySummary::of(&mut v).unwrap().p99_ns, 30);
    }
}
