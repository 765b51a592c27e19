//! Where vcompare keeps its data: `--root`, `$VCOMPARE_ROOT`, `/var/lib/vcompare` for root,
//! `$XDG_DATA_HOME/vcompare` (or `~/.local/share/vcompare`) for other users.

use std::path::PathBuf;

/// The default data directory for the current user.
pub fn default_root() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/vcompare");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("vcompare");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/vcompare")
}
