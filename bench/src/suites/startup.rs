//! Startup: wall time from spawning the command to observing its exit (the pidfd of
//! [`crate::harness::wait_exit`], one exit detector for every subject), for a trivial command
//! (`/bin/probe true`), with the phase breakdown each backend records.
//!
//! - host: spawn `probe true` directly (the floor: fork + exec + exit);
//! - container / vm: spawn `vcompare run --mode M IMAGE /bin/probe true`; phases come from
//!   `vcompare inspect` (marks in ns since the vcompare process entered `main`, re-based on the
//!   spawn instant when the record carries `main`'s clock reading), so the spans sum to the
//!   wall time; afterwards `vcompare rm -f` is timed the same way as the removal;
//! - crun / runc: spawn `crun|runc run -b BUNDLE ID` on the same rootfs and command (their
//!   `run` deletes the container before exiting; crun's hybrid-cgroup workaround is timed in
//!   the child and subtracted);
//! - qemu subjects and firecracker: the clock starts before the per-boot disk copy and spec,
//!   then the VMM is spawned; mark "init" = the init's first phase report
//!   ([`crate::peers::qemu`], [`crate::peers::firecracker`]);
//! - vm and vm-cold: vcompare's VM restored from the snapshot of its VM kind (taken by the
//!   warm-up boot) and booted cold (`--no-snapshot`), side by side; `inspect` must confirm
//!   each run started that way, else the run is dropped (not comparable). The peers boot cold,
//!   so they compare with `vm-cold`.
//!
//! Every subject gets one untimed warm-up: host, container, crun and runc a round before the
//! measured ones; each VM subject a boot ([`super::vm_warm_up`]).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::{cost, disk, vm_failed, vm_warm_up, Plan};
use crate::error::Result;
use crate::harness::{spawn_timed, Harness};
use crate::peers;
use crate::peers::qemu;
use crate::results::{DiskSeries, PhaseSpan, Results, StartupRun, StartupSeries};

/// How long one container-like start may take before it counts as hung.
const CONTAINER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one VM boot may take (≈ 20–40 s on a nested PVM host).
pub const VM_TIMEOUT: Duration = Duration::from_secs(240);

/// Name of the last span: from the last mark to the exit the harness observed.
pub const TAIL_SPAN: &str = "until exit";

/// Turns backend marks (`name`, ns since the vcompare process started) into consecutive spans
/// from spawn to exit. `base_minus_spawn` is (process start − spawn instant) in ns; marks then
/// sit at `at_ns + base_minus_spawn` after spawn. Marks beyond the wall time are clamped.
pub fn phase_spans(marks: &[(String, u64)], base_minus_spawn: i64, wall_ns: u64) -> Vec<PhaseSpan> {
    let mut sorted: Vec<(String, u64)> = marks.to_vec();
    sorted.sort_by_key(|m| m.1);
    let mut spans = Vec::new();
    let mut prev = 0u64;
    for (name, at) in sorted {
        let rel = (at as i64 + base_minus_spawn).clamp(0, wall_ns as i64) as u64;
        let rel = rel.max(prev);
        spans.push(PhaseSpan {
            name,
            duration_ns: rel - prev,
        });
        prev = rel;
    }
    if !spans.is_empty() {
        spans.push(PhaseSpan {
            name: TAIL_SPAN.into(),
            duration_ns: wall_ns.saturating_sub(prev),
        });
    }
    spans
}

