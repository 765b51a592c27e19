//! Intel MultiProcessor Specification 1.4 table: without ACPI this is how the guest kernel
//! learns how many CPUs there are, their local APIC ids and where the I/O APIC is.

use vm_memory::{Bytes, GuestAddress};

use crate::memory::GuestMem;

/// Local APIC MMIO base (architectural default).
pub const LAPIC_ADDR: u32 = 0xfee0_0000;
/// I/O APIC MMIO base (KVM's in-kernel I/O APIC).
pub const IOAPIC_ADDR: u32 = 0xfec0_0000;
/// Number of I/O APIC pins KVM emulates.
pub const IOAPIC_PINS: u8 = 24;
/// Upper bound on vCPUs we describe (the table must stay small and the APIC ids unique).
pub const MAX_CPUS: u8 = 64;

/// Errors building the MP table.
#[derive(Debug, thiserror::Error)]
pub enum MpTableError {
    /// Zero or too many CPUs.
    #[error("--cpus must be between 1 and {MAX_CPUS}, got {0}")]
    CpuCount(u8),
    /// Writing into guest memory failed.
    #[error("cannot write the MP table into guest memory: {0}")]
    Write(vm_memory::GuestMemoryError),
}

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

/// Builds floating pointer + configuration table as they are laid out at `addr`.
pub fn build(addr: u32, cpus: u8) -> Result<Vec<u8>, MpTableError> {
    if cpus == 0 || cpus > MAX_CPUS {
        return Err(MpTableError::CpuCount(cpus));
    }
    let ioapic_id = cpus; // APIC ids 0..cpus-1 are the CPUs.
    let mut entries: Vec<u8> = Vec::new();
    let mut count: u16 = 0;
    for id in 0..cpus {
        entries.extend_from_slice(&[0, id, 0x14, if id == 0 { 3 } else { 1 }]); // processor, enabled(+BSP)
        entries.extend_from_slice(&0x600u32.to_le_bytes()); // signature: family 6
        entries.extend_from_slice(&0x201u32.to_le_bytes()); // features: FPU, APIC
        entries.extend_from_slice(&[0; 8]);
        count += 1;
    }
    entries.extend_from_slice(&[1, 0]); // bus 0
    entries.extend_from_slice(b"ISA   ");
    count += 1;
    entries.extend_from_slice(&[2, ioapic_id, 0x11, 1]); // I/O APIC, enabled
    entries.extend_from_slice(&IOAPIC_ADDR.to_le_bytes());
    count += 1;
    for pin in 0..IOAPIC_PINS {
        // INT, conforming polarity/trigger, ISA bus irq `pin` -> I/O APIC pin `pin`.
        entries.extend_from_slice(&[3, 0, 0, 0, 0, pin, ioapic_id, pin]);
        count += 1;
    }
    // ExtINT on LINT0, NMI on LINT1 of every local APIC.
    entries.extend_from_slice(&[4, 3, 0, 0, 0, 0, 0xff, 0]);
    entries.extend_from_slice(&[4, 1, 0, 0, 0, 0, 0xff, 1]);
    count += 2;

    let mut table = Vec::with_capacity(44 + entries.len());
    table.extend_from_slice(b"PCMP");
    table.extend_from_slice(&((44 + entries.len()) as u16).to_le_bytes());
    table.push(4); // spec revision 1.4
    table.push(0); // checksum, below
    table.extend_from_slice(b"VCOMPARE"); // OEM id
    table.extend_from_slice(b"MICROVM     "); // product id
    table.extend_from_slice(&0u32.to_le_bytes()); // OEM table
    table.extend_from_slice(&0u16.to_le_bytes());
    table.extend_from_slice(&count.to_le_bytes());
    table.extend_from_slice(&LAPIC_ADDR.to_le_bytes());
    table.extend_from_slice(&[0, 0, 0, 0]); // no extended table
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    let mut fp = Vec::with_capacity(16);
    fp.extend_from_slice(b"_MP_");
    fp.extend_from_slice(&(addr + 16).to_le_bytes());
    fp.extend_from_slice(&[1, 4, 0, 0, 0, 0, 0, 0]);
    fp[10] = checksum(&fp);
    fp.extend_from_slice(&table);
    Ok(fp)
}

/// Writes the MP table for `cpus` vCPUs at [`super::MPTABLE_ADDR`].
pub fn write(mem: &GuestMem, cpus: u8) -> Result<(), MpTableError> {
    let bytes = build(super::MPTABLE_ADDR as u32, cpus)?;
    mem.write_slice(&bytes, GuestAddress(super::MPTABLE_ADDR))
        .map_err(MpTableError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    #[test]
    fn checksums_and_counts() {
        let b = build(0x9fc00, 4).unwrap();
        assert_eq!(&b[0..4], b"_MP_");
        assert_eq!(sum(&b[0..16]), 0);
        assert_eq!(u32::from_le_bytes(b[4..8].try_into().unwrap()), 0x9fc10);
        let t = &b[16..];
        assert_eq!(&t[0..4], b"PCMP");
        let len = u16::from_le_bytes([t[4], t[5]]) as usize;
        assert_eq!(len, t.len());
        assert_eq!(sum(t), 0);
        let count = u16::from_le_bytes([t[34], t[35]]);
        assert_eq!(count, 4 + 1 + 1 + 24 + 2);
        // first processor is the enabled BSP with APIC id 0; the I/O APIC id follows the CPUs
        assert_eq!(&t[44..48], &[0, 0, 0x14, 3]);
        assert_eq!(t[44 + 20 * 3 + 3], 1);
        let io = 44 + 20 * 4 + 8;
        assert_eq!(&t[io..io + 4], &[2, 4, 0x11, 1]);
    }

    #[test]
    fn rejects_zero_and_too_many() {
        assert!(build(0x9fc00, 0).is_err());
        assert!(build(0x9fc00, MAX_CPUS + 1).is_err());
        assert!(build(0x9fc00, MAX_CPUS).unwrap().len() < 0x10_0000 - 0x9fc00);
    }
}
