//! Memory: what one idle instance costs the host, read from /proc while it holds 1 MiB
//! (`probe alloc 1 600`):
//! - host: RSS and PSS of the probe process (the floor);
//! - container: PSS of the container's process, its memory cgroup usage, and the RSS of the
//!   `vcompare` monitor process that supervises it (the runtime's own resident cost);
//! - vm: VMM overhead = VMM process RSS − RSS of its guest-RAM mappings (Firecracker's
//!   definition; the host ranges come from the instance's `vm-ram.json`), and guest-touched RAM =
//!   RSS of those mappings. When the density suite runs too, its one-VM step is the sample.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{cost, vm_failed, Plan};
use crate::error::{BenchError, Result};
use crate::harness::{
    cgroup_memory_usage, largest_mapping, parent_and_comm, rss_in_ranges, rss_pss, Harness,
};
use crate::results::{MemorySeries, Results};

/// Guest RAM given to measured VMs (the VM default), MiB.
pub const VM_MEMORY_MIB: u64 = 256;

/// Starts a detached idle instance holding 1 MiB and waits until its probe has printed;
/// returns (name, host pid from the instance record).
pub fn start_idle(h: &mut Harness, mode: &str) -> Result<(String, u32)> {
    let name = start_detached(h, mode)?;
    let pid = wait_ready(h, &name, mode)?;
    Ok((name, pid))
}

/// `vcompare run -d` of an idle instance (`probe alloc 1 600`); returns its name at once.
pub fn start_detached(h: &mut Harness, mode: &str) -> Result<String> {
    let name = h.fresh_name(&format!("{mode}-idle"));
    let image = h.image.clone();
    let mem = format!("{VM_MEMORY_MIB}m");
    let mut args = vec!["run", "-d", "--name", &name, "--mode", mode];
    if mode == "vm" {
        args.extend(["--memory", &mem]);
    }
    args.extend([image.as_str(), "/bin/probe", "alloc", "1", "600"]);
    if let Err(e) = h.vcompare_ok(&args) {
        h.remove(&[name]);
        return Err(e);
    }
    Ok(name)
}

/// Waits until the idle instance `name` has printed its probe line; returns its host pid.
/// On failure the instance is removed.
pub fn wait_ready(h: &mut Harness, name: &str, mode: &str) -> Result<u32> {
    let timeout = if mode == "vm" {
        Duration::from_secs(300)
    } else {
        Duration::from_secs(20)
    };
    if let Err(e) = h.wait_for_log(name, "\"alloc\"", timeout) {
        h.remove(&[name.to_string()]);
        return Err(e);
    }
    match h.inspect(name)?.get("pid").and_then(Value::as_u64) {
        Some(p) => Ok(p as u32),
        None => {
            h.remove(&[name.to_string()]);
            Err(BenchError::Parse {
                what: format!("vcompare inspect {name}"),
                detail: "no pid for a running instance".into(),
            })
        }
    }
}

/// The `vcompare` monitor supervising `pid`, if `pid`'s parent is one.
pub fn monitor_of(pid: u32) -> Option<u32> {
    let (ppid, _) = parent_and_comm(pid)?;
    let (_, comm) = parent_and_comm(ppid)?;
    comm.starts_with("vcompare").then_some(ppid)
}

fn push(results: &mut Results, subject: &str, metric: &str, definition: &str, v: Option<u64>) {
    let Some(v) = v else { return };
    match results
        .memory
        .iter_mut()
        .find(|s| s.subject == subject && s.metric == metric)
    {
        Some(s) => s.samples_bytes.push(v),
        None => results.memory.push(MemorySeries {
            subject: subject.into(),
            metric: metric.into(),
            definition: definition.into(),
            samples_bytes: vec![v],
        }),
    }
}

fn host_sample(h: &Harness, results: &mut Results) -> Result<()> {
    let probe = h.rootfs.join("bin/probe");
    let mut child = Command::new(&probe)
        .args(["alloc", "1", "30"])
        .env_clear()
        .env("PATH", crate::harness::IMAGE_PATH)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|source| BenchError::Spawn {
            cmd: "probe alloc 1 30".into(),
            source,
        })?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    let m = rss_pss(child.id());
    let _ = child.kill();
    let _ = child.wait();
    push(
        results,
        "host",
        "rss",
        "RSS of `probe alloc 1` on the host (smaps_rollup)",
        m.map(|x| x.0),
    );
    push(
        results,
        "host",
        "pss",
        "PSS of `probe alloc 1` on the host (smaps_rollup)",
        m.map(|x| x.1),
    );
    Ok(())
}

