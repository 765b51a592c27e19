//! The network paths the suite measures, in report order, with the words that say how the
//! bytes travel on each. A table rather than code, so the report, the results and the
//! round loop name the same paths.

/// One client → server path.
#[derive(Debug)]
pub struct NetPath {
    /// Row name in the report and results.
    pub name: &'static str,
    /// Who runs `probe net-client`: host or container.
    pub client: &'static str,
    /// Who runs `probe net-serve`: host, container or vm.
    pub server: &'static str,
    /// How the bytes travel, stated next to the figures.
    pub how: &'static str,
}

/// The reference of every ratio: two host processes over `lo`.
pub const LOOPBACK: &str = "loopback";
/// Host → container through a published port: the target figure's path.
pub const CONTAINER_PUBLISHED: &str = "container -p";
/// Host → VM through a published port.
pub const VM_PUBLISHED: &str = "vm -p";

/// Every path, in report order.
pub const PATHS: &[NetPath] = &[
    NetPath {
        name: LOOPBACK,
        client: "host",
        server: "host",
        how: "host process → host process over 127.0.0.1 (`lo`): the floor every other path is divided by",
    },
    NetPath {
        name: CONTAINER_PUBLISHED,
        client: "host",
        server: "container",
        how: "host process → 127.0.0.1:HOST_PORT, DNAT by nftables (`-p 127.0.0.1:HOST_PORT:12865`) to the container's address on the suite's bridge network (bridge → veth → the container's network namespace)",
    },
    NetPath {
        name: "container-container",
        client: "container",
        server: "container",
        how: "container → container on the suite's bridge network, by the server's address (veth → bridge → veth); the client container is started per run, not timed",
    },
    NetPath {
        name: VM_PUBLISHED,
        client: "host",
        server: "vm",
        how: "host process → 127.0.0.1:HOST_PORT, DNAT by nftables to the VM's address on the suite's bridge network (bridge → TAP → our VMM's virtio-net device → the guest kernel's TCP stack)",
    },
    NetPath {
        name: "container-vm",
        client: "container",
        server: "vm",
        how: "container → VM on the suite's bridge network, by the VM's address (veth → bridge → TAP → virtio-net → guest kernel)",
    },
];

/// The path named `name`.
pub fn path(name: &str) -> Option<&'static NetPath> {
    PATHS.iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_loopback_is_first() {
        assert_eq!(PATHS[0].name, LOOPBACK);
        for (i, p) in PATHS.iter().enumerate() {
            assert!(
                PATHS[i + 1..].iter().all(|q| q.name != p.name),
                "{}",
                p.name
            );
            assert!(["host", "container"].contains(&p.client));
            assert!(["host", "container", "vm"].contains(&p.server));
        }
        assert!(path(CONTAINER_PUBLISHED).is_some() && path(VM_PUBLISHED).is_some());
    }
}
