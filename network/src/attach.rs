//! An instance joining and leaving a network: the one sequence both modes share. Only the
//! last hop differs — [`plumb_veth`] for a container's namespace, [`open_tap`] for a VM.
//!
//! Crash safety: the instance's attachment record (`networks/active/<id>.json`) is written
//! *before* any address, link or rule exists, and removed only after all of them are gone, so
//! [`cleanup_stale`] run by any later command finds everything a killed vcompare left behind.

use std::net::Ipv4Addr;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::definition::{NetworkDef, Networks};
use crate::firewall::{self, InstanceRules, NetworkRules};
use crate::ipam::{Ipam, Subnet};
use crate::lock::{write_atomic, FileLock};
use crate::netlink::Netlink;
use crate::ports::PortMapping;
use crate::tap::Tap;
use crate::{dns, Error, Result};

/// How the instance's end of the link is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkKind {
    /// A veth pair; the peer lives in the container's network namespace.
    Veth,
    /// A TAP the VMM's virtio-net device reads and writes.
    Tap,
}

/// One instance on one network: what was allocated and created for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Network name.
    pub network: String,
    /// Its bridge.
    pub bridge: String,
    /// veth or TAP.
    pub kind: LinkKind,
    /// The host end (`vcv…` veth, `vct…` TAP): ≤ 15 bytes, unique per instance.
    pub host_link: String,
    /// The interface inside the instance (`eth0`, `eth1`, …).
    pub interface: String,
    /// The instance's address, from the network's IPAM.
    pub address: Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix_len: u8,
    /// The bridge's address: default route and, on user-defined networks, the name server.
    pub gateway: Ipv4Addr,
    /// The guest NIC's MAC address (VMs; the veth peer keeps the kernel's random one).
    pub mac: [u8; 6],
    /// `-p` mappings served by this attachment (only the first network gets them).
    pub ports: Vec<PortMapping>,
    /// The network has a name server on its gateway.
    pub dns: bool,
}

/// Who is joining: the instance's id and the names others can reach it by.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    /// 64-hex instance id.
    pub id: &'a str,
    /// `--name`, if any.
    pub name: Option<&'a str>,
}

impl Attachment {
    /// The subnet this attachment's address was taken from.
    pub fn subnet(&self) -> Subnet {
        Subnet::containing(self.address, self.prefix_len)
    }

    /// The MAC as `aa:bb:cc:dd:ee:ff`.
    pub fn mac_string(&self) -> String {
        self.mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    /// `/etc/resolv.conf` for the instance: the network's name server on user-defined
    /// networks; on the default network the host's non-loopback servers (a 127.x server of
    /// the host is unreachable from inside), as Docker does.
    pub fn resolv_conf(&self) -> String {
        if self.dns {
            return format!("nameserver {}\n", self.gateway);
        }
        let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let mut out = String::new();
        for line in host.lines() {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("nameserver"), Some(ip)) if ip.starts_with("127.") || ip == "::1" => {}
                (Some("nameserver" | "search" | "options"), Some(_)) => {
                    out.push_str(line.trim());
                    out.push('\n');
                }
                _ => {}
            }
        }
        out
    }

    /// `/etc/hosts` for the instance: localhost and its own address under its hostname.
    pub fn hosts(&self, hostname: &str) -> String {
        format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{}\t{hostname}\n",
            self.address
        )
    }
}

/// The tag on an instance's host link (IFLA_IFALIAS): names the owner for `ip link` readers.
fn link_alias(id: &str) -> String {
    format!("vcompare instance {id}")
}

/// The tag on a network's bridge: names the network *and the data root*, so a second data
/// root never adopts (or removes) another one's bridge.
fn bridge_alias(nets: &Networks, def: &NetworkDef) -> String {
    format!("vcompare network {} {}", def.name, nets.dir().display())
}

fn records_dir(nets: &Networks) -> PathBuf {
    nets.dir().join("active")
}

fn record_path(nets: &Networks, id: &str) -> PathBuf {
    records_dir(nets).join(format!("{id}.json"))
}

fn network_lock(nets: &Networks, network: &str) -> Result<FileLock> {
    FileLock::acquire(&nets.dir().join(format!("{network}.lock")))
}

fn hosts_path(nets: &Networks, network: &str) -> PathBuf {
    nets.dir().join(format!("{network}.hosts"))
}

fn dns_pid_path(nets: &Networks, network: &str) -> PathBuf {
    nets.dir().join(format!("{network}.dns.pid"))
}

