//! Runs the built `probe` binary as vcompare will: checks the JSON it prints, its exit
//! codes and its death by signal.

use serde_json::Value;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};

fn probe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_probe"))
        .args(args)
        .output()
        .expect("spawn probe")
}

/// Runs a command that must succeed and print exactly one JSON line.
fn json_line(args: &[&str]) -> Value {
    let out = probe(args);
    assert!(
        out.status.success(),
        "{args:?}: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "{args:?} printed {text:?}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
}

#[test]
fn info_matches_what_we_see() {
    let child = Command::new(env!("CARGO_BIN_EXE_probe"))
        .args(["info"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let child_pid = child.id() as u64;
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();

    assert_eq!(v["pid"].as_u64(), Some(child_pid));
    assert_eq!(v["ppid"].as_u64(), Some(std::process::id() as u64));
    // SAFETY: identity getters without preconditions.
    let (uid, gid, euid, egid) = unsafe {
        (
            libc::getuid(),
            libc::getgid(),
            libc::geteuid(),
            libc::getegid(),
        )
    };
    assert_eq!(v["uid"].as_u64(), Some(uid as u64));
    assert_eq!(v["gid"].as_u64(), Some(gid as u64));
    assert_eq!(v["euid"].as_u64(), Some(euid as u64));
    assert_eq!(v["egid"].as_u64(), Some(egid as u64));

    let pids: Vec<u64> = v["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    assert!(pids.windows(2).all(|w| w[0] < w[1]), "pids sorted");
    assert!(pids.contains(&child_pid) && pids.contains(&(std::process::id() as u64)));

    // Same namespaces as us, read independently.
    let ns = v["namespaces"].as_object().unwrap();
    let ours = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    assert_eq!(
        ours.to_string_lossy(),
        format!("mnt:[{}]", ns["mnt"].as_u64().unwrap())
    );

    assert!(v["cpus_affinity"].as_u64().unwrap() >= 1);
    assert!(v["mem_total_bytes"].as_u64().unwrap() > 1 << 20);
    assert!(v["mount_count"].as_u64().unwrap() >= 1);
    assert!(!v["cgroup"].as_array().unwrap().is_empty());
    assert!(v["hostname"].is_string() && v["kernel_release"].is_string());
    assert!(v["uid_map"].as_str().unwrap().contains(char::is_numeric));
    assert_eq!(
        v["cwd"].as_str().unwrap(),
        std::env::current_dir().unwrap().to_str().unwrap()
    );
    assert_eq!(v["argv"][1], "info");
}

#[test]
fn exit_codes_propagate() {
    for code in [0, 1, 7, 255] {
        assert_eq!(
            probe(&["exit", &code.to_string()]).status.code(),
            Some(code)
        );
    }
    assert_eq!(probe(&["true"]).status.code(), Some(0));
}

#[test]
fn death_by_signal() {
    for (arg, sig) in [("9", 9), ("15", 15), ("SIGPIPE", 13), ("abrt", 6)] {
        let out = probe(&["kill", arg]);
        assert_eq!(
            out.status.signal(),
            Some(sig),
            "kill {arg}: {:?}",
            out.status
        );
    }
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    for args in [
        &[][..],
        &["nope"],
        &["cpu"],
        &["cpu", "ten"],
        &["exit", "300"],
        &["kill", "STOP"],
        &["sleep", "-1"],
        &["io", "/tmp"],
        &["alloc", "0"],
        &["true", "extra"],
    ] {
        let out = probe(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{args:?}: {err:?}");
        assert!(err.starts_with("probe: "), "{err:?}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn workloads_report_elapsed_time() {
    let dir = std::env::temp_dir().join(format!("probe-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_str().unwrap();
    let cases: [(&str, &[&str]); 8] = [
        ("cpu", &["cpu", "100000"]),
        ("syscalls", &["syscalls", "10000"]),
        ("pagefaults", &["pagefaults", "4"]),
        ("io", &["io", d, "2", "--small-files", "20"]),
        ("metadata", &["metadata", d, "20"]),
        ("sleep", &["sleep", "0.05"]),
        ("alloc", &["alloc", "4"]),
        ("alloc", &["alloc", "1", "0.01"]),
    ];
    for (name, args) in cases {
        let v = json_line(args);
        assert_eq!(v["workload"], name);
        assert!(v["elapsed_ns"].as_u64().unwrap() > 0, "{args:?}: {v}");
    }
    assert!(
        json_line(&["sleep", "0.05"])["elapsed_ns"]
            .as_u64()
            .unwrap()
            >= 50_000_000
    );
    let pf = json_line(&["pagefaults", "4"]);
    assert!(pf["minflt"].as_u64().unwrap() >= pf["pages"].as_u64().unwrap());
    let io = json_line(&["io", d, "2", "--small-files", "5"]);
    assert!(io["write_mib_s"].as_f64().unwrap() > 0.0 && io["read_mib_s"].as_f64().unwrap() > 0.0);
    assert_eq!(io["small_files"]["n"], 5);
    assert_eq!(
        json_line(&["cpu", "5000"])["result"],
        json_line(&["cpu", "5000"])["result"]
    );
    // Nothing left behind.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    std::fs::remove_dir(&dir).unwrap();
}

#[test]
fn helpers() {
    let out = probe(&["echo", "a", "b c"]);
    assert_eq!(out.stdout, b"a b c\n");

    let out = Command::new(env!("CARGO_BIN_EXE_probe"))
        .args(["env"])
        .env_clear()
        .env("WEIRD", "quote\" tab\t nl\n")
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, serde_json::json!({"WEIRD": "quote\" tab\t nl\n"}));

    let path = std::env::temp_dir().join(format!("probe-cli-file-{}", std::process::id()));
    let p = path.to_str().unwrap();
    assert!(probe(&["write", p, "hello\nworld"]).status.success());
    assert_eq!(probe(&["cat", p]).stdout, b"hello\nworld");
    std::fs::remove_file(&path).unwrap();
    assert_eq!(probe(&["cat", p]).status.code(), Some(1));
}

/// A `probe net-serve` child on 127.0.0.1 (kernel-chosen port), killed when dropped.
struct Server(std::process::Child, u16);

impl Server {
    fn start() -> Server {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_probe"))
            .args(["net-serve", "0", "--bind", "127.0.0.1"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn probe net-serve");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        assert_eq!(v["workload"], "net-serve");
        assert_eq!(v["bind"], "127.0.0.1");
        assert!(v["addrs"].is_array());
        let port = v["port"].as_u64().unwrap() as u16;
        assert_ne!(port, 0);
        Server(child, port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn net_client_measures_against_net_serve() {
    let server = Server::start();
    let target = format!("127.0.0.1:{}", server.1);
    let v = json_line(&[
        "net-client",
        &target,
        "--size",
        "100,200",
        "--warmup",
        "10",
        "--count",
        "300",
        "--stream-secs",
        "0.2",
    ]);
    assert_eq!(v["workload"], "net-client");
    assert_eq!(v["target"], target.as_str());
    let rr = &v["rr"];
    assert_eq!(rr["transactions"], 300);
    assert_eq!(rr["warmup_done"], 10);
    assert_eq!(
        (rr["request_bytes"].as_u64(), rr["response_bytes"].as_u64()),
        (Some(100), Some(200))
    );
    let (p50, p99) = (
        rr["p50_ns"].as_u64().unwrap(),
        rr["p99_ns"].as_u64().unwrap(),
    );
    assert!(0 < p50 && p50 <= p99, "{rr}");
    let st = &v["stream"];
    assert_eq!(st["sent_bytes"], st["received_bytes"]);
    assert!(st["mib_s"].as_f64().unwrap() > 0.0, "{st}");
    // Two clients at once: the server serves each connection on its own thread.
    let a = Command::new(env!("CARGO_BIN_EXE_probe"))
        .args(["net-client", &target, "--count", "50", "--stream-secs", "0"])
        .output()
        .unwrap();
    assert!(a.status.success());
}

#[test]
fn net_commands_refuse_misuse_with_exit_2_and_fail_with_exit_1() {
    for args in [
        &["net-client"][..],
        &["net-client", "localhost:1"],
        &["net-client", "127.0.0.1:1", "--size", "100"],
        &["net-serve", "99999"],
        &["net-serve", "1", "--bind", "anywhere"],
    ] {
        let o = probe(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("usage: probe net-"));
    }
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = l.local_addr().unwrap().to_string();
    drop(l);
    let o = probe(&["net-client", &closed]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot connect"));
}
