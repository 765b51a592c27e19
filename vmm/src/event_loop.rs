//! The VMM's main loop (its own thread while vCPU 0 runs on the caller's): waits for the guest
//! to reset or report its end, for a vCPU to stop the VM, for the watchdog, and for signals,
//! which it forwards to the guest init over the console once the entrypoint runs. It also
//! waits on the devices' host-side event fds (frames arriving on virtio-net's TAP) and lets
//! the device move that work into the guest.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use vcompare_spec::guest::{go_message_now, Phase, SIGNAL_BYTE};
use vmm_sys_util::eventfd::EventFd;

use crate::devices::Devices;
use crate::exit::LoopEnd;
use crate::signals::SignalGuard;
use crate::vcpu::VcpuShared;

/// Runs until the VM's work is over; returns why. When the guest init reports it is ready,
/// `on_ready` runs (it may snapshot the VM) and then the go message is sent; `go_now` sends
/// it at once instead (a restored VM, whose init already reported ready before the
/// snapshot).
pub fn main_loop(
    timeout: Option<Duration>,
    devices: &Devices,
    shared: &VcpuShared,
    reset_evt: &EventFd,
    signals: Option<&SignalGuard>,
    go_now: bool,
    on_ready: &mut dyn FnMut(&VcpuShared),
) -> LoopEnd {
    // The go message's bytes not yet in the UART's receive FIFO.
    let mut go: Vec<u8> = if go_now { go_message_now() } else { Vec::new() };
    let deadline = timeout.map(|t| Instant::now() + t);
    // Signals waiting for the entrypoint to exist (the init reads the console only then).
    let mut pending: Vec<i32> = Vec::new();
    let mut stop_requests = 0;
    let pollfd = |fd: i32| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // (slot, fd) of every device with host-side events; fixed for the VM's lifetime.
    let host_events: Vec<(usize, i32)> = devices
        .virtio
        .iter()
        .enumerate()
        .filter_map(|(i, t)| t.lock().unwrap().host_event_fd().map(|fd| (i, fd)))
        .collect();
    loop {
        let mut fds = vec![
            pollfd(reset_evt.as_raw_fd()),
            pollfd(shared.end_evt.as_raw_fd()),
            pollfd(devices.boot_timer.done.as_raw_fd()),
            pollfd(devices.boot_timer.ready.as_raw_fd()),
        ];
        let signal_slot = fds.len();
        if let Some(s) = signals {
            fds.push(pollfd(s.raw_fd()));
        }
        let first_host_event = fds.len();
        fds.extend(host_events.iter().map(|&(_, fd)| pollfd(fd)));
        if !go.is_empty() {
            let sent = devices.serial.lock().unwrap().send_to_guest(&go);
            go.drain(..sent);
        }
        let mut wait_ms: i64 = if pending.is_empty() && go.is_empty() {
            1000
        } else {
            50
        };
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return LoopEnd::TimedOut;
            }
            wait_ms = wait_ms.min(left.as_millis() as i64 + 1);
        }
        // SAFETY: `fds` is a valid array of pollfd for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms as i32) };
        if n < 0 {
            continue; // EINTR
        }
        if fds[0].revents != 0 || fds[2].revents != 0 {
            return LoopEnd::Reset;
        }
        if fds[3].revents != 0 {
            let _ = devices.boot_timer.ready.read();
            on_ready(shared);
            go = go_message_now();
            continue;
        }
        for (&(slot, _), p) in host_events.iter().zip(&fds[first_host_event..]) {
            if p.revents != 0 {
                devices.virtio[slot].lock().unwrap().process_host_event();
            }
        }
        if fds[1].revents != 0 {
            if let Some((i, e)) = shared.end.lock().unwrap().clone() {
                return LoopEnd::Vcpu(i, e);
            }
        }
        if let Some(s) = signals {
            if fds[signal_slot].revents != 0 {
                while let Some(sig) = s.read() {
                    if sig == libc::SIGTERM || sig == libc::SIGINT {
                        stop_requests += 1;
                        if stop_requests > 1 {
                            return LoopEnd::Killed;
                        }
                    }
                    pending.push(sig);
                }
            }
        }
        if !pending.is_empty() && devices.boot_timer.last(Phase::EntrypointExec).is_some() {
            let mut serial = devices.serial.lock().unwrap();
            while let Some(&sig) = pending.first() {
                if serial.send_to_guest(&[SIGNAL_BYTE, sig as u8]) != 2 {
                    break; // FIFO full: retry on the next round
                }
                pending.remove(0);
            }
        }
    }
}
