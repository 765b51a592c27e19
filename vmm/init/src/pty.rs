//! Pseudo-terminals for `-t`: allocated in the guest's own devpts instance (mounted at
//! /dev/pts with `newinstance,ptmxmode=0666`, so its multiplexer is /dev/pts/ptmx, not
//! /dev/ptmx, which may be devtmpfs's node for another instance).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use vcompare_spec::agent::WindowSize;

/// The multiplexer of the guest's devpts instance.
const PTMX: &std::ffi::CStr = c"/dev/pts/ptmx";

/// A new pty: (master, slave). The master is non-blocking (the relay polls it), both are
/// CLOEXEC; the slave is owned by `owner` (uid, gid) like a login terminal, so a process
/// that reopens its terminal as that user can; the window is `window` when given.
pub fn open(window: Option<WindowSize>, owner: (u32, u32)) -> std::io::Result<(OwnedFd, OwnedFd)> {
    let err = std::io::Error::last_os_error;
    // SAFETY: open of a constant path; the fd is owned right away.
    let master = unsafe {
        libc::open(
            PTMX.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC | libc::O_NONBLOCK,
        )
    };
    if master < 0 {
        return Err(err());
    }
    // SAFETY: a new fd nobody else owns.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int; TIOCGPTPEER returns a new fd for the slave.
    let slave = unsafe {
        if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) != 0 {
            return Err(err());
        }
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(err());
    }
    // SAFETY: a new fd nobody else owns.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    // SAFETY: fchown of an fd we hold; failure only leaves the slave root's.
    unsafe { libc::fchown(slave.as_raw_fd(), owner.0, owner.1) };
    if let Some(w) = window {
        set_window(master.as_raw_fd(), w);
    }
    Ok((master, slave))
}

/// TIOCSWINSZ on the master: the kernel sends SIGWINCH to the terminal's foreground group.
pub fn set_window(master: RawFd, w: WindowSize) {
    let ws = libc::winsize {
        ws_row: w.rows,
        ws_col: w.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize.
    unsafe { libc::ioctl(master, libc::TIOCSWINSZ, &ws) };
}

/// The terminal's end-of-file character (VEOF, normally ^D): what the agent writes when the
/// host's stdin ends, as a user typing ^D would.
pub fn eof_char(master: RawFd) -> u8 {
    // SAFETY: tcgetattr fills a zeroed termios.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(master, &mut t) == 0 && t.c_cc[libc::VEOF] != 0 {
            t.c_cc[libc::VEOF]
        } else {
            4
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host's devpts also has a `ptmx` node, so allocation can be checked here.
    #[test]
    fn a_pty_has_its_window_and_eof_char() {
        let Ok((m, s)) = open(Some(WindowSize { rows: 33, cols: 77 }), (0, 0)) else {
            eprintln!("no /dev/pts/ptmx on this host; skipped");
            return;
        };
        // SAFETY: an all-zero winsize is valid.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ fills one winsize.
        unsafe { libc::ioctl(s.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
        assert_eq!((ws.ws_row, ws.ws_col), (33, 77));
        assert_eq!(eof_char(m.as_raw_fd()), 4);
    }
}
