//! Number syntax of the probe's command lines, in the library because the network
//! parameters ([`crate::net::Params`]) are parsed there too: one rule for every command
//! (digits only, so a typo such as `1e3` or `-1` is refused instead of misread).

/// Parses a plain decimal integer (digits only: no sign, no whitespace), so typos are rejected.
pub fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses a finite, non-negative number of seconds such as `2`, `0.25` or `.5`.
pub fn parse_secs(s: &str) -> Option<f64> {
    let ok_chars = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let v: f64 = if ok_chars {
        s.parse().ok()?
    } else {
        return None;
    };
    // Bound it so Duration::from_secs_f64 cannot panic.
    (v.is_finite() && v <= 1e9).then_some(v)
}
