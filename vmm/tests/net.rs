//! End-to-end test of the microVM's network: a real guest kernel (`kernels/build.sh`, with
//! CONFIG_INET and VIRTIO_NET), the static init (`scripts/build-static.sh`), busybox, and the
//! VMM's virtio-net device on a TAP this test creates. Everything happens in a fresh network
//! namespace (first thing the test does), so the machine's own interfaces are never touched.
//! Needs root and a usable /dev/kvm (skipped otherwise, a failure under VCOMPARE_NO_SKIP=1).
//! A boot takes 25–60 s on nested (PVM) hosts.
//!
//! `boot_cost_of_the_network_kernel` (ignored by default) is the measurement behind the
//! numbers quoted for `--network`'s boot cost: see its doc comment.

#[path = "../../tests/common/skip.rs"]
mod skip;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vcompare_spec::guest::GuestNetwork;
use vcompare_vmm::{disk, machine, GuestExit, GuestSpec, NetJob, VmConfig, VmJob};

const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const GUEST_IP: &str = "10.77.0.2";
const PORT: u16 = 7777;
const MAC: [u8; 6] = [0x02, 0x76, 0x63, 0x00, 0x00, 0x02];
const TAP_NAME: &str = "vctap0";
/// Bytes the guest sends in the bulk exchange, and bytes it gets back: enough for checksum
/// offload and TSO to carry real traffic (a nested guest moves only ~20–50 KB/s).
const BULK_UP: usize = 256 << 10;
const BULK_DOWN: usize = 1 << 20;

/// Skips unless root with a usable /dev/kvm and /dev/net/tun.
fn can_run() -> bool {
    if !skip::is_root() {
        skip::record("needs root (network namespace, TAP)");
        return false;
    }
    if !skip::kvm_usable() {
        skip::record("needs a read-write /dev/kvm to boot microVMs");
        return false;
    }
    true
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The guest kernel: `VCOMPARE_KERNEL`, else the one `kernels/build.sh` built for the
/// current config (which has the network drivers).
fn kernel() -> PathBuf {
    if let Some(k) = std::env::var_os("VCOMPARE_KERNEL") {
        return k.into();
    }
    let out = Command::new(workspace().join("kernels/build.sh"))
        .arg("--print-path")
        .output()
        .expect("kernels/build.sh");
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        p.is_file(),
        "guest kernel {} not built: run kernels/build.sh",
        p.display()
    );
    p
}

/// The static guest init (`VCOMPARE_INIT`, else `scripts/build-static.sh`'s output).
fn init() -> PathBuf {
    let p = std::env::var_os("VCOMPARE_INIT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            workspace().join("target/static/x86_64-unknown-linux-gnu/release/vcompare-init")
        });
    assert!(
        p.is_file(),
        "{} missing: run scripts/build-static.sh",
        p.display()
    );
    p
}

/// A minimal busybox root filesystem in `dir`.
fn busybox_root(dir: &Path) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::copy("/bin/busybox", dir.join("bin/busybox"))
        .expect("needs /bin/busybox (apt-get install busybox-static)");
    for applet in ["sh", "nc", "cat", "echo", "head", "wc", "true"] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
    std::fs::write(dir.join("etc/hosts"), "# the image's own\n").unwrap();
}

fn sh(cmd: &str) {
    let st = Command::new("sh").arg("-c").arg(cmd).status().unwrap();
    assert!(st.success(), "{cmd}");
}

/// Moves this test into a new network namespace with `lo` up. The test's threads and the
/// VMM's (spawned later) inherit it; the real interfaces stay out of reach.
fn private_netns() {
    // SAFETY: unshare has no memory preconditions.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "unshare(CLONE_NEWNET): {}",
        std::io::Error::last_os_error()
    );
    sh("ip link set lo up");
}

