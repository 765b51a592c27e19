//! Shared helpers for the end-to-end tests: a private data directory per test, a way to run
//! the real `vcompare` binary, and builders for OCI / docker-save fixtures made with tar,
//! flate2, zstd and sha2 (no mocks: the binary reads real files).
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

pub mod exec_checks;
pub mod pty;
pub mod skip;
pub mod test_host;
pub mod vm_root;

/// A private data directory for one test, removed at the end.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Drop for Env {
    /// A test that failed half-way must not leave instances running (busy loops, VMs) once
    /// its data directory is gone: `rm -f` every instance of this root first.
    fn drop(&mut self) {
        if !self.root().join("instances").is_dir() {
            return;
        }
        let Ok(o) = self.cmd(&["ps", "-aq"]).output() else {
            return;
        };
        let ids: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if !ids.is_empty() {
            let mut rm = self.cmd(&["rm", "-f"]);
            let _ = rm.args(&ids).output();
        }
    }
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::Builder::new()
                .prefix("vcompare-test-")
                .tempdir()
                .expect("tempdir"),
        }
    }
    /// The `--root` of this test.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    /// A scratch path next to the data dir.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        fs::create_dir_all(&p).unwrap();
        p
    }
    /// `vcompare --root <root> ARGS`.
    /// stdin is /dev/null unless the caller sets it.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vcompare"));
        test_host::isolate(&mut c);
        c.arg("--root")
            .arg(self.root())
            .args(args)
            .stdin(std::process::Stdio::null());
        c
    }
    /// Runs `vcompare --root <root> ARGS` and captures its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run vcompare")
    }
    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "vcompare {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8(o.stdout).unwrap()
    }
    /// Runs and asserts failure with exactly one line on stderr; returns it.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            !o.status.success(),
            "vcompare {args:?} should have failed: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        let err = String::from_utf8(o.stderr).unwrap();
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "expected one error line, got: {err}");
        lines[0].to_string()
    }
    /// Every path below the data dir with its type, mode and content (sha256 of regular files,
    /// target of symlinks), lock files included: a snapshot to prove "the store is unchanged
    /// byte for byte".
    pub fn store_snapshot(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = describe_tree(&self.root()).into_iter().collect();
        out.sort();
        out
    }

    /// Builds the image [`BUSYBOX`] (`test/busybox:1`: the host's static `/bin/busybox` with a
    /// symlink per applet, `PATH=/bin`, default command `sh`) into this data dir.
    pub fn build_busybox(&self) {
        let dir = self.scratch("bbdir");
        busybox_tree(&dir);
        self.ok(&[
            "image",
            "build",
            dir.to_str().unwrap(),
            "--tag",
            BUSYBOX,
            "--env",
            "PATH=/bin",
            "--cmd",
            "sh",
        ]);
    }

    /// A fresh data dir holding the [`BUSYBOX`] image.
    pub fn with_busybox() -> Env {
        let env = Env::new();
        env.build_busybox();
        env
    }

    /// `vcompare run --rm --mode container FLAGS... test/busybox:1 sh -c SCRIPT`.
    pub fn run_sh(&self, flags: &[&str], script: &str) -> Output {
        let mut a = vec!["run", "--rm", "--mode", "container"];
        a.extend_from_slice(flags);
        a.extend_from_slice(&[BUSYBOX, "sh", "-c", script]);
        self.run(&a)
    }

    /// `ps -a --format json` as a list of instance records.
    pub fn ps_json(&self) -> Vec<serde_json::Value> {
        serde_json::from_str::<serde_json::Value>(&self.ok(&["ps", "-a", "--format", "json"]))
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    /// The `ps -a` record of the instance whose id starts with `id` (panics if there is none).
    pub fn instance(&self, id: &str) -> serde_json::Value {
        find(&self.ps_json(), id).clone()
    }

    /// Polls `ps -a` until the instance's status is `status`; returns that record. Waiting for
    /// `running` fails at once (with the record) if the instance has already exited.
    pub fn wait_status(&self, id: &str, status: &str) -> serde_json::Value {
        wait_for(&format!("instance {id} to become {status}"), || {
            let v = self.instance(id);
            assert!(
                !(status == "running" && v["status"] == "exited"),
                "instance {id} exited instead of running: {v}\nlog: {}",
                text(&self.run(&["logs", id]).stdout)
            );
            (v["status"] == status).then_some(v)
        })
    }

    /// Starts `run -d --mode container FLAGS... IMAGE CMD...` and waits until it is running;
    /// returns (full id, pid of the instance's process on the host).
    pub fn run_detached(&self, args: &[&str]) -> (String, i32) {
        let mut a = vec!["run", "-d", "--mode", "container"];
        a.extend_from_slice(args);
        let id = self.ok(&a).trim().to_string();
        assert_eq!(id.len(), 64, "run -d prints the full id: {id}");
        let v = self.wait_status(&id, "running");
        (
            id,
            v["pid"].as_i64().expect("a running instance has a pid") as i32,
        )
    }
}

