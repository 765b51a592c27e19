//! The built-in default image `vcompare/probe:latest`: the static `probe` binary (workload and
//! witness) plus Debian's static busybox when installed, so the same tiny userland runs in
//! the host, a container and a microVM. Built on first use through `image build`.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use anyhow::Context;

use crate::store::build::{build, BuildOptions};
use crate::store::{ResolvedImage, Store, StoreError};

/// The default image's reference.
pub const REFERENCE: &str = "vcompare/probe:latest";

/// Where Debian's busybox-static installs its binary.
const BUSYBOX: &str = "/bin/busybox";

/// True if `reference` names the default image (with or without `:latest`).
pub fn is_default(reference: &str) -> bool {
    reference == REFERENCE || reference == "vcompare/probe"
}

/// Resolves `reference`, building the default image first if it is asked for and missing.
pub fn resolve_or_build(store: &Store, reference: &str) -> anyhow::Result<ResolvedImage> {
    match store.resolve(reference) {
        Ok(r) => Ok(r),
        Err(StoreError::ImageNotFound(_)) if is_default(reference) => {
            eprintln!("building the default image {REFERENCE} (probe + busybox)…");
            ensure(store)?;
            Ok(store.resolve(REFERENCE)?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Builds the default image from the static probe (and busybox, if present).
pub fn ensure(store: &Store) -> anyhow::Result<()> {
    let probe = crate::artifacts::find_static("probe")?;
    let staging = store.staging("default-image")?;
    let root = staging.path();
    for d in [
        "bin", "dev", "etc", "proc", "sys", "tmp", "root", "run", "var/tmp", "mnt",
    ] {
        fs::create_dir_all(root.join(d))
            .with_context(|| format!("creating {d} in the default image"))?;
    }
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777))?;
    fs::copy(&probe, root.join("bin/probe"))
        .with_context(|| format!("copying {}", probe.display()))?;
    fs::set_permissions(root.join("bin/probe"), fs::Permissions::from_mode(0o755))?;
    if Path::new(BUSYBOX).is_file() {
        fs::copy(BUSYBOX, root.join("bin/busybox")).context("copying busybox")?;
        let list = std::process::Command::new(BUSYBOX)
            .arg("--list")
            .output()
            .context("listing busybox applets")?;
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            let link = root.join("bin").join(applet);
            if !applet.is_empty() && !applet.contains('/') && !link.exists() {
                symlink("busybox", &link)?;
            }
        }
    }
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )?;
    fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    fs::write(root.join("etc/hostname"), "probe\n")?;
    let opts = BuildOptions {
        cmd: vec!["/bin/probe".into(), "info".into()],
        ..Default::default()
    };
    build(store, root, REFERENCE, &opts)?;
    Ok(())
}
