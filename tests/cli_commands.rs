//! End-to-end tests of CLI commands and flags not covered elsewhere, through the real binary
//! in container mode: `logs -f`, `image rm` of an image in use, `--entrypoint`,
//! `--pids-limit`, `--cpus`, exit status 125, `stop` through `--init`, `doctor`,
//! `report --compare` and `demo`. Containers need root; a missing capability is a recorded
//! skip (tests/common/skip.rs).

mod common;

use std::io::BufRead;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use common::{cgroup_file, process_alive, text, wait_for, wait_until, Env, BUSYBOX};
use serde_json::Value;

/// Generous bound for one line to arrive from a follower (guards against hangs only).
const LINE_DEADLINE: Duration = Duration::from_secs(60);

/// `logs -f` prints a detached instance's output as it is written and ends (exit 0) when the
/// instance exits. The instance's script is paced by files the test creates in a bind mount,
/// so "not yet written" is a fact, not a race.
#[test]
fn logs_follow_streams_until_the_instance_exits() {
    crate::require_root!();
    let env = Env::with_busybox();
    let ctl = env.scratch("ctl");
    let script = "echo one; until [ -e /ctl/go ]; do sleep 0.05; done; echo two; \
                  until [ -e /ctl/end ]; do sleep 0.05; done; echo three";
    let vol = format!("{}:/ctl:ro", ctl.display());
    let (id, _) = env.run_detached(&["-v", &vol, BUSYBOX, "sh", "-c", script]);
    let mut follower = env
        .cmd(&["logs", "-f", &id[..12]])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let next = |what: &str| {
        rx.recv_timeout(LINE_DEADLINE)
            .unwrap_or_else(|e| panic!("logs -f gave no line {what}: {e}"))
    };
    assert_eq!(next("while running"), "one");
    // The instance is blocked before `two`: the follower must still be following.
    assert_eq!(env.instance(&id)["status"], "running");
    assert!(
        follower.try_wait().unwrap().is_none(),
        "logs -f ended early"
    );
    std::fs::write(ctl.join("go"), b"").unwrap();
    assert_eq!(next("after go"), "two");
    assert!(
        follower.try_wait().unwrap().is_none(),
        "logs -f ended early"
    );
    std::fs::write(ctl.join("end"), b"").unwrap();
    assert_eq!(next("before exit"), "three");
    let st = wait_for("logs -f to end after the instance exited", || {
        follower.try_wait().unwrap()
    });
    assert_eq!(st.code(), Some(0));
    assert!(
        rx.recv_timeout(LINE_DEADLINE).is_err(),
        "output after the last line"
    );
    let v = env.instance(&id);
    assert_eq!(
        (&v["status"], &v["exit_code"]),
        (&"exited".into(), &0.into())
    );
    env.ok(&["rm", &id]);
}

