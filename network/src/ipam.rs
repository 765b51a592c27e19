//! IP address management: which instance holds which address of a network. The state is a
//! small JSON file per network, changed only under a file lock, so concurrent `vcompare run`s
//! never hand out the same address; addresses are given round-robin (as podman does) so a
//! freed address is not reused at once by an instance that might be mistaken for the old one.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::lock::{write_atomic, FileLock};
use crate::{Error, Result};

/// Narrowest and widest prefix a network may have: a /30 still has one instance address, a
/// /16 is already 65k instances.
const PREFIX_RANGE: std::ops::RangeInclusive<u8> = 16..=30;

/// An IPv4 network of a vcompare bridge; the first host address is the gateway (the bridge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    /// Network address (host bits zero).
    pub base: Ipv4Addr,
    /// Prefix length, 16 to 30.
    pub prefix_len: u8,
}

impl Subnet {
    /// A validated subnet, for callers that have the parts rather than a string.
    pub fn new(base: Ipv4Addr, prefix_len: u8) -> Result<Subnet> {
        if !PREFIX_RANGE.contains(&prefix_len) {
            return Err(Error::Invalid(format!(
                "subnet {base}/{prefix_len}: the prefix length must be between {} and {}",
                PREFIX_RANGE.start(),
                PREFIX_RANGE.end()
            )));
        }
        let subnet = Subnet { base, prefix_len };
        if u32::from(base) & !subnet.mask() != 0 {
            let network = Ipv4Addr::from(u32::from(base) & subnet.mask());
            return Err(Error::Invalid(format!(
                "subnet {subnet} has host bits set; did you mean {network}/{prefix_len}?"
            )));
        }
        Ok(subnet)
    }

    /// The subnet of `prefix_len` bits that holds `address` (host bits cleared).
    pub fn containing(address: Ipv4Addr, prefix_len: u8) -> Subnet {
        let s = Subnet {
            base: address,
            prefix_len,
        };
        Subnet {
            base: Ipv4Addr::from(u32::from(address) & s.mask()),
            prefix_len,
        }
    }

    /// The bridge's address: the first host of the subnet, as every instance's default route.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base).wrapping_add(1))
    }

    /// The last address of the subnet, never given to an instance.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) | !self.mask())
    }

    /// Whether `address` lies in this subnet.
    pub fn contains(&self, address: Ipv4Addr) -> bool {
        u32::from(address) & self.mask() == u32::from(self.base) & self.mask()
    }

    /// Whether the two subnets share any address, so a new network cannot shadow another one's
    /// routes.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let mask = self.mask() & other.mask();
        u32::from(self.base) & mask == u32::from(other.base) & mask
    }

    fn mask(&self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len.min(32)))
            .unwrap_or(0)
    }

    /// The addresses instances may get, in order: everything but network, gateway and
    /// broadcast.
    fn hosts(&self) -> std::ops::RangeInclusive<u32> {
        u32::from(self.base).saturating_add(2)..=u32::from(self.broadcast()).saturating_sub(1)
    }
}

impl FromStr for Subnet {
    type Err = Error;

    /// Parses CIDR notation, e.g. `10.89.3.0/24`.
    fn from_str(s: &str) -> Result<Subnet> {
        let invalid = || {
            Error::Invalid(format!(
                "subnet {s:?} is not IPv4 CIDR notation like 10.89.3.0/24"
            ))
        };
        let (base, prefix) = s.split_once('/').ok_or_else(invalid)?;
        let base = base.parse().map_err(|_| invalid())?;
        let prefix_len = prefix.parse().map_err(|_| invalid())?;
        Subnet::new(base, prefix_len)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix_len)
    }
}

/// The allocations of one network, backed by `<dir>/<network>.ipam.json`.
#[derive(Debug, Clone)]
pub struct Ipam {
    network: String,
    subnet: Subnet,
    state: PathBuf,
    lock: PathBuf,
}

/// What the state file holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// The subnet the leases belong to (informative; leases outside the current one are dropped).
    subnet: Option<Subnet>,
    /// The address handed out last: the next search starts after it.
    last: Option<Ipv4Addr>,
    /// Address → owner.
    leases: BTreeMap<Ipv4Addr, String>,
}

impl Ipam {
    /// The allocator of `network`; nothing is read or created until first use.
    pub fn new(dir: &Path, network: &str, subnet: Subnet) -> Ipam {
        Ipam {
            network: network.into(),
            subnet,
            state: dir.join(format!("{network}.ipam.json")),
            lock: dir.join(format!("{network}.ipam.lock")),
        }
    }

