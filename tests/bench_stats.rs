//! Statistics of the benchmark harness: order statistics, ratios, fits.

use vcompare_bench::stats::{
    cdf, linear_fit, mean, median, percentile, ratio, summarize, summarize_u64,
};

#[test]
fn median_of_odd_and_even_counts() {
    assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
    assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    assert_eq!(median(&[]), None);
    assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
}

#[test]
fn percentile_is_nearest_rank() {
    let xs: Vec<f64> = (1..=10).map(f64::from).collect();
    assert_eq!(percentile(&xs, 90.0), Some(9.0));
    assert_eq!(percentile(&xs, 100.0), Some(10.0));
    assert_eq!(percentile(&xs, 0.0), Some(1.0));
    // With three runs the p90 is honestly the slowest one.
    assert_eq!(percentile(&[1.0, 2.0, 3.0], 90.0), Some(3.0));
    assert_eq!(percentile(&[], 50.0), None);
}

#[test]
fn summary_fields() {
    let s = summarize(&[5.0, 1.0, 3.0]).unwrap();
    assert_eq!(
        (s.n, s.median, s.min, s.max, s.mean, s.p90),
        (3, 3.0, 1.0, 5.0, 3.0, 5.0)
    );
    assert!(summarize(&[]).is_none());
    assert_eq!(summarize_u64(&[10, 20]).unwrap().median, 15.0);
    assert_eq!(mean(&[1.0, 2.0]), Some(1.5));
}

#[test]
fn ratios_need_both_sides_and_a_nonzero_divisor() {
    assert_eq!(ratio(Some(3.0), Some(2.0)), Some(1.5));
    assert_eq!(ratio(None, Some(2.0)), None);
    assert_eq!(ratio(Some(1.0), Some(0.0)), None);
}

#[test]
fn linear_fit_recovers_slope() {
    let (m, b) = linear_fit(&[(1.0, 3.0), (2.0, 5.0), (4.0, 9.0)]).unwrap();
    assert!((m - 2.0).abs() < 1e-9 && (b - 1.0).abs() < 1e-9);
    assert!(linear_fit(&[(1.0, 1.0)]).is_none());
    assert!(linear_fit(&[(1.0, 1.0), (1.0, 2.0)]).is_none());
}

#[test]
fn cdf_is_sorted_and_ends_at_one() {
    let c = cdf(&[3.0, 1.0, 2.0, 4.0]);
    assert_eq!(c.first(), Some(&(1.0, 0.25)));
    assert_eq!(c.last(), Some(&(4.0, 1.0)));
}
