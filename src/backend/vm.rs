//! `--mode vm`: glue between the lifecycle code and the `vcompare-vmm` crate. It finds the
//! guest kernel and the static guest init, prepares the root disk (cached per image with the
//! init on it, copied per VM), writes the run's spec onto it, and runs the VMM (the pid the
//! lifecycle signals: SIGTERM asks the guest init to SIGTERM the entrypoint). `exec`, `run
//! -i/-t` and `stop` go through the guest agent ([`super::vm_agent`]).

use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use vcompare_network::attach::{self, Attachment, LinkKind};
use vcompare_network::tap::Tap;
use vcompare_spec::agent::ExecRequest;
use vcompare_spec::guest::{GuestShare, BOOT_TIMER_PORT};
use vcompare_spec::{GuestNetwork, StartupPhase};
use vcompare_vmm::devices::virtio::p9;
use vcompare_vmm::signals::{SavedMask, FORWARDED_SIGNALS};
use vcompare_vmm::{disk, machine, process, DebugOptions, GuestExit, GuestSpec};

use super::vm_agent::{self, Agent, AgentError};
use super::vm_snapshot;
use super::{monotonic_ns, network, process_start_ns, Outcome, PhaseMark, RunHooks, RunSpec};

/// Guest RAM when `--memory` is not given.
pub const DEFAULT_MEMORY_MIB: u64 = 256;
/// Environment variable naming a guest kernel to use instead of the built one.
pub const KERNEL_ENV: &str = "VCOMPARE_KERNEL";
/// Environment variable: `1` shows the guest kernel's boot log on the console.
pub const BOOTLOG_ENV: &str = "VCOMPARE_VM_BOOTLOG";
/// Environment variable with extra guest kernel arguments (experiments: `initcall_debug`, …).
pub const CMDLINE_ENV: &str = "VCOMPARE_VM_CMDLINE";
/// Environment variable: `1` runs the VMM inside this process instead of `vcompare-vmm`, for
/// debugging the VMM in one process. It is loud (a warning on every run) and recorded in the
/// instance (`inspect` shows `vmm_process`), because the VMM's pid, RSS and overhead figures
/// are then the whole CLI's; never chosen silently.
pub const INPROCESS_ENV: &str = "VCOMPARE_VMM_INPROCESS";
/// The dedicated VMM executable, installed next to `vcompare`.
const VMM_BIN: &str = "vcompare-vmm";
/// Guest RAM's host address ranges (JSON), written by the VMM for `inspect`.
const RAM_RANGES: &str = "vm-ram.json";
/// The guest's own view (from the guest init) for `inspect`, written when it arrives.
const GUEST_STATE: &str = "guest.json";
/// The instance's VMM facts for `inspect`, written at start.
const VM_STATE: &str = "vm.json";

/// Errors of the VM backend that are about how vcompare is installed.
#[derive(Debug, thiserror::Error)]
pub enum VmBackendError {
    /// `vcompare-vmm` is not next to the running `vcompare`. Falling back to an in-process
    /// VMM would make the benchmarks report the CLI's memory as VMM overhead.
    #[error("vcompare-vmm not found next to vcompare at {}; build it with cargo build --release --workspace", exe.display())]
    VmmMissing {
        /// The running `vcompare` executable.
        exe: PathBuf,
    },
}

/// Where the VMM of a run lives: its own process (the product) or, on explicit request, this one.
#[derive(Debug, Clone, PartialEq, Eq)]
enum VmmPlacement {
    /// `vcompare-vmm` at this path, spawned per VM.
    Process(PathBuf),
    /// `VCOMPARE_VMM_INPROCESS=1`: inside the CLI process (debugging only).
    InProcess,
}

impl VmmPlacement {
    /// What `inspect` shows as `vmm_process`.
    fn describe(&self) -> String {
        match self {
            VmmPlacement::Process(p) => p.display().to_string(),
            VmmPlacement::InProcess => format!("in-process ({INPROCESS_ENV}=1)"),
        }
    }
}

