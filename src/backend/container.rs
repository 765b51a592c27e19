//! `--mode container`: glue between the lifecycle code and the `vcompare-container` crate.
//! It only translates types (`RunSpec` → `ContainerConfig`, `ExitStatus` → `Outcome`, phase
//! marks → `PhaseMark` relative to this process's start); the mechanisms live in the crate.

use vcompare_container as ctr;

use super::{Outcome, PhaseMark, RunHooks, RunSpec};

struct Hooks<'a> {
    hooks: &'a mut dyn RunHooks,
    base: u64,
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
    let cfg = config(spec);
    let mut obs = Hooks {
        hooks,
        base: super::process_start_ns(),
    };
    match ctr::run(&cfg, &mut obs) {
        Ok(status) => Ok(status.into()),
        Err(e) => start_failure(e).map(Outcome::Exited),
    }
}

/// Runs `args` inside the running instance whose signal target is `pid`; returns the exit code.
pub fn exec(
    spec: &RunSpec,
    pid: i32,
    args: &[String],
    tty: bool,
    interactive: bool,
) -> anyhow::Result<i32> {
    let cfg = ctr::exec::ExecConfig {
        process: ctr::ProcessSpec {
            args: args.to_vec(),
            ..spec.process.clone()
        },
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
        obj.insert(
            "network".into(),
            serde_json::json!(if spec.network_host {
                "host"
            } else {
                "none (lo only)"
            }),
        );
    }
    Ok(v)
}
