//! Firecracker as a measured VM peer, on exactly what vcompare's VM boots: the same guest
//! kernel, the same kernel arguments (including the PVM workarounds, from the same function as
//! QEMU's `qemu-rootdisk` subject: [`super::qemu::prepare`] with [`BootMethod::RootDisk`]) and a
//! fresh copy of the same image disk with the run's spec on it (root on the disk, no initramfs).
//!
//! - **cold boot** (`firecracker --no-api --config-file CFG`): timed by QEMU's boot loop
//!   ([`super::qemu::boot_command`]): start before the per-boot disk copy and spec → the init's
//!   first console report; the same loop samples the VMM memory (RSS − guest RAM, the rule of
//!   every VMM) once the guest's idle probe has printed its line.
//! - **snapshot** (API socket, [`ApiClient`]): one VM boots cold, is paused when the init
//!   reports `ready` (the point vcompare's VMM snapshots at) and saved with `PUT
//!   /snapshot/create` (Full); then each restore round spawns a new firecracker and `PUT
//!   /snapshot/load`s it with `resume_vm`: launch → the load call returned (resumed), the load
//!   call alone, and — after the go message on the serial input, as vcompare's VMM sends it —
//!   launch → the entrypoint exec'd.
//!
//! The binary is `$VCOMPARE_FIRECRACKER` or `firecracker` on PATH; none found is a skip with a
//! one-line note. The bench never fetches or builds it.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use vcompare_spec::guest::Phase;

use super::qemu::{self, BootMethod, QemuBoot, QemuSetup, Until};
use crate::error::{io_at, BenchError, Result};

/// Environment variable naming the firecracker binary (else `firecracker` on PATH).
pub const BINARY_ENV: &str = "VCOMPARE_FIRECRACKER";

/// The startup/memory subject name of Firecracker's figures.
pub const SUBJECT: &str = "firecracker";

/// Guest RAM and vCPUs: vcompare's VM defaults, as for QEMU.
pub const MEMORY_MIB: u64 = qemu::MEMORY_MIB;

/// The firecracker binary to drive: [`BINARY_ENV`] if it names a file, else PATH.
pub fn binary() -> Option<PathBuf> {
    std::env::var_os(BINARY_ENV)
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| super::which("firecracker"))
}

/// Whether a firecracker binary was found (see [`binary`]).
pub fn available() -> bool {
    binary().is_some()
}

/// `firecracker --version` first line, plus how it was built when that matters for its
/// figures: a glibc (non-musl) build has no real seccomp filter (Firecracker's build installs
/// its filters for musl targets only), so it skips the filter's per-syscall cost.
pub fn version() -> Option<String> {
    let bin = binary()?;
    let v = super::version(bin.to_str()?, &["--version"])?;
    let glibc = is_dynamic_glibc(&bin);
    Some(if glibc {
        format!(
            "{v} ({}; glibc build without a real seccomp filter)",
            bin.display()
        )
    } else {
        format!("{v} ({})", bin.display())
    })
}

/// Whether `bin` is a dynamically linked ELF with the glibc loader as interpreter.
fn is_dynamic_glibc(bin: &Path) -> bool {
    std::fs::read(bin)
        .map(|b| {
            b.windows(b"ld-linux-x86-64.so.2".len())
                .any(|w| w == b"ld-linux-x86-64.so.2")
        })
        .unwrap_or(false)
}

/// What every Firecracker boot of the run needs, built once (untimed, like QEMU's setup).
#[derive(Debug, Clone)]
pub struct FirecrackerSetup {
    /// The binary.
    pub binary: PathBuf,
    /// Kernel, kernel arguments, image disk and the per-boot disk path (QEMU's root-disk
    /// preparation, so the arguments are the same function's output).
    pub vm: QemuSetup,
    /// The `--config-file` of the cold boot.
    pub config: PathBuf,
    /// Scratch directory for sockets and the snapshot.
    pub scratch: PathBuf,
}

/// The VM description shared by the config file and the API calls.
fn boot_source(vm: &QemuSetup) -> serde_json::Value {
    json!({ "kernel_image_path": vm.kernel, "boot_args": vm.cmdline })
}

/// The root drive: the disk copy, read-write; `is_root_device: false` so Firecracker adds no
/// `root=` of its own — the kernel arguments already carry vcompare's root arguments.
fn drive(disk: &Path) -> serde_json::Value {
    json!({ "drive_id": "rootfs", "path_on_host": disk, "is_root_device": false, "is_read_only": false })
}