/// The kernel build script of this source tree.
fn build_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels/build.sh")
}

/// The guest kernel: `$VCOMPARE_KERNEL`, else the cached build for the current kernels/
/// inputs (asks `kernels/build.sh --print-path`), else `/usr/local/lib/vcompare/vmlinux`.
pub fn find_kernel() -> anyhow::Result<PathBuf> {
    if let Some(k) = std::env::var_os(KERNEL_ENV) {
        let k = PathBuf::from(k);
        anyhow::ensure!(
            k.is_file(),
            "{KERNEL_ENV}={} does not exist; point it at a guest vmlinux or unset it to use the built kernel",
            k.display()
        );
        return Ok(k);
    }
    let script = build_script();
    if script.is_file() {
        let out = std::process::Command::new(&script)
            .arg("--print-path")
            .output();
        if let Ok(o) = out {
            let p = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
            if o.status.success() && p.is_file() {
                return Ok(p);
            }
        }
    }
    let installed = Path::new("/usr/local/lib/vcompare/vmlinux");
    if installed.is_file() {
        return Ok(installed.to_path_buf());
    }
    anyhow::bail!(
        "the guest kernel is not built; build it with `{}` (about 4 minutes on 2 cores)",
        script.display()
    )
}

/// `--memory` in MiB (rounded up), or the default.
fn memory_mib(spec: &RunSpec) -> u64 {
    spec.memory_bytes
        .map(|b| b.div_ceil(1 << 20))
        .unwrap_or(DEFAULT_MEMORY_MIB)
}

/// `--cpus` as a vCPU count: a whole number ≥ 1.
fn vcpus(spec: &RunSpec) -> anyhow::Result<u8> {
    match spec.cpus {
        None => Ok(1),
        Some(c) if c < 1.0 => {
            anyhow::bail!("--cpus {c} is not possible for a VM: it needs at least 1 vCPU")
        }
        Some(c) if c.fract() != 0.0 => {
            anyhow::bail!("--cpus {c}: a VM has a whole number of vCPUs")
        }
        Some(c) if c > 64.0 => {
            anyhow::bail!("--cpus {c}: vcompare's VMM supports at most 64 vCPUs")
        }
        Some(c) => Ok(c as u8),
    }
}

/// Runs the instance as a microVM until the entrypoint ends: joins its network (a TAP on the
/// network's bridge, handed to the VMM), boots, and leaves the network on every path.
pub fn run(spec: &RunSpec, hooks: &mut dyn RunHooks) -> anyhow::Result<Outcome> {
    if spec.networks.len() > 1 {
        anyhow::bail!(
            "a VM has one network interface (its devices are fixed at boot); give one --network"
        );
    }
    // What can refuse the run goes first, so a refusal creates nothing on any network.
    let cpus = vcpus(spec)?;
    let mem = memory_mib(spec);
    machine::validate(mem, cpus)?;
    open_kvm()?;
    let kernel = find_kernel()?;
    network::while_joined(spec, LinkKind::Tap, |networks| {
        let nic = match networks.first() {
            Some(att) => Some((att, attach::open_tap(att, &spec.id)?)),
            None => None,
        };
        let booted = Boot { cpus, mem, kernel };
        run_booted(spec, hooks, booted, nic.as_ref().map(|(a, t)| (*a, t)))
    })
}

/// What the checks before any network work established, for the boot itself.
#[derive(Clone)]
struct Boot {
    cpus: u8,
    mem: u64,
    kernel: PathBuf,
}

/// Fails fast on a missing or inaccessible /dev/kvm, before any disk or network work.
fn open_kvm() -> anyhow::Result<()> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(drop)
        .map_err(|e| machine::VmError::KvmOpen(e).into())
}

