//! The VMM-overhead rule: parsing `/proc/PID/smaps`, telling guest RAM apart from the VMM's
//! own memory ([`guest_ram`]), and the resulting split ([`VmmMemory`]). Separate because it is
//! ONE rule applied to every VMM (ours, QEMU, Firecracker) and is tested on fixtures.

use super::host_facts::{proc_kb_field, rss_pss};

/// One mapping of `/proc/PID/smaps`: what [`guest_ram`] needs to tell guest RAM apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// First host address.
    pub start: u64,
    /// One past the last host address.
    pub end: u64,
    /// Permissions as smaps prints them, e.g. `rw-p`.
    pub perms: String,
    /// The mapped file, `[heap]`-style name, or empty for anonymous memory.
    pub path: String,
    /// Resident bytes.
    pub rss: u64,
    /// Proportional set size in bytes (shared pages divided among their sharers).
    pub pss: u64,
}

impl Mapping {
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.end - self.start
    }
}

/// Parses the text of `/proc/PID/smaps` into mappings (pure, so it can be tested on a fixture).
pub fn parse_smaps(text: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for l in text.lines() {
        let mut f = l.split_whitespace();
        let first = f.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            if let (Ok(start), Ok(end)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                let perms = f.next().unwrap_or("").to_string();
                // offset, device, inode, then the (possibly space-containing) path.
                let path = f.skip(3).collect::<Vec<_>>().join(" ");
                out.push(Mapping {
                    start,
                    end,
                    perms,
                    path,
                    rss: 0,
                    pss: 0,
                });
                continue;
            }
        }
        if let Some(m) = out.last_mut() {
            if let Some(v) = proc_kb_field(l, "Rss") {
                m.rss = v;
            } else if let Some(v) = proc_kb_field(l, "Pss") {
                m.pss = v;
            }
        }
    }
    out
}

/// The mappings that hold a VMM's guest RAM of `ram_bytes`, as an index range into `maps`:
/// ONE rule for every VMM (ours, QEMU, Firecracker), so "VMM overhead" means the same thing
/// for all of them. Guest RAM is the run of address-contiguous private writable mappings
/// (`rw-p`: anonymous memory, or a private file mapping placed inside guest RAM — our VMM maps
/// the kernel's ELF segments copy-on-write there) whose sizes add up to exactly `ram_bytes`;
/// where several runs qualify, the one holding the largest single mapping. If none adds up
/// (the kernel merged guest RAM with a neighbouring mapping of the same flags), the smallest
/// private writable mapping at least `ram_bytes` large.
pub fn guest_ram(maps: &[Mapping], ram_bytes: u64) -> Option<std::ops::Range<usize>> {
    let rw = |m: &Mapping| m.perms == "rw-p";
    let mut best: Option<(u64, std::ops::Range<usize>)> = None;
    for i in 0..maps.len() {
        if !rw(&maps[i]) {
            continue;
        }
        let (mut sum, mut largest) = (0u64, 0u64);
        for j in i..maps.len() {
            if !rw(&maps[j]) || (j > i && maps[j].start != maps[j - 1].end) {
                break;
            }
            sum += maps[j].size();
            largest = largest.max(maps[j].size());
            if sum == ram_bytes {
                if best.as_ref().is_none_or(|b| largest > b.0) {
                    best = Some((largest, i..j + 1));
                }
                break;
            }
            if sum > ram_bytes {
                break;
            }
        }
    }
    best.map(|b| b.1).or_else(|| {
        maps.iter()
            .enumerate()
            .filter(|(_, m)| rw(m) && m.size() >= ram_bytes)
            .min_by_key(|(_, m)| m.size())
            .map(|(i, _)| i..i + 1)
    })
}

/// A VMM process's memory, split by [`guest_ram`]: the one VMM-overhead measurement every VM
/// subject gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmmMemory {
    /// Total RSS of the VMM process (smaps_rollup), bytes.
    pub rss: u64,
    /// Total PSS, bytes (shared libraries divided among the processes that map them).
    pub pss: u64,
    /// RSS of the guest-RAM mappings: guest pages touched so far, bytes.
    pub guest_rss: u64,
    /// PSS of the guest-RAM mappings, bytes.
    pub guest_pss: u64,
}

impl VmmMemory {
    /// VMM overhead by RSS: everything resident that is not guest RAM.
    pub fn overhead_rss(&self) -> u64 {
        self.rss.saturating_sub(self.guest_rss)
    }
    /// VMM overhead by PSS (shared libraries counted by share, not in full).
    pub fn overhead_pss(&self) -> u64 {
        self.pss.saturating_sub(self.guest_pss)
    }
}

