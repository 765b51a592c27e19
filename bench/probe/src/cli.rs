//! Argument parsing and the failure type shared by every command.
//!
//! Bad arguments must print one clear line and exit 2 (so test harnesses can tell a
//! misuse from a workload failure, which exits 1).

use std::io::Write as _;

/// Why a command failed; decides the exit status.
#[derive(Debug, PartialEq)]
pub enum Failure {
    /// The command line was wrong: exit 2.
    Usage(String),
    /// The command ran but the system refused something (I/O error, mmap failure): exit 1.
    Runtime(String),
}

impl Failure {
    /// Exit status for this failure: 2 for misuse, 1 for runtime errors.
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Runtime(_) => 1,
        }
    }

    /// The single line printed on stderr.
    pub fn message(&self) -> &str {
        match self {
            Failure::Usage(m) | Failure::Runtime(m) => m,
        }
    }
}

/// Result of running one command.
pub type Outcome = Result<(), Failure>;

/// Wraps a system error with what was being attempted, as a runtime failure.
pub fn sys_err(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure::Runtime(format!("{what}: {e}"))
}

/// Writes one line to stdout and flushes it, so output survives a later OOM kill or signal
/// and a closed pipe becomes an error instead of a panic.
pub fn emit(line: &str) -> Outcome {
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes())
        .and_then(|_| out.write_all(b"\n"))
        .and_then(|_| out.flush())
        .map_err(|e| sys_err("writing stdout", e))
}

/// The positional arguments of one command plus its usage line, for uniform error messages.
pub struct Args<'a> {
    usage: &'static str,
    args: &'a [String],
}

impl<'a> Args<'a> {
    /// `usage` is the command's synopsis without the program name, e.g. `"cpu N"`.
    pub fn new(usage: &'static str, args: &'a [String]) -> Self {
        Self { usage, args }
    }

    /// A usage failure mentioning the synopsis.
    pub fn error(&self, msg: impl std::fmt::Display) -> Failure {
        let cmd = self.usage.split(' ').next().unwrap_or(self.usage);
        Failure::Usage(format!("{cmd}: {msg} (usage: probe {})", self.usage))
    }

    /// Checks that the argument count is within `min..=max`.
    pub fn count(&self, min: usize, max: usize) -> Result<(), Failure> {
        let n = self.args.len();
        if n < min {
            Err(self.error("missing argument"))
        } else if n > max {
            Err(self.error(format!("unexpected argument {:?}", self.args[max])))
        } else {
            Ok(())
        }
    }

    /// Number of positional arguments.
    pub fn len(&self) -> usize {
        self.args.len()
    }

    /// Argument `i` as text (caller has checked the count).
    pub fn get(&self, i: usize) -> &'a str {
        &self.args[i]
    }

    /// All arguments from `i` on.
    pub fn rest(&self, i: usize) -> &'a [String] {
        &self.args[i.min(self.args.len())..]
    }

    /// Argument `i` as a non-negative decimal integer.
    pub fn u64(&self, i: usize, name: &str) -> Result<u64, Failure> {
        parse_u64(self.get(i)).ok_or_else(|| {
            self.error(format!(
                "{name} must be a non-negative integer, got {:?}",
                self.get(i)
            ))
        })
    }

    /// Argument `i` as an integer of at least 1 (sizes and counts where 0 is meaningless).
    pub fn positive(&self, i: usize, name: &str) -> Result<u64, Failure> {
        match self.u64(i, name)? {
            0 => Err(self.error(format!("{name} must be at least 1"))),
            n => Ok(n),
        }
    }

    /// Argument `i` as a size in MiB, returned in bytes (checked against overflow).
    pub fn mib(&self, i: usize, name: &str) -> Result<usize, Failure> {
        let mib = self.positive(i, name)?;
        mib.checked_mul(1 << 20)
            .and_then(|b| usize::try_from(b).ok())
            .ok_or_else(|| self.error(format!("{name} is too large: {mib}")))
    }

    /// Argument `i` as a duration in seconds (fractional allowed).
    pub fn secs(&self, i: usize, name: &str) -> Result<f64, Failure> {
        parse_secs(self.get(i)).ok_or_else(|| {
            self.error(format!(
                "{name} must be a non-negative number of seconds, got {:?}",
                self.get(i)
            ))
        })
    }
}

