//! `--mode container`: glue between the lifecycle code and the `vcompare-container` crate.
//! It only translates types (`RunSpec` → `ContainerConfig`, `ExitStatus` → `Outcome`, phase
//! marks → `PhaseMark` relative to this process's start); the mechanisms live in the crate.

use std::os::fd::AsFd;

use anyhow::Context;
use vcompare_container as ctr;
use vcompare_network::attach::{self, Attachment, LinkKind};

use super::{network, Outcome, PhaseMark, RunHooks, RunSpec, Volume};

struct Hooks<'a> {
    hooks: &'a mut dyn RunHooks,
    base: u64,
    id: &'a str,
    /// The networks joined before the start; plumbed into the namespace by
    /// [`ctr::Observer::network_namespace`].
    networks: &'a [Attachment],
}

impl ctr::Observer for Hooks<'_> {
    fn started(&mut self, pid: i32) {
        self.hooks.started(pid);
    }
    fn phase(&mut self, phase: ctr::Phase, monotonic_ns: u64) {
        self.hooks.phase(PhaseMark::new(
            phase.into(),
            monotonic_ns.saturating_sub(self.base),
        ));
    }
    fn network_namespace(&mut self, pid: i32) -> Result<(), String> {
        if self.networks.is_empty() {
            return Ok(());
        }
        let plumb = || -> vcompare_network::Result<()> {
            let netns = vcompare_network::netns::open_netns_of(pid)?;
            for (i, att) in self.networks.iter().enumerate() {
                attach::plumb_veth(att, self.id, netns.as_fd(), i == 0)?;
            }
            Ok(())
        };
        plumb().map_err(|e| e.to_string())
    }
}

/// `/etc/hosts` and `/etc/resolv.conf` for a container on a network: files in the instance
/// directory, bind-mounted over the image's (as Docker does), so the image stays untouched.
fn etc_files(spec: &RunSpec, first: &Attachment) -> anyhow::Result<Vec<Volume>> {
    let mut out = Vec::new();
    for (name, text) in [
        ("hosts", first.hosts(&spec.hostname)),
        ("resolv.conf", first.resolv_conf()),
    ] {
        let host = spec.instance_dir.join(format!("etc-{name}"));
        std::fs::write(&host, text).with_context(|| format!("writing {}", host.display()))?;
        out.push(Volume {
            host,
            guest: format!("/etc/{name}"),
            readonly: false,
        });
    }
    Ok(out)
}

fn config(spec: &RunSpec) -> ctr::ContainerConfig {
    ctr::ContainerConfig {
        id: spec.id.clone(),
        rootfs: spec.rootfs.clone(),
        instance_dir: spec.instance_dir.clone(),
        process: spec.process.clone(),
        hostname: spec.hostname.clone(),
        volumes: spec.volumes.clone(),
        resources: ctr::Resources {
            memory_bytes: spec.memory_bytes,
            cpus: spec.cpus,
            pids_limit: spec.pids_limit,
        },
        userns: spec.userns.then(ctr::IdMap::default),
        network_host: spec.network_host,
        init: spec.init,
        interactive: spec.interactive,
        tty: spec.tty,
        timeout: spec.timeout_secs.map(std::time::Duration::from_secs),
    }
}

/// A command that cannot start gets the shell's conventional status (127 not found, 126 not
/// executable) after the error is printed, as `docker run` does; other errors propagate.
fn start_failure(e: ctr::Error) -> anyhow::Result<i32> {
    match e {
        ctr::Error::CommandNotFound(_) => {
            eprintln!("vcompare: {e}");
            Ok(127)
        }
        ctr::Error::CommandNotExecutable { .. } => {
            eprintln!("vcompare: {e}");
            Ok(126)
        }
        e => Err(e.into()),
    }
}