/// `image rm` refuses an image an instance uses (and the image stays usable); `-f` refuses too
/// while that instance runs (its files are the container's root filesystem), and removes the
/// image once it has exited: the record, the unpacked rootfs and the blobs go, and a `start`
/// of the instance afterwards fails with one sentence.
#[test]
fn image_rm_of_an_image_a_running_instance_uses() {
    crate::require_root!();
    let env = Env::with_busybox();
    let (id, pid) = env.run_detached(&["--name", "user", BUSYBOX, "sleep", "1000"]);
    let rootfs = common::rootfs_of(&env, BUSYBOX);
    let o = env.run(&["image", "rm", BUSYBOX]);
    assert_eq!(o.status.code(), Some(125));
    assert_eq!(
        text(&o.stderr),
        format!(
            "vcompare: error: image {BUSYBOX} is used by instance(s) {}; remove them first or use `image rm -f`\n",
            &id[..12]
        )
    );
    assert_eq!(text(&o.stdout), "");
    // Still there and usable.
    let o = env.run(&[
        "run",
        "--rm",
        "--mode",
        "container",
        BUSYBOX,
        "echo",
        "usable",
    ]);
    assert_eq!(
        (o.status.code(), text(&o.stdout)),
        (Some(0), "usable\n".into())
    );
    assert!(rootfs.is_dir());

    // -f does not remove the root filesystem of a running container either.
    let o = env.run(&["image", "rm", "-f", BUSYBOX]);
    assert_eq!(o.status.code(), Some(125));
    assert_eq!(
        text(&o.stderr),
        format!(
            "vcompare: error: image {BUSYBOX} is used by running instance(s) {}; stop them first (`image rm -f` does not remove an image under a running instance)\n",
            &id[..12]
        )
    );
    assert!(rootfs.is_dir());
    let o = env.run(&["exec", "user", "ls", "/bin/busybox"]);
    assert_eq!(
        (o.status.code(), text(&o.stdout)),
        (Some(0), "/bin/busybox\n".into()),
        "the running instance keeps its image: {}",
        text(&o.stderr)
    );
    env.ok(&["stop", "-t", "1", "user"]);
    let v = env.wait_status(&id, "exited");
    assert_eq!(v["exit_code"], 137, "{v}");

    // Once the instance has exited, -f removes the image under it.
    let out = env.ok(&["image", "rm", "-f", BUSYBOX]);
    let digest = env.instance(&id)["image_digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(out, format!("Deleted: {digest}\n"));
    assert!(!rootfs.exists(), "the rootfs cache is removed");
    assert_eq!(env.ok(&["image", "ls", "-q"]), "");
    let blobs = std::fs::read_dir(env.root().join("blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0, "unreferenced blobs are collected");
    let err = env.fails(&["image", "inspect", BUSYBOX]);
    assert_eq!(
        err,
        format!("vcompare: error: image `{BUSYBOX}` not found; `vcompare image ls` lists images and `vcompare image import` adds one")
    );
    assert!(!process_alive(pid));
    // Starting it again needs the image: one sentence naming the missing rootfs.
    let o = env.run(&["start", "-a", "user"]);
    assert_eq!(o.status.code(), Some(125), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stderr),
        format!(
            "vcompare: error: image root filesystem {} does not exist (the image was removed); import the image again\n",
            rootfs.display()
        )
    );
    env.ok(&["rm", "user"]);
    assert_eq!(env.ps_json(), Vec::<Value>::new());
}

/// `--entrypoint` replaces the image's entrypoint and drops its CMD (the busybox image's CMD
/// is `sh`); words are split on spaces, a JSON array keeps arguments as given.
#[test]
fn entrypoint_replaces_the_image_command() {
    crate::require_root!();
    let env = Env::with_busybox();
    let run = |args: &[&str]| {
        let mut a = vec!["run", "--rm", "--mode", "container"];
        a.extend_from_slice(args);
        let o = env.run(&a);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o.stderr));
        text(&o.stdout)
    };
    assert_eq!(run(&["--entrypoint", "/bin/echo", BUSYBOX]), "\n");
    assert_eq!(
        run(&["--entrypoint", "/bin/echo -n", BUSYBOX, "a", "b"]),
        "a b"
    );
    assert_eq!(
        run(&["--entrypoint", r#"["/bin/echo", "x  y"]"#, BUSYBOX, "z"]),
        "x  y z\n"
    );
}

/// `--pids-limit N`: the cgroup in use on this host (v1 `pids` hierarchy or v2) carries N
/// while the instance runs, and forking past it fails inside with EAGAIN.
#[test]
fn pids_limit_is_set_and_enforced() {
    crate::require_root!();
    let env = Env::with_busybox();
    let (id, pid) = env.run_detached(&["--pids-limit", "12", BUSYBOX, "sleep", "1000"]);
    let (max, _v2) = cgroup_file(pid, "pids", "pids.max", "pids.max");
    assert_eq!(
        std::fs::read_to_string(&max).unwrap(),
        "12\n",
        "{}",
        max.display()
    );
    env.ok(&["rm", "-f", &id]);
    // sh + 8 sleepers fill a limit of 9 tasks; the 9th background job cannot be forked.
    let o = env.run_sh(
        &["--pids-limit", "9"],
        "for i in 1 2 3 4 5 6 7 8; do sleep 1000 & done; sleep 1000 & echo rc=$?",
    );
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    assert_eq!(text(&o.stdout), "");
    assert_eq!(
        text(&o.stderr),
        "sh: can't fork: Resource temporarily unavailable\n"
    );
}

/// Numbers of `cpu.stat` (`nr_throttled`, …) as name → value.
fn cpu_stat(path: &std::path::Path) -> std::collections::HashMap<String, u64> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// `--cpus 0.5` is a CFS quota of 50 ms per 100 ms period, and a busy loop under it is
/// actually throttled (the kernel's own counter), on v1 (`cpu.cfs_quota_us`, `cpu.stat`) and
/// on v2 (`cpu.max`, `cpu.stat`).
#[test]
fn cpus_limit_throttles_a_busy_loop() {
    crate::require_root!();
    let env = Env::with_busybox();
    // Four busy loops: the cgroup wants up to 2 CPUs (all of this machine), far over its
    // quota even when other work shares the CPUs, so it is throttled whatever the load.
    let (id, pid) = env.run_detached(&[
        "--cpus",
        "0.5",
        BUSYBOX,
        "sh",
        "-c",
        "for i in 1 2 3 4; do (while :; do :; done) & done; wait",
    ]);
    let (quota, v2) = cgroup_file(pid, "cpu", "cpu.cfs_quota_us", "cpu.max");
    let dir = quota.parent().unwrap().to_path_buf();
    if v2 {
        assert_eq!(std::fs::read_to_string(&quota).unwrap(), "50000 100000\n");
    } else {
        assert_eq!(std::fs::read_to_string(&quota).unwrap(), "50000\n");
        assert_eq!(
            std::fs::read_to_string(dir.join("cpu.cfs_period_us")).unwrap(),
            "100000\n"
        );
    }
    // Throttled periods, and the time spent throttled (accounted when a period ends).
    let stat = dir.join("cpu.stat");
    let time_key = if v2 {
        "throttled_usec"
    } else {
        "throttled_time"
    };
    let s = wait_until("the busy loops to be throttled", || {
        let s = cpu_stat(&stat);
        let n = |k: &str| s.get(k).copied().unwrap_or(0);
        if n("nr_throttled") > 0 && n(time_key) > 0 {
            Ok(s)
        } else {
            Err(format!("{} = {s:?}", stat.display()))
        }
    });
    assert!(s["nr_periods"] >= s["nr_throttled"], "{s:?}");
    env.ok(&["rm", "-f", &id]);
}

/// README: "a failure to start at all 125" — errors before the workload starts exit 125 with
/// one `vcompare: error:` sentence and leave no instance behind.
#[test]
fn failures_before_the_workload_exit_125() {
    crate::require_root!();
    let env = Env::with_busybox();
    for (args, sentence) in [
        (
            vec!["run", "--rm", "no/such:tag"],
            "vcompare: error: image `no/such:tag` not found; `vcompare image ls` lists images and `vcompare image import` adds one".to_string(),
        ),
        (
            vec!["run", "--memory", "lots", BUSYBOX, "true"],
            "vcompare: error: bad --memory `lots`: use a number with an optional b, k, m or g suffix (e.g. 256m)".to_string(),
        ),
        (
            vec!["run", "-w", "rel/dir", BUSYBOX, "true"],
            "vcompare: error: bad -w `rel/dir`: the working directory must be an absolute path without `..`".to_string(),
        ),
    ] {
        let o = env.run(&args);
        assert_eq!(o.status.code(), Some(125), "{args:?}: {}", text(&o.stderr));
        assert_eq!(text(&o.stderr), format!("{sentence}\n"), "{args:?}");
        assert_eq!(text(&o.stdout), "", "{args:?}");
    }
    assert_eq!(
        env.ps_json(),
        Vec::<Value>::new(),
        "a failed run left a record"
    );
}

/// `stop` with `--init`: the reaper (PID 1) forwards SIGTERM to the entrypoint, whose trap
/// exits 42; the recorded exit code is the trap's, not 137 (which would mean SIGKILL).
#[test]
fn stop_reaches_the_entrypoint_through_init() {
    crate::require_root!();
    let env = Env::with_busybox();
    let (id, _) = env.run_detached(&[
        "--init",
        BUSYBOX,
        "sh",
        "-c",
        "trap 'echo got TERM; exit 42' TERM; echo ready; while :; do sleep 0.05; done",
    ]);
    // The trap is installed once `ready` is in the log.
    wait_for("the entrypoint to install its trap", || {
        (env.ok(&["logs", &id]) == "ready\n").then_some(())
    });
    // A grace period far above need: reaching SIGKILL would mean forwarding failed.
    assert_eq!(
        env.ok(&["stop", "-t", "120", &id]),
        format!("{}\n", &id[..12])
    );
    let v = env.wait_status(&id, "exited");
    assert_eq!(v["exit_code"], 42, "{v}");
    assert_eq!(
        v["outcome"],
        serde_json::json!({"kind": "exited", "value": 42}),
        "{v}"
    );
    assert_eq!(env.ok(&["logs", &id]), "ready\ngot TERM\n");
    env.ok(&["rm", &id]);
}

/// The KVM backend label of this host, from the loaded modules.
fn kvm_backend() -> &'static str {
    let m = |name: &str| std::path::Path::new("/sys/module").join(name).exists();
    if m("kvm_pvm") {
        "nested (PVM): guest kernel code emulated"
    } else if m("kvm_intel") {
        "hardware (Intel VMX)"
    } else if m("kvm_amd") {
        "hardware (AMD SVM)"
    } else {
        "unknown"
    }
}

/// The cgroup line `doctor` must print for this host, from other sources than the mount
/// table `doctor` reads: the v1 controllers this process is placed under (`/proc/self/cgroup`,
/// without named hierarchies), the cgroup2 mount point from `mountinfo`, and its controllers.
fn expected_cgroup_detail() -> String {
    let mut v1: Vec<String> = std::fs::read_to_string("/proc/self/cgroup")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .flat_map(|c| c.split(','))
        .filter(|c| !c.is_empty() && !c.starts_with("name="))
        .map(String::from)
        .collect();
    v1.sort();
    v1.dedup();
    let v2 = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (right.split_whitespace().next() == Some("cgroup2"))
                .then(|| left.split_whitespace().nth(4).map(String::from))
                .flatten()
        });
    let version = match (v1.is_empty(), v2.is_some()) {
        (false, true) => "hybrid (v1 + v2)",
        (false, false) => "v1",
        (true, true) => "v2",
        (true, false) => "none",
    };
    let v2_ctrls = v2
        .as_ref()
        .and_then(|p| std::fs::read_to_string(format!("{p}/cgroup.controllers")).ok())
        .unwrap_or_default();
    format!(
        "{version}; v1 controllers: [{}]; v2 at {} with [{}]",
        v1.join(" "),
        v2.as_deref().unwrap_or("-"),
        v2_ctrls.trim()
    )
}

