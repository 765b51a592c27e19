//! Zero-copy kernel loading: instead of copying the vmlinux's PT_LOAD segments into guest RAM
//! (Firecracker spends ~15 ms of its 18 ms setup on that copy), the segments are mapped
//! `MAP_PRIVATE | MAP_FIXED` from the file over the matching part of the guest RAM mapping.
//! The guest sees the same bytes; its writes go to private copy-on-write pages, so the file is
//! never modified, and the page cache holding the kernel is shared by every VM on the host.
//! When a segment cannot be mapped (misaligned, or sharing a page with another), the whole
//! kernel is loaded by linux-loader's copying ELF loader instead.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use vm_memory::{GuestAddress, GuestMemoryBackend};

use crate::memory::GuestMem;

/// The host and guest page size the mappings work in.
pub const PAGE_SIZE: u64 = 4096;
const PAGE: u64 = PAGE_SIZE;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// One PT_LOAD segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// File offset.
    pub offset: u64,
    /// Guest-physical load address.
    pub paddr: u64,
    /// Bytes in the file.
    pub filesz: u64,
    /// Bytes in memory (the rest is zero: .bss).
    pub memsz: u64,
}

/// What the ELF headers say: segments and the PVH entry (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelLayout {
    /// PT_LOAD segments in file order.
    pub segments: Vec<Segment>,
    /// The `XEN_ELFNOTE_PHYS32_ENTRY` note's address.
    pub pvh_entry: Option<u64>,
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

/// Parses the ELF64 header, program headers and PVH note of `f`.
pub fn parse(f: &File) -> Option<KernelLayout> {
    let mut eh = [0u8; 64];
    f.read_exact_at(&mut eh, 0).ok()?;
    if &eh[0..4] != b"\x7fELF" || eh[4] != 2 || eh[5] != 1 {
        return None; // not ELF64 little-endian
    }
    let phoff = u64_at(&eh, 32)?;
    let phentsize = u16_at(&eh, 54)? as usize;
    let phnum = u16_at(&eh, 56)? as usize;
    if phentsize < 56 || phnum == 0 || phnum > 64 {
        return None;
    }
    let mut ph = vec![0u8; phentsize * phnum];
    f.read_exact_at(&mut ph, phoff).ok()?;
    let mut layout = KernelLayout {
        segments: Vec::new(),
        pvh_entry: None,
    };
    for i in 0..phnum {
        let p = &ph[i * phentsize..(i + 1) * phentsize];
        let (kind, offset, paddr, filesz, memsz) = (
            u32_at(p, 0)?,
            u64_at(p, 8)?,
            u64_at(p, 24)?,
            u64_at(p, 32)?,
            u64_at(p, 40)?,
        );
        match kind {
            PT_LOAD => layout.segments.push(Segment {
                offset,
                paddr,
                filesz,
                memsz,
            }),
            PT_NOTE if filesz <= 64 * 1024 => {
                let mut notes = vec![0u8; filesz as usize];
                f.read_exact_at(&mut notes, offset).ok()?;
                let mut o = 0usize;
                while o + 12 <= notes.len() {
                    let (namesz, descsz, ty) = (
                        u32_at(&notes, o)? as usize,
                        u32_at(&notes, o + 4)? as usize,
                        u32_at(&notes, o + 8)?,
                    );
                    let name_at = o + 12;
                    let desc_at = name_at + namesz.next_multiple_of(4);
                    if ty == XEN_ELFNOTE_PHYS32_ENTRY
                        && notes.get(name_at..name_at + namesz) == Some(b"Xen\0")
                    {
                        layout.pvh_entry = match descsz {
                            4 => u32_at(&notes, desc_at).map(u64::from),
                            8 => u64_at(&notes, desc_at),
                            _ => None,
                        };
                    }
                    o = desc_at + descsz.next_multiple_of(4);
                }
            }
            _ => {}
        }
    }
    Some(layout)
}

