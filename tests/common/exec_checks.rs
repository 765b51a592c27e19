//! The `vcompare exec` contract, checked the same way for a container and a microVM: one
//! list of commands and expected results, so "exec behaves the same in both modes" is one
//! test body run twice, not two bodies that could drift apart.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use super::text;

/// Runs `vcompare ARGS…` with `input` on stdin (or /dev/null) and returns its output.
pub struct Exec<'a> {
    /// Builds the `vcompare` command line (data root, test network namespace).
    pub cmd: &'a dyn Fn(&[&str]) -> Command,
    /// The instance to exec into (running, from the busybox-based image, user 0).
    pub instance: &'a str,
}

impl Exec<'_> {
    /// `vcompare exec FLAGS… INSTANCE CMD…` with `input` on stdin.
    pub fn run(&self, flags: &[&str], cmd: &[&str], input: Option<&[u8]>) -> Output {
        let mut args = vec!["exec"];
        args.extend_from_slice(flags);
        args.push(self.instance);
        args.extend_from_slice(cmd);
        let mut c = (self.cmd)(&args);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        c.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = c.spawn().expect("spawn vcompare exec");
        if let Some(bytes) = input {
            let mut stdin = child.stdin.take().unwrap();
            let bytes = bytes.to_vec();
            // A writer thread: the command's output is read at the same time, so a large
            // input cannot deadlock against a full output pipe.
            std::thread::spawn(move || {
                let _ = stdin.write_all(&bytes);
            });
        }
        child.wait_with_output().unwrap()
    }

    /// Runs and asserts exit code `code`; returns stdout.
    pub fn expect(&self, flags: &[&str], cmd: &[&str], input: Option<&[u8]>, code: i32) -> String {
        let o = self.run(flags, cmd, input);
        assert_eq!(
            o.status.code(),
            Some(code),
            "exec {flags:?} {cmd:?}: stdout {:?} stderr {:?}",
            text(&o.stdout),
            text(&o.stderr)
        );
        text(&o.stdout)
    }
}

/// Every check of the contract; panics naming the first that fails.
pub fn check_exec_contract(e: &Exec<'_>) {
    // Exit codes: a code, a signal (128+N), a missing command (127) with the container's
    // sentence, a file that is not executable (126).
    e.expect(&[], &["true"], None, 0);
    e.expect(&[], &["sh", "-c", "exit 3"], None, 3);
    e.expect(&[], &["sh", "-c", "kill -9 $$"], None, 137);
    let o = e.run(&[], &["no-such-command-xyz"], None);
    assert_eq!(o.status.code(), Some(127), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(
        err.contains("no-such-command-xyz") && err.lines().count() == 1,
        "one line naming the command: {err:?}"
    );
    e.expect(
        &[],
        &["sh", "-c", "echo data > /tmp/not-a-program"],
        None,
        0,
    );
    e.expect(&[], &["/tmp/not-a-program"], None, 126);

    // stdout and stderr stay apart.
    let o = e.run(&[], &["sh", "-c", "echo out; echo err >&2"], None);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(text(&o.stdout), "out\n");
    assert_eq!(text(&o.stderr), "err\n");

    // -e adds to (and overrides) the instance's environment, -w and -u replace its
    // directory and user; without them the instance's own apply.
    let out = e.expect(
        &["-e", "GREETING=hi there", "-w", "/tmp", "-u", "1000:1001"],
        &[
            "sh",
            "-c",
            "echo \"$GREETING\"; pwd; id -u; id -g; echo ${PATH:+has-path}",
        ],
        None,
        0,
    );
    assert_eq!(out, "hi there\n/tmp\n1000\n1001\nhas-path\n");
    let out = e.expect(&[], &["sh", "-c", "pwd; id -u"], None, 0);
    assert_eq!(out, "/\n0\n");
    let o = e.run(&["-w", "relative"], &["true"], None);
    assert_ne!(o.status.code(), Some(0), "a relative -w is refused");

    // Without -i stdin is empty; with -i it streams, byte for byte: `cat` stores it and a
    // second exec reads it back. ~600 KB: more than the pipes' and the VM channel's buffers
    // (flow control on every hop), small enough for a nested guest whose kernel code is
    // emulated. `cat` moves bytes with read/write only, so the check sees exactly what the
    // exec path delivered (a hashing tool in the guest would add its own copies).
    assert_eq!(e.expect(&[], &["cat"], Some(b"ignored"), 0), "");
    let input: Vec<u8> = (0..600_000u32).map(|i| (i * 7 % 251) as u8).collect();
    e.expect(
        &["-i"],
        &["sh", "-c", "cat > /tmp/stdin-copy"],
        Some(&input),
        0,
    );
    let o = e.run(&[], &["cat", "/tmp/stdin-copy"], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        o.stdout == input,
        "stdin arrived changed ({} of {} bytes)",
        o.stdout.len(),
        input.len()
    );

    // Large output arrives whole and in order (generated in user space, so a nested guest
    // makes it at native speed).
    let o = e.run(&[], &["seq", "1", "100000"], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let want: String = (1..=100_000).map(|i| format!("{i}\n")).collect();
    assert!(
        o.stdout == want.as_bytes(),
        "seq output changed: {} of {} bytes",
        o.stdout.len(),
        want.len()
    );

    // -t: a terminal from the instance's own devpts (CRLF line ends show the pty).
    let out = e.expect(&["-t"], &["sh", "-c", "tty; echo x"], None, 0);
    let first = out.split("\r\n").next().unwrap_or("");
    assert!(first.starts_with("/dev/pts/"), "tty printed {out:?}");
    assert!(out.ends_with("x\r\n"), "{out:?}");
}
