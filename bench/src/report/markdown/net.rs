//! The network section and the net figures (medians over runs, ratios to host loopback) that
//! it, the targets, the comparison and the net chart read, so they cannot disagree.

use std::fmt::Write as _;

use super::format::{fmt_ns, fmt_num, fmt_ratio, footnoted, vm_caveat};
use crate::results::{is_vm_subject, NetSeries, Results};
use crate::stats::{median, ratio};
use crate::suites::net::paths::LOOPBACK;

/// The net figures, in table order: request/response p50 and p99 latency (ns), bulk
/// throughput (MiB/s).
pub const NET_FIGURES: [&str; 3] = ["p50", "p99", "bulk"];

/// One sample per run of `figure` over `s`: "p50", "p99", "connect" (ns), "per_s"
/// (transactions per second), "bulk" (MiB/s) or "gbit" (Gbit/s).
pub fn net_samples(s: &NetSeries, figure: &str) -> Vec<f64> {
    s.runs
        .iter()
        .filter_map(|run| match figure {
            "p50" => run.rr.as_ref().map(|x| x.p50_ns as f64),
            "p99" => run.rr.as_ref().map(|x| x.p99_ns as f64),
            "connect" => run.rr.as_ref().map(|x| x.connect_ns as f64),
            "per_s" => run.rr.as_ref().map(|x| x.per_s),
            "transactions" => run.rr.as_ref().map(|x| x.transactions as f64),
            "bulk" => run.stream.as_ref().map(|x| x.mib_s),
            "gbit" => run.stream.as_ref().map(|x| x.gbit_s),
            _ => None,
        })
        .collect()
}

/// Median over runs of `figure` on `path` (see [`net_samples`]).
pub fn net_median(r: &Results, path: &str, figure: &str) -> Option<f64> {
    median(&net_samples(r.net.iter().find(|s| s.path == path)?, figure))
}

/// `path`'s median ÷ host loopback's, from the same run: above 1 is slower for latency,
/// faster for throughput (the table shows each figure's own ratio).
pub fn net_ratio(r: &Results, path: &str, figure: &str) -> Option<f64> {
    ratio(net_median(r, path, figure), net_median(r, LOOPBACK, figure))
}

/// How many times loopback's cost `path` pays (time per transaction, or per MiB for bulk),
/// so every figure reads "higher = slower" on one chart.
pub fn net_slowdown(r: &Results, path: &str, figure: &str) -> Option<f64> {
    let x = net_ratio(r, path, figure)?;
    match figure {
        "bulk" | "gbit" | "per_s" => (x > 0.0).then(|| 1.0 / x),
        _ => Some(x),
    }
}

/// One cell: the median and its ratio to loopback's, "–" when not measured.
fn cell(r: &Results, path: &str, figure: &str) -> String {
    let Some(v) = net_median(r, path, figure) else {
        return "–".into();
    };
    let v = match figure {
        "bulk" | "gbit" | "per_s" | "transactions" => fmt_num(v),
        _ => fmt_ns(v),
    };
    match net_ratio(r, path, figure).filter(|_| path != LOOPBACK) {
        Some(x) => format!("{v} ({})", fmt_ratio(x)),
        None => v,
    }
}

/// Whether a series involves a VM (its row carries the backend caveat).
pub fn net_is_vm(s: &NetSeries) -> bool {
    is_vm_subject(&s.server) || is_vm_subject(&s.client)
}

