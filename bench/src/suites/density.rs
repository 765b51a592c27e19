//! Density: how host memory goes down as idle instances are added. For each step N, N idle
//! instances (`probe alloc 1 600`, detached) are started; the host's MemAvailable before and
//! after, and the summed PSS of the instances' host processes (container process + its
//! monitor; the VMM), are recorded; then all are removed. The report fits a line: the slope
//! is the memory per extra instance. MemAvailable is noisy on a shared machine (other builds),
//! PSS is not — both are kept.

use std::time::Duration;

use super::{cost, memory, vm_failed, Plan};
use crate::harness::{mem_available, rss_pss, Harness};
use crate::results::{DensityPoint, DensitySeries, Results};

/// Instance counts for containers.
pub const CONTAINER_STEPS: &[u32] = &[1, 2, 4, 8];
/// Instance counts for VMs (each boot ≈ 20–40 s of CPU on this host).
pub const VM_STEPS: &[u32] = &[1, 2];

/// MemAvailable averaged over a few reads, to damp momentary noise.
fn available_avg() -> i64 {
    let mut v = Vec::new();
    for _ in 0..5 {
        if let Some(a) = mem_available() {
            v.push(a as i64);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if v.is_empty() {
        0
    } else {
        v.iter().sum::<i64>() / v.len() as i64
    }
}

/// Summed PSS of an instance's host processes (its VMM or container process and its monitor):
/// the density figure, shared with the snapshot suite's density.
pub(crate) fn pss_of_instance(pid: u32) -> u64 {
    let mut pids = vec![pid];
    if let Some(m) = memory::monitor_of(pid) {
        pids.push(m);
    }
    pids.iter().filter_map(|p| rss_pss(*p)).map(|x| x.1).sum()
}

fn series(
    h: &mut Harness,
    mode: &str,
    steps: &[u32],
    results: &mut Results,
    memory_sample: bool,
) -> Result<DensitySeries, crate::error::BenchError> {
    let mut s = DensitySeries {
        subject: mode.into(),
        workload: "probe alloc 1 600 (detached)".into(),
        points: Vec::new(),
    };
    for &n in steps {
        let before = available_avg();
        // Start all N first (VMs then boot in parallel), then wait for each to be ready.
        let mut names: Vec<String> = Vec::new();
        let mut started: Vec<(String, u32)> = Vec::new();
        let mut err = None;
        for _ in 0..n {
            match memory::start_detached(h, mode) {
                Ok(x) => names.push(x),
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        for name in &names {
            if err.is_some() {
                break;
            }
            let r = memory::wait_ready(h, name, mode);
            h.advance(
                if mode == "vm" {
                    cost::VM
                } else {
                    cost::CONTAINER
                },
                &format!("density {mode} {n}"),
            );
            match r {
                Ok(pid) => started.push((name.clone(), pid)),
                Err(e) => err = Some(e),
            }
        }
        if err.is_none() && memory_sample && n == 1 {
            if let Some(&(_, pid)) = started.first() {
                if let Err(e) = memory::record_vm(results, pid) {
                    results.skip("vm memory", e.to_string());
                }
            }
        }
        if err.is_none() {
            std::thread::sleep(Duration::from_millis(500));
            let after = available_avg();
            let pss = started.iter().map(|(_, p)| pss_of_instance(*p)).sum();
            s.points.push(DensityPoint {
                instances: n,
                available_drop_bytes: before - after,
                pss_sum_bytes: pss,
            });
        }
        h.remove(&names);
        std::thread::sleep(Duration::from_millis(500));
        if let Some(e) = err {
            if s.points.is_empty() {
                return Err(e);
            }
            results
                .notes
                .push(format!("density {mode}: stopped at {n} instances: {e}"));
            break;
        }
    }
    Ok(s)
}

/// Runs the density suite for containers and (if usable) VMs, each after its warm-up (one
/// untimed idle container; the run's VM warm-up boot).
pub fn run(h: &mut Harness, plan: &Plan, results: &mut Results) {
    if plan.mode("container") {
        if let Ok((name, _)) = memory::start_idle(h, "container") {
            h.remove(&[name]);
        }
        match series(h, "container", CONTAINER_STEPS, results, false) {
            Ok(s) => results.density.push(s),
            Err(e) => results.skip("density container", e.to_string()),
        }
    }
    if super::vm_usable(
        h,
        plan,
        results,
        "density",
        super::density::VM_STEPS.iter().sum::<u32>() as u64 * cost::VM,
    ) {
        super::vm_warm_up(h, results, "vm");
        match series(h, "vm", VM_STEPS, results, plan.suite("memory")) {
            Ok(s) => results.density.push(s),
            Err(e) => vm_failed(h, results, "density", &e),
        }
    }
}
