//! `probe net-serve` and `probe net-client`: the command-line faces of [`probe::net`]. The
//! measuring, the parameters and the report live in the library (shared with the harness);
//! this file only maps its errors onto the probe's exit codes (2 misuse, 1 failure).

use crate::cli::{emit, Failure, Outcome};
use probe::net::{self, NetError, ParamError, Params, ServeParams};

/// Synopsis of `net-serve`, for usage errors.
const SERVE_USAGE: &str = "net-serve [PORT] [--bind IP]";
/// Synopsis of `net-client`, for usage errors.
const CLIENT_USAGE: &str = "net-client ADDR:PORT [--size REQ,RESP] [--warmup N] [--warmup-secs S] [--count N] [--max-secs S] [--stream-secs S] [--chunk BYTES]";

fn usage(synopsis: &str, e: ParamError) -> Failure {
    let cmd = synopsis.split(' ').next().unwrap_or(synopsis);
    Failure::Usage(format!("{cmd}: {e} (usage: probe {synopsis})"))
}

fn runtime(cmd: &str, e: NetError) -> Failure {
    Failure::Runtime(format!("{cmd}: {e}"))
}

/// `probe net-serve [PORT] [--bind IP]`: listens, prints its ready line, serves until killed.
pub fn serve(args: &[String]) -> Outcome {
    let p = ServeParams::parse(args).map_err(|e| usage(SERVE_USAGE, e))?;
    let (listener, ready) = net::bind(&p).map_err(|e| runtime("net-serve", e))?;
    emit(&ready.to_json())?;
    net::serve(listener).map_err(|e| runtime("net-serve", e))
}

/// `probe net-client ADDR:PORT [...]`: request/response then bulk, one JSON line.
pub fn client(args: &[String]) -> Outcome {
    let (target, p) = Params::parse(args).map_err(|e| usage(CLIENT_USAGE, e))?;
    let report = net::run_client(target, &p).map_err(|e| runtime("net-client", e))?;
    emit(&report.to_json())
}