/// The tag of the busybox image built by [`Env::build_busybox`].
pub const BUSYBOX: &str = "test/busybox:1";

/// Writes a busybox root filesystem into `dir`: /bin/busybox (the host's static one, package
/// busybox-static), a symlink per applet, /etc/passwd with root, empty /tmp and /root.
pub fn busybox_tree(dir: &Path) {
    for d in ["bin", "etc", "tmp", "root"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    fs::copy("/bin/busybox", dir.join("bin/busybox"))
        .expect("needs /bin/busybox (apt-get install busybox-static)");
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for name in String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|n| *n != "busybox")
    {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(name)).unwrap();
    }
    fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
}

/// The record in a `ps -a --format json` list whose id starts with `id`.
pub fn find<'a>(list: &'a [serde_json::Value], id: &str) -> &'a serde_json::Value {
    list.iter()
        .find(|v| v["id"].as_str().unwrap().starts_with(id))
        .unwrap_or_else(|| panic!("{id} not in ps: {list:?}"))
}

/// Polls `f` every 20 ms until it returns `Some`. The 60 s deadline only guards against a
/// hang (it is not a timing assertion): a condition that never comes fails naming `what`.
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    wait_until(what, || f().ok_or_else(String::new))
}

/// [`wait_for`] for conditions worth explaining: `f` returns `Err(what it saw)` until the
/// condition holds, and a timeout names the last thing seen.
pub fn wait_until<T>(what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let seen = match f() {
            Ok(v) => return v,
            Err(seen) => seen,
        };
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}; last seen: {seen}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Lossy UTF-8 of captured output.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// True while `pid` exists and is not a zombie (`/proc/PID/stat` state other than Z/X).
pub fn process_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s.rsplit(')').next().unwrap_or("").trim_start();
            !(state.starts_with('Z') || state.starts_with('X'))
        }
        Err(_) => false,
    }
}

/// The file `name` of the cgroup that process `pid` is in, for a controller that may live on
/// cgroup v1 (`controller` hierarchy, e.g. `pids`) or v2 (the unified hierarchy): decided from
/// `/proc/PID/cgroup` and `/proc/self/mountinfo`, never assumed. Returns the path and whether
/// it is v2. `v2_name` is the file's name on v2 (e.g. `cpu.max` for v1's `cpu.cfs_quota_us`).
pub fn cgroup_file(pid: i32, controller: &str, v1_name: &str, v2_name: &str) -> (PathBuf, bool) {
    let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read /proc/PID/cgroup");
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    // Mount point of a v1 hierarchy carrying `controller`, and of cgroup2.
    let mut v1_mount = None;
    let mut v2_mount = None;
    for l in mountinfo.lines() {
        let (pre, post) = l.split_once(" - ").unwrap();
        let mp = pre.split_whitespace().nth(4).unwrap().to_string();
        let mut post = post.split_whitespace();
        let fstype = post.next().unwrap();
        let opts = post.nth(1).unwrap_or("");
        if fstype == "cgroup" && opts.split(',').any(|o| o == controller) {
            v1_mount = Some(mp);
        } else if fstype == "cgroup2" {
            v2_mount = Some(mp);
        }
    }
    for l in cg.lines() {
        let mut f = l.splitn(3, ':');
        let (_, ctrls, path) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        if ctrls.split(',').any(|c| c == controller) {
            let m = v1_mount.expect("a v1 hierarchy for a controller listed in /proc/PID/cgroup");
            return (
                Path::new(&m)
                    .join(path.trim_start_matches('/'))
                    .join(v1_name),
                false,
            );
        }
    }
    let path = cg
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_else(|| {
            panic!("process {pid} has neither a v1 `{controller}` nor a v2 cgroup: {cg}")
        });
    let m = v2_mount.expect("cgroup2 mounted");
    (
        Path::new(&m)
            .join(path.trim_start_matches('/'))
            .join(v2_name),
        true,
    )
}

