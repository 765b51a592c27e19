//! The boot GDT: flat 4 GiB segments for the PVH 32-bit protected-mode entry, and the
//! matching `kvm_segment`s for the vCPU's segment registers (KVM does not read the GDT for
//! those; the guest kernel loads its own GDT right away, but the table must agree).

use kvm_bindings::kvm_segment;

/// Builds a GDT entry from its parts (Intel SDM vol. 3, 3.4.5).
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << 32)
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
        | ((limit as u64 & 0x000f_0000) << 32)
        | ((flags as u64 & 0xf0ff) << 40)
}

/// The boot GDT: null, 32-bit code (selector 0x08), 32-bit data (0x10), TSS (0x18).
pub const BOOT_GDT: [u64; 4] = [
    gdt_entry(0, 0, 0),
    gdt_entry(0xc09b, 0, 0xfffff), // code: G, D/B, present, DPL0, execute/read, accessed
    gdt_entry(0xc093, 0, 0xfffff), // data: G, D/B, present, DPL0, read/write, accessed
    gdt_entry(0x008b, 0, 0x67),    // 32-bit busy TSS
];

/// Decodes GDT entry `index` into the `kvm_segment` KVM expects for that selector.
pub fn segment_from_gdt(entry: u64, index: u8) -> kvm_segment {
    let base = ((entry >> 16) & 0xff_ffff) | ((entry >> 32) & 0xff00_0000);
    let limit_raw = ((entry & 0xffff) | ((entry >> 32) & 0xf_0000)) as u32;
    let g = ((entry >> 55) & 1) as u8;
    kvm_segment {
        base,
        // KVM wants the limit in bytes: scale by 4 KiB when G is set.
        limit: if g == 1 {
            (limit_raw << 12) | 0xfff
        } else {
            limit_raw
        },
        selector: u16::from(index) * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present: ((entry >> 47) & 1) as u8,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
        unusable: if (entry >> 47) & 1 == 1 { 0 } else { 1 },
        padding: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_segment_is_flat_32bit() {
        let s = segment_from_gdt(BOOT_GDT[1], 1);
        assert_eq!((s.base, s.limit, s.selector), (0, 0xffff_ffff, 8));
        assert_eq!(
            (s.type_, s.present, s.db, s.l, s.s, s.g),
            (0xb, 1, 1, 0, 1, 1)
        );
    }

    #[test]
    fn tss_is_system_segment() {
        let s = segment_from_gdt(BOOT_GDT[3], 3);
        assert_eq!((s.limit, s.s, s.type_, s.g), (0x67, 0, 0xb, 0));
    }

    #[test]
    fn entry_roundtrip_base() {
        let e = gdt_entry(0xc093, 0x1234_5678, 0xfffff);
        assert_eq!(segment_from_gdt(e, 2).base, 0x1234_5678);
    }
}
