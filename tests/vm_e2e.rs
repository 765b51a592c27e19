//! End-to-end tests of `vcompare` in `--mode vm` on this machine's /dev/kvm with the real guest
//! kernel (`kernels/build.sh`), the static init/probe (`scripts/build-static.sh`) and the
//! `vcompare-vmm` process. A boot costs 8-25 s on PVM hosts (guest kernel code emulated) and
//! ~100 ms on hardware KVM, so each boot carries several checks, and every check holds on
//! both (branching on [`KvmBackend`] where they differ). Without a usable /dev/kvm the boot
//! tests skip through `tests/common/skip.rs` (a failure under `VCOMPARE_NO_SKIP=1`); a
//! missing kernel, static binary or `vcompare-vmm` is a failure. The refusal and bad-input
//! tests need no boot.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use vcompare_vmm::KvmBackend;

use common::vm_root::{static_dir, stderr_lines, text, wait_boot, without_notes, VmRoot as Root};

fn vcompare() -> &'static str {
    env!("CARGO_BIN_EXE_vcompare")
}

/// The data roots of this file are `<temp dir>/vcmp-e2e-NAME-PID`.
const PREFIX: &str = "vcmp-e2e";

/// This file's own ways of running a VM and reading its state.
impl Root {
    /// `vcompare run --mode vm --rm --timeout 540 ARGS…`: a one-shot VM with a watchdog that
    /// fires before nextest's 600 s limit (so a hung VM is ended by vcompare, not left behind)
    /// but leaves room for a nested boot on a loaded host.
    fn run_vm(&self, args: &[&str]) -> Output {
        self.vm_cmd(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    }

    /// [`Root::run_vm`]'s command line, not yet started (for a test that feeds its stdin or
    /// gives it a terminal).
    fn vm_cmd(&self, args: &[&str]) -> Command {
        let mut all = vec!["run", "--mode", "vm", "--rm", "--timeout", "540"];
        all.extend_from_slice(args);
        self.cmd(&all)
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &Path)]) -> Output {
        self.cmd(args)
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    }

    /// The VMM pid of the running VM `q`, once it has one.
    fn vmm_pid(&self, q: &str) -> i32 {
        wait_boot(&format!("a VMM pid for {q}"), || {
            self.inspect(q)["view"]["host"]["vmm_pid"]
                .as_i64()
                .map(|p| p as i32)
        })
    }

    /// `ps -a --format json`.
    fn ps_json(&self) -> Vec<serde_json::Value> {
        serde_json::from_str::<serde_json::Value>(&self.ok(&["ps", "-a", "--format", "json"]))
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    /// The `ps -a` record named (or id-prefixed) `q`.
    fn record(&self, q: &str) -> serde_json::Value {
        common::find(&self.ps_json(), &self.id_of(q)).clone()
    }

    /// Polls `logs Q` until `needle` occurs `n` times; returns the log.
    fn wait_log(&self, q: &str, needle: &str, n: usize) -> String {
        wait_boot(&format!("{n}× {needle:?} in the log of {q}"), || {
            let s = String::from_utf8_lossy(&self.run(&["logs", q]).stdout).into_owned();
            (s.matches(needle).count() >= n).then_some(s)
        })
    }

    /// Polls `ps -a` until the instance has exited; returns its record.
    fn wait_exited(&self, q: &str) -> serde_json::Value {
        wait_boot(&format!("{q} to exit"), || {
            let v = self.record(q);
            (v["status"] == "exited").then_some(v)
        })
    }
}

/// Asserts that `o` is the CLI's refusal: exit status 125 and exactly `line` on stderr.
fn assert_refused(o: &Output, line: &str) {
    assert_eq!(o.status.code(), Some(125), "{}", text(o));
    assert_eq!(stderr_lines(o), [line], "{}", text(o));
}

fn json(o: &Output) -> serde_json::Value {
    let s = String::from_utf8_lossy(&o.stdout);
    let line = s
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON in output\n{}", text(o)));
    serde_json::from_str(line).unwrap()
}