/// `doctor` exits 0 and names this host's KVM backend and cgroup layout, in its fixed format
/// (`ok`/`--`, the check name padded to 16, the detail).
#[test]
fn doctor_names_the_kvm_backend_and_the_cgroup_version() {
    crate::require_root!();
    crate::skip_unless!(
        common::skip::kvm_usable(),
        "needs a usable /dev/kvm (doctor's kvm line is `ok` only there)"
    );
    let env = Env::new();
    let o = env.run(&["doctor"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "ok   kvm              /dev/kvm usable, backend {}",
            kvm_backend()
        )
    );
    assert_eq!(
        lines[2],
        format!("ok   cgroups          {}", expected_cgroup_detail())
    );
    let names: Vec<&str> = lines
        .iter()
        .map(|l| l[5..].split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "kvm",
            "user",
            "cgroups",
            "overlayfs",
            "mkfs.ext4",
            "busybox",
            "probe",
            "crun",
            "runc",
            "qemu",
            "firecracker"
        ],
        "{out}"
    );
    let json: Value = serde_json::from_str(&env.ok(&["doctor", "--format", "json"])).unwrap();
    assert_eq!(json[0]["name"], "kvm");
    assert_eq!(json[0]["ok"], true);
    assert_eq!(json[2]["detail"], expected_cgroup_detail());
}