/// One tar entry of a fixture layer (owned by 0:0 unless wrapped in [`E::Owned`]).
#[derive(Clone)]
pub enum E {
    Dir(&'static str, u32),
    File(&'static str, &'static [u8], u32),
    Symlink(&'static str, &'static str),
    Hardlink(&'static str, &'static str),
    /// A raw name written byte for byte (to craft `../` and absolute entries).
    RawFile(&'static [u8], &'static [u8]),
    /// The inner entry with owner uid and group gid in its tar header.
    Owned(Box<E>, u32, u32),
}

impl E {
    /// This entry owned by `uid:gid`.
    pub fn owned(self, uid: u32, gid: u32) -> E {
        E::Owned(Box::new(self), uid, gid)
    }
}

fn header(
    kind: tar::EntryType,
    name: &[u8],
    size: u64,
    mode: u32,
    owner: (u32, u32),
) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(owner.0.into());
    h.set_gid(owner.1.into());
    h.set_mtime(1_600_000_000);
    let ustar = h.as_ustar_mut().unwrap();
    ustar.name = [0; 100];
    ustar.name[..name.len()].copy_from_slice(name);
    h.set_cksum();
    h
}

fn with_link(mut h: tar::Header, target: &str) -> tar::Header {
    let ustar = h.as_ustar_mut().unwrap();
    ustar.linkname = [0; 100];
    ustar.linkname[..target.len()].copy_from_slice(target.as_bytes());
    h.set_cksum();
    h
}

/// Appends one fixture entry owned by `owner` (uid, gid).
fn append(b: &mut tar::Builder<Vec<u8>>, e: &E, owner: (u32, u32)) {
    use tar::EntryType as T;
    let r = match e {
        E::Dir(p, m) => b.append(&header(T::Directory, p.as_bytes(), 0, *m, owner), &[][..]),
        E::File(p, data, m) => b.append(
            &header(T::Regular, p.as_bytes(), data.len() as u64, *m, owner),
            *data,
        ),
        E::RawFile(p, data) => b.append(
            &header(T::Regular, p, data.len() as u64, 0o644, owner),
            *data,
        ),
        E::Symlink(p, t) => b.append(
            &with_link(header(T::Symlink, p.as_bytes(), 0, 0o777, owner), t),
            &[][..],
        ),
        E::Hardlink(p, t) => b.append(
            &with_link(header(T::Link, p.as_bytes(), 0, 0o644, owner), t),
            &[][..],
        ),
        E::Owned(inner, uid, gid) => return append(b, inner, (*uid, *gid)),
    };
    r.unwrap();
}

/// An uncompressed layer tar.
pub fn layer(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        append(&mut b, e, (0, 0));
    }
    b.into_inner().unwrap()
}

/// `sha256:<hex>` of `data`, as OCI digests are written.
pub fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Layer compression of a fixture.
#[derive(Clone, Copy)]
pub enum Comp {
    None,
    Gzip,
    Zstd,
}