/// The guest's view of its network interface, as the init configures it.
fn guest_network(spec: &RunSpec, att: &Attachment) -> GuestNetwork {
    GuestNetwork {
        interface: "eth0".into(),
        address: att.address.to_string(),
        prefix_len: att.prefix_len,
        gateway: att.gateway.to_string(),
        mac: att.mac_string(),
        resolv_conf: att.resolv_conf(),
        hosts: att.hosts(&spec.hostname),
    }
}

/// The guest's vsock context id (each VM has its own device, so every guest can be 3).
const GUEST_CID: u64 = 3;

/// The Unix socket of the VM's vsock device (the guest agent's channel), in its instance
/// directory.
pub fn agent_socket(instance_dir: &Path) -> PathBuf {
    instance_dir.join("vsock.sock")
}

/// The fd number the VMM process finds its TAP at (set up between fork and exec).
const TAP_FD_IN_VMM: i32 = 3;

fn run_booted(
    spec: &RunSpec,
    hooks: &mut dyn RunHooks,
    boot: Boot,
    nic: Option<(&Attachment, &Tap)>,
) -> anyhow::Result<Outcome> {
    let retry = boot.clone();
    let Boot { cpus, mem, kernel } = boot;
    let base = process_start_ns();
    let placement = vmm_placement()?;
    if placement == VmmPlacement::InProcess {
        eprintln!("vcompare: warning: {INPROCESS_ENV}=1: the VMM runs inside this vcompare process, so its pid and memory figures are the CLI's (debugging only)");
    }
    let init = crate::artifacts::find_static("vcompare-init")?;

    let image_disk = disk::image_disk(&spec.data_root, &spec.image_digest, &spec.rootfs, &init)?;
    let mut extra_cmdline = disk::root_cmdline();
    extra_cmdline.extend(
        std::env::var(CMDLINE_ENV)
            .unwrap_or_default()
            .split_whitespace()
            .map(String::from),
    );
    let boot_log = std::env::var(BOOTLOG_ENV).is_ok_and(|v| v == "1");
    let vmm_exe = match &placement {
        VmmPlacement::Process(p) => p.clone(),
        VmmPlacement::InProcess => std::env::current_exe().unwrap_or_default(),
    };
    let kind = vm_snapshot::VmKind {
        image_disk: &image_disk,
        kernel: &kernel,
        vmm: &vmm_exe,
        memory_mib: mem,
        cpus,
        shares: spec.volumes.iter().map(|v| v.readonly).collect(),
        nic: nic.is_some(),
        extra_cmdline: &extra_cmdline,
        boot_log,
    };
    let fresh_disk = !spec.instance_dir.join(disk::INSTANCE_DISK).exists();
    let planned = Instant::now();
    let plan = vm_snapshot::plan(spec, &kind, fresh_disk);
    tracing::debug!(
        ?plan,
        ms = planned.elapsed().as_secs_f64() * 1e3,
        "VM snapshot plan (checksums checked)"
    );
    let root_disk = disk::instance_disk(
        &spec.instance_dir,
        &vm_snapshot::source_disk(&plan, &image_disk),
    )?;
    hooks.phase(PhaseMark::new(
        StartupPhase::Disk,
        monotonic_ns().saturating_sub(base),
    ));

    // Each `-v` is one virtio-9p device: the VMM serves HOST under a tag, the init mounts
    // that tag at GUEST.
    let (shares, guest_shares): (Vec<p9::Share>, Vec<_>) = spec
        .volumes
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let share = p9::Share {
                host: v.host.clone(),
                tag: p9::tag(i),
                read_only: v.readonly,
            };
            let guest = GuestShare {
                tag: share.tag.clone(),
                path: v.guest.clone(),
                read_only: v.readonly,
            };
            (share, guest)
        })
        .unzip();
    // `-i`/`-t`: the entrypoint's stdio goes over the guest agent (see `Attacher`).
    let attach = spec.interactive || spec.tty;
    let guest = GuestSpec {
        process: spec.process.clone(),
        hostname: spec.hostname.clone(),
        shares: guest_shares,
        boot_timer_port: BOOT_TIMER_PORT,
        network: nic.map(|(att, _)| guest_network(spec, att)),
        attach,
        entropy: crate::fsutil::random_hex(32),
    };
    // No initramfs: the kernel mounts the disk as its root and starts the init stored on it,
    // which reads this run's spec from the disk's spec area (see vcompare_vmm::disk).
    disk::write_spec(&root_disk, &serde_json::to_vec(&guest)?)?;
    let mut state = serde_json::json!({
        "kernel": kernel,
        "memory_mib": mem,
        "cpus": cpus,
        "disk": root_disk,
        "backend": vcompare_vmm::KvmBackend::detect(),
        "vmm_process": placement.describe(),
        "snapshot": plan.describe(),
    });
    let _ = std::fs::write(
        spec.instance_dir.join(VM_STATE),
        serde_json::to_vec_pretty(&state)?,
    );
    let _ = std::fs::remove_file(spec.instance_dir.join(GUEST_STATE));
    let _ = std::fs::remove_file(spec.instance_dir.join(RAM_RANGES));
    // From the moment a pid is published, `stop`/`kill` may signal it: hold the signals the
    // VMM forwards (they stay pending, nothing is lost; a dedicated VMM process starts with
    // an empty mask, an in-process VMM takes them over with its signalfd).
    let held = SavedMask::block(&FORWARDED_SIGNALS).context("blocking the forwarded signals")?;

    let job = vcompare_vmm::VmJob {
        kernel,
        memory_mib: mem,
        cpus,
        prealloc: spec.prealloc,
        initramfs: Default::default(),
        root_disk: Some(root_disk),
        shares,
        net: nic.map(|(att, tap)| vcompare_vmm::NetJob {
            tap_fd: match placement {
                VmmPlacement::Process(_) => TAP_FD_IN_VMM,
                VmmPlacement::InProcess => tap.fd.as_raw_fd(),
            },
            mac: att.mac,
        }),
        vsock: Some(vcompare_vmm::VsockJob {
            guest_cid: GUEST_CID,
            uds_path: agent_socket(&spec.instance_dir),
        }),
        snapshot: vm_snapshot::job(&plan),
        extra_cmdline,
        boot_log,
        timeout_secs: spec.timeout_secs,
        memory_ranges_path: Some(spec.instance_dir.join(RAM_RANGES)),
        guest_info_path: Some(spec.instance_dir.join(GUEST_STATE)),
        result_path: spec.instance_dir.join("vm-result.json"),
    };
    // The init starts an attached entrypoint once we are connected to the agent.
    let attached = attach.then(|| Attacher::start(spec));
    let result = match &placement {
        VmmPlacement::Process(bin) => {
            let tap = nic.map(|(_, t)| t.fd.as_raw_fd());
            let r = run_child(bin, &job, tap, &spec.instance_dir, hooks);
            let _ = std::fs::remove_file(&job.result_path);
            r?
        }
        VmmPlacement::InProcess => {
            hooks.started(std::process::id() as i32);
            // The VMM's diagnostics switches, read here as `vcompare-vmm`'s main does.
            process::execute(job, DebugOptions::from_env(), Instant::now())
        }
    };
    if let Some(a) = attached {
        a.finish();
    }
    drop(held);
    if let (true, vm_snapshot::Plan::Restore(dir)) = (result.restore_failed, &plan) {
        eprintln!(
            "vcompare: {}; booting cold instead (later runs of this VM kind boot cold too)",
            result
                .error
                .as_deref()
                .unwrap_or("the VM could not be restored")
        );
        vm_snapshot::restore_failed(dir);
        disk::remove_instance_disk(&spec.instance_dir)?;
        return run_booted(spec, hooks, retry, nic);
    }
    // What happened to the snapshot plan, for `inspect` (and the benchmarks).
    state["snapshot"]["restored"] = result.restored.into();
    state["snapshot"]["taken_pause_ms"] = result.snapshot_pause_ms.into();
    let _ = std::fs::write(
        spec.instance_dir.join(VM_STATE),
        serde_json::to_vec_pretty(&state)?,
    );
    let rel = |ns: u64| ns.saturating_sub(base);
    // `vmm_launch`: the VMM process's `main` (span: disk ready → VMM launch = the CLI's
    // preparation and the spawn); `vmm_setup`: vCPU 0's first KVM_RUN (span: VMM launch →
    // first guest instruction, issue #4's target).
    if let Some(t) = result.launched_ns {
        hooks.phase(PhaseMark::new(StartupPhase::VmmLaunch, rel(t)));
    }
    if let Some(t) = result.first_entry_ns {
        hooks.phase(PhaseMark::new(StartupPhase::VmmSetup, rel(t)));
    }
    for m in &result.marks {
        hooks.phase(PhaseMark::new(m.phase.into(), rel(m.at_ns)));
    }
    hooks.phase(PhaseMark::new(StartupPhase::Teardown, rel(result.ended_ns)));
    if let Some(e) = result.error {
        anyhow::bail!("{e}");
    }
    let exit = result
        .exit
        .ok_or_else(|| anyhow::anyhow!("the VMM ended without a result"))?;
    Ok(match exit {
        GuestExit::Exited(c) => Outcome::Exited(c),
        GuestExit::Signaled(s) if s == libc::SIGKILL && guest_reported_oom(spec) => {
            Outcome::OomKilled
        }
        GuestExit::Signaled(s) => Outcome::Signaled(s),
        GuestExit::TimedOut => {
            eprintln!("vcompare: the VM did not finish within --timeout; last console lines:");
            for l in &result.console_tail {
                eprintln!("  {l}");
            }
            Outcome::TimedOut
        }
        GuestExit::Killed => {
            eprintln!("vcompare: the VM was stopped by a second signal before the guest finished; last console lines:");
            for l in &result.console_tail {
                eprintln!("  {l}");
            }
            Outcome::Signaled(libc::SIGKILL)
        }
    })
}