/// `report --compare A B` prints both environments and one row per figure with B / A.
#[test]
fn report_compare_prints_ratios() {
    let env = Env::new();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bench_fixture");
    let mut a = vcompare_bench::Results::load(&fixture).unwrap();
    let set = |r: &mut vcompare_bench::Results, subject: &str, ns: u64| {
        let s = r.startup.iter_mut().find(|s| s.subject == subject).unwrap();
        s.runs.iter_mut().for_each(|run| run.wall_ns = ns);
    };
    set(&mut a, "container", 10_000_000);
    set(&mut a, "runc", 30_000_000);
    let mut b = a.clone();
    set(&mut b, "container", 25_000_000);
    b.startup.retain(|s| s.subject != "runc");
    let (da, db) = (env.scratch("A"), env.scratch("B"));
    a.save(&da).unwrap();
    b.save(&db).unwrap();
    let out = env.ok(&[
        "report",
        "--compare",
        da.to_str().unwrap(),
        db.to_str().unwrap(),
    ]);
    assert!(
        out.starts_with(&format!(
            "# vcompare: {} vs {}\n",
            da.display(),
            db.display()
        )),
        "{out}"
    );
    for row in [
        "| figure | A | B | B / A |",
        "| startup container (median) | 10.0 ms | 25.0 ms | 2.50 |",
        "| startup runc (median) | 30.0 ms | – | – |",
    ] {
        assert!(out.lines().any(|l| l == row), "no row `{row}` in:\n{out}");
    }
    // Figures equal on both sides have the ratio 1.00.
    let host = out
        .lines()
        .find(|l| l.starts_with("| startup host (median) |"))
        .unwrap_or_else(|| panic!("no host row in:\n{out}"));
    assert!(host.ends_with(" | 1.00 |"), "{host}");
    let err = env.fails(&["report", "--compare", da.to_str().unwrap()]);
    assert_eq!(
        err,
        "vcompare: error: --compare needs exactly two results directories"
    );
}

