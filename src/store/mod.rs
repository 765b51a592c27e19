//! The content-addressed OCI image store in the data directory:
//!
//! ```text
//! <root>/blobs/sha256/<hex>   manifests, configs and layers, exactly as imported
//! <root>/images/<hex>.json    one record per image (keyed by manifest digest)
//! <root>/rootfs/<hex>/        the layers applied once: the read-only root filesystem cache
//! <root>/refs.json            name:tag -> manifest digest
//! <root>/tmp/                 staging area; everything is built here, then renamed into place
//! ```
//! Writers hold `<root>/store.lock`; readers rely on every file being replaced atomically.

pub mod build;
pub mod digest;
pub mod error;
pub mod import;
pub mod layer;
pub mod reference;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::image::ImageConfiguration;
use serde::{Deserialize, Serialize};

use error::IoContext;
pub use error::{Result, StoreError};

use crate::fsutil::{atomic_write, remove_any, FileLock};

/// One layer of a stored image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Digest of the blob as stored (compressed, if it was).
    pub digest: String,
    /// OCI media type of the blob.
    pub media_type: String,
    /// Blob size in bytes.
    pub size: u64,
}

/// What the store knows about one image; written once when it is imported.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Manifest digest, `sha256:…`: the image id.
    pub digest: String,
    /// Config blob digest.
    pub config_digest: String,
    /// Layers, base first.
    pub layers: Vec<LayerRecord>,
    /// `created` from the image config, if any (RFC 3339).
    pub created: Option<String>,
    /// When this store imported it (RFC 3339).
    pub imported_at: String,
    /// Bytes of regular files in the unpacked root filesystem.
    pub rootfs_size: u64,
}

impl ImageRecord {
    /// The 12-hex short id users type and `image ls` shows.
    pub fn short_id(&self) -> &str {
        &self.hex()[..12]
    }
    /// The 64-hex manifest digest without its algorithm prefix.
    pub fn hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }
}

/// A resolved image: the record plus the reference it was found under.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// `name:tag` if resolved by name, else the short id.
    pub reference: String,
    /// The image record.
    pub record: ImageRecord,
}

