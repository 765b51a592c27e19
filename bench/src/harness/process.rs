//! Running child processes: to completion with errors that say what failed ([`output`],
//! [`failed`]), or spawned and timed from outside ([`spawn_timed`], [`Timed::finish`]) with the
//! one exit detector every subject shares ([`wait_exit`]), plus reading the probe's JSON lines.
//! Separate from [`super::Harness`] because peers and suites use it for commands that are not
//! `vcompare` calls.

use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{BenchError, Result};

/// Runs `cmd` to completion; a non-zero exit becomes [`BenchError::Failed`] with stderr's last line.
pub fn output(mut cmd: Command, label: &str) -> Result<Output> {
    let out = cmd.output().map_err(|source| BenchError::Spawn {
        cmd: label.to_string(),
        source,
    })?;
    if !out.status.success() {
        return Err(failed(
            label,
            &out.status.to_string(),
            &out.stderr,
            &out.stdout,
        ));
    }
    Ok(out)
}

/// Builds a [`BenchError::Failed`] from captured output.
pub fn failed(label: &str, status: &str, stderr: &[u8], stdout: &[u8]) -> BenchError {
    // Prefer the line that says what went wrong ("…error: …"), else the last line.
    let pick = |b: &[u8]| {
        let text = String::from_utf8_lossy(b);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines
            .iter()
            .rev()
            .find(|l| l.to_lowercase().contains("error"))
            .or(lines.last())
            .map(|l| l.trim().to_string())
    };
    BenchError::Failed {
        cmd: label.to_string(),
        status: status.to_string(),
        detail: pick(stderr)
            .or_else(|| pick(stdout))
            .unwrap_or_else(|| "no output".into()),
    }
}

/// A spawned, timed process: `spawn_mono_ns` is CLOCK_MONOTONIC just before spawn.
pub struct Timed {
    /// The child.
    pub child: Child,
    /// CLOCK_MONOTONIC (ns) taken immediately before `spawn`.
    pub spawn_mono_ns: u64,
    started: Instant,
}

/// Wall time and captured output of a [`Timed`] process.
pub struct TimedOutput {
    /// Spawn → exit observed by `wait`, ns.
    pub wall_ns: u64,
    /// Exit status.
    pub status: std::process::ExitStatus,
    /// Captured stdout.
    pub stdout: Vec<u8>,
    /// Captured stderr.
    pub stderr: Vec<u8>,
}

/// CLOCK_MONOTONIC in ns: the VMM's function, the clock vcompare's phase marks use.
pub use vcompare_vmm::process::monotonic_ns;

/// Spawns `cmd` with stdout/stderr piped and notes the spawn instant.
pub fn spawn_timed(mut cmd: Command, label: &str) -> Result<Timed> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let spawn_mono_ns = monotonic_ns();
    let started = Instant::now();
    let child = cmd.spawn().map_err(|source| BenchError::Spawn {
        cmd: label.to_string(),
        source,
    })?;
    Ok(Timed {
        child,
        spawn_mono_ns,
        started,
    })
}

impl Timed {
    /// Waits for exit (reading output concurrently so a chatty child cannot block), with a
    /// timeout after which the child is killed. The end instant comes from [`wait_exit`], the
    /// one exit detector every subject shares.
    pub fn finish(mut self, label: &str, timeout: Duration) -> Result<TimedOutput> {
        let mut so = self.child.stdout.take();
        let mut se = self.child.stderr.take();
        let t_out = std::thread::spawn(move || {
            let mut b = Vec::new();
            if let Some(s) = so.as_mut() {
                let _ = s.read_to_end(&mut b);
            }
            b
        });
        let t_err = std::thread::spawn(move || {
            let mut b = Vec::new();
            if let Some(s) = se.as_mut() {
                let _ = s.read_to_end(&mut b);
            }
            b
        });
        let left = timeout.saturating_sub(self.started.elapsed());
        let exited = wait_exit(&mut self.child, left).map_err(|source| BenchError::Spawn {
            cmd: label.to_string(),
            source,
        })?;
        let Some((status, ended)) = exited else {
            let _ = self.child.kill();
            let _ = self.child.wait();
            return Err(BenchError::Timeout {
                cmd: label.to_string(),
                secs: timeout.as_secs(),
                detail: "no exit".into(),
            });
        };
        let wall_ns = ended.duration_since(self.started).as_nanos() as u64;
        Ok(TimedOutput {
            wall_ns,
            status,
            stdout: t_out.join().unwrap_or_default(),
            stderr: t_err.join().unwrap_or_default(),
        })
    }
}

/// Waits up to `timeout` for `child` to exit and returns its status with the instant the exit
/// was seen, or `None` if it still runs. The end event of every timed subject: the child's
/// pidfd (`pidfd_open`) becomes readable when the process exits and `poll` wakes at once, so
/// the instant is exact instead of up to one polling interval late (a 200 µs `try_wait` loop
/// added up to 15 % to the ≈1.3 ms host floor). The child is reaped afterwards, so the clock
/// is read before `wait`'s own cost.
pub fn wait_exit(
    child: &mut Child,
    timeout: Duration,
) -> std::io::Result<Option<(std::process::ExitStatus, Instant)>> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    if let Some(st) = child.try_wait()? {
        return Ok(Some((st, Instant::now())));
    }
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; `child` is not yet
    // reaped (we hold it), so its pid cannot have been reused.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0u32) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh fd owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // Round up so a sub-millisecond remainder still waits instead of spinning.
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        let now = Instant::now();
        if n > 0 {
            return Ok(Some((child.wait()?, now)));
        }
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        if now >= deadline {
            return Ok(child.try_wait()?.map(|st| (st, now)));
        }
    }
}

/// JSON objects printed one per line (probe output), skipping anything else.
pub fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter(Value::is_object)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_exit_sees_an_exit_and_honours_its_timeout() {
        let mut c = Command::new("true").spawn().unwrap();
        let (st, _) = wait_exit(&mut c, Duration::from_secs(10)).unwrap().unwrap();
        assert!(st.success());
        let mut c = Command::new("sleep").arg("5").spawn().unwrap();
        assert!(wait_exit(&mut c, Duration::from_millis(20))
            .unwrap()
            .is_none());
        c.kill().unwrap();
        let (st, _) = wait_exit(&mut c, Duration::from_secs(10)).unwrap().unwrap();
        assert!(!st.success());
    }
}
