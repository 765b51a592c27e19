//! The DNS responder of a user-defined network (what aardvark-dns is to podman): it listens on
//! the network's gateway address, answers A queries for the instances' names from a hosts file
//! the CLI rewrites as instances come and go, and forwards every other name to the host's
//! resolver, so instances find each other by name and still reach the internet.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use simple_dns::rdata::{RData, A};
use simple_dns::{Name, Packet, PacketFlag, Question, ResourceRecord, CLASS, RCODE, TYPE};

use crate::{Error, Result};

/// How long a forwarded query may take before the client gets SERVFAIL.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// Our answers must not be cached: an instance's address changes when it is re-created.
const TTL: u32 = 0;

/// Serves DNS on `listen:53/udp` until `keep_running()` turns false (checked at least once a
/// second). Names in `hosts_file` (re-read whenever it changes) are answered here; others are
/// forwarded to the first non-loopback `nameserver` of the host's `/etc/resolv.conf` (a
/// loopback resolver such as 127.0.0.53 answers only in the namespace it lives in, and the
/// responder need not run there), or get NXDOMAIN when there is none.
pub fn serve(listen: Ipv4Addr, hosts_file: &Path, keep_running: impl Fn() -> bool) -> Result<()> {
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    serve_with_upstream(listen, hosts_file, upstream_of(&resolv), keep_running)
}

/// [`serve`] with the upstream resolver given (`None`: unknown names get NXDOMAIN), so tests
/// and callers with their own resolver do not depend on the host's `/etc/resolv.conf`.
pub fn serve_with_upstream(
    listen: Ipv4Addr,
    hosts_file: &Path,
    upstream: Option<SocketAddr>,
    keep_running: impl Fn() -> bool,
) -> Result<()> {
    let sock = UdpSocket::bind((listen, 53)).map_err(|e| {
        Error::sys(format!("binding the DNS responder to {listen}:53/udp (needs root, and {listen} on a local link)"), e)
    })?;
    sock.set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| Error::sys("setting the DNS socket's receive timeout", e))?;
    let mut hosts = Hosts::default();
    let mut buf = [0u8; 4096];
    while keep_running() {
        let (len, peer) = match retry_later(sock.recv_from(&mut buf)) {
            Ok(Some(got)) => got,
            Ok(None) => continue,
            Err(e) => {
                return Err(Error::sys(
                    format!("receiving on the DNS socket {listen}:53"),
                    e,
                ))
            }
        };
        hosts.refresh(hosts_file);
        let query = &buf[..len];
        match answer(query, &hosts) {
            Answer::Reply(reply) => drop(sock.send_to(&reply, peer)),
            Answer::Forward => match upstream {
                Some(upstream) => {
                    // On a thread of its own, so a slow upstream never delays the local names.
                    let (sock, query) = (sock.try_clone(), query.to_vec());
                    std::thread::spawn(move || {
                        let reply = forward(&query, upstream)
                            .or_else(|| failure(&query, RCODE::ServerFailure));
                        if let (Ok(sock), Some(reply)) = (sock, reply) {
                            let _ = sock.send_to(&reply, peer);
                        }
                    });
                }
                None => {
                    if let Some(reply) = failure(query, RCODE::NameError) {
                        let _ = sock.send_to(&reply, peer);
                    }
                }
            },
            Answer::Ignore => {}
        }
    }
    Ok(())
}

/// A receive that timed out or was interrupted is `Ok(None)`: the caller checks its clock or
/// its stop condition and tries again.
fn retry_later<T>(r: std::io::Result<T>) -> std::io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Asks `server` for the A record of `name`: `Some(address)`, or `None` for NXDOMAIN or no A
/// record. A minimal client, so tests and `inspect` need no `dig` on the machine.
pub fn query_a(server: SocketAddrV4, name: &str, timeout: Duration) -> Result<Option<Ipv4Addr>> {
    let qname = Name::new(name)
        .map_err(|e| Error::Invalid(format!("{name:?} is not a valid DNS name: {e}")))?;
    let id = (SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos()
        & 0xffff) as u16;
    let mut query = Packet::new_query(id);
    query.set_flags(PacketFlag::RECURSION_DESIRED);
    query.questions.push(Question::new(
        qname,
        TYPE::A.into(),
        CLASS::IN.into(),
        false,
    ));
    let bytes = query
        .build_bytes_vec()
        .map_err(|e| Error::Invalid(format!("cannot encode a query for {name:?}: {e}")))?;

    let what = || format!("asking the DNS server {server} for {name}");
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(|e| Error::sys(what(), e))?;
    sock.connect(server).map_err(|e| Error::sys(what(), e))?;
    sock.send(&bytes).map_err(|e| Error::sys(what(), e))?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let e = std::io::Error::new(
                ErrorKind::TimedOut,
                format!("no answer within {timeout:?}; is the responder running?"),
            );
            return Err(Error::sys(what(), e));
        }
        sock.set_read_timeout(Some(left))
            .map_err(|e| Error::sys(what(), e))?;
        let len = match retry_later(sock.recv(&mut buf)) {
            Ok(Some(len)) => len,
            Ok(None) => continue,
            Err(e) => return Err(Error::sys(what(), e)),
        };
        let Ok(reply) = Packet::parse(&buf[..len]) else {
            continue;
        };
        if reply.id() != id || !reply.has_flags(PacketFlag::RESPONSE) {
            continue;
        }
        return match reply.rcode() {
            RCODE::NoError => Ok(reply.answers.iter().find_map(|rr| match &rr.rdata {
                RData::A(a) => Some(Ipv4Addr::from(a.address)),
                _ => None,
            })),
            RCODE::NameError => Ok(None),
            rcode => Err(Error::Dns {
                what: what(),
                detail: format!("the server answered {rcode:?}"),
            }),
        };
    }
}

