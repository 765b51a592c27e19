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
}

impl ConsoleSink {
    /// A sink writing to `out` while `forward` is set.
    pub fn new(out: Box<dyn Write + Send>, forward: Arc<AtomicBool>) -> Self {
        ConsoleSink { out, forward, tail: VecDeque::with_capacity(TAIL_BYTES), pending: Vec::new() }
    }

    /// The last `n` lines the guest printed (boot messages included).
    pub fn last_lines(&self, n: usize) -> Vec<String> {
        let bytes: Vec<u8> = self.tail.iter().copied().collect();
        let text = String::from_utf8_lossy(&bytes).replace('\r', "");
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].iter().map(|s| s.to_string()).collect()
    }
}

impl Write for ConsoleSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for &b in buf {
            if self.tail.len() == TAIL_BYTES {
                self.tail.pop_front();
            }
            self.tail.push_back(b);
        }
        if self.forward.load(Ordering::Relaxed) {
            // The guest console turns "\n" into "\r\n"; the host terminal does not need the \r.
            self.pending.extend(buf.iter().copied().filter(|&b| b != b'\r'));
            if buf.contains(&b'\n') || self.pending.len() >= 4096 {
                self.flush()?;
            }
        }
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
        Console { uart: Serial::new(irq, sink) }
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
        let mut c = Console::new(EventTrigger::new().unwrap(), ConsoleSink::new(Box::new(out.clone()), fwd.clone()));
        for b in b"boot\r\n" {
            c.write(0, *b);
        }
        fwd.store(true, Ordering::Relaxed);
        for b in b"hello\r\n" {
            c.write(0, *b);
        }
        assert_eq!(&*out.0.lock().unwrap(), b"hello\n");
        assert_eq!(c.sink().last_lines(20), vec!["boot".to_string(), "hello".to_string()]);
    }

    #[test]
    fn guest_can_read_queued_bytes() {
        let fwd = Arc::new(AtomicBool::new(false));
        let mut c = Console::new(EventTrigger::new().unwrap(), ConsoleSink::new(Box::new(std::io::sink()), fwd));
        assert_eq!(c.send_to_guest(b"T"), 1);
        assert_eq!(c.read(5) & 1, 1, "LSR: data ready");
        assert_eq!(c.read(0), b'T');
        assert_eq!(c.read(5) & 1, 0);
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
