//! QEMU `-M microvm` as the VM peer, booting the same guest kernel vcompare's VMM boots, with
//! the same kernel arguments (including the PVM workarounds and `quiet`), in two ways:
//! - [`BootMethod::Initramfs`] (subject `qemu`): the usual `-kernel -initrd` boot, with
//!   vcompare's init as `/init` in the initramfs and the image's disk attached;
//! - [`BootMethod::RootDisk`] (subject `qemu-rootdisk`): exactly how vcompare's VMM boots —
//!   no initramfs, the kernel mounts a copy of the same image disk (init on it, spec after it).
//!
//! Timed exactly as vcompare's VM mode: the clock starts before the per-boot preparation that
//! vcompare's CLI also does inside its timed span (a fresh copy of the image's VM disk and the
//! run's spec written onto it), then qemu is spawned; `init` = the init's first phase report on
//! the console (`ESC _ vcompare:1 ESC \`, written and drained as its first action), the same
//! report vcompare's VMM timestamps as init start. What is built once per run (the initramfs)
//! corresponds to vcompare's cached per-image disk and stays untimed for both. For the startup
//! suite QEMU is killed at init ([`Until::Init`]); for the memory suite it runs the idle probe and
//! is sampled, with the same function as vcompare's VMM, once the probe has printed its line
//! ([`Until::Line`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::{io_at, BenchError, Result};
use crate::harness::{vmm_memory, wait_exit, VmmMemory};

/// Guest RAM given to QEMU (vcompare's VM default is the same 256 MiB).
pub const MEMORY_MIB: u64 = 256;

/// Whether qemu-system-x86_64 is on PATH.
pub fn available() -> bool {
    super::which("qemu-system-x86_64").is_some()
}

/// `qemu-system-x86_64 --version` first line.
pub fn version() -> Option<String> {
    super::version("qemu-system-x86_64", &["--version"])
}

/// The newest guest kernel built by `kernels/build.sh` (`$VCOMPARE_KERNEL` overrides).
pub fn find_kernel() -> Option<PathBuf> {
    if let Some(k) = std::env::var_os("VCOMPARE_KERNEL")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
    {
        return Some(k);
    }
    let cache = std::env::var_os("VCOMPARE_KERNEL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/var/cache/vcompare/kernels".into());
    std::fs::read_dir(cache)
        .ok()?
        .flatten()
        .map(|e| e.path().join("vmlinux"))
        .filter(|p| p.is_file())
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
}

/// How the QEMU guest gets its init.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootMethod {
    /// `-initrd` with the init as `/init` (the conventional microVM boot).
    Initramfs,
    /// No initramfs: root on the disk, as vcompare's VMM boots.
    RootDisk,
}

impl BootMethod {
    /// The startup subject's name.
    pub fn subject(self) -> &'static str {
        match self {
            BootMethod::Initramfs => "qemu",
            BootMethod::RootDisk => "qemu-rootdisk",
        }
    }
}

/// What one QEMU boot needs (built once per run, untimed).
#[derive(Debug, Clone)]
pub struct QemuSetup {
    /// The startup subject these boots are reported under.
    pub subject: String,
    /// The ELF vmlinux (PVH entry).
    pub kernel: PathBuf,
    /// The initramfs, for [`BootMethod::Initramfs`].
    pub initrd: Option<PathBuf>,
    /// Full kernel command line.
    pub cmdline: String,
    /// vcompare's cached VM disk of the image (init on it): each boot copies it.
    pub image_disk: PathBuf,
    /// Where each boot's fresh copy goes, attached as virtio-blk in both methods (so the same
    /// block driver probes the same device).
    pub disk: PathBuf,
}

/// A report of the init as it appears on the console.
pub fn phase_marker(phase: vcompare_spec::guest::Phase) -> Vec<u8> {
    use vcompare_spec::guest::{console_marker, encode_report};
    console_marker(&encode_report(phase, 0).to_string()).into_bytes()
}

/// The init's first report (init start) as it appears on the console.
fn init_marker() -> Vec<u8> {
    phase_marker(vcompare_spec::guest::Phase::InitStart)
}

