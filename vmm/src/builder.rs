//! The VM builder: checks the sizes, opens KVM, maps guest RAM, loads the kernel and boot
//! tables, creates the irqchip, PIT and vCPUs, attaches the devices (through the
//! [`DeviceManager`]) and writes the kernel command line. It returns a [`Vm`] ready to run.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use kvm_bindings::{
    kvm_pit_config, kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

use crate::backend_detect::KvmBackend;
use crate::boot::{self, mptable, regs};
use crate::cmdline::KernelCmdline;
use crate::config::VmJob;
use crate::device_manager::{AttachedDevices, DeviceManager};
use crate::devices::boot_timer::InfoCallback;
use crate::devices::virtio::block::Block;
use crate::devices::virtio::net::Net;
use crate::devices::virtio::p9::P9Device;
use crate::devices::virtio::vsock::Vsock;
use crate::devices::Devices;
use crate::error::{kvm_err, VmError};
use crate::memory::{self, GuestMem};
use crate::trace::Trace;

/// Block device id of the root disk (what the guest sees in its serial field).
const ROOT_DISK_ID: &str = "vcompare-root";

/// A VM ready for its first instruction. Field order is drop order: the VM before guest RAM.
pub struct Vm {
    /// KVM flavour of this host (as configured).
    pub backend: KvmBackend,
    /// The vCPUs, vCPU 0 first, registers and CPUID set.
    pub vcpus: Vec<VcpuFd>,
    /// Everything a vCPU exit is routed to.
    pub devices: Arc<Devices>,
    /// Written when the guest resets through the i8042.
    pub reset_evt: EventFd,
    /// The KVM VM.
    pub vm: VmFd,
    /// Guest RAM (registered with `vm`, so it must outlive it).
    pub mem: GuestMem,
    /// /dev/kvm.
    pub kvm: Kvm,
}

