//! The parts of `probe` that the benchmark harness links as well as the binary: the network
//! measurement ([`net`]) and the JSON writer it reports with ([`json`]). Why a library: the
//! harness builds the probe's command line from the same [`net::Params`] the probe parses,
//! and reads the probe's output into the same [`net::ClientReport`] the probe wrote, so the
//! definition of a figure (sizes, warm-up, bounds, units) exists once. The measuring itself
//! always runs in the static `probe` binary — on the host, in containers and in VMs alike.
//! [`numbers`] is the number syntax both the binary's commands and [`net::Params`] parse.

pub mod json;
pub mod net;
pub mod numbers;
