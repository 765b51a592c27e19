//! The named instants of an instance's start, for both modes: one list, so the CLI, the
//! runtimes and the report agree on every name.

/// A startup phase mark. Its [`name`](StartupPhase::name) is what instance records, `inspect`
/// and the benchmark report show; the order below is the order of a start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StartupPhase {
    /// Container: the cgroup exists and its limits are written.
    Cgroup,
    /// Container: `clone` with every namespace flag returned and the id maps are written.
    Namespaces,
    /// Container: the overlay root filesystem is built.
    Rootfs,
    /// Container: /proc, /sys, /dev, volumes and `pivot_root` are done (stamped in the child).
    Mounts,
    /// VM: the instance's root disk is ready.
    Disk,
    /// VM: the `vcompare-vmm` process entered `main`.
    VmmLaunch,
    /// VM: vCPU 0 entered `KVM_RUN` for the first time.
    VmmSetup,
    /// VM: the guest init started (the kernel has booted and mounted the root disk).
    KernelBoot,
    /// VM: the init is ready for a snapshot (kernel file systems mounted, spec not read);
    /// absent in a VM restored from a snapshot, which starts after it.
    GuestReady,
    /// VM: the init has mounted what the run needs.
    RootMounted,
    /// Both: `execve` of the entrypoint succeeded.
    Exec,
    /// VM: the entrypoint exited.
    Workload,
    /// VM: the init failed before the entrypoint ran.
    InitFailed,
    /// VM: the VMM has finished.
    Teardown,
}

impl StartupPhase {
    /// Every phase, in declaration order (tests, documentation).
    pub const ALL: [StartupPhase; 14] = [
        StartupPhase::Cgroup,
        StartupPhase::Namespaces,
        StartupPhase::Rootfs,
        StartupPhase::Mounts,
        StartupPhase::Disk,
        StartupPhase::VmmLaunch,
        StartupPhase::VmmSetup,
        StartupPhase::KernelBoot,
        StartupPhase::GuestReady,
        StartupPhase::RootMounted,
        StartupPhase::Exec,
        StartupPhase::Workload,
        StartupPhase::InitFailed,
        StartupPhase::Teardown,
    ];

    /// The stable name in records and reports.
    pub fn name(self) -> &'static str {
        match self {
            StartupPhase::Cgroup => "cgroup",
            StartupPhase::Namespaces => "namespaces",
            StartupPhase::Rootfs => "rootfs",
            StartupPhase::Mounts => "mounts",
            StartupPhase::Disk => "disk",
            StartupPhase::VmmLaunch => "vmm_launch",
            StartupPhase::VmmSetup => "vmm_setup",
            StartupPhase::KernelBoot => "kernel_boot",
            StartupPhase::GuestReady => "guest_ready",
            StartupPhase::RootMounted => "root_mounted",
            StartupPhase::Exec => "exec",
            StartupPhase::Workload => "workload",
            StartupPhase::InitFailed => "init_failed",
            StartupPhase::Teardown => "teardown",
        }
    }

    /// The phase a record's name stands for, if it is one of ours.
    pub fn from_name(name: &str) -> Option<StartupPhase> {
        StartupPhase::ALL.into_iter().find(|p| p.name() == name)
    }
}

impl From<crate::guest::Phase> for StartupPhase {
    /// The guest init's reports, named as the startup breakdown names them (the init's start
    /// ends the kernel's boot; the entrypoint's exit ends the workload).
    fn from(p: crate::guest::Phase) -> StartupPhase {
        use crate::guest::Phase as G;
        match p {
            G::InitStart => StartupPhase::KernelBoot,
            G::RootMounted => StartupPhase::RootMounted,
            G::EntrypointExec => StartupPhase::Exec,
            G::EntrypointExit => StartupPhase::Workload,
            G::InitFailed => StartupPhase::InitFailed,
            G::Ready => StartupPhase::GuestReady,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::StartupPhase;

    #[test]
    fn names_are_unique_and_round_trip() {
        let mut names: Vec<&str> = StartupPhase::ALL.iter().map(|p| p.name()).collect();
        for p in StartupPhase::ALL {
            assert_eq!(StartupPhase::from_name(p.name()), Some(p));
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), StartupPhase::ALL.len());
        assert_eq!(StartupPhase::from_name("init"), None);
    }
}
