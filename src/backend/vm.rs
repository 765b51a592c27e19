//! `--mode vm`: glue between the lifecycle code and the `vcompare-vmm` crate.

use super::{Outcome, RunHooks, RunSpec};

/// Runs the instance in the foreground until its main process ends. Forwards SIGINT/SIGTERM
/// received by this process to the instance, calls `hooks.started` once there is a pid to signal.
pub fn run(_spec: &RunSpec, _hooks: &mut dyn RunHooks) -> anyhow::Result<Outcome> {
    anyhow::bail!("--mode vm is not implemented yet")
}

/// Runs `args` inside the running instance whose signal target is `pid`; returns the exit code.
pub fn exec(_spec: &RunSpec, _pid: i32, _args: &[String], _tty: bool, _interactive: bool) -> anyhow::Result<i32> {
    anyhow::bail!("exec in --mode vm is not implemented yet")
}

/// Frees what the instance owns on the host (copy-on-write layer, disk copy). Idempotent.
pub fn remove(_spec: &RunSpec) -> anyhow::Result<()> {
    Ok(())
}

/// Host view vs instance view, for `vcompare inspect`; `pid` is set while running.
pub fn inspect(_spec: &RunSpec, _pid: Option<i32>) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::json!({}))
}