/// The `phases` array of a `vcompare inspect --format json` record as (name, at_ns).
pub fn marks_from_inspect(v: &Value) -> Vec<(String, u64)> {
    v.get("phases")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|p| {
                    Some((
                        p.get("name")?.as_str()?.to_string(),
                        p.get("at_ns")?.as_u64()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The inspect field holding the CLOCK_MONOTONIC reading (ns) of the vcompare process's
/// `main`, the zero of its `phases[].at_ns`; with it the marks are re-based exactly onto the
/// harness's spawn instant.
pub const PHASE_BASE_FIELD: &str = "phases_base_mono_ns";

/// (marks base − spawn instant) in ns from an inspect record, if it carries [`PHASE_BASE_FIELD`].
pub fn base_minus_spawn(record: &Value, spawn_mono_ns: u64) -> Option<i64> {
    let base = record.get(PHASE_BASE_FIELD)?.as_u64()?;
    Some(base as i64 - spawn_mono_ns as i64)
}

/// Times `vcompare rm -f NAME` from spawn to exit (the removal of a finished instance).
fn timed_remove(h: &Harness, name: &str) -> Result<u64> {
    let label = format!("vcompare rm -f {name}");
    let out =
        spawn_timed(h.vcompare(&["rm", "-f", name]), &label)?.finish(&label, CONTAINER_TIMEOUT)?;
    if !out.status.success() {
        return Err(crate::harness::failed(
            &label,
            &out.status.to_string(),
            &out.stderr,
            &out.stdout,
        ));
    }
    Ok(out.wall_ns)
}

/// One `vcompare run --mode MODE IMAGE /bin/probe true`: the timed run, its phases and (if
/// asked) the instance directory's disk use, then the timed `rm`. Also the VM warm-up boot.
pub(crate) fn vcompare_once(
    h: &mut Harness,
    mode: &str,
    want_disk: bool,
    results: &mut Results,
) -> Result<(StartupRun, Option<(u64, u64)>)> {
    vcompare_probe(h, mode, &[], want_disk, results).map(|p| (p.run, p.usage))
}

/// What [`vcompare_probe`] measured: the run, the instance directory's disk use (if asked),
/// and the instance's `inspect` record (e.g. to check a VM was restored from its snapshot).
pub(crate) struct ProbeRun {
    /// Wall time, phases, marks, removal.
    pub run: StartupRun,
    /// (allocated, apparent) bytes of the instance directory.
    pub usage: Option<(u64, u64)>,
    /// `vcompare inspect NAME --format json`, read before the removal.
    pub record: Value,
}

/// [`vcompare_once`] with further `run` flags (`extra`, e.g. `--no-snapshot`), returning the
/// inspect record too.
pub(crate) fn vcompare_probe(
    h: &mut Harness,
    mode: &str,
    extra: &[&str],
    want_disk: bool,
    results: &mut Results,
) -> Result<ProbeRun> {
    let name = h.fresh_name(mode);
    let image = h.image.clone();
    let args = super::probe_true_kept_with(&name, mode, &image, extra);
    let label = format!("vcompare run --mode {mode} {image} /bin/probe true");
    let timed = spawn_timed(h.vcompare(&args), &label)?;
    let spawn_mono_ns = timed.spawn_mono_ns;
    let timeout = if mode == "vm" {
        VM_TIMEOUT
    } else {
        CONTAINER_TIMEOUT
    };
    let out = match timed.finish(&label, timeout) {
        Ok(o) => o,
        Err(e) => {
            h.remove(&[name]);
            return Err(e);
        }
    };
    if !out.status.success() {
        h.remove(&[name]);
        return Err(crate::harness::failed(
            &label,
            &out.status.to_string(),
            &out.stderr,
            &out.stdout,
        ));
    }
    let record = h.inspect(&name);
    let mut run = StartupRun {
        wall_ns: out.wall_ns,
        phases: Vec::new(),
        marks: BTreeMap::new(),
        remove_ns: None,
    };
    let mut usage = None;
    if let Ok(rec) = &record {
        let marks = marks_from_inspect(rec);
        // Marks count from the vcompare process entering `main`; re-based onto the spawn
        // instant when the record says when `main` was (else the spawn → `main` gap, ≈1 ms of
        // exec and loader, lands in the last span and is missing from every mark).
        let offset = match base_minus_spawn(rec, spawn_mono_ns) {
            Some(o) => o,
            None => {
                results.note_once(format!("{mode} startup: `vcompare inspect` has no `{PHASE_BASE_FIELD}`, so phase marks count from vcompare's `main`, not from the spawn (the ≈1 ms of exec and loader before `main` is in the last span and missing from launch → init)"));
                0
            }
        };
        run.phases = phase_spans(&marks, offset, out.wall_ns);
        for (n, at) in &marks {
            run.marks
                .insert(n.clone(), (*at as i64 + offset).max(0) as u64);
        }
        if want_disk {
            usage = disk::instance_usage(rec);
        }
    }
    match timed_remove(h, &name) {
        Ok(ns) => run.remove_ns = Some(ns),
        Err(e) => {
            h.remove(&[name]);
            return Err(e);
        }
    }
    Ok(ProbeRun {
        run,
        usage,
        record: record?,
    })
}

/// The VM subject of the Firecracker peer (cold boots, compared with `vm-cold`).
pub const FIRECRACKER: &str = "firecracker";

/// vcompare's VM subject booted cold (`--no-snapshot`): the one QEMU and Firecracker compare with.
pub const VM_COLD: &str = "vm-cold";

/// The `run` flags of vcompare's VM subjects: `vm` (the default: restored from the snapshot
/// of its VM kind, which its warm-up boot took) and `vm-cold` (`--no-snapshot`); `None` for
/// any other subject.
pub fn vm_subject_flags(subject: &str) -> Option<&'static [&'static str]> {
    match subject {
        "vm" => Some(&[]),
        VM_COLD => Some(&["--no-snapshot"]),
        _ => None,
    }
}

/// The VM run's snapshot plan and outcome from its inspect record (`host.snapshot`: `plan`
/// restore/take/cold, `restored`, `taken_pause_ms`, `dir`), wherever the record nests it.
pub fn snapshot_info(record: &Value) -> Option<&Value> {
    match record {
        Value::Object(m) => {
            if let Some(s) = m.get("snapshot").filter(|s| s.get("plan").is_some()) {
                return Some(s);
            }
            m.values().find_map(snapshot_info)
        }
        Value::Array(a) => a.iter().find_map(snapshot_info),
        _ => None,
    }
}

/// Checks that a run of VM subject `subject` started the way the subject says: `vm` restored
/// from a snapshot, `vm-cold` booted cold. A run that did not is not comparable: an error.
pub fn check_snapshot_kind(subject: &str, record: &Value) -> Result<()> {
    let info = snapshot_info(record);
    let restored = info
        .and_then(|i| i.get("restored"))
        .and_then(Value::as_bool)
        // A running instance has only its plan (`restored` is written when the run ends).
        .or_else(|| match info?.get("plan")?.as_str()? {
            "restore" => Some(true),
            "cold" => Some(false),
            _ => None,
        });
    let want = subject == "vm";
    if restored == Some(want) {
        return Ok(());
    }
    Err(crate::error::BenchError::Parse {
        what: format!("startup {subject}: the run's snapshot state"),
        detail: format!(
            "expected {}, `vcompare inspect` says host.snapshot = {} — not comparable, run dropped",
            if want {
                "a VM restored from its snapshot"
            } else {
                "a cold boot"
            },
            info.map(Value::to_string)
                .unwrap_or_else(|| "(absent)".into())
        ),
    })
}

/// A VM peer's boot (QEMU, Firecracker) as a startup run: its wall figure, the `init` mark and
/// the one span launch → init.
fn peer_boot_run(b: &qemu::QemuBoot) -> StartupRun {
    let mut marks = BTreeMap::new();
    if let Some(i) = b.init_ns {
        marks.insert("init".to_string(), i);
    }
    let phases = b
        .init_ns
        .map(|i| {
            vec![PhaseSpan {
                name: "launch → init".into(),
                duration_ns: i,
            }]
        })
        .unwrap_or_default();
    StartupRun {
        wall_ns: b.wall_ns,
        phases,
        marks,
        remove_ns: None,
    }
}

/// One host run of `probe true`.
fn host_once(h: &Harness) -> Result<StartupRun> {
    let probe = h.rootfs.join("bin/probe");
    let mut c = std::process::Command::new(&probe);
    c.arg("true")
        .stdin(std::process::Stdio::null())
        .env_clear()
        .env("PATH", crate::harness::IMAGE_PATH);
    timed_run(c, &format!("{} true", probe.display()), || {})
}

/// Times `cmd` from spawn to exit (a run without phase marks); a failed run becomes an
/// error naming `label`, after `cleanup` ran.
fn timed_run(
    cmd: std::process::Command,
    label: &str,
    cleanup: impl FnOnce(),
) -> Result<StartupRun> {
    let out = spawn_timed(cmd, label)?.finish(label, CONTAINER_TIMEOUT)?;
    if !out.status.success() {
        cleanup();
        return Err(crate::harness::failed(
            label,
            &out.status.to_string(),
            &out.stderr,
            &out.stdout,
        ));
    }
    Ok(StartupRun {
        wall_ns: out.wall_ns,
        phases: Vec::new(),
        marks: BTreeMap::new(),
        remove_ns: None,
    })
}

/// One crun or runc run of the same rootfs and command; crun's hybrid-cgroup workaround (the
/// harness's step, not crun's) is subtracted.
fn peer_once(h: &mut Harness, peer: &str, bundle: &std::path::Path) -> Result<StartupRun> {
    let id = h.fresh_name(peer);
    let (cmd, workaround) = if peer == "crun" {
        peers::crun::command(bundle, &id)
    } else {
        (peers::runc::command(bundle, &id), None)
    };
    let label = format!("{peer} run -b {} {id}", bundle.display());
    let mut run = timed_run(cmd, &label, || {
        let _ = std::process::Command::new(peer)
            .args(["delete", "-f", &id])
            .output();
    })?;
    if let Some(ns) = workaround.and_then(|w| w.duration_ns()) {
        run.wall_ns = run.wall_ns.saturating_sub(ns);
    }
    Ok(run)
}

/// Environment variable naming another guest kernel for an extra QEMU subject.
pub const REFERENCE_KERNEL_ENV: &str = "VCOMPARE_QEMU_REFERENCE_KERNEL";
/// That subject's name.
pub const REFERENCE_SUBJECT: &str = "qemu-reference";

/// The start and end event of launch → init, the same for every VM subject.
pub const LAUNCH_TO_INIT: &str = "launch → init = the harness starts the instance (spawns `vcompare run`, whose CLI then copies the image's VM disk, writes the run's spec and spawns `vcompare-vmm`; for QEMU: copies the same disk and writes the same spec, then spawns qemu) → the guest init's first phase report (`ESC _ vcompare:1 ESC \\` on the serial console; timestamped by vcompare's VMM as it handles the write, by the harness as it reads QEMU's stdout)";

/// Definition text shown next to each subject's numbers.
pub fn definition(subject: &str) -> String {
    let rm = "; `vcompare rm -f` afterwards is timed the same way and shown as removal (run + removal is the figure compared with crun/runc, whose `run` deletes the container)";
    match subject {
        "host" => "spawn `probe true` on the host → its exit (fork+exec+exit floor)".into(),
        "container" => format!("spawn `vcompare run --mode container IMAGE /bin/probe true` → its exit{rm}"),
        "vm" => format!("spawn `vcompare run --mode vm IMAGE /bin/probe true` → its exit, **restored from the VM kind's snapshot** (taken by the warm-up boot; every measured run is checked with `inspect` to have been restored, else dropped): CLI preparation incl. the copy of the snapshot's disk, VMM setup = `vcompare-vmm` launch → vCPU 0's first KVM_RUN after the restore (memory file mapped copy-on-write, KVM and device state restored), init reads the spec, probe, power-off; no `kernel_boot` mark (the kernel booted when the snapshot was taken){rm}"),
        "vm-cold" => format!("the same command with `--no-snapshot`: a **cold boot** (CLI preparation incl. the disk copy, VMM setup = `vcompare-vmm` launch → vCPU 0's first KVM_RUN, guest kernel boot, init, probe, power-off; checked with `inspect` not to have been restored); {LAUNCH_TO_INIT}; the subject QEMU and Firecracker compare with{rm}"),
        "firecracker" => format!("`firecracker --no-api --config-file CFG` (same kernel and kernel arguments, root on a fresh copy of the image's VM disk with the same spec — as `qemu-rootdisk` and vcompare's VMM —, 1 vCPU, 256 MiB), a cold boot; {LAUNCH_TO_INIT}; Firecracker is stopped there, so its wall figure is launch → init"),
        "crun" => "spawn `crun run -b BUNDLE` (same rootfs and command, OCI default spec, no user namespace) → its exit; `run` includes the delete; on a hybrid cgroup host the harness's own workaround (private mount namespace without /sys/fs/cgroup/unified, done between fork and exec) is timed in the child and subtracted".into(),
        "runc" => "spawn `runc run -b BUNDLE` (same rootfs and command, OCI default spec, no user namespace) → its exit; `run` includes the delete".into(),
        "qemu" => format!("`qemu-system-x86_64 -M microvm,acpi=off -cpu host` (on PVM `host,-arch-capabilities`: PVM refuses QEMU's write of that MSR) (same kernel and kernel arguments, 256 MiB, 1 vCPU; the conventional boot: `-initrd` with vcompare's init as /init, built once per run like vcompare's cached image disk; a fresh copy of the image's VM disk as virtio-blk); {LAUNCH_TO_INIT}; QEMU is stopped there, so its wall figure is launch → init"),
        "qemu-reference" => format!("the same QEMU boot as `qemu` (initramfs), but of the kernel named by $VCOMPARE_QEMU_REFERENCE_KERNEL (see the notes); {LAUNCH_TO_INIT}"),
        "qemu-rootdisk" => format!("the same QEMU, booted as vcompare's VMM boots: no initramfs, the kernel mounts the fresh disk copy as root and starts the init stored on it (same arguments plus vcompare's root arguments); {LAUNCH_TO_INIT}"),
        _ => String::new(),
    }
}

fn series<'a>(all: &'a mut Vec<StartupSeries>, subject: &str) -> &'a mut StartupSeries {
    if let Some(i) = all.iter().position(|s| s.subject == subject) {
        return &mut all[i];
    }
    all.push(StartupSeries {
        subject: subject.into(),
        definition: definition(subject),
        runs: Vec::new(),
    });
    all.last_mut().expect("just pushed")
}

/// Runs the startup suite (and, if selected, collects disk use per instance on the way).
pub fn run(h: &mut Harness, plan: &Plan, results: &mut Results) {
    let want_disk = plan.suite("disk");
    let mut subjects: Vec<&str> = Vec::new();
    if plan.mode("host") {
        subjects.push("host");
    }
    if plan.mode("container") {
        subjects.push("container");
    }
    let bundle = h.scratch.join("bundle");
    for peer in ["crun", "runc"] {
        if !plan.peer(peer) {
            continue;
        }
        let avail = if peer == "crun" {
            peers::crun::available()
        } else {
            peers::runc::available()
        };
        if !avail {
            results.skip(
                format!("peer {peer}"),
                format!("{peer} is not on PATH (apt-get install {peer})"),
            );
            continue;
        }
        match peers::write_bundle(&bundle, &h.rootfs, &["/bin/probe", "true"]) {
            Ok(_) => subjects.push(peer),
            Err(e) => results.skip(format!("peer {peer}"), e.to_string()),
        }
    }
    let mut failed: Vec<String> = Vec::new();
    let mut disk_samples: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    // One untimed warm-up round (page cache, image rootfs cache), then `runs` rounds with the
    // order rotated every round.
    for round in 0..=h.runs {
        let mut order = subjects.clone();
        order.rotate_left(round % subjects.len().max(1));
        for subject in order {
            if failed.iter().any(|f| f == subject) {
                continue;
            }
            let r = match subject {
                "host" => host_once(h).map(|r| (r, None)),
                "container" => vcompare_once(h, "container", want_disk, results),
                peer => peer_once(h, peer, &bundle).map(|r| (r, None)),
            };
            let est = match subject {
                "host" => cost::HOST,
                "container" => cost::CONTAINER,
                _ => cost::PEER_CONTAINER,
            };
            h.advance(est, &format!("startup {subject} {round}/{}", h.runs));
            match r {
                Ok((run, usage)) if round > 0 => {
                    series(&mut results.startup, subject).runs.push(run);
                    if let Some(u) = usage {
                        disk_samples.entry(subject.to_string()).or_default().push(u);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    h.say(&format!("startup {subject}: {e}"));
                    results.skip(format!("startup {subject}"), e.to_string());
                    failed.push(subject.to_string());
                }
            }
        }
    }
    // VMs: few runs, vcompare and QEMU alternating, each after one untimed warm-up boot.
    let mut vm_subjects: Vec<String> = Vec::new();
    if super::vm_usable(h, plan, results, "startup", 2 * h.vm_runs as u64 * cost::VM) {
        vm_subjects.push("vm".into());
        vm_subjects.push(VM_COLD.into());
    }
    let qemu_setups = super::qemu_setups(h, plan, results);
    vm_subjects.extend(qemu_setups.iter().map(|s| s.subject.clone()));
    let firecracker = super::firecracker_setup(h, plan, results);
    if firecracker.is_some() {
        vm_subjects.push(FIRECRACKER.into());
    }
    for subject in vm_subjects.clone() {
        if vm_subject_flags(&subject).is_none() || h.vm_broken.is_none() {
            vm_warm_up(h, results, &subject);
        }
    }
    for round in 0..h.vm_runs {
        let mut order = vm_subjects.clone();
        order.rotate_left(round % vm_subjects.len().max(1));
        for subject in order {
            let subject = subject.as_str();
            let ours = vm_subject_flags(subject);
            if ours.is_some() && h.vm_broken.is_some() || failed.iter().any(|f| f == subject) {
                h.advance(
                    if ours.is_some() { cost::VM } else { cost::QEMU },
                    &format!("startup {subject} skipped"),
                );
                continue;
            }
            let progress = format!("startup {subject} {}/{}", round + 1, h.vm_runs);
            if let Some(flags) = ours {
                let r = vcompare_probe(h, "vm", flags, want_disk, results);
                h.advance(cost::VM, &progress);
                match r {
                    Ok(p) => match check_snapshot_kind(subject, &p.record) {
                        Ok(()) => {
                            series(&mut results.startup, subject).runs.push(p.run);
                            if let Some(u) = p.usage {
                                disk_samples.entry(subject.into()).or_default().push(u);
                            }
                        }
                        Err(e) => {
                            h.say(&e.to_string());
                            results.skip(
                                format!("startup {subject} run {}", round + 1),
                                e.to_string(),
                            );
                        }
                    },
                    Err(e) => vm_failed(h, results, "startup", &e),
                }
                continue;
            }
            let r = if subject == FIRECRACKER {
                match &firecracker {
                    Some(setup) => peers::firecracker::boot(
                        setup,
                        &["/bin/probe", "true"],
                        qemu::Until::Init,
                        VM_TIMEOUT,
                    ),
                    None => continue,
                }
            } else if let Some(setup) = qemu_setups.iter().find(|q| q.subject == subject) {
                qemu::boot(
                    setup,
                    &["/bin/probe", "true"],
                    qemu::Until::Init,
                    VM_TIMEOUT,
                )
            } else {
                continue;
            };
            h.advance(cost::QEMU, &progress);
            match r {
                Ok(b) => series(&mut results.startup, subject)
                    .runs
                    .push(peer_boot_run(&b)),
                Err(e) => {
                    h.say(&format!("startup {subject}: {e}"));
                    results.skip(format!("startup {subject}"), e.to_string());
                    failed.push(subject.into());
                }
            }
        }
    }
    for (subject, v) in disk_samples {
        results.disk.push(DiskSeries {
            subject: subject.clone(),
            definition: disk::definition(&subject).into(),
            allocated_bytes: v.iter().map(|x| x.0).collect(),
            apparent_bytes: v.iter().map(|x| x.1).collect(),
        });
    }
}
