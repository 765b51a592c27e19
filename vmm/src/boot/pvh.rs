//! The PVH boot protocol's `hvm_start_info` (xenbits "pvh.txt"): where the kernel finds its
//! command line, its memory map (our e820) and the initramfs, without any BIOS.

use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use super::{
    BootError, BASE_RAM_END, CMDLINE_ADDR, HIGH_RAM_START, MEMMAP_ADDR, MODLIST_ADDR,
    START_INFO_ADDR,
};
use crate::memory::GuestMem;

/// `hvm_start_info.magic` ("xEn3" with the 0x80 bit, per the PVH spec).
pub const START_INFO_MAGIC: u32 = 0x336e_c578;
/// e820 type: usable RAM.
pub const E820_RAM: u32 = 1;
/// e820 type: reserved.
pub const E820_RESERVED: u32 = 2;

/// The guest's memory map: base memory below the MP table, then all RAM from 1 MiB up
/// (split around the MMIO hole if the guest is that large).
pub fn e820_map(mem: &GuestMem) -> Vec<hvm_memmap_table_entry> {
    let mut map = vec![hvm_memmap_table_entry {
        addr: 0,
        size: BASE_RAM_END,
        type_: E820_RAM,
        reserved: 0,
    }];
    for region in mem.iter() {
        let start = region.start_addr().0.max(HIGH_RAM_START);
        let end = region.start_addr().0 + region.len();
        if end > start {
            map.push(hvm_memmap_table_entry {
                addr: start,
                size: end - start,
                type_: E820_RAM,
                reserved: 0,
            });
        }
    }
    map
}

/// Writes start info, memory map and (if any) the initramfs module entry.
pub fn write_start_info(mem: &GuestMem, initrd: Option<(u64, u64)>) -> Result<(), BootError> {
    let map = e820_map(mem);
    for (i, e) in map.iter().enumerate() {
        let at =
            GuestAddress(MEMMAP_ADDR + (i * std::mem::size_of::<hvm_memmap_table_entry>()) as u64);
        mem.write_obj(*e, at)
            .map_err(|source| BootError::GuestWrite {
                what: "memory map",
                source,
            })?;
    }
    let mut info = hvm_start_info {
        magic: START_INFO_MAGIC,
        version: 1,
        cmdline_paddr: CMDLINE_ADDR,
        memmap_paddr: MEMMAP_ADDR,
        memmap_entries: map.len() as u32,
        ..Default::default()
    };
    if let Some((addr, size)) = initrd {
        let module = hvm_modlist_entry {
            paddr: addr,
            size,
            cmdline_paddr: 0,
            reserved: 0,
        };
        mem.write_obj(module, GuestAddress(MODLIST_ADDR))
            .map_err(|source| BootError::GuestWrite {
                what: "module list",
                source,
            })?;
        info.nr_modules = 1;
        info.modlist_paddr = MODLIST_ADDR;
    }
    mem.write_obj(info, GuestAddress(START_INFO_ADDR))
        .map_err(|source| BootError::GuestWrite {
            what: "start info",
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e820_has_base_and_high_ram() {
        let mem = crate::memory::create(64, false).unwrap();
        let m = e820_map(&mem);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].addr, m[0].size), (0, BASE_RAM_END));
        assert_eq!(
            (m[1].addr, m[1].size),
            (HIGH_RAM_START, (64 << 20) - HIGH_RAM_START)
        );
        assert!(m.iter().all(|e| e.type_ == E820_RAM));
    }

    #[test]
    fn start_info_written() {
        let mem = crate::memory::create(64, false).unwrap();
        write_start_info(&mem, Some((0x300_0000, 4096))).unwrap();
        let info: hvm_start_info = mem.read_obj(GuestAddress(START_INFO_ADDR)).unwrap();
        assert_eq!(info.magic, START_INFO_MAGIC);
        assert_eq!((info.nr_modules, info.memmap_entries), (1, 2));
        let module: hvm_modlist_entry = mem.read_obj(GuestAddress(MODLIST_ADDR)).unwrap();
        assert_eq!((module.paddr, module.size), (0x300_0000, 4096));
    }
}
