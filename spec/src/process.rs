//! The process to start inside an instance: one type for `run` and `exec`, container and VM.

/// What to run, as whom and where. The CLI resolves it once from the image config and the
/// flags; each backend embeds it unchanged, so a flag cannot reach one mode and miss the other.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ProcessSpec {
    /// argv: entrypoint + command. Never empty; `args[0]` without a `/` is looked up in the
    /// instance's `PATH`.
    pub args: Vec<String>,
    /// Environment, `K=V`.
    pub env: Vec<String>,
    /// Working directory inside the instance (absolute).
    pub cwd: String,
    /// Numeric user inside the instance.
    pub uid: u32,
    /// Numeric group inside the instance.
    pub gid: u32,
}
