//! Process identity that survives pid reuse: a pid is only "ours" if its start time (field 22
//! of /proc/PID/stat, in clock ticks since boot) matches the one recorded when it started.

/// Start time of `pid` in clock ticks since boot, or None if it does not exist.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); field 22 is index 19.
    if fields.first() == Some(&"Z") {
        return None; // a zombie is as good as gone
    }
    fields.get(19)?.parse().ok()
}

/// True if `pid` is alive and is the same process that started at `start`.
pub fn is_same_alive(pid: i32, start: Option<u64>) -> bool {
    pid > 0 && start.is_some() && start_time(pid) == start
}

/// Parses a signal name (`KILL`, `SIGTERM`, `term`) or number.
pub fn parse_signal(s: &str) -> Option<nix::sys::signal::Signal> {
    use std::str::FromStr;
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).ok();
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    nix::sys::signal::Signal::from_str(&name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_pid_reuse_is_detected() {
        let me = std::process::id() as i32;
        let t = start_time(me);
        assert!(t.is_some());
        assert!(is_same_alive(me, t));
        assert!(!is_same_alive(me, t.map(|v| v + 1)));
        assert!(!is_same_alive(0, t));
    }

    #[test]
    fn parses_signal_names_and_numbers() {
        use nix::sys::signal::Signal;
        assert_eq!(parse_signal("KILL"), Some(Signal::SIGKILL));
        assert_eq!(parse_signal("sigterm"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("15"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("NOPE"), None);
    }
}
