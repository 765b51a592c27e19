//! Managed volumes (`vcompare volume …`, `-v NAME:GUEST`): directories that vcompare keeps in
//! its data dir at `<root>/volumes/<name>/_data`, outliving the instances that use them. The
//! course contrasts them with bind mounts of arbitrary host paths; to a backend both are
//! just a host directory.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil::{atomic_write, remove_any};

/// Errors of volume management.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error(
        "invalid volume name `{0}`; names use letters, digits, and _ . - (first a letter or digit)"
    )]
    BadName(String),
    #[error("volume `{0}` does not exist; `vcompare volume ls` lists volumes")]
    NotFound(String),
    #[error("volume `{0}` already exists")]
    Exists(String),
    #[error("volume `{name}` is used by instance(s) {users}; remove them first")]
    InUse { name: String, users: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> VolumeError {
    let context = context.into();
    move |source| VolumeError::Io { context, source }
}

/// What `volume ls` / `volume inspect` show.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VolumeInfo {
    /// The volume's name.
    pub name: String,
    /// The host directory mounted into instances.
    pub mountpoint: PathBuf,
    /// When it was created (RFC 3339).
    pub created: String,
}

/// The volumes below a data directory.
pub struct Volumes {
    dir: PathBuf,
}

impl Volumes {
    /// Opens `<root>/volumes`, creating it.
    pub fn open(root: &Path) -> Result<Volumes, VolumeError> {
        let dir = root.join("volumes");
        fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        // Only root may walk in; the runtimes mount `_data` as root, after which its own
        // mode governs access.
        fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(io(format!("chmod {}", dir.display())))?;
        Ok(Volumes { dir })
    }

    fn check(name: &str) -> Result<(), VolumeError> {
        crate::instance::check_name(name).map_err(|_| VolumeError::BadName(name.into()))
    }

    /// The host directory of volume `name`.
    pub fn data_path(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("_data")
    }

    /// Creates volume `name` (built aside, then renamed: never half-created).
    pub fn create(&self, name: &str) -> Result<VolumeInfo, VolumeError> {
        Self::check(name)?;
        let target = self.dir.join(name);
        if target.exists() {
            return Err(VolumeError::Exists(name.into()));
        }
        let tmp = self
            .dir
            .join(format!(".new-{name}-{}", crate::fsutil::random_hex(4)));
        let info = VolumeInfo {
            name: name.into(),
            mountpoint: self.data_path(name),
            created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        };
        let build = || -> std::io::Result<()> {
            fs::create_dir_all(tmp.join("_data"))?;
            // Writable by every side of the comparison: container root is an unprivileged
            // host uid under the user namespace, and a VM guest maps ids its own way.
            fs::set_permissions(
                tmp.join("_data"),
                std::os::unix::fs::PermissionsExt::from_mode(0o777),
            )?;
            atomic_write(
                &tmp.join("meta.json"),
                &serde_json::to_vec_pretty(&info).expect("volume info serialises"),
            )?;
            fs::rename(&tmp, &target)
        };
        build().map_err(|e| {
            let _ = remove_any(&tmp);
            VolumeError::Io {
                context: format!("creating volume {name}"),
                source: e,
            }
        })?;
        Ok(info)
    }

    /// The host directory of `name`, creating the volume on first use (as `docker run -v` does).
    pub fn ensure(&self, name: &str) -> Result<PathBuf, VolumeError> {
        match self.create(name) {
            Ok(_) | Err(VolumeError::Exists(_)) => Ok(self.data_path(name)),
            Err(e) => Err(e),
        }
    }

    /// One volume's record.
    pub fn inspect(&self, name: &str) -> Result<VolumeInfo, VolumeError> {
        Self::check(name)?;
        let p = self.dir.join(name).join("meta.json");
        let b = fs::read(&p).map_err(|_| VolumeError::NotFound(name.into()))?;
        serde_json::from_slice(&b).map_err(|e| VolumeError::Io {
            context: format!("reading {}", p.display()),
            source: e.into(),
        })
    }

    /// All volumes, by name.
    pub fn list(&self) -> Result<Vec<VolumeInfo>, VolumeError> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir)
            .map_err(io(format!("reading {}", self.dir.display())))?
            .flatten()
        {
            let n = e.file_name().to_string_lossy().into_owned();
            if !n.starts_with('.') {
                if let Ok(i) = self.inspect(&n) {
                    out.push(i);
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Removes `name`; `users` are the instances whose spec mounts it (refused if any).
    pub fn remove(&self, name: &str, users: &[String]) -> Result<(), VolumeError> {
        self.inspect(name)?;
        if !users.is_empty() {
            return Err(VolumeError::InUse {
                name: name.into(),
                users: users.join(", "),
            });
        }
        let d = self.dir.join(name);
        let trash = self
            .dir
            .join(format!(".rm-{name}-{}", crate::fsutil::random_hex(4)));
        fs::rename(&d, &trash).map_err(io(format!("removing {}", d.display())))?;
        remove_any(&trash).map_err(io(format!("removing {}", trash.display())))
    }
}
