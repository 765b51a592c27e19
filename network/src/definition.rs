//! Network definitions: one JSON file per network under `<data root>/networks/`, so every
//! vcompare process (foreground runs, detached monitors, `network` commands) sees the same
//! bridges and subnets. Creation and removal hold one lock, so two concurrent `create`s can
//! never pick the same bridge name or subnet.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ipam::Subnet;
use crate::lock::{write_atomic, FileLock};
use crate::{Error, Result};

/// Definition files are `<name>.network.json`; the network's other files (IPAM, hosts, lock)
/// sit beside them under other suffixes.
const DEF_SUFFIX: &str = ".network.json";
/// The network `run` uses when no `--network` is given (Docker's `bridge`).
pub const DEFAULT_NETWORK: &str = "default";
/// The default network's subnet.
const DEFAULT_SUBNET: &str = "10.88.0.0/24";
/// User-defined networks get `10.89.N.0/24`, the first N no other network uses.
const USER_POOL: [u8; 2] = [10, 89];
/// Bridge names are `vcbr<N>`; the isolation rules match every `vcbr*` interface.
pub const BRIDGE_PREFIX: &str = "vcbr";

/// One network as `network create` made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkDef {
    /// The name users type (`--network NAME`).
    pub name: String,
    /// The Linux bridge that carries it (`vcbr<N>`, at most 15 bytes).
    pub bridge: String,
    /// Its IPv4 subnet; the gateway (the bridge's own address) is the first host address.
    pub subnet: Subnet,
    /// Instances resolve each other by name through a responder on the gateway (user-defined
    /// networks only, as in Docker).
    pub dns: bool,
}

/// The `networks/` directory of one data root.
#[derive(Debug, Clone)]
pub struct Networks {
    dir: PathBuf,
}

/// True for names `network create` accepts: letters, digits, `_ . -`, first a letter or digit,
/// at most 64 bytes; `host` and `none` are run modes, not networks.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && name.len() <= 64
        && name != "host"
        && name != "none"
}

impl Networks {
    /// The network store of the data root `data_root` (nothing is created until used).
    pub fn open(data_root: &Path) -> Networks {
        Networks {
            dir: data_root.join("networks"),
        }
    }

