//! End-to-end tests of the VM snapshot cache (`vmm/src/snapshot/`, `src/backend/vm_snapshot.rs`)
//! through the real `vcompare` binary on this machine's /dev/kvm.
//!
//! The first `run --mode vm` of a VM kind boots cold and takes a snapshot when the guest init
//! is ready; later runs of that kind restore it. A cold boot costs 8-25 s on PVM hosts, a
//! restore well under a second, so each test takes one snapshot and then restores it many
//! times in the same data root. Two tests, two kinds (they run in parallel under nextest):
//! - [`vm_snapshot_restores_carry_the_run_and_cold_paths_stay_correct`]: kind A (no share).
//!   Cold boots: the take, `start` of a stopped VM, `--no-snapshot` (3). Restores: 6.
//! - [`vm_snapshot_with_a_share_and_damaged_files`]: kind B (one rw share). Cold boots: the
//!   take, the re-takes after a truncated `memory` and after a bit flipped in `disk.ext4`
//!   (3). Restores: 3.
//!
//! Guest processes are what costs on a PVM host (every fork and exec runs guest kernel code
//! in KVM's emulator), so the guest scripts use shell builtins (`read`, `echo`, globs) where
//! a command would only print something.
//!
//! Every run is checked through `inspect` (`host.snapshot`: plan, dir, restored,
//! taken_pause_ms), not only through its output: a restore that silently fell back to a cold
//! boot fails the test. Without a usable /dev/kvm the tests skip through
//! `tests/common/skip.rs` (a failure under `VCOMPARE_NO_SKIP=1`); a missing kernel, static
//! binary or `vcompare-vmm` is a failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use common::vm_root::{stderr_lines, text, wait_boot, without_notes, VmRoot as Root};

const IMAGE: &str = "vcompare/probe";

/// The files of a snapshot directory, sorted.
const SNAPSHOT_FILES: [&str; 3] = ["disk.ext4", "memory", "state.json"];

/// The data roots of this file are `<temp dir>/vcmp-snap-NAME-PID`.
const PREFIX: &str = "vcmp-snap";