/// The guest sees its own kernel, `--memory` and `--cpus`; and `-e`, `-w`, `-u` (a name from
/// the image's /etc/passwd), `--hostname` and `--entrypoint` reach the entrypoint (a shell
/// that prints what it got, then execs `probe info`).
#[test]
fn vm_probe_info_and_run_flags_reach_the_entrypoint() {
    require_vm!();
    let root = Root::new(PREFIX, "info");
    let o = root.run_vm(&[
        "--cpus",
        "2",
        "--memory",
        "512M",
        "-e",
        "GREETING=hello from the vm",
        "-w",
        "/var/tmp",
        "-u",
        "nobody",
        "--hostname",
        "vmhost",
        "--entrypoint",
        "/bin/sh",
        "vcompare/probe",
        "-c",
        "echo \"$GREETING\"; pwd; id -u; id -g; hostname; exec probe info",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "five lines and probe's JSON: {}", text(&o));
    assert_eq!(
        lines[..5],
        ["hello from the vm", "/var/tmp", "65534", "65534", "vmhost"],
        "{}",
        text(&o)
    );
    let v = json(&o);
    let host_release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_ne!(
        v["kernel_release"].as_str().unwrap(),
        host_release.trim(),
        "own kernel"
    );
    assert_eq!(v["cpus_online_count"].as_u64(), Some(2), "{v}");
    let mem = v["mem_total_bytes"].as_u64().unwrap();
    assert!(
        mem > 400 << 20 && mem <= 512 << 20,
        "MemTotal {mem} ≈ --memory 512M"
    );
    assert_eq!(
        v["pid"].as_u64().map(|p| p > 1),
        Some(true),
        "entrypoint is a child of our init"
    );
    assert_eq!(v["ppid"].as_u64(), Some(1));
    assert_eq!(
        (&v["hostname"], &v["uid"], &v["cwd"]),
        (
            &serde_json::json!("vmhost"),
            &serde_json::json!(65534),
            &serde_json::json!("/var/tmp")
        ),
        "{v}"
    );
    // (Only the entrypoint's output reaches stdout, no kernel messages: the line count above.)
}

/// The entrypoint's exit code and death by signal reach the caller. The first boot also runs
/// the VMM's guest sampler (VCOMPARE_VMM_PROFILE), which must not change the outcome, must
/// see the guest kernel, then the init in user mode, and must feed `kernels/profile.sh`. The
/// second boot runs the VMM in-process on explicit request: loud and recorded.
#[test]
fn vm_exit_code_and_signal_propagate() {
    require_vm!();
    let root = Root::new(PREFIX, "exit");
    let samples = root.0.join("samples");
    let o = root.run_env(
        &[
            "run",
            "--mode",
            "vm",
            "--rm",
            "--timeout",
            "300",
            "--network",
            "none",
        ]
        .into_iter()
        .chain([
            "vcompare/probe",
            "/bin/sh",
            "-c",
            "ls /sys/class/net; cat /sys/class/net/lo/flags; echo out; exit 7",
        ])
        .collect::<Vec<_>>(),
        &[("VCOMPARE_VMM_PROFILE", &samples)],
    );
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    // `--network none`: no NIC, and `lo` is up (IFF_UP|IFF_LOOPBACK), as in a container.
    assert_eq!(String::from_utf8_lossy(&o.stdout), "lo\n0x9\nout\n");
    let lines = std::fs::read_to_string(&samples).unwrap();
    let parsed: Vec<(u64, u64, u8)> = lines
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (
                f[0].parse().unwrap(),
                u64::from_str_radix(f[1], 16).unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect();
    assert!(
        parsed.windows(2).all(|w| w[0].0 <= w[1].0),
        "samples in time order"
    );
    let first_user = parsed
        .iter()
        .position(|s| s.2 == 3)
        .expect("a user-mode sample");
    let in_kernel_text = parsed[..first_user]
        .iter()
        .filter(|s| s.1 >= 0xffff_ffff_8000_0000)
        .count();
    // One sample per millisecond. On PVM the emulated kernel needs seconds to reach init, so
    // over a second of samples must land in its text; on hardware KVM the whole boot is
    // ~100 ms and one kernel sample is all that can be required.
    let least = match KvmBackend::detect() {
        KvmBackend::Pvm => 1001,
        KvmBackend::Hardware => 1,
    };
    assert!(
        in_kernel_text >= least,
        "{in_kernel_text} samples in the guest kernel's text before init, expected ≥ {least}"
    );
    let report = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels/profile.sh"))
        .arg(&samples)
        .output()
        .unwrap();
    assert_eq!(report.status.code(), Some(0), "{}", text(&report));
    let report = String::from_utf8_lossy(&report.stdout);
    // Its header counts exactly the samples before the first user-mode one, and its table
    // names kernel functions from the vmlinux's symbols (which ones depends on the kernel).
    let mut rows = report.lines();
    let head = rows.next().unwrap_or_default();
    assert!(
        head.starts_with(&format!(
            "{first_user} samples (1 ms each) in the guest kernel before init; init at "
        )),
        "{report}"
    );
    let top: Vec<&str> = rows.next().unwrap_or_default().split_whitespace().collect();
    assert!(
        top.len() == 3 && top[0].parse::<u64>().is_ok_and(|n| n >= 1) && top[2] != "?",
        "a table row `count pct% function`: {report}"
    );

    // VCOMPARE_VMM_INPROCESS=1: a warning on every run and `vmm_process` in inspect.
    let o = root.run_env(
        &[
            "run",
            "--mode",
            "vm",
            "--name",
            "inproc",
            "--timeout",
            "300",
            "vcompare/probe",
            "/bin/sh",
            "-c",
            "kill -9 $$",
        ],
        &[("VCOMPARE_VMM_INPROCESS", Path::new("1"))],
    );
    assert_eq!(o.status.code(), Some(137), "{}", text(&o));
    assert_eq!(
        stderr_lines(&o),
        ["vcompare: warning: VCOMPARE_VMM_INPROCESS=1: the VMM runs inside this vcompare process, so its pid and memory figures are the CLI's (debugging only)"],
        "{}",
        text(&o)
    );
    let v = root.inspect("inproc");
    assert_eq!(
        v["view"]["host"]["vmm_process"], "in-process (VCOMPARE_VMM_INPROCESS=1)",
        "{v}"
    );
    assert_eq!(
        v["outcome"],
        serde_json::json!({"kind": "signaled", "value": 9})
    );
    root.ok(&["rm", "inproc"]);
}

/// `stop` of a detached VM whose entrypoint traps SIGTERM ends it through the trap (exit 7,
/// recorded; a SIGKILL escalation would record 137), a file written to the VM's disk survives
/// `stop` + `start`, and `rm` deletes the disk. The first boot also checks, while the VM runs,
/// that `--prealloc` faulted in all guest RAM and that the VMM is the `vcompare-vmm` process
/// next to `vcompare`.
#[test]
fn vm_stop_runs_the_trap_and_the_disk_survives_start() {
    require_vm!();
    let root = Root::new(PREFIX, "disk");
    let script = "test -f /mark && echo FOUND-MARK; echo written > /mark; trap 'exit 7' TERM; echo READY; while :; do sleep 1; done";
    let o = root.run(&[
        "run",
        "--mode",
        "vm",
        "-d",
        "--name",
        "p",
        "--memory",
        "512M",
        "--prealloc",
        "vcompare/probe",
        "/bin/sh",
        "-c",
        script,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let first = root.wait_log("p", "READY", 1);
    assert_eq!(without_notes(&first), "READY\n");

    let v = root.inspect("p");
    let host = &v["view"]["host"];
    let vmm = common::vmm_binary();
    assert_eq!(host["vmm_process"], vmm.to_str().unwrap(), "{v}");
    let pid = host["vmm_pid"]
        .as_i64()
        .expect("a running VM has a VMM pid");
    assert_eq!(std::fs::read_link(format!("/proc/{pid}/exe")).unwrap(), vmm);
    // --prealloc: every page of the 512 MiB is resident, except the part of the range where
    // the kernel's file is mapped (its pages are resident only once read). An idle guest
    // without prealloc touches a small fraction of its RAM.
    let kernel_kib = std::fs::metadata(host["guest_kernel_image"].as_str().unwrap())
        .unwrap()
        .len()
        / 1024;
    let resident = host["guest_ram_rss_kib"].as_u64().unwrap();
    assert!(
        resident >= 512 * 1024 - kernel_kib,
        "guest RAM resident {resident} KiB of 524288 (kernel file {kernel_kib} KiB): {v}"
    );

    let id = root.id_of("p");
    // The guest agent is up (the entrypoint runs), so `stop` asks it to SIGTERM the
    // entrypoint; `--debug` shows which path was taken.
    let o = root.run(&["--debug", "stop", "-t", "300", "p"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("{}\n", &id[..12])
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("signal for the VM's entrypoint") && err.contains("through_agent=true"),
        "stop went through the guest agent: {err}"
    );
    let rec = root.record("p");
    assert_eq!(
        (
            &rec["mode"],
            &rec["status"],
            &rec["exit_code"],
            &rec["outcome"]
        ),
        (
            &serde_json::json!("vm"),
            &serde_json::json!("exited"),
            &serde_json::json!(7),
            &serde_json::json!({"kind": "exited", "value": 7})
        ),
        "the trap's exit, not a SIGKILL: {rec}"
    );
    // The table row, column by column (the age at the end of STATUS is the only variable part).
    let ps = root.ok(&["ps", "-a"]);
    let rows: Vec<Vec<&str>> = ps
        .lines()
        .map(|l| {
            l.split("   ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 2, "{ps}");
    assert_eq!(
        rows[0],
        ["ID", "NAME", "IMAGE", "MODE", "COMMAND", "STATUS", "PID"]
    );
    assert_eq!(
        rows[1][..5],
        [
            &id[..12],
            "p",
            "vcompare/probe:latest",
            "vm",
            "\"/bin/sh -c test -f /mark && e…\""
        ],
        "{ps}"
    );
    assert!(
        rows[1].len() == 6 && rows[1][5].starts_with("Exited (7) ") && rows[1][5].ends_with(" ago"),
        "{ps}"
    );

    root.ok(&["start", "p"]);
    let second = root.wait_log("p", "READY", 2);
    assert!(
        second.contains("FOUND-MARK"),
        "the file written to / survived stop + start: {second}"
    );
    let o = root.run(&["stop", "-t", "300", "p"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(o.stderr.is_empty(), "{}", text(&o));
    assert_eq!(root.record("p")["exit_code"], 7);
    let disks: Vec<_> = walk(&root.0.join("instances"))
        .into_iter()
        .filter(|p| p.ends_with("disk.ext4"))
        .collect();
    assert_eq!(disks.len(), 1, "one per-VM disk copy");
    root.ok(&["rm", "p"]);
    assert!(!disks[0].exists(), "rm deletes the VM's disk");
}

/// Two detached VMs run at the same time (each waits, on a shared host directory, until the
/// other is up), and each keeps its own exit code and its own log.
#[test]
fn vm_two_at_once_keep_their_own_exit_codes_and_logs() {
    require_vm!();
    let root = Root::new(PREFIX, "two");
    let shared = Root::new(PREFIX, "two-shared");
    // Each guest gives up (exit 99) after ~10 minutes if the other never comes up.
    let script = |me: &str, other: &str, code: u8| {
        format!(
            "echo {me}-up; touch /mnt/s/{me}; i=0; \
             while [ ! -e /mnt/s/{other} ]; do sleep 0.2; i=$((i+1)); [ $i -lt 3000 ] || exit 99; done; \
             echo {me}-saw-{other}; exit {code}"
        )
    };
    for (me, other, code) in [("a", "b", 3), ("b", "a", 4)] {
        root.ok(&[
            "run",
            "--mode",
            "vm",
            "-d",
            "--name",
            me,
            "--timeout",
            "900",
            "-v",
            &shared.arg("/mnt/s"),
            "vcompare/probe",
            "/bin/sh",
            "-c",
            &script(me, other, code),
        ]);
    }
    for (me, other, code) in [("a", "b", 3), ("b", "a", 4)] {
        let rec = root.wait_exited(me);
        assert_eq!(rec["exit_code"], code, "{rec}");
        assert_eq!(
            without_notes(&String::from_utf8_lossy(&root.run(&["logs", me]).stdout)),
            format!("{me}-up\n{me}-saw-{other}\n")
        );
    }
}

/// An entrypoint that allocates all of the guest's RAM (`--memory 32M`, the smallest VM:
/// every page fault is emulated on PVM hosts, so this boot is the slowest here) is ended by
/// the guest kernel's OOM killer: exit 137 with the same message, status and outcome as a
/// container's OOM kill.
#[test]
fn vm_oom_kill_is_reported_like_a_containers() {
    require_vm!();
    let root = Root::new(PREFIX, "oom");
    let script = "exec probe alloc $(( $(sed -n 's/^MemTotal: *\\([0-9]*\\) kB$/\\1/p' /proc/meminfo) / 1024 ))";
    let o = root.run(&[
        "run",
        "--mode",
        "vm",
        "--name",
        "oom",
        "--timeout",
        "600",
        "--memory",
        "32M",
        "vcompare/probe",
        "/bin/sh",
        "-c",
        script,
    ]);
    assert_eq!(o.status.code(), Some(137), "{}", text(&o));
    assert_eq!(
        stderr_lines(&o),
        ["vcompare: the instance was killed for exceeding its --memory limit (out of memory); raise --memory"],
        "{}",
        text(&o)
    );
    let rec = root.record("oom");
    assert_eq!(
        rec["outcome"],
        serde_json::json!({"kind": "oom_killed"}),
        "{rec}"
    );
    assert_eq!(rec["exit_code"], 137, "{rec}");
    assert!(
        rec["status_text"]
            .as_str()
            .unwrap()
            .starts_with("Exited (137) OOMKilled "),
        "{rec}"
    );
    root.ok(&["rm", "oom"]);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn vm_timeout_ends_a_hung_guest() {
    require_vm!();
    let root = Root::new(PREFIX, "timeout");
    let o = root.run(&[
        "run",
        "--mode",
        "vm",
        "--rm",
        "--timeout",
        "40",
        "vcompare/probe",
        "/bin/sleep",
        "1000",
    ]);
    assert_eq!(o.status.code(), Some(124), "{}", text(&o));
    // The watchdog's own account, then the console lines it shows, then the outcome.
    let err = stderr_lines(&o);
    assert_eq!(
        err.first().map(String::as_str),
        Some("vcompare: the VM did not finish within --timeout; last console lines:"),
        "{}",
        text(&o)
    );
    assert_eq!(
        err.last().map(String::as_str),
        Some("vcompare: the instance was stopped by the --timeout watchdog"),
        "{}",
        text(&o)
    );
    assert!(!has_process_with_root(&root.0), "no VMM left behind");
}

/// True if some process still has `root` on its command line.
fn has_process_with_root(root: &Path) -> bool {
    let needle = root.to_string_lossy().to_string();
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(&needle))
            .unwrap_or(false)
    })
}

#[test]
fn vm_guest_panic_is_reported_with_console_lines() {
    require_vm!();
    let root = Root::new(PREFIX, "panic");
    // No init anywhere: the guest kernel panics ("No working init found").
    let o = root
        .cmd(&[
            "run",
            "--mode",
            "vm",
            "--rm",
            "--timeout",
            "300",
            "vcompare/probe",
            "true",
        ])
        .env(
            "VCOMPARE_VM_CMDLINE",
            "rdinit=/nonexistent init=/nonexistent",
        )
        .output()
        .unwrap();
    // The entrypoint never ran: "a failure to start at all" (README), 125.
    assert_eq!(o.status.code(), Some(125), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("the guest kernel panicked"), "{}", text(&o));
    assert!(
        err.contains("last ") && err.contains("console lines"),
        "{}",
        text(&o)
    );
    assert!(!has_process_with_root(&root.0));
}

/// Bad input in VM mode is refused before anything starts: exit status 125 (README: "a
/// failure to start at all") and one line naming the cause and the fix.
#[test]
fn vm_bad_input_is_one_clear_line_and_exit_125() {
    let root = Root::new(PREFIX, "bad");
    let host_mib = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
        .unwrap()
        / 1024;
    let cases: &[(&[&str], String)] = &[
        (
            &["--cpus", "0"],
            "vcompare: error: --cpus must be a number greater than 0".into(),
        ),
        (
            &["--cpus", "1.5"],
            "vcompare: error: --cpus 1.5: a VM has a whole number of vCPUs".into(),
        ),
        (
            &["--memory", "100000G"],
            format!("vcompare: error: --memory 102400000 MiB is more than this host's RAM ({host_mib} MiB)"),
        ),
        (
            &["-v", "/nonexistent/vcompare-e2e:/mnt"],
            "vcompare: error: bad -v `/nonexistent/vcompare-e2e:/mnt`: the host path /nonexistent/vcompare-e2e does not exist; create it or fix the path".into(),
        ),
    ];
    for (flags, line) in cases {
        let mut args = vec!["run", "--mode", "vm", "--rm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["vcompare/probe", "true"]);
        assert_refused(&root.run(&args), line);
    }
    assert!(root.ps_json().is_empty(), "no instance record is left");
    assert!(!has_process_with_root(&root.0));
}

/// A guest kernel that does not exist: 125 and one line; needs /dev/kvm (checked first).
#[test]
fn vm_missing_kernel_is_one_clear_line_and_exit_125() {
    crate::skip_unless!(
        common::skip::kvm_usable(),
        "needs a read-write /dev/kvm: it is checked before the kernel"
    );
    common::vmm_binary();
    let root = Root::new(PREFIX, "nokernel");
    let o = root.run_env(
        &["run", "--mode", "vm", "--rm", "vcompare/probe", "true"],
        &[("VCOMPARE_KERNEL", Path::new("/nonexistent/vmlinux"))],
    );
    assert_refused(
        &o,
        "vcompare: error: VCOMPARE_KERNEL=/nonexistent/vmlinux does not exist; point it at a guest vmlinux or unset it to use the built kernel",
    );
    assert!(root.ps_json().is_empty(), "no instance record is left");
    assert!(!has_process_with_root(&root.0));
}

/// The container-side knobs are refused in VM mode, each with the reason and what to use
/// instead, before anything is created: exit 125, one line, the data root unchanged.
#[test]
fn vm_refuses_container_only_flags() {
    let env = common::Env::new();
    env.ok(&["ps", "-a"]);
    let before = env.store_snapshot();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--pids-limit", "10"],
            "--pids-limit is not supported in --mode vm: the guest has its own kernel and PID space; use --memory/--cpus to size the VM, or --mode container",
        ),
        (
            &["--init"],
            "--init is not supported in --mode vm: vcompare's guest init is already PID 1 and forwards SIGTERM to the entrypoint; drop --init, or use --mode container",
        ),
        (
            &["--network", "host"],
            "--network host is not supported in --mode vm: the guest has its own kernel and network stack, which cannot be the host's (a VM joins a bridge network through its virtio-net device instead); use --network NAME (the default network unless given) or none, or --mode container",
        ),
        (
            &["--userns", "host"],
            "--userns host is not supported in --mode vm: the guest has its own kernel and user ids, there is no host user namespace to join; drop --userns host, or use --mode container",
        ),
    ];
    for (flags, why) in cases {
        let mut args = vec!["run", "--mode", "vm", "--rm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["vcompare/probe", "true"]);
        let o = env.run(&args);
        assert_refused(&o, &format!("vcompare: error: {why}"));
        assert!(o.stdout.is_empty(), "{}", text(&o));
    }
    assert!(env.ps_json().is_empty(), "no instance record is left");
    assert_eq!(env.store_snapshot(), before, "nothing was built or written");
}

/// Without `vcompare-vmm` next to it, VM mode is an error naming the fix, never a silent
/// in-process VMM (whose memory would be reported as the VMM's). The binary is copied alone
/// into an empty directory; the static probe is named so the default image can be built.
#[test]
fn vm_without_vcompare_vmm_is_one_clear_line() {
    let env = common::Env::new();
    let bin = env.scratch("bin");
    let exe = bin.join("vcompare");
    std::fs::copy(vcompare(), &exe).unwrap();
    let o = Command::new(&exe)
        .arg("--root")
        .arg(env.root())
        .args(["run", "--mode", "vm", "--rm", "vcompare/probe", "true"])
        .env("VCOMPARE_PROBE", static_dir().join("probe"))
        .env_remove("VCOMPARE_VMM_INPROCESS")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_refused(
        &o,
        &format!(
            "vcompare: error: vcompare-vmm not found next to vcompare at {}; build it with cargo build --release --workspace",
            exe.display()
        ),
    );
    assert!(env.ps_json().is_empty(), "no instance record is left");
}

/// As an unprivileged user without access to /dev/kvm, VM mode fails with one line naming the
/// cause and the fix, and leaves no instance record or VMM process behind. The test does not
/// depend on the host's /dev/kvm mode (0666 on some distributions): in a private mount
/// namespace it puts a root-only (0600) node of the same device over /dev/kvm.
#[test]
fn vm_without_kvm_permission_is_one_clear_line() {
    crate::require_root!();
    crate::skip_unless!(
        Path::new("/dev/kvm").exists(),
        "needs /dev/kvm (its device number for the root-only copy)"
    );
    use std::os::unix::fs::FileTypeExt;
    let kvm = std::fs::metadata("/dev/kvm").unwrap();
    assert!(kvm.file_type().is_char_device());
    let root = Root::new(PREFIX, "noperm");
    std::os::unix::fs::chown(&root.0, Some(65534), Some(65534)).unwrap();
    // The unprivileged user may not be able to reach the build tree: give it private copies.
    let bin = root.0.join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::copy(vcompare(), bin.join("vcompare")).unwrap();
    std::fs::copy(common::vmm_binary(), bin.join("vcompare-vmm")).unwrap();
    let probe = bin.join("probe");
    std::fs::copy(static_dir().join("probe"), &probe).unwrap();
    let data = root.0.join("data");
    std::fs::create_dir(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(65534), Some(65534)).unwrap();
    let nodes = root.0.join("nodes");
    std::fs::create_dir(&nodes).unwrap();
    let rdev = std::os::unix::fs::MetadataExt::rdev(&kvm);
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    let script = format!(
        "set -e; mount -t tmpfs -o mode=0755 nodes {n}; mknod -m 0600 {n}/kvm c {major} {minor}; \
         mount --bind {n}/kvm /dev/kvm; exec \"$@\"",
        n = nodes.display()
    );
    let o = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
            "sh",
        ])
        .args([
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ])
        .arg(bin.join("vcompare"))
        .arg("--root")
        .arg(&data)
        .args([
            "run",
            "--rm",
            "--mode",
            "vm",
            "vcompare/probe",
            "/bin/probe",
            "true",
        ])
        .env("VCOMPARE_PROBE", &probe)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_refused(
        &o,
        "vcompare: error: cannot open /dev/kvm: Permission denied (os error 13) (KVM is needed for --mode vm: load kvm_intel/kvm_amd/kvm_pvm and make /dev/kvm accessible, e.g. add the user to group kvm)",
    );
    let left = std::fs::read_dir(data.join("instances"))
        .map(|d| {
            d.flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(left, 0, "no instance record may be left");
    assert!(!has_process_with_root(&root.0));
    // The host's own /dev/kvm was never touched.
    assert_eq!(
        std::fs::metadata("/dev/kvm").unwrap().permissions(),
        kvm.permissions()
    );
}

impl Root {
    /// `PATH:GUEST` for `-v` (a `Root` also serves as a scratch host directory).
    fn arg(&self, guest: &str) -> String {
        format!("{}:{guest}", self.0.display())
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn vm_shares_work_both_ways_and_ro_refuses_writes() {
    require_vm!();
    use std::os::unix::fs::MetadataExt;
    let root = Root::new(PREFIX, "share");
    let rw = Root::new(PREFIX, "share-host-rw");
    let ro = Root::new(PREFIX, "share-host-ro");
    std::fs::write(rw.path("fromhost.txt"), "host-hello\n").unwrap();
    std::fs::write(rw.path("owned"), "").unwrap();
    std::os::unix::fs::chown(rw.path("owned"), Some(4242), Some(4343)).unwrap();
    // An absolute symlink made on the host resolves inside the guest, never on the host.
    std::os::unix::fs::symlink("/proc/version", rw.path("abs-link")).unwrap();
    std::fs::create_dir(rw.path("hostdir")).unwrap();
    std::fs::write(rw.path("hostdir/a"), "a").unwrap();
    std::fs::write(ro.path("ro.txt"), "read-only-content\n").unwrap();
    let script = "set -e
cat /mnt/rw/fromhost.txt
stat -c 'owner=%u:%g' /mnt/rw/owned
echo one > /mnt/rw/new.txt
echo two >> /mnt/rw/new.txt
mkdir /mnt/rw/gdir
mv /mnt/rw/new.txt /mnt/rw/gdir/renamed.txt
echo x > /mnt/rw/gone.txt
rm /mnt/rw/gone.txt
rm -r /mnt/rw/hostdir
chmod 640 /mnt/rw/gdir/renamed.txt
ln -s gdir/renamed.txt /mnt/rw/glink
echo via-link=$(cat /mnt/rw/glink)
touch /mnt/rw/chowned
chown 1000:1001 /mnt/rw/chowned
echo links-to=$(readlink /mnt/rw/abs-link) $(head -c 13 /mnt/rw/abs-link)
echo listing=$(ls /mnt/rw)
cat /mnt/ro/ro.txt
if echo no > /mnt/ro/x; then echo ro-written; fi
if mkdir /mnt/ro/d; then echo ro-written; fi
echo in-a-volume > /mnt/vol/v.txt
echo done";
    let o = root.run_vm(&[
        "-v",
        &rw.arg("/mnt/rw"),
        "-v",
        &ro.arg("/mnt/ro:ro"),
        "-v",
        "vmvol:/mnt/vol",
        "vcompare/probe",
        "sh",
        "-c",
        script,
    ]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // Host → guest: content, owner ids as they are on the host.
    assert!(out.contains("host-hello"), "{}", text(&o));
    assert!(out.contains("owner=4242:4343"), "{}", text(&o));
    assert!(out.contains("via-link=one two\n"), "{}", text(&o));
    // The host's absolute symlink is followed in the guest: the guest kernel's version.
    assert!(
        out.contains("links-to=/proc/version Linux version"),
        "{}",
        text(&o)
    );
    assert!(
        out.contains("listing=abs-link chowned fromhost.txt gdir glink owned\n"),
        "{}",
        text(&o)
    );
    // :ro refuses writes with EROFS and nothing reaches the host.
    assert!(out.contains("read-only-content"), "{}", text(&o));
    assert!(!out.contains("ro-written"), "{}", text(&o));
    // (The guest's stdout and stderr share its one console, our stdout.)
    assert!(out.contains("Read-only file system"), "{}", text(&o));
    assert!(out.contains("done"), "{}", text(&o));
    assert_eq!(std::fs::read_dir(&ro.0).unwrap().count(), 1);
    // Guest → host: create, append, rename, delete, chmod, symlink, chown.
    assert_eq!(
        std::fs::read_to_string(rw.path("gdir/renamed.txt")).unwrap(),
        "one\ntwo\n"
    );
    assert_eq!(mode_of(&rw.path("gdir/renamed.txt")), 0o640);
    assert!(!rw.path("gone.txt").exists() && !rw.path("new.txt").exists());
    assert!(!rw.path("hostdir").exists());
    assert_eq!(
        std::fs::read_link(rw.path("glink")).unwrap(),
        Path::new("gdir/renamed.txt")
    );
    let m = std::fs::metadata(rw.path("chowned")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1000, 1001));
    // A managed volume is shared the same way and outlives the instance.
    assert_eq!(
        std::fs::read_to_string(root.path("volumes/vmvol/_data/v.txt")).unwrap(),
        "in-a-volume\n"
    );
    // Files the guest's root creates belong to host root (ids pass through).
    assert_eq!(std::fs::metadata(rw.path("gdir")).unwrap().uid(), 0);
}

/// `mib` MiB of a fixed pseudo-random pattern, written at byte `offset` (the file is sparse
/// below it).
fn write_pattern(path: &Path, offset: u64, mib: usize) {
    use std::io::{Seek, Write};
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap();
    f.seek(std::io::SeekFrom::Start(offset)).unwrap();
    let mut f = std::io::BufWriter::new(f);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&block).unwrap();
    }
    f.flush().unwrap();
}

/// sha256 of `len` bytes of `path` from `offset` (all of it if `len` is None).
fn sha256_of(path: &Path, offset: u64, len: Option<u64>) -> String {
    use sha2::Digest;
    use std::io::{Read, Seek};
    let mut f = std::fs::File::open(path).unwrap();
    f.seek(std::io::SeekFrom::Start(offset)).unwrap();
    let mut h = sha2::Sha256::new();
    let mut r: Box<dyn Read> = match len {
        Some(n) => Box::new(f.take(n)),
        None => Box::new(f),
    };
    std::io::copy(&mut r, &mut h).unwrap();
    format!("{:x}", h.finalize())
}

/// Whole-file transfers both ways, offsets past 256 MiB, and host-side changes made while
/// the guest runs. The bulk size is 16 MiB: every 4 KiB page costs the guest kernel ~4 ms of
/// emulated code on PVM hosts (about 0.5–1 MiB/s), so 256 MiB each way would take 10–20
/// minutes here; offsets past 256 MiB are covered with sparse files instead.
#[test]
fn vm_share_streams_files_reaches_large_offsets_and_sees_live_host_changes() {
    require_vm!();
    const MIB: u64 = 1 << 20;
    let root = Root::new(PREFIX, "share-big");
    let rw = Root::new(PREFIX, "share-host-big");
    write_pattern(&rw.path("big"), 0, 16);
    // A 301 MiB sparse file whose last MiB is data: the guest reads past 256 MiB.
    write_pattern(&rw.path("far"), 300 * MIB, 1);
    std::fs::write(rw.path("tobedeleted"), "x").unwrap();
    let script = "set -e
sha256sum /mnt/rw/big
dd if=/mnt/rw/far of=/tmp/far-tail bs=1M skip=300 count=1 2>/dev/null
sha256sum /tmp/far-tail
dd if=/mnt/rw/big of=/mnt/rw/copy bs=1M 2>/dev/null
dd if=/mnt/rw/big of=/mnt/rw/sparse bs=1M seek=511 count=1 2>/dev/null
touch /mnt/rw/ready
i=0
while [ ! -e /mnt/rw/go ]; do sleep 0.2; i=$((i+1)); [ $i -lt 1500 ]; done
cat /mnt/rw/late.txt
if [ -e /mnt/rw/tobedeleted ]; then echo still-there; else echo deleted; fi";
    let child = root
        .cmd(&["run", "--mode", "vm", "--rm", "--timeout", "600", "-v"])
        .arg(rw.arg("/mnt/rw"))
        .args(["vcompare/probe", "sh", "-c", script])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Change the host side while the guest is running, once it says it is ready.
    let deadline = Instant::now() + Duration::from_secs(600);
    while !rw.path("ready").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::fs::write(rw.path("late.txt"), "late line 1\n").unwrap();
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(rw.path("late.txt"))
            .unwrap();
        f.write_all(b"late line 2\n").unwrap();
    }
    std::fs::remove_file(rw.path("tobedeleted")).unwrap();
    std::fs::write(rw.path("go"), "").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let lines: Vec<&str> = out.lines().collect();
    let big = sha256_of(&rw.path("big"), 0, None);
    assert_eq!(
        lines.first().copied(),
        Some(format!("{big}  /mnt/rw/big").as_str()),
        "guest read: {}",
        text(&o)
    );
    assert_eq!(
        lines.get(1).copied(),
        Some(
            format!(
                "{}  /tmp/far-tail",
                sha256_of(&rw.path("far"), 300 * MIB, None)
            )
            .as_str()
        ),
        "guest read at 300 MiB: {}",
        text(&o)
    );
    assert_eq!(sha256_of(&rw.path("copy"), 0, None), big, "guest wrote");
    let sparse = rw.path("sparse");
    assert_eq!(std::fs::metadata(&sparse).unwrap().len(), 512 * MIB);
    assert_eq!(
        sha256_of(&sparse, 511 * MIB, None),
        sha256_of(&rw.path("big"), 0, Some(MIB)),
        "guest wrote at 511 MiB"
    );
    assert!(
        out.contains("late line 1\nlate line 2\ndeleted"),
        "{}",
        text(&o)
    );
}

/// Networks, VM side: a web server in a microVM is reached through `-p` from the stand-in
/// host (127.0.0.1 and the gateway address), and from a container on the same user-defined
/// network by the name the network's DNS responder gives it; removing the VM leaves no TAP,
/// bridge or rule behind. All inside this test's own network namespace.
#[test]
fn vm_serves_a_published_port_and_a_container_on_its_network() {
    require_vm!();
    use common::test_host::{assert_no_network_leftovers, http_get};
    let root = Root::new(PREFIX, "net");
    root.ok(&["network", "create", "mixed"]);
    let page = "mkdir -p /www && echo hello-vm > /www/index.html && exec httpd -f -p 80 -h /www";
    let id = root
        .ok(&[
            "run",
            "-d",
            "--mode",
            "vm",
            "--timeout",
            "540",
            "--network",
            "mixed",
            "--name",
            "vmweb",
            "-p",
            "18090:80",
            "vcompare/probe",
            "sh",
            "-c",
            page,
        ])
        .trim()
        .to_string();
    // Polls `addr` until the page comes (the guest boots, then its httpd forks per request in
    // an emulated kernel: seconds each on a loaded nested host; not a timing assertion).
    let wait_page = |addr: &str, what: &str, secs: u64| {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            match http_get(addr) {
                Ok(r) if r.contains("hello-vm") => break,
                r => {
                    let log = root.run(&["logs", &id]);
                    assert!(
                        Instant::now() < deadline,
                        "no page {what}: {r:?}\nlog: {}",
                        text(&log)
                    );
                    std::thread::sleep(Duration::from_secs(2));
                }
            }
        }
    };
    wait_page("127.0.0.1:18090", "through -p", 360);
    let v: serde_json::Value =
        serde_json::from_str(&root.ok(&["inspect", &id, "--format", "json"])).unwrap();
    let att = &v["view"]["network"]["attachments"][0];
    assert_eq!(att["host"]["kind"], "tap", "{v}");
    assert!(
        att["host"]["link"].as_str().unwrap().starts_with("vct"),
        "{v}"
    );
    let vm_ip = common::test_host::address_of(att);
    assert!(vm_ip.starts_with("10.89.0."), "{vm_ip}");
    let gw = att["inside"]["gateway"].as_str().unwrap().to_string();
    wait_page(&format!("{gw}:18090"), "through the gateway address", 60);

    // A container on the same bridge finds the VM by name and reaches it directly.
    let script = format!(
        "nslookup vmweb > /tmp/ns 2>&1; cat /tmp/ns; printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {vm_ip} 80"
    );
    let o = root.run(&[
        "run",
        "--rm",
        "--mode",
        "container",
        "--network",
        "mixed",
        "vcompare/probe",
        "sh",
        "-c",
        &script,
    ]);
    let out = text(&o);
    assert!(
        out.contains(&vm_ip) && out.contains("hello-vm"),
        "container -> VM: {out}"
    );

    root.ok(&["rm", "-f", &id]);
    root.ok(&["network", "rm", "mixed"]);
    assert_no_network_leftovers();
}

/// `exec` into a detached VM (`run -dit … sh`, whose shell keeps running with its prompt in
/// the log) goes through the guest agent (virtio-vsock) and keeps the
/// container's contract: the same checks as `container_cli`'s exec test (exit codes, `-e`,
/// `-w`, `-u`, `-i`, `-t`, large streams both ways), the guest kernel's `uname`, an
/// interactive `exec -it` shell with Ctrl-C, and one clear line while the agent cannot answer
/// (the VMM frozen with SIGSTOP: deterministic on any host, however fast it boots).
#[test]
fn vm_exec_through_the_guest_agent_keeps_the_container_contract() {
    require_vm!();
    let root = Root::new(PREFIX, "exec");
    // `-dit` as in a container: the detached entrypoint's shell gets a pty in the guest
    // whose output goes to the log, and keeps running although nothing types into it.
    root.ok(&[
        "run",
        "--mode",
        "vm",
        "-dit",
        "--network",
        "none",
        "--name",
        "x",
        "vcompare/probe",
        "sh",
    ]);
    let pid = root.vmm_pid("x");
    // SAFETY: signalling the VMM this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let o = root.run(&["exec", "x", "true"]);
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    let lines = stderr_lines(&o);
    assert!(
        lines.len() == 1
            && lines[0].contains("guest agent")
            && (lines[0].contains("not up yet") || lines[0].contains("did not answer")),
        "one line saying the agent cannot answer yet: {lines:?}"
    );
    wait_boot("the guest agent to answer", || {
        root.run(&["exec", "x", "true"])
            .status
            .success()
            .then_some(())
    });
    root.wait_log("x", "# ", 1);

    let guest = root.ok(&["exec", "x", "uname", "-r"]);
    let info = root.inspect("x");
    assert_eq!(
        guest.trim(),
        info["view"]["guest"]["kernel_release"]
            .as_str()
            .unwrap_or("?"),
        "{info}"
    );
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_ne!(guest.trim(), host.trim(), "exec ran in the guest kernel");

    let cmd = |a: &[&str]| root.cmd(a);
    common::exec_checks::check_exec_contract(&common::exec_checks::Exec {
        cmd: &cmd,
        instance: "x",
    });

    let s = common::pty::PtySession::spawn(root.cmd(&["exec", "-it", "x", "sh"]));
    common::pty::drive_shell(s, common::pty::Side::Guest);
    assert_eq!(
        root.record("x")["status"],
        "running",
        "exec ended, the VM did not"
    );
    root.ok(&["rm", "-f", "x"]);
}

/// `run -it` in a VM: the entrypoint gets a pty inside the guest, reached over the agent,
/// with the user's window size (also after a resize), Ctrl-C and the exit code; `run -i`
/// streams stdin to the entrypoint.
#[test]
fn vm_run_it_gives_the_entrypoint_a_terminal_and_run_i_streams_stdin() {
    require_vm!();
    let root = Root::new(PREFIX, "tty");
    let mut s = common::pty::PtySession::spawn_sized(
        root.vm_cmd(&["-it", "--network", "none", "vcompare/probe", "sh"]),
        33,
        101,
    );
    s.expect("# ");
    s.send(b"stty size\n");
    s.expect("\r\n33 101\r\n");
    s.resize(40, 120);
    // The resize reaches the guest asynchronously (SIGWINCH → message → TIOCSWINSZ).
    let mut seen = String::new();
    for _ in 0..50 {
        s.expect("# ");
        s.send(b"stty size\n");
        s.expect("\r\n"); // the echoed command line
        seen = s.expect("\r\n");
        if seen.contains("40 120") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        seen.contains("40 120"),
        "window size after the resize: {seen:?}"
    );
    common::pty::drive_shell(s, common::pty::Side::Guest);
    assert!(root.ps_json().is_empty(), "--rm left an instance");

    let mut child = root
        .vm_cmd(&[
            "-i",
            "--network",
            "none",
            "vcompare/probe",
            "sh",
            "-c",
            "cat; echo end",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"a\nb\n").unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "a\nb\nend\n",
        "{}",
        text(&o)
    );
}