/// Reads `pid`'s smaps_rollup and smaps and splits them with [`guest_ram`] for `ram_bytes` of
/// guest RAM; `None` if the process is gone or no guest-RAM mapping was found.
pub fn vmm_memory(pid: u32, ram_bytes: u64) -> Option<VmmMemory> {
    let (rss, pss) = rss_pss(pid)?;
    let maps = parse_smaps(&std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?);
    let r = guest_ram(&maps, ram_bytes)?;
    Some(VmmMemory {
        rss,
        pss,
        guest_rss: maps[r.clone()].iter().map(|m| m.rss).sum(),
        guest_pss: maps[r].iter().map(|m| m.pss).sum(),
    })
}

/// Prose of the rule in [`guest_ram`] and [`VmmMemory`], carried by every VMM-overhead
/// series so the report states it.
pub const VMM_OVERHEAD_RULE: &str = "guest RAM = the address-contiguous private writable mappings in /proc/PID/smaps whose sizes add up to exactly the guest RAM size (anonymous memory, or a private file mapping inside it: our VMM maps the kernel's ELF segments copy-on-write into guest RAM, QEMU copies the kernel into it), else the smallest private writable mapping at least that large; overhead = process total (smaps_rollup) − those mappings";

#[cfg(test)]
mod tests {
    use super::*;

    /// A mapping header line plus its Size/Rss/Pss lines, as smaps prints them.
    fn entry(
        start: u64,
        size_kb: u64,
        perms: &str,
        path: &str,
        rss_kb: u64,
        pss_kb: u64,
    ) -> String {
        format!(
            "{start:x}-{:x} {perms} 00000000 00:00 0    {path}\nSize:  {size_kb} kB\nRss:  {rss_kb} kB\nPss:  {pss_kb} kB\nVmFlags: rd wr mr mw me dc dd\n",
            start + size_kb * 1024
        )
    }

    const MIB_KB: u64 = 1024;

    #[test]
    fn guest_ram_includes_a_file_mapped_kernel_inside_it() {
        // Our VMM: 256 MiB of anonymous RAM with the kernel's segments mapped over part of it,
        // next to an unrelated anonymous mapping and a shared library.
        let base = 0x7f00_0000_0000u64;
        let mut t = entry(base - 4096 * 4, 16, "rw-p", "", 16, 16);
        t += &entry(base, 16 * MIB_KB, "rw-p", "", 100, 100);
        t += &entry(
            base + (16 << 20),
            20 * MIB_KB,
            "rw-p",
            "/k/vmlinux",
            8000,
            4000,
        );
        t += &entry(base + (36 << 20), 220 * MIB_KB, "rw-p", "", 900, 900);
        t += &entry(
            base + (256 << 20),
            2048,
            "r-xp",
            "/usr/lib/libc.so.6",
            1500,
            150,
        );
        let maps = parse_smaps(&t);
        assert_eq!(maps.len(), 5);
        assert_eq!(maps[2].path, "/k/vmlinux");
        let r = guest_ram(&maps, 256 << 20).unwrap();
        assert_eq!(r, 1..4);
        let rss: u64 = maps[r].iter().map(|m| m.rss).sum();
        assert_eq!(rss, 9000 * 1024);
    }

    #[test]
    fn guest_ram_is_one_anonymous_mapping_for_qemu_and_falls_back_when_merged() {
        let base = 0x7f00_0000_0000u64;
        let mut t = entry(base, 64 * MIB_KB, "rw-p", "", 10, 10);
        t += &entry(base + (80 << 20), 256 * MIB_KB, "rw-p", "", 300, 300);
        t += &entry(base + (336 << 20), 4, "---p", "", 0, 0);
        let maps = parse_smaps(&t);
        assert_eq!(guest_ram(&maps, 256 << 20), Some(1..2));
        // Merged with a neighbour: the smallest private writable mapping that is large enough.
        let t = entry(base, 300 * MIB_KB, "rw-p", "", 10, 10)
            + &entry(base + (400 << 20), 1024 * MIB_KB, "rw-p", "", 1, 1);
        assert_eq!(guest_ram(&parse_smaps(&t), 256 << 20), Some(0..1));
        assert_eq!(guest_ram(&parse_smaps(&t), 2048 << 20), None);
    }

    #[test]
    fn vmm_overhead_subtracts_guest_ram_from_both_rss_and_pss() {
        let m = VmmMemory {
            rss: 100,
            pss: 60,
            guest_rss: 30,
            guest_pss: 30,
        };
        assert_eq!((m.overhead_rss(), m.overhead_pss()), (70, 30));
    }
}
