//! vcompare's guest init: PID 1 inside the microVM, started by the kernel from the image's
//! root disk (which the kernel mounted as `/`). It mounts /proc, /sys and /dev, reports
//! "ready" and waits for the VMM's go message on the console (the VMM may snapshot the VM at
//! that point, and a VM restored from the snapshot resumes right there: see
//! `vcompare_vmm::snapshot`), sets the wall clock from that message, reads the run's spec
//! from the disk's spec area, reseeds the guest's RNG with the spec's fresh bytes, configures the network (`net.rs`, with `--network`),
//! sets hostname, user, environment and working directory, opens the guest agent's vsock
//! listener (`agent.rs`: `exec`, `run -i/-t`, `stop`), runs the entrypoint as its child
//! (`spawn.rs`; at boot, or — with `run -i/-t` — when the host attaches), reaps zombies,
//! turns the VMM's shutdown request (a byte on the console) into SIGTERM for the entrypoint
//! (`supervise.rs`), and reports phases and the exit status through the boot-timer I/O port.
//! Then it syncs and reboots (= the VM is done).
//!
//! Agent sessions (`session.rs`, one forked process per connection) keep PID 1 free of any
//! wait on the host; see `supervise.rs` for how the attached entrypoint stays PID 1's child.

mod agent;
mod inbound;
mod net;
mod pty;
mod relay;
mod session;
mod spawn;
mod stdio;
mod supervise;
mod sys;

use std::io::Write;

use spawn::cstr;
use sys::errno;

use vcompare_spec::guest::{
    console_marker, encode_report, exit_arg, parse_go, spec_area, GuestShare, GuestSpec, Phase,
    BOOT_TIMER_PORT, GO_BYTE, MARKER_INFO_PREFIX, SPEC_AREA_BYTES, SPEC_DEVICE_VAR,
};

/// One line on the console (the init's stderr), prefixed so it is told from the workload's.
fn log(msg: &str) {
    let _ = writeln!(std::io::stderr(), "vcompare-init: {msg}");
}

/// Whether ioperm() was granted for the port in use (set by [`use_port`]).
static PORT_OK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Asks for access to the boot-timer `port` (4 bytes: one 32-bit write) and returns it; on a
/// guest kernel without ioperm() the reports go to the console instead (see [`report`]).
fn use_port(port: u16) -> u16 {
    // SAFETY: ioperm only changes this process's I/O permission bitmap.
    let ok = unsafe { libc::ioperm(libc::c_ulong::from(port), 4, 1) == 0 };
    PORT_OK.store(ok, std::sync::atomic::Ordering::Relaxed);
    port
}

/// Reports to the boot-timer device: one 32-bit port write the VMM timestamps, or — when the
/// guest kernel has no ioperm() — the same value as a console marker `ESC _ vcompare:N ESC \`,
/// which the VMM strips from the output. tcdrain makes the write reach the UART now.
fn report(port: u16, phase: Phase, arg: u32) {
    let v = encode_report(phase, arg);
    if PORT_OK.load(std::sync::atomic::Ordering::Relaxed) {
        // SAFETY: ioperm was granted for this port in use_port(); `out` has no memory effects.
        unsafe {
            std::arch::asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack, preserves_flags))
        };
    } else {
        let m = console_marker(&v.to_string());
        // SAFETY: writing a local buffer to our stdout (the console), then draining it.
        unsafe {
            libc::write(1, m.as_ptr().cast(), m.len());
            libc::tcdrain(1);
        }
    }
}

/// mount(2) with Rust strings; the error names what was mounted where.
fn mount(
    src: &str,
    dst: &str,
    fstype: &str,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<(), String> {
    let (s, d, t) = (cstr(src), cstr(dst), cstr(fstype));
    let data = data.map(cstr);
    // SAFETY: all pointers are valid NUL-terminated strings (or null) for the call.
    let rc = unsafe {
        libc::mount(
            s.as_ptr(),
            d.as_ptr(),
            t.as_ptr(),
            flags,
            data.as_ref()
                .map_or(std::ptr::null(), |c| c.as_ptr().cast()),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "mount {src} on {dst} ({fstype}): {}",
            std::io::Error::last_os_error()
        ))
    }
}

/// Fails the boot: message on the console, phase 5 to the VMM, reboot.
fn fail(port: u16, msg: &str) -> ! {
    log(msg);
    report(port, Phase::InitFailed, errno() as u32 & 0xffff);
    finish();
}

