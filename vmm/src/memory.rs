//! Guest RAM: anonymous mmap'd regions (vm-memory), split around the 32-bit MMIO hole, and the
//! guest-physical layout every other module agrees on.

use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// Start of the 32-bit MMIO hole (virtio-mmio devices live here); RAM skips it.
pub const MMIO_HOLE_START: u64 = 0xc000_0000;
/// End of the MMIO hole (4 GiB): RAM above the hole continues here.
pub const MMIO_HOLE_END: u64 = 0x1_0000_0000;
/// Base address of the first virtio-mmio device window.
pub const VIRTIO_MMIO_BASE: u64 = 0xd000_0000;
/// Size of one virtio-mmio device window.
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;

/// Errors creating or preparing guest memory.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The size is zero or not a whole number of MiB that fits the address space.
    #[error("invalid guest memory size {0} MiB")]
    InvalidSize(u64),
    /// mmap of guest RAM failed.
    #[error("cannot map {mib} MiB of guest RAM: {source}")]
    Mmap {
        /// Requested size.
        mib: u64,
        /// The vm-memory error.
        source: vm_memory::mmap::FromRangesError,
    },
    /// `--prealloc`: faulting in guest RAM failed (usually: not enough host memory).
    #[error("cannot pre-fault guest RAM: {0}")]
    Prealloc(std::io::Error),
}

/// Guest RAM as the VMM sees it.
pub type GuestMem = GuestMemoryMmap<()>;

/// The (guest address, size) ranges of RAM for `mib` MiB, skipping the MMIO hole.
pub fn ram_ranges(mib: u64) -> Result<Vec<(GuestAddress, usize)>, MemoryError> {
    let bytes = mib
        .checked_mul(1 << 20)
        .ok_or(MemoryError::InvalidSize(mib))?;
    if mib < 32 || bytes > (1u64 << 46) {
        return Err(MemoryError::InvalidSize(mib));
    }
    if bytes <= MMIO_HOLE_START {
        Ok(vec![(GuestAddress(0), bytes as usize)])
    } else {
        Ok(vec![
            (GuestAddress(0), MMIO_HOLE_START as usize),
            (
                GuestAddress(MMIO_HOLE_END),
                (bytes - MMIO_HOLE_START) as usize,
            ),
        ])
    }
}

/// Maps `mib` MiB of guest RAM; with `prealloc`, every page is faulted in now (the cost of
/// "exclusive RAM" made visible), otherwise the host allocates lazily on first guest touch.
pub fn create(mib: u64, prealloc: bool) -> Result<GuestMem, MemoryError> {
    let ranges = ram_ranges(mib)?;
    let mem = GuestMemoryMmap::from_ranges(&ranges)
        .map_err(|source| MemoryError::Mmap { mib, source })?;
    for region in mem.iter() {
        let host = region.as_ptr();
        let len = region.len() as usize;
        // SAFETY: `host..host+len` is the mapping vm-memory just created and owns for `mem`'s
        // lifetime; madvise only changes paging behaviour, never the mapping itself.
        unsafe {
            // Guest RAM is never worth a core dump and must not be inherited by helpers we fork.
            libc::madvise(host.cast(), len, libc::MADV_DONTDUMP);
            libc::madvise(host.cast(), len, libc::MADV_DONTFORK);
        }
        if prealloc {
            // SAFETY: as above; MADV_POPULATE_WRITE faults the pages in, as a guest write would.
            let rc = unsafe {
                libc::madvise(host.cast(), len, 23 /* MADV_POPULATE_WRITE */)
            };
            if rc != 0 {
                return Err(MemoryError::Prealloc(std::io::Error::last_os_error()));
            }
        }
    }
    Ok(mem)
}

/// The end of the RAM below the MMIO hole: initramfs and the kernel must fit below it.
pub fn low_ram_end(mem: &GuestMem) -> u64 {
    mem.iter()
        .map(|r| r.start_addr().0 + r.len())
        .filter(|&end| end <= MMIO_HOLE_START)
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_ram_is_one_range() {
        assert_eq!(ram_ranges(256).unwrap(), vec![(GuestAddress(0), 256 << 20)]);
    }

    #[test]
    fn large_ram_skips_hole() {
        let r = ram_ranges(4096).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0], (GuestAddress(0), MMIO_HOLE_START as usize));
        assert_eq!(r[1].0, GuestAddress(MMIO_HOLE_END));
        assert_eq!(r[0].1 + r[1].1, 4096 << 20);
    }

    #[test]
    fn rejects_tiny_and_zero() {
        assert!(ram_ranges(0).is_err());
        assert!(ram_ranges(8).is_err());
    }

    /// (resident pages, all pages) of guest RAM's host mappings, from mincore(2).
    fn resident_pages(mem: &GuestMem) -> (usize, usize) {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let (mut resident, mut all) = (0, 0);
        for region in mem.iter() {
            let len = region.len() as usize;
            let mut vec = vec![0u8; len.div_ceil(page)];
            // SAFETY: the range is the page-aligned mapping `mem` owns; `vec` has one byte
            // per page of it, as mincore requires.
            let rc = unsafe { libc::mincore(region.as_ptr().cast(), len, vec.as_mut_ptr()) };
            assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
            resident += vec.iter().filter(|&&b| b & 1 != 0).count();
            all += vec.len();
        }
        (resident, all)
    }

    #[test]
    fn create_and_prealloc() {
        let m = create(32, true).unwrap();
        assert_eq!(low_ram_end(&m), 32 << 20);
        // --prealloc faulted every page of guest RAM in before the guest ran.
        let (resident, all) = resident_pages(&m);
        assert_eq!(all, (32 << 20) / 4096);
        assert_eq!(
            resident, all,
            "every guest RAM page is resident after prealloc"
        );
    }

    #[test]
    fn without_prealloc_ram_is_allocated_on_first_touch() {
        // The contrast that makes the prealloc check meaningful: untouched anonymous guest
        // RAM has no host pages yet.
        let m = create(32, false).unwrap();
        assert_eq!(resident_pages(&m), (0, (32 << 20) / 4096));
    }
}