pub use probe::numbers::{parse_secs, parse_u64};

/// Parses a signal given as a number (`9`) or a name (`KILL`, `SIGKILL`, `kill`).
pub fn parse_signal(s: &str) -> Option<i32> {
    if let Some(n) = parse_u64(s) {
        return i32::try_from(n).ok();
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let table = [
        ("HUP", libc::SIGHUP),
        ("INT", libc::SIGINT),
        ("QUIT", libc::SIGQUIT),
        ("ILL", libc::SIGILL),
        ("TRAP", libc::SIGTRAP),
        ("ABRT", libc::SIGABRT),
        ("BUS", libc::SIGBUS),
        ("FPE", libc::SIGFPE),
        ("KILL", libc::SIGKILL),
        ("USR1", libc::SIGUSR1),
        ("SEGV", libc::SIGSEGV),
        ("USR2", libc::SIGUSR2),
        ("PIPE", libc::SIGPIPE),
        ("ALRM", libc::SIGALRM),
        ("TERM", libc::SIGTERM),
        ("XCPU", libc::SIGXCPU),
        ("XFSZ", libc::SIGXFSZ),
        ("SYS", libc::SIGSYS),
    ];
    table.iter().find(|(n, _)| *n == name).map(|&(_, sig)| sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn integers() {
        assert_eq!(parse_u64("0"), Some(0));
        assert_eq!(parse_u64("1000000"), Some(1_000_000));
        for bad in [
            "",
            "-1",
            "+1",
            " 1",
            "1e3",
            "0x10",
            "abc",
            "99999999999999999999999",
        ] {
            assert_eq!(parse_u64(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_secs("2"), Some(2.0));
        assert_eq!(parse_secs("0.25"), Some(0.25));
        assert_eq!(parse_secs(".5"), Some(0.5));
        for bad in ["", "-1", "1s", "inf", "NaN", "1.2.3", "1e99"] {
            assert_eq!(parse_secs(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn signals() {
        assert_eq!(parse_signal("9"), Some(9));
        assert_eq!(parse_signal("KILL"), Some(libc::SIGKILL));
        assert_eq!(parse_signal("sigterm"), Some(libc::SIGTERM));
        assert_eq!(parse_signal("Usr1"), Some(libc::SIGUSR1));
        assert_eq!(parse_signal("BOGUS"), None);
        assert_eq!(parse_signal("-9"), None);
    }

    #[test]
    fn args_counts_and_messages() {
        let v = strings(&["12", "x"]);
        let a = Args::new("cpu N", &v);
        assert!(a.count(1, 2).is_ok());
        let e = a.count(3, 3).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert_eq!(e.message(), "cpu: missing argument (usage: probe cpu N)");
        let e = a.count(1, 1).unwrap_err();
        assert!(
            e.message().contains("unexpected argument \"x\""),
            "{}",
            e.message()
        );
        assert_eq!(a.u64(0, "N"), Ok(12));
        assert!(a
            .u64(1, "N")
            .unwrap_err()
            .message()
            .contains("N must be a non-negative integer"));
    }

    #[test]
    fn sizes() {
        let v = strings(&["3", "0", "99999999999999"]);
        let a = Args::new("alloc MIB", &v);
        assert_eq!(a.mib(0, "MIB"), Ok(3 << 20));
        assert!(a
            .mib(1, "MIB")
            .unwrap_err()
            .message()
            .contains("at least 1"));
        assert!(a.mib(2, "MIB").unwrap_err().message().contains("too large"));
        assert_eq!(Failure::Runtime("x".into()).exit_code(), 1);
    }
}
