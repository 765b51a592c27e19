//! One `probe net-client` run over one path: on the host (the image's probe, as every host
//! probe run) or in a fresh container on the bench network, its JSON line read back into
//! the probe's own [`ClientReport`].

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use probe::net::{ClientReport, Params};

use super::super::{host_command, run_instance_on, Network};
use super::paths::{self, NetPath};
use super::servers::World;
use crate::error::{BenchError, Result};
use crate::harness::{failed, json_lines, spawn_timed, Harness};

/// Where `path`'s client connects, given the servers that were started.
pub fn target(world: &World, path: &NetPath) -> Option<SocketAddr> {
    let published = |port: u16| SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port);
    match (path.name, path.client) {
        (paths::LOOPBACK, _) => world.host.as_ref().map(|s| published(s.port)),
        (_, "host") => match path.server {
            "vm" => world.vm.as_ref().map(|s| published(s.host_port)),
            _ => world.container.as_ref().map(|s| published(s.host_port)),
        },
        _ => match path.server {
            "vm" => world.vm.as_ref().map(|s| s.on_network()),
            _ => world.container.as_ref().map(|s| s.on_network()),
        },
    }
}

/// The probe command line of one client run (after `/bin/probe`).
pub fn probe_args(target: SocketAddr, params: &Params) -> Vec<String> {
    let mut v = vec!["net-client".to_string()];
    v.extend(params.to_args(target));
    v
}

/// Longest a client run over `path` may take: its own bounds, the probe's I/O timeout (60 s)
/// on a path that stalls, a container start, and for a VM server the bulk drain (the probe
/// waits up to 300 s for a nested guest to read what the socket buffers still hold).
pub fn timeout(params: &Params, path: &NetPath) -> Duration {
    let drain = if path.server == "vm" { 300.0 } else { 0.0 };
    Duration::from_secs_f64(
        params.warmup_secs + params.max_secs + params.stream_secs + 120.0 + drain,
    )
}

/// Reads the client's report from its stdout.
pub fn report(stdout: &[u8], what: &str) -> Result<ClientReport> {
    let line = json_lines(stdout)
        .into_iter()
        .find(|v| v.get("workload").and_then(|w| w.as_str()) == Some("net-client"))
        .ok_or_else(|| BenchError::Parse {
            what: what.to_string(),
            detail: "no net-client JSON line".into(),
        })?;
    serde_json::from_value(line).map_err(|e| BenchError::Parse {
        what: what.to_string(),
        detail: e.to_string(),
    })
}

/// Runs the client of `path` once against `target`.
pub fn once(
    h: &mut Harness,
    world: &World,
    path: &NetPath,
    target: SocketAddr,
    params: &Params,
) -> Result<ClientReport> {
    let args = probe_args(target, params);
    let what = format!("probe net-client over {}", path.name);
    let stdout = match path.client {
        "host" => {
            let mut c = host_command(h.rootfs.join("bin/probe"));
            c.args(&args);
            let out = spawn_timed(c, &what)?.finish(&what, timeout(params, path))?;
            if !out.status.success() {
                return Err(failed(
                    &what,
                    &out.status.to_string(),
                    &out.stderr,
                    &out.stdout,
                ));
            }
            out.stdout
        }
        _ => {
            let network = world.network.clone().ok_or_else(|| BenchError::Parse {
                what: what.clone(),
                detail: "no bench network".into(),
            })?;
            let mut command = vec!["/bin/probe"];
            command.extend(args.iter().map(String::as_str));
            run_instance_on(
                h,
                Network::Named(&network),
                path.client,
                &[],
                &command,
                "probe net-client",
                timeout(params, path),
            )?
        }
    };
    report(&stdout, &what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_carries_the_whole_definition() {
        let p = Params::default();
        let t: SocketAddr = "10.89.0.2:12865".parse().unwrap();
        let a = probe_args(t, &p);
        assert_eq!(a[0], "net-client");
        assert_eq!(Params::parse(&a[1..]).unwrap(), (t, p));
    }

    #[test]
    fn report_is_read_from_mixed_output() {
        let out = b"some log line\n{\"workload\":\"net-client\",\"target\":\"127.0.0.1:5\",\"rr\":null,\"stream\":{\"chunk_bytes\":4,\"sent_bytes\":8,\"received_bytes\":8,\"elapsed_ns\":1000,\"mib_s\":7.629,\"gbit_s\":0.064}}\n";
        let r = report(out, "t").unwrap();
        assert!(r.rr.is_none());
        assert_eq!(r.stream.unwrap().received_bytes, 8);
        assert!(report(b"{\"workload\":\"cpu\"}\n", "t").is_err());
    }
}
