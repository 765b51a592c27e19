//! `run`: creates one container and waits for it. The start path is deliberately lean: one
//! `clone` with every namespace flag, the parent writes the id maps and cgroup membership and
//! builds the overlay while the child waits on a socket, then the child mounts, pivots and
//! `execve`s — no intermediate processes, no sleeps, no polling.
//!
//! Parent/child protocol:
//! * `go` socket (parent → child): one message carrying the overlay mount fd (`SCM_RIGHTS`);
//!   EOF instead means the parent gave up, and the child exits.
//! * `report` pipe (child → parent, close-on-exec): fixed-size `Record`s (a phase timestamp
//!   or the failing step + errno). EOF without an error record means `execve` succeeded.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use crate::cgroups::{Cgroup, Resources};
use crate::error::{Error, Result};
use crate::mounts::{MountPlan, Volume};
use crate::phases::{Observer, Phase};
use crate::process::ProcessPlan;
use crate::rootfs::{self, Layout};
use crate::user_ns::IdMap;
use crate::{namespaces, network, sys};

/// Everything about one container, independent of the CLI's types.
#[derive(Debug, Clone)]
pub struct ContainerConfig {
    /// Instance id (64 hex); names the cgroup.
    pub id: String,
    /// The image's unpacked rootfs: the overlay's read-only lower layer.
    pub rootfs: std::path::PathBuf,
    /// Per-instance directory: upper/work dirs (kept across runs) and the cgroup record.
    pub instance_dir: std::path::PathBuf,
    /// argv; `args[0]` is looked up in the container's `PATH` if it has no `/`.
    pub args: Vec<String>,
    /// Environment, `K=V`.
    pub env: Vec<String>,
    /// Working directory inside the container.
    pub cwd: String,
    /// User inside the container.
    pub uid: u32,
    /// Group inside the container.
    pub gid: u32,
    /// UTS hostname.
    pub hostname: String,
    /// `-v` bind mounts.
    pub volumes: Vec<Volume>,
    /// cgroup limits.
    pub resources: Resources,
    /// `Some(map)` = new user namespace with this mapping (the default); `None` = `--userns host`.
    pub userns: Option<IdMap>,
    /// Share the host network stack instead of a new namespace with only `lo`.
    pub network_host: bool,
    /// Run the `--init` reaper as PID 1.
    pub init: bool,
    /// Keep stdin connected (`-i`); otherwise the container reads /dev/null.
    pub interactive: bool,
    /// `-t`: give the container a pseudo-terminal (from its own devpts) relayed to our stdio.
    pub tty: bool,
    /// Watchdog: SIGKILL the container after this long and report `TimedOut`.
    pub timeout: Option<Duration>,
}

/// How the container's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ExitStatus {
    /// Exited with this code.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
    /// Killed by the OOM killer because of the memory limit.
    OomKilled,
    /// Killed by the watchdog.
    TimedOut,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Record {
    kind: u32,
    step: u32,
    index: u32,
    errno: i32,
    value: u64,
}

const REC_ERROR: u32 = 1;
const REC_PHASE_MOUNTS: u32 = 2;
const REC_PHASE_CGROUP: u32 = 3;

/// Setup steps of the child, for error reports.
#[derive(Clone, Copy)]
#[repr(u32)]
#[allow(dead_code)]
enum Step {
    Go = 1,
    CgroupNs,
    Hostname,
    Private,
    AttachRoot,
    Loopback,
    Mount,
    Pivot,
    Mask,
    Stdin,
    Cwd,
    User,
    Exec,
    InitFork,
    Pty,
    CgroupJoin,
    Caps,
}

const STEP_NAMES: [&str; 18] = [
    "",
    "receive the root filesystem from the parent",
    "create the cgroup namespace",
    "set the hostname",
    "make all mounts private",
    "attach the overlay root filesystem",
    "bring up the loopback interface",
    "mount",
    "pivot_root into the container's root filesystem",
    "mask",
    "connect stdin to /dev/null",
    "enter the working directory",
    "switch to the container user",
    "execute the command",
    "fork the --init reaper's child",
    "create the pseudo-terminal (-t)",
    "join the container's cgroup",
    "drop capabilities to the default set",
];

