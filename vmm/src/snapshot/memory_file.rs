//! Guest RAM in a snapshot: one sparse file, the RAM regions back to back (only pages with
//! data are written; the rest stay holes), and the restore's copy-on-write mapping of it.
//!
//! `MAP_PRIVATE` of the file is what makes restored VMs share memory: every VM restored from
//! the same snapshot reads the same page-cache pages, and only a page a guest writes becomes
//! its own (anonymous) copy — the VM analogue of containers sharing image layers.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{
    FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion,
    GuestRegionMmap,
};

use super::SnapshotError;
use crate::memory::GuestMem;

/// Page size of the file's layout and of its checksum.
const PAGE: usize = 4096;

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> SnapshotError {
    move |source| SnapshotError::Io { what, source }
}

/// Feeds one page into the checksum: its index and its bytes. Zero pages are not hashed, so
/// the sum does not depend on which zero pages the file system stores as holes.
fn hash_page(h: &mut crc32fast::Hasher, index: u64, page: &[u8]) {
    h.update(&index.to_le_bytes());
    h.update(page);
}

fn is_zero(page: &[u8]) -> bool {
    page.iter().all(|&b| b == 0)
}

/// Writes guest RAM to `path` (regions back to back, zero pages as holes); returns the
/// file's length and checksum.
pub fn write(mem: &GuestMem, path: &Path) -> Result<(u64, u32), SnapshotError> {
    let f = File::create(path).map_err(io("creating the memory file"))?;
    let mut h = crc32fast::Hasher::new();
    let mut offset = 0u64;
    for region in mem.iter() {
        let len = region.len() as usize;
        // SAFETY: the region is a live mapping of `len` bytes owned by `mem`; the vCPUs are
        // paused, so nothing writes it while we read.
        let bytes = unsafe { std::slice::from_raw_parts(region.as_ptr(), len) };
        let mut run_start: Option<usize> = None;
        for (i, page) in bytes.chunks(PAGE).enumerate() {
            let data = !is_zero(page);
            if data {
                hash_page(&mut h, (offset as usize / PAGE + i) as u64, page);
            }
            match (data, run_start) {
                (true, None) => run_start = Some(i * PAGE),
                (false, Some(s)) => {
                    f.write_all_at(&bytes[s..i * PAGE], offset + s as u64)
                        .map_err(io("writing the memory file"))?;
                    run_start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = run_start {
            f.write_all_at(&bytes[s..], offset + s as u64)
                .map_err(io("writing the memory file"))?;
        }
        offset += len as u64;
    }
    f.set_len(offset).map_err(io("sizing the memory file"))?;
    f.sync_all().map_err(io("syncing the memory file"))?;
    Ok((offset, h.finalize()))
}

/// The checksum of a memory file as [`write`] computed it: reads only the file's data
/// extents (`SEEK_DATA`/`SEEK_HOLE`), so a mostly empty guest costs what it holds.
pub fn checksum(path: &Path) -> Result<(u64, u32), SnapshotError> {
    let mut f = File::open(path).map_err(io("opening the memory file"))?;
    let len = f.metadata().map_err(io("reading the memory file"))?.len();
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    while pos < len {
        let start = match seek(&f, pos as i64, libc::SEEK_DATA) {
            Some(s) => s,
            None => break, // only a hole is left
        };
        let end = seek(&f, start as i64, libc::SEEK_HOLE)
            .unwrap_or(len)
            .min(len);
        f.seek(SeekFrom::Start(start))
            .map_err(io("reading the memory file"))?;
        let mut at = start;
        while at < end {
            let n = ((end - at) as usize).min(buf.len());
            f.read_exact_at(&mut buf[..n], at)
                .map_err(io("reading the memory file"))?;
            // Extents start and end on page boundaries (file systems allocate whole blocks).
            for (i, page) in buf[..n].chunks(PAGE).enumerate() {
                if !is_zero(page) {
                    hash_page(&mut h, at / PAGE as u64 + i as u64, page);
                }
            }
            at += n as u64;
        }
        pos = end;
    }
    Ok((len, h.finalize()))
}

/// lseek with SEEK_DATA/SEEK_HOLE; `None` past the last data (ENXIO).
fn seek(f: &File, from: i64, whence: i32) -> Option<u64> {
    // SAFETY: lseek on an open fd has no memory effects.
    let r = unsafe { libc::lseek(f.as_raw_fd(), from, whence) };
    (r >= 0).then_some(r as u64)
}

/// Maps the memory file as guest RAM laid out as `ranges` (the same layout it was saved
/// from), private and copy-on-write: reads share the page cache, writes stay in this VM.
pub fn map(path: &Path, ranges: &[(GuestAddress, usize)]) -> Result<GuestMem, SnapshotError> {
    let file = Arc::new(
        std::fs::OpenOptions::new()
            .read(true)
            .open(path)
            .map_err(io("opening the memory file"))?,
    );
    let want: u64 = ranges.iter().map(|&(_, l)| l as u64).sum();
    let have = file
        .metadata()
        .map_err(io("reading the memory file"))?
        .len();
    if have != want {
        return Err(SnapshotError::Corrupt(format!(
            "the memory file holds {have} bytes, the VM has {want}"
        )));
    }
    let mut offset = 0u64;
    let mut regions = Vec::with_capacity(ranges.len());
    for &(addr, len) in ranges {
        let mapping = MmapRegionBuilder::new_with_bitmap(len, ())
            .with_file_offset(FileOffset::from_arc(file.clone(), offset))
            .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
            .with_mmap_flags(libc::MAP_PRIVATE | libc::MAP_NORESERVE)
            .build()
            .map_err(|e| SnapshotError::Map(e.to_string()))?;
        // SAFETY: madvise on the mapping just created; it only changes paging behaviour.
        unsafe {
            libc::madvise(mapping.as_ptr().cast(), len, libc::MADV_DONTDUMP);
            libc::madvise(mapping.as_ptr().cast(), len, libc::MADV_DONTFORK);
        }
        regions.push(
            GuestRegionMmap::new(mapping, addr)
                .ok_or_else(|| SnapshotError::Map("region overflows the address space".into()))?,
        );
        offset += len as u64;
    }
    GuestMemoryMmap::from_regions(regions).map_err(|e| SnapshotError::Map(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Bytes;

    #[test]
    fn sparse_write_map_and_checksum_round_trip() {
        let dir = std::env::temp_dir().join(format!("vcmp-memfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("memory");
        let mem = crate::memory::create(32, false).unwrap();
        mem.write_slice(b"kernel", GuestAddress(0x1000)).unwrap();
        mem.write_slice(&[7u8; 8192], GuestAddress(0x10_0000))
            .unwrap();
        let (len, sum) = write(&mem, &path).unwrap();
        assert_eq!(len, 32 << 20);
        // Sparse: three pages of data, the rest holes.
        use std::os::unix::fs::MetadataExt;
        assert!(std::fs::metadata(&path).unwrap().blocks() * 512 < 1 << 20);
        assert_eq!(checksum(&path).unwrap(), (len, sum));

        let ranges = crate::memory::ram_ranges(32).unwrap();
        let restored = map(&path, &ranges).unwrap();
        let mut b = [0u8; 6];
        restored.read_slice(&mut b, GuestAddress(0x1000)).unwrap();
        assert_eq!(&b, b"kernel");
        // Copy-on-write: a guest write does not reach the file.
        restored
            .write_slice(b"KERNEL", GuestAddress(0x1000))
            .unwrap();
        assert_eq!(checksum(&path).unwrap(), (len, sum));

        // One flipped bit anywhere, a hole included, changes the checksum.
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[1], 0x20_0000).unwrap();
        assert_ne!(checksum(&path).unwrap().1, sum);
        // A truncated file is refused by the mapping.
        f.set_len(len - 4096).unwrap();
        assert!(matches!(
            map(&path, &ranges),
            Err(SnapshotError::Corrupt(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