/// The network section: method, the table, how each path's bytes travel.
pub(super) fn section(md: &mut String, r: &Results) {
    let _ = writeln!(md, "## Network (TCP)\n\nThe same tool on every path: `probe net-serve` on the server side, `probe net-client` on the client side (one static binary, the image's, also on the host). **request/response** (like netperf TCP_RR): one connection with `TCP_NODELAY`; the client writes a fixed-size request, the server answers with a fixed-size response once it has read all of it; a transaction's latency is the client's write start → the last response byte read (CLOCK_MONOTONIC in the client, so no figure mixes two machines' clocks); untimed warm-up transactions first, then the timed ones until the count or the time bound is reached, whichever comes first; p50 and p99 are nearest-rank percentiles of one run's timed transactions, and the table shows the **median over runs** of each. **bulk** (like TCP_STREAM): a second connection; the client writes fixed-size blocks for a fixed time, shuts down writing, and the server answers with the bytes it received; MiB/s = those bytes ÷ (first write → that answer), so data still in flight at the end is counted and paid for. **connect**: `connect()` call → established, as the client sees it. The ratio in parentheses is the path's median ÷ host loopback's from the same run: **above 1 is slower for latency, faster for MiB/s**. Servers start once per run; their start (and a VM's boot) is in no figure.\n");
    let _ = writeln!(md, "| path | client → server | runs | timed transactions per run | p50 (× loopback) | p99 (× loopback) | transactions/s | connect | bulk MiB/s (× loopback) | bulk Gbit/s |\n|---|---|---|---|---|---|---|---|---|---|");
    for s in &r.net {
        let label = if net_is_vm(s) {
            format!("{} ¹", s.path)
        } else {
            footnoted(&s.path, &s.server)
        };
        let _ = writeln!(
            md,
            "| {label} | {} → {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.client,
            s.server,
            s.runs.len(),
            net_median(r, &s.path, "transactions")
                .map(fmt_num)
                .unwrap_or_else(|| "–".into()),
            cell(r, &s.path, "p50"),
            cell(r, &s.path, "p99"),
            net_median(r, &s.path, "per_s")
                .map(fmt_num)
                .unwrap_or_else(|| "–".into()),
            net_median(r, &s.path, "connect")
                .map(fmt_ns)
                .unwrap_or_else(|| "–".into()),
            cell(r, &s.path, "bulk"),
            net_median(r, &s.path, "gbit")
                .map(|g| format!("{g:.2}"))
                .unwrap_or_else(|| "–".into()),
        );
    }
    md.push('\n');
    for s in &r.net {
        let stopped: Vec<&str> = s
            .runs
            .iter()
            .filter_map(|x| x.rr.as_ref().map(|rr| rr.stopped_by.as_str()))
            .collect();
        let by_time = stopped.iter().filter(|x| **x == "time").count();
        let _ = writeln!(
            md,
            "- **{}**: {}; `probe {}`; timed transactions ended by the time bound in {by_time} of {} runs",
            s.path,
            s.definition,
            s.args.join(" "),
            stopped.len()
        );
    }
    md.push('\n');
    if r.net.iter().any(net_is_vm) {
        let _ = writeln!(md, "¹ {}. The guest's TCP stack and virtio-net driver are guest kernel code: on a nested (PVM) host they run in KVM's instruction emulator, so these rows are reported as measured, without a target, and are not hardware-KVM figures.\n", vm_caveat(r));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use probe::net::{ClientReport, RrReport, StreamReport};

    fn series(path: &str, server: &str, p50: u64, mib_s: f64) -> NetSeries {
        let rr = RrReport {
            request_bytes: 100,
            response_bytes: 200,
            connect_ns: 50_000,
            warmup_done: 200,
            transactions: 10_000,
            stopped_by: "count".into(),
            elapsed_ns: 10_000 * p50,
            per_s: 1e9 / p50 as f64,
            p50_ns: p50,
            p90_ns: p50 * 2,
            p99_ns: p50 * 3,
            min_ns: p50 / 2,
            max_ns: p50 * 10,
            mean_ns: p50,
        };
        let stream = StreamReport::new(131072, 1 << 30, 1 << 30, 2_000_000_000);
        let run = ClientReport {
            workload: "net-client".into(),
            target: "127.0.0.1:1".into(),
            rr: Some(rr),
            stream: Some(StreamReport { mib_s, ..stream }),
        };
        NetSeries {
            path: path.into(),
            client: "host".into(),
            server: server.into(),
            definition: "d".into(),
            args: vec![],
            runs: vec![run.clone(), run],
        }
    }

    #[test]
    fn ratios_are_against_loopback_and_slowdowns_read_higher_is_slower() {
        let mut r = Results::new(Default::default(), Default::default());
        r.net = vec![
            series("loopback", "host", 20_000, 2000.0),
            series("container -p", "container", 30_000, 1000.0),
        ];
        assert_eq!(net_ratio(&r, "container -p", "p50"), Some(1.5));
        assert_eq!(net_ratio(&r, "container -p", "bulk"), Some(0.5));
        assert_eq!(net_slowdown(&r, "container -p", "bulk"), Some(2.0));
        assert_eq!(net_slowdown(&r, "container -p", "p99"), Some(1.5));
        let mut md = String::new();
        section(&mut md, &r);
        assert!(
            md.contains("| container -p | host → container | 2 | 10 000 | 30.0 µs (1.50×)"),
            "{md}"
        );
        assert!(!md.contains('¹'));
    }
}
