//! What the guest init must do, written as JSON into the root disk's last bytes before each
//! boot by the host side and read by the init (`vmm/init`): one definition for both.

use crate::ProcessSpec;

/// Where the init lives on the root disk (the kernel's `init=`).
pub const INIT_PATH: &str = "/.vcompare/init";
/// Size of the area after the root file system that holds the spec.
pub const SPEC_AREA_BYTES: u64 = 64 * 1024;
/// First bytes of the spec area; a little-endian u32 length and the JSON follow.
pub const SPEC_MAGIC: &[u8; 8] = b"VCSPEC01";
/// The spec area for `json`: magic, little-endian u32 length, JSON, zero padding to
/// [`SPEC_AREA_BYTES`]; `None` if it does not fit. The VMM side writes it ([`encode`]), the
/// init reads it ([`decode`]): one definition of the format for both.
pub mod spec_area {
    use super::{SPEC_AREA_BYTES, SPEC_MAGIC};

    const HEADER: usize = 8 + 4;

    /// The whole area for `json`, or `None` if it is too large.
    pub fn encode(json: &[u8]) -> Option<Vec<u8>> {
        if HEADER + json.len() > SPEC_AREA_BYTES as usize {
            return None;
        }
        let mut area = vec![0u8; SPEC_AREA_BYTES as usize];
        area[..8].copy_from_slice(SPEC_MAGIC);
        area[8..HEADER].copy_from_slice(&(json.len() as u32).to_le_bytes());
        area[HEADER..HEADER + json.len()].copy_from_slice(json);
        Some(area)
    }

    /// The JSON in an area, or why there is none.
    pub fn decode(area: &[u8]) -> Result<&[u8], &'static str> {
        if area.get(..8) != Some(&SPEC_MAGIC[..]) {
            return Err("no spec (magic missing)");
        }
        let len = u32::from_le_bytes(area[8..HEADER].try_into().expect("4 bytes")) as usize;
        area.get(HEADER..HEADER + len)
            .ok_or("spec length out of range")
    }
}

/// Optional kernel command-line variable (the kernel hands it to the init as environment)
/// naming the block device whose spec area the init reads; `/dev/vda` without it.
pub const SPEC_DEVICE_VAR: &str = "vcompare_spec";

/// Variables the init hands from its own environment (which the kernel builds from unknown
/// `NAME=value` command-line arguments) to the entrypoint, unless the run sets them itself.
/// `GLIBC_TUNABLES` carries the PVM workaround that keeps glibc off vector registers the
/// guest kernel does not switch (see `vcompare_vmm::backend_detect`).
pub const INHERITED_ENV: &[&str] = &["GLIBC_TUNABLES"];

/// `envp` for the entrypoint: the run's `env`, plus each [`INHERITED_ENV`] variable that the
/// init's own environment has and the run does not set.
pub fn entrypoint_env(env: &[String], own: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let mut out = env.to_vec();
    for name in INHERITED_ENV {
        let set = env
            .iter()
            .any(|e| e.split_once('=').is_some_and(|(k, _)| k == *name));
        if !set {
            if let Some(v) = own(name) {
                out.push(format!("{name}={v}"));
            }
        }
    }
    out
}

/// Instructions for the guest init (PID 1).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct GuestSpec {
    /// The entrypoint (flattened: the JSON keeps its `args`, `env`, … keys).
    #[serde(flatten)]
    pub process: ProcessSpec,
    /// Hostname.
    pub hostname: String,
    /// Shared host directories to mount (virtio-9p), in order.
    #[serde(default)]
    pub shares: Vec<GuestShare>,
    /// I/O port of the boot-timer device (phase reports, exit status).
    pub boot_timer_port: u16,
    /// `--network`: the guest's `eth0` (a virtio-net device) as the init configures it;
    /// `None` = `--network none`, only `lo`.
    #[serde(default)]
    pub network: Option<GuestNetwork>,
    /// `run -i`/`-t`: the entrypoint's stdio goes over the guest agent (see
    /// [`crate::agent`]): the init starts the agent, waits for the host's
    /// [`crate::agent::Message::Attach`] and starts the entrypoint with a pty (`-t`) or pipes
    /// on that connection. `false`: stdout/stderr on the console, stdin `/dev/null`.
    #[serde(default)]
    pub attach: bool,
    /// Fresh random bytes (hex) the init adds to the guest kernel's entropy pool and then
    /// reseeds its CRNG with: VMs restored from one snapshot start with the same RNG state,
    /// and must not hand out the same "random" bytes.
    #[serde(default)]
    pub entropy: String,
}

