//! End-to-end tests of `vcompare` in `--mode vm` on this machine's /dev/kvm with the real guest
//! kernel (`kernels/build.sh`) and the static init/probe (`scripts/build-static.sh`). Each boot
//! costs ~20 s on PVM hosts, so there are few. Without KVM, kernel or static binaries the
//! boot tests print why and pass trivially; the bad-input tests always run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn vcompare() -> &'static str {
    env!("CARGO_BIN_EXE_vcompare")
}

/// A fresh data root per test, removed on drop.
struct Root(PathBuf);

impl Root {
    fn new(name: &str) -> Root {
        let p = std::env::temp_dir().join(format!("vcmp-e2e-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Root(p)
    }

    /// `vcompare run --mode vm --rm --timeout 300 ARGS…`: a one-shot VM with a watchdog.
    fn run_vm(&self, args: &[&str]) -> Output {
        let mut all = vec!["run", "--mode", "vm", "--rm", "--timeout", "300"];
        all.extend_from_slice(args);
        self.run(&all)
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &Path)]) -> Output {
        Command::new(vcompare())
            .arg("--root")
            .arg(&self.0)
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn text(o: &Output) -> String {
    format!(
        "status={:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// True if this host can boot our VMs; otherwise says why.
fn vm_ready() -> bool {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        eprintln!("skipping: /dev/kvm is not accessible");
        return false;
    }
    let kernel_ok = std::env::var_os("VCOMPARE_KERNEL").is_some() || {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels/build.sh");
        Command::new(script)
            .arg("--print-path")
            .output()
            .map(|o| Path::new(String::from_utf8_lossy(&o.stdout).trim()).is_file())
            .unwrap_or(false)
    };
    // Build products are not machine capabilities: their absence is a failure, not a skip.
    assert!(
        kernel_ok,
        "the guest kernel is not built: run kernels/build.sh (scripts/test.sh does)"
    );
    let exe = Path::new(vcompare());
    let stat = exe
        .parent()
        .unwrap()
        .join("../static/x86_64-unknown-linux-gnu/release");
    assert!(
        stat.join("vcompare-init").is_file() && stat.join("probe").is_file(),
        "static binaries missing: run scripts/build-static.sh (scripts/test.sh does)"
    );
    true
}

fn json(o: &Output) -> serde_json::Value {
    let s = String::from_utf8_lossy(&o.stdout);
    let line = s
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON in output\n{}", text(o)));
    serde_json::from_str(line).unwrap()
}

#[test]
fn vm_probe_info_sees_its_own_kernel_memory_and_cpus() {
    if !vm_ready() {
        return;
    }
    let root = Root::new("info");
    let o = root.run_vm(&[
        "--cpus",
        "2",
        "--memory",
        "512M",
        "vcompare/probe",
        "probe",
        "info",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
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
    // Only the entrypoint's output reaches stdout: no kernel messages.
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("reboot:"),
        "{}",
        text(&o)
    );
}

#[test]
fn vm_exit_code_and_signal_propagate() {
    if !vm_ready() {
        return;
    }
    let root = Root::new("exit");
    // This boot also runs the VMM's guest sampler (VCOMPARE_VMM_PROFILE), which must not
    // change the outcome and must see the guest kernel, then the init in user mode.
    let samples = root.0.join("samples");
    let o = root.run_env(
        &["run", "--mode", "vm", "--rm", "--timeout", "300"]
            .into_iter()
            .chain(["vcompare/probe", "/bin/sh", "-c", "echo out; exit 7"])
            .collect::<Vec<_>>(),
        &[("VCOMPARE_VMM_PROFILE", &samples)],
    );
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "out");
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
    assert!(
        parsed[..first_user]
            .iter()
            .filter(|s| s.1 >= 0xffff_ffff_8000_0000)
            .count()
            > 1000,
        "over a second of samples in the guest kernel's text before init"
    );
    let report = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels/profile.sh"))
        .arg(&samples)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&report.stdout);
    assert!(report.contains("before init; init at"), "{report}");
    assert!(report.contains("memmap_init_range"), "{report}");
    let o = root.run_vm(&["vcompare/probe", "/bin/sh", "-c", "kill -9 $$"]);
    assert_eq!(o.status.code(), Some(137), "{}", text(&o));
}

#[test]
fn vm_disk_survives_stop_start_and_goes_with_rm() {
    if !vm_ready() {
        return;
    }
    let root = Root::new("disk");
    let script = "test -f /mark && echo FOUND-MARK; echo written > /mark; echo READY; trap 'exit 0' TERM; while true; do sleep 1; done";
    let o = root.run(&[
        "run",
        "--mode",
        "vm",
        "-d",
        "--name",
        "p",
        "vcompare/probe",
        "/bin/sh",
        "-c",
        script,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let wait_for = |needle: &str, n: usize| {
        let t = Instant::now();
        loop {
            let logs = root.run(&["logs", "p"]);
            let s = String::from_utf8_lossy(&logs.stdout).to_string();
            if s.matches(needle).count() >= n {
                return s;
            }
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "timed out waiting for {needle}: {}",
                text(&logs)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    let first = wait_for("READY", 1);
    assert!(!first.contains("FOUND-MARK"), "{first}");
    let o = root.run(&["stop", "-t", "30", "p"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = root.run(&["start", "p"]);
    assert!(o.status.success(), "{}", text(&o));
    let second = wait_for("READY", 2);
    assert!(
        second.contains("FOUND-MARK"),
        "the file written to / survived stop + start: {second}"
    );
    let ps = root.run(&["ps", "-a"]);
    assert!(
        String::from_utf8_lossy(&ps.stdout).contains("vm"),
        "{}",
        text(&ps)
    );
    let o = root.run(&["stop", "-t", "30", "p"]);
    assert!(o.status.success(), "{}", text(&o));
    let disks: Vec<_> = walk(&root.0.join("instances"))
        .into_iter()
        .filter(|p| p.ends_with("disk.ext4"))
        .collect();
    assert_eq!(disks.len(), 1, "one per-VM disk copy");
    let o = root.run(&["rm", "p"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!disks[0].exists(), "rm deletes the VM's disk");
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
    if !vm_ready() {
        return;
    }
    let root = Root::new("timeout");
    let t = Instant::now();
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
    assert!(t.elapsed() < Duration::from_secs(60));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("timeout"),
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
    if !vm_ready() {
        return;
    }
    let root = Root::new("panic");
    // No init anywhere: the guest kernel panics ("No working init found").
    let o = Command::new(vcompare())
        .arg("--root")
        .arg(&root.0)
        .args([
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
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("the guest kernel panicked"), "{}", text(&o));
    assert!(
        err.contains("last ") && err.contains("console lines"),
        "{}",
        text(&o)
    );
    assert!(!has_process_with_root(&root.0));
}

#[test]
fn vm_bad_input_is_one_clear_line() {
    let root = Root::new("bad");
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "run",
                "--mode",
                "vm",
                "--rm",
                "--cpus",
                "0",
                "vcompare/probe",
                "true",
            ],
            "--cpus",
        ),
        (
            &[
                "run",
                "--mode",
                "vm",
                "--rm",
                "--memory",
                "100000G",
                "vcompare/probe",
                "true",
            ],
            "host's RAM",
        ),
    ];
    for (args, needle) in cases {
        let o = root.run(args);
        assert_ne!(o.status.code(), Some(0), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "expected {needle:?}: {}", text(&o));
        assert!(
            err.lines()
                .filter(|l| !l.starts_with("building the default image"))
                .count()
                <= 1,
            "{}",
            text(&o)
        );
    }
    // A kernel that does not exist.
    let o = Command::new(vcompare())
        .arg("--root")
        .arg(&root.0)
        .args(["run", "--mode", "vm", "--rm", "vcompare/probe", "true"])
        .env("VCOMPARE_KERNEL", "/nonexistent/vmlinux")
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("VCOMPARE_KERNEL"),
        "{}",
        text(&o)
    );
    assert!(!has_process_with_root(&root.0));
}

/// As an unprivileged user (no access to /dev/kvm), VM mode fails with one line naming the
/// cause and the fix, and leaves no instance record or VMM process behind.
#[test]
fn vm_without_kvm_permission_is_one_clear_line() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !Path::new("/dev/kvm").exists() {
        eprintln!("skipped: needs root (to switch to an unprivileged user) and /dev/kvm");
        return;
    }
    let root = Root::new("noperm");
    std::os::unix::fs::chown(&root.0, Some(65534), Some(65534)).unwrap();
    // The unprivileged user may not be able to reach the build tree: give it private copies.
    let exe_dir = Path::new(vcompare()).parent().unwrap().to_path_buf();
    let bin = root.0.join("bin");
    std::fs::create_dir(&bin).unwrap();
    for name in ["vcompare", "vcompare-vmm"] {
        if exe_dir.join(name).is_file() {
            std::fs::copy(exe_dir.join(name), bin.join(name)).unwrap();
        }
    }
    let probe_src = std::env::var_os("VCOMPARE_PROBE")
        .map(PathBuf::from)
        .unwrap_or_else(|| exe_dir.join("../static/x86_64-unknown-linux-gnu/release/probe"));
    let probe = bin.join("probe");
    std::fs::copy(&probe_src, &probe).unwrap();
    let exe = bin.join("vcompare");
    let data = root.0.join("data");
    std::fs::create_dir(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(65534), Some(65534)).unwrap();
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
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
        .env("VCOMPARE_PROBE", probe)
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.starts_with("building the default image"))
        .collect();
    assert_eq!(lines.len(), 1, "{}", text(&o));
    assert!(
        lines[0].contains("/dev/kvm")
            && lines[0].contains("Permission denied")
            && lines[0].contains("group kvm"),
        "{}",
        text(&o)
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
    if !vm_ready() {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let root = Root::new("share");
    let rw = Root::new("share-host-rw");
    let ro = Root::new("share-host-ro");
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
echo via-link=$(cat /mnt/rw/glink | tr '\\n' ,)
touch /mnt/rw/chowned
chown 1000:1001 /mnt/rw/chowned
echo links-to=$(readlink /mnt/rw/abs-link) $(head -c 13 /mnt/rw/abs-link)
echo listing=$(ls /mnt/rw | tr '\\n' ,)
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
    assert!(out.contains("via-link=one,two,"), "{}", text(&o));
    // The host's absolute symlink is followed in the guest: the guest kernel's version.
    assert!(
        out.contains("links-to=/proc/version Linux version"),
        "{}",
        text(&o)
    );
    assert!(
        out.contains("listing=abs-link,chowned,fromhost.txt,gdir,glink,owned,"),
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
    if !vm_ready() {
        return;
    }
    const MIB: u64 = 1 << 20;
    let root = Root::new("share-big");
    let rw = Root::new("share-host-big");
    write_pattern(&rw.path("big"), 0, 16);
    // A 301 MiB sparse file whose last MiB is data: the guest reads past 256 MiB.
    write_pattern(&rw.path("far"), 300 * MIB, 1);
    std::fs::write(rw.path("tobedeleted"), "x").unwrap();
    let script = "set -e
sha256sum /mnt/rw/big | cut -d' ' -f1
dd if=/mnt/rw/far bs=1M skip=300 count=1 2>/dev/null | sha256sum | cut -d' ' -f1
dd if=/mnt/rw/big of=/mnt/rw/copy bs=1M 2>/dev/null
dd if=/mnt/rw/big of=/mnt/rw/sparse bs=1M seek=511 count=1 2>/dev/null
touch /mnt/rw/ready
i=0
while [ ! -e /mnt/rw/go ]; do sleep 0.2; i=$((i+1)); [ $i -lt 1500 ]; done
cat /mnt/rw/late.txt
if [ -e /mnt/rw/tobedeleted ]; then echo still-there; else echo deleted; fi";
    let child = Command::new(vcompare())
        .arg("--root")
        .arg(&root.0)
        .args(["run", "--mode", "vm", "--rm", "--timeout", "600", "-v"])
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
        lines.first(),
        Some(&big.as_str()),
        "guest read: {}",
        text(&o)
    );
    assert_eq!(
        lines.get(1).copied(),
        Some(sha256_of(&rw.path("far"), 300 * MIB, None).as_str()),
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
