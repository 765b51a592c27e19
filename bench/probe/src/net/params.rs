//! The command lines of `probe net-client` and `probe net-serve`, parsed and rendered in one
//! place: the harness renders its [`Params`] with [`Params::to_args`] and the probe parses
//! them with [`Params::parse`], so every path of a benchmark run — host loopback, published
//! ports, bridge networks, VMs — is measured with exactly the same sizes, warm-up and bounds,
//! and a unit test checks that the two directions agree.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::numbers::{parse_secs, parse_u64};

use super::wire::MAX_MESSAGE;

/// What one `probe net-client` run measures. Defaults are the benchmark's definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Request size of a transaction (netperf TCP_RR's request size, `--size REQ,RESP`).
    pub request_bytes: u32,
    /// Response size of a transaction.
    pub response_bytes: u32,
    /// Untimed transactions before the timed ones (connection, caches and CPU frequency
    /// settle; `--warmup`).
    pub warmup: u64,
    /// The warm-up also stops after this many seconds, so a slow path (a nested VM) does not
    /// spend its whole budget warming up (`--warmup-secs`).
    pub warmup_secs: f64,
    /// Timed transactions at most (`--count`); 0 skips the request/response measurement.
    pub count: u64,
    /// Timed transactions stop after this many seconds even if `count` is not reached
    /// (`--max-secs`): count AND time bound the run.
    pub max_secs: f64,
    /// Seconds of bulk transfer (`--stream-secs`); 0 skips the bulk measurement.
    pub stream_secs: f64,
    /// Size of each bulk `write` (`--chunk`).
    pub chunk_bytes: u32,
}

impl Default for Params {
    /// 100-byte requests, 200-byte responses; 200 warm-up transactions (≤ 0.5 s), then up to
    /// 10,000 timed ones (≤ 2 s); 2 s of bulk in 128 KiB writes.
    fn default() -> Self {
        Params {
            request_bytes: 100,
            response_bytes: 200,
            warmup: 200,
            warmup_secs: 0.5,
            count: 10_000,
            max_secs: 2.0,
            stream_secs: 2.0,
            chunk_bytes: 128 << 10,
        }
    }
}

/// A `net-client`/`net-serve` command line that cannot be parsed; the probe prints it and
/// exits 2 (misuse), like every other probe command.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamError {
    /// A required argument is missing.
    Missing(&'static str),
    /// An argument the command does not know.
    Unexpected(String),
    /// A value that does not parse or is out of range.
    Bad {
        /// The flag or argument name.
        what: &'static str,
        /// The value given.
        value: String,
        /// What it must be.
        rule: &'static str,
    },
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamError::Missing(what) => write!(f, "missing {what}"),
            ParamError::Unexpected(a) => write!(f, "unexpected argument {a:?}"),
            ParamError::Bad { what, value, rule } => {
                write!(f, "{what} must be {rule}, got {value:?}")
            }
        }
    }
}

impl std::error::Error for ParamError {}

fn bad(what: &'static str, value: &str, rule: &'static str) -> ParamError {
    ParamError::Bad {
        what,
        value: value.to_string(),
        rule,
    }
}

/// A message size: 1..=[`MAX_MESSAGE`] bytes.
fn size(what: &'static str, v: &str) -> Result<u32, ParamError> {
    parse_u64(v)
        .filter(|n| (1..=MAX_MESSAGE as u64).contains(n))
        .map(|n| n as u32)
        .ok_or_else(|| bad(what, v, "a size of 1 to 16777216 bytes"))
}

/// Seconds, at most a day (a benchmark step, not a soak test).
fn secs(what: &'static str, v: &str) -> Result<f64, ParamError> {
    parse_secs(v)
        .filter(|s| *s <= 86_400.0)
        .ok_or_else(|| bad(what, v, "a number of seconds up to 86400"))
}

/// Walks `--flag VALUE` pairs, handing each to `set`; refuses anything else.
fn flags<'a>(
    rest: &'a [String],
    mut set: impl FnMut(&'a str, &'a str) -> Result<bool, ParamError>,
) -> Result<(), ParamError> {
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let Some(value) = it.next() else {
            return Err(if flag.starts_with("--") {
                ParamError::Missing("a value after a flag")
            } else {
                ParamError::Unexpected(flag.clone())
            });
        };
        if !set(flag.as_str(), value.as_str())? {
            return Err(ParamError::Unexpected(flag.clone()));
        }
    }
    Ok(())
}

/// Parses `IP:PORT`: numeric only, because the static probe has no name service (and a
/// benchmark must not time a DNS lookup).
pub fn parse_target(v: &str) -> Result<SocketAddr, ParamError> {
    v.parse::<SocketAddr>()
        .ok()
        .filter(|a| a.port() != 0)
        .ok_or_else(|| bad("ADDR:PORT", v, "a numeric IP:PORT such as 10.0.0.2:12865"))
}

