//! The one JSON line each side prints. The same structs are read back by the harness (with
//! the `serde` feature), so a field cannot be renamed on one side only.

use crate::json::Object;

#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

use super::latency::LatencySummary;

/// What `probe net-serve` prints once it listens: the harness waits for this line (so no
/// client connects too early) and reads the addresses a peer on the same network can use.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct ServeReady {
    /// Always "net-serve": how the line is recognised in an instance's log.
    pub workload: String,
    /// The bound address.
    pub bind: String,
    /// The port actually bound (the kernel's choice if 0 was asked).
    pub port: u16,
    /// The IPv4 addresses of the server's non-loopback interfaces (in an instance: its
    /// address on the bridge network).
    pub addrs: Vec<String>,
}

impl ServeReady {
    /// The JSON line.
    pub fn to_json(&self) -> String {
        Object::new()
            .str("workload", &self.workload)
            .str("bind", &self.bind)
            .u64("port", self.port as u64)
            .raw("addrs", &crate::json::str_array(&self.addrs))
            .finish()
    }
}

/// Request/response figures of one connection.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct RrReport {
    /// Request bytes per transaction.
    pub request_bytes: u32,
    /// Response bytes per transaction.
    pub response_bytes: u32,
    /// TCP connect (SYN → established, as the client sees it), ns: through a published port
    /// this includes the DNAT rule's first match.
    pub connect_ns: u64,
    /// Untimed warm-up transactions actually done (the count, or fewer if its time ran out).
    pub warmup_done: u64,
    /// Timed transactions.
    pub transactions: u64,
    /// "count" or "time": which bound ended the timed transactions.
    pub stopped_by: String,
    /// First timed write → last timed response, ns.
    pub elapsed_ns: u64,
    /// Transactions per second over `elapsed_ns`.
    pub per_s: f64,
    /// Latency percentiles (nearest rank) of the timed transactions, ns.
    pub p50_ns: u64,
    /// 90th percentile, ns.
    pub p90_ns: u64,
    /// 99th percentile, ns.
    pub p99_ns: u64,
    /// Fastest, ns.
    pub min_ns: u64,
    /// Slowest, ns.
    pub max_ns: u64,
    /// Mean, ns.
    pub mean_ns: u64,
}

impl RrReport {
    /// The figures of `summary`, with the run's sizes and bounds.
    pub fn new(
        request_bytes: u32,
        response_bytes: u32,
        connect_ns: u64,
        warmup_done: u64,
        stopped_by_time: bool,
        elapsed_ns: u64,
        s: &LatencySummary,
    ) -> RrReport {
        RrReport {
            request_bytes,
            response_bytes,
            connect_ns,
            warmup_done,
            transactions: s.n,
            stopped_by: if stopped_by_time { "time" } else { "count" }.into(),
            elapsed_ns,
            per_s: s.n as f64 * 1e9 / elapsed_ns.max(1) as f64,
            p50_ns: s.p50_ns,
            p90_ns: s.p90_ns,
            p99_ns: s.p99_ns,
            min_ns: s.min_ns,
            max_ns: s.max_ns,
            mean_ns: s.mean_ns,
        }
    }

    fn to_json(&self) -> String {
        Object::new()
            .u64("request_bytes", self.request_bytes as u64)
            .u64("response_bytes", self.response_bytes as u64)
            .u64("connect_ns", self.connect_ns)
            .u64("warmup_done", self.warmup_done)
            .u64("transactions", self.transactions)
            .str("stopped_by", &self.stopped_by)
            .u64("elapsed_ns", self.elapsed_ns)
            .f64("per_s", self.per_s)
            .u64("p50_ns", self.p50_ns)
            .u64("p90_ns", self.p90_ns)
            .u64("p99_ns", self.p99_ns)
            .u64("min_ns", self.min_ns)
            .u64("max_ns", self.max_ns)
            .u64("mean_ns", self.mean_ns)
            .finish()
    }
}

/// Bulk figures of one connection.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct StreamReport {
    /// Bytes per `write`.
    pub chunk_bytes: u32,
    /// Bytes the client wrote.
    pub sent_bytes: u64,
    /// Bytes the server says it received (equal to `sent_bytes` on a working path).
    pub received_bytes: u64,
    /// First write → the server's byte count read, ns.
    pub elapsed_ns: u64,
    /// `received_bytes` ÷ `elapsed_ns`, MiB/s.
    pub mib_s: f64,
    /// The same in Gbit/s (network people's unit).
    pub gbit_s: f64,
}

impl StreamReport {
    /// Figures from the counts and the elapsed time.
    pub fn new(chunk_bytes: u32, sent: u64, received: u64, elapsed_ns: u64) -> StreamReport {
        let secs = elapsed_ns.max(1) as f64 / 1e9;
        StreamReport {
            chunk_bytes,
            sent_bytes: sent,
            received_bytes: received,
            elapsed_ns,
            mib_s: received as f64 / (1u64 << 20) as f64 / secs,
            gbit_s: received as f64 * 8.0 / 1e9 / secs,
        }
    }

    fn to_json(&self) -> String {
        Object::new()
            .u64("chunk_bytes", self.chunk_bytes as u64)
            .u64("sent_bytes", self.sent_bytes)
            .u64("received_bytes", self.received_bytes)
            .u64("elapsed_ns", self.elapsed_ns)
            .f64("mib_s", self.mib_s)
            .f64("gbit_s", self.gbit_s)
            .finish()
    }
}

/// What `probe net-client` prints: both measurements of one run (either may be absent when
/// its `--count`/`--stream-secs` is 0).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct ClientReport {
    /// Always "net-client".
    pub workload: String,
    /// The server address connected to.
    pub target: String,
    /// Request/response figures.
    pub rr: Option<RrReport>,
    /// Bulk figures.
    pub stream: Option<StreamReport>,
}

impl ClientReport {
    /// The JSON line.
    pub fn to_json(&self) -> String {
        Object::new()
            .str("workload", &self.workload)
            .str("target", &self.target)
            .opt_raw("rr", self.rr.as_ref().map(RrReport::to_json).as_deref())
            .opt_raw(
                "stream",
                self.stream.as_ref().map(StreamReport::to_json).as_deref(),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_report_is_valid_json_with_every_field() {
        let mut v = vec![1000, 2000, 3000];
        let s = LatencySummary::of(&mut v).unwrap();
        let r = ClientReport {
            workload: "net-client".into(),
            target: "127.0.0.1:1".into(),
            rr: Some(RrReport::new(100, 200, 5000, 10, false, 6000, &s)),
            stream: Some(StreamReport::new(131072, 1 << 30, 1 << 30, 2_000_000_000)),
        };
        let j: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(j["rr"]["p50_ns"], 2000);
        assert_eq!(j["rr"]["stopped_by"], "count");
        assert_eq!(j["rr"]["per_s"], 500000.0);
        assert_eq!(j["stream"]["mib_s"], 512.0);
        assert_eq!(j["stream"]["received_bytes"], 1u64 << 30);
        let none = ClientReport {
            rr: None,
            stream: None,
            ..r
        };
        let j: serde_json::Value = serde_json::from_str(&none.to_json()).unwrap();
        assert!(j["rr"].is_null() && j["stream"].is_null());
    }
}
