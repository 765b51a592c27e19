//! `vcompare exec` into a running instance (`--suite exec`), container and microVM side by
//! side in one run, as a user meets it: the CLI spawned, timed from outside.
//!
//! One detached instance per selected mode (container, vm) of the bench image, started once
//! per run with `vcompare run --network none -d --mode MODE IMAGE /bin/probe sleep 1000000`
//! (their start and a VM's boot are in no figure). Before any round, each instance must answer
//! one untimed `vcompare exec NAME /bin/probe true` (a VM's guest agent comes up some time after
//! `run -d` returns). Then one untimed warm-up round and `--runs` measured rounds; every round
//! measures each mode in turn, the order rotating every round (container vm, vm container, …),
//! and per mode:
//!
//! 1. **round trip** — [`ROUND_TRIPS_PER_ROUND`] × `vcompare exec NAME /bin/probe true`, one
//!    after the other; one sample = spawn of the `vcompare` process → its exit seen through a
//!    pidfd ([`spawn_timed`], the harness's timer for every CLI spawn). It includes the CLI's
//!    own start (exec of the binary, argument parsing, reading the instance record), the way
//!    into the instance (container: opening its namespaces and cgroup, forking a helper that
//!    joins them; VM: connecting to the VMM's vsock socket and the guest agent's handshake),
//!    the start of `/bin/probe true` in there, its exit, and the exit status travelling back.
//!    p50 and p99 are nearest-rank percentiles over all measured samples of the run.
//! 2. **output** — one `vcompare exec NAME /bin/dd if=/dev/zero bs=65536 count=N status=none`
//!    (the image's busybox `dd`: exactly N × 64 KiB of zeros, [`stream_mib`] MiB, 16 MiB unless
//!    `VCOMPARE_BENCH_EXEC_MIB` says otherwise). The harness reads `vcompare`'s stdout pipe to
//!    EOF, counting the bytes (nothing is stored); a run must deliver exactly the expected
//!    count. One sample = bytes ÷ (spawn of `vcompare` → the later of its exit and EOF on the
//!    pipe), so it contains everything a round trip contains plus the copy: in a container
//!    `dd` writes straight into the harness's pipe (the exec'd process inherits the CLI's
//!    stdout), in a VM its output goes through a pipe to the guest agent, over virtio-vsock to
//!    the VMM, over the VMM's Unix socket to `vcompare`, and from `vcompare` into the pipe.
//!
//! Both modes get the same commands, sizes, warm-up, round count and rotation. Both instances
//! stay up for the whole suite, so an idle VM's host cost (timer ticks of a nested guest) is
//! paid during the container's samples too. The instances are removed (`rm -f`) at the end,
//! also when a step fails or the suite unwinds. Not in the default suite set: it boots a VM.
//!
//! [`spawn_timed`]: crate::harness::spawn_timed

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{
    cost, instance_timeout, run_args, vcompare_timed, vm_failed, vm_usable, Network, Plan,
};
use crate::error::{BenchError, Result};
use crate::harness::{failed, wait_exit, Harness};
use crate::results::{ExecSeries, ExecStreamRun, Results};

/// The modes this suite measures, in table order.
pub const SUBJECTS: [&str; 2] = ["container", "vm"];

/// Timed `vcompare exec … true` calls per mode and round (so `--runs 10` gives 100 samples
/// per mode and a p99 that is not simply the slowest call).
pub const ROUND_TRIPS_PER_ROUND: usize = 10;

/// What each instance runs while it is exec'd into: the probe idles for 11+ days.
pub const IDLE_COMMAND: [&str; 3] = ["/bin/probe", "sleep", "1000000"];

/// The round-trip command: the smallest workload, as in the startup suite.
pub const ROUND_TRIP_COMMAND: [&str; 2] = ["/bin/probe", "true"];

/// Output size in MiB unless [`STREAM_MIB_ENV`] says otherwise.
pub const STREAM_MIB_DEFAULT: u64 = 16;

/// Overrides the output size (MiB, same for every mode), e.g. for a slow nested VM.
pub const STREAM_MIB_ENV: &str = "VCOMPARE_BENCH_EXEC_MIB";

/// `dd`'s block size: every read of /dev/zero and every write to stdout is this large.
pub const STREAM_BLOCK: u64 = 64 * 1024;

/// The image path of the output command (busybox `dd`).
const DD: &str = "/bin/dd";

