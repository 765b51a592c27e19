//! Getting the guest kernel to its first instruction: load the ELF vmlinux, write the PVH
//! start info (command line, e820 memory map, initramfs module), the MP table for SMP, a GDT,
//! and the vCPU registers for the PVH 32-bit protected-mode entry.

pub mod elf_map;
pub mod gdt;
pub mod mptable;
pub mod pvh;
pub mod regs;

use std::fs::File;
use std::path::Path;

use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::KernelLoader;
use vm_memory::{Bytes, GuestAddress};

use crate::initramfs::Initramfs;
use crate::memory::GuestMem;

/// Guest address of the boot GDT.
pub const GDT_ADDR: u64 = 0x500;
/// Guest address of the PVH `hvm_start_info` structure (passed in %ebx).
pub const START_INFO_ADDR: u64 = 0x6000;
/// Guest address of the PVH module list (one entry: the initramfs).
pub const MODLIST_ADDR: u64 = 0x6040;
/// Guest address of the e820-style memory map referenced by the start info.
pub const MEMMAP_ADDR: u64 = 0x7000;
/// Guest address of the kernel command line.
pub const CMDLINE_ADDR: u64 = 0x20000;
/// Largest command line we pass (the x86 kernel accepts 2048 bytes by default).
pub const CMDLINE_MAX: usize = 2048;
/// Where the MP floating pointer and table go: the last KiB of base memory, which the
/// kernel scans for it ("639K").
pub const MPTABLE_ADDR: u64 = 0x9fc00;
/// End of the usable base memory reported to the guest (the MP table sits above).
pub const BASE_RAM_END: u64 = MPTABLE_ADDR;
/// Start of high memory: the kernel is linked to load at 16 MiB.
pub const HIGH_RAM_START: u64 = 0x10_0000;

/// Errors while loading the kernel and writing boot structures.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The kernel file cannot be opened.
    #[error("cannot open guest kernel {path}: {source}")]
    OpenKernel {
        /// Kernel path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// linux-loader rejected the kernel image.
    #[error(
        "cannot load guest kernel {path} (an ELF vmlinux with a PVH note is needed): {source}"
    )]
    LoadKernel {
        /// Kernel path.
        path: String,
        /// The loader error.
        source: linux_loader::loader::Error,
    },
    /// The kernel has no PVH entry note.
    #[error("guest kernel {0} has no PVH entry point (build it with CONFIG_PVH=y)")]
    NoPvh(String),
    /// Command line too long or invalid.
    #[error("kernel command line is too long ({0} bytes, max {CMDLINE_MAX})")]
    CmdlineTooLong(usize),
    /// The cached initramfs archive cannot be opened or read.
    #[error("cannot read the initramfs archive {path}: {source}")]
    OpenInitrd {
        /// Archive path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The initramfs does not fit below the MMIO hole next to the kernel.
    #[error("initramfs of {0} bytes does not fit into guest RAM")]
    InitrdTooBig(usize),
    /// Writing a boot structure into guest memory failed.
    #[error("cannot write {what} into guest memory: {source}")]
    GuestWrite {
        /// Which structure.
        what: &'static str,
        /// The vm-memory error.
        source: vm_memory::GuestMemoryError,
    },
    /// MP table construction failed.
    #[error(transparent)]
    MpTable(#[from] mptable::MpTableError),
}

/// What the vCPU setup needs to know after loading.
#[derive(Debug, Clone, Copy)]
pub struct BootInfo {
    /// Guest-physical PVH entry point (32-bit protected mode).
    pub pvh_entry: u64,
    /// End of the loaded kernel image.
    pub kernel_end: u64,
}

/// Loads the ELF vmlinux at its physical load addresses and returns its PVH entry point:
/// mapped from the file when possible ([`elf_map`]), else copied by linux-loader.
pub fn load_kernel(mem: &GuestMem, path: &Path) -> Result<BootInfo, BootError> {
    let p = path.display().to_string();
    let mut f = File::open(path).map_err(|source| BootError::OpenKernel {
        path: p.clone(),
        source,
    })?;
    if let Some(layout) = elf_map::parse(&f) {
        if let Some(entry) = layout.pvh_entry {
            if let Some(end) = elf_map::map_into(mem, &f, &layout) {
                return Ok(BootInfo {
                    pvh_entry: entry,
                    kernel_end: end,
                });
            }
        }
    }
    let res =
        Elf::load(mem, None, &mut f, Some(GuestAddress(HIGH_RAM_START))).map_err(|source| {
            BootError::LoadKernel {
                path: p.clone(),
                source,
            }
        })?;
    match res.pvh_boot_cap {
        PvhBootCapability::PvhEntryPresent(entry) => Ok(BootInfo {
            pvh_entry: entry.0,
            kernel_end: res.kernel_end,
        }),
        _ => Err(BootError::NoPvh(p)),
    }
}

/// Writes the NUL-terminated command line to [`CMDLINE_ADDR`].
pub fn write_cmdline(mem: &GuestMem, cmdline: &str) -> Result<(), BootError> {
    if cmdline.len() + 1 > CMDLINE_MAX {
        return Err(BootError::CmdlineTooLong(cmdline.len()));
    }
    let mut bytes = cmdline.as_bytes().to_vec();
    bytes.push(0);
    mem.write_slice(&bytes, GuestAddress(CMDLINE_ADDR))
        .map_err(|source| BootError::GuestWrite {
            what: "command line",
            source,
        })
}

/// Places the initramfs page-aligned at the top of low RAM (where the kernel looks last for
/// free memory): its base archive mapped from its file ([`elf_map::map_file`], read and
/// copied if that fails), then the tail bytes at the next page. Returns (guest address,
/// length) for the PVH module entry, or `None` for an empty initramfs (boot without one).
pub fn load_initrd(
    mem: &GuestMem,
    info: &BootInfo,
    initrd: &Initramfs,
) -> Result<Option<(u64, u64)>, BootError> {
    if initrd.base.is_none() && initrd.tail.is_empty() {
        return Ok(None);
    }
    let base = initrd
        .base
        .as_deref()
        .map(|p| {
            let err = |source| BootError::OpenInitrd {
                path: p.display().to_string(),
                source,
            };
            let f = File::open(p).map_err(err)?;
            let len = f.metadata().map_err(err)?.len();
            Ok::<_, BootError>((p, f, len.next_multiple_of(elf_map::PAGE_SIZE)))
        })
        .transpose()?;
    let base_len = base.as_ref().map_or(0, |b| b.2);
    let len = base_len + initrd.tail.len() as u64;
    let top = crate::memory::low_ram_end(mem);
    let addr = top
        .checked_sub(len)
        .map(|a| a & !(elf_map::PAGE_SIZE - 1))
        .filter(|&a| a >= info.kernel_end)
        .ok_or(BootError::InitrdTooBig(len as usize))?;
    let write = |bytes: &[u8], at: u64| {
        mem.write_slice(bytes, GuestAddress(at))
            .map_err(|source| BootError::GuestWrite {
                what: "initramfs",
                source,
            })
    };
    if let Some((p, f, base_len)) = &base {
        if elf_map::map_file(mem, f, 0, GuestAddress(addr), *base_len).is_none() {
            let bytes = std::fs::read(p).map_err(|source| BootError::OpenInitrd {
                path: p.display().to_string(),
                source,
            })?;
            write(&bytes, addr)?;
        }
    }
    write(&initrd.tail, addr + base_len)?;
    Ok(Some((addr, len)))
}
