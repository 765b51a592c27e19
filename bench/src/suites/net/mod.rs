//! Networking (`--suite net`): TCP request/response latency (p50, p99) and bulk throughput
//! over every path an instance's traffic can take here — host loopback (the baseline), host
//! → container and host → VM through a published port (`-p`, nftables DNAT), container ↔
//! container and container → VM on one bridge network — as ratios to loopback from the same
//! run.
//!
//! Every path runs the same tool with the same definition: `probe net-serve` on the server
//! side, `probe net-client` with [`probe::net::Params::default`] on the client side (100-byte
//! requests, 200-byte responses, 200 untimed warm-up transactions, then up to 10,000 timed
//! ones within 2 s; then 2 s of bulk in 128 KiB writes). Servers start once per run (a VM
//! boot costs 25–60 s on a nested host and is not what this suite measures); clients run once
//! per path and round, the path order rotating every round, after one untimed warm-up round,
//! as in every suite. The suite creates its own network (`vcompare network create`) and
//! removes it, its instances and its host server at the end, also when a step fails.
//!
//! Modules: [`paths`] (what is measured and how the bytes travel), [`servers`] (the servers,
//! the network and their teardown), [`client`] (one client run).

pub mod client;
pub mod paths;
pub mod servers;

/// The probe's network definitions, re-exported so callers of the suite (the CLI, its tests)
/// read the same parameter and report types without depending on the probe package.
pub use probe::net::{ClientReport, Params, RrReport, StreamReport};

use super::{cost, vm_failed, vm_usable, Plan};
use crate::harness::Harness;
use crate::results::{NetSeries, Results};
use paths::{NetPath, PATHS};
use servers::{HostServer, World};

/// The definition every path is measured with: the probe's defaults, so a hand-run `probe
/// net-client ADDR:PORT` measures exactly what the report shows.
pub fn params() -> Params {
    Params::default()
}

/// The paths `plan` selects: loopback always (it is every ratio's reference), container
/// paths with the container mode, VM paths with the VM mode (container → VM needs both).
pub fn selected(plan: &Plan) -> Vec<&'static NetPath> {
    PATHS
        .iter()
        .filter(|p| {
            [p.client, p.server]
                .iter()
                .all(|side| *side == "host" || plan.mode(side))
        })
        .collect()
}

/// Estimated ms of one client run over `path` (the progress bar's unit): its bounds, plus a
/// container start for a container client; a VM server hits the time bounds.
fn run_cost_ms(path: &NetPath, p: &Params) -> u64 {
    let bounds = ((p.stream_secs + 0.3) * 1e3) as u64;
    let slow = if path.server == "vm" {
        ((p.warmup_secs + p.max_secs) * 1e3) as u64
    } else {
        0
    };
    let start = if path.client == "container" {
        cost::CONTAINER
    } else {
        cost::HOST
    };
    bounds + slow + start
}

/// Estimated ms of the whole suite for `plan`: the rounds, one VM boot, one container start.
pub fn estimate_ms(h: &Harness, plan: &Plan) -> u64 {
    let p = params();
    let paths = selected(plan);
    let rounds: u64 = paths.iter().map(|x| run_cost_ms(x, &p)).sum::<u64>() * (h.runs as u64 + 1);
    rounds + plan.mode("vm") as u64 * cost::VM + plan.mode("container") as u64 * cost::CONTAINER
}

/// Runs the net suite; what it created goes with the [`World`] when this returns (or unwinds).
pub fn run(h: &mut Harness, plan: &Plan, results: &mut Results) {
    let paths = selected(plan);
    let mut world = World::new(h);
    measure(h, plan, results, &paths, &mut world);
    h.advance(0, "net: removing servers and the bench network");
}

/// Skips `paths` (those not yet skipped) with `reason`.
fn skip_all(results: &mut Results, paths: &[&NetPath], reason: &str) {
    for p in paths {
        results.skip(format!("net {}", p.name), reason.to_string());
    }
}

