//! The test host: every `vcompare` a test process starts runs in one network namespace made
//! for that process (nextest runs each test as its own process), so bridges, veths, TAPs, nft
//! tables and DNS responders of a test exist only there and vanish with it; the machine's own
//! interfaces are never touched. Commands of one test share the namespace, so an instance
//! started by one command is reachable by the next.
#![allow(dead_code)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::OnceLock;

static NETNS: OnceLock<OwnedFd> = OnceLock::new();

/// The test process's private network namespace (made on first use on a helper thread, whose
/// namespace change affects no other thread), with `lo` up.
pub fn netns() -> &'static OwnedFd {
    NETNS.get_or_init(|| {
        std::thread::spawn(|| {
            // SAFETY: plain syscalls on this short-lived thread only.
            let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(
                r,
                0,
                "unshare(CLONE_NEWNET): {}",
                std::io::Error::last_os_error()
            );
            let up = Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status();
            assert!(
                up.is_ok_and(|s| s.success()),
                "ip link set lo up in the test netns"
            );
            let path = c"/proc/thread-self/ns/net";
            // SAFETY: open(2) with a static C string; the fd is owned below.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
            assert!(
                fd >= 0,
                "opening the test netns: {}",
                std::io::Error::last_os_error()
            );
            // SAFETY: fd was just opened and is owned by nobody else.
            unsafe { OwnedFd::from_raw_fd(fd) }
        })
        .join()
        .expect("creating the test network namespace")
    })
}

/// Makes `cmd` start inside the test's network namespace.
pub fn isolate(cmd: &mut Command) -> &mut Command {
    let fd = netns().as_raw_fd();
    // SAFETY: setns(2) is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// A command (e.g. `ip`, `nft`, a client) run inside the test's network namespace.
pub fn host_cmd(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(program);
    isolate(&mut c);
    c
}

/// Runs `f` on a thread inside the test's network namespace (a client of a published port,
/// a listener that keeps a port busy) and returns its result.
pub fn in_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let fd = netns().as_raw_fd();
    std::thread::spawn(move || {
        // SAFETY: setns(2) on this thread only.
        let r = unsafe { libc::setns(fd, libc::CLONE_NEWNET) };
        assert_eq!(
            r,
            0,
            "setns into the test netns: {}",
            std::io::Error::last_os_error()
        );
        f()
    })
    .join()
    .expect("the test-netns thread panicked")
}

/// `GET /` over plain TCP (HTTP/1.0, bounded by 3 s timeouts) from inside the test's
/// namespace; the whole response, or the error as text.
pub fn http_get(addr: &str) -> Result<String, String> {
    let addr: std::net::SocketAddr = addr.parse().map_err(|e| format!("{e}"))?;
    in_netns(move || {
        use std::io::{Read, Write};
        let t = std::time::Duration::from_secs(3);
        let mut s = std::net::TcpStream::connect_timeout(&addr, t).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(t)).map_err(|e| e.to_string())?;
        s.write_all(b"GET / HTTP/1.0\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut out = String::new();
        s.read_to_string(&mut out).map_err(|e| e.to_string())?;
        Ok(out)
    })
}

/// Output of a command run in the test's namespace (`ip -o link`, `nft list ruleset`).
pub fn host_output(program: &str, args: &[&str]) -> String {
    let o = host_cmd(program).args(args).output().expect(program);
    assert!(
        o.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts that nothing vcompare makes is left in the test's namespace: no `vc*` link, no
/// `vcompare` nft table.
pub fn assert_no_network_leftovers() {
    let links = host_output("ip", &["-o", "link"]);
    let ours: Vec<&str> = links
        .lines()
        .filter(|l| {
            l.split(':')
                .nth(1)
                .is_some_and(|n| n.trim().starts_with("vc"))
        })
        .collect();
    assert!(ours.is_empty(), "links left behind: {ours:?}");
    let rules = host_output("nft", &["list", "ruleset"]);
    assert!(
        !rules.contains("vcompare"),
        "nft rules left behind:\n{rules}"
    );
}

/// The instance's address (without the prefix length) from one attachment of `inspect`'s
/// network view.
pub fn address_of(attachment: &serde_json::Value) -> String {
    let cidr = attachment["inside"]["address"]
        .as_str()
        .expect("an address in the attachment");
    cidr.split('/').next().unwrap().to_string()
}