/// 1 vCPU and [`MEMORY_MIB`], as vcompare's VM and QEMU.
fn machine_config() -> serde_json::Value {
    json!({ "vcpu_count": 1, "mem_size_mib": MEMORY_MIB })
}

/// Builds the once-per-run setup in `scratch`: kernel arguments as for `qemu-rootdisk`, and
/// the config file of the cold boot.
pub fn prepare(
    scratch: &Path,
    kernel: &Path,
    init: &Path,
    image_disk: &Path,
) -> Result<FirecrackerSetup> {
    let binary = binary().ok_or_else(|| BenchError::Failed {
        cmd: "firecracker".into(),
        status: "not found".into(),
        detail: format!("no ${BINARY_ENV} and no firecracker on PATH"),
    })?;
    let dir = scratch.join("firecracker");
    std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
    let mut vm = qemu::prepare(scratch, kernel, init, image_disk, BootMethod::RootDisk)?;
    vm.subject = SUBJECT.into();
    vm.disk = dir.join("disk.ext4");
    let config = dir.join("config.json");
    let cfg = json!({
        "boot-source": boot_source(&vm),
        "drives": [drive(&vm.disk)],
        "machine-config": machine_config(),
    });
    std::fs::write(&config, cfg.to_string()).map_err(io_at(&config))?;
    Ok(FirecrackerSetup {
        binary,
        vm,
        config,
        scratch: dir,
    })
}

/// One cold boot (`--no-api --config-file`), timed and stopped by QEMU's boot loop: the
/// same start event, end events and VMM memory rule.
pub fn boot(
    setup: &FirecrackerSetup,
    args: &[&str],
    until: Until,
    timeout: Duration,
) -> Result<QemuBoot> {
    let mut cmd = Command::new(&setup.binary);
    cmd.arg("--no-api")
        .arg("--config-file")
        .arg(&setup.config)
        .args(["--level", "Error"]);
    qemu::boot_command(
        cmd,
        "firecracker --no-api --config-file",
        &setup.vm,
        args,
        until,
        timeout,
        MEMORY_MIB << 20,
    )
}

/// A minimal HTTP/1.1 client for Firecracker's API socket: one connection per request,
/// JSON body, the status line checked. Enough for the handful of calls a snapshot needs.
pub struct ApiClient {
    socket: PathBuf,
}

impl ApiClient {
    /// A client of the API socket at `socket`.
    pub fn new(socket: &Path) -> ApiClient {
        ApiClient {
            socket: socket.to_path_buf(),
        }
    }

    /// Waits until the socket accepts a connection (firecracker has started its API thread).
    pub fn wait(&self, timeout: Duration) -> Result<()> {
        let t = Instant::now();
        loop {
            if UnixStream::connect(&self.socket).is_ok() {
                return Ok(());
            }
            if t.elapsed() > timeout {
                return Err(BenchError::Timeout {
                    cmd: format!("firecracker --api-sock {}", self.socket.display()),
                    secs: timeout.as_secs(),
                    detail: "the API socket never accepted a connection".into(),
                });
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// `METHOD PATH` with `body`; a status other than 2xx is an error carrying the reply.
    pub fn call(&self, method: &str, path: &str, body: &serde_json::Value) -> Result<()> {
        let label = format!("firecracker API {method} {path}");
        let io = |source| BenchError::Spawn {
            cmd: label.clone(),
            source,
        };
        let mut s = UnixStream::connect(&self.socket).map_err(io)?;
        let body = body.to_string();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).map_err(io)?;
        let reply = read_reply(&mut s).map_err(io)?;
        let status = parse_status(&reply).unwrap_or(0);
        if !(200..300).contains(&status) {
            return Err(BenchError::Failed {
                cmd: label,
                status: format!("HTTP {status}"),
                detail: String::from_utf8_lossy(&reply).trim().to_string(),
            });
        }
        Ok(())
    }
}

/// Reads one HTTP response: headers, then `Content-Length` bytes of body.
fn read_reply(s: &mut UnixStream) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return Ok(buf);
            }
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Ok(buf);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The status code of an HTTP/1.x status line.
pub fn parse_status(reply: &[u8]) -> Option<u16> {
    let line = reply.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|p| p.starts_with("HTTP/1."))?;
    parts.next()?.parse().ok()
}

