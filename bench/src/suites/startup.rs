//! Startup: wall time from spawning the command to observing its exit, for a trivial command
//! (`/bin/probe true`), with the phase breakdown each backend records.
//!
//! - host: spawn `probe true` directly (the floor: fork + exec + exit);
//! - container / vm: spawn `vcompare run --mode M IMAGE /bin/probe true`; phases come from
//!   `vcompare inspect` (marks in ns since the vcompare process entered `main`), so the spans
//!   sum to the wall time (the ≈1 ms before `main` is counted in the last span);
//! - crun / runc: spawn `crun|runc run -b BUNDLE ID` on the same rootfs and command;
//! - qemu: spawn `qemu-system-x86_64 -M microvm` on the same kernel; marks "init".

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::{cost, disk, vm_failed, Plan};
use crate::error::Result;
use crate::harness::{spawn_timed, Harness};
use crate::peers;
use crate::results::{DiskSeries, MemorySeries, PhaseSpan, Results, StartupRun, StartupSeries};

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

/// One `vcompare run --mode MODE IMAGE /bin/probe true`: the timed run, its phases and (if
/// asked) the instance directory's disk use, then `rm`.
fn vcompare_once(
    h: &mut Harness,
    mode: &str,
    want_disk: bool,
) -> Result<(StartupRun, Option<(u64, u64)>)> {
    let name = h.fresh_name(mode);
    let image = h.image.clone();
    let args = [
        "run",
        "--name",
        &name,
        "--mode",
        mode,
        &image,
        "/bin/probe",
        "true",
    ];
    let label = format!("vcompare run --mode {mode} {image} /bin/probe true");
    let timed = spawn_timed(h.vcompare(&args), &label)?;
    let timeout = if mode == "vm" {
        VM_TIMEOUT
    } else {
        CONTAINER_TIMEOUT
    };
    let out = timed.finish(&label, timeout);
    let out = match out {
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
    };
    let mut usage = None;
    if let Ok(rec) = &record {
        let marks = marks_from_inspect(rec);
        // Marks count from the vcompare process entering `main` (exact CLOCK_MONOTONIC); the
        // ≈1 ms from spawn to `main` (exec, loader) therefore lands in the last span.
        let offset = 0;
        run.phases = phase_spans(&marks, offset, out.wall_ns);
        for (n, at) in &marks {
            run.marks
                .insert(n.clone(), (*at as i64 + offset).max(0) as u64);
        }
        if want_disk {
            usage = disk::instance_usage(rec);
        }
    }
    h.remove(&[name]);
    record?;
    Ok((run, usage))
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
    })
}

/// One crun or runc run of the same rootfs and command.
fn peer_once(h: &mut Harness, peer: &str, bundle: &std::path::Path) -> Result<StartupRun> {
    let id = h.fresh_name(peer);
    let cmd = if peer == "crun" {
        peers::crun::command(bundle, &id)
    } else {
        peers::runc::command(bundle, &id)
    };
    let label = format!("{peer} run -b {} {id}", bundle.display());
    timed_run(cmd, &label, || {
        let _ = std::process::Command::new(peer)
            .args(["delete", "-f", &id])
            .output();
    })
}

/// Environment variable naming another guest kernel for an extra QEMU subject.
pub const REFERENCE_KERNEL_ENV: &str = "VCOMPARE_QEMU_REFERENCE_KERNEL";
/// That subject's name.
pub const REFERENCE_SUBJECT: &str = "qemu-reference";

/// Definition text shown next to each subject's numbers.
pub fn definition(subject: &str) -> &'static str {
    match subject {
        "host" => "spawn `probe true` on the host → its exit (fork+exec+exit floor)",
        "container" => "spawn `vcompare run --mode container IMAGE /bin/probe true` → its exit",
        "vm" => "spawn `vcompare run --mode vm IMAGE /bin/probe true` → its exit (CLI preparation, VMM setup = `vcompare-vmm` launch → vCPU 0's first KVM_RUN, guest kernel boot, init, probe, power-off)",
        "crun" => "spawn `crun run -b BUNDLE` (same rootfs and command, OCI default spec, no user namespace) → its exit",
        "runc" => "spawn `runc run -b BUNDLE` (same rootfs and command, OCI default spec, no user namespace) → its exit",
        "qemu" => "spawn `qemu-system-x86_64 -M microvm,acpi=off` (same kernel and kernel arguments, 256 MiB, 1 vCPU; the conventional boot: `-initrd` with vcompare's init as /init, and a copy of the image's VM disk as virtio-blk) → the init's first phase report on the console (`ESC _ vcompare:1 ESC \\`, the report vcompare's VMM timestamps as init start; launch → init; QEMU is stopped there)",
        "qemu-reference" => "the same QEMU boot as `qemu` (initramfs), but of the kernel named by $VCOMPARE_QEMU_REFERENCE_KERNEL (see the notes) → the init's first phase report",
        "qemu-rootdisk" => "the same QEMU, booted as vcompare's VMM boots: no initramfs, the kernel mounts the disk copy as root and starts the init stored on it (same arguments plus vcompare's root arguments) → the init's first phase report",
        _ => "",
    }
}

