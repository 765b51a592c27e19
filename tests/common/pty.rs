//! A real pseudo-terminal for end-to-end tests of `run -it` and `exec -it`: vcompare runs on
//! the slave side (its controlling terminal, as in a user's shell), the test types on the
//! master side and reads what comes back. One interactive shell script serves both modes.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use super::{process_alive, text, wait_for};

/// A `vcompare` process whose stdin, stdout and stderr are the slave of a fresh pty, which is
/// also its controlling terminal; everything it writes is collected from the master.
pub struct PtySession {
    master: std::fs::File,
    child: Child,
    output: Arc<Mutex<Vec<u8>>>,
    /// How much of `output` earlier `expect` calls consumed.
    seen: usize,
}

impl PtySession {
    /// Starts `cmd` (a `vcompare` command line) on a fresh terminal of 24×80.
    pub fn spawn(cmd: Command) -> PtySession {
        PtySession::spawn_sized(cmd, 24, 80)
    }

    /// Starts `cmd` on a fresh terminal of `rows`×`cols`.
    pub fn spawn_sized(mut cmd: Command, rows: u16, cols: u16) -> PtySession {
        let size = nix::pty::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&size), None).expect("openpty");
        cmd.stdin(Stdio::from(pty.slave.try_clone().unwrap()))
            .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
            .stderr(Stdio::from(pty.slave));
        // SAFETY: setsid and ioctl are async-signal-safe; run in the child before exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn vcompare");
        // Our copies of the slave go with `cmd`: the master reads EIO once vcompare is gone.
        drop(cmd);
        let master = std::fs::File::from(pty.master);
        let output = Arc::new(Mutex::new(Vec::new()));
        let (mut reader, sink) = (master.try_clone().unwrap(), output.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        PtySession {
            master,
            child,
            output,
            seen: 0,
        }
    }

    /// Resizes the terminal, as a user's terminal window does (its session gets SIGWINCH).
    pub fn resize(&self, rows: u16, cols: u16) {
        use std::os::fd::AsRawFd;
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ on our own master with a stack winsize.
        let r = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        assert_eq!(r, 0, "TIOCSWINSZ");
    }

    /// Types `bytes` on the terminal.
    pub fn send(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
    }

    /// Waits until the output after what earlier calls consumed contains `needle`; returns the
    /// text up to and including it, and consumes it.
    pub fn expect(&mut self, needle: &str) -> String {
        let out = self.output.clone();
        let from = self.seen;
        let (text, end) = wait_for(&format!("`{needle:?}` on the terminal"), || {
            let all = String::from_utf8_lossy(&out.lock().unwrap()[from..]).into_owned();
            all.find(needle).map(|i| {
                let t = all[..i + needle.len()].to_string();
                let n = t.len();
                (t, n)
            })
        });
        self.seen = from + end;
        text
    }

    /// Everything printed so far (for failure messages).
    pub fn transcript(&self) -> String {
        text(&self.output.lock().unwrap())
    }

    /// Waits for vcompare to exit.
    pub fn wait(mut self) -> ExitStatus {
        wait_for("vcompare to exit", || self.child.try_wait().unwrap())
    }
}

/// Pids of host processes whose command line is exactly `argv`.
pub fn pids_running(argv: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

/// Where the shell's processes run, which decides how the test sees its `sleep` start.
pub enum Side {
    /// A container: its processes are host processes.
    Host,
    /// A microVM: its processes live in the guest kernel.
    Guest,
}

/// One interactive busybox shell session on `s`, the same for `run -it` and `exec -it` in
/// both modes: arithmetic comes back, `tty` names a /dev/pts device, Ctrl-C interrupts a
/// foreground `sleep` (130 = 128 + SIGINT) and leaves the shell alive, `exit 5` ends it.
pub fn drive_shell(mut s: PtySession, on: Side) -> ExitStatus {
    // Typing before the prompt could reach the outer terminal before vcompare made it raw
    // (then Ctrl-C would signal vcompare itself): wait for the shell's prompt first.
    s.expect("# ");
    s.send(b"echo $((6*7))\n");
    s.expect("\r\n42\r\n");
    s.expect("# ");
    s.send(b"tty\n");
    let out = s.expect("# ");
    let dev = out
        .split("\r\n")
        .find(|l| l.starts_with("/dev/"))
        .unwrap_or_else(|| panic!("no tty line in {out:?}"));
    let n = dev
        .strip_prefix("/dev/pts/")
        .unwrap_or_else(|| panic!("tty printed {dev:?}, not a /dev/pts device"));
    assert!(n.parse::<u32>().is_ok(), "tty printed {dev:?}");
    // Ctrl-C: the instance's terminal sends SIGINT to its foreground job.
    match on {
        Side::Host => {
            s.send(b"sleep 4242\n");
            let sleeper = wait_for("`sleep 4242` to run in the container", || {
                pids_running(&["sleep", "4242"]).first().copied()
            });
            s.send(b"\x03");
            wait_for("the interrupted sleep to end", || {
                (!process_alive(sleeper)).then_some(())
            });
        }
        Side::Guest => {
            // The guest's processes are not visible here: the job itself says it runs (by
            // then the shell has made it the terminal's foreground job), then becomes the
            // sleep; only an interrupted sleep gives the prompt back before 4242 s.
            s.send(b"sh -c 'echo sleep-starts; exec sleep 4242'\n");
            s.expect("\r\nsleep-starts\r\n");
            s.send(b"\x03");
        }
    }
    s.expect("# ");
    s.send(b"echo rc=$?\n");
    s.expect("\r\nrc=130\r\n");
    s.expect("# ");
    s.send(b"exit 5\n");
    let transcript = s.transcript();
    let st = s.wait();
    assert_eq!(st.code(), Some(5), "{transcript}");
    st
}
