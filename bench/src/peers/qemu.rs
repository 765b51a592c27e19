//! QEMU `-M microvm` as the VM peer, booting the same guest kernel vcompare's VMM boots, with
//! the same kernel arguments (including the PVM workarounds), and a tiny initramfs whose
//! `/init` is the probe. Measured per boot, from spawning qemu:
//! - `init`: the kernel's "Run /init as init process" console line (launch → init);
//! - QEMU is killed as soon as the init line appears, so its "wall" figure equals launch → init
//!   (the probe as `/init` would exit at once anyway: the kernel hands it the boot arguments it
//!   does not know, `nomodule noxsave nokaslr`, as argv; no workload runs in the QEMU guest);
//! - memory when the init line appears: QEMU RSS − guest-RAM mapping RSS (its VMM overhead).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::{io_at, BenchError, Result};
use crate::harness::{largest_mapping, rss_pss};

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

/// What one QEMU boot needs.
#[derive(Debug, Clone)]
pub struct QemuSetup {
    /// The ELF vmlinux (PVH entry).
    pub kernel: PathBuf,
    /// The initramfs written by [`prepare`].
    pub initrd: PathBuf,
    /// Full kernel command line.
    pub cmdline: String,
    /// A sparse raw disk attached as virtio-blk, so QEMU's guest probes the same device
    /// vcompare's guest does (its driver init is part of launch → init in both).
    pub disk: PathBuf,
}

/// Size of the peer's blank disk: about vcompare's per-VM disk for the default image.
const DISK_BYTES: u64 = 64 << 20;

/// Writes the initramfs (`/init` = probe, `/dev/console`) into `scratch` and builds the kernel
/// command line vcompare's VMM would use on this host.
pub fn prepare(scratch: &Path, kernel: &Path, probe: &Path) -> Result<QemuSetup> {
    let probe_bytes = std::fs::read(probe).map_err(io_at(probe))?;
    let mut w = vcompare_vmm::initramfs::CpioWriter::new();
    w.dir("dev", 0o755)
        .char_dev("dev/console", 0o600, 5, 1)
        .file("init", 0o755, &probe_bytes);
    let initrd = scratch.join("qemu-initrd.cpio");
    std::fs::write(&initrd, w.finish()).map_err(io_at(&initrd))?;
    let backend = vcompare_vmm::KvmBackend::detect();
    let cmdline = vcompare_vmm::machine::kernel_cmdline(backend, tsc_khz(), 0, true, &[]);
    let disk = scratch.join("qemu-disk.raw");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(DISK_BYTES))
        .map_err(io_at(&disk))?;
    Ok(QemuSetup {
        kernel: kernel.to_path_buf(),
        initrd,
        cmdline,
        disk,
    })
}

/// TSC frequency guess from /proc/cpuinfo (for `lpj=`; only skips a calibration loop).
fn tsc_khz() -> Option<u32> {
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

/// One QEMU boot's figures.
#[derive(Debug, Clone, Default)]
pub struct QemuBoot {
    /// Spawn → init line (QEMU is stopped there), ns.
    pub wall_ns: u64,
    /// Spawn → "Run /init as init process" on the console, ns.
    pub init_ns: Option<u64>,
    /// QEMU RSS minus guest RAM RSS when init starts, bytes.
    pub vmm_overhead_rss: Option<u64>,
    /// RSS of the guest RAM mapping at that moment, bytes.
    pub guest_touched: Option<u64>,
}

/// Boots once; fails if QEMU exits without the init line or takes longer than `timeout`.
pub fn boot_once(setup: &QemuSetup, timeout: Duration) -> Result<QemuBoot> {
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
        "host",
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
    .arg("-initrd")
    .arg(&setup.initrd)
    .arg("-append")
    .arg(&setup.cmdline)
    .arg("-drive")
    .arg(format!(
        "file={},format=raw,if=none,id=vda",
        setup.disk.display()
    ))
    .args(["-device", "virtio-blk-device,drive=vda"])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let t0 = Instant::now();
    let mut child = cmd.spawn().map_err(|source| BenchError::Spawn {
        cmd: label.into(),
        source,
    })?;
    let pid = child.id();
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel::<(String, u64)>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout)
            .lines()
            .map_while(std::result::Result::ok)
        {
            if tx.send((line, t0.elapsed().as_nanos() as u64)).is_err() {
                break;
            }
        }
    });
    let mut boot = QemuBoot::default();
    let mut last_lines: Vec<String> = Vec::new();
    let status = loop {
        while let Ok((line, at)) = rx.try_recv() {
            if boot.init_ns.is_none() && line.contains("Run /init as init process") {
                boot.init_ns = Some(at);
                let mem_bytes = MEMORY_MIB << 20;
                if let (Some((rss, _)), Some((_, guest))) =
                    (rss_pss(pid), largest_mapping(pid, mem_bytes))
                {
                    boot.vmm_overhead_rss = Some(rss.saturating_sub(guest));
                    boot.guest_touched = Some(guest);
                }
                // Stop here: what follows (init exits, panic, reset) is not part of any target
                // and takes ~30 s in the emulator.
                let _ = child.kill();
            }
            last_lines.push(line);
            if last_lines.len() > 5 {
                last_lines.remove(0);
            }
        }
        if let Some(st) = child.try_wait().map_err(|source| BenchError::Spawn {
            cmd: label.into(),
            source,
        })? {
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
        std::thread::sleep(Duration::from_millis(1));
    };
    boot.wall_ns = boot
        .init_ns
        .unwrap_or_else(|| t0.elapsed().as_nanos() as u64);
    let _ = reader.join();
    while let Ok((line, at)) = rx.try_recv() {
        if boot.init_ns.is_none() && line.contains("Run /init as init process") {
            boot.init_ns = Some(at);
        }
        last_lines.push(line);
    }
    if boot.init_ns.is_none() {
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
        return Err(BenchError::Failed {
            cmd: label.into(),
            status: status.to_string(),
            detail: format!(
                "no init line; {} {}",
                String::from_utf8_lossy(&err).trim(),
                tail
            ),
        });
    }
    Ok(boot)
}