    /// An address for `owner`: the one it already holds, else the next free one after the last
    /// handed out, wrapping around.
    pub fn allocate(&self, owner: &str) -> Result<Ipv4Addr> {
        if owner.is_empty() {
            return Err(Error::Invalid("an IPAM owner must not be empty".into()));
        }
        self.update(|state| {
            if let Some((address, _)) = state.leases.iter().find(|(_, o)| *o == owner) {
                return Ok(*address);
            }
            let hosts = self.subnet.hosts();
            let count = u64::from(hosts.end().saturating_sub(*hosts.start())) + 1;
            let start = match state.last.map(u32::from) {
                Some(last) if hosts.contains(&last) && last < *hosts.end() => last + 1,
                _ => *hosts.start(),
            };
            let candidates = (start..=*hosts.end()).chain(*hosts.start()..start);
            for address in candidates.take(count as usize).map(Ipv4Addr::from) {
                if let std::collections::btree_map::Entry::Vacant(free) =
                    state.leases.entry(address)
                {
                    free.insert(owner.into());
                    state.last = Some(address);
                    return Ok(address);
                }
            }
            Err(Error::AddressesExhausted {
                network: self.network.clone(),
                subnet: self.subnet.to_string(),
            })
        })
    }

    /// Frees whatever `owner` holds; nothing held is fine.
    pub fn release(&self, owner: &str) -> Result<()> {
        self.update(|state| {
            state.leases.retain(|_, o| o != owner);
            Ok(())
        })
    }

    /// Every current lease, address → owner.
    pub fn leases(&self) -> Result<BTreeMap<Ipv4Addr, String>> {
        let _lock = FileLock::acquire(&self.lock)?;
        Ok(self.load()?.leases)
    }