fn failed(cmd: &str, e: impl std::fmt::Display) -> BenchError {
    BenchError::Failed {
        cmd: cmd.into(),
        status: "error".into(),
        detail: e.to_string(),
    }
}

/// Prepares the once-per-run part of a boot in `scratch`: for the initramfs method an archive
/// with `init` as `/init`, and the kernel command line vcompare's VMM passes on this host (its
/// virtio-mmio device list aside: QEMU adds its own). The per-boot part (disk copy, spec) is
/// done by [`boot`] inside the timed span, as vcompare's CLI does it inside its own.
pub fn prepare(
    scratch: &Path,
    kernel: &Path,
    init: &Path,
    image_disk: &Path,
    method: BootMethod,
) -> Result<QemuSetup> {
    let name = method.subject();
    let (initrd, extra) = match method {
        BootMethod::Initramfs => {
            let init_bytes = std::fs::read(init).map_err(io_at(init))?;
            let mut w = vcompare_vmm::initramfs::CpioWriter::new();
            w.dir("dev", 0o755)
                .char_dev("dev/console", 0o600, 5, 1)
                .file("init", 0o755, &init_bytes);
            let initrd = scratch.join(format!("{name}-initrd.cpio"));
            std::fs::write(&initrd, w.finish()).map_err(io_at(&initrd))?;
            (Some(initrd), Vec::new())
        }
        BootMethod::RootDisk => (None, vcompare_vmm::disk::root_cmdline()),
    };
    let backend = vcompare_vmm::KvmBackend::detect();
    let cmdline = vcompare_vmm::machine::kernel_cmdline(backend, tsc_khz(), 0, false, &extra);
    Ok(QemuSetup {
        subject: name.to_string(),
        kernel: kernel.to_path_buf(),
        initrd,
        cmdline,
        image_disk: image_disk.to_path_buf(),
        disk: scratch.join(format!("{name}-disk.ext4")),
    })
}

/// The per-boot preparation vcompare's CLI also does for every VM: a fresh copy of the image's
/// VM disk (reflink or sparse copy, the same function) and the run's spec (`args`) written
/// onto it.
pub(crate) fn fresh_disk(setup: &QemuSetup, args: &[&str]) -> Result<()> {
    let _ = std::fs::remove_file(&setup.disk);
    vcompare_vmm::disk::clone_or_copy(&setup.image_disk, &setup.disk)
        .map_err(|e| failed("copy the VM disk for QEMU", e))?;
    let spec = vcompare_vmm::GuestSpec {
        process: vcompare_spec::ProcessSpec {
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
        boot_timer_port: vcompare_vmm::machine::BOOT_TIMER_PORT,
        network: None,
        attach: false,
        ..Default::default()
    };
    let json = serde_json::to_vec(&spec).map_err(|e| failed("encode the spec", e))?;
    vcompare_vmm::disk::write_spec(&setup.disk, &json)
        .map_err(|e| failed("write the spec for QEMU", e))
}

/// TSC frequency guess from /proc/cpuinfo (for `lpj=`; only skips a calibration loop).
pub(crate) fn tsc_khz() -> Option<u32> {
    let c = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = c
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    Some((mhz * 1000.0) as u32)
}

/// What a VM peer's console reader reports.
pub(crate) enum ConsoleEvent {
    /// A complete console line.
    Line(String),
    /// Marker number `.0` of the reader's list was first read at `.1` ns after the start.
    Marker(usize, u64),
}

/// Reads a VM peer's serial console (its stdout) on a thread: complete lines, and the instant
/// (ns after `t0`) each of `markers` first appears — bytes, not lines: a marker is not
/// followed by a newline. With `go_on = (i, input)` the go message is written to the serial
/// input as soon as marker `i` (the init's `ready`) is read, as vcompare's VMM answers it.
/// Every VM peer reads its console through this, so "init" means the same read everywhere.
pub(crate) fn console_reader(
    mut stdout: impl std::io::Read + Send + 'static,
    t0: Instant,
    markers: Vec<Vec<u8>>,
    mut go_on: Option<(usize, std::process::ChildStdin)>,
) -> (mpsc::Receiver<ConsoleEvent>, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel::<ConsoleEvent>();
    let reader = std::thread::spawn(move || {
        let longest = markers.iter().map(Vec::len).max().unwrap_or(0);
        let mut found = vec![false; markers.len()];
        let (mut acc, mut line) = (Vec::new(), Vec::new());
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            let at = t0.elapsed().as_nanos() as u64;
            if found.iter().any(|f| !f) {
                acc.extend_from_slice(&buf[..n]);
                for (i, m) in markers.iter().enumerate() {
                    if found[i] || !acc.windows(m.len()).any(|w| w == m.as_slice()) {
                        continue;
                    }
                    found[i] = true;
                    if let Some((_, input)) = go_on.as_mut().filter(|g| g.0 == i) {
                        let _ = std::io::Write::write_all(
                            input,
                            &vcompare_spec::guest::go_message_now(),
                        );
                    }
                    if tx.send(ConsoleEvent::Marker(i, at)).is_err() {
                        return;
                    }
                }
                let keep = acc.len().saturating_sub(longest);
                acc.drain(..keep);
            }
            for &b in &buf[..n] {
                if b == b'\n' {
                    let l = String::from_utf8_lossy(&line).into_owned();
                    line.clear();
                    if tx.send(ConsoleEvent::Line(l)).is_err() {
                        return;
                    }
                } else {
                    line.push(b);
                }
            }
        }
    });
    (rx, reader)
}