/// Ends the VM: sync the disks, then reboot (the VMM treats the guest's reboot as the end).
fn finish() -> ! {
    // SAFETY: sync and reboot have no memory-safety preconditions; we are PID 1.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_AUTOBOOT);
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// How many processes the guest kernel's OOM killer has killed since boot, counted in the
/// kernel log (`/dev/kmsg`): each kill logs "<why>: Killed process PID (comm) ...". This is
/// the VM's counterpart of the container's cgroup `oom_kill` counter (the guest kernel has
/// no VM event counters), so a run that exceeds its guest RAM is reported as an OOM kill on
/// both sides. The log is read from its start; a record overwritten meanwhile (EPIPE) is
/// skipped.
fn oom_kills() -> usize {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(mut kmsg) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
    else {
        return 0;
    };
    let mut record = vec![0u8; 8192];
    let mut kills = 0;
    loop {
        match kmsg.read(&mut record) {
            Ok(0) => break,
            Ok(n) => {
                if record[..n]
                    .windows(OOM_KILL_RECORD.len())
                    .any(|w| w == OOM_KILL_RECORD)
                {
                    kills += 1;
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(_) => break,
        }
    }
    kills
}

/// What the kernel's OOM killer logs for every process it kills (mm/oom_kill.c).
const OOM_KILL_RECORD: &[u8] = b": Killed process ";

/// Sends the guest's own view (for `vcompare inspect`) as an `info:` console marker; sent
/// again after the entrypoint ended when the OOM killer ended it (`entrypoint_oom_killed`),
/// which is how the CLI tells an OOM kill from a plain SIGKILL.
fn send_info(entrypoint_oom_killed: bool) {
    // SAFETY: uname and sysconf fill/return plain data.
    let (release, cpus) = unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        libc::uname(&mut u);
        let r = std::ffi::CStr::from_ptr(u.release.as_ptr())
            .to_string_lossy()
            .into_owned();
        (r, libc::sysconf(libc::_SC_NPROCESSORS_ONLN))
    };
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let mut info = serde_json::json!({
        "pid1": "vcompare-init",
        "pid": std::process::id(),
        "kernel_release": release,
        "mem_total_kib": mem_kib,
        "cpus_online": cpus,
        "hostname": host.trim(),
    });
    if entrypoint_oom_killed {
        info["entrypoint_oom_killed"] = true.into();
    }
    let m = console_marker(&format!("{MARKER_INFO_PREFIX}{info}"));
    // SAFETY: writing a local buffer to the console.
    unsafe {
        libc::write(1, m.as_ptr().cast(), m.len());
    }
}

/// True if `path` is a mount point (its device differs from its parent's).
fn is_mountpoint(path: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::metadata(path),
        std::fs::metadata(format!("{path}/..")),
    ) {
        (Ok(a), Ok(b)) => a.dev() != b.dev(),
        _ => false,
    }
}

/// Mounts /proc, /sys and /dev (the kernel mounts devtmpfs itself when the image has a /dev
/// directory), /dev/pts and /dev/shm, creating missing directories on the root disk.
fn mount_kernel_filesystems() -> Result<(), String> {
    let nodev = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    for (dir, fstype, flags) in [
        ("/proc", "proc", nodev),
        ("/sys", "sysfs", nodev),
        ("/dev", "devtmpfs", libc::MS_NOSUID),
    ] {
        let _ = std::fs::create_dir(dir);
        if !is_mountpoint(dir) {
            mount(fstype, dir, fstype, flags, None)?;
        }
    }
    let _ = std::fs::create_dir("/tmp");
    let _ = std::fs::create_dir_all("/dev/pts");
    let _ = mount(
        "devpts",
        "/dev/pts",
        "devpts",
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666"),
    );
    let _ = std::fs::create_dir_all("/dev/shm");
    let _ = mount(
        "shm",
        "/dev/shm",
        "tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV,
        None,
    );
    Ok(())
}

/// Reads the spec from the last [`SPEC_AREA_BYTES`] of `device` (see [`spec_area`]), with
/// O_DIRECT: a VM restored from a snapshot must see this run's spec on its disk, never a
/// page the guest's cache might hold from an earlier read.
fn read_spec(device: &str) -> Result<GuestSpec, String> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(device)
        .map_err(|e| format!("open {device}: {e}"))?;
    // SAFETY: BLKGETSIZE64 writes one u64.
    let mut size = 0u64;
    if unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&f), BLKGETSIZE64, &mut size) } != 0 {
        return Err(format!(
            "size of {device}: {}",
            std::io::Error::last_os_error()
        ));
    }
    let at = size
        .checked_sub(SPEC_AREA_BYTES)
        .ok_or("device too small")?;
    // O_DIRECT wants a block-aligned buffer: read into an aligned part of a larger one.
    let mut raw = vec![0u8; SPEC_AREA_BYTES as usize + 4096];
    let skip = raw.as_ptr().align_offset(4096);
    let area = &mut raw[skip..skip + SPEC_AREA_BYTES as usize];
    f.read_exact_at(area, at)
        .map_err(|e| format!("read {device}: {e}"))?;
    let json = spec_area::decode(area).map_err(|e| format!("{e} on {device}"))?;
    serde_json::from_slice(json).map_err(|e| e.to_string())
}