/// One container sample.
fn container_sample(h: &mut Harness, results: &mut Results) -> Result<()> {
    let (name, pid) = start_idle(h, "container")?;
    let m = rss_pss(pid);
    push(
        results,
        "container",
        "pss",
        "PSS of the container's process (`probe alloc 1`), smaps_rollup",
        m.map(|x| x.1),
    );
    push(
        results,
        "container",
        "cgroup_usage",
        "memory cgroup usage of the container (v1 memory.usage_in_bytes / v2 memory.current)",
        cgroup_memory_usage(pid),
    );
    let mon = monitor_of(pid).and_then(rss_pss);
    push(
        results,
        "container",
        "monitor_rss",
        "RSS of the `vcompare` monitor process supervising the container",
        mon.map(|x| x.0),
    );
    h.remove(&[name]);
    Ok(())
}

/// (size, RSS) of the VMM's guest RAM: the host ranges the VMM recorded in the instance's
/// `vm-ram.json`, else the largest mapping of at least half the guest RAM size.
fn guest_ram_rss(h: &Harness, name: &str, pid: u32) -> Option<(u64, u64)> {
    let rec = h.inspect(name).ok()?;
    let dir = rec.get("spec")?.get("instance_dir")?.as_str()?.to_string();
    let read = |f: &str| -> Option<Value> {
        std::fs::read(std::path::Path::new(&dir).join(f))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
    };
    // `vm-ram.json` ([[host address, length], …]); older layouts kept it in `vm.json`.
    let list = read("vm-ram.json")
        .or_else(|| read("vm.json").and_then(|v| v.get("guest_ram_host_ranges").cloned()));
    let ranges: Vec<(u64, u64)> = list
        .as_ref()
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| Some((r.get(0)?.as_u64()?, r.get(1)?.as_u64()?)))
                .collect()
        })
        .unwrap_or_default();
    let size = ranges.iter().map(|r| r.1).sum();
    rss_in_ranges(pid, &ranges)
        .map(|rss| (size, rss))
        .or_else(|| largest_mapping(pid, VM_MEMORY_MIB << 19))
}

/// One VM sample from a fresh idle VM.
fn vm_sample(h: &mut Harness, results: &mut Results) -> Result<()> {
    let (name, pid) = start_idle(h, "vm")?;
    let r = record_vm(h, results, &name, pid);
    h.remove(&[name]);
    r
}

/// Records the memory figures of the running idle VM `name` (VMM pid `pid`); the density suite
/// calls this for its one-VM step so the memory suite needs no boot of its own.
pub fn record_vm(h: &mut Harness, results: &mut Results, name: &str, pid: u32) -> Result<()> {
    let name = name.to_string();
    let total = rss_pss(pid);
    let guest = guest_ram_rss(h, &name, pid);
    let overhead = match (total, guest) {
        (Some((rss, _)), Some((_, g))) => Some(rss.saturating_sub(g)),
        _ => None,
    };
    push(results, "vm", "vmm_overhead_rss", "VMM process RSS − RSS of its guest-RAM mappings (host ranges from the instance's vm-ram.json), while the guest's probe holds 1 MiB", overhead);
    push(
        results,
        "vm",
        "guest_touched",
        "RSS of the VMM's guest-RAM mappings (guest pages touched so far)",
        guest.map(|g| g.1),
    );
    push(
        results,
        "vm",
        "rss",
        "VMM process RSS (guest RAM included)",
        total.map(|t| t.0),
    );
    if overhead.is_none() {
        return Err(BenchError::Parse {
            what: format!("/proc/{pid}/smaps"),
            detail: "no guest-RAM mapping found".into(),
        });
    }
    Ok(())
}

/// Runs the memory suite: 3 host and container samples, one VM sample.
pub fn run(h: &mut Harness, plan: &Plan, results: &mut Results) {
    for _ in 0..3 {
        if plan.mode("host") {
            if let Err(e) = host_sample(h, results) {
                results.skip("memory host", e.to_string());
            }
        }
        if plan.mode("container") {
            let r = container_sample(h, results);
            h.advance(cost::CONTAINER * 3, "memory container");
            if let Err(e) = r {
                results.skip("memory container", e.to_string());
                break;
            }
        }
    }
    // With the density suite selected, its one-VM step provides the VM memory sample.
    if !plan.suite("density") && super::vm_usable(h, plan, results, "memory", cost::VM) {
        let r = vm_sample(h, results);
        h.advance(cost::VM, "memory vm");
        if let Err(e) = r {
            vm_failed(h, results, "memory", &e);
        }
    }
}
