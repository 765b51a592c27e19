//! COM1, an emulated 16550A UART (vm-superio), wired to the instance's stdout. The guest's
//! boot messages go only into a small in-memory tail (for error reports) until the guest
//! init says the entrypoint runs; from then on the entrypoint's output is forwarded, so the
//! user sees what a container would print. The host can also push bytes to the guest's
//! receive FIFO (the shutdown request to the guest init).

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use vm_superio::Serial;

use super::boot_timer::BootTimer;
use super::EventTrigger;

/// Bytes of console output kept for error reports.
pub const TAIL_BYTES: usize = 16 * 1024;

/// The serial port's output side: a forward switch, an output and a tail buffer.
pub struct ConsoleSink {
    out: Box<dyn Write + Send>,
    /// When set, output is written to `out` (the entrypoint is running, or boot messages were asked for).
    pub forward: Arc<AtomicBool>,
    tail: VecDeque<u8>,
    pending: Vec<u8>,
    timer: Option<Arc<BootTimer>>,
    /// Bytes of a possible `ESC _ vcompare:N ESC \` marker seen so far.
    marker: Vec<u8>,
}

/// Opening of a boot-timer console marker (the guest-init protocol's, defined once).
pub use vcompare_spec::guest::MARKER_START;
use vcompare_spec::guest::{MARKER_END, MARKER_INFO_PREFIX};
/// Maximum marker length (an `info:` JSON object from the guest init included).
const MARKER_MAX: usize = 1024;

/// A console marker's content.
enum Marker {
    /// A boot-timer value.
    Value(u32),
    /// `info:<json>`: the guest's own view (kernel release, memory, CPUs) for `inspect`.
    Info(String),
}

impl ConsoleSink {
    /// A sink writing to `out` while `forward` is set.
    pub fn new(out: Box<dyn Write + Send>, forward: Arc<AtomicBool>) -> Self {
        ConsoleSink {
            out,
            forward,
            tail: VecDeque::with_capacity(TAIL_BYTES),
            pending: Vec::new(),
            timer: None,
            marker: Vec::new(),
        }
    }

    /// Console markers are reported to `timer` (and removed from the output).
    pub fn with_boot_timer(mut self, timer: Arc<BootTimer>) -> Self {
        self.timer = Some(timer);
        self
    }

    /// Feeds one byte through the marker parser: ordinary output goes to `out`; a complete
    /// marker's value is returned.
    fn scan(&mut self, b: u8, out: &mut Vec<u8>) -> Option<Marker> {
        if self.timer.is_none() {
            out.push(b);
            return None;
        }
        self.marker.push(b);
        let n = self.marker.len();
        if n <= MARKER_START.len() {
            if self.marker[..] != MARKER_START[..n] {
                // Not a marker after all: release what we held back (an ESC may start a new one).
                let held = std::mem::take(&mut self.marker);
                let (last, rest) = held.split_last().unwrap();
                out.extend_from_slice(rest);
                if *last == 0x1b {
                    self.marker.push(*last);
                } else {
                    out.push(*last);
                }
            }
            return None;
        }
        if self.marker.ends_with(MARKER_END) {
            let held = std::mem::take(&mut self.marker);
            let body = &held[MARKER_START.len()..n - MARKER_END.len()];
            let parsed = std::str::from_utf8(body).ok().and_then(|s| {
                if let Some(info) = s.strip_prefix(MARKER_INFO_PREFIX) {
                    Some(Marker::Info(info.to_string()))
                } else {
                    s.parse::<u32>().ok().map(Marker::Value)
                }
            });
            if parsed.is_none() {
                out.extend_from_slice(&held);
            }
            return parsed;
        }
        if n > MARKER_MAX
            || !(b.is_ascii_graphic() || b == b' ' || b == 0x1b)
            || (b == 0x1b && self.marker[n - 2] == 0x1b)
        {
            let held = std::mem::take(&mut self.marker);
            out.extend_from_slice(&held);
        }
        None
    }

    /// The last `n` lines the guest printed (boot messages included, markers removed).
    pub fn last_lines(&self, n: usize) -> Vec<String> {
        let bytes: Vec<u8> = self.tail.iter().copied().collect();
        let text = String::from_utf8_lossy(&bytes).replace('\r', "");
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// Ordinary output: into the tail, and to the host while forwarding.
    fn emit(&mut self, plain: &[u8]) -> std::io::Result<()> {
        for &b in plain {
            if self.tail.len() == TAIL_BYTES {
                self.tail.pop_front();
            }
            self.tail.push_back(b);
        }
        if self.forward.load(Ordering::Relaxed) {
            // The guest console turns "\n" into "\r\n"; the host terminal does not need the \r.
            self.pending
                .extend(plain.iter().copied().filter(|&b| b != b'\r'));
            if plain.contains(&b'\n') || self.pending.len() >= 4096 {
                self.flush()?;
            }
        }
        Ok(())
    }
}

impl Write for ConsoleSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut plain = Vec::with_capacity(buf.len());
        for &b in buf {
            if let Some(m) = self.scan(b, &mut plain) {
                // Output before the marker must reach the host before forwarding changes.
                self.emit(&plain)?;
                plain.clear();
                self.flush()?;
                if let Some(t) = &self.timer {
                    match m {
                        Marker::Value(v) => t.record(v),
                        Marker::Info(i) => t.set_guest_info(i),
                    }
                }
            }
        }
        self.emit(&plain)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            // A closed stdout must not kill the VM: the output is dropped, the tail kept.
            let _ = self.out.write_all(&self.pending);
            let _ = self.out.flush();
            self.pending.clear();
        }
        Ok(())
    }
}

