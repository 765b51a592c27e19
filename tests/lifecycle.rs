//! End-to-end tests of the instance lifecycle through the real binary, in container mode
//! (fast): ids and names, `run -d`, `ps`, `logs`, `stop`, `kill`, `start`, `rm`, `--rm`, exit
//! status propagation, state that survives a killed vcompare, and concurrent use. Containers
//! need root: without it each test is a recorded skip (tests/common/skip.rs).

mod common;

use std::time::{Duration, Instant};

use common::{find, process_alive, wait_for, Env};
use serde_json::Value;

const IMG: &str = "vcompare/probe";

#[test]
fn exit_codes_and_signals_propagate() {
    crate::require_root!();
    let env = Env::new();
    // With --init the probe is not PID 1, so its own SIGTERM kills it: 128+15.
    for (args, code) in [
        (vec!["/bin/probe", "exit", "7"], 7),
        (vec!["/bin/probe", "true"], 0),
        (vec!["--init", IMG, "/bin/probe", "kill", "15"], 143),
    ] {
        let mut a = vec!["run", "--rm"];
        if args[0] != "--init" {
            a.push(IMG);
        }
        a.extend(&args);
        let o = env.run(&a);
        assert_eq!(
            o.status.code(),
            Some(code),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // A child killed by a signal inside is reported through the shell as 128+N too.
    let o = env.run(&["run", "--rm", IMG, "/bin/sh", "-c", "/bin/probe kill 9"]);
    assert_eq!(o.status.code(), Some(137));
    // Nothing is left behind by --rm.
    assert!(env.ps_json().is_empty());
}

#[test]
fn detached_run_ps_logs_stop_start_rm() {
    crate::require_root!();
    let env = Env::new();
    let id = env
        .ok(&[
            "run",
            "-d",
            "--name",
            "sleeper",
            IMG,
            "/bin/sh",
            "-c",
            "echo started; exec /bin/probe sleep 30",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64, "run -d prints the full id: {id}");
    let v = env.wait_status(&id, "running");
    assert!(v["pid"].as_i64().unwrap() > 1);
    let table = env.ok(&["ps"]);
    assert!(
        table.contains(&id[..12]) && table.contains("sleeper") && table.contains("Up"),
        "{table}"
    );
    // The name and a prefix both resolve.
    wait_for("the log to show the output", || {
        (env.ok(&["logs", "sleeper"]) == "started\n").then_some(())
    });
    let insp: Value =
        serde_json::from_str(&env.ok(&["inspect", &id[..8], "--format", "json"])).unwrap();
    assert_eq!(insp["id"], id.as_str());
    // stop: the probe as PID 1 has no SIGTERM handler, so stop escalates to SIGKILL after -t.
    let t = Instant::now();
    env.ok(&["stop", "-t", "1", "sleeper"]);
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "stop waited for the grace period"
    );
    let v = env.wait_status(&id, "exited");
    assert_eq!(v["exit_code"], 137, "{v}");
    assert!(
        !env.ok(&["ps"]).contains(&id[..12]),
        "ps without -a hides exited instances"
    );
    assert!(env.ok(&["ps", "-a"]).contains("Exited (137)"));
    // start again (detached), then kill with an explicit signal.
    env.ok(&["start", "sleeper"]);
    env.wait_status(&id, "running");
    env.ok(&["kill", "-s", "KILL", "sleeper"]);
    let v = env.wait_status(&id, "exited");
    assert_eq!(v["exit_code"], 137);
    // kill on an exited instance is an error.
    let err = env.fails(&["kill", "sleeper"]);
    assert!(err.contains("not running"), "{err}");
    env.ok(&["rm", "sleeper"]);
    assert!(env.ps_json().is_empty());
    assert!(!env.root().join("instances").join(&id).exists());
    let err = env.fails(&["logs", "sleeper"]);
    assert!(err.contains("no instance matches"), "{err}");
}

#[test]
fn rm_refuses_running_without_force_and_rm_flag_cleans_up() {
    crate::require_root!();
    let env = Env::new();
    let id = env
        .ok(&["run", "-d", IMG, "/bin/probe", "sleep", "30"])
        .trim()
        .to_string();
    env.wait_status(&id, "running");
    let err = env.fails(&["rm", &id[..12]]);
    assert!(err.contains("is running") && err.contains("rm -f"), "{err}");
    env.ok(&["rm", "-f", &id[..12]]);
    assert!(env.ps_json().is_empty());
    // -d --rm: the monitor removes the instance when it exits.
    let id = env
        .ok(&["run", "-d", "--rm", IMG, "/bin/probe", "sleep", "0.2"])
        .trim()
        .to_string();
    wait_for("the --rm instance to be removed", || {
        (!env.root().join("instances").join(&id).exists()).then_some(())
    });
}

#[test]
fn start_reuses_the_rw_layer() {
    crate::require_root!();
    let env = Env::new();
    let script = "cat /counter 2>/dev/null; echo x >> /counter";
    let o = env.run(&["run", "--name", "keeper", IMG, "/bin/sh", "-c", script]);
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout), "");
    let o = env.cmd(&["start", "-a", "keeper"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "x\n");
    let o = env.cmd(&["start", "-a", "keeper"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "x\nx\n");
    // A fresh instance of the same image does not see it.
    let o = env.run(&[
        "run",
        "--rm",
        IMG,
        "/bin/sh",
        "-c",
        "cat /counter 2>&1 || true",
    ]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("No such file"));
    env.ok(&["rm", "keeper"]);
}

#[test]
fn names_are_unique_and_bad_ids_are_clear() {
    crate::require_root!();
    let env = Env::new();
    env.ok(&["run", "--name", "same", IMG, "/bin/probe", "true"]);
    let err = env.fails(&["run", "--name", "same", IMG, "/bin/probe", "true"]);
    assert!(err.contains("already used"), "{err}");
    let err = env.fails(&["run", "--name", "bad name!", IMG, "/bin/probe", "true"]);
    assert!(err.contains("invalid name"), "{err}");
    let err = env.fails(&["stop", "doesnotexist"]);
    assert!(err.contains("no instance matches"), "{err}");
    let err = env.fails(&["run", "--cpus", "0", IMG, "/bin/probe", "true"]);
    assert!(err.contains("--cpus"), "{err}");
    let err = env.fails(&[
        "run",
        "-v",
        "/definitely/not/here:/x",
        IMG,
        "/bin/probe",
        "true",
    ]);
    assert!(err.contains("does not exist"), "{err}");
    // Only the one good instance exists: failed runs leave no records.
    assert_eq!(env.ps_json().len(), 1);
}

#[test]
fn state_survives_a_killed_vcompare() {
    crate::require_root!();
    let env = Env::new();
    let id = env
        .ok(&["run", "-d", IMG, "/bin/probe", "sleep", "60"])
        .trim()
        .to_string();
    let v = env.wait_status(&id, "running");
    let pid = v["pid"].as_i64().unwrap() as i32;
    let state: Value = serde_json::from_slice(
        &std::fs::read(env.root().join("instances").join(&id).join("state.json")).unwrap(),
    )
    .unwrap();
    let monitor = state["monitor_pid"].as_i64().unwrap() as i32;
    // SIGKILL the monitor: the container itself is still running, and ps must say so.
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    wait_for("the killed monitor to be gone", || {
        (!process_alive(monitor)).then_some(())
    });
    let v = env.instance(&id);
    assert_eq!(
        (&v["status"], &v["pid"]),
        (&"running".into(), &pid.into()),
        "{v}"
    );
    // Now the container dies too, with nobody to record it: the next command tells the truth.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let v = env.wait_status(&id, "exited");
    // Nobody saw how it ended: no outcome, and `ps -a` shows 125 ("vanished"), not a guess.
    assert_eq!(
        (&v["exit_code"], &v["outcome"]),
        (&125.into(), &Value::Null),
        "{v}"
    );
    assert!(env.ok(&["ps", "-a"]).contains("Exited (125)"));
    env.ok(&["rm", &id]);
    assert!(!env.root().join("instances").join(&id).exists());
}

#[test]
fn concurrent_detached_runs_and_ps_keep_state_consistent() {
    crate::require_root!();
    let env = Env::new();
    env.ok(&["image", "ls"]); // create the data dir
    env.ok(&["run", "--rm", IMG, "/bin/probe", "true"]); // build the default image once
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let root = env.root();
    let s2 = stop.clone();
    let watcher = std::thread::spawn(move || {
        let mut polls = 0;
        while !s2.load(std::sync::atomic::Ordering::Relaxed) {
            let o = common::test_host::host_cmd(env!("CARGO_BIN_EXE_vcompare"))
                .arg("--root")
                .arg(&root)
                .args(["ps", "-a", "--format", "json"])
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "ps failed during concurrent runs: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let _: Value =
                serde_json::from_slice(&o.stdout).expect("ps output is always valid JSON");
            polls += 1;
        }
        polls
    });
    let children: Vec<_> = (0..20)
        .map(|i| {
            env.cmd(&[
                "run",
                "-d",
                "--name",
                &format!("c{i}"),
                IMG,
                "/bin/probe",
                "sleep",
                "2",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let mut ids = Vec::new();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        ids.push(String::from_utf8(o.stdout).unwrap().trim().to_string());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(watcher.join().unwrap() > 0);
    let list = env.ps_json();
    assert_eq!(list.len(), 20);
    for id in &ids {
        find(&list, id);
    }
    // With 20 ids, two share a first hex digit: that prefix is ambiguous and lists both.
    let mut by_first = std::collections::HashMap::<char, Vec<&String>>::new();
    for id in &ids {
        by_first
            .entry(id.chars().next().unwrap())
            .or_default()
            .push(id);
    }
    let (c, shared) = by_first.iter().find(|(_, v)| v.len() > 1).unwrap();
    let err = env.fails(&["inspect", &c.to_string()]);
    assert!(
        err.contains("matches several")
            && err.contains(&shared[0][..12])
            && err.contains(&shared[1][..12]),
        "{err}"
    );
    let mut args = vec!["rm", "-f"];
    args.extend(ids.iter().map(String::as_str));
    env.ok(&args);
    assert!(env.ps_json().is_empty());
}

#[test]
fn managed_volumes_outlive_instances_and_refuse_removal_in_use() {
    crate::require_root!();
    let env = Env::new();
    env.ok(&["volume", "create", "shared"]);
    let err = env.fails(&["volume", "create", "shared"]);
    assert!(err.contains("already exists"), "{err}");
    env.ok(&[
        "run",
        "--name",
        "writer",
        "-v",
        "shared:/data",
        IMG,
        "/bin/probe",
        "write",
        "/data/note",
        "hello",
    ]);
    // A second instance (auto-created volume name works too) sees the file.
    let o = env.ok(&[
        "run",
        "--rm",
        "-v",
        "shared:/data:ro",
        IMG,
        "/bin/probe",
        "cat",
        "/data/note",
    ]);
    assert_eq!(o, "hello");
    let ls: Value = serde_json::from_str(&env.ok(&["volume", "ls", "--format", "json"])).unwrap();
    let mp = ls[0]["mountpoint"].as_str().unwrap().to_string();
    assert_eq!(
        std::fs::read_to_string(std::path::Path::new(&mp).join("note")).unwrap(),
        "hello"
    );
    let err = env.fails(&["volume", "rm", "shared"]);
    assert!(err.contains("used by instance"), "{err}");
    // The image is in use too.
    let err = env.fails(&["image", "rm", IMG]);
    assert!(err.contains("is used by instance"), "{err}");
    env.ok(&["rm", "writer"]);
    env.ok(&["volume", "rm", "shared"]);
    assert!(!std::path::Path::new(&mp).exists());
    let err = env.fails(&["volume", "inspect", "shared"]);
    assert!(err.contains("does not exist"), "{err}");
    env.ok(&["image", "rm", IMG]);
}
