//! Kernel switches a bridge network needs, written under `/proc/sys` of the calling thread's
//! network namespace (so tests that run in a namespace of their own change nothing outside).

use crate::{Error, Result};

/// Writes `value` to the sysctl `key` (dotted form, e.g. `net.ipv4.ip_forward`). Skips the
/// write when the value is already set, so a read-only `/proc/sys` that already says the
/// right thing is not an error.
pub fn set(key: &str, value: &str) -> Result<()> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == value) {
        return Ok(());
    }
    std::fs::write(&path, value)
        .map_err(|e| Error::io(format!("setting {key}={value} in"), &path, e))
}

/// Reads the sysctl `key` (dotted form); `None` if it does not exist here.
pub fn get(key: &str) -> Option<String> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::read_to_string(path)
        .ok()
        .map(|v| v.trim().to_string())
}