/// Creates the TAP the way the CLI does (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR, 12-byte header),
/// gives it the host address and brings it up.
fn create_tap() -> OwnedFd {
    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        flags: libc::c_short,
        _pad: [u8; 22],
    }
    // SAFETY: opening a device node; the fd is owned below.
    let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    assert!(fd >= 0, "/dev/net/tun: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh fd.
    let tap = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut ifr = IfReq {
        name: [0; 16],
        flags: (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short,
        _pad: [0; 22],
    };
    ifr.name[..TAP_NAME.len()].copy_from_slice(TAP_NAME.as_bytes());
    // SAFETY: TUNSETIFF reads and writes one ifreq (40 bytes).
    let rc = unsafe { libc::ioctl(tap.as_raw_fd(), libc::TUNSETIFF, &mut ifr) };
    assert_eq!(rc, 0, "TUNSETIFF: {}", std::io::Error::last_os_error());
    let hdr: libc::c_int = 12;
    // SAFETY: reads one int.
    let rc = unsafe { libc::ioctl(tap.as_raw_fd(), libc::TUNSETVNETHDRSZ, &hdr) };
    assert_eq!(rc, 0, "TUNSETVNETHDRSZ");
    sh(&format!(
        "ip addr add {HOST_IP}/24 dev {TAP_NAME} && ip link set {TAP_NAME} up"
    ));
    tap
}

/// A `Write` the test can read back: the guest's console.
#[derive(Clone, Default)]
struct Console(Arc<Mutex<Vec<u8>>>);

impl Write for Console {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A disk with busybox and `spec`, and the job booting it (with `net`, if any).
fn job(work: &Path, kernel: &Path, spec: &GuestSpec, net: Option<NetJob>) -> VmJob {
    let rootfs = work.join("rootfs");
    if !rootfs.exists() {
        busybox_root(&rootfs);
    }
    let img = disk::image_disk(work, "sha256:0123456789abcdef", &rootfs, &init()).unwrap();
    let _ = std::fs::remove_dir_all(work.join("inst"));
    let inst = disk::instance_disk(&work.join("inst"), &img).unwrap();
    disk::write_spec(&inst, &serde_json::to_vec(spec).unwrap()).unwrap();
    VmJob {
        kernel: kernel.into(),
        memory_mib: 256,
        cpus: 1,
        prealloc: false,
        initramfs: Default::default(),
        root_disk: Some(inst),
        shares: Vec::new(),
        net,
        vsock: None,
        snapshot: None,
        extra_cmdline: disk::root_cmdline(),
        // VCOMPARE_NET_BOOTLOG=1: the kernel's log on the console too (for diagnosis).
        boot_log: std::env::var_os("VCOMPARE_NET_BOOTLOG").is_some(),
        timeout_secs: Some(300),
        memory_ranges_path: None,
        guest_info_path: None,
        result_path: work.join("result.json"),
    }
}

fn spec(cmd: &str, network: Option<GuestNetwork>) -> GuestSpec {
    GuestSpec {
        process: vcompare_spec::ProcessSpec {
            args: vec!["/bin/sh".into(), "-c".into(), cmd.into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            ..Default::default()
        },
        hostname: "nettest".into(),
        boot_timer_port: vcompare_spec::guest::BOOT_TIMER_PORT,
        network,
        ..Default::default()
    }
}

/// Boots `job` in this process; returns the exit and the console output.
fn boot(job: VmJob) -> (Result<GuestExit, String>, String) {
    let console = Console::default();
    let cfg = VmConfig {
        console: Box::new(console.clone()),
        handle_signals: false,
        ..VmConfig::new(job, Instant::now())
    };
    let r = machine::run(cfg).map(|r| r.exit).map_err(|e| e.to_string());
    let out = String::from_utf8_lossy(&console.0.lock().unwrap()).into_owned();
    (r, out)
}

fn work_dir(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("vcmp-net-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// Accepts one connection within the deadline (the listener is non-blocking).
fn accept(l: &TcpListener, deadline: Instant) -> TcpStream {
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                s.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
                return s;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "the guest never connected");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// The host side: a line exchange, then a bulk exchange (the guest sends BULK_UP bytes and
/// half-closes; we answer with BULK_DOWN bytes). Returns what the first connection sent.
fn serve(l: TcpListener) -> std::thread::JoinHandle<(String, usize)> {
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut s = accept(&l, deadline);
        let t0 = Instant::now();
        let mut line = String::new();
        s.read_to_string(&mut line).unwrap();
        s.write_all(b"hello from the host\n").unwrap();
        drop(s);
        let t1 = Instant::now();
        let mut s = accept(&l, deadline);
        let t2 = Instant::now();
        let mut got = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match s.read(&mut buf).unwrap() {
                0 => break,
                n => got += n,
            }
        }
        let t3 = Instant::now();
        s.write_all(&vec![b'x'; BULK_DOWN]).unwrap();
        drop(s);
        let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1000.0;
        eprintln!(
            "host side: line exchange {:.0} ms; bulk: {} B up in {:.0} ms, {} B down queued in {:.0} ms",
            ms(t0, t1),
            got,
            ms(t2, t3),
            BULK_DOWN,
            ms(t3, Instant::now())
        );
        (line, got)
    })
}

/// The guest brings up eth0 from the spec (address, default route, resolv.conf, hosts) and
/// talks TCP with the host across the VMM's virtio-net and a TAP, both ways: a line each
/// way, then 256 KiB up and 1 MiB down (offloaded checksums and TSO on the way).
#[test]
fn vm_guest_talks_tcp_to_the_host_over_virtio_net() {
    if !can_run() {
        return;
    }
    let kernel = kernel();
    private_netns();
    let tap = create_tap();
    assert_eq!(
        tap_offloads(),
        (false, false),
        "a fresh TAP has no offloads"
    );
    let listener = TcpListener::bind(SocketAddrV4::new(HOST_IP, PORT)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let server = serve(listener);

    let network = GuestNetwork {
        interface: "eth0".into(),
        address: GUEST_IP.into(),
        prefix_len: 24,
        gateway: HOST_IP.to_string(),
        mac: MAC
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
        resolv_conf: "nameserver 10.77.0.1\n".into(),
        hosts: "127.0.0.1 localhost\n10.77.0.1 vmhost\n".into(),
    };
    let cmd = format!(
        "cat /etc/resolv.conf /etc/hosts; \
         echo hello from the guest | nc {HOST_IP} {PORT} && \
         head -c {BULK_UP} /dev/zero | nc {HOST_IP} {PORT} | wc -c"
    );
    let work = work_dir("tcp");
    let net = NetJob {
        tap_fd: tap.as_raw_fd(),
        mac: MAC,
    };
    let (exit, out) = boot(job(&work, &kernel, &spec(&cmd, Some(network)), Some(net)));
    let _ = std::fs::remove_dir_all(&work);
    assert_eq!(exit, Ok(GuestExit::Exited(0)), "console:\n{out}");
    let (line, up) = server.join().expect("host side");
    // TUNSETOFFLOAD from the guest's acked GUEST_CSUM + GUEST_TSO4: the TAP now takes
    // checksum-offloaded and TSO frames for the guest (it did not before the VM ran). How
    // many frames actually were TSO depends on timing: a nested guest ACKs so slowly that
    // the host mostly sends one segment at a time, so that is printed, not asserted.
    assert_eq!(
        tap_offloads(),
        (true, true),
        "TAP (checksum, TSO) offloads after the run"
    );
    let (rx, tx) = tap_counters();
    eprintln!("TAP counters (rx = from the guest, tx = to it): rx {rx:?}, tx {tx:?}");
    assert_eq!(line, "hello from the guest\n");
    assert_eq!(up, BULK_UP, "bytes the host received");
    // (Kernel lines, with VCOMPARE_NET_BOOTLOG, start with their timestamp.)
    let lines: Vec<&str> = out
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.starts_with('['))
        .collect();
    assert_eq!(
        lines,
        [
            "nameserver 10.77.0.1",
            "127.0.0.1 localhost",
            "10.77.0.1 vmhost",
            "hello from the host",
            &BULK_DOWN.to_string(),
        ],
        "console:\n{out}"
    );
}

/// ((rx bytes, rx frames), (tx bytes, tx frames)) of the TAP, from this thread's network
/// namespace (`/proc/thread-self/net/dev`).
fn tap_counters() -> ((u64, u64), (u64, u64)) {
    let dev = std::fs::read_to_string("/proc/thread-self/net/dev").unwrap();
    let line = dev
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(&format!("{TAP_NAME}:")))
        .expect("the TAP in /proc/net/dev");
    let v: Vec<u64> = line
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    ((v[0], v[1]), (v[8], v[9]))
}

/// (checksum offload, TSO) of the TAP as the host kernel sees them (ETHTOOL_GTXCSUM and
/// ETHTOOL_GTSO): what `TUNSETOFFLOAD` set.
fn tap_offloads() -> (bool, bool) {
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    #[repr(C)]
    struct IfReqData {
        name: [u8; 16],
        data: *mut EthtoolValue,
        _pad: [u8; 16],
    }
    // SAFETY: a new socket, owned below.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    assert!(sock >= 0);
    // SAFETY: a fresh fd.
    let sock = unsafe { OwnedFd::from_raw_fd(sock) };
    let get = |cmd: u32| {
        let mut v = EthtoolValue { cmd, data: 0 };
        let mut ifr = IfReqData {
            name: [0; 16],
            data: &mut v,
            _pad: [0; 16],
        };
        ifr.name[..TAP_NAME.len()].copy_from_slice(TAP_NAME.as_bytes());
        // SAFETY: SIOCETHTOOL reads the ifreq and reads/writes the ethtool_value it points to.
        let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut ifr) };
        assert_eq!(
            rc,
            0,
            "SIOCETHTOOL {cmd:#x}: {}",
            std::io::Error::last_os_error()
        );
        v.data != 0
    };
    (
        get(0x16 /* ETHTOOL_GTXCSUM */),
        get(0x1e /* ETHTOOL_GTSO */),
    )
}