/// COM1 as the vCPUs see it.
pub struct Console {
    uart: Serial<EventTrigger, vm_superio::serial::NoEvents, ConsoleSink>,
}

impl Console {
    /// A UART raising `irq` and writing to `sink`.
    pub fn new(irq: EventTrigger, sink: ConsoleSink) -> Self {
        Console {
            uart: Serial::new(irq, sink),
        }
    }

    /// A UART in the state of a snapshot (registers and receive FIFO), raising `irq` and
    /// writing to `sink`.
    pub fn from_snapshot(
        irq: EventTrigger,
        sink: ConsoleSink,
        s: &crate::snapshot::device_state::SerialSnapshot,
    ) -> std::io::Result<Self> {
        let uart = Serial::from_state(&s.into(), irq, vm_superio::serial::NoEvents, sink)
            .map_err(|e| std::io::Error::other(format!("serial state: {e:?}")))?;
        Ok(Console { uart })
    }

    /// The UART's registers and receive FIFO, for a snapshot.
    pub fn snapshot(&self) -> crate::snapshot::device_state::SerialSnapshot {
        self.uart.state().into()
    }

    /// Register read at `offset` (0..8).
    pub fn read(&mut self, offset: u8) -> u8 {
        self.uart.read(offset)
    }

    /// Register write at `offset`.
    pub fn write(&mut self, offset: u8, value: u8) {
        // The only error is a failed interrupt eventfd write, which cannot be reported to the guest.
        let _ = self.uart.write(offset, value);
    }

    /// Queues bytes for the guest to read; returns how many fit into the FIFO.
    pub fn send_to_guest(&mut self, bytes: &[u8]) -> usize {
        self.uart.enqueue_raw_bytes(bytes).unwrap_or(0)
    }

    /// The output sink (tail buffer, forward switch).
    pub fn sink(&mut self) -> &mut ConsoleSink {
        self.uart.writer_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn thr_writes_reach_sink_only_when_forwarding() {
        let out = Shared::default();
        let fwd = Arc::new(AtomicBool::new(false));
        let mut c = Console::new(
            EventTrigger::new().unwrap(),
            ConsoleSink::new(Box::new(out.clone()), fwd.clone()),
        );
        for b in b"boot\r\n" {
            c.write(0, *b);
        }
        fwd.store(true, Ordering::Relaxed);
        for b in b"hello\r\n" {
            c.write(0, *b);
        }
        assert_eq!(&*out.0.lock().unwrap(), b"hello\n");
        assert_eq!(
            c.sink().last_lines(20),
            vec!["boot".to_string(), "hello".to_string()]
        );
    }

    #[test]
    fn guest_can_read_queued_bytes() {
        let fwd = Arc::new(AtomicBool::new(false));
        let mut c = Console::new(
            EventTrigger::new().unwrap(),
            ConsoleSink::new(Box::new(std::io::sink()), fwd),
        );
        assert_eq!(c.send_to_guest(b"T"), 1);
        assert_eq!(c.read(5) & 1, 1, "LSR: data ready");
        assert_eq!(c.read(0), b'T');
        assert_eq!(c.read(5) & 1, 0);
    }

    #[test]
    fn markers_are_recorded_and_stripped() {
        let out = Shared::default();
        let fwd = Arc::new(AtomicBool::new(true));
        let timer = Arc::new(BootTimer::new(fwd.clone(), false).unwrap());
        let mut s = ConsoleSink::new(Box::new(out.clone()), fwd).with_boot_timer(timer.clone());
        s.write_all(b"a\x1b[1mb\x1b_vcompare:1\x1b\\c\n").unwrap();
        s.write_all(b"x\x1b_vcomp").unwrap();
        s.write_all(b"are:1028\x1b\\y\n").unwrap();
        s.write_all(b"\x1b_vcompare:info:{\"a\": 1}\x1b\\").unwrap();
        s.write_all(b"\x1b_vcompare:zz\n").unwrap();
        s.flush().unwrap();
        assert_eq!(
            &*out.0.lock().unwrap(),
            b"a\x1b[1mbc\nx",
            "nothing forwarded after the exit mark"
        );
        let m = timer.marks();
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[0].phase, m[1].phase, m[1].arg),
            (
                super::super::boot_timer::Phase::InitStart,
                super::super::boot_timer::Phase::EntrypointExit,
                4
            )
        );
        assert!(
            s.last_lines(5).iter().any(|l| l.contains("vcompare:zz")),
            "broken markers stay visible"
        );
        assert_eq!(timer.guest_info().as_deref(), Some("{\"a\": 1}"));
    }

    #[test]
    fn tail_keeps_last_lines() {
        let mut s = ConsoleSink::new(Box::new(std::io::sink()), Arc::new(AtomicBool::new(false)));
        for i in 0..30 {
            writeln!(s, "line {i}").unwrap();
        }
        let l = s.last_lines(20);
        assert_eq!(l.len(), 20);
        assert_eq!(l[0], "line 10");
        assert_eq!(l[19], "line 29");
    }
}
