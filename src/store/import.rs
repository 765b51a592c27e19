//! `vcompare image import`: reads an OCI image layout directory, an OCI archive (a tar of a
//! layout, optionally compressed) or a `docker save` tarball; verifies every blob against its
//! descriptor; applies the layers into the rootfs cache; and only then commits everything into
//! the store by renames. A failure at any step leaves the store exactly as it was.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};
use serde::Deserialize;

use super::digest::{self, HashingReader};
use super::error::{IoContext, Result, StoreError};
use super::layer::{self, Compression};
use super::{ImageRecord, LayerRecord, Store};
use crate::fsutil::atomic_write;

/// One image that an import added (or found already present).
#[derive(Debug, Clone)]
pub struct Imported {
    /// `name:tag` it was tagged as, if any.
    pub reference: Option<String>,
    /// Manifest digest.
    pub digest: String,
}

/// An image whose blobs are verified and staged, not yet committed.
struct Staged {
    manifest_digest: String,
    config_digest: String,
    config: ImageConfiguration,
    layers: Vec<(LayerRecord, Compression)>,
    reference: Option<String>,
}

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// Imports every linux/amd64 image found at `path`; `tag` (`name[:tag]`) names the first.
pub fn import(store: &Store, path: &Path, tag: Option<&str>) -> Result<Vec<Imported>> {
    let tag = tag.map(super::reference::normalize).transpose()?;
    if !path.exists() {
        return Err(StoreError::SourceMissing(path.to_path_buf()));
    }
    let staging = store.staging("import")?;
    let src = if path.is_dir() {
        path.to_path_buf()
    } else {
        extract_archive(path, staging.path())?
    };
    let blobs = staging.path().join("blobs");
    fs::create_dir_all(&blobs).ctx(|| format!("creating {}", blobs.display()))?;
    let default_name = source_name(path);
    let mut staged = if src.join("index.json").is_file() {
        stage_oci(&src, &blobs, &default_name)?
    } else if src.join("manifest.json").is_file() {
        stage_docker(&src, &blobs)?
    } else {
        return Err(StoreError::UnknownFormat(path.to_path_buf()));
    };
    if staged.is_empty() {
        return Err(StoreError::NoManifest);
    }
    if let Some(t) = tag {
        staged[0].reference = Some(t);
    }
    // Unpack each new image into staging; verify diff_ids on the way.
    let mut rootfs_dirs = Vec::new();
    for s in &staged {
        let hex = digest::hex_of(&s.manifest_digest)?.to_string();
        if store.root().join("rootfs").join(&hex).is_dir() {
            rootfs_dirs.push(None);
            continue;
        }
        let dir = staging.path().join(format!("rootfs-{hex}"));
        fs::create_dir(&dir).ctx(|| format!("creating {}", dir.display()))?;
        let diff_ids = s.config.rootfs().diff_ids();
        for (i, (l, comp)) in s.layers.iter().enumerate() {
            let blob = blobs.join(digest::hex_of(&l.digest)?);
            let diff = layer::apply(&dir, &blob, *comp, &l.digest)?;
            if let Some(expected) = diff_ids.get(i) {
                if *expected != diff {
                    return Err(StoreError::DiffIdMismatch {
                        digest: l.digest.clone(),
                        expected: expected.clone(),
                        actual: diff,
                    });
                }
            }
        }
        rootfs_dirs.push(Some(dir));
    }
    commit(store, &staged, &rootfs_dirs, &blobs)
}

/// Moves verified blobs, rootfs trees, records and tags into the store under its lock.
fn commit(
    store: &Store,
    staged: &[Staged],
    rootfs_dirs: &[Option<PathBuf>],
    blobs: &Path,
) -> Result<Vec<Imported>> {
    let _lock = store.lock()?;
    for e in fs::read_dir(blobs)
        .ctx(|| format!("reading {}", blobs.display()))?
        .flatten()
    {
        let dst = store.root().join("blobs/sha256").join(e.file_name());
        if !dst.exists() {
            fs::rename(e.path(), &dst).ctx(|| format!("storing blob {}", dst.display()))?;
        }
    }
    let mut out = Vec::new();
    for (s, dir) in staged.iter().zip(rootfs_dirs) {
        let hex = digest::hex_of(&s.manifest_digest)?;
        let target = store.root().join("rootfs").join(hex);
        if let Some(dir) = dir {
            if !target.exists() {
                fs::rename(dir, &target).ctx(|| format!("storing {}", target.display()))?;
            }
        }
        let rec_path = store.root().join("images").join(format!("{hex}.json"));
        if !rec_path.exists() {
            let record = ImageRecord {
                digest: s.manifest_digest.clone(),
                config_digest: s.config_digest.clone(),
                layers: s.layers.iter().map(|(l, _)| l.clone()).collect(),
                created: s.config.created().clone(),
                imported_at: humantime::format_rfc3339_micros(std::time::SystemTime::now())
                    .to_string(),
                rootfs_size: crate::fsutil::tree_size(&target),
            };
            atomic_write(
                &rec_path,
                &serde_json::to_vec_pretty(&record).expect("record serialises"),
            )
            .ctx(|| format!("writing {}", rec_path.display()))?;
        }
        if let Some(r) = &s.reference {
            store.set_ref(r, &s.manifest_digest)?;
        }
        out.push(Imported {
            reference: s.reference.clone(),
            digest: s.manifest_digest.clone(),
        });
    }
    Ok(out)
}