/// `BLKGETSIZE64`: a block device's size in bytes.
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;

/// Reports [`Phase::Ready`] and waits for the VMM's go message on the console (see
/// [`vcompare_spec::guest::go_message`]); returns the host's wall-clock time from it. Until
/// then the guest is identical in every run, which is what makes one snapshot serve them all.
fn ready_and_wait_for_go(port: u16) -> Result<u64, String> {
    report(port, Phase::Ready, 0);
    let mut seen_go = false;
    let mut text = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        // The whole message arrives at once (the VMM queues it in the UART's FIFO): read what
        // is there, not a byte per read (each read is emulated guest-kernel work on PVM hosts).
        // SAFETY: reading into a local buffer from the console.
        let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            return Err(format!(
                "the console closed before the VMM's go ({})",
                std::io::Error::last_os_error()
            ));
        }
        for &b in &buf[..n as usize] {
            match b {
                GO_BYTE => {
                    seen_go = true;
                    text.clear();
                }
                b'\n' if seen_go => {
                    return parse_go(&text)
                        .ok_or_else(|| "malformed go message from the VMM".to_string())
                }
                c if seen_go && text.len() < 32 => text.push(c),
                _ => {}
            }
        }
    }
}

/// Sets the guest's wall clock to the host's (`ns` since the epoch): a VM restored from a
/// snapshot would otherwise resume with the snapshot's time.
fn set_wall_clock(ns: u64) {
    let ts = libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: clock_settime reads the timespec.
    if unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) } != 0 {
        log(&format!(
            "cannot set the wall clock: {}",
            std::io::Error::last_os_error()
        ));
    }
}

/// Adds the run's fresh random bytes (hex) to the guest kernel's entropy pool and reseeds
/// its CRNG: VMs restored from one snapshot must not share their random state.
fn reseed_entropy(hex: &str) {
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    if bytes.is_empty() {
        return;
    }
    // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
    let mut info = Vec::with_capacity(8 + bytes.len());
    info.extend_from_slice(&((bytes.len() * 8) as i32).to_ne_bytes());
    info.extend_from_slice(&(bytes.len() as i32).to_ne_bytes());
    info.extend_from_slice(&bytes);
    let Ok(random) = std::fs::OpenOptions::new().write(true).open("/dev/random") else {
        log("cannot open /dev/random to reseed the guest's RNG");
        return;
    };
    let fd = std::os::fd::AsRawFd::as_raw_fd(&random);
    // SAFETY: RNDADDENTROPY reads a rand_pool_info of the given size; RNDRESEEDCRNG takes no
    // argument.
    let ok = unsafe {
        libc::ioctl(fd, RNDADDENTROPY, info.as_ptr()) == 0 && libc::ioctl(fd, RNDRESEEDCRNG) == 0
    };
    if !ok {
        log(&format!(
            "cannot reseed the guest's RNG: {}",
            std::io::Error::last_os_error()
        ));
    }
}

/// `RNDADDENTROPY` = _IOW('R', 0x03, int[2]).
const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
/// `RNDRESEEDCRNG` = _IO('R', 0x07).
const RNDRESEEDCRNG: libc::c_ulong = 0x5207;

