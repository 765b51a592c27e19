//! `stop`, `kill` and `rm`: signalling an instance's recorded process (verified by start
//! time, so a reused pid is never hit) and cleaning up what it owns.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill as send, Signal};
use nix::unistd::Pid;

use super::supervise::remove;
use super::Ctx;
use crate::backend::{self, Mode, Outcome};
use crate::instance::{now_unix, process, Instance, Status};

/// Sends `sig` to the instance's process if it is still the recorded one. For a VM, any
/// signal but SIGKILL is for the entrypoint: the guest agent delivers it once it is up;
/// until then the VMM gets it and passes it on over the console.
fn signal(inst: &Instance, sig: Signal) -> bool {
    let Some(pid) = inst.state.pid.filter(|_| inst.target_alive()) else {
        return false;
    };
    let for_entrypoint = inst.spec.mode == Mode::Vm && sig != Signal::SIGKILL;
    (for_entrypoint && backend::vm::signal_entrypoint(&inst.spec, sig as i32))
        || send(Pid::from_raw(pid), sig).is_ok()
}

/// Waits until the instance is no longer running (monitor and target both gone, or the
/// monitor recorded the exit). Returns the fresh record.
fn wait_exit(ctx: &Ctx, id: &str, timeout: Duration) -> anyhow::Result<Option<Instance>> {
    let deadline = Instant::now() + timeout;
    loop {
        let Ok(inst) = ctx.instances.load(id) else {
            return Ok(None);
        };
        if inst.status() != Status::Running {
            return Ok(Some(inst));
        }
        if Instant::now() >= deadline {
            return Ok(Some(inst));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Writes an exit record for an instance whose monitor died with it (e.g. the VMM was
/// SIGKILLed), so `ps -a` tells the truth.
fn settle(ctx: &Ctx, inst: &Instance, sig: Signal) -> anyhow::Result<()> {
    if inst.state.status == Status::Running && !inst.monitor_alive() && !inst.target_alive() {
        ctx.instances.update(&inst.spec.id, |s| {
            s.status = Status::Exited;
            s.finished_at = Some(now_unix());
            if s.outcome.is_none() {
                s.outcome = Some(Outcome::Signaled(sig as i32));
            }
        })?;
    }
    Ok(())
}

/// `vcompare stop [-t N] ID…`: SIGTERM, then SIGKILL after N seconds.
pub fn stop(ctx: &Ctx, ids: &[String], secs: u64) -> anyhow::Result<i32> {
    for q in ids {
        let inst = ctx.instances.resolve(q)?;
        if inst.status() == Status::Running {
            signal(&inst, Signal::SIGTERM);
            let mut now = wait_exit(ctx, &inst.spec.id, Duration::from_secs(secs))?;
            if let Some(i) = now.as_ref().filter(|i| i.status() == Status::Running) {
                signal(i, Signal::SIGKILL);
                now = wait_exit(ctx, &inst.spec.id, Duration::from_secs(10))?;
            }
            if let Some(i) = now {
                let sig = if i.state.outcome.is_some() {
                    Signal::SIGTERM
                } else {
                    Signal::SIGKILL
                };
                settle(ctx, &i, sig)?;
            }
        }
        println!("{}", inst.short_id());
    }
    Ok(0)
}

/// `vcompare kill [-s SIG] ID…`.
pub fn kill(ctx: &Ctx, ids: &[String], sig: &str) -> anyhow::Result<i32> {
    let sig = process::parse_signal(sig).ok_or_else(|| {
        anyhow::anyhow!("unknown signal `{sig}`; use a name like TERM or a number like 15")
    })?;
    for q in ids {
        let inst = ctx.instances.resolve(q)?;
        if inst.status() != Status::Running || !signal(&inst, sig) {
            anyhow::bail!("instance {} is not running", inst.short_id());
        }
        if sig == Signal::SIGKILL {
            if let Some(i) = wait_exit(ctx, &inst.spec.id, Duration::from_secs(10))? {
                settle(ctx, &i, sig)?;
            }
        }
        println!("{}", inst.short_id());
    }
    Ok(0)
}

/// `vcompare rm [-f] ID…`.
pub fn rm(ctx: &Ctx, ids: &[String], force: bool) -> anyhow::Result<i32> {
    for q in ids {
        let inst = ctx.instances.resolve(q)?;
        let mut inst = inst;
        if inst.status() == Status::Running {
            if !force {
                anyhow::bail!(
                    "instance {} is running; stop it first or use `vcompare rm -f`",
                    inst.short_id()
                );
            }
            signal(&inst, Signal::SIGKILL);
            if let Some(i) = wait_exit(ctx, &inst.spec.id, Duration::from_secs(10))? {
                inst = i;
            }
            if inst.status() == Status::Running {
                anyhow::bail!(
                    "instance {} did not die after SIGKILL; try again",
                    inst.short_id()
                );
            }
            // Let a live monitor finish its cleanup and its exit record.
            let deadline = Instant::now() + Duration::from_secs(5);
            while inst.monitor_alive() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            match ctx.instances.load(&inst.spec.id) {
                Ok(i) => inst = i,
                Err(_) => {
                    println!("{}", inst.short_id()); // `--rm`: its monitor removed it
                    continue;
                }
            }
        }
        remove(&ctx.instances, &inst)?;
        println!("{}", inst.short_id());
    }
    Ok(0)
}
