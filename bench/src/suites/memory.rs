//! Memory: what one idle instance costs the host, read from /proc while it holds 1 MiB
//! (`probe alloc 1 600`):
//! - host: RSS and PSS of the probe process (the floor);
//! - container: PSS of the container's process, its memory cgroup usage, and the RSS of the
//!   `vcompare` monitor process that supervises it (the runtime's own resident cost);
//! - vm and every VM peer (QEMU; Firecracker once driven): VMM overhead = VMM process total −
//!   its guest-RAM mappings, by RSS and by PSS, with ONE function for all VMMs
//!   ([`crate::harness::vmm_memory`]), sampled at the same phase: the guest's probe has printed
//!   its line and holds 1 MiB (guest idle). When the density suite runs too, its one-VM step is
//!   vcompare's sample; QEMU boots once for it, the way vcompare boots (root disk, no initramfs).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{cost, vm_failed, Plan};
use crate::error::{BenchError, Result};
use crate::harness::{
    cgroup_memory_usage, parent_and_comm, rss_pss, vmm_memory, Harness, VmmMemory,
    VMM_OVERHEAD_RULE,
};
use crate::peers::qemu;
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
    let mut flags = vec!["-d", "--name", &name, "--mode", mode];
    if mode == "vm" {
        flags.extend(["--memory", &mem]);
    }
    flags.extend([image.as_str(), "/bin/probe", "alloc", "1", "600"]);
    let args = super::run_args(super::Network::None, &flags);
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

/// One VM sample from a fresh idle VM.
fn vm_sample(h: &mut Harness, results: &mut Results) -> Result<()> {
    let (name, pid) = start_idle(h, "vm")?;
    let r = record_vm(results, pid);
    h.remove(&[name]);
    r
}

/// The instant every VMM is sampled at, stated next to its figures.
pub const VMM_INSTANT: &str = "sampled when the guest's `probe alloc 1 600` has printed its line (it then holds 1 MiB and sleeps: guest idle)";

/// Records one VMM memory sample of `subject` (vm, qemu, …): the same metrics and definitions
/// for every VMM, so the figures compare like for like.
pub fn record_vmm(results: &mut Results, subject: &str, how: &str, m: Option<VmmMemory>) {
    let def = |what: &str| format!("{what}; {how}; {VMM_INSTANT}; {VMM_OVERHEAD_RULE}");
    push(
        results,
        subject,
        "vmm_overhead_rss",
        &def("VMM process RSS − RSS of its guest-RAM mappings"),
        m.map(|m| m.overhead_rss()),
    );
    push(
        results,
        subject,
        "vmm_overhead_pss",
        &def("VMM process PSS − PSS of its guest-RAM mappings (shared libraries counted by share)"),
        m.map(|m| m.overhead_pss()),
    );
    push(
        results,
        subject,
        "guest_touched",
        &def("RSS of the guest-RAM mappings (guest pages touched so far)"),
        m.map(|m| m.guest_rss),
    );
    push(
        results,
        subject,
        "rss",
        &def("VMM process RSS, guest RAM included"),
        m.map(|m| m.rss),
    );
}

/// Records the memory figures of the running idle VM whose VMM is `pid`; the density suite
/// calls this for its one-VM step so the memory suite needs no boot of its own.
pub fn record_vm(results: &mut Results, pid: u32) -> Result<()> {
    let m = vmm_memory(pid, VM_MEMORY_MIB << 20);
    record_vmm(
        results,
        "vm",
        "`vcompare-vmm` process of `vcompare run -d --mode vm --memory 256m`",
        m,
    );
    if m.is_none() {
        return Err(BenchError::Parse {
            what: format!("/proc/{pid}/smaps"),
            detail: "no guest-RAM mapping found".into(),
        });
    }
    Ok(())
}

/// One QEMU sample at the same phase as vcompare's: QEMU boots the way vcompare boots (root
/// disk, no initramfs, same kernel, arguments and 256 MiB) running the same idle probe, and is
/// sampled with the same function once the probe's line appears on its console.
fn qemu_sample(h: &mut Harness, plan: &Plan, results: &mut Results) {
    let setups = super::qemu_setups(h, plan, results);
    let Some(setup) = setups
        .iter()
        .find(|s| s.subject == qemu::BootMethod::RootDisk.subject())
    else {
        return;
    };
    super::vm_warm_up(h, results, &setup.subject.clone());
    let r = qemu::boot(
        setup,
        &["/bin/probe", "alloc", "1", "600"],
        qemu::Until::Line("\"alloc\""),
        Duration::from_secs(300),
    );
    h.advance(cost::QEMU, "memory qemu");
    match r {
        Ok(b) => {
            let how = "`qemu-system-x86_64 -M microvm` booted as vcompare boots (root disk, no initramfs, 256 MiB)";
            record_vmm(results, "qemu", how, b.memory);
            if b.memory.is_none() {
                results.skip("memory qemu", "no guest-RAM mapping found in QEMU's smaps");
            }
        }
        Err(e) => results.skip("memory qemu", e.to_string()),
    }
}

/// Runs the memory suite: one untimed warm-up then 3 host and container samples, one VM
/// sample (after the VM warm-up boot), one QEMU sample at the same phase.
pub fn run(h: &mut Harness, plan: &Plan, results: &mut Results) {
    // Round 0 is the warm-up every suite gets: measured the same way, then discarded.
    let mut warm = Results::new(results.environment.clone(), results.config.clone());
    for round in 0..=3 {
        let sink = if round == 0 { &mut warm } else { &mut *results };
        if plan.mode("host") {
            if let Err(e) = host_sample(h, sink) {
                results.skip("memory host", e.to_string());
            }
        }
        let sink = if round == 0 { &mut warm } else { &mut *results };
        if plan.mode("container") {
            let r = container_sample(h, sink);
            h.advance(cost::CONTAINER * 3, "memory container");
            if let Err(e) = r {
                results.skip("memory container", e.to_string());
                break;
            }
        }
    }
    // With the density suite selected, its one-VM step provides the VM memory sample.
    if !plan.suite("density") && super::vm_usable(h, plan, results, "memory", cost::VM) {
        super::vm_warm_up(h, results, "vm");
        let r = vm_sample(h, results);
        h.advance(cost::VM, "memory vm");
        if let Err(e) = r {
            vm_failed(h, results, "memory", &e);
        }
    }
    if plan.peer("qemu") && plan.mode("vm") {
        qemu_sample(h, plan, results);
    }
}