/// How long a container instance may take to answer its first exec.
const CONTAINER_READY: Duration = Duration::from_secs(60);
/// How long a VM may take to answer its first exec: a boot on a nested PVM host is 25–60 s.
const VM_READY: Duration = Duration::from_secs(400);

/// Estimated ms of one `vcompare exec … true` (the progress bar's unit): ≈ 4–12 ms into a
/// container, 2–3.5 s into a VM on the nested PVM development host.
const RT_COST: [u64; 2] = [10, 2_500];
/// Estimated ms of one output run per MiB (container ≈ 1.5–3 GiB/s, VM ≈ 0.4 MiB/s there).
const STREAM_COST_PER_MIB: [u64; 2] = [1, 2_600];

/// The output size in MiB: [`STREAM_MIB_ENV`] if it is a positive integer, else the default.
pub fn stream_mib() -> u64 {
    std::env::var(STREAM_MIB_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|m| (1..=1 << 20).contains(m))
        .unwrap_or(STREAM_MIB_DEFAULT)
}

/// The output command for `mib` MiB (in the instance).
pub fn stream_command(mib: u64) -> Vec<String> {
    let count = mib * (1 << 20) / STREAM_BLOCK;
    vec![
        DD.into(),
        "if=/dev/zero".into(),
        format!("bs={STREAM_BLOCK}"),
        format!("count={count}"),
        "status=none".into(),
    ]
}

/// The modes `plan` selects, in table order.
pub fn selected(plan: &Plan) -> Vec<&'static str> {
    SUBJECTS.into_iter().filter(|m| plan.mode(m)).collect()
}

/// Index of `mode` in the cost tables.
fn idx(mode: &str) -> usize {
    usize::from(mode == "vm")
}

/// Estimated ms of one round of `mode`.
fn round_cost_ms(mode: &str, mib: u64) -> u64 {
    ROUND_TRIPS_PER_ROUND as u64 * RT_COST[idx(mode)] + mib * STREAM_COST_PER_MIB[idx(mode)]
}

/// Estimated ms of the whole suite: instance starts (one VM boot) and the rounds.
pub fn estimate_ms(h: &Harness, plan: &Plan) -> u64 {
    let mib = stream_mib();
    selected(plan)
        .iter()
        .map(|m| {
            let start = if *m == "vm" {
                cost::VM
            } else {
                cost::CONTAINER
            };
            start + (h.runs as u64 + 1) * round_cost_ms(m, mib)
        })
        .sum()
}

/// The detached instances, removed (`rm -f`) when dropped: on every way out of the suite.
struct Instances {
    /// `vcompare --root R`, so the teardown needs no harness borrow.
    vcompare: (std::path::PathBuf, std::path::PathBuf),
    /// Every name `run -d` was asked for (recorded before the run: a half-started one goes too).
    names: Vec<String>,
}

impl Drop for Instances {
    fn drop(&mut self) {
        if self.names.is_empty() {
            return;
        }
        let ok = Command::new(&self.vcompare.0)
            .arg("--root")
            .arg(&self.vcompare.1)
            .args(["rm", "-f"])
            .args(&self.names)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "vcompare bench: exec suite: removing {} failed; remove them with `vcompare rm -f {}`",
                self.names.join(" "),
                self.names.join(" ")
            );
        }
    }
}

/// One mode under measurement.
struct Subject {
    mode: &'static str,
    name: String,
    /// Set once its round trip failed (no further round-trip samples).
    rt_failed: bool,
    /// Set once its output run failed.
    stream_failed: bool,
}