fn series<'a>(all: &'a mut Vec<StartupSeries>, subject: &str) -> &'a mut StartupSeries {
    if let Some(i) = all.iter().position(|s| s.subject == subject) {
        return &mut all[i];
    }
    all.push(StartupSeries {
        subject: subject.into(),
        definition: definition(subject).into(),
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
                "container" => vcompare_once(h, "container", want_disk),
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
    // VMs: few runs, vcompare and QEMU alternating.
    let mut vm_subjects: Vec<&str> = Vec::new();
    if super::vm_usable(h, plan, results, "startup", h.vm_runs as u64 * cost::VM) {
        vm_subjects.push("vm");
    }
    let mut qemu_setups: Vec<peers::qemu::QemuSetup> = Vec::new();
    if plan.peer("qemu") && plan.mode("vm") {
        if !peers::qemu::available() {
            results.skip(
                "peer qemu",
                "qemu-system-x86_64 is not on PATH (apt-get install qemu-system-x86)",
            );
        } else {
            // The kernel vcompare's VM mode uses; if it is not built, the newest cached build
            // (said so in the notes: then "same kernel" holds only if the VM run used it too).
            let kernel = match &h.kernel {
                Ok(k) => Some(k.clone()),
                Err(why) => {
                    let k = peers::qemu::find_kernel();
                    if let Some(k) = &k {
                        results.notes.push(format!("qemu peer: vcompare's guest kernel is unavailable ({why}); QEMU booted the newest cached build {}", k.display()));
                    }
                    k
                }
            };
            match (kernel, &h.vm_disk) {
                (Some(kernel), Ok((image_disk, init))) => {
                    results
                        .notes
                        .push(format!("qemu peer kernel: {}", kernel.display()));
                    for method in [
                        peers::qemu::BootMethod::Initramfs,
                        peers::qemu::BootMethod::RootDisk,
                    ] {
                        match peers::qemu::prepare(&h.scratch, &kernel, init, image_disk, method) {
                            Ok(s) => {
                                vm_subjects.push(method.subject());
                                qemu_setups.push(s);
                            }
                            Err(e) => {
                                results.skip(format!("peer {}", method.subject()), e.to_string())
                            }
                        }
                    }
                    // Optionally QEMU on another kernel (e.g. the reference kernel of the
                    // design notes), the conventional way: how much the guest kernel costs.
                    if let Some(k) = std::env::var_os(REFERENCE_KERNEL_ENV).map(PathBuf::from) {
                        let method = peers::qemu::BootMethod::Initramfs;
                        match peers::qemu::prepare(&h.scratch, &k, init, image_disk, method) {
                            Ok(mut s) => {
                                s.subject = REFERENCE_SUBJECT.into();
                                results.notes.push(format!(
                                    "{REFERENCE_SUBJECT}: QEMU booted {} ({REFERENCE_KERNEL_ENV}) the conventional way (initramfs)",
                                    k.display()
                                ));
                                vm_subjects.push(REFERENCE_SUBJECT);
                                qemu_setups.push(s);
                            }
                            Err(e) => {
                                results.skip(format!("peer {REFERENCE_SUBJECT}"), e.to_string())
                            }
                        }
                    }
                }
                (None, _) => {
                    results.skip("peer qemu", "no guest kernel built (run kernels/build.sh)")
                }
                (_, Err(why)) => {
                    results.skip("peer qemu", format!("no VM disk for the image: {why}"))
                }
            }
        }
    }
    if plan.peer("firecracker") && plan.mode("vm") {
        let why = if peers::firecracker::available() {
            "found on PATH but not driven by this harness yet"
        } else {
            "firecracker is not on PATH"
        };
        results.skip("peer firecracker", why);
    }
    let mut qemu_mem: Vec<(u64, u64)> = Vec::new();
    for round in 0..h.vm_runs {
        let mut order = vm_subjects.clone();
        order.rotate_left(round % vm_subjects.len().max(1));
        for subject in order {
            if subject == "vm" && h.vm_broken.is_some() || failed.iter().any(|f| f == subject) {
                h.advance(
                    if subject == "vm" {
                        cost::VM
                    } else {
                        cost::QEMU
                    },
                    &format!("startup {subject} skipped"),
                );
                continue;
            }
            if subject == "vm" {
                let r = vcompare_once(h, "vm", want_disk);
                h.advance(cost::VM, &format!("startup vm {}/{}", round + 1, h.vm_runs));
                match r {
                    Ok((run, usage)) => {
                        series(&mut results.startup, "vm").runs.push(run);
                        if let Some(u) = usage {
                            disk_samples.entry("vm".into()).or_default().push(u);
                        }
                    }
                    Err(e) => vm_failed(h, results, "startup", &e),
                }
            } else if let Some(setup) = qemu_setups.iter().find(|q| q.subject == subject) {
                let r = peers::qemu::boot_once(setup, VM_TIMEOUT);
                h.advance(
                    cost::QEMU,
                    &format!("startup {subject} {}/{}", round + 1, h.vm_runs),
                );
                match r {
                    Ok(b) => {
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
                        series(&mut results.startup, subject).runs.push(StartupRun {
                            wall_ns: b.wall_ns,
                            phases,
                            marks,
                        });
                        if let (Some(o), Some(g), "qemu") =
                            (b.vmm_overhead_rss, b.guest_touched, subject)
                        {
                            qemu_mem.push((o, g));
                        }
                    }
                    Err(e) => {
                        h.say(&format!("startup {subject}: {e}"));
                        results.skip(format!("startup {subject}"), e.to_string());
                        failed.push(subject.into());
                    }
                }
            }
        }
    }
    if !qemu_mem.is_empty() && plan.suite("memory") {
        results.memory.push(MemorySeries {
            subject: "qemu".into(),
            metric: "vmm_overhead_rss".into(),
            definition: "QEMU process RSS − RSS of its guest-RAM mapping, sampled at the init's first phase report".into(),
            samples_bytes: qemu_mem.iter().map(|m| m.0).collect(),
        });
        results.memory.push(MemorySeries {
            subject: "qemu".into(),
            metric: "guest_touched".into(),
            definition: "RSS of QEMU's guest-RAM mapping at the same instant (guest pages the kernel touched)".into(),
            samples_bytes: qemu_mem.iter().map(|m| m.1).collect(),
        });
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