/// Starts the servers `paths` need, then the rounds.
fn measure(
    h: &mut Harness,
    plan: &Plan,
    results: &mut Results,
    paths: &[&'static NetPath],
    world: &mut World,
) {
    let p = params();
    match HostServer::start(h) {
        Ok(s) => world.host = Some(s),
        Err(e) => {
            // Without the baseline there are no ratios, and the same probe serves every path.
            skip_all(results, paths, &format!("host probe net-serve: {e}"));
            h.advance(estimate_ms(h, plan), "net skipped");
            return;
        }
    }
    let remote: Vec<&NetPath> = paths
        .iter()
        .copied()
        .filter(|x| x.server != "host")
        .collect();
    if !remote.is_empty() {
        if let Err(e) = world.create_network(h) {
            skip_all(
                results,
                &remote,
                &format!("creating the bench network: {e}"),
            );
        } else {
            start_servers(h, plan, results, &remote, world);
        }
    }
    let active: Vec<(&NetPath, std::net::SocketAddr)> = paths
        .iter()
        .filter_map(|x| client::target(world, x).map(|t| (*x, t)))
        .collect();
    for (path, target) in &active {
        results.net.push(NetSeries {
            path: path.name.into(),
            client: path.client.into(),
            server: path.server.into(),
            definition: path.how.into(),
            args: client::probe_args(*target, &p),
            runs: Vec::new(),
        });
    }
    results.note_once(format!("net: every path ran `probe net-client` with the same definition ({}); one untimed warm-up round before the measured ones; servers started once per run (the VM's boot is not part of any net figure)", client::probe_args("0.0.0.0:1".parse().expect("literal address"), &p)[2..].join(" ")));
    rounds(h, results, &active, world, &p);
}

/// The container and VM servers `remote` needs; a server that fails skips its paths.
fn start_servers(
    h: &mut Harness,
    plan: &Plan,
    results: &mut Results,
    remote: &[&NetPath],
    world: &mut World,
) {
    let of = |server: &str| -> Vec<&NetPath> {
        remote
            .iter()
            .copied()
            .filter(|x| x.server == server)
            .collect()
    };
    let containers = of("container");
    if !containers.is_empty() {
        h.advance(0, "net: container server");
        if let Err(e) = world.start_instance_server(h, "container") {
            skip_all(results, &containers, &format!("container server: {e}"));
        }
    }
    let vms = of("vm");
    if vms.is_empty() {
        return;
    }
    if !vm_usable(h, plan, results, "net", cost::VM) {
        skip_all(
            results,
            &vms,
            "VM mode failed earlier in this run (see `vm net`)",
        );
        return;
    }
    h.advance(0, "net: booting the VM server");
    match world.start_instance_server(h, "vm") {
        Ok(_) => h.advance(cost::VM, "net: VM server ready"),
        Err(e) => {
            skip_all(results, &vms, &format!("VM server: {e}"));
            vm_failed(h, results, "net", &e);
        }
    }
}

/// One untimed warm-up round, then `h.runs` measured rounds over `active`, the order
/// rotating every round; a path whose client fails is skipped from then on.
fn rounds(
    h: &mut Harness,
    results: &mut Results,
    active: &[(&NetPath, std::net::SocketAddr)],
    world: &World,
    p: &Params,
) {
    let mut failed: Vec<&str> = Vec::new();
    for round in 0..=h.runs {
        let mut order = active.to_vec();
        order.rotate_left(round % active.len().max(1));
        for (path, target) in order {
            if failed.contains(&path.name) {
                continue;
            }
            let r = client::once(h, world, path, target, p);
            let msg = if round == 0 {
                format!("net {} warm-up", path.name)
            } else {
                format!("net {} {round}/{}", path.name, h.runs)
            };
            h.advance(run_cost_ms(path, p), &msg);
            match r {
                Ok(report) if round > 0 => {
                    if let Some(s) = results.net.iter_mut().find(|s| s.path == path.name) {
                        s.runs.push(report);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    results.skip(format!("net {}", path.name), e.to_string());
                    failed.push(path.name);
                }
            }
        }
    }
    results.net.retain(|s| !s.runs.is_empty());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(modes: &[&str]) -> Plan {
        Plan {
            modes: modes.iter().map(|m| m.to_string()).collect(),
            suites: vec!["net".into()],
            ..Plan::default()
        }
    }

    fn names(v: Vec<&NetPath>) -> Vec<&str> {
        v.into_iter().map(|p| p.name).collect()
    }

    #[test]
    fn loopback_is_always_measured_and_paths_follow_the_modes() {
        assert_eq!(names(selected(&plan(&[]))), ["loopback"]);
        assert_eq!(
            names(selected(&plan(&["host", "container"]))),
            ["loopback", "container -p", "container-container"]
        );
        assert_eq!(names(selected(&plan(&["vm"]))), ["loopback", "vm -p"]);
        assert_eq!(
            names(selected(&plan(&["host", "container", "vm"]))).len(),
            PATHS.len()
        );
    }
}