/// Runs the instance in the foreground until its main process ends. Forwards SIGINT/SIGTERM
/// received by this process to the instance, calls `hooks.started` once there is a pid to signal.
pub fn run(spec: &RunSpec, hooks: &mut dyn RunHooks) -> anyhow::Result<Outcome> {
    network::while_joined(spec, LinkKind::Veth, |networks| {
        let mut cfg = config(spec);
        if let Some(first) = networks.first() {
            cfg.volumes.extend(etc_files(spec, first)?);
        }
        let mut obs = Hooks {
            hooks,
            base: super::process_start_ns(),
            id: &spec.id,
            networks,
        };
        match ctr::run(&cfg, &mut obs) {
            Ok(status) => Ok(status.into()),
            Err(e) => start_failure(e).map(Outcome::Exited),
        }
    })
}

/// Runs `process` inside the running container whose init has host pid `pid`; returns its
/// exit code.
pub fn exec(
    pid: i32,
    process: ctr::ProcessSpec,
    tty: bool,
    interactive: bool,
) -> anyhow::Result<i32> {
    let cfg = ctr::exec::ExecConfig {
        process,
        interactive,
        tty,
    };
    match ctr::exec::exec(pid, &cfg) {
        Ok(c) => Ok(c),
        Err(e) => start_failure(e),
    }
}

/// Frees what the instance owns on the host (copy-on-write layer, disk copy). Idempotent.
pub fn remove(spec: &RunSpec) -> anyhow::Result<()> {
    ctr::remove(&spec.instance_dir)?;
    Ok(())
}

/// Host view vs instance view, for `vcompare inspect`; `pid` is set while running.
pub fn inspect(spec: &RunSpec, pid: Option<i32>) -> anyhow::Result<serde_json::Value> {
    let mut v = match pid {
        Some(pid) => ctr::inspect::inspect(pid)?,
        None => serde_json::json!({
            "running": false,
            "kernel_release": { "host": nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default() },
        }),
    };
    if let Some(obj) = v.as_object_mut() {
        let upper = spec.instance_dir.join("upper");
        obj.insert(
            "storage".into(),
            serde_json::json!({
                "lower_image_rootfs": spec.rootfs.display().to_string(),
                "upper_rw_layer": upper.display().to_string(),
                "upper_exists": upper.is_dir(),
            }),
        );
        obj.insert("userns".into(), serde_json::json!(spec.userns));
        let mut net = network::describe(spec);
        if let Some(pid) = pid {
            net["inside_now"] = inside_view(pid);
        }
        obj.insert("network".into(), net);
    }
    Ok(v)
}

/// The container's interfaces, addresses and routes read live from its namespace (netlink),
/// for the "inside" column of the lecture table.
fn inside_view(pid: i32) -> serde_json::Value {
    let read = || -> vcompare_network::Result<serde_json::Value> {
        let netns = vcompare_network::netns::open_netns_of(pid)?;
        let mut nl = vcompare_network::netlink::Netlink::open_in(netns.as_fd())?;
        let links = nl.links()?;
        let name = |i: u32| links.iter().find(|l| l.index == i).map(|l| l.name.clone());
        let addrs: Vec<String> = nl
            .addresses()?
            .iter()
            .map(|a| {
                format!(
                    "{} {}/{}",
                    name(a.index).unwrap_or_default(),
                    a.address,
                    a.prefix_len
                )
            })
            .collect();
        let routes: Vec<String> = nl
            .routes()?
            .iter()
            .map(|r| {
                let dst = r
                    .destination
                    .map_or("default".to_string(), |(a, p)| format!("{a}/{p}"));
                let via = r.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
                let dev = r
                    .oif
                    .and_then(name)
                    .map(|n| format!(" dev {n}"))
                    .unwrap_or_default();
                format!("{dst}{via}{dev}")
            })
            .collect();
        Ok(serde_json::json!({
            "interfaces": links.iter().map(|l| l.name.clone()).collect::<Vec<_>>(),
            "addresses": addrs,
            "routes": routes,
        }))
    };
    read().unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }))
}
