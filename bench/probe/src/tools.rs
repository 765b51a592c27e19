//! Small process and file helpers for tests of the runtimes themselves: exit codes,
//! signal propagation, environment and file access, usable in images without a shell.

use crate::cli::{emit, parse_signal, sys_err, Args, Failure, Outcome};
use crate::json::Object;
use std::io::Write as _;
use std::time::Duration;

/// `probe exit CODE`: exits with CODE (0-255), to check exit-status propagation.
pub fn exit(args: &[String]) -> Outcome {
    let a = Args::new("exit CODE", args);
    a.count(1, 1)?;
    let code = a.u64(0, "CODE")?;
    if code > 255 {
        return Err(a.error(format!("CODE must be 0-255, got {code}")));
    }
    std::process::exit(code as i32)
}

/// Signals whose default action is to ignore or stop, which cannot terminate the process.
const NON_FATAL: [libc::c_int; 8] = [
    libc::SIGCHLD,
    libc::SIGCONT,
    libc::SIGURG,
    libc::SIGWINCH,
    libc::SIGSTOP,
    libc::SIGTSTP,
    libc::SIGTTIN,
    libc::SIGTTOU,
];

/// `probe kill SIG`: dies by signal SIG (number or name), so tests can check that the
/// runtime reports it (e.g. as 128+SIG). Only signals that terminate by default are accepted.
pub fn kill(args: &[String]) -> Outcome {
    let a = Args::new("kill SIG", args);
    a.count(1, 1)?;
    let sig = parse_signal(a.get(0))
        .filter(|s| (1..=libc::SIGRTMAX()).contains(s))
        .ok_or_else(|| {
            a.error(format!(
                "SIG must be a signal number or name, got {:?}",
                a.get(0)
            ))
        })?;
    if NON_FATAL.contains(&sig) {
        return Err(a.error(format!(
            "signal {sig} does not terminate a process by default"
        )));
    }
    // SAFETY: plain signal/rlimit syscalls on our own process; the process is single-threaded.
    unsafe {
        // No core files from SIGSEGV/SIGABRT & co. in whatever directory we run in.
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        // Undo inherited or Rust-runtime dispositions (std ignores SIGPIPE) and masks.
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::kill(libc::getpid(), sig);
    }
    // Still alive: as PID 1 of a PID namespace the kernel drops signals we have no
    // handler for, even from ourselves. Exit like a shell would report the death instead.
    std::thread::sleep(Duration::from_millis(50));
    let code = 128 + sig;
    eprintln!("probe: kill: survived signal {sig} (PID 1 of its PID namespace?); exiting with {code} instead");
    std::process::exit(code)
}

/// `probe true`: does nothing, successfully — the minimal command for startup-time runs.
pub fn true_(args: &[String]) -> Outcome {
    Args::new("true", args).count(0, 0)
}

/// `probe echo ARGS...`: prints the arguments separated by spaces, like echo(1).
pub fn echo(args: &[String]) -> Outcome {
    emit(&args.join(" "))
}

/// `probe env`: the environment as one JSON object, keys sorted for stable diffs.
pub fn env(args: &[String]) -> Outcome {
    Args::new("env", args).count(0, 0)?;
    let mut vars: Vec<(String, String)> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    vars.sort();
    let mut o = Object::new();
    for (k, v) in &vars {
        o.str(k, v);
    }
    emit(&o.finish())
}

/// `probe write PATH TEXT`: creates or truncates PATH with exactly TEXT (no newline added).
pub fn write(args: &[String]) -> Outcome {
    let a = Args::new("write PATH TEXT", args);
    a.count(2, 2)?;
    std::fs::write(a.get(0), a.get(1)).map_err(|e| sys_err(&format!("write {}", a.get(0)), e))
}

/// `probe cat PATH`: copies the file's bytes to stdout unchanged.
pub fn cat(args: &[String]) -> Outcome {
    let a = Args::new("cat PATH", args);
    a.count(1, 1)?;
    let fail = |e| sys_err(&format!("cat {}", a.get(0)), e);
    let mut f = std::fs::File::open(a.get(0)).map_err(fail)?;
    let mut out = std::io::stdout().lock();
    std::io::copy(&mut f, &mut out).map_err(fail)?;
    out.flush()
        .map_err(|e| Failure::Runtime(format!("writing stdout: {e}")))
}
