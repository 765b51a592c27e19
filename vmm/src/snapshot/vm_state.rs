//! The VM-wide KVM state: the in-kernel PIT, the kvm-clock and the three in-kernel
//! interrupt controllers (PIC master, PIC slave, IOAPIC), saved after the vCPUs and restored
//! after them, in Firecracker's order.

use kvm_bindings::{
    kvm_clock_data, kvm_irqchip, kvm_pit_state2, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE,
};
use kvm_ioctls::VmFd;
use serde::{Deserialize, Serialize};

use super::SnapshotError;

/// The VM's KVM state.
#[derive(Serialize, Deserialize)]
pub struct VmState {
    /// The in-kernel i8254.
    pub pit: kvm_pit_state2,
    /// kvm-clock: the guest's monotonic time goes on from here after a restore (the wall
    /// clock is the init's to set, from the VMM's go message).
    pub clock: kvm_clock_data,
    /// PIC master, PIC slave, IOAPIC.
    pub irqchips: Vec<kvm_irqchip>,
}

const CHIPS: [u32; 3] = [
    KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE,
    KVM_IRQCHIP_IOAPIC,
];

fn ioctl(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> SnapshotError {
    move |source| SnapshotError::Kvm { what, source }
}

/// Saves the VM's state (all vCPUs paused).
pub fn save(vm: &VmFd) -> Result<VmState, SnapshotError> {
    let pit = vm.get_pit2().map_err(ioctl("KVM_GET_PIT2"))?;
    let mut clock = vm.get_clock().map_err(ioctl("KVM_GET_CLOCK"))?;
    // Only the clock value is restored; the host-time fields describe this host's moment.
    clock.flags = 0;
    let irqchips = CHIPS
        .iter()
        .map(|&chip_id| {
            let mut c = kvm_irqchip {
                chip_id,
                ..Default::default()
            };
            vm.get_irqchip(&mut c).map(|()| c)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(ioctl("KVM_GET_IRQCHIP"))?;
    Ok(VmState {
        pit,
        clock,
        irqchips,
    })
}

/// Restores the VM's state (after the vCPUs').
pub fn restore(vm: &VmFd, s: &VmState) -> Result<(), SnapshotError> {
    vm.set_pit2(&s.pit).map_err(ioctl("KVM_SET_PIT2"))?;
    vm.set_clock(&s.clock).map_err(ioctl("KVM_SET_CLOCK"))?;
    for c in &s.irqchips {
        vm.set_irqchip(c).map_err(ioctl("KVM_SET_IRQCHIP"))?;
    }
    Ok(())
}