/// Mounts each shared host directory (virtio-9p, by its tag) at its path in the image. The
/// message size is the largest the Linux virtio transport takes: fewer, larger requests mean
/// fewer exits, the dominant cost on emulated hosts. `cache=mmap` lets file data go through
/// the guest page cache (readahead, and writeback on close or fsync: close-to-open
/// consistency, as with NFS); without it the client sends one request per 4 KiB page.
/// Metadata is never cached: every lookup asks the host, so new, renamed and deleted files
/// show up at once on both sides.
fn mount_shares(shares: &[GuestShare]) -> Result<(), String> {
    for s in shares {
        std::fs::create_dir_all(&s.path).map_err(|e| format!("mkdir {}: {e}", s.path))?;
        let flags = if s.read_only { libc::MS_RDONLY } else { 0 };
        mount(
            &s.tag,
            &s.path,
            "9p",
            flags,
            Some("trans=virtio,version=9p2000.L,msize=512000,access=user,cache=mmap"),
        )?;
    }
    Ok(())
}

/// Puts the console into raw input mode (no echo, no line editing) so the VMM's shutdown
/// byte reaches us at once and is never echoed; output processing is left alone.
fn console_raw() {
    // SAFETY: termios on fd 0 with a zeroed, then filled, struct.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(0, &mut t) == 0 {
            t.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ISIG | libc::IEXTEN);
            t.c_iflag &= !(libc::ICRNL | libc::IXON);
            t.c_cc[libc::VMIN] = 1;
            t.c_cc[libc::VTIME] = 0;
            libc::tcsetattr(0, libc::TCSANOW, &t);
        }
    }
}

fn main() {
    // Until the spec is read, the protocol's default port; then the spec's.
    let port = use_port(BOOT_TIMER_PORT);
    report(port, Phase::InitStart, 0);
    if let Err(e) = mount_kernel_filesystems() {
        fail(port, &e);
    }
    console_raw();
    match ready_and_wait_for_go(port) {
        Ok(now) => set_wall_clock(now),
        Err(e) => fail(port, &e),
    }
    let device = std::env::var(SPEC_DEVICE_VAR).unwrap_or_else(|_| "/dev/vda".into());
    let spec = match read_spec(&device) {
        Ok(s) => s,
        Err(e) => fail(port, &format!("cannot read the run's spec: {e}")),
    };
    let port = match spec.boot_timer_port {
        0 | BOOT_TIMER_PORT => port,
        other => use_port(other),
    };
    if spec.process.args.is_empty() {
        fail(port, "no command to run");
    }
    reseed_entropy(&spec.entropy);
    report(port, Phase::RootMounted, 0);
    if let Err(e) = mount_shares(&spec.shares) {
        fail(port, &e);
    }
    if let Err(e) = net::configure(spec.network.as_ref()) {
        fail(port, &e);
    }
    if !spec.hostname.is_empty() {
        // SAFETY: pointer/length of a valid byte string.
        unsafe { libc::sethostname(spec.hostname.as_ptr().cast(), spec.hostname.len()) };
    }

    // SIGCHLD through a signalfd, so one poll covers children and the console.
    // SAFETY: local sigset manipulation; signalfd returns a new fd.
    let sfd = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK)
    };
    send_info(false);
    let listener = match agent::listen() {
        Ok(Some(l)) => Some(l),
        Ok(None) if spec.attach => fail(
            port,
            "run -i/-t needs the guest agent, but the guest kernel has no vsock (AF_VSOCK); \
             use a guest kernel built with CONFIG_VIRTIO_VSOCKETS",
        ),
        Ok(None) => {
            log("no vsock in the guest kernel: running without the guest agent (no exec)");
            None
        }
        Err(e) if spec.attach => fail(port, &format!("run -i/-t needs the guest agent: {e}")),
        Err(e) => {
            log(&format!("running without the guest agent (no exec): {e}"));
            None
        }
    };
    let mut supervisor = supervise::Supervisor::new(port, &spec, sfd, listener);
    if !spec.attach {
        supervisor.start_on_console();
    }
    let status = supervisor.run();
    let vcompare_spec::agent::ExitStatus { code, signal: sig } = spawn::exit_status(status);
    // The container side's rule: killed by SIGKILL while the OOM killer was at work.
    if sig == libc::SIGKILL && oom_kills() > 0 {
        send_info(true);
    }
    // Let the console drain so the entrypoint's last output is seen before we report.
    // SAFETY: tcdrain on our stdout (the console).
    unsafe {
        libc::tcdrain(1);
        libc::kill(-1, libc::SIGKILL);
        libc::sync();
    }
    report(port, Phase::EntrypointExit, exit_arg(code, sig));
    finish();
}
