//! User namespace id mapping: container root (uid 0 inside) is an unprivileged uid on the host,
//! so "root in the container is not root on the host" is true and visible in `ps` on the host.
//!
//! The parent (still root in the initial user namespace) writes `/proc/PID/uid_map` and
//! `gid_map` for the child after `clone`, while the child waits; the child then has full
//! capabilities *inside* its namespace only.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// First host uid/gid that container id 0 maps to by default (like `/etc/subuid` ranges).
pub const DEFAULT_HOST_BASE: u32 = 100_000;
/// Number of ids mapped by default: the full 16-bit range most images expect.
pub const DEFAULT_RANGE: u32 = 65_536;

/// One contiguous mapping, used for both uids and gids: container ids `0..size` are host ids
/// `host_base..host_base+size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    /// Host id that container id 0 becomes.
    pub host_base: u32,
    /// How many ids are mapped.
    pub size: u32,
}

impl Default for IdMap {
    fn default() -> Self {
        IdMap {
            host_base: DEFAULT_HOST_BASE,
            size: DEFAULT_RANGE,
        }
    }
}

impl IdMap {
    /// The host id of container id `inner`, if it is mapped.
    pub fn to_host(&self, inner: u32) -> Option<u32> {
        (inner < self.size).then(|| self.host_base + inner)
    }

    /// The line written to `uid_map`/`gid_map`.
    pub fn map_line(&self) -> String {
        format!("0 {} {}\n", self.host_base, self.size)
    }

    /// Writes both maps for `pid`; must run before the child switches user or mounts anything.
    pub fn write_maps(&self, pid: i32) -> Result<()> {
        let line = self.map_line();
        for file in ["uid_map", "gid_map"] {
            let path = PathBuf::from(format!("/proc/{pid}/{file}"));
            std::fs::write(&path, line.as_bytes())
                .map_err(|e| Error::io("writing the user namespace map", path, e))?;
        }
        Ok(())
    }
}

/// Reads the first line of `/proc/PID/uid_map` as (inside, host, count); the host view of a
/// process's user namespace for `inspect`.
pub fn read_uid_map(pid: i32) -> Option<(u32, u32, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).ok()?;
    let mut it = text
        .lines()
        .next()?
        .split_whitespace()
        .map(|s| s.parse::<u32>().ok());
    Some((it.next()??, it.next()??, it.next()??))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_map_puts_root_on_an_unprivileged_range() {
        let m = IdMap::default();
        assert_eq!(m.map_line(), "0 100000 65536\n");
        assert_eq!(m.to_host(0), Some(100_000));
        assert_eq!(m.to_host(65_535), Some(165_535));
        assert_eq!(m.to_host(65_536), None);
    }

    /// Holds wherever the test runs. In the initial user namespace the map is the identity of
    /// all ids; inside a container (containerised CI) it is whatever the runner set up, so the
    /// expectation comes from our own `/proc/self/uid_map`. A known non-identity map is checked
    /// on a namespace made for the purpose in `tests/exec_inspect.rs`.
    #[test]
    fn reads_our_own_map() {
        let text = std::fs::read_to_string("/proc/self/uid_map").unwrap();
        let first: Vec<u32> = text
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect();
        let want = match first[..] {
            [inside, host, count] => (inside, host, count),
            _ => panic!("malformed /proc/self/uid_map: {text:?}"),
        };
        assert_eq!(read_uid_map(std::process::id() as i32), Some(want));
    }
}
