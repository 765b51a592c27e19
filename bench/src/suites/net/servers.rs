//! The servers a run measures against and everything the suite creates for them — the host
//! loopback server process, the bench network, the detached server instances — kept in one
//! [`World`] that removes all of it when it is dropped — on every path out of the suite,
//! failures and panics included: a benchmark must not leave bridges, nftables rules or VMs
//! behind.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use probe::net::{ServeParams, ServeReady, DEFAULT_PORT};

use super::super::{host_command, run_args, Network};
use crate::error::{io_at, BenchError, Result};
use crate::harness::Harness;

/// How long a container server may take to print its ready line.
const CONTAINER_READY: Duration = Duration::from_secs(60);
/// How long a VM server may take: a boot on a nested PVM host is 25–60 s, sometimes more.
const VM_READY: Duration = Duration::from_secs(400);

/// Said when the image's probe does not know the net commands: the default image is built
/// once per data root, so one built before them keeps an older probe.
const STALE_PROBE_HINT: &str = " (the image's probe predates `probe net-serve`: rebuild it with scripts/build-static.sh, then `vcompare image rm vcompare/probe`; the next run builds the image again)";

/// The host's `probe net-serve` on 127.0.0.1 (kernel-chosen port); killed when dropped.
pub struct HostServer {
    child: Child,
    /// The port it listens on.
    pub port: u16,
}

impl HostServer {
    /// Starts the image's probe on the host (as every host-side probe run: the image's PATH,
    /// an otherwise empty environment) and waits for its ready line.
    pub fn start(h: &Harness) -> Result<HostServer> {
        let probe = h.rootfs.join("bin/probe");
        let err_path = h.scratch.join("net-serve-host.stderr");
        let err = std::fs::File::create(&err_path).map_err(io_at(&err_path))?;
        let params = ServeParams {
            bind: Ipv4Addr::LOCALHOST.into(),
            port: 0,
        };
        let mut c = host_command(&probe);
        c.arg("net-serve")
            .args(params.to_args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err);
        let label = "host probe net-serve";
        let mut child = c.spawn().map_err(|source| BenchError::Spawn {
            cmd: label.into(),
            source,
        })?;
        let mut line = String::new();
        let read = child
            .stdout
            .take()
            .map(|o| BufReader::new(o).read_line(&mut line));
        let ready = match read {
            Some(Ok(n)) if n > 0 => parse_ready(&line, label),
            _ => {
                let _ = child.kill();
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                let mut stderr = std::fs::read(&err_path).unwrap_or_default();
                if String::from_utf8_lossy(&stderr).contains("unknown command") {
                    stderr.extend_from_slice(STALE_PROBE_HINT.as_bytes());
                }
                Err(crate::harness::failed(label, &status, &stderr, b""))
            }
        };
        let mut server = HostServer { child, port: 0 };
        server.port = ready?.port;
        Ok(server)
    }
}

impl Drop for HostServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `probe net-serve` in a detached instance on the bench network, published on the host.
#[derive(Debug, Clone)]
pub struct InstanceServer {
    /// The instance's name.
    pub name: String,
    /// Its address on the bench network (from the server's ready line).
    pub addr: Ipv4Addr,
    /// The host port published to its [`DEFAULT_PORT`] (`-p 127.0.0.1:PORT:12865`).
    pub host_port: u16,
}

impl InstanceServer {
    /// Where a client on the bench network connects.
    pub fn on_network(&self) -> SocketAddr {
        SocketAddr::new(self.addr.into(), DEFAULT_PORT)
    }
}

/// Everything the suite created, torn down together when dropped.
pub struct World {
    /// `vcompare --root R`, to remove what was created without borrowing the harness (the
    /// teardown runs in `Drop`).
    vcompare: (PathBuf, PathBuf),
    /// The bench network, once created.
    pub network: Option<String>,
    /// The host loopback server.
    pub host: Option<HostServer>,
    /// The container server.
    pub container: Option<InstanceServer>,
    /// The VM server.
    pub vm: Option<InstanceServer>,
    /// Every instance name the suite asked `vcompare run` for (recorded before the run, so a
    /// half-started one is removed too).
    instances: Vec<String>,
}

impl World {
    /// An empty world for the harness's `vcompare` and data root.
    pub fn new(h: &Harness) -> World {
        World {
            vcompare: (h.exe.clone(), h.root.clone()),
            network: None,
            host: None,
            container: None,
            vm: None,
            instances: Vec::new(),
        }
    }

