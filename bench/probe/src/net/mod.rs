//! TCP request/response latency and bulk throughput, measured the same way on the host, in a
//! container and in a microVM guest: `probe net-serve` on one side, `probe net-client` on the
//! other, one binary and one definition for every path (netperf is not installed here, and a
//! peer tool with other defaults would not measure the same thing).
//!
//! - **request/response** (like netperf's TCP_RR): one connection, `TCP_NODELAY`; the client
//!   writes a request of `request_bytes`, the server answers with `response_bytes` once it has
//!   read the whole request; latency = client's write start → last response byte read. A
//!   warm-up of [`Params::warmup`] transactions (at most [`Params::warmup_secs`]) is untimed,
//!   then up to [`Params::count`] transactions are timed, stopping early after
//!   [`Params::max_secs`] (count AND time bound: a slow path still ends in seconds).
//! - **bulk** (like TCP_STREAM): a second connection; the client writes `chunk_bytes` blocks
//!   for [`Params::stream_secs`], shuts its side down, and the server answers with the number
//!   of bytes it received; throughput = bytes received ÷ (first write → that answer), so data
//!   still in flight when the client stops writing is counted, and paid for.
//!
//! Modules: [`wire`] (the connection header), [`server`], [`client`], [`latency`] (order
//! statistics of the samples), [`params`] (the command-line definition shared with the
//! harness), [`report`] (the JSON line), [`addrs`] (the server's own IPv4 addresses, so a
//! peer on a bridge network knows where to connect), [`error`].

pub mod addrs;
pub mod client;
pub mod error;
pub mod latency;
pub mod params;
pub mod report;
pub mod server;
pub mod wire;

pub use client::run as run_client;
pub use error::NetError;
pub use params::{ParamError, Params, ServeParams};
pub use report::{ClientReport, RrReport, ServeReady, StreamReport};
pub use server::{bind, serve};

/// The port servers listen on inside instances: netperf's well-known port, so the figure's
/// origin is recognisable in a packet capture.
pub const DEFAULT_PORT: u16 = 12865;
