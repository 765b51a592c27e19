//! VM snapshot/restore vs cold boot (`--suite snapshot`; not in the default set: it boots
//! VMs only). Ours and, when a binary is found, Firecracker's, side by side in one run.
//!
//! 1. **Take.** The first `vcompare run --mode vm` of a VM kind boots cold and its VMM saves a
//!    snapshot when the guest init is ready. The suite's first (untimed) run makes sure that
//!    happens in this run: if the kind's snapshot already existed, it is removed and the run
//!    repeated, so `host.snapshot.taken_pause_ms` of the taking run is this run's figure. The
//!    snapshot's size is read from its directory: the memory file's allocated bytes (what the
//!    host's page cache holds for all VMs restored from it) vs its logical size (guest RAM).
//! 2. **Rounds.** One untimed cold boot (the same warm-up as the startup suite's `vm-cold`),
//!    then `--vm-runs` rounds, each `vcompare run --network none --name N --mode vm IMAGE
//!    /bin/probe true` restored and with `--no-snapshot` (cold), the order rotating every round
//!    — the startup suite's timed run ([`super::startup::vcompare_probe`]: run, inspect, rm).
//!    Every run is checked with `inspect` to have started as its mode says, else dropped.
//!    Figures per run: VMM launch → vCPU 0's first KVM_RUN (`vmm_setup − vmm_launch`), VMM
//!    launch → entrypoint exec'd (`exec − vmm_launch`), spawn → exit (wall).
//! 3. **Firecracker** (same kernel, arguments, disk, RAM): a cold boot per round (launch →
//!    init, as in the startup suite), and one snapshot taken through its API when the init is
//!    ready, then a restore per round: launch → `PUT /snapshot/load` returned (resumed), the
//!    load call alone, launch → entrypoint exec'd (after the go message). One untimed boot and
//!    one untimed restore before the rounds; its VMM memory overhead once (the memory suite's
//!    rule and instant).
//! 4. **Density.** N VMs ([`DENSITY_VMS_ENV`], default 8) `run -d` restored from one snapshot,
//!    then N cold-booted (`--no-snapshot`): started one after another, each waited for until its
//!    probe has printed (the entrypoint runs) before the next, so cold boots never compete for
//!    the 2 cores; the PSS of every VMM process is summed after each start. Memory per extra VM
//!    = slope of that sum; all VMs are removed after each series.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::startup::{
    check_snapshot_kind, snapshot_info, vcompare_probe, vm_subject_flags, VM_COLD, VM_TIMEOUT,
};
use super::{cost, vm_failed, vm_usable, Plan};
use crate::error::Result;
use crate::harness::{dir_usage, mem_available, Harness};
use crate::peers::firecracker::{self, FirecrackerSetup, FirecrackerSnapshot};
use crate::peers::qemu::Until;
use crate::results::{
    DensityPoint, DensitySeries, PeerSnapshot, Results, SnapshotResults, SnapshotSeries,
};

/// Subject of our restored VMs.
pub const RESTORED: &str = "vm restored";
/// Subject of our cold-booted VMs (`--no-snapshot`).
pub const COLD: &str = "vm cold";
/// Subject of Firecracker's restores.
pub const FC_RESTORED: &str = "firecracker restored";
/// Subject of Firecracker's cold boots.
pub const FC_COLD: &str = "firecracker cold";

/// Figure names of a run and what each spans, in table order.
pub const FIGURES: [(&str, &str); 6] = [
    ("launch_to_first_run", "VMM launch → first KVM_RUN"),
    ("launch_to_resumed", "launch → resumed (load call returned)"),
    ("load_call", "snapshot load call"),
    ("launch_to_init", "launch → init"),
    ("launch_to_exec", "launch → entrypoint exec'd"),
    ("wall", "spawn → exit"),
];

/// Number of VMs per density series unless [`DENSITY_VMS_ENV`] says otherwise.
pub const DENSITY_VMS_DEFAULT: u32 = 8;
/// Overrides the VMs per density series (0 skips the density part).
pub const DENSITY_VMS_ENV: &str = "VCOMPARE_BENCH_SNAPSHOT_VMS";

/// What each density VM runs: the memory suite's idle probe (1 MiB held), long enough for
/// every cold boot of a series.
const IDLE: [&str; 4] = ["/bin/probe", "alloc", "1", "3600"];

/// The VMs per density series: [`DENSITY_VMS_ENV`] if it is a number ≤ 64, else the default.
pub fn density_vms() -> u32 {
    std::env::var(DENSITY_VMS_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|n| *n <= 64)
        .unwrap_or(DENSITY_VMS_DEFAULT)
}