fn step_hint(step: u32, errno: i32) -> String {
    match step {
        s if s == Step::User as u32 => "the -u uid/gid must be inside the user namespace's mapped range (0-65535)".into(),
        s if s == Step::Cwd as u32 => "check the -w directory: it must be a directory path inside the image".into(),
        s if s == Step::Mount as u32 && errno == libc::ENOENT => "a component of the target path is a symlink pointing to a missing directory inside the image; use a real directory path".into(),
        s if s == Step::Mount as u32 && errno == libc::ENOTDIR => "a -v target conflicts with a file of another type in the image; pick another guest path".into(),
        s if s == Step::Mount as u32 => "the kernel refused the mount; check -v paths, or run with --userns host to rule out user-namespace restrictions".into(),
        // Overlayfs checks the layers with the container root's host uid (100000 by default),
        // which is "other" to every directory above the data root: a 0700 parent stops it.
        s if s == Step::AttachRoot as u32 && errno == libc::EACCES => "container root (an unprivileged host uid) cannot reach the image layers: every directory above the data root must be searchable by others (chmod o+x DIR), or use --root elsewhere or --userns host".into(),
        _ => "this is a host kernel restriction; check dmesg and that user namespaces and overlayfs are enabled".into(),
    }
}

static CHILD_PID: AtomicI32 = AtomicI32::new(0);
static PENDING_SIG: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    let pid = CHILD_PID.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    } else {
        PENDING_SIG.store(sig, Ordering::SeqCst);
    }
}

const FORWARDED: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// Installs the forwarding handlers; restores the previous ones on drop. Signal dispositions
/// are process-wide: with several concurrent `run`s in one process (tests), a signal goes to the
/// most recently started container. The CLI runs one container per process.
pub(crate) struct SignalForwarding {
    old: Vec<(libc::c_int, libc::sigaction)>,
}

impl SignalForwarding {
    pub(crate) fn install() -> SignalForwarding {
        CHILD_PID.store(0, Ordering::SeqCst);
        PENDING_SIG.store(0, Ordering::SeqCst);
        let mut old = Vec::new();
        for sig in FORWARDED {
            // SAFETY: installing a handler that only uses async-signal-safe calls.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as *const () as usize;
                sa.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                let mut prev: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, &sa, &mut prev) == 0 {
                    old.push((sig, prev));
                }
            }
        }
        SignalForwarding { old }
    }

    pub(crate) fn set_child(&self, pid: i32) {
        CHILD_PID.store(pid, Ordering::SeqCst);
        let p = PENDING_SIG.swap(0, Ordering::SeqCst);
        if p > 0 {
            // SAFETY: plain kill.
            unsafe { libc::kill(pid, p) };
        }
    }
}

impl Drop for SignalForwarding {
    fn drop(&mut self) {
        // SAFETY: restoring saved dispositions.
        unsafe {
            for (sig, prev) in &self.old {
                libc::sigaction(*sig, prev, std::ptr::null_mut());
            }
        }
        CHILD_PID.store(0, Ordering::SeqCst);
    }
}

/// Kills and reaps the child unless disarmed (every early-return path after clone).
pub(crate) struct ChildGuard {
    pid: i32,
    armed: bool,
}

impl ChildGuard {
    pub(crate) fn new(pid: i32) -> ChildGuard {
        ChildGuard { pid, armed: true }
    }

    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.armed && self.pid > 0 {
            // SAFETY: plain kill/waitpid on our own child.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                let mut st = 0;
                while libc::waitpid(self.pid, &mut st, 0) < 0 && sys::last_errno() == libc::EINTR {}
            }
        }
    }
}

/// Removes the cgroup on every path.
struct CgroupGuard<'a> {
    cg: &'a Cgroup,
    record: std::path::PathBuf,
}