/// A firecracker process with an API socket; killed and reaped when dropped.
struct ApiVmm {
    child: Child,
    api: ApiClient,
    /// Serial input (the go message goes here).
    stdin: Option<std::process::ChildStdin>,
    /// Console events (init, ready, exec markers as numbered in [`MARKERS`]).
    events: std::sync::mpsc::Receiver<qemu::ConsoleEvent>,
}

impl Drop for ApiVmm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.api.socket);
    }
}

/// The console markers watched in API boots: init start, ready, entrypoint exec'd.
const MARKERS: [Phase; 3] = [Phase::InitStart, Phase::Ready, Phase::EntrypointExec];

/// Spawns `firecracker --api-sock SOCKET` (console on pipes) with clock `t0` for its events.
fn spawn_api(setup: &FirecrackerSetup, socket: &Path, t0: Instant) -> Result<ApiVmm> {
    let _ = std::fs::remove_file(socket);
    let mut child = Command::new(&setup.binary)
        .arg("--api-sock")
        .arg(socket)
        .args(["--level", "Error"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| BenchError::Spawn {
            cmd: "firecracker --api-sock".into(),
            source,
        })?;
    let stdout = child.stdout.take().expect("piped");
    let stdin = child.stdin.take();
    let (events, _reader) = qemu::console_reader(
        stdout,
        t0,
        MARKERS.iter().map(|p| qemu::phase_marker(*p)).collect(),
        None,
    );
    Ok(ApiVmm {
        child,
        api: ApiClient::new(socket),
        stdin,
        events,
    })
}

impl ApiVmm {
    /// Waits for console marker `index` of [`MARKERS`]; ns after the spawn clock.
    fn wait_marker(&mut self, index: usize, timeout: Duration) -> Result<u64> {
        let t = Instant::now();
        let mut last = Vec::new();
        loop {
            match self.events.recv_timeout(Duration::from_millis(50)) {
                Ok(qemu::ConsoleEvent::Marker(i, at)) if i == index => return Ok(at),
                Ok(qemu::ConsoleEvent::Line(l)) => {
                    last.push(l);
                    if last.len() > 3 {
                        last.remove(0);
                    }
                }
                Ok(_) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(BenchError::Failed {
                        cmd: "firecracker".into(),
                        status: "console closed".into(),
                        detail: format!(
                            "no {:?} report; last console lines: {}",
                            MARKERS[index],
                            last.join(" | ")
                        ),
                    })
                }
                Err(_) => {}
            }
            if t.elapsed() > timeout {
                return Err(BenchError::Timeout {
                    cmd: "firecracker".into(),
                    secs: timeout.as_secs(),
                    detail: format!(
                        "waiting for the init's {:?} report; last console lines: {}",
                        MARKERS[index],
                        last.join(" | ")
                    ),
                });
            }
        }
    }

    /// Writes the go message to the serial input (the init waits for it after `ready`).
    fn go(&mut self) -> Result<()> {
        let msg = vcompare_spec::guest::go_message_now();
        self.stdin
            .as_mut()
            .map(|i| i.write_all(&msg))
            .transpose()
            .map_err(|source| BenchError::Spawn {
                cmd: "firecracker serial input".into(),
                source,
            })?;
        Ok(())
    }
}

/// The snapshot Firecracker took, and how long taking it paused the VM.
#[derive(Debug, Clone)]
pub struct FirecrackerSnapshot {
    /// The VM state file.
    pub state: PathBuf,
    /// The guest memory file.
    pub memory: PathBuf,
    /// The disk copy the snapshotted VM had open (every restore reopens it).
    pub disk: PathBuf,
    /// Duration of `PUT /snapshot/create` (the VM was paused just before), ns.
    pub create_ns: u64,
    /// Duration of `PATCH /vm Paused`, ns.
    pub pause_ns: u64,
}

/// One restore: spawn → load call returned (VM resumed), the load call alone, and (if seen)
/// spawn → entrypoint exec'd after the go message.
#[derive(Debug, Clone, Copy)]
pub struct FirecrackerRestore {
    /// Spawn of firecracker → `PUT /snapshot/load` (resume_vm) returned, ns.
    pub resumed_ns: u64,
    /// The load call alone, ns.
    pub load_ns: u64,
    /// Spawn → the init's "entrypoint exec'd" report, ns.
    pub exec_ns: Option<u64>,
}

