//! The measurements, one module per suite. Each suite alternates the order of
//! subjects from run to run (A B, B A, …) so slow drift on the shared machine hits all of them,
//! and every subject gets the same warm-up before its first measured sample: host and
//! container subjects one untimed round per suite ([`alternating_rounds`]), VM subjects (ours
//! and each QEMU subject) one untimed boot per run ([`vm_warm_up`]) — a boot costs 10–25 s on a
//! nested host, and what a warm-up warms (page cache of kernel, disk image, VMM binary) is
//! shared by every later suite of the run.

pub mod cpu;
pub mod density;
pub mod disk;
pub mod exec;
pub mod memory;
pub mod net;
pub mod share;
pub mod snapshot;
pub mod startup;

use std::process::Command;
use std::time::Duration;

use crate::error::Result;
use crate::harness::{failed, spawn_timed, Harness, TimedOutput, IMAGE_PATH};
use crate::peers::qemu;
use crate::results::Results;

/// Every suite `vcompare bench --suite` accepts (`io` is an alias for the cpu suite's file
/// I/O workload). Exported so the CLI checks its flag against the suites that exist here.
pub const NAMES: &[&str] = &[
    "startup", "cpu", "memory", "density", "disk", "io", "share", "net", "exec", "snapshot",
];

/// What to measure, parsed from `vcompare bench` flags.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// host, container, vm.
    pub modes: Vec<String>,
    /// crun, runc, qemu, firecracker.
    pub peers: Vec<String>,
    /// startup, cpu, memory, density, disk, share, net, exec.
    pub suites: Vec<String>,
    /// Workload sizes of the share suite.
    pub share: share::Sizes,
}

impl Plan {
    /// Whether `mode` is selected.
    pub fn mode(&self, mode: &str) -> bool {
        self.modes.iter().any(|m| m == mode)
    }
    /// Whether `peer` is selected.
    pub fn peer(&self, peer: &str) -> bool {
        self.peers.iter().any(|m| m == peer)
    }
    /// Whether `suite` is selected.
    pub fn suite(&self, suite: &str) -> bool {
        self.suites.iter().any(|m| m == suite)
    }
}

/// Rough cost in ms of each step here (2 cores, nested PVM: a VM boot ≈ 20–40 s), used as the
/// progress bar's unit so its ETA is meaningful.
pub mod cost {
    /// One `vcompare run` of a container plus inspect and rm.
    pub const CONTAINER: u64 = 600;
    /// One host process.
    pub const HOST: u64 = 10;
    /// One crun/runc run.
    pub const PEER_CONTAINER: u64 = 60;
    /// One vcompare VM boot.
    pub const VM: u64 = 45_000;
    /// One QEMU microvm boot.
    pub const QEMU: u64 = 25_000;
    /// One CPU workload script in host or container.
    pub const CPU_SCRIPT: u64 = 2_000;
}

/// Total estimated ms for `plan` with the harness's run counts.
pub fn estimate_ms(h: &Harness, plan: &Plan) -> u64 {
    let (r, v) = (h.runs as u64, h.vm_runs as u64);
    let vm = plan.mode("vm") as u64;
    let mut t = 0;
    if plan.suite("startup") {
        t += (r + 1)
            * (plan.mode("host") as u64 * cost::HOST
                + plan.mode("container") as u64 * cost::CONTAINER);
        t += (r + 1) * (plan.peer("crun") as u64 + plan.peer("runc") as u64) * cost::PEER_CONTAINER;
        // vm (restored) and vm-cold, the QEMU subjects and Firecracker.
        t += v
            * (2 * vm * cost::VM
                + (2 * plan.peer("qemu") as u64 + plan.peer("firecracker") as u64)
                    * vm
                    * cost::QEMU);
    }
    // The VM warm-up boots: one per VM subject (vm, vm-cold, QEMU's, Firecracker) once per run.
    t += vm
        * (2 * cost::VM
            + (2 * plan.peer("qemu") as u64 + plan.peer("firecracker") as u64) * cost::QEMU);
    if plan.suite("cpu") {
        t +=
            (r + 1) * (plan.mode("host") as u64 + plan.mode("container") as u64) * cost::CPU_SCRIPT
                + cpu::vm_boots(h.vm_runs) as u64 * vm * cost::VM;
    }
    if plan.suite("memory") {
        t += 4 * cost::CONTAINER * 3
            + vm * (!plan.suite("density")) as u64 * cost::VM
            + vm * plan.peer("qemu") as u64 * cost::QEMU;
    }
    if plan.suite("density") {
        t += density::CONTAINER_STEPS.iter().sum::<u32>() as u64
            * cost::CONTAINER
            * plan.mode("container") as u64;
        t += density::VM_STEPS.iter().sum::<u32>() as u64 * cost::VM * vm;
    }
    if plan.suite("disk") && !plan.suite("startup") {
        t += 2 * (cost::CONTAINER + vm * cost::VM);
    }
    if plan.suite("share") {
        t += share::estimate_ms(h, plan);
    }
    if plan.suite("net") {
        t += net::estimate_ms(h, plan);
    }
    if plan.suite("exec") {
        t += exec::estimate_ms(h, plan);
    }
    if plan.suite("snapshot") {
        t += snapshot::estimate_ms(h, plan);
    }
    t
}