impl Params {
    /// Parses `ADDR:PORT [--size REQ,RESP] [--warmup N] [--warmup-secs S] [--count N]
    /// [--max-secs S] [--stream-secs S] [--chunk BYTES]` (the arguments after `net-client`);
    /// flags not given keep their [`Params::default`].
    pub fn parse(args: &[String]) -> Result<(SocketAddr, Params), ParamError> {
        let target = parse_target(args.first().ok_or(ParamError::Missing("ADDR:PORT"))?)?;
        let mut p = Params::default();
        flags(&args[1..], |flag, v| {
            match flag {
                "--size" => {
                    let (req, resp) = v
                        .split_once(',')
                        .ok_or_else(|| bad("--size", v, "REQ,RESP in bytes, e.g. 100,200"))?;
                    p.request_bytes = size("--size REQ", req)?;
                    p.response_bytes = size("--size RESP", resp)?;
                }
                "--warmup" => {
                    p.warmup = parse_u64(v).ok_or_else(|| bad("--warmup", v, "a count"))?
                }
                "--warmup-secs" => p.warmup_secs = secs("--warmup-secs", v)?,
                "--count" => p.count = parse_u64(v).ok_or_else(|| bad("--count", v, "a count"))?,
                "--max-secs" => p.max_secs = secs("--max-secs", v)?,
                "--stream-secs" => p.stream_secs = secs("--stream-secs", v)?,
                "--chunk" => p.chunk_bytes = size("--chunk", v)?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        if p.count > 0 && p.max_secs == 0.0 {
            return Err(bad("--max-secs", "0", "above 0 when --count is above 0"));
        }
        Ok((target, p))
    }

    /// The arguments after `net-client` that [`Params::parse`] reads back as `(target,
    /// self)`; every flag is written out, so a recorded command line states the definition.
    pub fn to_args(&self, target: SocketAddr) -> Vec<String> {
        vec![
            target.to_string(),
            "--size".into(),
            format!("{},{}", self.request_bytes, self.response_bytes),
            "--warmup".into(),
            self.warmup.to_string(),
            "--warmup-secs".into(),
            self.warmup_secs.to_string(),
            "--count".into(),
            self.count.to_string(),
            "--max-secs".into(),
            self.max_secs.to_string(),
            "--stream-secs".into(),
            self.stream_secs.to_string(),
            "--chunk".into(),
            self.chunk_bytes.to_string(),
        ]
    }
}

/// Where `probe net-serve` listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeParams {
    /// The address to bind: every IPv4 address by default (an instance's only address is on
    /// its network interface); `127.0.0.1` for the host loopback baseline (`--bind`).
    pub bind: IpAddr,
    /// TCP port; 0 lets the kernel choose (the ready line says which).
    pub port: u16,
}

impl Default for ServeParams {
    fn default() -> Self {
        ServeParams {
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: super::DEFAULT_PORT,
        }
    }
}

impl ServeParams {
    /// Parses `[PORT] [--bind IP]` (the arguments after `net-serve`).
    pub fn parse(args: &[String]) -> Result<ServeParams, ParamError> {
        let mut p = ServeParams::default();
        let rest = match args.first() {
            Some(a) if !a.starts_with("--") => {
                p.port = parse_u64(a)
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or_else(|| bad("PORT", a, "a TCP port 0-65535"))?;
                &args[1..]
            }
            _ => args,
        };
        flags(rest, |flag, v| {
            match flag {
                "--bind" => {
                    p.bind = v
                        .parse()
                        .map_err(|_| bad("--bind", v, "a numeric IP address"))?
                }
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(p)
    }

    /// The arguments after `net-serve` that [`ServeParams::parse`] reads back as `self`.
    pub fn to_args(&self) -> Vec<String> {
        vec![
            self.port.to_string(),
            "--bind".into(),
            self.bind.to_string(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn client_args_round_trip() {
        let target: SocketAddr = "10.88.0.2:12865".parse().unwrap();
        let p = Params {
            request_bytes: 1,
            response_bytes: 65536,
            warmup: 0,
            warmup_secs: 0.25,
            count: 7,
            max_secs: 1.5,
            stream_secs: 0.0,
            chunk_bytes: 4096,
        };
        assert_eq!(Params::parse(&p.to_args(target)).unwrap(), (target, p));
        let d = Params::default();
        assert_eq!(
            Params::parse(&d.to_args(target)).unwrap(),
            (target, d.clone())
        );
        assert_eq!(
            Params::parse(&strings(&["127.0.0.1:1"])).unwrap(),
            ("127.0.0.1:1".parse().unwrap(), d)
        );
    }

    #[test]
    fn client_args_refuse_misuse() {
        for bad in [
            &[][..],
            &["localhost:80"],
            &["10.0.0.1"],
            &["10.0.0.1:0"],
            &["10.0.0.1:80", "--size", "100"],
            &["10.0.0.1:80", "--size", "0,1"],
            &["10.0.0.1:80", "--count", "-1"],
            &["10.0.0.1:80", "--count"],
            &["10.0.0.1:80", "--frobnicate", "1"],
            &["10.0.0.1:80", "--max-secs", "0"],
            &["10.0.0.1:80", "--stream-secs", "1e3"],
            &["10.0.0.1:80", "extra"],
        ] {
            assert!(Params::parse(&strings(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn serve_args_round_trip_and_defaults() {
        let d = ServeParams::default();
        assert_eq!(ServeParams::parse(&[]).unwrap(), d);
        assert_eq!(d.port, crate::net::DEFAULT_PORT);
        let p = ServeParams {
            bind: "127.0.0.1".parse().unwrap(),
            port: 0,
        };
        assert_eq!(ServeParams::parse(&p.to_args()).unwrap(), p);
        assert_eq!(
            ServeParams::parse(&strings(&["--bind", "::1"]))
                .unwrap()
                .port,
            crate::net::DEFAULT_PORT
        );
        for bad in [&["70000"][..], &["80", "--bind", "host"], &["80", "x", "y"]] {
            assert!(ServeParams::parse(&strings(bad)).is_err(), "{bad:?}");
        }
    }
}
