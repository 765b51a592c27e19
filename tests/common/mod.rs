//! Shared helpers for the end-to-end tests: a private data directory per test, a way to run
//! the real `vcompare` binary, and builders for OCI / docker-save fixtures made with tar,
//! flate2, zstd and sha2 (no mocks: the binary reads real files).
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

/// A private data directory for one test, removed at the end.
pub struct Env {
    pub dir: tempfile::TempDir,
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
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vcompare"));
        c.arg("--root").arg(self.root()).args(args);
        c
    }
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
    /// Every path below the data dir with its size: a snapshot to prove "the store is unchanged".
    pub fn store_snapshot(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let root = self.root();
        let mut stack = vec![root.clone()];
        while let Some(p) = stack.pop() {
            for e in fs::read_dir(&p).into_iter().flatten().flatten() {
                let md = fs::symlink_metadata(e.path()).unwrap();
                let rel = e.path().strip_prefix(&root).unwrap().display().to_string();
                if rel.ends_with(".lock") {
                    continue;
                }
                if md.is_dir() {
                    stack.push(e.path());
                }
                out.push((rel, if md.is_file() { md.len() } else { 0 }));
            }
        }
        out.sort();
        out
    }
}

/// One tar entry of a fixture layer.
#[derive(Clone)]
pub enum E {
    Dir(&'static str, u32),
    File(&'static str, &'static [u8], u32),
    Symlink(&'static str, &'static str),
    Hardlink(&'static str, &'static str),
    /// A raw name written byte for byte (to craft `../` and absolute entries).
    RawFile(&'static [u8], &'static [u8]),
}

fn header(kind: tar::EntryType, name: &[u8], size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
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

/// An uncompressed layer tar.
pub fn layer(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            E::Dir(p, m) => b
                .append(
                    &header(tar::EntryType::Directory, p.as_bytes(), 0, *m),
                    &[][..],
                )
                .unwrap(),
            E::File(p, data, m) => b
                .append(
                    &header(tar::EntryType::Regular, p.as_bytes(), data.len() as u64, *m),
                    *data,
                )
                .unwrap(),
            E::RawFile(p, data) => b
                .append(
                    &header(tar::EntryType::Regular, p, data.len() as u64, 0o644),
                    *data,
                )
                .unwrap(),
            E::Symlink(p, t) => b
                .append(
                    &with_link(header(tar::EntryType::Symlink, p.as_bytes(), 0, 0o777), t),
                    &[][..],
                )
                .unwrap(),
            E::Hardlink(p, t) => b
                .append(
                    &with_link(header(tar::EntryType::Link, p.as_bytes(), 0, 0o644), t),
                    &[][..],
                )
                .unwrap(),
        }
    }
    b.into_inner().unwrap()
}

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

/// A comparable description of a tree: path → (type, mode, size, link target, content hash).
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
            let d = if md.file_type().is_symlink() {
                format!("link -> {}", fs::read_link(&path).unwrap().display())
            } else if md.is_dir() {
                stack.push(path.clone());
                format!("dir {mode:o}")
            } else if md.is_file() {
                format!(
                    "file {mode:o} {} {}",
                    md.len(),
                    sha(&fs::read(&path).unwrap())
                )
            } else {
                format!("other {mode:o}")
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