/// Runs every selected suite in a fixed order, recording results and skips.
pub fn run_all(h: &mut Harness, plan: &Plan, results: &mut Results) {
    if plan.suite("startup") {
        startup::run(h, plan, results);
    }
    if plan.suite("disk") && !plan.suite("startup") {
        disk::run(h, plan, results);
    }
    if plan.suite("cpu") {
        cpu::run(h, plan, results);
    }
    if plan.suite("memory") {
        memory::run(h, plan, results);
    }
    if plan.suite("density") {
        density::run(h, plan, results);
    }
    if plan.suite("share") {
        share::run(h, plan, results);
    }
    // Its VM is booted once and stays up for the suite; removed before net starts.
    if plan.suite("exec") {
        exec::run(h, plan, results);
    }
    // Boots VMs only (restored and cold, ours and Firecracker's).
    if plan.suite("snapshot") {
        snapshot::run(h, plan, results);
    }
    // Last: it is the only suite that creates a network, and its VM server boots once.
    if plan.suite("net") {
        net::run(h, plan, results);
    }
}

/// A host-side command with the image's PATH and an otherwise empty environment, so a probe
/// run on the host starts like one in an instance (see [`IMAGE_PATH`]).
pub fn host_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(program);
    c.env_clear().env("PATH", IMAGE_PATH);
    c
}

/// The network an instance started by the bench joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network<'a> {
    /// `--network none`: only `lo`. Every suite but `net` runs its instances so, stated
    /// explicitly although containers default to the `default` bridge: the peers (crun and
    /// runc with the OCI default spec, QEMU without a NIC) start without a network, and a
    /// bridge, a veth or TAP pair and nftables rules per instance would be work only our side
    /// pays in the startup, memory and density figures.
    None,
    /// A bridge network by name (the `net` suite's own, created and removed by it).
    Named(&'a str),
}

impl<'a> Network<'a> {
    /// The value of `--network`.
    pub fn flag_value(self) -> &'a str {
        match self {
            Network::None => "none",
            Network::Named(n) => n,
        }
    }
}

/// `run --network NET FLAGS…`: the one place where the bench builds a `vcompare run` command
/// line, so no suite can start an instance without saying which network it is on.
pub fn run_args<'a>(network: Network<'a>, flags: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["run", "--network", network.flag_value()];
    v.extend_from_slice(flags);
    v
}

/// `vcompare run --network none --name NAME --mode MODE IMAGE /bin/probe true`: the smallest
/// workload, kept by the instance so its record and disk can be read afterwards (startup and
/// disk suites).
pub fn probe_true_kept<'a>(name: &'a str, mode: &'a str, image: &'a str) -> Vec<&'a str> {
    probe_true_kept_with(name, mode, image, &[])
}

/// [`probe_true_kept`] with further `run` flags before the image (e.g. `--no-snapshot`), so
/// the VM subjects that differ only in a flag run the same command line otherwise.
pub fn probe_true_kept_with<'a>(
    name: &'a str,
    mode: &'a str,
    image: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut flags = vec!["--name", name, "--mode", mode];
    flags.extend_from_slice(extra);
    flags.extend_from_slice(&[image, "/bin/probe", "true"]);
    run_args(Network::None, &flags)
}

