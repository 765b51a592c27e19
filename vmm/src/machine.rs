//! One microVM from start to end: KVM VM, guest RAM, devices, vCPU threads, and the main loop
//! that waits for the guest to finish (i8042 reset), fail, time out, or be asked to stop.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kvm_bindings::{
    kvm_pit_config, kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

use crate::backend_detect::KvmBackend;
use crate::boot::{self, mptable, regs};
use crate::devices::boot_timer::{self, BootTimer, Mark, Phase};
use crate::devices::serial::{Console, ConsoleSink};
use crate::devices::virtio::block::Block;
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::virtio::p9::{P9Device, Share};
use crate::devices::{i8042::ResetDevice, Devices, EventTrigger, COM1_IRQ};
use crate::memory::{self, GuestMem};
use crate::trace::Trace;
use crate::vcpu::{self, VcpuEnd, VcpuShared};

/// First legacy IRQ line used by virtio-mmio devices.
pub const VIRTIO_IRQ_BASE: u32 = 5;
/// Byte the VMM sends on the guest console, followed by a signal number, to ask the init to
/// send that signal to the entrypoint (SIGTERM = the shutdown request of `stop`).
pub const SIGNAL_BYTE: u8 = 0x1c; // ASCII "file separator": never typed by accident
/// Console lines shown with a guest failure.
pub const TAIL_LINES: usize = 20;

/// Receives guest RAM's (host address, length) ranges.
pub type MemoryCallback = Box<dyn FnOnce(&[(u64, u64)]) + Send>;

/// Everything needed to start one VM.
pub struct VmConfig {
    /// ELF vmlinux with a PVH note.
    pub kernel: PathBuf,
    /// Guest RAM, MiB.
    pub memory_mib: u64,
    /// vCPUs.
    pub cpus: u8,
    /// Fault all guest RAM in before boot.
    pub prealloc: bool,
    /// The initramfs (cpio newc, see [`crate::initramfs`]); empty: boot without one.
    pub initramfs: crate::initramfs::Initramfs,
    /// Root disk served as /dev/vda.
    pub root_disk: Option<PathBuf>,
    /// Serve the root disk read-only.
    pub root_readonly: bool,
    /// Host directories shared over virtio-9p (after the root disk, one device each).
    pub shares: Vec<Share>,
    /// Extra kernel arguments (after ours).
    pub extra_cmdline: Vec<String>,
    /// Where the guest's console output goes (the instance's stdout).
    pub console: Box<dyn Write + Send>,
    /// Forward the whole console (kernel boot log) instead of only the entrypoint's output.
    pub boot_log: bool,
    /// Watchdog: stop the VM after this long.
    pub timeout: Option<Duration>,
    /// Take over SIGTERM/SIGINT while running (first: ask the guest to stop; second: stop it).
    pub handle_signals: bool,
    /// The instant the VMM setup is measured from (process launch, or now).
    pub launched: Instant,
    /// Called (on a vCPU thread) with the guest init's self-description, a JSON object.
    pub on_guest_info: Option<crate::devices::boot_timer::InfoCallback>,
    /// Called once guest RAM is mapped, with its (host address, length) ranges: lets the
    /// caller tell guest RAM from VMM memory in /proc/PID/smaps (the overhead measurement).
    pub on_memory: Option<MemoryCallback>,
}

/// How the entrypoint inside the guest ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuestExit {
    /// Exited with this code.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
    /// The `timeout` watchdog stopped the VM.
    TimedOut,
    /// Stopped by a second SIGTERM/SIGINT to the VMM before the guest finished.
    Killed,
}

/// The result of a VM run, with the timing the benchmarks use.
#[derive(Debug, Clone)]
pub struct VmReport {
    /// How the entrypoint ended.
    pub exit: GuestExit,
    /// KVM flavour of this host.
    pub backend: KvmBackend,
    /// `VmConfig::launched`.
    pub launched: Instant,
    /// vCPU 0's first KVM_RUN: end of VMM setup, first guest instruction.
    pub first_entry: Option<Instant>,
    /// The guest's boot-timer marks.
    pub marks: Vec<Mark>,
    /// The last console lines (boot log included).
    pub console_tail: Vec<String>,
    /// When the VM was torn down.
    pub ended: Instant,
    /// The guest init's self-description (JSON), if it sent one.
    pub guest_info: Option<String>,
}