/// One QEMU boot's figures.
#[derive(Debug, Clone, Default)]
pub struct QemuBoot {
    /// Start (before the per-boot preparation) → init start, or → the stop for
    /// [`Until::Line`], ns.
    pub wall_ns: u64,
    /// Start → the init's first boot-timer report, ns.
    pub init_ns: Option<u64>,
    /// The VMM memory split at the [`Until::Line`] instant.
    pub memory: Option<VmmMemory>,
}

/// When a boot is stopped.
#[derive(Debug, Clone, Copy)]
pub enum Until<'a> {
    /// At the init's first phase report (launch → init; the rest takes seconds and is part of
    /// no figure).
    Init,
    /// When a console line contains this text; the VMM memory is sampled then.
    Line(&'a str),
}

/// QEMU's `-cpu` value: the host CPU, except that on a PVM host the IA32_ARCH_CAPABILITIES
/// feature is left out — PVM's KVM refuses QEMU's write of that MSR and QEMU aborts at start
/// ("failed to set MSR 0x10a"). vcompare's VMM never writes it; the feature only tells the
/// guest which CPU vulnerabilities need mitigating, and our guest kernel is built without
/// mitigations (CPU_MITIGATIONS off), so both guests boot the same code.
pub fn cpu_model(backend: vcompare_vmm::KvmBackend) -> &'static str {
    match backend {
        vcompare_vmm::KvmBackend::Pvm => "host,-arch-capabilities",
        vcompare_vmm::KvmBackend::Hardware => "host",
    }
}

/// Boots once running `args` in the guest, stopped as `until` says; fails if QEMU exits
/// before that or takes longer than `timeout`.
pub fn boot(setup: &QemuSetup, args: &[&str], until: Until, timeout: Duration) -> Result<QemuBoot> {
    let label = "qemu-system-x86_64 -M microvm";
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-M",
        // acpi=off: our guest kernel has no ACPI, and with ACPI on QEMU describes its
        // virtio-mmio transports only in ACPI tables, so the guest would never see the disk;
        // with it off QEMU adds `virtio_mmio.device=` to the command line, as vcompare does.
        "microvm,acpi=off",
        "-enable-kvm",
        "-cpu",
        cpu_model(vcompare_vmm::KvmBackend::detect()),
        "-smp",
        "1",
        "-nodefaults",
        "-no-user-config",
        "-nographic",
    ])
    .args([
        "-m",
        &MEMORY_MIB.to_string(),
        "-serial",
        "stdio",
        "-no-reboot",
    ])
    .arg("-kernel")
    .arg(&setup.kernel)
    .args(
        setup
            .initrd
            .iter()
            .flat_map(|i| [std::ffi::OsStr::new("-initrd"), i.as_os_str()]),
    )
    .arg("-append")
    .arg(&setup.cmdline)
    .arg("-drive")
    .arg(format!(
        "file={},format=raw,if=none,id=vda",
        setup.disk.display()
    ))
    .args(["-device", "virtio-blk-device,drive=vda"])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    boot_command(cmd, label, setup, args, until, timeout, MEMORY_MIB << 20)
}