/// Boots a VM through the API running `args`, pauses it when the init is ready and takes a
/// Full snapshot into the setup's scratch directory. The disk copy stays (a restore reopens it).
pub fn take_snapshot(
    setup: &FirecrackerSetup,
    args: &[&str],
    timeout: Duration,
) -> Result<FirecrackerSnapshot> {
    // Its own disk copy: the cold boots replace and remove theirs, a restore reopens this one.
    let mut vm = setup.vm.clone();
    vm.disk = setup.scratch.join("snapshot-disk.ext4");
    qemu::fresh_disk(&vm, args)?;
    let socket = setup.scratch.join("take.sock");
    let mut vmm = spawn_api(setup, &socket, Instant::now())?;
    vmm.api.wait(Duration::from_secs(10))?;
    vmm.api.call("PUT", "/boot-source", &boot_source(&vm))?;
    vmm.api.call("PUT", "/drives/rootfs", &drive(&vm.disk))?;
    vmm.api.call("PUT", "/machine-config", &machine_config())?;
    vmm.api.call(
        "PUT",
        "/actions",
        &json!({ "action_type": "InstanceStart" }),
    )?;
    vmm.wait_marker(1, timeout)?;
    let t = Instant::now();
    vmm.api
        .call("PATCH", "/vm", &json!({ "state": "Paused" }))?;
    let pause_ns = t.elapsed().as_nanos() as u64;
    let state = setup.scratch.join("snapshot.state");
    let memory = setup.scratch.join("snapshot.mem");
    let _ = std::fs::remove_file(&state);
    let _ = std::fs::remove_file(&memory);
    let t = Instant::now();
    vmm.api.call(
        "PUT",
        "/snapshot/create",
        &json!({ "snapshot_type": "Full", "snapshot_path": state, "mem_file_path": memory }),
    )?;
    let create_ns = t.elapsed().as_nanos() as u64;
    drop(vmm);
    Ok(FirecrackerSnapshot {
        state,
        memory,
        disk: vm.disk,
        create_ns,
        pause_ns,
    })
}

/// One restore of `snap` in a new firecracker: spawn → `PUT /snapshot/load` with
/// `resume_vm: true` returned; then the go message, and spawn → entrypoint exec'd if the init
/// reports it within `timeout`. The process is killed afterwards.
pub fn restore(
    setup: &FirecrackerSetup,
    snap: &FirecrackerSnapshot,
    round: usize,
    timeout: Duration,
) -> Result<FirecrackerRestore> {
    let socket = setup.scratch.join(format!("restore-{round}.sock"));
    let t0 = Instant::now();
    let mut vmm = spawn_api(setup, &socket, t0)?;
    vmm.api.wait(Duration::from_secs(10))?;
    let t = Instant::now();
    vmm.api.call(
        "PUT",
        "/snapshot/load",
        &json!({
            "snapshot_path": snap.state,
            "mem_backend": { "backend_type": "File", "backend_path": snap.memory },
            "resume_vm": true,
        }),
    )?;
    let load_ns = t.elapsed().as_nanos() as u64;
    let resumed_ns = t0.elapsed().as_nanos() as u64;
    vmm.go()?;
    let exec_ns = vmm.wait_marker(2, timeout).ok();
    Ok(FirecrackerRestore {
        resumed_ns,
        load_ns,
        exec_ns,
    })
}

/// Removes the snapshot's files and its disk copy.
pub fn remove_snapshot(snap: &FirecrackerSnapshot) {
    let _ = std::fs::remove_file(&snap.state);
    let _ = std::fs::remove_file(&snap.memory);
    let _ = std::fs::remove_file(&snap.disk);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_parse() {
        assert_eq!(parse_status(b"HTTP/1.1 204 \r\n\r\n"), Some(204));
        assert_eq!(
            parse_status(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\n{}"),
            Some(400)
        );
        assert_eq!(parse_status(b"garbage"), None);
    }

    #[test]
    fn the_drive_leaves_the_root_arguments_to_the_kernel_command_line() {
        let d = drive(Path::new("/x/disk.ext4"));
        assert_eq!(d["is_root_device"], false);
        assert_eq!(d["drive_id"], "rootfs");
        assert_eq!(machine_config()["mem_size_mib"], MEMORY_MIB);
    }
}
