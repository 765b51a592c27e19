//! Unix socket paths of any length. `sockaddr_un` holds at most 107 path bytes, but data
//! roots can be deeper than that; a longer path is reached through the magic link
//! `/proc/self/fd/<O_PATH fd of its directory>/<name>`, which the kernel resolves to the
//! real directory, so neither the process's working directory nor the path changes.

use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// Longest path `sockaddr_un.sun_path` takes (108 bytes with the terminating NUL).
pub const MAX_SUN_PATH: usize = 107;

/// Runs `f` with a path that names the same file as `path` and fits `sockaddr_un`.
fn with_short_path<T>(path: &Path, f: impl FnOnce(&Path) -> io::Result<T>) -> io::Result<T> {
    if path.as_os_str().len() <= MAX_SUN_PATH {
        return f(path);
    }
    let too_long = || io::Error::from_raw_os_error(libc::ENAMETOOLONG);
    let name = path.file_name().ok_or_else(too_long)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)?;
    let short = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
    if short.as_os_str().len() > MAX_SUN_PATH {
        return Err(too_long());
    }
    f(&short) // `dir` stays open until the call is done
}

/// `<path>_<port>`: where a guest connection to host port `port` goes.
pub fn port_path(path: &Path, port: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(OsStr::new(&format!("_{port}")));
    PathBuf::from(s)
}

/// Binds a non-blocking listener at `path`, replacing a stale socket file left there by a
/// VMM that died (any other kind of file is left alone and the bind fails).
pub fn bind_listener(path: &Path) -> io::Result<UnixListener> {
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if m.file_type().is_socket() {
            std::fs::remove_file(path)?;
        }
    }
    let l = with_short_path(path, |p| UnixListener::bind(p))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Connects to the listener at `path` without ever blocking: a listener whose backlog is
/// full fails with `EAGAIN` instead of stalling the caller (a vCPU, for the device). The
/// stream returned is non-blocking.
pub fn connect_nonblocking(path: &Path) -> io::Result<UnixStream> {
    with_short_path(path, |p| {
        let bytes = p.as_os_str().as_bytes();
        // SAFETY: socket() takes no pointers; the result is checked before it is owned.
        let raw = unsafe {
            libc::socket(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_un is plain old data; all zeroes is a valid (empty) value.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (d, &s) in addr.sun_path.iter_mut().zip(bytes) {
            *d = s as libc::c_char;
        }
        let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
        // SAFETY: `addr` is a valid sockaddr_un of at least `len` bytes (the path was checked
        // to fit with its NUL); connect only reads it.
        let rc = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_un).cast(),
                len as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(UnixStream::from(fd))
    })
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn long_paths_bind_and_connect_through_proc_self_fd() {
        let mut dir = std::env::temp_dir().join(format!("vcmp-vsock-long-{}", std::process::id()));
        while dir.as_os_str().len() < 150 {
            dir.push("deeper-directory-level");
        }
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vsock.sock");
        let _stale = bind_listener(&path).unwrap();
        drop(_stale); // leaves the socket file behind, as a crashed VMM would
        let l = bind_listener(&path).expect("stale socket replaced");
        let c = connect_nonblocking(&path).unwrap();
        let (s, _) = l.accept().unwrap();
        drop((c, s));
        std::fs::remove_dir_all(
            std::env::temp_dir().join(format!("vcmp-vsock-long-{}", std::process::id())),
        )
        .unwrap();
    }

    #[test]
    fn port_path_appends_the_port() {
        assert_eq!(
            port_path(Path::new("/run/v.sock"), 52),
            Path::new("/run/v.sock_52")
        );
    }
}
