//! `vcompare image build DIR`: turns a directory into a one-layer OCI image. It writes a real
//! OCI layout (layer tar, config, manifest, index) into staging and imports that through the
//! normal verified import path, so built and imported images are stored identically.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;

use super::digest::{self, HashingReader};
use super::error::{IoContext, Result, StoreError};
use super::import::{self, Imported};
use super::Store;

/// What to put in the image config besides the layer.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// ENTRYPOINT, if any.
    pub entrypoint: Vec<String>,
    /// CMD, if any.
    pub cmd: Vec<String>,
    /// ENV, `K=V`.
    pub env: Vec<String>,
    /// WORKDIR.
    pub workdir: Option<String>,
    /// USER.
    pub user: Option<String>,
}

/// Builds `dir` into an image tagged `tag`.
pub fn build(store: &Store, dir: &Path, tag: &str, opts: &BuildOptions) -> Result<Imported> {
    let tag = super::reference::normalize(tag)?;
    if !dir.is_dir() {
        return Err(StoreError::SourceMissing(dir.to_path_buf()));
    }
    let canon = dir
        .canonicalize()
        .ctx(|| format!("resolving {}", dir.display()))?;
    if store
        .root()
        .canonicalize()
        .is_ok_and(|r| r.starts_with(&canon))
    {
        return Err(StoreError::BuildContainsStore(canon));
    }
    let staging = store.staging("build")?;
    let layout = staging.path().join("layout");
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs).ctx(|| format!("creating {}", blobs.display()))?;

    // The layer: an uncompressed tar of the directory (fast to build and to apply).
    let layer_tmp = layout.join("layer.tar");
    {
        let f = File::create(&layer_tmp).ctx(|| format!("creating {}", layer_tmp.display()))?;
        let mut b = tar::Builder::new(BufWriter::new(f));
        b.follow_symlinks(false);
        b.mode(tar::HeaderMode::Complete);
        append_tree(&mut b, dir).ctx(|| format!("archiving {}", dir.display()))?;
        b.into_inner()
            .and_then(|mut w| w.flush())
            .ctx(|| format!("writing {}", layer_tmp.display()))?;
    }
    let mut r = HashingReader::new(File::open(&layer_tmp).ctx(|| "reopening layer".into())?);
    std::io::copy(&mut r, &mut std::io::sink()).ctx(|| "hashing layer".into())?;
    let (layer_size, layer_digest) = r.finish();
    fs::rename(&layer_tmp, blobs.join(digest::hex_of(&layer_digest)?))
        .ctx(|| "storing layer".into())?;

    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let mut cfg = serde_json::Map::new();
    if !opts.entrypoint.is_empty() {
        cfg.insert("Entrypoint".into(), opts.entrypoint.clone().into());
    }
    if !opts.cmd.is_empty() {
        cfg.insert("Cmd".into(), opts.cmd.clone().into());
    }
    let mut env = opts.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(
            0,
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    cfg.insert("Env".into(), env.into());
    if let Some(w) = &opts.workdir {
        cfg.insert("WorkingDir".into(), w.clone().into());
    }
    if let Some(u) = &opts.user {
        cfg.insert("User".into(), u.clone().into());
    }
    let config = serde_json::json!({
        "created": now,
        "architecture": "amd64",
        "os": "linux",
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created": now, "created_by": format!("vcompare image build {}", dir.display())}],
    });
    let config_bytes = serde_json::to_vec(&config).expect("config serialises");
    let config_digest = write_blob(&blobs, &config_bytes)?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_bytes.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
    });
    let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest serialises");
    let manifest_digest = write_blob(&blobs, &manifest_bytes)?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).expect("index serialises"),
    )
    .ctx(|| "writing index.json".into())?;
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .ctx(|| "writing oci-layout".into())?;
    let mut imported = import::import(store, &layout, Some(&tag))?;
    Ok(imported.remove(0))
}

/// Archives `dir` in sorted order (reproducible), writing repeated inodes as hard links
/// (tar's own directory walker would store each link as a separate copy).
fn append_tree<W: Write>(b: &mut tar::Builder<W>, dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut seen: std::collections::HashMap<(u64, u64), std::path::PathBuf> = Default::default();
    let mut stack = vec![std::path::PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut children: Vec<_> =
            fs::read_dir(dir.join(&rel))?.collect::<std::io::Result<Vec<_>>>()?;
        children.sort_by_key(|e| std::cmp::Reverse(e.file_name()));
        for e in children {
            let child = rel.join(e.file_name());
            let md = fs::symlink_metadata(e.path())?;
            if md.is_file() && md.nlink() > 1 {
                if let Some(first) = seen.get(&(md.dev(), md.ino())) {
                    let mut h = tar::Header::new_gnu();
                    h.set_metadata_in_mode(&md, tar::HeaderMode::Complete);
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_size(0);
                    b.append_link(&mut h, &child, first)?;
                    continue;
                }
                seen.insert((md.dev(), md.ino()), child.clone());
            }
            b.append_path_with_name(e.path(), &child)?;
            if md.is_dir() {
                stack.push(child);
            }
        }
    }
    Ok(())
}

fn write_blob(blobs: &Path, bytes: &[u8]) -> Result<String> {
    let d = digest::of_bytes(bytes);
    fs::write(blobs.join(digest::hex_of(&d)?), bytes).ctx(|| format!("writing blob {d}"))?;
    Ok(d)
}

/// Splits a `--entrypoint`/`--cmd` value: a JSON array (`["a","b"]`) or whitespace-separated words.
pub fn parse_command(value: &str) -> Vec<String> {
    let t = value.trim();
    if t.starts_with('[') {
        if let Ok(v) = serde_json::from_str::<Vec<String>>(t) {
            return v;
        }
    }
    t.split_whitespace().map(str::to_string).collect()
}
