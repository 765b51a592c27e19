//! The vCPU manager: starts vCPUs 1.. on their own threads, runs vCPU 0 on the calling
//! thread beside a control thread (the main loop), and stops them all, also on every error
//! path (on drop).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use kvm_ioctls::VcpuFd;

use crate::devices::Devices;
use crate::error::VmError;
use crate::guest_profile::GuestProfile;
use crate::trace::Trace;
use crate::vcpu::{self, VcpuShared};

/// The VM's vCPUs while it runs.
pub struct VcpuManager {
    shared: Arc<VcpuShared>,
    threads: Vec<JoinHandle<()>>,
    vcpu0: Option<VcpuFd>,
}

impl VcpuManager {
    /// Installs the kick handler and starts vCPUs 1.. (each on a thread `vcpuN`); vCPU 0
    /// waits for [`VcpuManager::run`], so the first guest instruction needs no thread hand-off.
    pub fn start(vcpus: Vec<VcpuFd>, devices: &Arc<Devices>) -> Result<Self, VmError> {
        vcpu::install_kick_handler()
            .map_err(|e| VmError::Host(std::io::Error::from_raw_os_error(e.errno())))?;
        let shared = Arc::new(VcpuShared::new().map_err(VmError::Host)?);
        let mut vcpus = vcpus.into_iter();
        let vcpu0 = vcpus.next().expect("validate: at least one vCPU");
        let mut manager = VcpuManager {
            shared,
            threads: Vec::new(),
            vcpu0: Some(vcpu0),
        };
        for (i, v) in vcpus.enumerate() {
            // On an error, dropping `manager` stops the threads started so far.
            let t = vcpu::spawn(i + 1, v, devices.clone(), manager.shared.clone())
                .map_err(VmError::Host)?;
            manager.threads.push(t);
        }
        Ok(manager)
    }

    /// Runs vCPU 0 on the calling thread (with the guest `profile`, if any) while `control`
    /// runs on a new thread `vmm-main`; when `control` returns, vCPU 0 is stopped and its
    /// result returned. The other vCPUs keep running until [`VcpuManager::stop`].
    pub fn run<T: Send>(
        &mut self,
        devices: &Devices,
        profile: Option<GuestProfile>,
        trace: &mut Trace,
        control: impl FnOnce(&VcpuShared) -> T + Send,
    ) -> Result<T, VmError> {
        let vcpu0 = self.vcpu0.take().expect("VcpuManager::run is called once");
        let shared = &*self.shared;
        let here = vcpu::HereVcpu::current();
        std::thread::scope(|sc| {
            let ctl = std::thread::Builder::new()
                .name("vmm-main".into())
                .spawn_scoped(sc, || {
                    let end = control(shared);
                    here.stop(shared);
                    end
                })?;
            trace.step("main loop thread spawned, entering vCPU 0");
            vcpu::run_here(0, vcpu0, devices, shared, &here, profile);
            Ok(ctl.join().expect("main loop thread"))
        })
        .map_err(VmError::Host)
    }

    /// vCPU 0's first KVM_RUN (the end of the VMM setup), if it happened.
    pub fn first_entry(&self) -> Option<Instant> {
        self.shared.first_entry.get().copied()
    }

    /// Stops and joins the vCPU threads (idempotent).
    pub fn stop(&mut self) {
        vcpu::stop_all(&self.shared, std::mem::take(&mut self.threads));
    }
}

impl Drop for VcpuManager {
    fn drop(&mut self) {
        self.stop();
    }
}