/// The instance's current attachments (empty if it has none).
pub fn attachments(nets: &Networks, id: &str) -> Result<Vec<Attachment>> {
    let p = record_path(nets, id);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| {
            Error::Invalid(format!(
                "the attachment record {} is unreadable ({e})",
                p.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io("reading", &p, e)),
    }
}

fn save_attachments(nets: &Networks, id: &str, atts: &[Attachment]) -> Result<()> {
    let p = record_path(nets, id);
    if atts.is_empty() {
        return match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("removing", &p, e)),
            _ => Ok(()),
        };
    }
    std::fs::create_dir_all(records_dir(nets))
        .map_err(|e| Error::io("creating", records_dir(nets), e))?;
    write_atomic(
        &p,
        &serde_json::to_vec_pretty(atts).expect("attachments serialise"),
    )
}

/// The ids of every instance that has an attachment record in this data root.
pub fn attached_ids(nets: &Networks) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(records_dir(nets))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()?
                        .strip_suffix(".json")
                        .map(String::from)
                })
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// A locally administered MAC derived from the address (unique on the network because the
/// address is): `02:76:` + the four address bytes.
fn mac_for(address: Ipv4Addr) -> [u8; 6] {
    let o = address.octets();
    [0x02, 0x76, o[0], o[1], o[2], o[3]]
}

/// Creates the network's bridge with the gateway address and its firewall rules if it is not
/// there yet. Refuses a bridge of that name that some other data root made.
fn ensure_bridge(nets: &Networks, def: &NetworkDef, nl: &mut Netlink) -> Result<u32> {
    let alias = bridge_alias(nets, def);
    if let Some(l) = nl.link_by_name(&def.bridge)? {
        if l.alias.as_deref() != Some(alias.as_str()) {
            return Err(Error::Invalid(format!(
                "the bridge {} exists but is not this data root's network `{}` (its tag: {:?}); remove it with `ip link del {}` or use another --root",
                def.bridge, def.name, l.alias.unwrap_or_default(), def.bridge
            )));
        }
        return Ok(l.index);
    }
    let idx = nl.create_bridge(&def.bridge, &alias)?;
    nl.add_address(idx, def.subnet.gateway(), def.subnet.prefix_len)?;
    nl.set_up(idx)?;
    firewall::add_network(&NetworkRules {
        bridge: def.bridge.clone(),
        subnet: def.subnet,
    })?;
    Ok(idx)
}

/// Reserves the instance's place on `def` before the instance exists: address, bridge,
/// published ports (a busy port fails here, before anything starts), name. The attachment is
/// recorded first, so a crash at any later step leaves something [`cleanup_stale`] removes.
pub fn join(
    nets: &Networks,
    def: &NetworkDef,
    owner: Owner<'_>,
    kind: LinkKind,
    ports: &[PortMapping],
) -> Result<Attachment> {
    std::fs::create_dir_all(nets.dir()).map_err(|e| Error::io("creating", nets.dir(), e))?;
    let lock = network_lock(nets, &def.name)?;
    let mut atts = attachments(nets, owner.id)?;
    if atts.iter().any(|a| a.network == def.name) {
        return Err(Error::Invalid(format!(
            "the instance is already connected to network `{}`",
            def.name
        )));
    }
    let slot = (0..)
        .find(|n| !atts.iter().any(|a| a.interface == format!("eth{n}")))
        .unwrap();
    let prefix = match kind {
        LinkKind::Veth => "vcv",
        LinkKind::Tap => "vct",
    };
    let address = Ipam::new(nets.dir(), &def.name, def.subnet).allocate(owner.id)?;
    let att = Attachment {
        network: def.name.clone(),
        bridge: def.bridge.clone(),
        kind,
        host_link: format!("{prefix}{}{slot}", &owner.id[..10]),
        interface: format!("eth{slot}"),
        address,
        prefix_len: def.subnet.prefix_len,
        gateway: def.subnet.gateway(),
        mac: mac_for(address),
        ports: ports.to_vec(),
        dns: def.dns,
    };
    atts.push(att.clone());
    let recorded = save_attachments(nets, owner.id, &atts);
    let made = recorded.and_then(|()| {
        let mut nl = Netlink::open()?;
        ensure_bridge(nets, def, &mut nl)?;
        if !ports.is_empty() {
            // Host ports are one namespace across networks: checking and publishing must not
            // interleave with another run's.
            let _ports = FileLock::acquire(&nets.dir().join(".ports.lock"))?;
            firewall::add_instance(&InstanceRules {
                id: owner.id.to_string(),
                address,
                bridge: def.bridge.clone(),
                ports: ports.to_vec(),
            })?;
        }
        if def.dns {
            let mut names = vec![owner.id[..12].to_string()];
            names.extend(owner.name.map(String::from));
            update_hosts(nets, &def.name, |h| {
                h.extend(names.into_iter().map(|n| (address, n)));
            })?;
        }
        Ok(())
    });
    drop(lock);
    if let Err(e) = made {
        let _ = leave(nets, owner.id, &def.name);
        return Err(e);
    }
    Ok(att)
}