/// Boots a VM peer whose VMM is `cmd` (serial console on its piped stdin/stdout), running
/// `args` in the guest, stopped as `until` says. QEMU's and Firecracker's cold boots both go
/// through it, so they share the start event (before the per-boot disk copy and spec), the
/// end events (the init's console reports) and the VMM memory rule (`ram_bytes` of RAM).
pub(crate) fn boot_command(
    mut cmd: Command,
    label: &str,
    setup: &QemuSetup,
    args: &[&str],
    until: Until,
    timeout: Duration,
    ram_bytes: u64,
) -> Result<QemuBoot> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // The start event: before the per-boot preparation, as for `vcompare run` (whose CLI
    // copies the disk and writes the spec after the harness spawned it).
    let t0 = Instant::now();
    fresh_disk(setup, args)?;
    let mut child = cmd.spawn().map_err(|source| BenchError::Spawn {
        cmd: label.into(),
        source,
    })?;
    let pid = child.id();
    let stdout = child.stdout.take().expect("piped");
    let serial_in = child.stdin.take().expect("piped");
    // Marker 0: init start (the end event); marker 1: ready, answered with the go message.
    let (rx, reader) = console_reader(
        stdout,
        t0,
        vec![
            init_marker(),
            phase_marker(vcompare_spec::guest::Phase::Ready),
        ],
        Some((1, serial_in)),
    );
    let mut boot = QemuBoot::default();
    let mut stopped_at: Option<u64> = None;
    let mut last_lines: Vec<String> = Vec::new();
    let io_err = |source| BenchError::Spawn {
        cmd: label.into(),
        source,
    };
    let status = loop {
        while let Ok(ev) = rx.try_recv() {
            match ev {
                ConsoleEvent::Line(line) => {
                    let hit = matches!(until, Until::Line(n) if line.contains(n));
                    last_lines.push(line);
                    if last_lines.len() > 5 {
                        last_lines.remove(0);
                    }
                    if hit && stopped_at.is_none() {
                        boot.memory = vmm_memory(pid, ram_bytes);
                        stopped_at = Some(t0.elapsed().as_nanos() as u64);
                        let _ = child.kill();
                    }
                }
                ConsoleEvent::Marker(0, at) if boot.init_ns.is_none() => {
                    boot.init_ns = Some(at);
                    if matches!(until, Until::Init) {
                        stopped_at = Some(at);
                        let _ = child.kill();
                    }
                }
                ConsoleEvent::Marker(..) => {}
            }
        }
        // The shared exit detector (pidfd), 1 ms at a time so console events are handled.
        if let Some((st, _)) = wait_exit(&mut child, Duration::from_millis(1)).map_err(io_err)? {
            break st;
        }
        if t0.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(BenchError::Timeout {
                cmd: label.into(),
                secs: timeout.as_secs(),
                detail: format!("last console lines: {}", last_lines.join(" | ")),
            });
        }
    };
    let _ = reader.join();
    while let Ok(ev) = rx.try_recv() {
        match ev {
            ConsoleEvent::Line(line) => last_lines.push(line),
            ConsoleEvent::Marker(0, at) => {
                boot.init_ns.get_or_insert(at);
            }
            ConsoleEvent::Marker(..) => {}
        }
    }
    let _ = std::fs::remove_file(&setup.disk);
    boot.wall_ns = stopped_at.unwrap_or_else(|| t0.elapsed().as_nanos() as u64);
    if stopped_at.is_none() {
        let mut err = Vec::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_end(&mut e, &mut err);
        }
        let tail = last_lines
            .iter()
            .rev()
            .take(3)
            .rev()
            .cloned()
            .collect::<Vec<_>>()
            .join(" | ");
        let what = match until {
            Until::Init => "the init never reported its start on the console".to_string(),
            Until::Line(n) => format!("no console line with {n:?}"),
        };
        return Err(BenchError::Failed {
            cmd: label.into(),
            status: status.to_string(),
            detail: format!("{what}; {} {}", String::from_utf8_lossy(&err).trim(), tail),
        });
    }
    Ok(boot)
}
