//! `run -it`, `exec -it` and `run -i` through the real CLI: vcompare runs on the slave side of
//! a real pseudo-terminal (its controlling terminal, as in a user's shell), the test types on
//! the master side and reads what comes back. Needs root (containers); a missing capability is
//! a recorded skip (tests/common/skip.rs).

mod common;

use std::io::Write;
use std::process::Stdio;

use common::pty::{drive_shell, PtySession, Side};
use common::{process_alive, text, Env, BUSYBOX};

#[test]
fn run_it_gives_the_container_a_real_terminal() {
    crate::require_root!();
    let env = Env::with_busybox();
    let s =
        PtySession::spawn(env.cmd(&["run", "-it", "--rm", "--mode", "container", BUSYBOX, "sh"]));
    drive_shell(s, Side::Host);
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
    let s = PtySession::spawn(env.cmd(&["exec", "-it", &id[..12], "sh"]));
    drive_shell(s, Side::Host);
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