/// Estimated ms of the suite: take + warm-up, two boots per round, the density VMs.
pub fn estimate_ms(h: &Harness, plan: &Plan) -> u64 {
    if !plan.mode("vm") {
        return 0;
    }
    let fc = plan.peer("firecracker") as u64 * (h.vm_runs as u64 + 2) * 2 * cost::QEMU;
    (2 + 2 * h.vm_runs as u64 + 2 * density_vms() as u64) * cost::VM + fc
}

/// What each subject's figures span (stated in the results and the report).
pub fn definition(subject: &str) -> &'static str {
    match subject {
        RESTORED => "`vcompare run --network none --mode vm IMAGE /bin/probe true`, restored from the VM kind's snapshot (checked with `inspect`); marks are the VMM's: `vmm_launch` (the VMM process's `main`), `vmm_setup` (vCPU 0's first KVM_RUN after the restore: memory file mapped MAP_PRIVATE, KVM and device state restored), `exec` (entrypoint exec'd); wall = spawn of `vcompare run` → its exit",
        COLD => "the same command with `--no-snapshot` (checked with `inspect` not to be restored): `vmm_setup` is vCPU 0's first KVM_RUN of the cold boot, `exec` follows the guest kernel's boot and the init",
        FC_RESTORED => "a new `firecracker --api-sock S` per round, `PUT /snapshot/load` (File memory backend, `resume_vm: true`) of the snapshot taken when the init was ready: launch = the harness spawns firecracker; resumed = the load call returned; then the go message on its serial input, and exec = the init's \"entrypoint exec'd\" report on the console (harness-timestamped)",
        FC_COLD => "`firecracker --no-api --config-file CFG` (the startup suite's firecracker subject): launch (before the per-boot disk copy and spec) → the init's first console report",
        _ => "",
    }
}

/// The named figures of one of our runs from its marks (ns since spawn).
fn our_figures(run: &crate::results::StartupRun) -> BTreeMap<String, u64> {
    let mut f = BTreeMap::new();
    let m = &run.marks;
    if let Some(&launch) = m.get("vmm_launch") {
        if let Some(&setup) = m.get("vmm_setup") {
            f.insert("launch_to_first_run".into(), setup.saturating_sub(launch));
        }
        if let Some(&exec) = m.get("exec") {
            f.insert("launch_to_exec".into(), exec.saturating_sub(launch));
        }
    }
    f.insert("wall".into(), run.wall_ns);
    f
}

/// The series of `subject` in `out`, created on first use.
fn series<'a>(out: &'a mut SnapshotResults, subject: &str) -> &'a mut SnapshotSeries {
    if let Some(i) = out.series.iter().position(|s| s.subject == subject) {
        return &mut out.series[i];
    }
    out.series.push(SnapshotSeries {
        subject: subject.into(),
        definition: definition(subject).into(),
        runs: Vec::new(),
    });
    out.series.last_mut().expect("just pushed")
}

/// (allocated, logical) bytes of a file.
fn file_size(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.blocks() * 512, m.size()))
}

/// The snapshot directory a run's record names (`host.snapshot.dir`).
fn snapshot_dir(record: &Value) -> Option<PathBuf> {
    snapshot_info(record)?
        .get("dir")?
        .as_str()
        .map(PathBuf::from)
}

