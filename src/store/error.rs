//! Errors of the image store. Each message is one sentence naming the cause and the fix,
//! because these are what a user sees after `image import` or `run` fails.

use std::path::PathBuf;

/// Everything that can go wrong resolving, importing, building or removing an image.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} does not exist; check the path to the image")]
    SourceMissing(PathBuf),
    #[error("{0} is not an OCI image layout, an OCI archive or a `docker save` tarball; export the image in one of those formats")]
    UnknownFormat(PathBuf),
    #[error(
        "blob {digest} is missing from the image; the export is incomplete, export the image again"
    )]
    MissingBlob { digest: String },
    #[error("blob {digest} does not match its digest (content hashes to {actual}); the image is corrupt, export it again")]
    DigestMismatch { digest: String, actual: String },
    #[error("blob {digest} is truncated or padded ({actual} bytes, descriptor says {expected}); the image is corrupt, export it again")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("layer {digest} unpacks to content whose digest {actual} differs from the config's diff_id {expected}; the image is corrupt, export it again")]
    DiffIdMismatch {
        digest: String,
        expected: String,
        actual: String,
    },
    #[error("unsupported media type `{media_type}` for {what}; vcompare imports OCI and Docker v2 images with tar, gzip or zstd layers")]
    UnknownMediaType { media_type: String, what: String },
    #[error(
        "{what} is not valid JSON for its type ({source}); the image is corrupt, export it again"
    )]
    MalformedJson {
        what: String,
        source: serde_json::Error,
    },
    #[error("invalid digest `{0}`; digests look like sha256:<64 hex>")]
    BadDigest(String),
    #[error("layer {layer} has the entry `{entry}`, which points outside the image's root filesystem; the layer is corrupt or malicious and was not imported")]
    UnsafeEntry { layer: String, entry: String },
    #[error("layer {layer} writes `{entry}` through a symlink that leads outside the image's root filesystem; the layer is corrupt or malicious and was not imported")]
    SymlinkEscape { layer: String, entry: String },
    #[error("layer {layer} is not a readable tar stream ({source}); the image is corrupt, export it again")]
    BadLayer {
        layer: String,
        source: std::io::Error,
    },
    #[error("the image has no manifest for linux/amd64; export an amd64 image")]
    NoManifest,
    #[error("image `{0}` not found; `vcompare image ls` lists images and `vcompare image import` adds one")]
    ImageNotFound(String),
    #[error("image reference `{0}` matches several images ({1}); use a longer id")]
    Ambiguous(String, String),
    #[error(
        "invalid image reference `{0}`; use NAME[:TAG] with lowercase letters, digits and . _ - /"
    )]
    BadReference(String),
    #[error("image {reference} is used by instance(s) {instances}; remove them first or use `image rm -f`")]
    InUse {
        reference: String,
        instances: String,
    },
    /// `-f` removes an image under exited instances, never under a running one: its files are
    /// the running container's root filesystem (Docker refuses this too).
    #[error("image {reference} is used by running instance(s) {instances}; stop them first (`image rm -f` does not remove an image under a running instance)")]
    InUseRunning {
        reference: String,
        instances: String,
    },
    #[error("{0} contains vcompare's own data directory, so the image would contain itself; build from a directory outside it")]
    BuildContainsStore(PathBuf),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

/// Shorthand result type for the store.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Adds a human context to an I/O error (what was being done to which path).
pub trait IoContext<T> {
    /// Wraps the error with `context`.
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| StoreError::Io {
            context: context(),
            source,
        })
    }
}