impl Drop for CgroupGuard<'_> {
    fn drop(&mut self) {
        let _ = self.cg.destroy();
        let _ = std::fs::remove_file(&self.record);
    }
}

/// File in the instance directory naming the cgroup dirs of a running container, so `remove`
/// can clean up after a crashed vcompare (v1 placement depends on the caller's own cgroup).
pub(crate) const CGROUP_RECORD: &str = "cgroup.paths";

struct ChildCtx<'a> {
    go: RawFd,
    report: RawFd,
    stdin_null: RawFd,
    tty: bool,
    /// v1 `tasks` files the child writes "0" to, joining its cgroup itself (see cgroups).
    cgroup_tasks: &'a [RawFd],
    hostname: &'a [u8],
    unshare_cgroupns: bool,
    userns: bool,
    own_netns: bool,
    mountpoint: &'a std::ffi::CStr,
    mounts: &'a MountPlan,
    process: &'a ProcessPlan,
    init: bool,
}

fn child_fail(report: RawFd, step: Step, index: u32, errno: i32) -> ! {
    let r = Record {
        kind: REC_ERROR,
        step: step as u32,
        index,
        errno,
        value: 0,
    };
    // SAFETY: Record is plain old data.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            &r as *const Record as *const u8,
            std::mem::size_of::<Record>(),
        )
    };
    let _ = sys::write_all(report, bytes);
    // SAFETY: leaving the child without running destructors or atexit handlers.
    unsafe { libc::_exit(127) }
}

pub(crate) fn recv_fd(sock: RawFd) -> sys::SysResult<RawFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut cbuf = [0u64; 8];
    // SAFETY: msghdr points at stack buffers that outlive the call.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cbuf);
        let n = loop {
            let n = libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC);
            if n < 0 && sys::last_errno() == libc::EINTR {
                continue;
            }
            break n;
        };
        if n <= 0 {
            return Err(if n == 0 {
                libc::EPIPE
            } else {
                sys::last_errno()
            });
        }
        let c = libc::CMSG_FIRSTHDR(&msg);
        if c.is_null() || (*c).cmsg_type != libc::SCM_RIGHTS {
            return Err(libc::EBADMSG);
        }
        Ok(std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const RawFd))
    }
}

