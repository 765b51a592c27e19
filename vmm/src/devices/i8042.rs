//! The i8042 keyboard controller, reduced to what a microVM needs: the guest kernel reboots
//! by pulsing the CPU reset line (command 0xFE on port 0x64, `reboot=k`), and for us that
//! means "the VM is done".

use vm_superio::I8042Device;

use super::EventTrigger;

/// i8042 with its reset line wired to an eventfd the VMM's main loop waits on.
pub struct ResetDevice {
    dev: I8042Device<EventTrigger>,
}

impl ResetDevice {
    /// A controller that signals `reset` when the guest asks for a CPU reset.
    pub fn new(reset: EventTrigger) -> Self {
        ResetDevice {
            dev: I8042Device::new(reset),
        }
    }

    /// Port read (0x60 data, 0x64 status).
    pub fn read(&mut self, port: u16) -> u8 {
        self.dev.read((port - super::I8042_DATA) as u8)
    }

    /// Port write; 0xFE to 0x64 triggers the reset event.
    pub fn write(&mut self, port: u16, value: u8) {
        let _ = self.dev.write((port - super::I8042_DATA) as u8, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_command_triggers_event() {
        let t = EventTrigger::new().unwrap();
        let fd = t.0.try_clone().unwrap();
        let mut d = ResetDevice::new(t);
        assert!(fd.read().is_err(), "nothing yet");
        d.write(0x64, 0xfe);
        assert_eq!(fd.read().unwrap(), 1);
    }

    #[test]
    fn other_writes_do_not_reset() {
        let t = EventTrigger::new().unwrap();
        let fd = t.0.try_clone().unwrap();
        let mut d = ResetDevice::new(t);
        d.write(0x64, 0x20);
        d.write(0x60, 0x00);
        let _ = d.read(0x64);
        assert!(fd.read().is_err());
    }
}