/// Why a VM could not run to the entrypoint's end.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// /dev/kvm is missing or not accessible.
    #[error("cannot open /dev/kvm: {0} (KVM is needed for --mode vm: load kvm_intel/kvm_amd/kvm_pvm and make /dev/kvm accessible, e.g. add the user to group kvm)")]
    KvmOpen(std::io::Error),
    /// A KVM ioctl failed during setup.
    #[error("KVM setup failed at {what}: {source}")]
    Kvm {
        /// The step.
        what: &'static str,
        /// The ioctl error.
        source: kvm_ioctls::Error,
    },
    /// Invalid configuration.
    #[error("{0}")]
    Config(String),
    /// Guest RAM.
    #[error(transparent)]
    Memory(#[from] memory::MemoryError),
    /// Kernel loading / boot structures.
    #[error(transparent)]
    Boot(#[from] boot::BootError),
    /// vCPU register setup.
    #[error(transparent)]
    Regs(#[from] regs::RegsError),
    /// MP table.
    #[error(transparent)]
    MpTable(#[from] mptable::MpTableError),
    /// Root disk.
    #[error(transparent)]
    Disk(#[from] crate::devices::virtio::block::BlockError),
    /// A shared directory.
    #[error(transparent)]
    Share(#[from] crate::devices::virtio::p9::ShareError),
    /// Host resources (eventfd, threads, signals).
    #[error("VMM error: {0}")]
    Host(std::io::Error),
    /// The guest failed: one sentence and the last console lines.
    #[error("{what}{}", format_tail(.lines))]
    Guest {
        /// One sentence.
        what: String,
        /// Last console lines.
        lines: Vec<String>,
    },
}

fn format_tail(lines: &[String]) -> String {
    if lines.is_empty() {
        " (the guest printed nothing)".to_string()
    } else {
        let mut s = format!("\n--- last {} console lines ---", lines.len());
        for l in lines {
            s.push('\n');
            s.push_str(l);
        }
        s
    }
}

fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |source| VmError::Kvm { what, source }
}

/// The kernel command line for this VM on this backend.
pub fn kernel_cmdline(
    backend: KvmBackend,
    tsc_khz: Option<u32>,
    virtio_devices: usize,
    boot_log: bool,
    extra: &[String],
) -> String {
    // Few arguments on purpose: the kernel matches every argument against every built-in
    // parameter once per initcall level, ~6 % of an emulated boot (kernels/profile.sh); so
    // nothing that our kernel's config already implies (no PCI, no modules, one UART, no
    // KASLR).
    let mut args: Vec<String> = ["console=ttyS0", "reboot=k", "panic=-1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if !boot_log {
        args.push("quiet".into());
    }
    args.extend(backend.kernel_args(tsc_khz));
    for i in 0..virtio_devices as u64 {
        args.push(format!(
            "virtio_mmio.device=4K@{:#x}:{}",
            memory::VIRTIO_MMIO_BASE + i * memory::VIRTIO_MMIO_SIZE,
            u64::from(VIRTIO_IRQ_BASE) + i
        ));
    }
    args.extend(extra.iter().cloned());
    args.join(" ")
}

fn host_ram_mib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = s
        .lines()
        .find(|l| l.starts_with("MemTotal:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024)
}

/// Checks the sizes before anything is created.
pub fn validate(cfg_memory_mib: u64, cpus: u8) -> Result<(), VmError> {
    if cpus == 0 {
        return Err(VmError::Config("--cpus must be at least 1 for a VM".into()));
    }
    if cpus > mptable::MAX_CPUS {
        return Err(VmError::Config(format!(
            "--cpus {cpus} is more than the {} vCPUs vcompare's VMM supports",
            mptable::MAX_CPUS
        )));
    }
    if cfg_memory_mib < 32 {
        return Err(VmError::Config(format!(
            "--memory {cfg_memory_mib} MiB is too small for a VM (at least 32 MiB)"
        )));
    }
    if let Some(host) = host_ram_mib() {
        if cfg_memory_mib > host {
            return Err(VmError::Config(format!(
                "--memory {cfg_memory_mib} MiB is more than this host's RAM ({host} MiB)"
            )));
        }
    }
    Ok(())
}

fn register_memory(vm: &VmFd, mem: &GuestMem) -> Result<(), VmError> {
    for (slot, region) in mem.iter().enumerate() {
        let r = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: region.as_ptr() as u64,
        };
        // SAFETY: the region is a live mapping owned by `mem`, which outlives the VM (it is
        // dropped after the VmFd at the end of `run`), and slots do not overlap.
        unsafe { vm.set_user_memory_region(r) }.map_err(kvm_err("guest memory slot"))?;
    }
    Ok(())
}

/// Signals the VMM passes on to the entrypoint in the guest (`kill -s SIG` on the VMM pid).
pub const FORWARDED_SIGNALS: [i32; 6] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Blocks [`FORWARDED_SIGNALS`] in this thread (inherited by vCPU threads) and reads them
/// from a signalfd; restores the old mask on drop.
struct SignalGuard {
    fd: i32,
    old: libc::sigset_t,
}

impl SignalGuard {
    fn new() -> std::io::Result<Self> {
        // SAFETY: sigset functions on local, zero-initialised sets; signalfd returns a new fd
        // we own and close in Drop.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in FORWARDED_SIGNALS {
                libc::sigaddset(&mut set, s);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
            let fd = libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
            if fd < 0 {
                let e = std::io::Error::last_os_error();
                libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
                return Err(e);
            }
            Ok(SignalGuard { fd, old })
        }
    }

    fn read(&self) -> Option<i32> {
        // SAFETY: reading one signalfd_siginfo into a properly sized local buffer.
        unsafe {
            let mut info: libc::signalfd_siginfo = std::mem::zeroed();
            let n = libc::read(
                self.fd,
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                std::mem::size_of::<libc::signalfd_siginfo>(),
            );
            (n == std::mem::size_of::<libc::signalfd_siginfo>() as isize)
                .then_some(info.ssi_signo as i32)
        }
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        // SAFETY: fd is ours; restoring the mask saved in `new`.
        unsafe {
            libc::close(self.fd);
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut());
        }
    }
}

/// Why the main loop ended.
enum LoopEnd {
    Reset,
    Vcpu(usize, VcpuEnd),
    TimedOut,
    Killed,
}

/// What the loader thread prepared in guest RAM, for the vCPU setup.
struct Loaded {
    boot: boot::BootInfo,
    supported_cpuid: kvm_bindings::CpuId,
}

/// Fills guest RAM: the kernel, the initramfs, the PVH start info, MP table and GDT; and
/// reads the host's supported CPUID. Touches no VM state, so it runs beside the VM ioctls.
fn load_guest(
    kvm: &Kvm,
    mem: &GuestMem,
    kernel: &std::path::Path,
    cpus: u8,
    initramfs: &crate::initramfs::Initramfs,
    launched: Instant,
) -> Result<Loaded, VmError> {
    let mut t = Trace::from_env("load", launched);
    let boot = boot::load_kernel(mem, kernel)?;
    t.step("kernel");
    let initrd = boot::load_initrd(mem, &boot, initramfs)?;
    t.step("initrd");
    boot::pvh::write_start_info(mem, initrd)?;
    mptable::write(mem, cpus)?;
    regs::write_gdt(mem)?;
    t.step("start info+mptable+gdt");
    let supported_cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm_err("supported CPUID"))?;
    t.step("supported cpuid");
    Ok(Loaded {
        boot,
        supported_cpuid,
    })
}

/// The in-kernel LAPIC/IOAPIC/PIC and PIT (which must exist before the vCPUs).
fn create_irqchip_and_pit(vm: &VmFd) -> Result<(), VmError> {
    vm.set_tss_address(0xfffb_d000)
        .map_err(kvm_err("TSS address"))?;
    vm.create_irq_chip().map_err(kvm_err("in-kernel irqchip"))?;
    vm.create_pit2(kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    })
    .map_err(kvm_err("in-kernel PIT"))
}