/// How long a short probe script may take in a `mode` instance: a VM gets 400 s, since every
/// guest kernel instruction is emulated on a nested host; a container 60 s.
pub fn instance_timeout(mode: &str) -> Duration {
    Duration::from_secs(if mode == "vm" { 400 } else { 60 })
}

/// Runs `command` in a fresh `mode` instance of the bench image without a network
/// (`extra` = further `run` flags such as `-v`), removes the instance, and returns its
/// stdout: the probe workloads' way into containers and VMs. `what` names the step in errors.
pub fn run_instance(
    h: &mut Harness,
    mode: &str,
    extra: &[&str],
    command: &[&str],
    what: &str,
    timeout: Duration,
) -> Result<Vec<u8>> {
    run_instance_on(h, Network::None, mode, extra, command, what, timeout)
}

/// [`run_instance`] on `network`.
pub fn run_instance_on(
    h: &mut Harness,
    network: Network<'_>,
    mode: &str,
    extra: &[&str],
    command: &[&str],
    what: &str,
    timeout: Duration,
) -> Result<Vec<u8>> {
    let name = h.fresh_name(mode);
    let image = h.image.clone();
    let mut flags = vec!["--name", &name, "--mode", mode];
    flags.extend_from_slice(extra);
    flags.push(&image);
    flags.extend_from_slice(command);
    let args = run_args(network, &flags);
    let label = format!("vcompare run --mode {mode} … {what}");
    let r = vcompare_timed(h, &args, &label, timeout);
    h.remove(&[name]);
    Ok(r?.stdout)
}

/// Runs `vcompare ARGS…` timed, for at most `timeout`; an exit other than success is an
/// error naming `label`, with the status and the line of the output that says what failed.
pub fn vcompare_timed(
    h: &Harness,
    args: &[&str],
    label: &str,
    timeout: Duration,
) -> Result<TimedOutput> {
    let out = spawn_timed(h.vcompare(args), label)?.finish(label, timeout)?;
    if !out.status.success() {
        return Err(failed(
            label,
            &out.status.to_string(),
            &out.stderr,
            &out.stdout,
        ));
    }
    Ok(out)
}

/// One untimed warm-up round, then `h.runs` rounds over the selected host and container
/// subjects, alternating their order; `once(h, subject, round, results)` measures and records
/// one subject (the warm-up round records into a scratch `Results` that is dropped). A subject
/// that fails is recorded as skipped under `suite` and not retried; `cost_ms(subject)` advances
/// the bar.
pub fn alternating_rounds(
    h: &mut Harness,
    plan: &Plan,
    results: &mut Results,
    suite: &str,
    cost_ms: impl Fn(&str) -> u64,
    mut once: impl FnMut(&mut Harness, &str, usize, &mut Results) -> Result<()>,
) {
    let subjects: Vec<&str> = ["host", "container"]
        .into_iter()
        .filter(|m| plan.mode(m))
        .collect();
    let mut failed: Vec<&str> = Vec::new();
    let mut warm = Results::new(results.environment.clone(), results.config.clone());
    // Round 0 is the warm-up; measured rounds are 1..=runs (so round numbers keep alternating).
    for round in 0..=h.runs {
        let mut order = subjects.clone();
        order.rotate_left(round % subjects.len().max(1));
        for subject in order {
            if failed.contains(&subject) {
                continue;
            }
            let sink = if round == 0 { &mut warm } else { &mut *results };
            let r = once(h, subject, round, sink);
            let msg = if round == 0 {
                format!("{suite} {subject} warm-up")
            } else {
                format!("{suite} {subject} {round}/{}", h.runs)
            };
            h.advance(cost_ms(subject), &msg);
            if let Err(e) = r {
                results.skip(format!("{suite} {subject}"), e.to_string());
                failed.push(subject);
            }
        }
    }
}