/// Makes sure this run takes the VM kind's snapshot, and records its size and pause.
fn take(h: &mut Harness, results: &mut Results, out: &mut SnapshotResults) -> Result<()> {
    let mut p = vcompare_probe(h, "vm", &[], false, results)?;
    h.advance(cost::VM, "snapshot: take");
    let plan = |r: &Value| {
        snapshot_info(r)
            .and_then(|i| i.get("plan"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    if plan(&p.record).as_deref() == Some("restore") {
        // Taken earlier (another suite or run): remove it so this run's figure is measured.
        if let Some(dir) = snapshot_dir(&p.record) {
            let _ = std::fs::remove_dir_all(&dir);
        }
        p = vcompare_probe(h, "vm", &[], false, results)?;
        h.advance(cost::VM, "snapshot: take");
    }
    let info = snapshot_info(&p.record).cloned().unwrap_or_default();
    if plan(&p.record).as_deref() != Some("take") {
        results.skip(
            "snapshot take",
            format!("the first VM run of the kind did not take a snapshot: host.snapshot = {info}"),
        );
    }
    out.taken_pause_ms = info.get("taken_pause_ms").and_then(Value::as_f64);
    if let Some(dir) = snapshot_dir(&p.record) {
        if let Some((alloc, logical)) = file_size(&dir.join(vcompare_vmm::snapshot::MEMORY_FILE)) {
            out.memory_allocated_bytes = Some(alloc);
            out.memory_logical_bytes = Some(logical);
        }
        out.dir_allocated_bytes = Some(dir_usage(&dir).0);
    }
    Ok(())
}

/// Firecracker's preparation for the rounds: one untimed cold boot, the snapshot, one
/// untimed restore, and the VMM memory sample.
fn firecracker_prepare(
    h: &mut Harness,
    results: &mut Results,
    out: &mut SnapshotResults,
    setup: &FirecrackerSetup,
) -> Option<FirecrackerSnapshot> {
    super::vm_warm_up(h, results, super::startup::FIRECRACKER);
    let snap = match firecracker::take_snapshot(setup, &["/bin/probe", "true"], VM_TIMEOUT) {
        Ok(s) => s,
        Err(e) => {
            results.skip("snapshot firecracker", e.to_string());
            return None;
        }
    };
    h.advance(cost::QEMU, "snapshot: firecracker take");
    let (alloc, logical) = file_size(&snap.memory).unwrap_or((0, 0));
    out.firecracker = Some(PeerSnapshot {
        pause_ns: snap.pause_ns,
        create_ns: snap.create_ns,
        memory_allocated_bytes: alloc,
        memory_logical_bytes: logical,
    });
    // Untimed restore: the same warm-up our restored subject had (its first restore).
    let _ = firecracker::restore(setup, &snap, 0, Duration::from_secs(60));
    let m = firecracker::boot(
        setup,
        &["/bin/probe", "alloc", "1", "600"],
        Until::Line("\"alloc\""),
        Duration::from_secs(300),
    );
    h.advance(cost::QEMU, "snapshot: firecracker memory");
    match m {
        Ok(b) => {
            let how = "`firecracker --no-api` booted as vcompare boots (root disk, same kernel and arguments, 256 MiB)";
            super::memory::record_vmm(results, firecracker::SUBJECT, how, b.memory);
        }
        Err(e) => results.skip("memory firecracker", e.to_string()),
    }
    Some(snap)
}

/// Runs the snapshot suite.
pub fn run(h: &mut Harness, plan: &Plan, results: &mut Results) {
    if !vm_usable(h, plan, results, "snapshot", estimate_ms(h, plan)) {
        return;
    }
    let mut out = SnapshotResults::default();
    if let Err(e) = take(h, results, &mut out) {
        vm_failed(h, results, "snapshot", &e);
        results.snapshot = Some(out);
        return;
    }
    super::vm_warm_up(h, results, VM_COLD);
    let fc = super::firecracker_setup(h, plan, results);
    let fc_snap = fc
        .as_ref()
        .and_then(|s| firecracker_prepare(h, results, &mut out, s));
    let mut subjects = vec![RESTORED, COLD];
    if fc.is_some() {
        subjects.push(FC_COLD);
    }
    if fc_snap.is_some() {
        subjects.push(FC_RESTORED);
    }
    let mut failed: Vec<&str> = Vec::new();
    for round in 0..h.vm_runs {
        let mut order = subjects.clone();
        let k = round % order.len();
        order.rotate_left(k);
        for subject in order {
            if failed.contains(&subject) || h.vm_broken.is_some() {
                continue;
            }
            let msg = format!("snapshot {subject} {}/{}", round + 1, h.vm_runs);
            let r: Result<BTreeMap<String, u64>> = match subject {
                RESTORED | COLD => {
                    let s = if subject == RESTORED { "vm" } else { VM_COLD };
                    let flags = vm_subject_flags(s).expect("our subject");
                    let r = vcompare_probe(h, "vm", flags, false, results).and_then(|p| {
                        check_snapshot_kind(s, &p.record)?;
                        Ok(our_figures(&p.run))
                    });
                    h.advance(cost::VM, &msg);
                    r
                }
                FC_COLD => {
                    let setup = fc.as_ref().expect("firecracker set up");
                    let r =
                        firecracker::boot(setup, &["/bin/probe", "true"], Until::Init, VM_TIMEOUT);
                    h.advance(cost::QEMU, &msg);
                    r.map(|b| {
                        let mut f = BTreeMap::new();
                        if let Some(i) = b.init_ns {
                            f.insert("launch_to_init".into(), i);
                        }
                        f
                    })
                }
                _ => {
                    let (setup, snap) = (
                        fc.as_ref().expect("set up"),
                        fc_snap.as_ref().expect("taken"),
                    );
                    let r = firecracker::restore(setup, snap, round + 1, Duration::from_secs(60));
                    h.advance(cost::QEMU, &msg);
                    r.map(|x| {
                        let mut f = BTreeMap::new();
                        f.insert("launch_to_resumed".into(), x.resumed_ns);
                        f.insert("load_call".into(), x.load_ns);
                        if let Some(e) = x.exec_ns {
                            f.insert("launch_to_exec".into(), e);
                        }
                        f
                    })
                }
            };
            match r {
                Ok(f) => series(&mut out, subject).runs.push(f),
                Err(e) => {
                    h.say(&format!("{msg}: {e}"));
                    results.skip(format!("snapshot {subject}"), e.to_string());
                    // Ours: a run that was not restored (or not cold) only drops that run.
                    if !matches!(e, crate::error::BenchError::Parse { .. }) {
                        failed.push(subject);
                    }
                }
            }
        }
    }
    if let Some(snap) = &fc_snap {
        firecracker::remove_snapshot(snap);
    }
    let n = density_vms();
    if n > 0 && h.vm_broken.is_none() {
        // Untimed: makes sure the kind's snapshot exists for the current VMM build (taking it
        // again if the VMM was rebuilt since), so every density VM restores.
        let _ = vcompare_probe(h, "vm", &[], false, results);
        for (subject, flags) in [(RESTORED, &[][..]), (COLD, &["--no-snapshot"][..])] {
            match density(h, subject, flags, n) {
                Ok(s) => out.density.push(s),
                Err(e) => results.skip(format!("snapshot density {subject}"), e.to_string()),
            }
        }
    }
    results.note_once(format!("snapshot: the VM kind's snapshot taken in this run (an older one removed first); one untimed cold boot, then {} rounds of restored and cold `vcompare run --mode vm … /bin/probe true` (order rotating){}; density: {n} VMs per series started one after another", h.vm_runs, if fc.is_some() { ", Firecracker cold boots and restores in the same rounds after one untimed boot and one untimed restore" } else { "" }));
    results.snapshot = Some(out);
}

/// The density VMs, removed when dropped (also on an early return).
struct Started<'a> {
    h: &'a Harness,
    names: Vec<String>,
}

impl Drop for Started<'_> {
    fn drop(&mut self) {
        self.h.remove(&self.names);
    }
}

/// `n` idle VMs started one after another with `flags`, each up (its probe printed) before
/// the next; after each, the summed PSS of all their VMM processes and the MemAvailable drop.
fn density(h: &mut Harness, subject: &str, flags: &[&str], n: u32) -> Result<DensitySeries> {
    let before = mem_available().unwrap_or(0) as i64;
    let image = h.image.clone();
    let names: Vec<String> = (0..n).map(|_| h.fresh_name("snapshot-density")).collect();
    let mut started = Started {
        h: &*h,
        names: Vec::new(),
    };
    let mut pids = Vec::new();
    let mut s = DensitySeries {
        subject: subject.into(),
        workload: format!("{} (detached; started one after another)", IDLE.join(" ")),
        points: Vec::new(),
    };
    for (i, name) in names.iter().enumerate() {
        let mut f = vec!["-d", "--name", name, "--mode", "vm"];
        f.extend_from_slice(flags);
        f.push(&image);
        f.extend_from_slice(&IDLE);
        started.names.push(name.clone());
        started
            .h
            .vcompare_ok(&super::run_args(super::Network::None, &f))?;
        started
            .h
            .wait_for_log(name, "\"alloc\"", Duration::from_secs(400))?;
        let rec = started.h.inspect(name)?;
        check_snapshot_kind(if subject == RESTORED { "vm" } else { VM_COLD }, &rec)?;
        let pid = rec.get("pid").and_then(Value::as_u64).ok_or_else(|| {
            crate::error::BenchError::Parse {
                what: format!("vcompare inspect {name}"),
                detail: "no pid for a running instance".into(),
            }
        })?;
        pids.push(pid as u32);
        started.h.advance(
            cost::VM,
            &format!("snapshot density {subject} {}/{n}", i + 1),
        );
        std::thread::sleep(Duration::from_millis(300));
        s.points.push(DensityPoint {
            instances: i as u32 + 1,
            available_drop_bytes: before - mem_available().unwrap_or(0) as i64,
            pss_sum_bytes: pids
                .iter()
                .map(|p| super::density::pss_of_instance(*p))
                .sum(),
        });
    }
    drop(started);
    std::thread::sleep(Duration::from_millis(500));
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::StartupRun;

    #[test]
    fn figures_are_differences_of_the_vmm_marks() {
        let run = StartupRun {
            wall_ns: 1000,
            phases: Vec::new(),
            marks: [("vmm_launch", 100), ("vmm_setup", 130), ("exec", 600)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            remove_ns: None,
        };
        let f = our_figures(&run);
        assert_eq!(f["launch_to_first_run"], 30);
        assert_eq!(f["launch_to_exec"], 500);
        assert_eq!(f["wall"], 1000);
    }
}