/// `vcompare demo` (its only option is `--out`): the image store, the probe's view from the
/// host, a container and a microVM side by side, the KVM backend, then the short benchmark
/// with its report. One VM boot per VM step: slow on a nested host, run once here.
#[test]
fn demo_shows_host_container_and_vm() {
    crate::require_root!();
    crate::skip_unless!(
        common::skip::kvm_usable(),
        "needs a usable /dev/kvm (the microVM column)"
    );
    common::vmm_binary();
    let env = Env::new();
    let out_dir = env.dir.path().join("demo-out");
    let o = env.run(&["demo", "--out", out_dir.to_str().unwrap()]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", text(&o.stderr));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "== the image store ==");
    let image_id = env.ok(&["image", "ls", "-q"]).trim().to_string();
    let probe_header =
        format!("== the same probe, three ways (image vcompare/probe:latest {image_id}) ==");
    let at = lines
        .iter()
        .position(|l| *l == probe_header)
        .unwrap_or_else(|| panic!("no `{probe_header}` in:\n{out}"));
    // Cells may hold one space (`125 pids`); columns are at least two spaces apart.
    let cols = |l: &str| {
        l.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(cols(lines[at + 1]), ["HOST", "CONTAINER", "MICROVM"]);
    let row = |label: &str| {
        lines[at + 2..]
            .iter()
            .find(|l| l.starts_with(label) && l[label.len()..].starts_with("  "))
            .map(|l| cols(&l[label.len()..]))
            .unwrap_or_else(|| panic!("no `{label}` row in:\n{out}"))
    };
    // In the container the probe is PID 1 (no parent in its namespace) and sees no other
    // process; in the microVM it is a child of our guest init, PID 1 of the guest kernel.
    assert_eq!(row("PID")[1], "1", "{out}");
    assert_eq!(&row("parent PID")[1..], ["0", "1"], "{out}");
    assert_eq!(row("uid"), ["0", "0", "0"], "{out}");
    assert_eq!(row("PIDs visible")[1], "1", "{out}");
    let kernel = row("kernel release");
    assert_eq!(kernel[0], kernel[1], "a container shares the host kernel");
    assert_ne!(kernel[0], kernel[2], "a microVM boots its own kernel");
    assert!(!out.contains("not shown:"), "{out}");
    assert!(
        lines
            .contains(&format!("VM figures on this host: KVM backend {}.", kvm_backend()).as_str()),
        "{out}"
    );
    assert!(
        lines.contains(&"== a short startup + memory benchmark (full suite: `vcompare bench`) =="),
        "{out}"
    );
    let r = vcompare_bench::Results::load(&out_dir).unwrap();
    let mut subjects: Vec<&str> = r.startup.iter().map(|s| s.subject.as_str()).collect();
    subjects.sort();
    // The microVM twice: restored from its snapshot (`vm`) and booted cold (`vm-cold`).
    assert_eq!(
        subjects,
        ["container", "crun", "host", "vm", "vm-cold"],
        "{:?}",
        r.skipped
    );
    assert!(out_dir.join("report.md").is_file());
}

/// A data root below a directory that only its owner may search (`mktemp -d` makes 0700 ones):
/// container root, an unprivileged host uid, cannot reach the image layers, and the error says
/// exactly that and how to fix it, instead of blaming the kernel; nothing is left behind.
#[test]
fn data_root_unreachable_by_container_root_is_one_clear_line() {
    use std::os::unix::fs::PermissionsExt;
    crate::require_root!();
    let env = Env::with_busybox();
    let set_mode = |mode: u32| {
        std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(mode)).unwrap()
    };
    set_mode(0o700);
    let o = env.run(&["run", "--rm", "--mode", "container", BUSYBOX, "true"]);
    set_mode(0o755);
    assert_eq!(o.status.code(), Some(125), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stderr),
        "vcompare: error: container setup step \"attach the overlay root filesystem\" failed: EACCES: Permission denied; container root (an unprivileged host uid) cannot reach the image layers: every directory above the data root must be searchable by others (chmod o+x DIR), or use --root elsewhere or --userns host\n"
    );
    assert_eq!(env.ps_json(), Vec::<Value>::new());
    // With the parent searchable again, the same run works.
    let o = env.run(&["run", "--rm", "--mode", "container", BUSYBOX, "true"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
}