/// This file's own ways of running a VM and reading its snapshot state.
impl Root {
    /// `run --mode vm --network none --timeout 540 FLAGS… vcompare/probe sh -c SCRIPT`
    /// (foreground; the watchdog ends a hung guest before nextest's 600 s limit).
    fn vm_argv<'a>(flags: &[&'a str], script: &'a str) -> Vec<&'a str> {
        let mut a = vec![
            "run",
            "--mode",
            "vm",
            "--network",
            "none",
            "--timeout",
            "540",
        ];
        a.extend_from_slice(flags);
        a.extend_from_slice(&[IMAGE, "sh", "-c", script]);
        a
    }

    /// A foreground VM run named `name` (kept, so `inspect` can tell how it started); prints
    /// how long it took.
    fn vm(&self, name: &str, flags: &[&str], script: &str) -> Output {
        let mut f = vec!["--name", name];
        f.extend_from_slice(flags);
        let t = Instant::now();
        let o = self.run(&Self::vm_argv(&f, script));
        eprintln!("timing: run {name}: {:.2} s", t.elapsed().as_secs_f64());
        o
    }

    /// `host.snapshot` of `inspect Q`.
    fn snapshot_of(&self, q: &str) -> Value {
        self.inspect(q)["view"]["host"]["snapshot"].clone()
    }

    /// The `ps -a` record of instance `id`.
    fn record(&self, id: &str) -> Value {
        let all: Value = serde_json::from_str(&self.ok(&["ps", "-a", "--format", "json"])).unwrap();
        common::find(all.as_array().unwrap(), id).clone()
    }

    /// Waits until `exec Q true` succeeds (the guest agent of a detached VM is up); fails at
    /// once, with the log, if the instance exits instead.
    fn wait_agent(&self, q: &str) {
        let id = self.id_of(q);
        let t = Instant::now();
        wait_boot("the guest agent to answer", || {
            if self.run(&["exec", q, "true"]).status.success() {
                return Some(());
            }
            let rec = self.record(&id);
            assert_ne!(
                rec["status"],
                "exited",
                "{q} exited before its agent answered: {rec}\nlog:\n{}",
                String::from_utf8_lossy(&self.run(&["logs", q]).stdout)
            );
            None
        });
        eprintln!(
            "timing: agent of {q} up after {:.2} s",
            t.elapsed().as_secs_f64()
        );
    }

    /// Waits until instance `q` has exited; returns its `ps -a` record.
    fn wait_exited(&self, q: &str) -> Value {
        let id = self.id_of(q);
        wait_boot(&format!("{q} to exit"), || {
            let rec = self.record(&id);
            (rec["status"] == "exited").then_some(rec)
        })
    }

    /// `logs Q` without the notes of [`common::vm_root::is_note`].
    fn log_of(&self, q: &str) -> String {
        without_notes(&String::from_utf8_lossy(&self.run(&["logs", q]).stdout))
    }

    /// The names in `<root>/snapshots/`, sorted (empty if there is no such directory).
    fn snapshot_entries(&self) -> Vec<String> {
        names_in(&self.0.join("snapshots"))
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts the run ended with `code`, printed exactly `out`, and said nothing else on stderr.
fn assert_run(o: &Output, code: i32, out: &str) {
    assert_eq!(o.status.code(), Some(code), "{}", text(o));
    assert_eq!(stdout(o), out, "{}", text(o));
    assert!(
        stderr_lines(o).is_empty(),
        "no notice on stderr: {}",
        text(o)
    );
}

/// Asserts the run printed exactly one notice on stderr, saying the snapshot is damaged and
/// the VM boots cold.
fn assert_damaged_notice(o: &Output) {
    let lines = stderr_lines(o);
    assert!(
        lines.len() == 1 && lines[0].contains("damaged") && lines[0].contains("booting cold"),
        "one notice line about the damaged snapshot: {}",
        text(o)
    );
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `host.snapshot` of a run that booted cold and took the snapshot; returns its directory.
fn assert_took(snap: &Value, what: &str) -> PathBuf {
    assert_eq!(snap["plan"], "take", "{what}: {snap}");
    assert_eq!(snap["restored"], false, "{what}: {snap}");
    assert!(
        snap["taken_pause_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{what}: the pause of the take is a number: {snap}"
    );
    PathBuf::from(
        snap["dir"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no dir: {snap}")),
    )
}

/// `host.snapshot` of a finished run restored from `dir`.
fn assert_restored(snap: &Value, dir: &Path, what: &str) {
    assert_eq!(
        (
            &snap["plan"],
            &snap["dir"],
            &snap["restored"],
            &snap["taken_pause_ms"]
        ),
        (&json!("restore"), &json!(dir), &json!(true), &Value::Null),
        "{what} must be restored from the snapshot: {snap}"
    );
}

/// `host.snapshot` of a finished cold run that took nothing.
fn assert_cold(snap: &Value, what: &str) {
    assert_eq!(
        (&snap["plan"], &snap["restored"], &snap["taken_pause_ms"]),
        (&json!("cold"), &json!(false), &Value::Null),
        "{what} boots cold and takes nothing: {snap}"
    );
    assert!(snap["reason"].is_string(), "{what}: a reason: {snap}");
}

/// Asserts `dir` is the only entry of `<root>/snapshots/` (no temp directory, no
/// "restore failed" marker) and holds exactly the three files, which match the sizes the
/// state file records; guest RAM is stored sparse. Returns the state file's bytes.
fn assert_snapshot_dir(root: &Root, dir: &Path) -> Vec<u8> {
    use std::os::unix::fs::MetadataExt;
    let snapshots = root.0.join("snapshots");
    assert_eq!(
        dir.parent().map(|p| p.canonicalize().unwrap()),
        Some(snapshots.canonicalize().unwrap()),
        "the snapshot lives in <root>/snapshots: {}",
        dir.display()
    );
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        root.snapshot_entries(),
        std::slice::from_ref(&name),
        "one snapshot, nothing left over"
    );
    let (hex, hash) = name.split_once('-').expect("<image hex>-<hash>");
    assert!(
        hex.len() == 64 && !hash.is_empty() && !hash.contains(".tmp"),
        "snapshot directory name {name}"
    );
    assert_eq!(names_in(dir), SNAPSHOT_FILES, "files of {}", dir.display());
    let state_bytes = std::fs::read(dir.join("state.json")).unwrap();
    let state: Value = serde_json::from_slice(&state_bytes).expect("state.json is JSON");
    let memory = std::fs::metadata(dir.join("memory")).unwrap();
    let disk = std::fs::metadata(dir.join("disk.ext4")).unwrap();
    assert_eq!(state["memory"]["len"], memory.len(), "memory file length");
    assert_eq!(state["disk"]["len"], disk.len(), "disk file length");
    assert!(
        memory.blocks() * 512 < memory.len(),
        "guest RAM is stored sparse: {} of {} bytes allocated",
        memory.blocks() * 512,
        memory.len()
    );
    state_bytes
}

/// Flips one bit of `path` inside data (not a hole), near the middle of the file if there is
/// data there; returns the offset.
fn flip_a_bit(path: &Path) -> u64 {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let len = f.metadata().unwrap().len();
    let data_at = |from: u64| {
        // SAFETY: lseek on an fd this function owns.
        let off = unsafe { libc::lseek(f.as_raw_fd(), from as libc::off_t, libc::SEEK_DATA) };
        (off >= 0 && (off as u64) < len).then_some(off as u64)
    };
    let off = data_at(len / 2)
        .or_else(|| data_at(0))
        .unwrap_or_else(|| panic!("{} holds no data", path.display()))
        + 123;
    let off = off.min(len - 1);
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, off).unwrap();
    b[0] ^= 0x10;
    f.write_all_at(&b, off).unwrap();
    f.sync_all().unwrap();
    off
}

/// Cuts `path` to half its length.
fn truncate_half(path: &Path) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len / 2).unwrap();
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The guest's hostname, without a process (`hostname` would fork and exec).
const READ_HOSTNAME: &str = "read h < /proc/sys/kernel/hostname; echo $h";

/// Kind A (default RAM and vCPUs, no NIC, no share): one cold boot takes the snapshot, and
/// restored runs carry exit codes, `-e -w -u --hostname`, a fresh RNG, their own hostnames
/// and the current wall clock; `exec` and `stop` work on a restored VM and `start` boots it
/// cold from its own disk; `--no-snapshot` boots cold; `image rm` removes the image's
/// snapshots.
#[test]
fn vm_snapshot_restores_carry_the_run_and_cold_paths_stay_correct() {
    require_vm!();
    let root = Root::new(PREFIX, "a");

    // 1. The first run of the kind boots cold and takes the snapshot; the run goes on.
    let o = root.vm("take", &[], "echo first-run; exit 5");
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert_eq!(stdout(&o), "first-run\n", "{}", text(&o));
    let snap = root.snapshot_of("take");
    let dir = assert_took(&snap, "the first run");
    let state = assert_snapshot_dir(&root, &dir);

    // 2. A restored `--rm` run: its exit code.
    let o = root.run(&Root::vm_argv(&["--rm"], "exit 3"));
    assert_run(&o, 3, "");

    // -e, -w, -u UID:GID and --hostname reach a restored entrypoint (the spec is read after
    // the restore); the ids are the shell's own, from /proc/self/status.
    let ids =
        "while read k v rest; do case $k in Uid:|Gid:) echo $k$v;; esac; done < /proc/self/status";
    let o = root.vm(
        "flags",
        &[
            "-e",
            "GREETING=hello restored",
            "-w",
            "/var/tmp",
            "-u",
            "1000:1001",
            "--hostname",
            "snaphost",
        ],
        &format!("echo \"$GREETING\"; pwd; {READ_HOSTNAME}; {ids}; exit 4"),
    );
    assert_run(
        &o,
        4,
        "hello restored\n/var/tmp\nsnaphost\nUid:1000\nGid:1001\n",
    );
    assert_restored(
        &root.snapshot_of("flags"),
        &dir,
        "the run with -e -w -u --hostname",
    );

    // 3. exec into a restored detached VM; stop goes through its agent to the entrypoint's
    // trap; what exec wrote to its disk survives stop + start; start boots cold. (One guest
    // process while it waits: `wait` is a builtin the trap interrupts.)
    let script = "trap 'exit 7' TERM; echo READY; sleep 1000 & wait";
    let xid = root
        .ok(&Root::vm_argv(&["-d", "--name", "x"], script))
        .trim()
        .to_string();
    assert_eq!(xid.len(), 64, "run -d prints the full id: {xid}");
    root.wait_agent("x");
    assert_eq!(
        root.snapshot_of("x"),
        json!({"plan": "restore", "dir": dir}),
        "while it runs, inspect shows only the plan"
    );
    assert_eq!(root.ok(&["exec", "x", "echo", "hi"]), "hi\n");
    assert_eq!(
        root.ok(&[
            "exec",
            "x",
            "sh",
            "-c",
            &format!("{READ_HOSTNAME}; echo kept > /kept")
        ]),
        format!("{}\n", &xid[..12]),
        "exec sees the VM's own hostname"
    );

    // 4. Two VMs restored at once (beside x) read different random bytes and have their own
    // default hostnames (the short id).
    let rng = format!("{READ_HOSTNAME}; od -An -tx1 -N32 /dev/urandom");
    let spawn = |name: &str| {
        root.cmd(&Root::vm_argv(&["--name", name], &rng))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let t = Instant::now();
    let (r1, r2) = (spawn("r1"), spawn("r2"));
    let (o1, o2) = (
        r1.wait_with_output().unwrap(),
        r2.wait_with_output().unwrap(),
    );
    eprintln!(
        "timing: r1 and r2 at once: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let mut randoms = Vec::new();
    for (name, o) in [("r1", &o1), ("r2", &o2)] {
        assert_eq!(o.status.code(), Some(0), "{name}: {}", text(o));
        assert!(stderr_lines(o).is_empty(), "{name}: {}", text(o));
        let out = stdout(o);
        let (host, random) = out.split_once('\n').unwrap_or_default();
        let random: String = random.split_whitespace().collect();
        let id = root.id_of(name);
        assert_eq!(host, &id[..12], "{name}: default hostname = short id");
        assert!(
            random.len() == 64 && random.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}: 32 random bytes in hex: {out}"
        );
        assert_restored(&root.snapshot_of(name), &dir, name);
        randoms.push(random);
    }
    assert_ne!(
        randoms[0], randoms[1],
        "two restores of one snapshot share no RNG state"
    );

    let o = root.run(&["--debug", "stop", "-t", "300", "x"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("through_agent=true"),
        "stop of a restored VM goes through its agent: {}",
        text(&o)
    );
    let rec = root.wait_exited("x");
    assert_eq!(rec["exit_code"], 7, "the trap's status: {rec}");
    assert_restored(&root.snapshot_of("x"), &dir, "the detached run");

    let t = Instant::now();
    root.ok(&["start", "x"]);
    root.wait_agent("x");
    eprintln!(
        "timing: start x (cold) until exec works: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let running = root.snapshot_of("x");
    assert_eq!(running["plan"], "cold", "start boots cold: {running}");
    assert_eq!(
        root.ok(&["exec", "x", "cat", "/kept"]),
        "kept\n",
        "the disk survived"
    );
    root.ok(&["stop", "-t", "300", "x"]);
    assert_eq!(root.wait_exited("x")["exit_code"], 7);
    assert_cold(&root.snapshot_of("x"), "start of a stopped VM");
    assert_eq!(
        root.log_of("x"),
        "READY\nREADY\n",
        "the entrypoint ran twice"
    );

    // 5. The wall clock of a restored guest is the host's, however old the snapshot is.
    let age = || {
        SystemTime::now()
            .duration_since(
                std::fs::metadata(dir.join("state.json"))
                    .unwrap()
                    .modified()
                    .unwrap(),
            )
            .unwrap_or_default()
    };
    if age() < Duration::from_secs(6) {
        std::thread::sleep(Duration::from_secs(6) - age());
    }
    let snapshot_age = age();
    let before = now_secs();
    let o = root.vm("clock", &[], "date +%s");
    let after = now_secs();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let guest: u64 = stdout(&o)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{}", text(&o)));
    assert!(
        guest + 3 >= before && guest <= after + 3,
        "guest clock {guest} vs host {before}..{after} (snapshot {snapshot_age:?} old)"
    );
    assert_restored(&root.snapshot_of("clock"), &dir, "the clock run");

    // 6. --no-snapshot boots cold, takes nothing, and the cold path is correct too.
    let before = now_secs();
    let o = root.vm(
        "nosnap",
        &["--no-snapshot", "-e", "K=cold"],
        &format!("echo $K; {READ_HOSTNAME}; date +%s; exit 6"),
    );
    let after = now_secs();
    let id = root.id_of("nosnap");
    assert_eq!(o.status.code(), Some(6), "{}", text(&o));
    assert!(stderr_lines(&o).is_empty(), "{}", text(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{}", text(&o));
    assert_eq!(lines[..2], ["cold", &id[..12]], "{}", text(&o));
    let guest: u64 = lines[2].parse().unwrap();
    assert!(
        guest + 3 >= before && guest <= after + 3,
        "cold guest clock {guest} vs {before}..{after}"
    );
    assert_cold(&root.snapshot_of("nosnap"), "--no-snapshot");
    assert_eq!(
        std::fs::read(dir.join("state.json")).unwrap(),
        state,
        "no run since the take rewrote the snapshot"
    );
    assert_snapshot_dir(&root, &dir);

    // 7. image rm (once no instance uses the image) removes the image's snapshots.
    let ids = root.ok(&["ps", "-a", "-q"]);
    for id in ids.split_whitespace() {
        root.ok(&["rm", "-f", id]);
    }
    let hex = dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .split('-')
        .next()
        .unwrap()
        .to_string();
    let out = root.ok(&["image", "rm", IMAGE]);
    assert_eq!(
        out,
        format!("Deleted: sha256:{hex}\n"),
        "the snapshot is named after the image"
    );
    let left: Vec<String> = root
        .snapshot_entries()
        .into_iter()
        .filter(|n| n.starts_with(&hex))
        .collect();
    assert!(
        left.is_empty(),
        "image rm leaves no snapshot of the image: {left:?}"
    );
    assert!(!dir.exists());
}

/// Kind B (one rw `-v` share): its own cold boot and snapshot; a restored VM reads and writes
/// the share (a host change between runs is seen, the guest's writes reach the host). A
/// truncated `memory` and, separately, a bit flipped in `disk.ext4` are detected before a
/// restore: one notice on stderr, a cold boot with the right result that takes a new
/// snapshot, and the next run restores again.
#[test]
fn vm_snapshot_with_a_share_and_damaged_files() {
    require_vm!();
    let root = Root::new(PREFIX, "b");
    let host = Root::new(PREFIX, "b-share");
    let share = format!("{}:/mnt/s", host.0.display());
    let run = |n: u32, name: &str| {
        std::fs::write(host.0.join("in.txt"), format!("host-{n}\n")).unwrap();
        let script = format!(
            "read l < /mnt/s/in.txt; echo $l; echo guest-{n} > /mnt/s/out-{n}.txt; echo /mnt/s/*"
        );
        let o = root.vm(name, &["-v", &share], &script);
        assert_eq!(o.status.code(), Some(0), "{name}: {}", text(&o));
        let mut listing: Vec<String> = (1..=n).map(|i| format!("/mnt/s/out-{i}.txt")).collect();
        listing.insert(0, "/mnt/s/in.txt".into());
        assert_eq!(
            stdout(&o),
            format!("host-{n}\n{}\n", listing.join(" ")),
            "{name}: the share, both ways: {}",
            text(&o)
        );
        assert_eq!(
            std::fs::read_to_string(host.0.join(format!("out-{n}.txt"))).unwrap(),
            format!("guest-{n}\n"),
            "{name}: the guest's write reached the host"
        );
        o
    };

    let o = run(1, "take");
    assert!(stderr_lines(&o).is_empty(), "{}", text(&o));
    let dir = assert_took(&root.snapshot_of("take"), "the first run with a share");
    let state = assert_snapshot_dir(&root, &dir);

    let o = run(2, "restored");
    assert!(stderr_lines(&o).is_empty(), "{}", text(&o));
    assert_restored(
        &root.snapshot_of("restored"),
        &dir,
        "the second run with a share",
    );

    // A truncated memory file.
    truncate_half(&dir.join("memory"));
    let o = run(3, "truncated");
    assert_damaged_notice(&o);
    assert_eq!(
        assert_took(&root.snapshot_of("truncated"), "after truncation"),
        dir
    );
    let state2 = assert_snapshot_dir(&root, &dir);
    assert_ne!(state2, state, "a new snapshot was taken");
    let o = run(4, "restored-2");
    assert!(stderr_lines(&o).is_empty(), "{}", text(&o));
    assert_restored(
        &root.snapshot_of("restored-2"),
        &dir,
        "the run after the re-take",
    );

    // One bit flipped in the disk (same length).
    let at = flip_a_bit(&dir.join("disk.ext4"));
    eprintln!("flipped a bit of disk.ext4 at byte {at}");
    let o = run(5, "flipped");
    assert_damaged_notice(&o);
    assert_eq!(
        assert_took(&root.snapshot_of("flipped"), "after the bit flip"),
        dir
    );
    let state3 = assert_snapshot_dir(&root, &dir);
    assert_ne!(state3, state2, "a new snapshot was taken");
    let o = run(6, "restored-3");
    assert!(stderr_lines(&o).is_empty(), "{}", text(&o));
    assert_restored(
        &root.snapshot_of("restored-3"),
        &dir,
        "the run after the second re-take",
    );
}
