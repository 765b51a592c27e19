//! Aligned text tables and human-friendly sizes and durations, shared by `ps`, `image ls`,
//! `doctor` and `demo`.

/// Prints rows with columns padded to the widest cell.
pub fn print(header: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < w.len() {
                w[i] = w[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{:<width$}   ", c, width = w[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

/// `1.5 MiB`-style sizes.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `3 seconds`, `5 minutes`, `2 hours`, `4 days`: docker-style coarse durations.
pub fn ago(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..=59 => format!("{s} second{}", if s == 1 { "" } else { "s" }),
        60..=3599 => format!("{} minute{}", s / 60, if s / 60 == 1 { "" } else { "s" }),
        3600..=86399 => format!("{} hour{}", s / 3600, if s / 3600 == 1 { "" } else { "s" }),
        _ => format!("{} day{}", s / 86400, if s / 86400 == 1 { "" } else { "s" }),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_and_durations() {
        assert_eq!(super::bytes(512), "512 B");
        assert_eq!(super::bytes(1536), "1.5 KiB");
        assert_eq!(super::ago(1.0), "1 second");
        assert_eq!(super::ago(7200.0), "2 hours");
    }
}