    /// Where IPAM state, hosts files, DNS pid files and the attachment records live.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn def_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}{DEF_SUFFIX}"))
    }

    fn lock(&self) -> Result<FileLock> {
        FileLock::acquire(&self.dir.join(".networks.lock"))
    }

    /// The network called `name`, if it exists.
    pub fn get(&self, name: &str) -> Result<Option<NetworkDef>> {
        if !valid_name(name) {
            return Ok(None);
        }
        let path = self.def_path(name);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
                Error::Invalid(format!(
                    "the network record {} is unreadable ({e}); remove it with `vcompare network rm {name}`",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("reading", &path, e)),
        }
    }

    /// The network called `name`, or an error that says how to make it; `default` is created
    /// on first use.
    pub fn resolve(&self, name: &str) -> Result<NetworkDef> {
        if let Some(d) = self.get(name)? {
            return Ok(d);
        }
        if name == DEFAULT_NETWORK {
            return self.create_locked(DEFAULT_NETWORK, Some(DEFAULT_SUBNET.parse()?), false);
        }
        Err(Error::Invalid(format!(
            "there is no network `{name}`; create it with `vcompare network create {name}` (`vcompare network ls` lists them)"
        )))
    }

    /// Every network, sorted by name.
    pub fn list(&self) -> Result<Vec<NetworkDef>> {
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::io("listing", &self.dir, e)),
        };
        for entry in rd.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(n) = name.strip_suffix(DEF_SUFFIX) {
                if let Some(d) = self.get(n)? {
                    out.push(d);
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// `network create NAME [--subnet CIDR]`: a user-defined network (with name resolution).
    pub fn create(&self, name: &str, subnet: Option<Subnet>) -> Result<NetworkDef> {
        if !valid_name(name) {
            return Err(Error::Invalid(format!(
                "invalid network name `{name}`; use letters, digits and _ . - (first a letter or digit; not `host` or `none`)"
            )));
        }
        self.create_locked(name, subnet, name != DEFAULT_NETWORK)
    }

    fn create_locked(&self, name: &str, subnet: Option<Subnet>, dns: bool) -> Result<NetworkDef> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io("creating", &self.dir, e))?;
        let _lock = self.lock()?;
        if let Some(d) = self.get(name)? {
            if name == DEFAULT_NETWORK {
                return Ok(d); // another process created it first
            }
            return Err(Error::Invalid(format!(
                "a network named `{name}` already exists; choose another name or remove it with `vcompare network rm {name}`"
            )));
        }
        let existing = self.list()?;
        let subnet = match subnet {
            Some(s) => {
                if let Some(o) = existing.iter().find(|o| o.subnet.overlaps(&s)) {
                    return Err(Error::Invalid(format!(
                        "subnet {s} overlaps network `{}` ({}); choose another --subnet",
                        o.name, o.subnet
                    )));
                }
                s
            }
            None => (0..=255u8)
                .map(|n| Subnet {
                    base: std::net::Ipv4Addr::new(USER_POOL[0], USER_POOL[1], n, 0),
                    prefix_len: 24,
                })
                .find(|s| !existing.iter().any(|o| o.subnet.overlaps(s)))
                .ok_or_else(|| {
                    Error::Invalid(
                        "all 256 subnets of 10.89.0.0/16 are in use; remove a network or give --subnet".into(),
                    )
                })?,
        };
        let bridge = (0u32..)
            .map(|n| format!("{BRIDGE_PREFIX}{n}"))
            .find(|b| !existing.iter().any(|o| &o.bridge == b))
            .expect("an unused bridge number exists");
        let def = NetworkDef {
            name: name.to_string(),
            bridge,
            subnet,
            dns,
        };
        let bytes = serde_json::to_vec_pretty(&def).expect("a network definition serialises");
        write_atomic(&self.def_path(name), &bytes)?;
        Ok(def)
    }

    /// Deletes the definition of `name` (the caller has checked nothing uses it and removed
    /// the bridge, rules and IPAM files).
    pub fn remove_def(&self, name: &str) -> Result<()> {
        let _lock = self.lock()?;
        let p = self.def_path(name);
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("removing", &p, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_instance_name_rules_and_reserve_the_modes() {
        for ok in ["default", "a", "net-1", "x_y.z"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "-a", "a/b", "host", "none", "a b", &"n".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn create_picks_distinct_subnets_and_bridges_and_refuses_overlaps() {
        let dir = tempfile::tempdir().unwrap();
        let nets = Networks::open(dir.path());
        let d = nets.resolve(DEFAULT_NETWORK).unwrap();
        assert_eq!(d.subnet.to_string(), DEFAULT_SUBNET);
        assert_eq!(d.bridge, "vcbr0");
        assert!(!d.dns);
        let a = nets.create("a", None).unwrap();
        let b = nets.create("b", None).unwrap();
        assert_eq!(a.subnet.to_string(), "10.89.0.0/24");
        assert_eq!(b.subnet.to_string(), "10.89.1.0/24");
        assert_eq!((a.bridge.as_str(), b.bridge.as_str()), ("vcbr1", "vcbr2"));
        assert!(a.dns && b.dns);
        let e = nets
            .create("c", Some("10.89.1.128/25".parse().unwrap()))
            .unwrap_err();
        assert!(e.to_string().contains("overlaps network `b`"), "{e}");
        assert!(nets
            .create("a", None)
            .unwrap_err()
            .to_string()
            .contains("already exists"));
        assert!(nets
            .resolve("nope")
            .unwrap_err()
            .to_string()
            .contains("network create nope"));
        nets.remove_def("a").unwrap();
        let names: Vec<_> = nets.list().unwrap().into_iter().map(|d| d.name).collect();
        assert_eq!(names, ["b", "default"]);
        // The freed bridge number and subnet are reused.
        let c = nets.create("c", None).unwrap();
        assert_eq!(
            (c.bridge.as_str(), c.subnet.to_string()),
            ("vcbr1", "10.89.0.0/24".to_string())
        );
    }
}