    /// Creates the suite's own bridge network (`vcompare network create`), named after this
    /// process so a leftover from a crashed run cannot block it.
    pub fn create_network(&mut self, h: &Harness) -> Result<String> {
        let name = format!("vcbench-net-{}", std::process::id());
        // Recorded first: a create that half-succeeded is removed as well.
        self.network = Some(name.clone());
        h.vcompare_ok(&["network", "create", &name])?;
        Ok(name)
    }

    /// Starts `probe net-serve` in a detached `mode` instance on the bench network with its
    /// port published on 127.0.0.1, and waits for its ready line.
    pub fn start_instance_server(&mut self, h: &mut Harness, mode: &str) -> Result<InstanceServer> {
        let network = self.network.clone().ok_or_else(|| BenchError::Parse {
            what: "net suite".into(),
            detail: "no bench network".into(),
        })?;
        let name = h.fresh_name(&format!("net-{mode}"));
        self.instances.push(name.clone());
        let host_port = free_port()?;
        let publish = format!("127.0.0.1:{host_port}:{DEFAULT_PORT}");
        let port = DEFAULT_PORT.to_string();
        let image = h.image.clone();
        let flags = [
            "-d",
            "--name",
            &name,
            "--mode",
            mode,
            "-p",
            &publish,
            &image,
            "/bin/probe",
            "net-serve",
            &port,
        ];
        h.vcompare_ok(&run_args(Network::Named(&network), &flags))?;
        let timeout = if mode == "vm" {
            VM_READY
        } else {
            CONTAINER_READY
        };
        h.wait_for_log(&name, "\"net-serve\"", timeout)?;
        let logs = h.vcompare_ok(&["logs", &name])?;
        let label = format!("probe net-serve in {mode} {name}");
        let ready = String::from_utf8_lossy(&logs.stdout)
            .lines()
            .find(|l| l.contains("\"net-serve\""))
            .map(|l| parse_ready(l, &label))
            .unwrap_or_else(|| {
                Err(BenchError::Parse {
                    what: label.clone(),
                    detail: "no ready line in its logs".into(),
                })
            })?;
        let addr = ready
            .addrs
            .iter()
            .find_map(|a| a.parse::<Ipv4Addr>().ok())
            .ok_or_else(|| BenchError::Parse {
                what: label.clone(),
                detail: format!(
                    "the server has no IPv4 address besides lo (addrs {:?}): is the instance on network {network}?",
                    ready.addrs
                ),
            })?;
        let server = InstanceServer {
            name,
            addr,
            host_port,
        };
        match mode {
            "vm" => self.vm = Some(server.clone()),
            _ => self.container = Some(server.clone()),
        }
        Ok(server)
    }

    /// `vcompare --root R ARGS…`, quiet, its success.
    fn quiet(&self, args: &[&str]) -> bool {
        Command::new(&self.vcompare.0)
            .arg("--root")
            .arg(&self.vcompare.1)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for World {
    /// Stops the host server, removes every instance (`rm -f`), then the network (after its
    /// members, or `network rm` would refuse it).
    fn drop(&mut self) {
        self.host = None;
        let names = std::mem::take(&mut self.instances);
        if !names.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(names.iter().map(String::as_str));
            let _ = self.quiet(&args);
        }
        if let Some(n) = self.network.take() {
            if !self.quiet(&["network", "rm", &n]) {
                eprintln!("vcompare bench: net suite: removing network {n} failed; remove it with `vcompare network rm {n}`");
            }
        }
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on right now (the kernel's ephemeral choice),
/// for `-p`: a fixed port could be taken on a shared machine.
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io_at("127.0.0.1:0"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(io_at("127.0.0.1:0"))
}

/// The probe's ready line, read into the struct that wrote it.
pub fn parse_ready(line: &str, what: &str) -> Result<ServeReady> {
    serde_json::from_str(line.trim()).map_err(|e| BenchError::Parse {
        what: what.to_string(),
        detail: format!("{e}: {line:?}{STALE_PROBE_HINT}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_parses_into_the_probe_struct() {
        let r = parse_ready(
            r#"{"workload":"net-serve","bind":"0.0.0.0","port":12865,"addrs":["10.89.0.2"]}"#,
            "t",
        )
        .unwrap();
        assert_eq!(r.port, 12865);
        assert_eq!(r.addrs, vec!["10.89.0.2".to_string()]);
        assert!(parse_ready("probe: unknown command", "t").is_err());
    }

    #[test]
    fn free_port_is_bindable() {
        let p = free_port().unwrap();
        assert_ne!(p, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, p)).unwrap();
    }
}