/// Container side: creates the veth with its peer directly inside `netns` (named as the
/// attachment's interface), joins the host end to the bridge (with hairpin, so the instance
/// reaches its own published ports), and gives the peer its address, link and — for the
/// first network — the default route.
pub fn plumb_veth(
    att: &Attachment,
    id: &str,
    netns: BorrowedFd<'_>,
    default_route: bool,
) -> Result<()> {
    let mut nl = Netlink::open()?;
    let host = nl.create_veth(&att.host_link, &att.interface, netns, &link_alias(id))?;
    attach_to_bridge(&mut nl, att, host)?;
    let mut inside = Netlink::open_in(netns)?;
    let peer = inside.link_by_name(&att.interface)?.ok_or_else(|| {
        Error::Invalid(format!(
            "the veth peer {} did not appear in the container",
            att.interface
        ))
    })?;
    inside.add_address(peer.index, att.address, att.prefix_len)?;
    inside.set_up(peer.index)?;
    if default_route {
        inside.add_default_route(att.gateway)?;
    }
    Ok(())
}

fn attach_to_bridge(nl: &mut Netlink, att: &Attachment, index: u32) -> Result<()> {
    let bridge = nl.link_by_name(&att.bridge)?.ok_or_else(|| {
        Error::Invalid(format!(
            "the bridge {} of network `{}` vanished; run again",
            att.bridge, att.network
        ))
    })?;
    nl.set_master(index, Some(bridge.index))?;
    nl.set_hairpin(index, true)?;
    nl.set_up(index)
}

/// VM side: opens the attachment's TAP (it lives as long as the returned fd) and joins it to
/// the bridge. The VMM inherits the fd; it never needs `CAP_NET_ADMIN`.
pub fn open_tap(att: &Attachment, id: &str) -> Result<Tap> {
    let tap = crate::tap::open_tap(&att.host_link)?;
    let mut nl = Netlink::open()?;
    let link = nl
        .link_by_name(&att.host_link)?
        .ok_or_else(|| Error::Invalid(format!("the TAP {} did not appear", att.host_link)))?;
    nl.set_alias(link.index, &link_alias(id))?;
    attach_to_bridge(&mut nl, att, link.index)?;
    Ok(tap)
}

/// Undoes [`join`] (and the link of [`plumb_veth`]/[`open_tap`]) for one network: link,
/// rules, address, name; then drops the attachment from the record. Idempotent.
pub fn leave(nets: &Networks, id: &str, network: &str) -> Result<()> {
    let _lock = network_lock(nets, network)?;
    let mut atts = attachments(nets, id)?;
    let Some(pos) = atts.iter().position(|a| a.network == network) else {
        return Ok(());
    };
    let att = atts[pos].clone();
    let mut first_err = None;
    let mut keep = |r: Result<()>| {
        if let Err(e) = r {
            first_err.get_or_insert(e);
        }
    };
    keep((|| {
        let mut nl = Netlink::open()?;
        if let Some(l) = nl.link_by_name(&att.host_link)? {
            nl.delete_link(l.index)?;
        }
        Ok(())
    })());
    if !att.ports.is_empty() {
        keep(firewall::remove_instance(id));
    }
    if att.dns {
        keep(update_hosts(nets, network, |h| {
            h.retain(|(a, _)| *a != att.address)
        }));
    }
    keep(Ipam::new(nets.dir(), network, att.subnet()).release(id));
    if let Some(e) = first_err {
        return Err(e);
    }
    atts.remove(pos);
    save_attachments(nets, id, &atts)?;
    if members(nets, network)?.is_empty() {
        retire_bridge(nets, network, &att.bridge)?;
    }
    Ok(())
}

/// The last instance left the network: its bridge, rules and address pool go (the definition
/// stays; the next `join` makes them again), so an idle network leaves nothing in `ip link`
/// or `nft list ruleset`. Only a bridge carrying this data root's tag is removed. Called with
/// the network lock held.
fn retire_bridge(nets: &Networks, network: &str, bridge: &str) -> Result<()> {
    let mut nl = Netlink::open()?;
    if let Some(l) = nl.link_by_name(bridge)? {
        let ours = nets
            .get(network)?
            .is_some_and(|d| l.alias.as_deref() == Some(bridge_alias(nets, &d).as_str()));
        if ours {
            nl.delete_link(l.index)?;
        }
    }
    firewall::remove_network(bridge)?;
    let _ = std::fs::remove_file(hosts_path(nets, network));
    Ok(())
}