/// One network interface as the guest init configures it (the host side allocated the
/// address from the network's IPAM, so a VM and a container on one network share a subnet).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct GuestNetwork {
    /// Interface name in the guest (`eth0`).
    pub interface: String,
    /// IPv4 address, dotted quad.
    pub address: String,
    /// Prefix length of the subnet (24 for a /24).
    pub prefix_len: u8,
    /// Default gateway (the bridge's address), dotted quad.
    pub gateway: String,
    /// The interface's MAC address, `aa:bb:cc:dd:ee:ff` (the VMM's virtio-net device has it).
    pub mac: String,
    /// Contents for `/etc/resolv.conf` (written by the init; empty = leave the image's file).
    pub resolv_conf: String,
    /// Contents for `/etc/hosts` (written by the init; empty = leave the image's file).
    pub hosts: String,
}

/// One shared directory as the guest init mounts it.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct GuestShare {
    /// virtio-9p mount tag.
    pub tag: String,
    /// Absolute mount point inside the image.
    pub path: String,
    /// Mount read-only.
    pub read_only: bool,
}

/// The I/O port of the VMM's boot-timer device: the init writes one 32-bit report there
/// (`phase | arg << 8`, see [`encode_report`]). Unused by PC hardware. Also the default of
/// [`GuestSpec::boot_timer_port`] and what the init uses before it has read the spec.
pub const BOOT_TIMER_PORT: u16 = 0x4f0;

/// Byte the VMM sends on the guest console, followed by a signal number, to ask the init to
/// send that signal to the entrypoint (SIGTERM = the shutdown request of `stop`). ASCII "file
/// separator": never typed by accident.
pub const SIGNAL_BYTE: u8 = 0x1c;

/// Byte the VMM sends on the guest console once the init reported [`Phase::Ready`] (and any
/// snapshot was taken), followed by the host's wall-clock time and a newline (see
/// [`go_message`]): the init waits for it, so a snapshot never races the init, and a VM
/// restored from that snapshot learns the current time from it. ASCII "group separator".
pub const GO_BYTE: u8 = 0x1d;

/// The go message: [`GO_BYTE`], the host's CLOCK_REALTIME in nanoseconds (decimal ASCII, so
/// no terminal setting can alter it) and `\n`. It fits the UART's 64-byte receive FIFO.
pub fn go_message(realtime_ns: u64) -> Vec<u8> {
    let mut m = vec![GO_BYTE];
    m.extend_from_slice(realtime_ns.to_string().as_bytes());
    m.push(b'\n');
    m
}

/// The go message stamped with the host's CLOCK_REALTIME now: what a VMM (ours, or a peer's
/// serial input in the benchmarks) sends when the init reports ready.
pub fn go_message_now() -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    go_message(now)
}

/// The wall-clock time in a go message's text after [`GO_BYTE`] (up to the newline).
pub fn parse_go(text: &[u8]) -> Option<u64> {
    std::str::from_utf8(text).ok()?.trim().parse().ok()
}

/// Opening of a console marker, `ESC _ vcompare:<body> ESC \` (an APC sequence terminals
/// ignore): how the init reports to the boot timer when the guest kernel has no ioperm().
pub const MARKER_START: &[u8] = b"\x1b_vcompare:";
/// End of a console marker (ST, the string terminator).
pub const MARKER_END: &[u8] = b"\x1b\\";
/// Body prefix of the marker that carries the guest's self-description (a JSON object).
pub const MARKER_INFO_PREFIX: &str = "info:";

/// The console marker with `body` (a report value in decimal, or `info:<json>`).
pub fn console_marker(body: &str) -> String {
    // Both ends are ASCII, so the lossy conversions never lose anything.
    format!(
        "{}{body}{}",
        String::from_utf8_lossy(MARKER_START),
        String::from_utf8_lossy(MARKER_END)
    )
}