/// True if the guest init said the guest kernel's OOM killer ended the entrypoint (it sends
/// its view again with `entrypoint_oom_killed` before it reports the exit): `--memory` is
/// the guest's RAM, and running out of it is reported as on the container side.
fn guest_reported_oom(spec: &RunSpec) -> bool {
    std::fs::read(spec.instance_dir.join(GUEST_STATE))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|g| g["entrypoint_oom_killed"] == true)
}

/// `run -i/-t` in a VM: a thread that connects to the guest agent as soon as it listens
/// (retrying while the guest boots) and relays our terminal or stdin to the entrypoint,
/// which the init starts only then, with a pty or pipes in the guest.
struct Attacher {
    vmm_done: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Attacher {
    fn start(spec: &RunSpec) -> Attacher {
        let vmm_done = Arc::new(AtomicBool::new(false));
        let done = vmm_done.clone();
        let dir = spec.instance_dir.clone();
        let id = spec.short_id().to_string();
        let stdio = vm_agent::stdio_mode(spec.tty, spec.interactive);
        let thread = std::thread::spawn(move || {
            let agent = loop {
                if done.load(Ordering::SeqCst) {
                    return;
                }
                match Agent::connect(&dir, &id, Duration::from_secs(1)) {
                    Ok(a) => break a,
                    Err(AgentError::NotUp { .. } | AgentError::NoAnswer { .. }) => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    Err(e) => {
                        eprintln!("vcompare: cannot attach to the VM's entrypoint: {e}");
                        return;
                    }
                }
            };
            match agent.attach(stdio) {
                // The VMM's result carries the status; a failure to start prints its cause.
                Ok(ended) => {
                    ended.exit_code();
                }
                Err(e) => tracing::debug!("attach ended: {e}"),
            }
        });
        Attacher { vmm_done, thread }
    }

    /// The VMM has ended: stop retrying and wait for the relay to finish its output.
    fn finish(self) {
        self.vmm_done.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
    }
}

/// Where this run's VMM goes: `vcompare-vmm` next to this executable (the only place looked
/// at, so a stale copy elsewhere is never picked up), or in-process on explicit request.
fn vmm_placement() -> Result<VmmPlacement, VmBackendError> {
    if std::env::var(INPROCESS_ENV).is_ok_and(|v| v == "1") {
        return Ok(VmmPlacement::InProcess);
    }
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("vcompare"));
    exe.parent()
        .map(|dir| dir.join(VMM_BIN))
        .filter(|p| p.is_file())
        .map(VmmPlacement::Process)
        .ok_or(VmBackendError::VmmMissing { exe })
}