pub(crate) fn send_fd(sock: RawFd, fd: RawFd) -> std::io::Result<()> {
    let mut byte = [1u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut cbuf = [0u64; 8];
    // SAFETY: msghdr points at stack buffers that outlive the call; CMSG macros stay in cbuf.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut RawFd, fd);
        if libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The child's whole life until `execve`. Allocation-free (see `sys`). Never returns.
fn child_main(c: &ChildCtx) -> ! {
    let rep = c.report;
    // Join the cgroup first, concurrently with the parent's work, and before anything is
    // allocated in the kernel on the container's behalf.
    for fd in c.cgroup_tasks {
        if let Err(e) = sys::write_all(*fd, b"0") {
            child_fail(rep, Step::CgroupJoin, 0, e);
        }
        sys::close(*fd);
    }
    if !c.cgroup_tasks.is_empty() {
        let r = Record {
            kind: REC_PHASE_CGROUP,
            value: sys::monotonic_ns(),
            ..Default::default()
        };
        // SAFETY: Record is plain old data.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                &r as *const Record as *const u8,
                std::mem::size_of::<Record>(),
            )
        };
        let _ = sys::write_all(rep, bytes);
    }
    let overlay = match recv_fd(c.go) {
        Ok(fd) => fd,
        // The parent gave up (its error is the one reported): leave quietly.
        // SAFETY: immediate exit.
        Err(_) => unsafe { libc::_exit(126) },
    };
    // SAFETY: plain syscalls on values prepared by the parent.
    unsafe {
        // A new user namespace does not change credentials: we still run as host uid 0, which
        // is unmapped there. Become the namespace's root (host uid = map base) so that files we
        // create (tmpfs on /dev…) and the command get a mapped owner.
        if c.userns {
            if let Err(e) = sys::set_ids(0, 0, true) {
                child_fail(rep, Step::User, 1, e);
            }
        }
        if libc::sethostname(c.hostname.as_ptr().cast(), c.hostname.len()) != 0 {
            child_fail(rep, Step::Hostname, 0, sys::last_errno());
        }
        if libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            child_fail(rep, Step::Private, 0, sys::last_errno());
        }
        let mp = libc::open(
            c.mountpoint.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        );
        if mp < 0 {
            child_fail(rep, Step::AttachRoot, 0, sys::last_errno());
        }
        if let Err(e) = sys::move_mount_fd(overlay, mp) {
            child_fail(rep, Step::AttachRoot, 1, e);
        }
        sys::close(mp);
        sys::close(overlay);
        let root = libc::open(
            c.mountpoint.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        );
        if root < 0 {
            child_fail(rep, Step::AttachRoot, 2, sys::last_errno());
        }
        if c.own_netns {
            if let Err(e) = network::loopback_up() {
                child_fail(rep, Step::Loopback, 0, e);
            }
        }
        if let Err((i, e)) = c.mounts.apply(root) {
            child_fail(rep, Step::Mount, i, e);
        }
        if libc::fchdir(root) != 0 {
            child_fail(rep, Step::Pivot, 0, sys::last_errno());
        }
        sys::close(root);
        if let Err(e) = rootfs::pivot_to_cwd() {
            child_fail(rep, Step::Pivot, 1, e);
        }
        if let Err((i, e)) = c.mounts.apply_masks() {
            child_fail(rep, Step::Mask, i, e);
        }
        let r = Record {
            kind: REC_PHASE_MOUNTS,
            value: sys::monotonic_ns(),
            ..Default::default()
        };
        let _ = sys::write_all(
            rep,
            std::slice::from_raw_parts(
                &r as *const Record as *const u8,
                std::mem::size_of::<Record>(),
            ),
        );
        // Second sync point: the parent has moved us into the cgroup (done while we mounted, to
        // hide the cgroup v1 attach latency). Only now can the cgroup namespace be created, so
        // that the container's cgroup is its "/", and the command be started under the limits.
        let mut b = [0u8; 1];
        let n = loop {
            let n = libc::read(c.go, b.as_mut_ptr().cast(), 1);
            if n < 0 && sys::last_errno() == libc::EINTR {
                continue;
            }
            break n;
        };
        if n != 1 {
            libc::_exit(126);
        }
        if c.unshare_cgroupns && libc::unshare(libc::CLONE_NEWCGROUP) != 0 {
            child_fail(rep, Step::CgroupNs, 0, sys::last_errno());
        }
        if c.tty {
            match crate::process::setup_pty_child() {
                Ok(master) => {
                    if send_fd(c.go, master).is_err() {
                        child_fail(rep, Step::Pty, 1, libc::EPIPE);
                    }
                    sys::close(master);
                }
                Err(e) => child_fail(rep, Step::Pty, 0, e),
            }
        } else if c.stdin_null >= 0 {
            if let Err(e) = crate::process::redirect_stdin(c.stdin_null) {
                child_fail(rep, Step::Stdin, 0, e);
            }
        }
        sys::close(c.go);
        if let Err(e) = c.process.enter_cwd() {
            child_fail(rep, Step::Cwd, 0, e);
        }
        if c.init {
            let old = crate::process::block_all_signals();
            match sys::clone_fork(0) {
                Ok(0) => {
                    crate::process::restore_signals(&old);
                    if let Err(e) = crate::process::drop_capabilities() {
                        child_fail(rep, Step::Caps, 0, e);
                    }
                    if let Err(e) = c.process.switch_user() {
                        child_fail(rep, Step::User, 0, e);
                    }
                    let e = c.process.exec();
                    child_fail(rep, Step::Exec, 0, e);
                }
                Ok(pid) => {
                    sys::close(rep);
                    crate::process::reaper(pid);
                }
                Err(e) => child_fail(rep, Step::InitFork, 0, e),
            }
        }
        if let Err(e) = crate::process::drop_capabilities() {
            child_fail(rep, Step::Caps, 0, e);
        }
        if let Err(e) = c.process.switch_user() {
            child_fail(rep, Step::User, 0, e);
        }
        let e = c.process.exec();
        child_fail(rep, Step::Exec, 0, e);
    }
}