/// True if every segment can be mapped from the file: file offset and address agree modulo
/// the page size, and no two segments touch the same guest page.
pub fn mappable(segs: &[Segment]) -> bool {
    let mut sorted: Vec<_> = segs.iter().filter(|s| s.filesz > 0).collect();
    sorted.sort_by_key(|s| s.paddr);
    let aligned = sorted.iter().all(|s| s.offset % PAGE == s.paddr % PAGE);
    let disjoint = sorted
        .windows(2)
        .all(|w| (w[0].paddr + w[0].memsz).next_multiple_of(PAGE) <= w[1].paddr / PAGE * PAGE);
    aligned && disjoint
}

/// Maps the kernel's segments into guest RAM. Returns `None` (nothing changed) if the
/// layout does not allow it; the caller then copies.
pub fn map_into(mem: &GuestMem, f: &File, layout: &KernelLayout) -> Option<u64> {
    if !mappable(&layout.segments) {
        return None;
    }
    // Check all targets first so that a failure leaves guest RAM untouched.
    for s in &layout.segments {
        if s.filesz > 0 {
            mem.get_slice(
                GuestAddress(s.paddr / PAGE * PAGE),
                (s.paddr % PAGE + s.memsz) as usize,
            )
            .ok()?;
        }
    }
    let mut end = 0;
    for s in &layout.segments {
        end = end.max(s.paddr + s.memsz);
        if s.filesz == 0 {
            continue;
        }
        let page_addr = s.paddr / PAGE * PAGE;
        let lead = s.paddr - page_addr;
        let len = (lead + s.filesz).next_multiple_of(PAGE);
        // On failure the range may be partially file-backed: the caller's copy will
        // overwrite every byte anyway.
        map_file(mem, f, s.offset - lead, GuestAddress(page_addr), len)?;
        // The mapped pages also hold file bytes before and after the segment: the guest
        // must see zeros there, as in untouched RAM (the .bss starts right after).
        let zero = |from: u64, to: u64| -> Option<()> {
            (to > from)
                .then(|| {
                    vm_memory::Bytes::write_slice(
                        mem,
                        &vec![0u8; (to - from) as usize],
                        GuestAddress(from),
                    )
                    .ok()
                })
                .flatten()
                .or(Some(()))
        };
        zero(page_addr, s.paddr)?;
        zero(s.paddr + s.filesz, page_addr + len)?;
    }
    Some(end)
}