/// Runs the VMM process for `job`, publishes its pid, waits, and reads its result.
fn run_child(
    bin: &Path,
    job: &vcompare_vmm::VmJob,
    tap: Option<RawFd>,
    dir: &Path,
    hooks: &mut dyn RunHooks,
) -> anyhow::Result<process::VmResult> {
    let job_path = dir.join("vm-job.json");
    std::fs::write(&job_path, serde_json::to_vec(job)?)?;
    let mut cmd = std::process::Command::new(bin);
    cmd.arg(&job_path).stdin(std::process::Stdio::null());
    if let Some(fd) = tap {
        use std::os::unix::process::CommandExt;
        // SAFETY: dup2/fcntl are async-signal-safe; the TAP lands at TAP_FD_IN_VMM without
        // close-on-exec, every other fd of ours keeps it.
        unsafe {
            cmd.pre_exec(move || {
                let r = if fd == TAP_FD_IN_VMM {
                    libc::fcntl(fd, libc::F_SETFD, 0)
                } else {
                    libc::dup2(fd, TAP_FD_IN_VMM)
                };
                if r < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    // `--debug` without RUST_LOG: the VMM logs as this process does (RUST_LOG is inherited).
    if let Some(filter) = crate::child_log_filter() {
        cmd.env("RUST_LOG", filter);
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    hooks.started(child.id() as i32);
    let status = child.wait()?;
    let _ = std::fs::remove_file(&job_path);
    match std::fs::read(&job.result_path) {
        Ok(b) => Ok(serde_json::from_slice(&b)?),
        Err(_) => {
            use std::os::unix::process::ExitStatusExt;
            match status.signal() {
                // `vcompare kill` (SIGKILL to the VMM): the VM is gone with it.
                Some(sig) => Ok(process::VmResult {
                    exit: Some(GuestExit::Signaled(sig)),
                    error: None,
                    launched_ns: None,
                    first_entry_ns: None,
                    marks: Vec::new(),
                    ended_ns: monotonic_ns(),
                    console_tail: Vec::new(),
                    restored: false,
                    restore_failed: false,
                    snapshot_pause_ms: None,
                }),
                None => anyhow::bail!("the VMM process failed ({status})"),
            }
        }
    }
}

/// How long `exec` and `stop` wait for the agent to answer each step.
const AGENT_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs `process` in the running VM through its guest agent (`vcompare exec`); returns its
/// exit code (128+N for signal N; 127/126 when it cannot start, as in container mode).
pub fn exec(
    spec: &RunSpec,
    process: vcompare_spec::ProcessSpec,
    tty: bool,
    interactive: bool,
) -> anyhow::Result<i32> {
    let agent = Agent::connect(&spec.instance_dir, spec.short_id(), AGENT_TIMEOUT)?;
    let req = ExecRequest {
        process,
        stdio: vm_agent::stdio_mode(tty, interactive),
    };
    Ok(agent.exec(req)?.exit_code())
}

/// Asks the VM's guest agent to send `sig` to the entrypoint (`stop`, `kill -s`); false if
/// the agent is not up (yet) or the entrypoint does not run, so the caller falls back to
/// signalling the VMM, which passes the signal on over the console.
pub fn signal_entrypoint(spec: &RunSpec, sig: i32) -> bool {
    let started = Instant::now();
    let done = Agent::connect(&spec.instance_dir, spec.short_id(), AGENT_TIMEOUT)
        .and_then(|a| a.signal_entrypoint(sig))
        .unwrap_or(false);
    tracing::debug!(
        sig,
        through_agent = done,
        ms = started.elapsed().as_millis() as u64,
        "signal for the VM's entrypoint"
    );
    done
}

/// Frees what the instance owns on the host (its disk copy). Idempotent.
pub fn remove(spec: &RunSpec) -> anyhow::Result<()> {
    disk::remove_instance_disk(&spec.instance_dir)?;
    let _ = std::fs::remove_file(spec.instance_dir.join(VM_STATE));
    let _ = std::fs::remove_file(spec.instance_dir.join(GUEST_STATE));
    let _ = std::fs::remove_file(spec.instance_dir.join(RAM_RANGES));
    Ok(())
}

/// RSS and PSS (KiB) of the whole process, and RSS of the mappings inside guest RAM's host
/// ranges (anonymous RAM plus the kernel's file mappings placed into it).
fn rss_split(pid: i32, ranges: &[(u64, u64)]) -> Option<(u64, u64, u64)> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let (mut total, mut pss, mut guest) = (0u64, 0u64, 0u64);
    let mut in_guest = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                in_guest = ranges.iter().any(|&(s, l)| a >= s && b <= s + l);
                continue;
            }
        }
        let mut it = line.split_whitespace();
        match (it.next(), it.next().and_then(|v| v.parse::<u64>().ok())) {
            (Some("Rss:"), Some(v)) => {
                total += v;
                if in_guest {
                    guest += v;
                }
            }
            (Some("Pss:"), Some(v)) => pss += v,
            _ => {}
        }
    }
    Some((total, pss, guest))
}

/// Host view vs instance view, for `vcompare inspect`; `pid` is set while running.
pub fn inspect(spec: &RunSpec, pid: Option<i32>) -> anyhow::Result<serde_json::Value> {
    let state: serde_json::Value = std::fs::read(spec.instance_dir.join(VM_STATE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::json!({}));
    let mut host = serde_json::json!({ "vmm_pid": pid });
    if let Some(pid) = pid {
        let mut vcpus = Vec::new();
        if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for t in rd.flatten() {
                let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
                if comm.starts_with("vcpu") {
                    vcpus.push(serde_json::json!({ "tid": t.file_name().to_string_lossy(), "name": comm.trim() }));
                }
            }
        }
        host["vcpu_threads"] = serde_json::json!(vcpus);
        let ranges: Vec<(u64, u64)> = std::fs::read(spec.instance_dir.join(RAM_RANGES))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        if let Some((total, pss, guest)) = rss_split(pid, &ranges) {
            host["rss_kib"] = total.into();
            host["pss_kib"] = pss.into();
            host["guest_ram_rss_kib"] = guest.into();
            host["vmm_overhead_rss_kib"] = total.saturating_sub(guest).into();
        }
    }
    host["host_kernel"] = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .into();
    host["disk"] = state.get("disk").cloned().unwrap_or_default();
    host["kvm_backend"] = state.get("backend").cloned().unwrap_or_default();
    host["vmm_process"] = state.get("vmm_process").cloned().unwrap_or_default();
    host["snapshot"] = state.get("snapshot").cloned().unwrap_or_default();
    // The guest's own report (sent by our init at boot) when there is one; else the configuration.
    let guest = match std::fs::read(spec.instance_dir.join(GUEST_STATE))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
    {
        Some(g) => g,
        None => serde_json::json!({
            "pid1": "vcompare-init",
            "memory_mib (configured)": state.get("memory_mib").cloned().unwrap_or(memory_mib(spec).into()),
            "cpus (configured)": state.get("cpus").cloned().unwrap_or(serde_json::json!(vcpus(spec).unwrap_or(1))),
        }),
    };
    host["guest_kernel_image"] = state.get("kernel").cloned().unwrap_or_default();
    Ok(serde_json::json!({ "host": host, "guest": guest, "network": network::describe(spec) }))
}