/// Boots the VM and runs it until the guest is done. The calling thread runs vCPU 0 (no
/// thread hand-off before the first guest instruction); the main loop and the other vCPUs
/// get their own threads.
pub fn run(mut cfg: VmConfig) -> Result<VmReport, VmError> {
    let mut trace = Trace::from_env("main", cfg.launched);
    trace.step("run() entered");
    validate(cfg.memory_mib, cfg.cpus)?;
    // VCOMPARE_VMM_PLAIN=1 skips the PVM adaptations, to show what a stock setup does here.
    let backend = match std::env::var_os("VCOMPARE_VMM_PLAIN") {
        Some(_) => KvmBackend::Hardware,
        None => KvmBackend::detect(),
    };
    let signals = if cfg.handle_signals {
        Some(SignalGuard::new().map_err(VmError::Host)?)
    } else {
        None
    };

    let kvm =
        Kvm::new().map_err(|e| VmError::KvmOpen(std::io::Error::from_raw_os_error(e.errno())))?;
    trace.step("validate+open");
    let mem = memory::create(cfg.memory_mib, cfg.prealloc)?;
    trace.step("mmap");
    // The initramfs is mapped/written into guest RAM below; the VMM keeps no copy (RSS).
    let initramfs = std::mem::take(&mut cfg.initramfs);
    let vm = kvm.create_vm().map_err(kvm_err("create VM"))?;
    trace.step("create_vm");

    // The host kernel ends every memslot and in-kernel device registration with an SRCU grace
    // period, serialised per VM (slots_lock). Measured on PVM: registering guest RAM first
    // costs ~0.2 ms; after the irqchip and PIT exist it costs 4–10 ms. So: memslot first, then
    // irqchip and PIT, on this thread, while a helper thread fills guest RAM (kernel, initrd,
    // boot tables) and asks for the supported CPUID, which need no VM lock.
    let (loaded, vcpus) = std::thread::scope(|sc| {
        let (kernel, cpus, launched) = (&cfg.kernel, cfg.cpus, cfg.launched);
        let (kvm, mem, initramfs) = (&kvm, &mem, &initramfs);
        let loader = sc.spawn(move || load_guest(kvm, mem, kernel, cpus, initramfs, launched));
        let vcpus = (|| -> Result<_, VmError> {
            register_memory(&vm, mem)?;
            trace.step("memslots");
            create_irqchip_and_pit(&vm)?;
            trace.step("irqchip+pit");
            let vcpus = (0..cfg.cpus)
                .map(|i| vm.create_vcpu(u64::from(i)).map_err(kvm_err("create vCPU")))
                .collect::<Result<Vec<_>, _>>()?;
            trace.step("create vcpus");
            Ok(vcpus)
        })();
        (loader.join().expect("loader thread"), vcpus)
    });
    drop(initramfs);
    let loaded = loaded?;
    let vcpus = vcpus?;
    for (i, vcpu) in vcpus.iter().enumerate() {
        vcpu.set_cpuid2(&crate::cpuid::for_vcpu(
            &loaded.supported_cpuid,
            i as u8,
            cfg.cpus,
            backend,
        ))
        .map_err(kvm_err("vCPU CPUID"))?;
        regs::setup_vcpu(vcpu, i as u8, loaded.boot.pvh_entry)?;
    }
    trace.step("vcpu cpuid+regs");
    let tsc_khz = vcpus[0].get_tsc_khz().ok();
    let cmdline = kernel_cmdline(
        backend,
        tsc_khz,
        usize::from(cfg.root_disk.is_some()) + cfg.shares.len(),
        cfg.boot_log,
        &cfg.extra_cmdline,
    );
    boot::write_cmdline(&mem, &cmdline)?;
    if backend == KvmBackend::Pvm {
        eprintln!("vcompare: KVM backend is {}: hiding {} CPU features and adding {} kernel arguments for it", backend.describe(),
            crate::cpuid::PVM_MASKED.len(), backend.kernel_args(tsc_khz).len());
    }

    // Devices.
    let host = VmError::Host;
    let forward = Arc::new(AtomicBool::new(cfg.boot_log));
    let serial_irq = EventTrigger::new().map_err(host)?;
    vm.register_irqfd(&serial_irq.0, COM1_IRQ)
        .map_err(kvm_err("serial irqfd"))?;
    let timer = Arc::new(BootTimer::new(forward.clone(), cfg.boot_log).map_err(VmError::Host)?);
    if let Some(f) = cfg.on_guest_info {
        timer.on_guest_info(f);
    }
    let console = Console::new(
        serial_irq,
        ConsoleSink::new(cfg.console, forward.clone()).with_boot_timer(timer.clone()),
    );
    let reset = EventTrigger::new().map_err(VmError::Host)?;
    let reset_fd = reset.0.try_clone().map_err(VmError::Host)?;
    let mut virtio = Vec::new();
    if let Some(disk) = &cfg.root_disk {
        let irq = vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).map_err(VmError::Host)?;
        vm.register_irqfd(&irq, VIRTIO_IRQ_BASE)
            .map_err(kvm_err("virtio-blk irqfd"))?;
        let blk = Block::open(disk, cfg.root_readonly, "vcompare-root")?;
        virtio.push(Mutex::new(MmioTransport::new(
            Box::new(blk),
            mem.clone(),
            irq,
        )));
    }
    for share in &cfg.shares {
        let irq = vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).map_err(VmError::Host)?;
        vm.register_irqfd(&irq, VIRTIO_IRQ_BASE + virtio.len() as u32)
            .map_err(kvm_err("virtio-9p irqfd"))?;
        let dev = P9Device::new(&share.host, &share.tag, share.read_only)?;
        virtio.push(Mutex::new(MmioTransport::new(
            Box::new(dev),
            mem.clone(),
            irq,
        )));
    }
    let devices = Arc::new(Devices {
        serial: Mutex::new(console),
        i8042: Mutex::new(ResetDevice::new(reset)),
        boot_timer: timer,
        virtio,
    });

    trace.step("cmdline+devices");
    // vCPUs 1.. get threads; vCPU 0 runs on this thread and the main loop gets a thread.
    vcpu::install_kick_handler()
        .map_err(|e| VmError::Host(std::io::Error::from_raw_os_error(e.errno())))?;
    let shared = Arc::new(VcpuShared::new().map_err(VmError::Host)?);
    let mut vcpus = vcpus.into_iter();
    let vcpu0 = vcpus.next().expect("validate: at least one vCPU");
    let mut threads = Vec::new();
    for (i, v) in vcpus.enumerate() {
        match vcpu::spawn(i + 1, v, devices.clone(), shared.clone()) {
            Ok(t) => threads.push(t),
            Err(e) => {
                vcpu::stop_all(&shared, threads);
                return Err(VmError::Host(e));
            }
        }
    }
    let on_memory = cfg.on_memory.take();
    let here = vcpu::HereVcpu::current();
    let end = std::thread::scope(|sc| {
        let ctl = std::thread::Builder::new()
            .name("vmm-main".into())
            .spawn_scoped(sc, || {
                // Only for `inspect` (a file write): off the setup's critical path.
                if let Some(f) = on_memory {
                    let r: Vec<(u64, u64)> =
                        mem.iter().map(|r| (r.as_ptr() as u64, r.len())).collect();
                    f(&r);
                }
                let end = main_loop(&cfg.timeout, &devices, &shared, &reset_fd, signals.as_ref());
                here.stop(&shared);
                end
            })?;
        trace.step("main loop thread spawned, entering vCPU 0");
        let profile = crate::guest_profile::GuestProfile::from_env(cfg.launched);
        vcpu::run_here(0, vcpu0, &devices, &shared, &here, profile);
        Ok(ctl.join().expect("main loop thread"))
    });
    let end = match end {
        Ok(e) => e,
        Err(e) => {
            vcpu::stop_all(&shared, threads);
            return Err(VmError::Host(e));
        }
    };
    if let (true, Some(first)) = (trace.on(), shared.first_entry.get()) {
        eprintln!(
            "vmm: launch → first KVM_RUN: {:.3} ms",
            (*first - cfg.launched).as_secs_f64() * 1e3
        );
    }
    vcpu::stop_all(&shared, threads);
    let ended = Instant::now();
    let tail = {
        let mut s = devices.serial.lock().unwrap();
        let _ = s.sink().flush();
        s.sink().last_lines(TAIL_LINES)
    };
    drop(vm);
    let marks = devices.boot_timer.marks();
    let report = |exit| VmReport {
        exit,
        backend,
        launched: cfg.launched,
        first_entry: shared.first_entry.get().copied(),
        marks: marks.clone(),
        console_tail: tail.clone(),
        ended,
        guest_info: devices.boot_timer.guest_info(),
    };
    let guest = |what: String| VmError::Guest {
        what,
        lines: tail.clone(),
    };
    let exit_status = devices.boot_timer.last(Phase::EntrypointExit).map(|m| {
        let (code, sig) = ((m.arg & 0xff) as i32, ((m.arg >> 8) & 0xff) as i32);
        if sig != 0 {
            GuestExit::Signaled(sig)
        } else {
            GuestExit::Exited(code)
        }
    });
    match end {
        LoopEnd::TimedOut => Ok(report(GuestExit::TimedOut)),
        LoopEnd::Killed => Ok(report(GuestExit::Killed)),
        LoopEnd::Reset | LoopEnd::Vcpu(_, VcpuEnd::SystemEvent(_)) | LoopEnd::Vcpu(_, VcpuEnd::Shutdown)
            if exit_status.is_some() =>
        {
            Ok(report(exit_status.unwrap()))
        }
        _ if tail.iter().any(|l| l.contains("Kernel panic")) => {
            let why = tail.iter().find(|l| l.contains("Kernel panic")).cloned().unwrap_or_default();
            Err(guest(format!("the guest kernel panicked ({})", why.trim())))
        }
        _ if devices.boot_timer.last(Phase::InitFailed).is_some() => {
            Err(guest("the guest init failed before the entrypoint could run".into()))
        }
        LoopEnd::Reset | LoopEnd::Vcpu(_, VcpuEnd::SystemEvent(_)) => {
            Err(guest("the guest rebooted without reporting how the entrypoint ended".into()))
        }
        LoopEnd::Vcpu(i, VcpuEnd::Shutdown) => {
            Err(guest(format!("vCPU {i} hit a triple fault (KVM_EXIT_SHUTDOWN); the guest kernel crashed")))
        }
        LoopEnd::Vcpu(i, VcpuEnd::InternalError { suberror, rip, cpl }) => Err(guest(format!(
            "KVM could not run a guest instruction on vCPU {i} (KVM_EXIT_INTERNAL_ERROR, suberror {suberror}, RIP {rip:#x}, CPL {cpl}){}",
            if backend == KvmBackend::Pvm { "; on PVM hosts the guest kernel must be vcompare's patched one (kernels/build.sh)" } else { "" }
        ))),
        LoopEnd::Vcpu(i, VcpuEnd::FailEntry(r)) => Err(guest(format!("KVM refused to enter vCPU {i} (KVM_EXIT_FAIL_ENTRY, reason {r:#x})"))),
        LoopEnd::Vcpu(i, VcpuEnd::Unexpected(e)) => Err(guest(format!("unexpected exit on vCPU {i}: {e}"))),
        LoopEnd::Vcpu(i, VcpuEnd::RunError(e)) => Err(guest(format!("KVM_RUN failed on vCPU {i}: {e}"))),
    }
}

