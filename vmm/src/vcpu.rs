//! vCPU threads: each runs KVM_RUN in a loop and dispatches port-I/O and MMIO exits to the
//! devices; anything that ends the VM (triple fault, emulator failure, entry failure, VMM
//! error) is recorded and the main loop is woken. The main loop stops vCPUs by setting a flag
//! and kicking the threads out of KVM_RUN with a real-time signal.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_ioctls::{VcpuExit, VcpuFd};
use vmm_sys_util::eventfd::EventFd;

use crate::devices::Devices;
use crate::guest_profile::{GuestProfile, Sampler};
use crate::snapshot::vcpu_state::{self, VcpuState};
use crate::snapshot::SnapshotError;

/// Why a vCPU stopped the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VcpuEnd {
    /// KVM_EXIT_SHUTDOWN: triple fault (or a shutdown the guest asked for without i8042).
    Shutdown,
    /// KVM_EXIT_INTERNAL_ERROR: on PVM hosts usually an instruction the emulator cannot run
    /// (suberror 1). With the guest RIP and the instruction bytes there, when readable.
    InternalError {
        /// KVM's suberror (1 = emulation failure).
        suberror: u32,
        /// Guest RIP at the failure.
        rip: u64,
        /// Current privilege level (CS.DPL).
        cpl: u8,
    },
    /// KVM_EXIT_FAIL_ENTRY with the hardware reason.
    FailEntry(u64),
    /// KVM_EXIT_SYSTEM_EVENT (reset/shutdown request).
    SystemEvent(u32),
    /// Any other unexpected exit.
    Unexpected(String),
    /// KVM_RUN itself failed.
    RunError(String),
}

/// Shared state between the vCPU threads and the main loop.
pub struct VcpuShared {
    /// Set by the main loop: leave KVM_RUN and exit the thread.
    pub stop: AtomicBool,
    /// The first vCPU end reported (later ones are ignored).
    pub end: Mutex<Option<(usize, VcpuEnd)>>,
    /// Written when `end` is set.
    pub end_evt: EventFd,
    /// When vCPU 0 entered the guest for the first time (end of VMM setup).
    pub first_entry: OnceLock<Instant>,
    /// Linux thread ids of the vCPU threads, by index (for `inspect` and kicks).
    pub tids: Mutex<Vec<(usize, i32)>>,
    /// Where vCPUs park while the main loop takes a snapshot.
    pub pause: PauseGate,
}

impl VcpuShared {
    /// Fresh shared state.
    pub fn new() -> std::io::Result<Self> {
        Ok(VcpuShared {
            stop: AtomicBool::new(false),
            end: Mutex::new(None),
            end_evt: EventFd::new(libc::EFD_NONBLOCK)?,
            first_entry: OnceLock::new(),
            tids: Mutex::new(Vec::new()),
            pause: PauseGate::default(),
        })
    }

    /// Kicks every vCPU thread out of KVM_RUN once.
    fn kick_all(&self) {
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        for &(_, tid) in self.tids.lock().unwrap().iter() {
            // SAFETY: tgkill with our own pid only reaches our threads; the handler is empty.
            unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, kick_signal()) };
        }
    }

    /// Pauses every vCPU (they finish their pending I/O and save their own KVM state with
    /// the MSRs in `msr_indices`) and returns the states in index order. Each stays parked
    /// until [`VcpuShared::resume`]; on an error they are resumed here.
    pub fn pause_all(
        &self,
        vcpus: usize,
        msr_indices: Vec<u32>,
        timeout: Duration,
    ) -> Result<Vec<VcpuState>, SnapshotError> {
        let gate = &self.pause;
        *gate.msr_indices.lock().unwrap() = msr_indices;
        gate.requested.store(true, Ordering::Release);
        let deadline = Instant::now() + timeout;
        let mut parked = gate.parked.lock().unwrap();
        while parked.len() < vcpus {
            if Instant::now() > deadline {
                drop(parked);
                self.resume();
                return Err(SnapshotError::PauseTimeout(timeout));
            }
            drop(parked);
            self.kick_all();
            parked = gate.parked.lock().unwrap();
            parked = gate
                .cv
                .wait_timeout(parked, Duration::from_millis(1))
                .unwrap()
                .0;
        }
        let mut states: Vec<(usize, Result<VcpuState, String>)> = parked.drain(..).collect();
        drop(parked);
        states.sort_by_key(|(i, _)| *i);
        let out: Result<Vec<VcpuState>, String> = states.into_iter().map(|(_, s)| s).collect();
        out.map_err(|e| {
            self.resume();
            SnapshotError::Inexact(e)
        })
    }

    /// Lets the parked vCPUs run again.
    pub fn resume(&self) {
        let gate = &self.pause;
        let mut parked = gate.parked.lock().unwrap();
        parked.clear();
        gate.requested.store(false, Ordering::Release);
        drop(parked);
        gate.cv.notify_all();
    }

    fn report(&self, index: usize, end: VcpuEnd) {
        let mut e = self.end.lock().unwrap();
        if e.is_none() {
            *e = Some((index, end));
            let _ = self.end_evt.write(1);
        }
    }
}