/// Notes a VM failure once: later suites then skip VM mode with the same reason.
pub fn vm_failed(
    h: &mut Harness,
    results: &mut Results,
    what: &str,
    err: &crate::error::BenchError,
) {
    let reason = err.to_string();
    h.say(&format!(
        "VM mode: {what} failed: {reason} — VM measurements skipped from here on"
    ));
    results.skip(format!("vm {what}"), reason.clone());
    h.vm_broken = Some(reason);
}

/// Whether VM mode should run now (selected and not already failing). When it is skipped,
/// the progress bar is advanced by `skipped_ms` (the estimate of the VM work not done).
pub fn vm_usable(
    h: &Harness,
    plan: &Plan,
    results: &mut Results,
    what: &str,
    skipped_ms: u64,
) -> bool {
    if !plan.mode("vm") {
        return false;
    }
    if let Some(r) = &h.vm_broken {
        results.skip(
            format!("vm {what}"),
            format!("VM mode failed earlier in this run: {r}"),
        );
        h.advance(skipped_ms, &format!("{what}: VM skipped"));
        return false;
    }
    true
}

/// The QEMU peer's once-per-run preparation (initramfs, command line) for the `qemu` and
/// `qemu-rootdisk` subjects (and `qemu-reference` when its kernel is named), made on first use
/// and shared by the startup and memory suites; skips and notes are recorded once.
pub fn qemu_setups(h: &mut Harness, plan: &Plan, results: &mut Results) -> Vec<qemu::QemuSetup> {
    if let Some(s) = &h.qemu_setups {
        return s.clone();
    }
    let mut setups = Vec::new();
    if !(plan.peer("qemu") && plan.mode("vm")) {
        h.qemu_setups = Some(setups);
        return Vec::new();
    }
    if !qemu::available() {
        results.skip(
            "peer qemu",
            "qemu-system-x86_64 is not on PATH (apt-get install qemu-system-x86)",
        );
        h.qemu_setups = Some(setups);
        return Vec::new();
    }
    // The kernel vcompare's VM mode uses; if it is not built, the newest cached build (said so
    // in the notes: then "same kernel" holds only if the VM run used it too).
    let kernel = match &h.kernel {
        Ok(k) => Some(k.clone()),
        Err(why) => {
            let k = qemu::find_kernel();
            if let Some(k) = &k {
                results.notes.push(format!("qemu peer: vcompare's guest kernel is unavailable ({why}); QEMU booted the newest cached build {}", k.display()));
            }
            k
        }
    };
    match (kernel, h.vm_disk.clone()) {
        (Some(kernel), Ok((image_disk, init))) => {
            results
                .notes
                .push(format!("qemu peer kernel: {}", kernel.display()));
            for method in [qemu::BootMethod::Initramfs, qemu::BootMethod::RootDisk] {
                match qemu::prepare(&h.scratch, &kernel, &init, &image_disk, method) {
                    Ok(s) => setups.push(s),
                    Err(e) => results.skip(format!("peer {}", method.subject()), e.to_string()),
                }
            }
            // Optionally QEMU on another kernel (e.g. the reference kernel of the design
            // notes), the conventional way: how much the guest kernel costs.
            if let Some(k) =
                std::env::var_os(startup::REFERENCE_KERNEL_ENV).map(std::path::PathBuf::from)
            {
                let method = qemu::BootMethod::Initramfs;
                match qemu::prepare(&h.scratch, &k, &init, &image_disk, method) {
                    Ok(mut s) => {
                        s.subject = startup::REFERENCE_SUBJECT.into();
                        s.disk = h.scratch.join("qemu-reference-disk.ext4");
                        results.notes.push(format!(
                            "{}: QEMU booted {} ({}) the conventional way (initramfs)",
                            startup::REFERENCE_SUBJECT,
                            k.display(),
                            startup::REFERENCE_KERNEL_ENV
                        ));
                        setups.push(s);
                    }
                    Err(e) => results.skip(
                        format!("peer {}", startup::REFERENCE_SUBJECT),
                        e.to_string(),
                    ),
                }
            }
        }
        (None, _) => results.skip("peer qemu", "no guest kernel built (run kernels/build.sh)"),
        (_, Err(why)) => results.skip("peer qemu", format!("no VM disk for the image: {why}")),
    }
    h.qemu_setups = Some(setups.clone());
    setups
}