/// `data` compressed as `c`, with the OCI layer media type of that compression.
pub fn compress(data: &[u8], c: Comp) -> (Vec<u8>, &'static str) {
    match c {
        Comp::None => (data.to_vec(), "application/vnd.oci.image.layer.v1.tar"),
        Comp::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            (
                e.finish().unwrap(),
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        }
        Comp::Zstd => (
            zstd::encode_all(data, 1).unwrap(),
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
    }
}

/// Writes an OCI image layout with the given layers; returns the manifest digest.
/// `tamper` may edit blobs (by digest) after they are written, to make corrupt fixtures.
pub fn oci_layout(dir: &Path, layers: &[(Vec<u8>, Comp)], ref_name: &str, cmd: &[&str]) -> String {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let d = sha(data);
        fs::write(blobs.join(d.trim_start_matches("sha256:")), data).unwrap();
        d
    };
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for (tar, c) in layers {
        diff_ids.push(sha(tar));
        let (blob, mt) = compress(tar, *c);
        descs.push(serde_json::json!({"mediaType": mt, "digest": put(&blob), "size": blob.len()}));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": cmd, "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(&config), "size": config.len()},
        "layers": descs,
    }))
    .unwrap();
    let md = put(&manifest);
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": ref_name}}]});
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    md
}

/// Tars a directory (an OCI archive, or a docker-save tarball) into `out`.
pub fn tar_dir(dir: &Path, out: &Path) {
    let f = fs::File::create(out).unwrap();
    let mut b = tar::Builder::new(f);
    b.append_dir_all(".", dir).unwrap();
    b.finish().unwrap();
}

/// Writes a `docker save`-style directory (manifest.json, <hex>.json config, <id>/layer.tar).
pub fn docker_save_dir(dir: &Path, layers: &[Vec<u8>], tag: &str) {
    fs::create_dir_all(dir).unwrap();
    let diff_ids: Vec<String> = layers.iter().map(|l| sha(l)).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let cfg_name = format!("{}.json", sha(&config).trim_start_matches("sha256:"));
    fs::write(dir.join(&cfg_name), &config).unwrap();
    let mut names = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let id = format!("{:064x}", i + 1);
        fs::create_dir_all(dir.join(&id)).unwrap();
        fs::write(dir.join(&id).join("layer.tar"), l).unwrap();
        names.push(format!("{id}/layer.tar"));
    }
    let manifest = serde_json::json!([{"Config": cfg_name, "RepoTags": [tag], "Layers": names}]);
    fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
}

/// A comparable description of a tree: path → (type, mode, owner, size, link target, content
/// hash).
pub fn describe_tree(root: &Path) -> std::collections::BTreeMap<String, String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in fs::read_dir(&p).unwrap().flatten() {
            let path = e.path();
            let md = fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let mode = md.mode() & 0o7777;
            let owner = format!("{}:{}", md.uid(), md.gid());
            let d = if md.file_type().is_symlink() {
                format!(
                    "link {owner} -> {}",
                    fs::read_link(&path).unwrap().display()
                )
            } else if md.is_dir() {
                stack.push(path.clone());
                format!("dir {mode:o} {owner}")
            } else if md.is_file() {
                format!(
                    "file {mode:o} {owner} {} {}",
                    md.len(),
                    sha(&fs::read(&path).unwrap())
                )
            } else {
                format!("other {:o} {owner}", md.mode())
            };
            out.insert(rel, d);
        }
    }
    out
}

/// The rootfs directory the store unpacked for an image id prefix.
pub fn rootfs_of(env: &Env, reference: &str) -> PathBuf {
    let out = env.ok(&["image", "inspect", reference]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    PathBuf::from(v["rootfs"].as_str().unwrap())
}

/// `vcompare-vmm` next to the `vcompare` under test, built now if missing or stale. VM mode
/// refuses to run without it, and `cargo nextest run -p vcompare` builds only this package's
/// binaries, so the tests build it themselves (same profile, same target directory): they
/// always exercise the real two-process layout with current code, never a stale copy.
pub fn vmm_binary() -> PathBuf {
    let exe = Path::new(env!("CARGO_BIN_EXE_vcompare"));
    let profile_dir = exe.parent().unwrap();
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(p) => p,
        None => panic!("unexpected location of {}", exe.display()),
    };
    let o = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "vcompare-vmm",
            "--bin",
            "vcompare-vmm",
        ])
        .args(["--profile", profile, "--target-dir"])
        .arg(profile_dir.parent().unwrap())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "building vcompare-vmm: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let bin = profile_dir.join("vcompare-vmm");
    assert!(bin.is_file(), "cargo built no {}", bin.display());
    bin
}