fn pipe_cloexec() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| {
        Error::sys(
            "creating a pipe",
            e,
            "the process may be out of file descriptors",
        )
    })
}

/// Creates the container, runs its command and waits for it to end; forwards SIGINT, SIGTERM,
/// SIGHUP and SIGQUIT received meanwhile to it; removes the cgroup and every mount on every path
/// (the upper dir stays until [`crate::remove`]).
pub fn run(cfg: &ContainerConfig, obs: &mut dyn Observer) -> Result<ExitStatus> {
    if !cfg.rootfs.is_dir() {
        return Err(Error::RootfsMissing(cfg.rootfs.clone()));
    }
    if cfg.hostname.is_empty() || cfg.hostname.len() > 64 {
        return Err(Error::InvalidConfig(format!(
            "hostname {:?} must be 1 to 64 characters",
            cfg.hostname
        )));
    }
    if let Some(m) = cfg.userns {
        if cfg.uid >= m.size || cfg.gid >= m.size {
            return Err(Error::InvalidConfig(format!(
                "user {}:{} is outside the user namespace's mapped range 0-{}",
                cfg.uid,
                cfg.gid,
                m.size - 1
            )));
        }
    }
    let process = ProcessPlan::new(&cfg.args, &cfg.env, &cfg.cwd, cfg.uid, cfg.gid)?;
    let mounts = MountPlan::standard(&cfg.volumes, !cfg.network_host, true)?;
    let layout = Layout::new(&cfg.instance_dir);
    layout.create(cfg.userns.map(|m| m.host_base).unwrap_or(0))?;
    let mountpoint = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(
        layout.mountpoint.as_os_str(),
    ))
    .map_err(|_| Error::InvalidConfig("instance dir contains a NUL byte".into()))?;

    let cg = Cgroup::create(&cfg.id, &cfg.resources)?;
    let record = cfg.instance_dir.join(CGROUP_RECORD);
    let _cg_guard = CgroupGuard {
        cg: &cg,
        record: record.clone(),
    };
    let paths: Vec<String> = cg
        .dirs
        .iter()
        .map(|(_, d)| d.display().to_string())
        .collect();
    std::fs::write(&record, paths.join("\n"))
        .map_err(|e| Error::io("recording the cgroup paths", &record, e))?;

    let stdin_null = if cfg.interactive || cfg.tty {
        None
    } else {
        Some(std::fs::File::open("/dev/null").map_err(|e| Error::io("opening", "/dev/null", e))?)
    };
    let (go_parent, go_child) = sys::seqpacket_pair("creating the setup socket")?;
    let (rep_read, rep_write) = pipe_cloexec()?;

    let tasks = cg.open_self_attach_files()?;
    let task_fds: Vec<RawFd> = tasks.iter().map(|f| f.as_raw_fd()).collect();
    let flags = namespaces::clone_flags(cfg.userns.is_some(), cfg.network_host);
    let ctx = ChildCtx {
        go: go_child.as_raw_fd(),
        report: rep_write.as_raw_fd(),
        stdin_null: stdin_null.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1),
        tty: cfg.tty,
        cgroup_tasks: &task_fds,
        hostname: cfg.hostname.as_bytes(),
        unshare_cgroupns: true,
        userns: cfg.userns.is_some(),
        own_netns: !cfg.network_host,
        mountpoint: &mountpoint,
        mounts: &mounts,
        process: &process,
        init: cfg.init,
    };
    let signals = SignalForwarding::install();
    // v2: start the child directly inside its cgroup when the kernel allows it.
    let v2_dir = cg.open_v2_dir();
    let mut in_cgroup = false;
    let first = match &v2_dir {
        Some(d) => match sys::clone_into_cgroup(flags, d.as_raw_fd()) {
            Err(libc::ENOSYS) | Err(libc::E2BIG) | Err(libc::EINVAL) => None,
            r => {
                in_cgroup = true;
                Some(r)
            }
        },
        None => None,
    };
    let pid = match first.unwrap_or_else(|| sys::clone_fork(flags)) {
        Ok(0) => child_main(&ctx),
        Ok(pid) => pid,
        Err(e) => {
            return Err(Error::sys(
                "clone with new namespaces",
                nix::errno::Errno::from_raw(e),
                "user namespaces may be disabled (sysctl user.max_user_namespaces) or the namespace limits reached",
            ))
        }
    };
    let mut guard = ChildGuard { pid, armed: true };
    signals.set_child(pid);
    drop(go_child);
    drop(rep_write);
    drop(tasks);
    drop(v2_dir);

    let mut rep = std::fs::File::from(rep_read);
    // Any parent-side failure while the child is being set up: the child may have failed first
    // (and its report is the real cause), so stop it and prefer its error record.
    let prefer_child_error = |rep: &mut std::fs::File, e: Error| -> Error {
        // SAFETY: plain kill of our own child; the guard reaps it.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        match read_reports(rep, &mut NoObs) {
            Err(child) => setup_error(&child, &mounts, &process),
            Ok(()) => e,
        }
    };
    let setup = (|| -> Result<Option<crate::process::PtyRelay>> {
        if let Some(map) = cfg.userns {
            map.write_maps(pid)?;
        }
        obs.phase(Phase::Namespaces, sys::monotonic_ns());
        let userns_fd = match cfg.userns {
            Some(_) => {
                let p = format!("/proc/{pid}/ns/user");
                Some(
                    std::fs::File::open(&p)
                        .map_err(|e| Error::io("opening the container's user namespace", p, e))?,
                )
            }
            None => None,
        };
        let overlay = rootfs::build_overlay(
            &cfg.rootfs,
            &layout,
            userns_fd.as_ref().map(|f| f.as_raw_fd()),
        )?;
        drop(userns_fd);
        send_fd(go_parent.as_raw_fd(), overlay.as_raw_fd()).map_err(|e| {
            Error::io(
                "handing the root filesystem to the container",
                "setup socket",
                e,
            )
        })?;
        drop(overlay);
        obs.phase(Phase::Rootfs, sys::monotonic_ns());
        // v1: the child has joined by itself (no global lock). v2: join it now, while the child
        // mounts, so that the attach latency overlaps with the child's work.
        if task_fds.is_empty() && !in_cgroup {
            cg.add_pid(pid)?;
        }
        nix::unistd::write(&go_parent, &[1]).map_err(|e| {
            Error::sys(
                "releasing the container after joining its cgroup",
                e,
                "the container setup died",
            )
        })?;
        if task_fds.is_empty() {
            // v2 (the child reports its own v1 self-attach through the report pipe).
            obs.phase(Phase::Cgroup, sys::monotonic_ns());
        }
        // -t: the child sends the pty master once in its cgroup (or fails, closing the socket).
        if cfg.tty {
            let m = recv_fd(go_parent.as_raw_fd()).map_err(|e| {
                Error::sys(
                    "receiving the container's pseudo-terminal",
                    nix::errno::Errno::from_raw(e),
                    "the container setup died",
                )
            })?;
            // SAFETY: a fresh fd received from the child, owned here.
            return Ok(Some(crate::process::PtyRelay::start(unsafe {
                <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(m)
            })));
        }
        Ok(None)
    })();
    let _relay = match setup {
        Ok(r) => r,
        Err(e) => return Err(prefer_child_error(&mut rep, e)),
    };
    drop(go_parent);

    // Wait for the child's reports; EOF = execve succeeded (the pipe is close-on-exec).
    if let Err(r) = read_reports(&mut rep, obs) {
        return Err(setup_error(&r, &mounts, &process));
    }
    drop(rep);
    obs.phase(Phase::Exec, sys::monotonic_ns());
    obs.started(pid);

    let timed_out = match cfg.timeout {
        Some(t) => wait_or_kill(pid, t),
        None => false,
    };
    let status = sys::wait_child(pid, "waiting for the container")?;
    guard.armed = false;
    drop(signals);
    let outcome = if timed_out {
        ExitStatus::TimedOut
    } else if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        if sig == libc::SIGKILL && cg.oom_kills() > 0 {
            ExitStatus::OomKilled
        } else {
            ExitStatus::Signaled(sig)
        }
    } else {
        let code = libc::WEXITSTATUS(status);
        if code == 128 + libc::SIGKILL && cfg.init && cg.oom_kills() > 0 {
            ExitStatus::OomKilled
        } else {
            ExitStatus::Exited(code)
        }
    };
    Ok(outcome)
}