/// The Firecracker peer's once-per-run preparation (kernel arguments, config file), made on
/// first use and shared by the startup and snapshot suites; `None` — with one skip line saying
/// why — when no binary is found or there is no kernel or VM disk.
pub fn firecracker_setup(
    h: &mut Harness,
    plan: &Plan,
    results: &mut Results,
) -> Option<crate::peers::firecracker::FirecrackerSetup> {
    use crate::peers::firecracker;
    if let Some(s) = &h.firecracker {
        return s.clone();
    }
    let setup = if !(plan.peer("firecracker") && plan.mode("vm")) {
        None
    } else if !firecracker::available() {
        results.skip(
            "peer firecracker",
            format!(
                "no firecracker binary (set ${} or put firecracker on PATH)",
                firecracker::BINARY_ENV
            ),
        );
        None
    } else {
        match (h.kernel.clone(), h.vm_disk.clone()) {
            (Ok(kernel), Ok((disk, init))) => {
                match firecracker::prepare(&h.scratch, &kernel, &init, &disk) {
                    Ok(s) => {
                        results.note_once(format!("firecracker peer: {} booting {} with the same kernel arguments as vcompare's VM (root on a fresh copy of the image's VM disk, as `qemu-rootdisk`), 1 vCPU, {} MiB", s.binary.display(), kernel.display(), firecracker::MEMORY_MIB));
                        Some(s)
                    }
                    Err(e) => {
                        results.skip("peer firecracker", e.to_string());
                        None
                    }
                }
            }
            (Err(why), _) => {
                results.skip("peer firecracker", format!("no guest kernel: {why}"));
                None
            }
            (_, Err(why)) => {
                results.skip(
                    "peer firecracker",
                    format!("no VM disk for the image: {why}"),
                );
                None
            }
        }
    };
    h.firecracker = Some(setup.clone());
    setup
}

/// The warm-up of a VM subject: one untimed boot, the first time `subject` (vm, qemu,
/// qemu-rootdisk, qemu-reference) is about to be measured in this run, exactly as its timed
/// boots run (`vcompare run --mode vm IMAGE /bin/probe true` + `rm`; QEMU up to init). A failed
/// warm-up is not an error here: the timed boot that follows fails the same way and is reported.
pub fn vm_warm_up(h: &mut Harness, results: &mut Results, subject: &str) {
    if h.warmed.iter().any(|w| w == subject)
        || (startup::vm_subject_flags(subject).is_some() && h.vm_broken.is_some())
    {
        return;
    }
    h.warmed.push(subject.to_string());
    // The restored subject cannot be measured before its VM kind has a snapshot: its first
    // boot takes one, with or without warm-ups.
    let takes_snapshot = subject == "vm";
    if !h.vm_warm_up && !takes_snapshot {
        results.note_once("VM warm-up boots skipped (--no-vm-warm-up): the first timed boot of each VM subject was cold");
        return;
    }
    if !h.vm_warm_up {
        results.note_once("vm: one untimed boot took the VM kind's snapshot before the measured (restored) boots, also with --no-vm-warm-up");
    }
    h.advance(0, &format!("{subject} warm-up boot"));
    if let Some(flags) = startup::vm_subject_flags(subject) {
        // Exactly a timed boot (run + rm), its figures dropped. For `vm` it is the boot that
        // takes the VM kind's snapshot (when none exists yet) that every measured boot restores.
        let _ = startup::vcompare_probe(h, "vm", flags, false, results);
    } else if subject == startup::FIRECRACKER {
        if let Some(setup) = h.firecracker.clone().flatten() {
            let _ = crate::peers::firecracker::boot(
                &setup,
                &["/bin/probe", "true"],
                qemu::Until::Init,
                startup::VM_TIMEOUT,
            );
        }
    } else if let Some(setup) = h
        .qemu_setups
        .as_ref()
        .and_then(|s| s.iter().find(|q| q.subject == subject).cloned())
    {
        let _ = qemu::boot(
            &setup,
            &["/bin/probe", "true"],
            qemu::Until::Init,
            startup::VM_TIMEOUT,
        );
    }
    if h.vm_warm_up {
        results.note_once(format!(
            "{subject}: one untimed warm-up boot before its first measured boot"
        ));
    }
}
