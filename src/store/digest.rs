//! SHA-256 content addressing: every blob is checked against its descriptor's size and digest
//! while it streams, so corrupt or truncated content is caught before anything is committed.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::error::{IoContext, Result, StoreError};

/// Validates `sha256:<64 lowercase hex>` and returns the hex part.
pub fn hex_of(digest: &str) -> Result<&str> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| StoreError::BadDigest(digest.into()))?;
    if hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(hex)
    } else {
        Err(StoreError::BadDigest(digest.into()))
    }
}

/// `sha256:<hex>` of a byte slice.
pub fn of_bytes(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A reader that hashes and counts what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
    /// Bytes read so far and their `sha256:` digest.
    pub fn finish(self) -> (u64, String) {
        (
            self.count,
            format!("sha256:{}", hex::encode(self.hasher.finalize())),
        )
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Checks a stream's size and digest against what the descriptor promised.
pub fn check(
    digest: &str,
    expected_size: Option<u64>,
    actual_size: u64,
    actual: &str,
) -> Result<()> {
    if let Some(expected) = expected_size {
        if expected != actual_size {
            return Err(StoreError::SizeMismatch {
                digest: digest.into(),
                expected,
                actual: actual_size,
            });
        }
    }
    if actual != digest {
        return Err(StoreError::DigestMismatch {
            digest: digest.into(),
            actual: actual.into(),
        });
    }
    Ok(())
}

/// Copies `src` to `dst` while verifying size and digest; `dst` is removed on mismatch.
pub fn copy_verified(src: &Path, dst: &Path, digest: &str, size: Option<u64>) -> Result<()> {
    let f = match File::open(src) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(StoreError::MissingBlob {
                digest: digest.into(),
            })
        }
        Err(e) => return Err(e).ctx(|| format!("opening {}", src.display())),
    };
    let mut reader = HashingReader::new(f);
    let mut out = File::create(dst).ctx(|| format!("creating {}", dst.display()))?;
    io::copy(&mut reader, &mut out).ctx(|| format!("copying {}", src.display()))?;
    out.flush().ctx(|| format!("writing {}", dst.display()))?;
    let (n, actual) = reader.finish();
    check(digest, size, n, &actual).inspect_err(|_| {
        let _ = std::fs::remove_file(dst);
    })
}