/// What the builder needs besides the job.
pub struct BuildOptions {
    /// KVM flavour to configure for.
    pub backend: KvmBackend,
    /// Where COM1's output goes.
    pub console: Box<dyn Write + Send>,
    /// Receives the guest init's self-description.
    pub on_guest_info: Option<InfoCallback>,
    /// The instant setup timings count from.
    pub launched: Instant,
    /// Print the loader thread's step timings too.
    pub trace: bool,
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
        // SAFETY: the region is a live mapping owned by `mem`, which outlives the VM (the
        // `Vm` drops its VmFd before its GuestMem), and slots do not overlap.
        unsafe { vm.set_user_memory_region(r) }.map_err(kvm_err("guest memory slot"))?;
    }
    Ok(())
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
    job: &VmJob,
    initramfs: &crate::initramfs::Initramfs,
    launched: Instant,
    trace: bool,
) -> Result<Loaded, VmError> {
    let mut t = Trace::new("load", launched, trace);
    let boot = boot::load_kernel(mem, &job.kernel)?;
    t.step("kernel");
    let initrd = boot::load_initrd(mem, &boot, initramfs)?;
    t.step("initrd");
    boot::pvh::write_start_info(mem, initrd)?;
    mptable::write(mem, job.cpus)?;
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

/// vCPUs 0..n (after the irqchip, which they attach their LAPICs to).
fn create_vcpus(vm: &VmFd, n: u8) -> Result<Vec<VcpuFd>, VmError> {
    (0..n)
        .map(|i| vm.create_vcpu(u64::from(i)).map_err(kvm_err("create vCPU")))
        .collect()
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

/// Devices, in the order of their MMIO slots: the root disk, one per share, the NIC, then the
/// vsock device (after the others, so adding one never moves an earlier slot). Each attach
/// appends its `virtio_mmio.device=` argument to `cmdline`. With `serial`, COM1 starts in
/// that saved state (a restore).
fn attach_devices(
    job: &VmJob,
    vm: &VmFd,
    mem: &GuestMem,
    console: Box<dyn Write + Send>,
    on_guest_info: Option<InfoCallback>,
    serial: Option<&crate::snapshot::device_state::SerialSnapshot>,
    cmdline: &mut KernelCmdline,
) -> Result<(Arc<Devices>, EventFd), VmError> {
    let mut dm = DeviceManager::new(
        vm,
        mem.clone(),
        console,
        job.boot_log,
        on_guest_info,
        serial,
    )?;
    if let Some(disk) = &job.root_disk {
        let blk = Block::open(disk, false, ROOT_DISK_ID)?;
        dm.attach_virtio_device(vm, Box::new(blk), "virtio-blk irqfd", cmdline)?;
    }
    for share in &job.shares {
        let dev = P9Device::new(&share.host, &share.tag, share.read_only)?;
        dm.attach_virtio_device(vm, Box::new(dev), "virtio-9p irqfd", cmdline)?;
    }
    if let Some(net) = &job.net {
        let dev = Net::new(net.tap_fd, net.mac)?;
        dm.attach_virtio_device(vm, Box::new(dev), "virtio-net irqfd", cmdline)?;
    }
    if let Some(vsock) = &job.vsock {
        let dev = Vsock::new(vsock.guest_cid, &vsock.uds_path)?;
        dm.attach_virtio_device(vm, Box::new(dev), "virtio-vsock irqfd", cmdline)?;
    }
    let AttachedDevices { devices, reset_evt } = dm.finish();
    Ok((devices, reset_evt))
}

/// Opens /dev/kvm with the error that names the fix.
fn open_kvm() -> Result<Kvm, VmError> {
    Kvm::new().map_err(|e| VmError::KvmOpen(std::io::Error::from_raw_os_error(e.errno())))
}

/// Builds the VM from the snapshot in `dir` instead of booting (see [`crate::snapshot`]):
/// guest RAM is the snapshot's memory file mapped copy-on-write; the vCPUs, the VM and the
/// devices get the saved state, in Firecracker's order, and are checked to have taken it.
fn build_restored(
    job: &mut VmJob,
    dir: &std::path::Path,
    opts: BuildOptions,
    trace: &mut Trace,
) -> Result<Vm, VmError> {
    use crate::snapshot::{self, memory_file, vcpu_state, vm_state, SnapshotError};
    let BuildOptions {
        backend,
        console,
        on_guest_info,
        ..
    } = opts;
    let kvm = open_kvm()?;
    let state = snapshot::load(dir)?;
    if state.memory_mib != job.memory_mib || state.vcpus.len() != usize::from(job.cpus) {
        return Err(SnapshotError::Mismatch(format!(
            "taken with {} MiB and {} vCPUs, asked for {} MiB and {}",
            state.memory_mib,
            state.vcpus.len(),
            job.memory_mib,
            job.cpus
        ))
        .into());
    }
    trace.step("open+state file");
    let mem = memory_file::map(
        &dir.join(snapshot::MEMORY_FILE),
        &memory::ram_ranges(job.memory_mib)?,
    )?;
    trace.step("map memory file");
    let vm = kvm.create_vm().map_err(kvm_err("create VM"))?;
    trace.step("create_vm");
    register_memory(&vm, &mem)?;
    trace.step("memslots");
    create_irqchip_and_pit(&vm)?;
    trace.step("irqchip+pit");
    let vcpus = create_vcpus(&vm, job.cpus)?;
    trace.step("create vcpus");
    for (vcpu, s) in vcpus.iter().zip(&state.vcpus) {
        vcpu_state::restore(vcpu, s)?;
    }
    vm_state::restore(&vm, &state.vm)?;
    for (vcpu, s) in vcpus.iter().zip(&state.vcpus) {
        vcpu_state::check_exact(vcpu, s)?;
    }
    trace.step("kvm state restored");
    let mut unused = KernelCmdline::default();
    let (devices, reset_evt) = attach_devices(
        job,
        &vm,
        &mem,
        console,
        on_guest_info,
        Some(&state.devices.serial),
        &mut unused,
    )?;
    if devices.virtio.len() != state.devices.virtio.len() {
        return Err(SnapshotError::Mismatch(format!(
            "{} virtio devices in the snapshot, {} now",
            state.devices.virtio.len(),
            devices.virtio.len()
        ))
        .into());
    }
    for (t, s) in devices.virtio.iter().zip(&state.devices.virtio) {
        t.lock()
            .unwrap()
            .restore(s)
            .map_err(SnapshotError::Mismatch)?;
    }
    trace.step("devices restored");
    Ok(Vm {
        backend,
        vcpus,
        devices,
        reset_evt,
        vm,
        mem,
        kvm,
    })
}

/// Builds the VM for `job` (whose initramfs is consumed: it is written into guest RAM and
/// the VMM keeps no copy, for RSS), or restores it from the job's snapshot. `trace` is the
/// caller's setup stopwatch.
pub fn build(job: &mut VmJob, opts: BuildOptions, trace: &mut Trace) -> Result<Vm, VmError> {
    if let Some(crate::config::SnapshotJob::Restore { dir }) = job.snapshot.clone() {
        return build_restored(job, &dir, opts, trace);
    }
    let BuildOptions {
        backend,
        console,
        on_guest_info,
        launched,
        trace: trace_on,
    } = opts;
    let kvm = open_kvm()?;
    trace.step("validate+open");
    let mem = memory::create(job.memory_mib, job.prealloc)?;
    trace.step("mmap");
    let initramfs = std::mem::take(&mut job.initramfs);
    let vm = kvm.create_vm().map_err(kvm_err("create VM"))?;
    trace.step("create_vm");

    // The host kernel ends every memslot and in-kernel device registration with an SRCU grace
    // period, serialised per VM (slots_lock). Measured on PVM: registering guest RAM first
    // costs ~0.2 ms; after the irqchip and PIT exist it costs 4–10 ms. So: memslot first, then
    // irqchip and PIT, on this thread, while a helper thread fills guest RAM (kernel, initrd,
    // boot tables) and asks for the supported CPUID, which need no VM lock.
    let (loaded, vcpus) = std::thread::scope(|sc| {
        let (kvm, mem, initramfs, job) = (&kvm, &mem, &initramfs, &*job);
        let loader = sc.spawn(move || load_guest(kvm, mem, job, initramfs, launched, trace_on));
        let vcpus = (|| -> Result<_, VmError> {
            register_memory(&vm, mem)?;
            trace.step("memslots");
            create_irqchip_and_pit(&vm)?;
            trace.step("irqchip+pit");
            let vcpus = create_vcpus(&vm, job.cpus)?;
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
            job.cpus,
            backend,
        ))
        .map_err(kvm_err("vCPU CPUID"))?;
        regs::setup_vcpu(vcpu, i as u8, loaded.boot.pvh_entry)?;
    }
    trace.step("vcpu cpuid+regs");

    let tsc_khz = vcpus[0].get_tsc_khz().ok();
    let mut cmdline = KernelCmdline::base(backend, tsc_khz, job.boot_log);
    let (devices, reset_evt) =
        attach_devices(job, &vm, &mem, console, on_guest_info, None, &mut cmdline)?;
    cmdline.extend(job.extra_cmdline.iter().cloned());
    boot::write_cmdline(&mem, &cmdline.to_string())?;
    if backend == KvmBackend::Pvm {
        eprintln!("vcompare: KVM backend is {}: hiding {} CPU features and adding {} kernel arguments for it", backend.describe(),
            crate::cpuid::PVM_MASKED.len(), backend.kernel_args(tsc_khz).len());
    }
    trace.step("cmdline+devices");
    Ok(Vm {
        backend,
        vcpus,
        devices,
        reset_evt,
        vm,
        mem,
        kvm,
    })
}