/// Guest phases as numbered in the boot-timer protocol (the report value's low byte). The
/// serde names (snake_case) are what the VMM's result file calls them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// 1: PID 1 (our init) runs: the kernel boot is over.
    InitStart = 1,
    /// 2: the root disk is mounted and the spec read.
    RootMounted = 2,
    /// 3: the entrypoint is about to exec.
    EntrypointExec = 3,
    /// 4: the entrypoint ended; argument = [`exit_arg`] of its status.
    EntrypointExit = 4,
    /// 5: init failed before the entrypoint ran; argument = errno. Details are on the console.
    InitFailed = 5,
    /// 6: the init has mounted /proc, /sys and /dev and has not read the run's spec yet:
    /// the point where the VMM may snapshot the VM (every run is alike up to here). The
    /// init then waits for [`GO_BYTE`] on the console before it goes on.
    Ready = 6,
}

impl Phase {
    /// Every phase, in protocol order.
    pub const ALL: [Phase; 6] = [
        Phase::InitStart,
        Phase::RootMounted,
        Phase::EntrypointExec,
        Phase::EntrypointExit,
        Phase::InitFailed,
        Phase::Ready,
    ];

    /// The protocol number.
    pub fn to_u32(self) -> u32 {
        self as u32
    }

    /// The phase numbered `n`, if there is one.
    pub fn from_u32(n: u32) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.to_u32() == n)
    }
}

/// One report as the init sends it: the phase in the low byte, a 24-bit argument above.
pub fn encode_report(phase: Phase, arg: u32) -> u32 {
    phase.to_u32() | (arg << 8)
}

/// The phase and argument of a report value; `None` for an unknown phase.
pub fn decode_report(value: u32) -> Option<(Phase, u32)> {
    Some((Phase::from_u32(value & 0xff)?, value >> 8))
}

/// The [`Phase::EntrypointExit`] argument: exit code in bits 0..8, signal in bits 8..16.
pub fn exit_arg(code: i32, signal: i32) -> u32 {
    (code as u32 & 0xff) | ((signal as u32 & 0xff) << 8)
}

/// (exit code, signal) from a [`Phase::EntrypointExit`] argument; signal 0 = exited.
pub fn exit_from_arg(arg: u32) -> (i32, i32) {
    ((arg & 0xff) as i32, ((arg >> 8) & 0xff) as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inherited_variables_reach_the_entrypoint_unless_the_run_sets_them() {
        let own = |k: &str| (k == "GLIBC_TUNABLES").then(|| "glibc.cpu.hwcaps=-AVX".to_string());
        let env = vec!["PATH=/bin".to_string()];
        assert_eq!(
            entrypoint_env(&env, own),
            ["PATH=/bin", "GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX"]
        );
        let mine = vec!["GLIBC_TUNABLES=x".to_string()];
        assert_eq!(entrypoint_env(&mine, own), ["GLIBC_TUNABLES=x"]);
        assert_eq!(entrypoint_env(&env, |_| None), ["PATH=/bin"]);
    }

    #[test]
    fn phase_numbers_round_trip() {
        for (n, p) in (1..).zip(Phase::ALL) {
            assert_eq!(p.to_u32(), n);
            assert_eq!(Phase::from_u32(n), Some(p));
        }
        assert_eq!(Phase::from_u32(0), None);
        assert_eq!(Phase::from_u32(7), None);
        assert_eq!(Phase::from_u32(0x77), None);
    }

    #[test]
    fn go_message_carries_the_wall_clock_and_fits_the_uart_fifo() {
        let now = 1_764_633_600_123_456_789u64;
        let m = go_message(now);
        assert_eq!(m[0], GO_BYTE);
        assert_eq!(*m.last().unwrap(), b'\n');
        assert!(m.len() <= 64, "{} bytes", m.len());
        assert_eq!(parse_go(&m[1..]), Some(now));
        assert_eq!(parse_go(b"12x\n"), None);
    }

    #[test]
    fn reports_and_exit_status_round_trip() {
        let v = encode_report(Phase::EntrypointExit, exit_arg(42, 9));
        assert_eq!(v, 4 | (42 << 8) | (9 << 16));
        let (p, arg) = decode_report(v).unwrap();
        assert_eq!((p, exit_from_arg(arg)), (Phase::EntrypointExit, (42, 9)));
        assert_eq!(decode_report(0x77), None);
    }
}