/// Maps `len` bytes of `f` from `file_offset` (both page-aligned) copy-on-write over guest
/// RAM at the page-aligned `addr`: the guest reads the file's bytes (zeros past its end) and
/// its writes stay private. `None` if the range is not guest RAM or mmap fails.
pub fn map_file(
    mem: &GuestMem,
    f: &File,
    file_offset: u64,
    addr: GuestAddress,
    len: u64,
) -> Option<()> {
    if !addr.0.is_multiple_of(PAGE) || !file_offset.is_multiple_of(PAGE) {
        return None;
    }
    let len = len.next_multiple_of(PAGE);
    mem.get_slice(addr, len as usize).ok()?;
    let host = mem.get_host_address(addr).ok()?;
    // SAFETY: `host..host+len` lies inside guest RAM's own mapping (checked above), which
    // outlives this mapping's use; MAP_FIXED replaces those pages with a private file mapping
    // of the same size. Nothing else references the replaced (untouched) pages.
    let p = unsafe {
        libc::mmap(
            host.cast(),
            len as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_FIXED,
            f.as_raw_fd(),
            file_offset as i64,
        )
    };
    if p == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: same range; keep guest RAM out of core dumps and children.
    unsafe {
        libc::madvise(host.cast(), len as usize, libc::MADV_DONTDUMP);
        libc::madvise(host.cast(), len as usize, libc::MADV_DONTFORK);
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(offset: u64, paddr: u64, filesz: u64, memsz: u64) -> Segment {
        Segment {
            offset,
            paddr,
            filesz,
            memsz,
        }
    }

    #[test]
    fn mappable_rules() {
        assert!(mappable(&[
            seg(0x200000, 0x1000000, 0x67c194, 0x67c194),
            seg(0xcd4000, 0x18d4000, 0x9e000, 0x144000)
        ]));
        assert!(
            !mappable(&[seg(0x1000, 0x1000800, 0x100, 0x100)]),
            "misaligned"
        );
        assert!(
            !mappable(&[
                seg(0x1000, 0x1000000, 0x100, 0x100),
                seg(0x2100, 0x1000100, 0x100, 0x100)
            ]),
            "shared page"
        );
    }

    /// Builds a tiny ELF with two PT_LOAD segments and a PVH note; maps it; compares bytes.
    #[test]
    fn maps_segments_and_zeroes_bss() {
        let mut img = vec![0u8; 0x4000];
        img[0..4].copy_from_slice(b"\x7fELF");
        img[4] = 2;
        img[5] = 1;
        img[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
        img[54..56].copy_from_slice(&56u16.to_le_bytes());
        img[56..58].copy_from_slice(&3u16.to_le_bytes());
        let ph = |i: usize,
                  img: &mut Vec<u8>,
                  kind: u32,
                  off: u64,
                  paddr: u64,
                  filesz: u64,
                  memsz: u64| {
            let o = 64 + 56 * i;
            img[o..o + 4].copy_from_slice(&kind.to_le_bytes());
            img[o + 8..o + 16].copy_from_slice(&off.to_le_bytes());
            img[o + 24..o + 32].copy_from_slice(&paddr.to_le_bytes());
            img[o + 32..o + 40].copy_from_slice(&filesz.to_le_bytes());
            img[o + 40..o + 48].copy_from_slice(&memsz.to_le_bytes());
        };
        ph(0, &mut img, PT_LOAD, 0x1000, 0x100000, 0x10, 0x10);
        ph(1, &mut img, PT_LOAD, 0x2000, 0x200000, 0x8, 0x2000);
        ph(2, &mut img, PT_NOTE, 0x3000, 0, 20, 20);
        img[0x1000..0x1010].copy_from_slice(b"0123456789abcdef");
        img[0x1010] = 0xee; // beyond filesz of segment 0: must not be visible
        img[0x2000..0x2008].copy_from_slice(b"DATADATA");
        img[0x2008..0x2010].copy_from_slice(b"GARBAGE!");
        img[0x3000..0x3004].copy_from_slice(&4u32.to_le_bytes());
        img[0x3004..0x3008].copy_from_slice(&4u32.to_le_bytes());
        img[0x3008..0x300c].copy_from_slice(&18u32.to_le_bytes());
        img[0x300c..0x3010].copy_from_slice(b"Xen\0");
        img[0x3010..0x3014].copy_from_slice(&0x100008u32.to_le_bytes());
        let path = std::env::temp_dir().join(format!("vcmp-elf-{}", std::process::id()));
        std::fs::write(&path, &img).unwrap();
        let f = File::open(&path).unwrap();
        let layout = parse(&f).unwrap();
        assert_eq!(layout.pvh_entry, Some(0x100008));
        assert_eq!(layout.segments.len(), 2);
        let mem = crate::memory::create(32, false).unwrap();
        let end = map_into(&mem, &f, &layout).unwrap();
        assert_eq!(end, 0x202000);
        let mut b = [0u8; 17];
        vm_memory::Bytes::read_slice(&mem, &mut b, GuestAddress(0x100000)).unwrap();
        assert_eq!(&b[..16], b"0123456789abcdef");
        assert_eq!(b[16], 0, "past filesz (same page) reads zero");
        let mut d = [0u8; 16];
        vm_memory::Bytes::read_slice(&mem, &mut d, GuestAddress(0x200000)).unwrap();
        assert_eq!(&d, b"DATADATA\0\0\0\0\0\0\0\0", "bss zeroed");
        // Guest writes do not reach the file.
        vm_memory::Bytes::write_slice(&mem, b"XX", GuestAddress(0x100000)).unwrap();
        assert_eq!(&std::fs::read(&path).unwrap()[0x1000..0x1002], b"01");
        std::fs::remove_file(&path).unwrap();
    }
}