/// Unpacks an archive (plain, gzip or zstd tar) into `staging/src`.
fn extract_archive(path: &Path, staging: &Path) -> Result<PathBuf> {
    let mut f = File::open(path).ctx(|| format!("opening {}", path.display()))?;
    let mut head = [0u8; 4];
    let n = f
        .read(&mut head)
        .ctx(|| format!("reading {}", path.display()))?;
    let f = File::open(path).ctx(|| format!("opening {}", path.display()))?;
    let reader = Compression::sniff(&head[..n])
        .reader(io::BufReader::new(f))
        .ctx(|| format!("reading {}", path.display()))?;
    let dst = staging.join("src");
    fs::create_dir(&dst).ctx(|| format!("creating {}", dst.display()))?;
    let mut ar = tar::Archive::new(reader);
    ar.set_preserve_permissions(false);
    // tar's unpack refuses entries that would land outside `dst`.
    ar.unpack(&dst)
        .map_err(|_| StoreError::UnknownFormat(path.to_path_buf()))?;
    Ok(dst)
}

/// A lowercase name derived from the source path, for layouts whose ref annotation is a bare tag.
fn source_name(path: &Path) -> String {
    let stem = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = stem.split('.').next().unwrap_or("").to_lowercase();
    let clean: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if clean.is_empty() {
        "imported".into()
    } else {
        clean
    }
}

fn parse_json<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::MalformedJson {
        what: what.to_string(),
        source,
    })
}

/// Copies blob `d` from an OCI layout into staging, verified; returns its bytes for small blobs.
fn stage_blob(src: &Path, blobs: &Path, d: &Descriptor) -> Result<PathBuf> {
    let digest = d.digest().to_string();
    let hex = digest::hex_of(&digest)?;
    let dst = blobs.join(hex);
    if !dst.exists() {
        digest::copy_verified(
            &src.join("blobs/sha256").join(hex),
            &dst,
            &digest,
            Some(d.size()),
        )?;
    }
    Ok(dst)
}

fn read_staged(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).ctx(|| format!("reading {}", path.display()))
}

/// Reads an OCI layout: index.json → (nested indexes) → manifests → config + layers.
fn stage_oci(src: &Path, blobs: &Path, default_name: &str) -> Result<Vec<Staged>> {
    let index: ImageIndex = parse_json(&read_staged(&src.join("index.json"))?, "index.json")?;
    let mut out = Vec::new();
    let mut queue: Vec<Descriptor> = index.manifests().clone();
    while let Some(d) = queue.pop() {
        if let Some(p) = d.platform() {
            if p.os().to_string() != "linux" || p.architecture().to_string() != "amd64" {
                continue;
            }
        }
        match d.media_type().to_string().as_str() {
            "application/vnd.oci.image.index.v1+json" | DOCKER_LIST => {
                let path = stage_blob(src, blobs, &d)?;
                let nested: ImageIndex =
                    parse_json(&read_staged(&path)?, &format!("index {}", d.digest()))?;
                queue.extend(nested.manifests().iter().rev().cloned());
            }
            "application/vnd.oci.image.manifest.v1+json" | DOCKER_MANIFEST => {
                let reference = oci_reference(&d, default_name);
                out.push(stage_manifest(src, blobs, &d, reference)?);
            }
            other => {
                return Err(StoreError::UnknownMediaType {
                    media_type: other.into(),
                    what: format!("manifest {}", d.digest()),
                })
            }
        }
    }
    out.reverse();
    Ok(out)
}

/// The tag an OCI layout gives a manifest: containerd's full name, or OCI's ref name (a bare
/// tag is combined with the layout's file name).
fn oci_reference(d: &Descriptor, default_name: &str) -> Option<String> {
    let ann = d.annotations().as_ref()?;
    if let Some(full) = ann.get("io.containerd.image.name") {
        return super::reference::normalize(full).ok();
    }
    let r = ann.get("org.opencontainers.image.ref.name")?;
    if r.contains(':') || r.contains('/') {
        super::reference::normalize(r).ok()
    } else {
        super::reference::normalize(&format!("{default_name}:{r}")).ok()
    }
}

fn layer_compression(media_type: &str, what: &str) -> Result<Compression> {
    Ok(match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Compression::None,
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Compression::Gzip,
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
        | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Compression::Zstd,
        other => {
            return Err(StoreError::UnknownMediaType {
                media_type: other.into(),
                what: what.into(),
            })
        }
    })
}