    /// Drops the leases whose owner `keep` rejects (instances that no longer exist) and returns
    /// those owners, so crashed runs do not leak addresses.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) -> Result<Vec<String>> {
        self.update(|state| {
            let mut dropped = Vec::new();
            state.leases.retain(|_, owner| {
                keep(owner) || {
                    dropped.push(owner.clone());
                    false
                }
            });
            Ok(dropped)
        })
    }

    /// Deletes the state and lock files when the network is removed (missing files are fine).
    pub fn remove_files(&self) -> Result<()> {
        let lock = FileLock::acquire(&self.lock)?;
        remove_if_present(&self.state)?;
        remove_if_present(&self.lock)?;
        drop(lock);
        Ok(())
    }

    /// Read-modify-write under the lock; the file is rewritten only when `f` succeeds.
    fn update<T>(&self, f: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        let _lock = FileLock::acquire(&self.lock)?;
        let mut state = self.load()?;
        let result = f(&mut state)?;
        state.subnet = Some(self.subnet);
        let json = serde_json::to_vec_pretty(&state).expect("IPAM state always serialises");
        write_atomic(&self.state, &json)?;
        Ok(result)
    }

    fn load(&self) -> Result<State> {
        let bytes = match std::fs::read(&self.state) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
            Err(e) => return Err(Error::io("reading IPAM state", &self.state, e)),
        };
        let mut state: State = serde_json::from_slice(&bytes).map_err(|e| {
            Error::io(
                "reading IPAM state (corrupt; remove the file to forget all leases of this network)",
                &self.state,
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        })?;
        // The network was re-created with another subnet: old leases mean nothing there.
        state
            .leases
            .retain(|address, _| self.subnet.contains(*address));
        state.last = state.last.filter(|a| self.subnet.contains(*a));
        Ok(state)
    }
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("removing", path, e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn subnet_parses_displays_and_validates() {
        let s: Subnet = "10.89.3.0/24".parse().unwrap();
        assert_eq!(
            s,
            Subnet {
                base: ip("10.89.3.0"),
                prefix_len: 24
            }
        );
        assert_eq!(s.to_string(), "10.89.3.0/24");
        assert_eq!(
            (s.gateway(), s.broadcast()),
            (ip("10.89.3.1"), ip("10.89.3.255"))
        );

        let err = "10.89.3.1/24".parse::<Subnet>().unwrap_err().to_string();
        assert!(
            err.contains("host bits") && err.contains("10.89.3.0/24"),
            "{err}"
        );
        for bad in [
            "10.89.3.0",
            "10.89.3.0/",
            "10.89.3/24",
            "10.89.3.0/x",
            "10.0.0.0/8",
            "10.0.0.0/31",
            "fd00::/64",
        ] {
            assert!(
                matches!(bad.parse::<Subnet>(), Err(Error::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn subnet_contains_and_overlaps() {
        let a: Subnet = "10.89.0.0/16".parse().unwrap();
        let b: Subnet = "10.89.3.0/24".parse().unwrap();
        let c: Subnet = "10.90.0.0/24".parse().unwrap();
        assert!(b.contains(ip("10.89.3.0")) && b.contains(ip("10.89.3.255")));
        assert!(!b.contains(ip("10.89.4.0")) && !b.contains(ip("10.89.2.255")));
        assert!(a.overlaps(&b) && b.overlaps(&a) && b.overlaps(&b));
        assert!(!a.overlaps(&c) && !c.overlaps(&b));
    }

    #[test]
    fn allocation_is_round_robin_and_sticky_per_owner() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(dir.path(), "net", "10.89.3.0/24".parse().unwrap());
        assert_eq!(ipam.allocate("a").unwrap(), ip("10.89.3.2"));
        assert_eq!(ipam.allocate("b").unwrap(), ip("10.89.3.3"));
        assert_eq!(
            ipam.allocate("a").unwrap(),
            ip("10.89.3.2"),
            "same owner, same address"
        );
        ipam.release("a").unwrap();
        ipam.release("a").unwrap(); // idempotent
                                    // The freed .2 is not reused at once: the search continues after the last handed out.
        assert_eq!(ipam.allocate("c").unwrap(), ip("10.89.3.4"));
        let leases: Vec<_> = ipam.leases().unwrap().into_iter().collect();
        assert_eq!(
            leases,
            [(ip("10.89.3.3"), "b".into()), (ip("10.89.3.4"), "c".into())]
        );
        // A new Ipam on the same files sees the same state.
        let again = Ipam::new(dir.path(), "net", "10.89.3.0/24".parse().unwrap());
        assert_eq!(again.allocate("d").unwrap(), ip("10.89.3.5"));
    }

    #[test]
    fn exhaustion_then_wrap_around() {
        let dir = tempfile::tempdir().unwrap();
        // A /29 has 8 addresses: network, gateway, broadcast and 5 for instances.
        let ipam = Ipam::new(dir.path(), "small", "192.168.7.8/29".parse().unwrap());
        let got: Vec<_> = (0..5)
            .map(|i| ipam.allocate(&format!("o{i}")).unwrap())
            .collect();
        let want: Vec<_> = (10..=14).map(|h| Ipv4Addr::new(192, 168, 7, h)).collect();
        assert_eq!(got, want);
        let err = ipam.allocate("late").unwrap_err();
        assert!(
            matches!(&err, Error::AddressesExhausted { network, subnet } if network == "small" && subnet == "192.168.7.8/29")
        );
        ipam.release("o1").unwrap();
        assert_eq!(
            ipam.allocate("late").unwrap(),
            ip("192.168.7.11"),
            "wraps around to the freed one"
        );
        // The smallest subnet has exactly one instance address.
        let tiny = Ipam::new(dir.path(), "tiny", "10.0.0.4/30".parse().unwrap());
        assert_eq!(tiny.allocate("x").unwrap(), ip("10.0.0.6"));
        assert!(matches!(
            tiny.allocate("y"),
            Err(Error::AddressesExhausted { .. })
        ));
    }

    #[test]
    fn retain_drops_stale_owners_and_remove_files_forgets_all() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(dir.path(), "net", "10.89.3.0/24".parse().unwrap());
        for o in ["alive", "dead1", "dead2"] {
            ipam.allocate(o).unwrap();
        }
        let mut dropped = ipam.retain(|o| o == "alive").unwrap();
        dropped.sort();
        assert_eq!(dropped, ["dead1", "dead2"]);
        assert_eq!(
            ipam.leases().unwrap().into_values().collect::<Vec<_>>(),
            ["alive"]
        );
        assert!(
            dir.path().join("net.ipam.json").exists() && dir.path().join("net.ipam.lock").exists()
        );
        ipam.remove_files().unwrap();
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "no files left"
        );
        ipam.remove_files().unwrap();
        assert_eq!(ipam.leases().unwrap(), BTreeMap::new());
    }

    #[test]
    fn leases_outside_a_changed_subnet_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        Ipam::new(dir.path(), "net", "10.89.3.0/24".parse().unwrap())
            .allocate("a")
            .unwrap();
        let moved = Ipam::new(dir.path(), "net", "10.89.4.0/24".parse().unwrap());
        assert_eq!(moved.leases().unwrap(), BTreeMap::new());
        assert_eq!(moved.allocate("a").unwrap(), ip("10.89.4.2"));
    }

    #[test]
    fn corrupt_state_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("net.ipam.json"), b"{not json").unwrap();
        let ipam = Ipam::new(dir.path(), "net", "10.89.3.0/24".parse().unwrap());
        let err = ipam.allocate("a").unwrap_err().to_string();
        assert!(
            err.contains("corrupt") && err.contains("net.ipam.json"),
            "{err}"
        );
    }
}