struct NoObs;
impl Observer for NoObs {
    fn started(&mut self, _: i32) {}
    fn phase(&mut self, _: Phase, _: u64) {}
}

/// Reads the child's report records until EOF, forwarding phase marks; returns the error record
/// if the child sent one. A read error counts as EOF (the child is gone either way).
fn read_reports(
    rep: &mut std::fs::File,
    obs: &mut dyn Observer,
) -> std::result::Result<(), Record> {
    loop {
        let mut r = Record::default();
        // SAFETY: Record is plain old data; we fill exactly its bytes.
        let buf = unsafe {
            std::slice::from_raw_parts_mut(
                &mut r as *mut Record as *mut u8,
                std::mem::size_of::<Record>(),
            )
        };
        match std::io::Read::read_exact(rep, buf) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Ok(()),
        }
        match r.kind {
            REC_PHASE_MOUNTS => obs.phase(Phase::Mounts, r.value),
            REC_PHASE_CGROUP => obs.phase(Phase::Cgroup, r.value),
            REC_ERROR => return Err(r),
            _ => {}
        }
    }
}

/// The watchdog: waits on a pidfd (no signals, no process-wide timer, so concurrent runs in one
/// process do not disturb each other) until `pid` exits or `limit` passes; then SIGKILLs it.
/// Returns whether it had to kill. The caller reaps the child either way.
fn wait_or_kill(pid: i32, limit: Duration) -> bool {
    // SAFETY: pidfd_open on our own unreaped child.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as RawFd;
    if pidfd < 0 {
        return false;
    }
    let deadline = std::time::Instant::now() + limit;
    let mut killed = false;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            // SAFETY: signalling our own child through its pidfd (immune to pid reuse).
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    pidfd,
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            };
            killed = true;
            break;
        }
        let mut p = libc::pollfd {
            fd: pidfd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, ms.max(1)) };
        if r > 0 {
            break;
        }
        if r < 0 && sys::last_errno() != libc::EINTR {
            break;
        }
    }
    sys::close(pidfd);
    killed
}

fn setup_error(r: &Record, mounts: &MountPlan, process: &ProcessPlan) -> Error {
    let errno = nix::errno::Errno::from_raw(r.errno);
    if r.step == Step::Exec as u32 {
        return if r.errno == libc::ENOENT {
            Error::CommandNotFound(process.command.clone())
        } else {
            Error::CommandNotExecutable {
                cmd: process.command.clone(),
                errno,
            }
        };
    }
    let step = if r.step == Step::Mount as u32 {
        mounts
            .ops
            .get(r.index as usize)
            .map(|(d, _)| d.clone())
            .unwrap_or_else(|| "mount".into())
    } else if r.step == Step::Mask as u32 {
        mounts.mask_desc(r.index as usize)
    } else {
        STEP_NAMES
            .get(r.step as usize)
            .copied()
            .unwrap_or("setup")
            .to_string()
    };
    Error::Setup {
        step,
        errno,
        hint: step_hint(r.step, r.errno),
    }
}