fn main_loop(
    timeout: &Option<Duration>,
    devices: &Devices,
    shared: &VcpuShared,
    reset_fd: &vmm_sys_util::eventfd::EventFd,
    signals: Option<&SignalGuard>,
) -> LoopEnd {
    let deadline = timeout.map(|t| Instant::now() + t);
    // Signals waiting for the entrypoint to exist (the init reads the console only then).
    let mut pending: Vec<i32> = Vec::new();
    let mut stop_requests = 0;
    loop {
        let mut fds = vec![
            libc::pollfd {
                fd: reset_fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: shared.end_evt.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: devices.boot_timer.done.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        if let Some(s) = signals {
            fds.push(libc::pollfd {
                fd: s.fd,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let mut wait_ms: i64 = if pending.is_empty() { 1000 } else { 50 };
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return LoopEnd::TimedOut;
            }
            wait_ms = wait_ms.min(left.as_millis() as i64 + 1);
        }
        // SAFETY: `fds` is a valid array of pollfd for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms as i32) };
        if n < 0 {
            continue; // EINTR
        }
        if fds[0].revents != 0 || fds[2].revents != 0 {
            return LoopEnd::Reset;
        }
        if fds[1].revents != 0 {
            if let Some((i, e)) = shared.end.lock().unwrap().clone() {
                return LoopEnd::Vcpu(i, e);
            }
        }
        if let Some(s) = signals {
            if fds.len() > 3 && fds[3].revents != 0 {
                while let Some(sig) = s.read() {
                    if sig == libc::SIGTERM || sig == libc::SIGINT {
                        stop_requests += 1;
                        if stop_requests > 1 {
                            return LoopEnd::Killed;
                        }
                    }
                    pending.push(sig);
                }
            }
        }
        if !pending.is_empty() && devices.boot_timer.last(Phase::EntrypointExec).is_some() {
            let mut serial = devices.serial.lock().unwrap();
            while let Some(&sig) = pending.first() {
                if serial.send_to_guest(&[SIGNAL_BYTE, sig as u8]) != 2 {
                    break; // FIFO full: retry on the next round
                }
                pending.remove(0);
            }
        }
    }
}

/// Re-exported for the glue: the boot-timer port the init writes to.
pub const BOOT_TIMER_PORT: u16 = boot_timer::PORT;