/// Writes the hosts file [`serve`] reads (`IP NAME` lines) atomically, through a temporary file
/// renamed over it, so the responder never reads half a file.
pub fn write_hosts(hosts_file: &Path, entries: &[(Ipv4Addr, String)]) -> Result<()> {
    let mut text = String::from("# written by vcompare: the instances of this network, by name\n");
    for (ip, name) in entries {
        text.push_str(&format!("{ip} {name}\n"));
    }
    let mut tmp = hosts_file.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    std::fs::write(&tmp, text).map_err(|e| Error::io("writing", &tmp, e))?;
    std::fs::rename(&tmp, hosts_file).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io("replacing", hosts_file, e)
    })
}

/// The entries of a hosts file, one per (address, name) pair in file order, so the CLI can
/// edit the file [`write_hosts`] wrote. A missing or unreadable file has none (a network whose
/// instances have no names yet); lines that do not start with an IPv4 address are skipped.
pub fn read_hosts(hosts_file: &Path) -> Vec<(Ipv4Addr, String)> {
    let text = std::fs::read_to_string(hosts_file).unwrap_or_default();
    let mut entries = Vec::new();
    for line in text.lines() {
        let mut words = line.split('#').next().unwrap_or("").split_whitespace();
        let Some(Ok(ip)) = words.next().map(str::parse::<Ipv4Addr>) else {
            continue;
        };
        entries.extend(words.map(|name| (ip, name.to_string())));
    }
    entries
}

/// The names of the hosts file, lower-case without the trailing dot, and the file identity
/// (modification time, inode, size) they were read from, so a change is noticed cheaply.
#[derive(Default)]
struct Hosts {
    names: HashMap<String, Vec<Ipv4Addr>>,
    seen: Option<(SystemTime, u64, u64)>,
}

impl Hosts {
    /// Re-reads the file if it changed since the last read; a missing file means no names.
    fn refresh(&mut self, path: &Path) {
        use std::os::unix::fs::MetadataExt;
        let now = std::fs::metadata(path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.ino(), m.size())));
        if now == self.seen {
            return;
        }
        self.seen = now;
        self.names.clear();
        for (ip, name) in read_hosts(path) {
            self.names.entry(normalise(&name)).or_default().push(ip);
        }
    }
}

fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

enum Answer {
    Reply(Vec<u8>),
    Forward,
    Ignore,
}

fn answer(query: &[u8], hosts: &Hosts) -> Answer {
    let Ok(packet) = Packet::parse(query) else {
        return Answer::Ignore;
    };
    if packet.has_flags(PacketFlag::RESPONSE) {
        return Answer::Ignore;
    }
    let Some(question) = packet.questions.first() else {
        return Answer::Ignore;
    };
    let Some(addresses) = hosts.names.get(&normalise(&question.qname.to_string())) else {
        return Answer::Forward;
    };
    let mut reply = reply_to(&packet, RCODE::NoError);
    reply.set_flags(PacketFlag::AUTHORITATIVE_ANSWER);
    if question.qtype == TYPE::A.into() {
        for ip in addresses {
            reply.answers.push(ResourceRecord::new(
                question.qname.clone(),
                CLASS::IN,
                TTL,
                RData::A(A::from(*ip)),
            ));
        }
    }
    reply
        .build_bytes_vec()
        .map_or(Answer::Ignore, Answer::Reply)
}

/// An empty reply to `query` with `rcode` (NXDOMAIN, SERVFAIL); `None` if it does not parse.
fn failure(query: &[u8], rcode: RCODE) -> Option<Vec<u8>> {
    let packet = Packet::parse(query).ok()?;
    reply_to(&packet, rcode).build_bytes_vec().ok()
}

fn reply_to<'a>(query: &Packet<'a>, rcode: RCODE) -> Packet<'a> {
    let mut reply = Packet::new_reply(query.id());
    reply.set_flags(PacketFlag::RECURSION_AVAILABLE);
    if query.has_flags(PacketFlag::RECURSION_DESIRED) {
        reply.set_flags(PacketFlag::RECURSION_DESIRED);
    }
    *reply.rcode_mut() = rcode;
    reply.questions = query.questions.clone();
    reply
}

/// Relays `query` to `upstream` and returns its reply (`None` on timeout or error).
fn forward(query: &[u8], upstream: SocketAddr) -> Option<Vec<u8>> {
    let any: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(any).ok()?;
    sock.connect(upstream).ok()?;
    sock.set_read_timeout(Some(UPSTREAM_TIMEOUT)).ok()?;
    sock.send(query).ok()?;
    let mut buf = vec![0u8; 4096];
    let len = sock.recv(&mut buf).ok()?;
    // Only a reply to this query (same id) may go back to the client.
    (len >= 2 && buf[..2] == query[..2]).then(|| buf[..len].to_vec())
}

/// The first non-loopback `nameserver` of a resolv.conf text, on port 53.
fn upstream_of(resolv_conf: &str) -> Option<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .collect::<Vec<_>>()
                .get(..2)
                .map(|w| (w[0], w[1]))
        })
        .filter(|(key, _)| *key == "nameserver")
        .filter_map(|(_, ip)| ip.parse::<IpAddr>().ok())
        .find(|ip| !ip.is_loopback())
        .map(|ip| SocketAddr::new(ip, 53))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_skips_loopback_and_comments() {
        let conf =
            "# x\nnameserver 127.0.0.53\nsearch lan\nnameserver 10.1.2.3\nnameserver 8.8.8.8\n";
        assert_eq!(upstream_of(conf), Some("10.1.2.3:53".parse().unwrap()));
        assert_eq!(upstream_of("nameserver ::1\n"), None);
    }
}