/// A job naming an fd that is not a TAP fails before boot with the typed network error.
#[test]
fn vm_net_refuses_a_non_tap_fd() {
    let dir = work_dir("nontap");
    let f = std::fs::File::create(dir.join("plain")).unwrap();
    let e = vcompare_vmm::devices::virtio::net::Net::new(f.as_raw_fd(), MAC)
        .err()
        .expect("a plain file is not a TAP");
    assert!(e.to_string().contains("is not a TAP"), "{e}");
    let e = vcompare_vmm::devices::virtio::net::Net::new(9999, MAC)
        .err()
        .expect("fd 9999 is not open");
    assert!(e.to_string().contains("not open"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The boot cost of `--network`'s kernel: the same VM and command (`true`, no NIC) on the
/// kernel without IPv4/virtio-net (`VCOMPARE_OLD_KERNEL`) and on the current one, plus the
/// current kernel with the NIC attached and eth0 configured by the init. Alternating, N runs
/// each (`VCOMPARE_BOOTS`, default 5); prints the median launch → VM end per variant.
/// `cargo test -p vcompare-vmm --test net -- --ignored --nocapture boot_cost`.
#[test]
#[ignore = "a measurement (minutes), not a check"]
fn boot_cost_of_the_network_kernel() {
    if !can_run() {
        return;
    }
    let old: PathBuf = std::env::var_os("VCOMPARE_OLD_KERNEL")
        .expect("VCOMPARE_OLD_KERNEL: the kernel without CONFIG_INET")
        .into();
    let new = kernel();
    let n: usize = std::env::var("VCOMPARE_BOOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    private_netns();
    let tap = create_tap();
    let network = GuestNetwork {
        interface: "eth0".into(),
        address: GUEST_IP.into(),
        prefix_len: 24,
        gateway: HOST_IP.to_string(),
        ..Default::default()
    };
    let work = work_dir("cost");
    let variants: [(&str, &Path, bool); 3] = [
        ("old kernel, no NIC", &old, false),
        ("new kernel, no NIC", &new, false),
        ("new kernel, NIC + eth0 setup", &new, true),
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for round in 0..n {
        for (i, (name, k, nic)) in variants.iter().enumerate() {
            let s = spec("true", nic.then(|| network.clone()));
            let net = nic.then(|| NetJob {
                tap_fd: tap.as_raw_fd(),
                mac: MAC,
            });
            let j = job(&work, k, &s, net);
            let t = Instant::now();
            let (exit, out) = boot(j);
            let secs = t.elapsed().as_secs_f64();
            assert_eq!(exit, Ok(GuestExit::Exited(0)), "{name}: {out}");
            eprintln!("round {round} {name}: {secs:.2} s");
            times[i].push(secs);
        }
    }
    for ((name, _, _), t) in variants.iter().zip(&mut times) {
        t.sort_by(f64::total_cmp);
        eprintln!(
            "{name}: median {:.2} s, min {:.2} s, max {:.2} s over {n} boots",
            t[t.len() / 2],
            t[0],
            t[t.len() - 1]
        );
    }
    let _ = std::fs::remove_dir_all(&work);
}