/// Handle to the store below a data directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens (creating the layout if needed) the store in `root`.
    pub fn open(root: &Path) -> Result<Store> {
        for sub in ["blobs/sha256", "images", "rootfs", "tmp"] {
            let d = root.join(sub);
            fs::create_dir_all(&d).ctx(|| format!("creating {}", d.display()))?;
        }
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of a stored blob.
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.root.join("blobs/sha256").join(digest::hex_of(digest)?))
    }

    /// The unpacked root filesystem of an image (read-only by convention).
    pub fn rootfs_path(&self, record: &ImageRecord) -> PathBuf {
        self.root.join("rootfs").join(record.hex())
    }

    /// A fresh staging directory below `<root>/tmp`, removed when the guard drops.
    pub fn staging(&self, what: &str) -> Result<TempDir> {
        let p = self
            .root
            .join("tmp")
            .join(format!("{what}-{}", crate::fsutil::random_hex(8)));
        fs::create_dir_all(&p).ctx(|| format!("creating {}", p.display()))?;
        Ok(TempDir(p))
    }

    /// Takes the store's writer lock.
    pub fn lock(&self) -> Result<FileLock> {
        let p = self.root.join("store.lock");
        FileLock::exclusive(&p).ctx(|| format!("locking {}", p.display()))
    }

    /// The tag table.
    pub fn refs(&self) -> Result<BTreeMap<String, String>> {
        let p = self.root.join("refs.json");
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|source| StoreError::MalformedJson {
                what: p.display().to_string(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(e).ctx(|| format!("reading {}", p.display())),
        }
    }

    /// Replaces the tag table (caller holds the lock).
    fn write_refs(&self, refs: &BTreeMap<String, String>) -> Result<()> {
        let p = self.root.join("refs.json");
        atomic_write(
            &p,
            &serde_json::to_vec_pretty(refs).expect("refs serialise"),
        )
        .ctx(|| format!("writing {}", p.display()))
    }

    /// Points `reference` (`name:tag`) at `digest` (caller holds the lock).
    pub fn set_ref(&self, reference: &str, digest: &str) -> Result<()> {
        let mut refs = self.refs()?;
        refs.insert(reference.to_string(), digest.to_string());
        self.write_refs(&refs)
    }

    /// All image records, newest import first.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        let dir = self.root.join("images");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir)
            .ctx(|| format!("reading {}", dir.display()))?
            .flatten()
        {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "json") {
                out.push(self.read_record(&p)?);
            }
        }
        out.sort_by(|a, b| b.imported_at.cmp(&a.imported_at));
        Ok(out)
    }

    fn read_record(&self, p: &Path) -> Result<ImageRecord> {
        let b = fs::read(p).ctx(|| format!("reading {}", p.display()))?;
        serde_json::from_slice(&b).map_err(|source| StoreError::MalformedJson {
            what: p.display().to_string(),
            source,
        })
    }

    /// The record of an image by manifest digest, if stored.
    pub fn record(&self, digest: &str) -> Result<Option<ImageRecord>> {
        let p = self
            .root
            .join("images")
            .join(format!("{}.json", digest::hex_of(digest)?));
        if p.exists() {
            self.read_record(&p).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Resolves `name[:tag]`, a full digest, or an unambiguous id prefix.
    pub fn resolve(&self, reference: &str) -> Result<ResolvedImage> {
        if let Ok(name) = reference::normalize(reference) {
            if let Some(d) = self.refs()?.get(&name) {
                if let Some(record) = self.record(d)? {
                    return Ok(ResolvedImage {
                        reference: name,
                        record,
                    });
                }
            }
        }
        let prefix = reference.trim_start_matches("sha256:");
        if !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            let matches: Vec<ImageRecord> = self
                .images()?
                .into_iter()
                .filter(|r| r.hex().starts_with(prefix))
                .collect();
            match matches.len() {
                0 => {}
                1 => {
                    let record = matches.into_iter().next().expect("one match");
                    return Ok(ResolvedImage {
                        reference: record.short_id().to_string(),
                        record,
                    });
                }
                _ => {
                    let ids = matches
                        .iter()
                        .map(|r| r.short_id())
                        .collect::<Vec<_>>()
                        .join(", ");
                    return Err(StoreError::Ambiguous(reference.into(), ids));
                }
            }
        }
        Err(StoreError::ImageNotFound(reference.to_string()))
    }

    /// Tags pointing at `digest`.
    pub fn tags_of(&self, digest: &str) -> Result<Vec<String>> {
        Ok(self
            .refs()?
            .into_iter()
            .filter(|(_, d)| d == digest)
            .map(|(r, _)| r)
            .collect())
    }

    /// The image's config (entrypoint, cmd, env, …).
    pub fn config(&self, record: &ImageRecord) -> Result<ImageConfiguration> {
        let p = self.blob_path(&record.config_digest)?;
        let b = fs::read(&p).ctx(|| format!("reading {}", p.display()))?;
        serde_json::from_slice(&b).map_err(|source| StoreError::MalformedJson {
            what: format!("config {}", record.config_digest),
            source,
        })
    }

    /// Removes `reference`: by tag, only that tag (and the image once no tag is left); by id,
    /// the image and all its tags. `in_use(digest, running_only)` lists the instances using the
    /// image (with `force`, only the running ones); any refuses the removal. Returns the digest
    /// removed, if the image itself went.
    pub fn remove(
        &self,
        reference: &str,
        force: bool,
        in_use: &dyn Fn(&str, bool) -> Vec<String>,
    ) -> Result<Option<String>> {
        let _lock = self.lock()?;
        let resolved = self.resolve(reference)?;
        let digest = resolved.record.digest.clone();
        let mut refs = self.refs()?;
        let by_tag = refs.contains_key(&resolved.reference);
        let other_tags = refs
            .iter()
            .filter(|(r, d)| **d == digest && **r != resolved.reference)
            .count();
        let removes_image = !by_tag || other_tags == 0;
        if removes_image {
            let users = in_use(&digest, force);
            if !users.is_empty() {
                let (reference, instances) = (resolved.reference, users.join(", "));
                return Err(if force {
                    StoreError::InUseRunning {
                        reference,
                        instances,
                    }
                } else {
                    StoreError::InUse {
                        reference,
                        instances,
                    }
                });
            }
        }
        if by_tag && !removes_image {
            refs.remove(&resolved.reference);
            self.write_refs(&refs)?;
            return Ok(None);
        }
        refs.retain(|_, d| *d != digest);
        self.write_refs(&refs)?;
        let hex = resolved.record.hex().to_string();
        let rec = self.root.join("images").join(format!("{hex}.json"));
        fs::remove_file(&rec).ctx(|| format!("removing {}", rec.display()))?;
        // Move the rootfs aside first so a crash never leaves a half-deleted cache in place.
        let rootfs = self.rootfs_path(&resolved.record);
        if rootfs.exists() {
            let trash = self
                .root
                .join("tmp")
                .join(format!("trash-{hex}-{}", crate::fsutil::random_hex(4)));
            fs::rename(&rootfs, &trash).ctx(|| format!("removing {}", rootfs.display()))?;
            remove_any(&trash).ctx(|| format!("removing {}", trash.display()))?;
        }
        for cache in ["disks", "snapshots"] {
            let d = self.root.join(cache);
            if let Ok(rd) = fs::read_dir(&d) {
                for e in rd
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&hex))
                {
                    let _ = remove_any(&e.path());
                }
            }
        }
        self.collect_garbage()?;
        Ok(Some(digest))
    }

    /// Deletes blobs no stored image references (caller holds the lock).
    fn collect_garbage(&self) -> Result<()> {
        let mut live = std::collections::HashSet::new();
        for r in self.images()? {
            live.insert(r.hex().to_string());
            live.insert(r.config_digest.trim_start_matches("sha256:").to_string());
            for l in &r.layers {
                live.insert(l.digest.trim_start_matches("sha256:").to_string());
            }
        }
        let dir = self.root.join("blobs/sha256");
        for e in fs::read_dir(&dir)
            .ctx(|| format!("reading {}", dir.display()))?
            .flatten()
        {
            if !live.contains(e.file_name().to_string_lossy().as_ref()) {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(())
    }
}

/// A directory removed (recursively) when dropped: staging areas vanish on every error path.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = remove_any(&self.0);
    }
}