/// Leaves every network the instance is on (run end, `rm`, stale cleanup).
pub fn leave_all(nets: &Networks, id: &str) -> Result<()> {
    let mut first_err = None;
    for att in attachments(nets, id)? {
        if let Err(e) = leave(nets, id, &att.network) {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Removes what instances that are no longer alive left behind (a vcompare killed with
/// SIGKILL never ran its teardown): links, rules, addresses, names. `is_live(id)` says whether
/// the instance still runs. Only instances recorded in this data root are touched. Returns the
/// ids cleaned up.
pub fn cleanup_stale(nets: &Networks, is_live: impl Fn(&str) -> bool) -> Vec<(String, Result<()>)> {
    attached_ids(nets)
        .into_iter()
        .filter(|id| !is_live(id))
        .map(|id| {
            let r = leave_all(nets, &id);
            (id, r)
        })
        .collect()
}

/// Rewrites the network's hosts file (the DNS responder's data) under the network lock
/// held by the caller.
fn update_hosts(
    nets: &Networks,
    network: &str,
    f: impl FnOnce(&mut Vec<(Ipv4Addr, String)>),
) -> Result<()> {
    let path = hosts_path(nets, network);
    let mut entries = dns::read_hosts(&path);
    f(&mut entries);
    dns::write_hosts(&path, &entries)
}

/// Starts the network's DNS responder (`exe --root ROOT network dns-serve NAME`, a daemon in
/// its own session) unless one runs. Called after [`join`] on networks with `dns`.
pub fn ensure_dns(nets: &Networks, network: &str, exe: &Path, data_root: &Path) -> Result<()> {
    let _lock = network_lock(nets, network)?;
    let pid_path = dns_pid_path(nets, network);
    if read_pid(&pid_path).is_some_and(dns_alive) {
        return Ok(());
    }
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--root")
        .arg(data_root)
        .args(["network", "dns-serve", network])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: setsid is async-signal-safe; the responder must not die with this terminal.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| {
        Error::sys(
            format!("starting the DNS responder of network `{network}`"),
            e,
        )
    })?;
    write_atomic(&pid_path, child.id().to_string().as_bytes())
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The pid is a live DNS responder (not a reused pid of something else).
fn dns_alive(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.split(|b| *b == 0).any(|w| w == b"dns-serve"))
}

/// The daemon's body: answers for `network` on its gateway until no instance of the network
/// has a name any more (then it removes its pid file, under the lock, and returns).
pub fn serve_dns(nets: &Networks, def: &NetworkDef) -> Result<()> {
    let hosts = hosts_path(nets, &def.name);
    let pid_path = dns_pid_path(nets, &def.name);
    let keep_running = || {
        if !dns::read_hosts(&hosts).is_empty() {
            return true;
        }
        let Ok(_lock) = network_lock(nets, &def.name) else {
            return true;
        };
        if !dns::read_hosts(&hosts).is_empty() {
            return true;
        }
        if read_pid(&pid_path) == Some(std::process::id() as i32) {
            let _ = std::fs::remove_file(&pid_path);
        }
        false
    };
    // A responder that is just leaving may still hold the port for a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match dns::serve(def.subnet.gateway(), &hosts, keep_running) {
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "DNS responder could not start yet");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            r => return r,
        }
    }
}

/// Removes the network's files besides its definition (IPAM, hosts, pid, lock) and stops
/// its DNS responder; for `network rm` after the last instance left.
pub fn remove_network_state(nets: &Networks, def: &NetworkDef) -> Result<()> {
    if let Some(pid) = read_pid(&dns_pid_path(nets, &def.name)).filter(|p| dns_alive(*p)) {
        // SAFETY: plain kill(2) of a process we verified is our responder.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    {
        let _lock = network_lock(nets, &def.name)?;
        retire_bridge(nets, &def.name, &def.bridge)?;
    }
    Ipam::new(nets.dir(), &def.name, def.subnet).remove_files()?;
    for p in [
        hosts_path(nets, &def.name),
        dns_pid_path(nets, &def.name),
        nets.dir().join(format!("{}.lock", def.name)),
    ] {
        let _ = std::fs::remove_file(p);
    }
    Ok(())
}

/// Which instances are on `network` (for `network rm` and `network inspect`).
pub fn members(nets: &Networks, network: &str) -> Result<Vec<(String, Attachment)>> {
    let mut out = Vec::new();
    for id in attached_ids(nets) {
        for a in attachments(nets, &id)? {
            if a.network == network {
                out.push((id.clone(), a));
            }
        }
    }
    Ok(out)
}
