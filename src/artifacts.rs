//! Finds the static helper binaries (`probe` for the default image, `vcompare-init` for the
//! guest) that `scripts/build-static.sh` builds with `+crt-static`. They cannot be built by
//! cargo's normal workspace build (static linking must not leak into proc-macros), so they
//! live in a separate target subdirectory next to the `vcompare` binary's own.

use std::path::PathBuf;

/// Errors locating a static artifact.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The binary was not built yet.
    #[error("the static `{name}` binary was not found (looked in {looked}); build it with `scripts/build-static.sh`")]
    Missing { name: String, looked: String },
}

/// Where the static binaries are looked for, in order: `$VCOMPARE_<NAME>` (upper case, `-`
/// as `_`), `<exe dir>/../static/x86_64-unknown-linux-gnu/release/<name>` (the cargo layout
/// used by the build script), `<exe dir>/<name>-static`, `/usr/local/lib/vcompare/<name>`.
pub fn candidates(name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let var = format!("VCOMPARE_{}", name.to_uppercase().replace('-', "_"));
    if let Some(p) = std::env::var_os(&var) {
        out.push(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            // target/{debug,release}/vcompare, or target/debug/deps/<test> for unit tests.
            for base in [dir, dir.parent().unwrap_or(dir)] {
                out.push(
                    base.join("../static/x86_64-unknown-linux-gnu/release")
                        .join(name),
                );
            }
            out.push(dir.join(format!("{name}-static")));
        }
    }
    out.push(PathBuf::from("/usr/local/lib/vcompare").join(name));
    out
}

/// The first existing candidate for `name`.
pub fn find_static(name: &str) -> Result<PathBuf, ArtifactError> {
    let c = candidates(name);
    c.iter()
        .find(|p| p.is_file())
        .map(|p| p.canonicalize().unwrap_or_else(|_| p.clone()))
        .ok_or_else(|| ArtifactError::Missing {
            name: name.to_string(),
            looked: c
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}
