//! `run -it`, `exec -it` and `run -i` through the real CLI: vcompare runs on the slave side of
//! a real pseudo-terminal (its controlling terminal, as in a user's shell), the test types on
//! the master side and reads what comes back. Needs root (containers); a missing capability is
//! a recorded skip (tests/common/skip.rs).

mod common;

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use common::{process_alive, text, wait_for, Env, BUSYBOX};

/// A `vcompare` process whose stdin, stdout and stderr are the slave of a fresh pty, which is
/// also its controlling terminal; everything it writes is collected from the master.
struct PtySession {
    master: std::fs::File,
    child: Child,
    output: Arc<Mutex<Vec<u8>>>,
    /// How much of `output` earlier `expect` calls consumed.
    seen: usize,
}

impl PtySession {
    fn spawn(env: &Env, args: &[&str]) -> PtySession {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let mut cmd = env.cmd(args);
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

    /// Types `bytes` on the terminal.
    fn send(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
    }

    /// Waits until the output after what earlier calls consumed contains `needle`; returns the
    /// text up to and including it, and consumes it.
    fn expect(&mut self, needle: &str) -> String {
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
    fn transcript(&self) -> String {
        text(&self.output.lock().unwrap())
    }

    /// Waits for vcompare to exit.
    fn wait(mut self) -> ExitStatus {
        wait_for("vcompare to exit", || self.child.try_wait().unwrap())
    }
}

/// Pids of host processes whose command line is exactly `argv`.
fn pids_running(argv: &[&str]) -> Vec<i32> {
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

/// One interactive busybox shell session on `s`, the same for `run -it` and `exec -it`:
/// arithmetic comes back, `tty` names a /dev/pts device, Ctrl-C interrupts a foreground
/// `sleep` (130 = 128 + SIGINT) and leaves the shell alive, `exit 5` ends it.
fn drive_shell(mut s: PtySession) -> ExitStatus {
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
    // Ctrl-C: the container's terminal sends SIGINT to its foreground job.
    s.send(b"sleep 4242\n");
    let sleeper = wait_for("`sleep 4242` to run in the container", || {
        pids_running(&["sleep", "4242"]).first().copied()
    });
    s.send(b"\x03");
    wait_for("the interrupted sleep to end", || {
        (!process_alive(sleeper)).then_some(())
    });
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

#[test]
fn run_it_gives_the_container_a_real_terminal() {
    crate::require_root!();
    let env = Env::with_busybox();
    let s = PtySession::spawn(
        &env,
        &["run", "-it", "--rm", "--mode", "container", BUSYBOX, "sh"],
    );
    drive_shell(s);
    assert_eq!(
        env.ps_json(),
        Vec::<serde_json::Value>::new(),
        "--rm left an instance"
    );
}

#[test]
fn exec_it_gives_the_command_a_real_terminal() {
    crate::require_root!();
    let env = Env::with_busybox();
    let (id, pid) = env.run_detached(&[BUSYBOX, "sleep", "1000"]);
    let s = PtySession::spawn(&env, &["exec", "-it", &id[..12], "sh"]);
    drive_shell(s);
    // The exec'd shell ended; the instance's own process did not.
    assert_eq!(env.instance(&id)["status"], "running");
    assert!(process_alive(pid));
    env.ok(&["rm", "-f", &id]);
}

#[test]
fn run_i_pipes_stdin_through_and_without_i_stdin_is_empty() {
    crate::require_root!();
    let env = Env::with_busybox();
    let feed = |flags: &[&str]| {
        let mut a = vec!["run", "--rm", "--mode", "container"];
        a.extend_from_slice(flags);
        a.extend_from_slice(&[BUSYBOX, "cat"]);
        let mut child = env
            .cmd(&a)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Without -i the container does not read: a closed pipe (EPIPE) is fine then.
        let _ = child.stdin.take().unwrap().write_all(b"a\nb\n");
        child.wait_with_output().unwrap()
    };
    let o = feed(&["-i"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "a\nb\n");
    let o = feed(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout),
        "",
        "without -i the container's stdin is /dev/null"
    );
}