/// Runs the exec suite.
pub fn run(h: &mut Harness, plan: &Plan, results: &mut Results) {
    let modes = selected(plan);
    if modes.is_empty() {
        return;
    }
    let mut instances = Instances {
        vcompare: (h.exe.clone(), h.root.clone()),
        names: Vec::new(),
    };
    let mib = stream_mib();
    let stream_cmd = stream_command(mib);
    let has_dd = h.rootfs.join(DD.trim_start_matches('/')).exists();
    let mut subjects = Vec::new();
    for mode in modes {
        if let Some(s) = start(h, plan, results, &mut instances, mode, mib) {
            subjects.push(s);
        }
    }
    for s in &mut subjects {
        let rt_args = exec_args(&s.name, &ROUND_TRIP_COMMAND.map(String::from));
        let st_args = exec_args(&s.name, &stream_cmd);
        let mut instance = run_args(Network::None, &["-d", "--mode", s.mode, &h.image]);
        instance.extend_from_slice(&IDLE_COMMAND);
        results.exec.push(ExecSeries {
            subject: s.mode.into(),
            instance: instance.iter().map(|x| x.to_string()).collect(),
            round_trip_args: rt_args,
            round_trip_definition: ROUND_TRIP_DEFINITION.into(),
            round_trip_ns: Vec::new(),
            stream_args: st_args,
            stream_definition: stream_definition(s.mode).into(),
            stream_bytes: mib << 20,
            stream: Vec::new(),
        });
        if !has_dd {
            results.skip(
                format!("exec {} output", s.mode),
                format!("the image has no {DD} (busybox): install busybox-static on the host and rebuild the default image (`vcompare image rm vcompare/probe`)"),
            );
            s.stream_failed = true;
        }
    }
    if !subjects.is_empty() {
        results.note_once(format!(
            "exec: one detached instance per mode (`{}`), started once per run and not timed; one untimed `vcompare exec NAME /bin/probe true` until it answered, then one untimed warm-up round; every round: {ROUND_TRIPS_PER_ROUND} × `vcompare exec NAME /bin/probe true` and one `vcompare exec NAME {}` ({mib} MiB) per mode, modes rotating",
            IDLE_COMMAND.join(" "),
            stream_cmd.join(" ")
        ));
        rounds(h, results, &mut subjects, mib);
    }
    results
        .exec
        .retain(|s| !(s.round_trip_ns.is_empty() && s.stream.is_empty()));
    h.advance(0, "exec: removing the instances");
    drop(instances);
}

/// What a round-trip sample spans (stated in the results and the report).
pub const ROUND_TRIP_DEFINITION: &str = "spawn of `vcompare exec NAME /bin/probe true` → its exit (pidfd): the CLI's start, the way into the running instance, the process's start and exit there, its status back";

/// What an output sample spans, per mode.
pub fn stream_definition(mode: &str) -> &'static str {
    if mode == "vm" {
        "bytes read from `vcompare exec`'s stdout pipe to EOF ÷ (spawn → the later of its exit and EOF): a round trip plus the copy dd → pipe → guest agent → virtio-vsock → VMM → Unix socket → vcompare → the harness's pipe"
    } else {
        "bytes read from `vcompare exec`'s stdout pipe to EOF ÷ (spawn → the later of its exit and EOF): a round trip plus the copy dd → the harness's pipe (the exec'd process inherits the CLI's stdout)"
    }
}

/// `exec NAME CMD…` (after `vcompare`).
fn exec_args(name: &str, command: &[String]) -> Vec<String> {
    let mut v = vec!["exec".to_string(), name.to_string()];
    v.extend_from_slice(command);
    v
}

/// Starts `mode`'s instance and waits for its first exec; `None` (recorded as skipped) when
/// that fails.
fn start(
    h: &mut Harness,
    plan: &Plan,
    results: &mut Results,
    instances: &mut Instances,
    mode: &'static str,
    mib: u64,
) -> Option<Subject> {
    let skipped_ms = (h.runs as u64 + 1) * round_cost_ms(mode, mib);
    if mode == "vm" && !vm_usable(h, plan, results, "exec", cost::VM + skipped_ms) {
        return None;
    }
    let name = h.fresh_name(&format!("exec-{mode}"));
    instances.names.push(name.clone());
    let image = h.image.clone();
    let mut flags = vec!["-d", "--name", &name, "--mode", mode, &image];
    flags.extend_from_slice(&IDLE_COMMAND);
    h.advance(0, &format!("exec: starting the {mode} instance"));
    let timeout = if mode == "vm" {
        VM_READY
    } else {
        CONTAINER_READY
    };
    let ready = match h.vcompare_ok(&run_args(Network::None, &flags)) {
        Ok(_) => ready(h, &name, timeout),
        Err(e) => Err(Unready::Instance(e)),
    };
    let start_ms = if mode == "vm" {
        cost::VM
    } else {
        cost::CONTAINER
    };
    match ready {
        Ok(()) => {
            h.advance(start_ms, &format!("exec: {mode} instance answers"));
            Some(Subject {
                mode,
                name,
                rt_failed: false,
                stream_failed: false,
            })
        }
        Err(Unready::Exec(e)) => {
            // The instance runs but cannot be exec'd into (e.g. no guest agent yet).
            results.skip(format!("exec {mode}"), e.to_string());
            h.advance(start_ms + skipped_ms, &format!("exec {mode} skipped"));
            None
        }
        Err(Unready::Instance(e)) => {
            results.skip(format!("exec {mode}"), e.to_string());
            if mode == "vm" {
                vm_failed(h, results, "exec", &e);
            }
            h.advance(start_ms + skipped_ms, &format!("exec {mode} skipped"));
            None
        }
    }
}

