//! Supervision of one run: records the start, hands the spec to the mode's backend, records the
//! outcome. The foreground `vcompare run` and the detached monitor (`vcompare __monitor ID`)
//! both go through here, so a run's record is the same whichever way it was started.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::backend::{self, Mode, Outcome, PhaseMark, RunHooks};
use crate::instance::{now_unix, process, Instance, Instances, Status};

/// Hooks that write the signal target into the instance record as soon as it exists.
struct RecordHooks<'a> {
    instances: &'a Instances,
    id: &'a str,
    phases: Vec<PhaseMark>,
}

impl RunHooks for RecordHooks<'_> {
    fn started(&mut self, pid: i32) {
        let start = process::start_time(pid);
        if let Err(e) = self.instances.update(self.id, |s| {
            s.pid = Some(pid);
            s.pid_start = start;
        }) {
            eprintln!("vcompare: warning: could not record pid {pid}: {e}");
        }
    }
    fn phase(&mut self, mark: PhaseMark) {
        self.phases.push(mark);
    }
}

/// Runs `inst` to completion in this process and records how it ended. Returns the outcome,
/// or the error that kept it from running (also recorded).
pub fn supervise(instances: &Instances, inst: &Instance) -> anyhow::Result<Outcome> {
    let id = inst.spec.id.as_str();
    let me = std::process::id() as i32;
    let my_start = process::start_time(me);
    instances.update(id, |s| {
        s.status = Status::Running;
        s.monitor_pid = Some(me);
        s.monitor_start = my_start;
        s.pid = None;
        s.pid_start = None;
        s.started_at = Some(now_unix());
        s.finished_at = None;
        s.outcome = None;
        s.error = None;
        s.phases.clear();
        s.runs += 1;
    })?;
    let mut hooks = RecordHooks {
        instances,
        id,
        phases: Vec::new(),
    };
    let result = match inst.spec.mode {
        Mode::Container => backend::container::run(&inst.spec, &mut hooks),
        Mode::Vm => backend::vm::run(&inst.spec, &mut hooks),
    };
    let phases = std::mem::take(&mut hooks.phases);
    instances.update(id, |s| {
        s.status = Status::Exited;
        s.finished_at = Some(now_unix());
        s.phases = phases;
        s.phases_base_mono_ns = Some(crate::backend::process_start_ns());
        match &result {
            Ok(o) => s.outcome = Some(*o),
            Err(e) => s.error = Some(format!("{e:#}")),
        }
    })?;
    result
}

/// Removes what the instance owns on the host, then its record.
pub fn remove(instances: &Instances, inst: &Instance) -> anyhow::Result<()> {
    backend::network::leave_all(&inst.spec)
        .and_then(|()| match inst.spec.mode {
            Mode::Container => backend::container::remove(&inst.spec),
            Mode::Vm => backend::vm::remove(&inst.spec),
        })
        .with_context(|| format!("cleaning up instance {}", inst.short_id()))?;
    instances.delete(&inst.spec.id)?;
    Ok(())
}

/// Starts the detached monitor for `inst` (a new session, output to the instance log) and
/// waits until the instance runs or has already ended. Returns the error of a failed start.
pub fn spawn_monitor(
    instances: &Instances,
    root: &std::path::Path,
    inst: &Instance,
) -> anyhow::Result<()> {
    let log_path = inst.spec.instance_dir.join("log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let exe = std::env::current_exe().context("finding the vcompare executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("--root")
        .arg(root)
        .arg("__monitor")
        .arg(&inst.spec.id)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe; the monitor must outlive this terminal session.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().context("starting the instance monitor")?;
    let before_runs = inst.state.runs;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = match instances.load(&inst.spec.id) {
            Ok(n) => n,
            // `--rm`: the monitor already removed it after a quick exit.
            Err(_) if !inst.spec.instance_dir.exists() => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let started = now.state.runs > before_runs;
        if started && (now.state.pid.is_some() || now.state.status == Status::Exited) {
            if let Some(err) = now
                .state
                .error
                .filter(|_| now.state.status == Status::Exited)
            {
                anyhow::bail!("{err}");
            }
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            let now = instances.load(&inst.spec.id).ok();
            if let Some(err) = now.and_then(|n| n.state.error) {
                anyhow::bail!("{err}");
            }
            if now_is_recorded_exit(instances, &inst.spec.id, before_runs) {
                return Ok(());
            }
            anyhow::bail!(
                "the instance monitor exited early ({status}); see `vcompare logs {}`",
                inst.short_id()
            );
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "the instance did not start within 60 s; see `vcompare logs {}`",
                inst.short_id()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn now_is_recorded_exit(instances: &Instances, id: &str, before_runs: u32) -> bool {
    instances
        .load(id)
        .is_ok_and(|n| n.state.runs > before_runs && n.state.status == Status::Exited)
}