/// Where vCPU threads park for a snapshot: the main loop sets `requested` and kicks them;
/// each completes the I/O it was in the middle of, saves its own state and waits.
#[derive(Default)]
pub struct PauseGate {
    requested: AtomicBool,
    msr_indices: Mutex<Vec<u32>>,
    parked: Mutex<Vec<(usize, Result<VcpuState, String>)>>,
    cv: Condvar,
}

impl PauseGate {
    /// Parks vCPU `index` (called by its own thread, out of KVM_RUN) until the main loop
    /// resumes it.
    fn park(&self, index: usize, vcpu: &mut VcpuFd, devices: &Devices) {
        // KVM_RUN with immediate_exit completes an I/O exit the vCPU is in the middle of
        // (the device's answer to an `in`) without entering the guest, so the saved
        // registers are those after the instruction (Firecracker does the same).
        vcpu.set_kvm_immediate_exit(1);
        for _ in 0..16 {
            match vcpu.run() {
                Ok(exit) => {
                    if !serve_io(exit, devices) {
                        break;
                    }
                }
                Err(_) => break, // EINTR: nothing pending any more
            }
        }
        vcpu.set_kvm_immediate_exit(0);
        let indices = self.msr_indices.lock().unwrap().clone();
        let state = vcpu_state::save(vcpu, &indices).map_err(|e| format!("vCPU {index}: {e}"));
        let mut parked = self.parked.lock().unwrap();
        parked.push((index, state));
        self.cv.notify_all();
        while self.requested.load(Ordering::Acquire) {
            parked = self.cv.wait(parked).unwrap();
        }
    }
}

/// Dispatches an I/O or MMIO exit to the devices; false for any other exit.
fn serve_io(exit: VcpuExit, devices: &Devices) -> bool {
    match exit {
        VcpuExit::IoIn(port, data) => devices.pio_read(port, data),
        VcpuExit::IoOut(port, data) => devices.pio_write(port, data),
        VcpuExit::MmioRead(addr, data) => devices.mmio_read(addr, data),
        VcpuExit::MmioWrite(addr, data) => devices.mmio_write(addr, data),
        _ => return false,
    }
    true
}

