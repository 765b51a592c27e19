//! Terminal and device calls: the pseudo-terminal of `-t`, terminal modes and window size,
//! the loopback interface, and `uname`.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use super::{check_int, errno, owned, SysResult};

/// Opens a pseudo-terminal pair on the devpts behind `/dev/ptmx` (the container's own after
/// `pivot_root`/`setns`), makes the slave the controlling terminal of a new session and
/// stdin/stdout/stderr, and returns the master. The slave is opened with `TIOCGPTPEER` (no
/// path formatting, allocation-free).
pub fn open_pty_as_stdio() -> SysResult<OwnedFd> {
    const TIOCGPTPEER: libc::c_ulong = 0x5441;
    // SAFETY: valid C string.
    let master = check_int(unsafe {
        libc::open(
            c"/dev/ptmx".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    })
    .map(|fd| owned(fd as libc::c_long))?;
    let m = master.as_raw_fd();
    let mut unlock: libc::c_int = 0;
    // SAFETY: ioctls on the fd we own, with a stack argument.
    unsafe {
        check_int(libc::ioctl(m, libc::TIOCSPTLCK, &mut unlock))?;
        let slave = owned(
            check_int(libc::ioctl(m, TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY))? as libc::c_long,
        );
        check_int(libc::setsid())?;
        check_int(libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0))?;
        for fd in 0..3 {
            check_int(libc::dup2(slave.as_raw_fd(), fd))?;
        }
        if slave.as_raw_fd() <= 2 {
            // It now is one of the stdio slots: keep it open.
            std::mem::forget(slave);
        }
    }
    Ok(master)
}

/// Copies the window size of our stdin's terminal (if any) to the pty `master`.
/// Async-signal-safe (used from the SIGWINCH handler).
pub fn copy_winsize_from_stdin(master: BorrowedFd<'_>) {
    // SAFETY: ioctls with a stack winsize.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

/// The terminal mode of stdin before [`stdin_raw_mode`] changed it.
#[derive(Clone, Copy)]
pub struct SavedTermios(libc::termios);

impl SavedTermios {
    /// Puts stdin's terminal back in the saved mode.
    pub fn restore(&self) {
        // SAFETY: restoring a termios the kernel gave us.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &self.0) };
    }
}

/// If stdin is a terminal, switches it to raw mode and returns the previous mode.
pub fn stdin_raw_mode() -> Option<SavedTermios> {
    // SAFETY: termios calls on stdin with a zeroed (valid) out-buffer.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::isatty(0) == 1 && libc::tcgetattr(0, &mut t) == 0 {
            let mut raw = t;
            libc::cfmakeraw(&mut raw);
            libc::tcsetattr(0, libc::TCSANOW, &raw);
            Some(SavedTermios(t))
        } else {
            None
        }
    }
}

/// Sets `IFF_UP | IFF_RUNNING` on `lo` in the current network namespace with two `ioctl`s on a
/// throw-away datagram socket (cheaper than netlink, and allocation-free).
pub fn loopback_up() -> SysResult<()> {
    // SAFETY: socket/ioctl calls on a zeroed ifreq whose name we fill in.
    unsafe {
        let s = owned(check_int(libc::socket(
            libc::AF_INET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            0,
        ))? as libc::c_long);
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        check_int(libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr))?;
        ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) != 0 {
            return Err(errno());
        }
    }
    Ok(())
}

/// `uname(2)` as a plain-old-data value that can cross a pipe byte for byte.
#[derive(Clone, Copy)]
pub struct Utsname(libc::utsname);

impl Utsname {
    /// Size of the wire form.
    pub const SIZE: usize = std::mem::size_of::<libc::utsname>();

    /// `uname(2)` of the current UTS namespace (allocation-free).
    pub fn current() -> Utsname {
        // SAFETY: zeroed utsname is a valid out-buffer.
        unsafe {
            let mut u: libc::utsname = std::mem::zeroed();
            libc::uname(&mut u);
            Utsname(u)
        }
    }

    /// The raw bytes, for a pipe.
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: utsname is plain old data of SIZE bytes.
        unsafe {
            std::slice::from_raw_parts(&self.0 as *const libc::utsname as *const u8, Self::SIZE)
        }
    }

    /// Rebuilds the value from [`Utsname::as_bytes`] output.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Utsname {
        // SAFETY: any byte pattern is a valid utsname (arrays of c_char).
        Utsname(unsafe { std::ptr::read_unaligned(b.as_ptr() as *const libc::utsname) })
    }

    fn field(a: &[libc::c_char]) -> String {
        let bytes: Vec<u8> = a
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The hostname.
    pub fn nodename(&self) -> String {
        Self::field(&self.0.nodename)
    }

    /// The kernel release.
    pub fn release(&self) -> String {
        Self::field(&self.0.release)
    }
}