fn stage_manifest(
    src: &Path,
    blobs: &Path,
    d: &Descriptor,
    reference: Option<String>,
) -> Result<Staged> {
    let mpath = stage_blob(src, blobs, d)?;
    let manifest: ImageManifest =
        parse_json(&read_staged(&mpath)?, &format!("manifest {}", d.digest()))?;
    let cdesc = manifest.config();
    let ctype = cdesc.media_type().to_string();
    if cdesc.media_type() != &MediaType::ImageConfig && ctype != DOCKER_CONFIG {
        return Err(StoreError::UnknownMediaType {
            media_type: ctype,
            what: format!("config {}", cdesc.digest()),
        });
    }
    let cpath = stage_blob(src, blobs, cdesc)?;
    let config: ImageConfiguration =
        parse_json(&read_staged(&cpath)?, &format!("config {}", cdesc.digest()))?;
    let mut layers = Vec::new();
    for l in manifest.layers() {
        let mt = l.media_type().to_string();
        let comp = layer_compression(&mt, &format!("layer {}", l.digest()))?;
        stage_blob(src, blobs, l)?;
        layers.push((
            LayerRecord {
                digest: l.digest().to_string(),
                media_type: mt,
                size: l.size(),
            },
            comp,
        ));
    }
    Ok(Staged {
        manifest_digest: d.digest().to_string(),
        config_digest: cdesc.digest().to_string(),
        config,
        layers,
        reference,
    })
}

/// One entry of a `docker save` manifest.json.
#[derive(Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// A file named inside the archive, refusing names that leave it.
fn inside(src: &Path, name: &str) -> Result<PathBuf> {
    if name.starts_with('/') || name.split('/').any(|c| c == "..") {
        return Err(StoreError::UnsafeEntry {
            layer: "manifest.json".into(),
            entry: name.into(),
        });
    }
    Ok(src.join(name))
}

/// The sha256 hex a `docker save` file name promises (`<hex>.json`, `blobs/sha256/<hex>`).
fn promised_hex(name: &str) -> Option<&str> {
    let base = name.rsplit('/').next()?;
    let base = base.strip_suffix(".json").unwrap_or(base);
    (base.len() == 64
        && !name.ends_with("/layer.tar")
        && base.bytes().all(|b| b.is_ascii_hexdigit()))
    .then_some(base)
}

/// Copies a file into staging, hashing it; checks the digest its name promises, if any.
fn stage_hashed(path: &Path, blobs: &Path, name: &str) -> Result<(String, u64, Compression)> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(StoreError::MissingBlob {
                digest: name.into(),
            })
        }
        Err(e) => return Err(e).ctx(|| format!("opening {}", path.display())),
    };
    let tmp = blobs.join(format!("incoming-{}", crate::fsutil::random_hex(6)));
    let mut r = HashingReader::new(f);
    let mut out = File::create(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
    io::copy(&mut r, &mut out).ctx(|| format!("copying {}", path.display()))?;
    let (size, d) = r.finish();
    if let Some(hex) = promised_hex(name) {
        digest::check(&format!("sha256:{hex}"), None, size, &d)?;
    }
    let mut head = [0u8; 4];
    let n = File::open(&tmp)
        .and_then(|mut f| f.read(&mut head))
        .ctx(|| format!("reading {}", tmp.display()))?;
    fs::rename(&tmp, blobs.join(digest::hex_of(&d)?))
        .ctx(|| format!("staging {}", path.display()))?;
    Ok((d, size, Compression::sniff(&head[..n])))
}

/// Reads a `docker save` tarball and rebuilds an OCI manifest for each image in it.
fn stage_docker(src: &Path, blobs: &Path) -> Result<Vec<Staged>> {
    let entries: Vec<DockerEntry> =
        parse_json(&read_staged(&src.join("manifest.json"))?, "manifest.json")?;
    let mut out = Vec::new();
    for e in entries {
        let (config_digest, config_size, _) =
            stage_hashed(&inside(src, &e.config)?, blobs, &e.config)?;
        let config: ImageConfiguration = parse_json(
            &read_staged(&blobs.join(digest::hex_of(&config_digest)?))?,
            &format!("config {}", e.config),
        )?;
        let mut layers = Vec::new();
        for name in &e.layers {
            let (d, size, comp) = stage_hashed(&inside(src, name)?, blobs, name)?;
            let media_type = match comp {
                Compression::None => "application/vnd.oci.image.layer.v1.tar",
                Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
                Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            };
            layers.push((
                LayerRecord {
                    digest: d,
                    media_type: media_type.into(),
                    size,
                },
                comp,
            ));
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
            "layers": layers.iter().map(|(l, _)| serde_json::json!({"mediaType": l.media_type, "digest": l.digest, "size": l.size})).collect::<Vec<_>>(),
        });
        let bytes = serde_json::to_vec(&manifest).expect("manifest serialises");
        let manifest_digest = digest::of_bytes(&bytes);
        fs::write(blobs.join(digest::hex_of(&manifest_digest)?), &bytes)
            .ctx(|| "staging manifest".into())?;
        let reference = e
            .repo_tags
            .and_then(|t| t.into_iter().next())
            .and_then(|t| super::reference::normalize(&t).ok());
        out.push(Staged {
            manifest_digest,
            config_digest,
            config,
            layers,
            reference,
        });
    }
    Ok(out)
}
