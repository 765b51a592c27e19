//! In-memory workloads timed from inside: CPU, syscalls, page faults, sleep, allocation.
//!
//! Each prints one JSON line with `workload`, its size and `elapsed_ns` measured with the
//! monotonic clock, so host, container and microVM numbers are directly comparable.

use crate::cli::{emit, sys_err, Args, Failure, Outcome};
use crate::json::Object;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Nanoseconds since `t`, saturating (a u64 of ns covers ~584 years).
pub fn elapsed_ns(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// One step of a splitmix64-style mixer: cheap, deterministic, and impossible to fold away.
pub fn mix(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Runs the fixed integer workload for `n` iterations and returns its checksum.
pub fn cpu_checksum(n: u64) -> u64 {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut acc = 0u64;
    for _ in 0..black_box(n) {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        acc = acc.rotate_left(5) ^ mix(state);
    }
    acc
}

/// `probe cpu N`: fixed compute; the checksum is printed so the loop cannot be elided and
/// runs in different modes can be checked for identical results.
pub fn cpu(args: &[String]) -> Outcome {
    let a = Args::new("cpu N", args);
    a.count(1, 1)?;
    let n = a.u64(0, "N")?;
    let t = Instant::now();
    let sum = cpu_checksum(n);
    let ns = elapsed_ns(t);
    emit(
        &Object::new()
            .str("workload", "cpu")
            .u64("n", n)
            .u64("elapsed_ns", ns)
            .f64("ns_per_iter", per(ns, n))
            .str("result", &format!("{sum:016x}"))
            .finish(),
    )
}

/// `probe syscalls N`: N raw `getppid` syscalls (bypassing any libc caching), which
/// exposes syscall entry cost such as seccomp filters or virtualization overhead.
pub fn syscalls(args: &[String]) -> Outcome {
    let a = Args::new("syscalls N", args);
    a.count(1, 1)?;
    let n = a.u64(0, "N")?;
    let mut acc: libc::c_long = 0;
    let t = Instant::now();
    for _ in 0..n {
        // SAFETY: getppid takes no arguments and cannot fail.
        acc = acc.wrapping_add(unsafe { libc::syscall(libc::SYS_getppid) });
    }
    let ns = elapsed_ns(t);
    black_box(acc);
    emit(
        &Object::new()
            .str("workload", "syscalls")
            .u64("n", n)
            .u64("elapsed_ns", ns)
            .f64("ns_per_call", per(ns, n))
            .finish(),
    )
}

/// `probe pagefaults MIB`: maps fresh anonymous memory and touches one byte per page, to
/// measure first-touch fault cost (EPT/nested paging makes this differ in a VM).
pub fn pagefaults(args: &[String]) -> Outcome {
    let a = Args::new("pagefaults MIB", args);
    a.count(1, 1)?;
    let len = a.mib(0, "MIB")?;
    let map = Mapping::new(len)?;
    let before = minor_major_faults();
    let t = Instant::now();
    let pages = map.touch();
    let ns = elapsed_ns(t);
    let after = minor_major_faults();
    let minflt = after.0.saturating_sub(before.0);
    let majflt = after.1.saturating_sub(before.1);
    drop(map);
    emit(
        &Object::new()
            .str("workload", "pagefaults")
            .u64("mib", (len >> 20) as u64)
            .u64("page_size", page_size() as u64)
            .u64("pages", pages)
            .u64("elapsed_ns", ns)
            .u64("minflt", minflt)
            .u64("majflt", majflt)
            .f64("ns_per_page", per(ns, pages))
            .f64("ns_per_fault", per(ns, minflt + majflt))
            .finish(),
    )
}

/// `probe sleep SECS`: sleeps (fractional seconds allowed) and reports the actual duration,
/// useful both as a long-running workload and to observe timer slack.
pub fn sleep(args: &[String]) -> Outcome {
    let a = Args::new("sleep SECS", args);
    a.count(1, 1)?;
    let secs = a.secs(0, "SECS")?;
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let ns = elapsed_ns(t);
    emit(
        &Object::new()
            .str("workload", "sleep")
            .f64("secs", secs)
            .u64("elapsed_ns", ns)
            .finish(),
    )
}

/// `probe alloc MIB [HOLD_SECS]`: allocates and touches MIB MiB, prints a line, holds the
/// memory for HOLD_SECS (default 0) and exits 0; under a smaller memory limit it gets OOM-killed.
pub fn alloc(args: &[String]) -> Outcome {
    let a = Args::new("alloc MIB [HOLD_SECS]", args);
    a.count(1, 2)?;
    let len = a.mib(0, "MIB")?;
    let hold = if a.len() > 1 {
        a.secs(1, "HOLD_SECS")?
    } else {
        0.0
    };
    let t = Instant::now();
    let map = Mapping::new(len)?;
    let pages = map.touch();
    let ns = elapsed_ns(t);
    emit(
        &Object::new()
            .str("workload", "alloc")
            .u64("mib", (len >> 20) as u64)
            .u64("pages", pages)
            .u64("elapsed_ns", ns)
            .f64("hold_secs", hold)
            .finish(),
    )?;
    std::thread::sleep(Duration::from_secs_f64(hold));
    drop(black_box(map));
    Ok(())
}

/// `ns / n` as a float, or 0 when n is 0 (JSON has no infinity).
fn per(ns: u64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        ns as f64 / n as f64
    }
}

/// The kernel page size, so "one touch per page" is exact even with 16K/64K pages.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    }
}

/// (minor, major) page faults of this process so far, from getrusage.
fn minor_major_faults() -> (u64, u64) {
    // SAFETY: rusage is plain data filled by the kernel.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        (ru.ru_minflt as u64, ru.ru_majflt as u64)
    }
}

/// A private anonymous mapping, unmapped on drop. mmap (not Vec) guarantees fresh,
/// untouched pages, so every first write is a real fault.
pub struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    /// Maps `len` bytes (len > 0) of anonymous memory without touching it.
    pub fn new(len: usize) -> Result<Self, Failure> {
        // SAFETY: anonymous mapping with no fixed address; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(sys_err(
                &format!("mmap {} MiB", len >> 20),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(Self {
            ptr: ptr.cast(),
            len,
        })
    }

    /// Writes one non-zero byte per page; returns the number of pages touched.
    pub fn touch(&self) -> u64 {
        let step = page_size();
        let mut pages = 0;
        let mut off = 0;
        while off < self.len {
            // SAFETY: off < len, inside our own writable mapping.
            unsafe { std::ptr::write_volatile(self.ptr.add(off), 1) };
            pages += 1;
            off += step;
        }
        pages
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len come from a successful mmap and are unmapped exactly once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_deterministic_and_depends_on_n() {
        assert_eq!(cpu_checksum(0), 0);
        assert_eq!(cpu_checksum(1000), cpu_checksum(1000));
        assert_ne!(cpu_checksum(1000), cpu_checksum(1001));
    }

    #[test]
    fn mapping_touches_every_page() {
        let m = Mapping::new(1 << 20).unwrap();
        assert_eq!(m.touch(), ((1 << 20) / page_size()) as u64);
    }

    #[test]
    fn per_handles_zero() {
        assert_eq!(per(10, 0), 0.0);
        assert_eq!(per(10, 4), 2.5);
    }
}