/// The signal used to kick vCPU threads out of KVM_RUN.
pub fn kick_signal() -> i32 {
    libc::SIGRTMIN() + 1
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Installs the (empty) kick handler once per process; KVM_RUN then returns EINTR.
pub fn install_kick_handler() -> Result<(), vmm_sys_util::errno::Error> {
    static DONE: OnceLock<Result<(), i32>> = OnceLock::new();
    match DONE.get_or_init(|| {
        vmm_sys_util::signal::register_signal_handler(kick_signal(), on_kick).map_err(|e| e.errno())
    }) {
        Ok(()) => Ok(()),
        Err(e) => Err(vmm_sys_util::errno::Error::new(*e)),
    }
}

/// Unblocks the kick signal in the calling thread (the spawner may have blocked it).
fn unblock_kick() {
    let _ = vmm_sys_util::signal::unblock_signal(kick_signal());
}

fn record_tid(index: usize, shared: &VcpuShared) {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as i32;
    shared.tids.lock().unwrap().push((index, tid));
}

/// A vCPU run on the calling thread (see [`run_here`]), as seen by the thread that stops it.
pub struct HereVcpu {
    thread: libc::pthread_t,
    done: AtomicBool,
}

impl HereVcpu {
    /// The calling thread, which will call [`run_here`].
    pub fn current() -> Self {
        HereVcpu {
            // SAFETY: pthread_self has no preconditions.
            thread: unsafe { libc::pthread_self() },
            done: AtomicBool::new(false),
        }
    }

    /// Sets the stop flag and kicks the thread until [`run_here`] has returned.
    pub fn stop(&self, shared: &VcpuShared) {
        shared.stop.store(true, Ordering::Release);
        while !self.done.load(Ordering::Acquire) {
            // SAFETY: the thread is alive until `done` is set (it is the thread that owns
            // this `HereVcpu` and waits for us afterwards); the handler does nothing.
            unsafe { libc::pthread_kill(self.thread, kick_signal()) };
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }
}

/// Runs vCPU `index` on the calling thread until the VM stops: the first guest instruction
/// then needs no hand-off to a new thread (on a loaded 2-core host a new vCPU thread waited
/// ~7 ms, median, for a CPU before its first KVM_RUN). The thread is named `vcpu{index}`
/// meanwhile (for `inspect`), and its name and signal mask are restored afterwards.
pub fn run_here(
    index: usize,
    mut vcpu: VcpuFd,
    devices: &Devices,
    shared: &VcpuShared,
    here: &HereVcpu,
    mut profile: Option<GuestProfile>,
) {
    let mut old_name = [0u8; 16];
    let old_mask = crate::signals::SavedMask::current();
    // SAFETY: PR_GET_NAME writes at most 16 bytes into the buffer; PR_SET_NAME reads a
    // NUL-terminated string.
    unsafe {
        libc::prctl(libc::PR_GET_NAME, old_name.as_mut_ptr());
        let name = format!("vcpu{index}\0");
        libc::prctl(libc::PR_SET_NAME, name.as_ptr());
    }
    record_tid(index, shared);
    unblock_kick();
    let sampler = match profile {
        Some(_) => Sampler::start(here.thread, kick_signal()).ok(),
        None => None,
    };
    run_loop(index, &mut vcpu, devices, shared, profile.as_mut());
    drop(sampler);
    if let Some(p) = &profile {
        p.write();
    }
    // Restore the mask, then the name (NUL-terminated: PR_GET_NAME filled 16 bytes).
    drop(old_mask);
    // SAFETY: PR_SET_NAME reads the NUL-terminated name read above.
    unsafe { libc::prctl(libc::PR_SET_NAME, old_name.as_ptr()) };
    here.done.store(true, Ordering::Release);
}

/// Starts the thread for vCPU `index`.
pub fn spawn(
    index: usize,
    mut vcpu: VcpuFd,
    devices: Arc<Devices>,
    shared: Arc<VcpuShared>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("vcpu{index}"))
        .stack_size(256 * 1024)
        .spawn(move || {
            record_tid(index, &shared);
            unblock_kick();
            run_loop(index, &mut vcpu, &devices, &shared, None);
        })
}

fn run_loop(
    index: usize,
    vcpu: &mut VcpuFd,
    devices: &Devices,
    shared: &VcpuShared,
    mut profile: Option<&mut GuestProfile>,
) {
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        if shared.pause.requested.load(Ordering::Acquire) {
            shared.pause.park(index, vcpu, devices);
            continue;
        }
        if index == 0 {
            shared.first_entry.get_or_init(Instant::now);
        }
        match vcpu.run() {
            Ok(
                exit @ (VcpuExit::IoIn(..)
                | VcpuExit::IoOut(..)
                | VcpuExit::MmioRead(..)
                | VcpuExit::MmioWrite(..)),
            ) => {
                serve_io(exit, devices);
            }
            Ok(VcpuExit::Intr) => {
                if let Some(p) = profile.as_deref_mut() {
                    p.sample(vcpu);
                }
            }
            Ok(VcpuExit::Hlt) => {
                // Only without an in-kernel irqchip; treat as "nothing to do until stopped".
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Ok(VcpuExit::Shutdown) => return shared.report(index, VcpuEnd::Shutdown),
            Ok(VcpuExit::InternalError) => {
                // SAFETY: after an INTERNAL_ERROR exit the `internal` member of the kvm_run
                // union is the one KVM filled in.
                let suberror = unsafe { vcpu.get_kvm_run().__bindgen_anon_1.internal.suberror };
                let (rip, cpl) = match (vcpu.get_regs(), vcpu.get_sregs()) {
                    (Ok(r), Ok(s)) => (r.rip, s.cs.dpl),
                    _ => (0, 0),
                };
                return shared.report(index, VcpuEnd::InternalError { suberror, rip, cpl });
            }
            Ok(VcpuExit::FailEntry(reason, _)) => {
                return shared.report(index, VcpuEnd::FailEntry(reason))
            }
            Ok(VcpuExit::SystemEvent(kind, _)) => {
                return shared.report(index, VcpuEnd::SystemEvent(kind))
            }
            Ok(other) => return shared.report(index, VcpuEnd::Unexpected(format!("{other:?}"))),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                if let Some(p) = profile.as_deref_mut() {
                    p.sample(vcpu);
                }
            }
            Err(e) => return shared.report(index, VcpuEnd::RunError(e.to_string())),
        }
    }
}

/// Stops all vCPU threads: flag, then kick until each has left KVM_RUN, then join.
pub fn stop_all(shared: &VcpuShared, threads: Vec<JoinHandle<()>>) {
    use std::os::unix::thread::JoinHandleExt;
    shared.stop.store(true, Ordering::Release);
    for t in threads {
        while !t.is_finished() {
            // SAFETY: the pthread_t is valid until joined below; the handler does nothing.
            unsafe { libc::pthread_kill(t.as_pthread_t(), kick_signal()) };
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        let _ = t.join();
    }
}