/// Why an instance never answered.
enum Unready {
    /// It did not start, exited or did not answer in time: the instance itself is the problem.
    Instance(BenchError),
    /// It runs, but `vcompare exec` refuses it (e.g. "exec is not supported in --mode vm").
    Exec(BenchError),
}

impl From<BenchError> for Unready {
    fn from(e: BenchError) -> Unready {
        Unready::Instance(e)
    }
}

/// Untimed `vcompare exec NAME /bin/probe true` until it succeeds: the instance is up and
/// `exec` works. Retried while the instance runs and `timeout` allows; an error that says
/// exec is not supported ends the wait at once.
fn ready(h: &Harness, name: &str, timeout: Duration) -> Result<(), Unready> {
    let t = Instant::now();
    let label = format!("vcompare exec {name} {}", ROUND_TRIP_COMMAND.join(" "));
    let mut args = vec!["exec", name];
    args.extend_from_slice(&ROUND_TRIP_COMMAND);
    loop {
        let out = h
            .vcompare(&args)
            .output()
            .map_err(|source| BenchError::Spawn {
                cmd: label.clone(),
                source,
            })?;
        if out.status.success() {
            return Ok(());
        }
        let err = failed(&label, &out.status.to_string(), &out.stderr, &out.stdout);
        if String::from_utf8_lossy(&out.stderr).contains("not supported") {
            return Err(Unready::Exec(err));
        }
        if let Ok(v) = h.inspect(name) {
            if v.get("status").and_then(serde_json::Value::as_str) == Some("exited") {
                return Err(Unready::Instance(BenchError::Failed {
                    cmd: format!("instance {name}"),
                    status: "exited early".into(),
                    detail: v
                        .get("error")
                        .and_then(serde_json::Value::as_str)
                        .map(str::to_string)
                        .unwrap_or_else(|| err.to_string()),
                }));
            }
        }
        if t.elapsed() > timeout {
            return Err(Unready::Instance(BenchError::Timeout {
                cmd: label,
                secs: timeout.as_secs(),
                detail: format!("the instance never answered an exec; last error: {err}"),
            }));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One untimed warm-up round, then `h.runs` measured rounds, the mode order rotating every
/// round; a figure of a mode that fails is skipped from then on.
fn rounds(h: &mut Harness, results: &mut Results, subjects: &mut [Subject], mib: u64) {
    for round in 0..=h.runs {
        let n = subjects.len().max(1);
        for k in 0..subjects.len() {
            let s = &mut subjects[(k + round) % n];
            let msg = if round == 0 {
                format!("exec {} warm-up", s.mode)
            } else {
                format!("exec {} {round}/{}", s.mode, h.runs)
            };
            let series = results
                .exec
                .iter()
                .position(|x| x.subject == s.mode)
                .expect("a series per started subject");
            if !s.rt_failed {
                for _ in 0..ROUND_TRIPS_PER_ROUND {
                    match round_trip(h, &results.exec[series].round_trip_args, s.mode) {
                        Ok(ns) if round > 0 => results.exec[series].round_trip_ns.push(ns),
                        Ok(_) => {}
                        Err(e) => {
                            results.skip(format!("exec {} round trip", s.mode), e.to_string());
                            s.rt_failed = true;
                            break;
                        }
                    }
                }
            }
            if !s.stream_failed {
                let (args, bytes) = (
                    results.exec[series].stream_args.clone(),
                    results.exec[series].stream_bytes,
                );
                match stream(h, &args, bytes, s.mode) {
                    Ok(run) if round > 0 => results.exec[series].stream.push(run),
                    Ok(_) => {}
                    Err(e) => {
                        results.skip(format!("exec {} output", s.mode), e.to_string());
                        s.stream_failed = true;
                    }
                }
            }
            h.advance(round_cost_ms(s.mode, mib), &msg);
        }
    }
}

/// One timed round trip: `vcompare ARGS…` spawn → exit, ns; a failure is an error.
fn round_trip(h: &Harness, args: &[String], mode: &str) -> Result<u64> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let label = format!("vcompare {}", args.join(" "));
    Ok(vcompare_timed(h, &args, &label, instance_timeout(mode))?.wall_ns)
}

/// How long one output run may take: a container 120 s; a VM its instance timeout plus 10 s
/// per MiB (a nested guest moved TCP bulk at well under 1 MiB/s).
fn stream_timeout(mode: &str, bytes: u64) -> Duration {
    if mode == "vm" {
        instance_timeout(mode) + Duration::from_secs(10 * bytes.div_ceil(1 << 20))
    } else {
        Duration::from_secs(120)
    }
}

/// One timed output run: spawn of `vcompare ARGS…` with its stdout a pipe the harness reads to
/// EOF (counting, not storing) → the later of the exit and EOF. Exactly `expected` bytes must
/// arrive.
fn stream(h: &Harness, args: &[String], expected: u64, mode: &str) -> Result<ExecStreamRun> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let label = format!("vcompare {}", args.join(" "));
    let timeout = stream_timeout(mode, expected);
    let mut cmd = h.vcompare(&args);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|source| BenchError::Spawn {
        cmd: label.clone(),
        source,
    })?;
    let stdout = child.stdout.take();
    let counter = std::thread::spawn(move || -> (u64, Instant, Option<std::io::Error>) {
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        let Some(mut out) = stdout else {
            return (0, Instant::now(), None);
        };
        loop {
            match out.read(&mut buf) {
                Ok(0) => return (total, Instant::now(), None),
                Ok(n) => total += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return (total, Instant::now(), Some(e)),
            }
        }
    });
    let mut se = child.stderr.take();
    let errs = std::thread::spawn(move || {
        let mut b = Vec::new();
        if let Some(s) = se.as_mut() {
            let _ = s.read_to_end(&mut b);
        }
        b
    });
    let exited = wait_exit(&mut child, timeout).map_err(|source| BenchError::Spawn {
        cmd: label.clone(),
        source,
    })?;
    let Some((status, exited_at)) = exited else {
        let _ = child.kill();
        let _ = child.wait();
        // The reader is left to finish on its own: whatever still holds the pipe may outlive us.
        return Err(BenchError::Timeout {
            cmd: label,
            secs: timeout.as_secs(),
            detail: format!("no exit (set {STREAM_MIB_ENV} for a smaller output)"),
        });
    };
    let (bytes, eof_at, read_err) = counter.join().unwrap_or((0, exited_at, None));
    let stderr = errs.join().unwrap_or_default();
    if !status.success() {
        return Err(failed(&label, &status.to_string(), &stderr, b""));
    }
    if let Some(e) = read_err {
        return Err(BenchError::Io {
            path: format!("stdout of {label}").into(),
            source: e,
        });
    }
    if bytes != expected {
        return Err(BenchError::Parse {
            what: label,
            detail: format!("{bytes} bytes on stdout, expected {expected}"),
        });
    }
    let end = exited_at.max(eof_at);
    Ok(ExecStreamRun::new(
        bytes,
        end.duration_since(started).as_nanos() as u64,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_command_writes_the_stated_size_in_whole_blocks() {
        let c = stream_command(64);
        assert_eq!(
            c,
            [
                "/bin/dd",
                "if=/dev/zero",
                "bs=65536",
                "count=1024",
                "status=none"
            ]
        );
        assert_eq!(STREAM_BLOCK * 1024, 64 << 20);
    }

    #[test]
    fn modes_follow_the_plan_in_table_order() {
        let plan = Plan {
            modes: vec!["vm".into(), "host".into(), "container".into()],
            suites: vec!["exec".into()],
            ..Plan::default()
        };
        assert_eq!(selected(&plan), ["container", "vm"]);
        let plan = Plan {
            modes: vec!["host".into()],
            ..plan
        };
        assert!(selected(&plan).is_empty());
    }

    #[test]
    fn a_stream_run_states_its_rate() {
        let r = ExecStreamRun::new(64 << 20, 500_000_000);
        assert_eq!(r.bytes_per_s, (64u64 << 21) as f64);
    }
}
