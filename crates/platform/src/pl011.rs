//! The Arm PL011 UART (PrimeCell UART (PL011) Technical Reference Manual, r1p5), transmit only.
//! QEMU's PL011 needs no baud-rate setup; the driver enables the UART and transmitter and waits
//! for FIFO space before each byte.

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

register_bitfields! {
    u32,
    /// Flag register.
    FR [
        /// Transmit FIFO full.
        TXFF OFFSET(5) NUMBITS(1) [],
        /// UART busy transmitting.
        BUSY OFFSET(3) NUMBITS(1) [],
    ],
    /// Control register.
    CR [
        /// Receive enable.
        RXE OFFSET(9) NUMBITS(1) [],
        /// Transmit enable.
        TXE OFFSET(8) NUMBITS(1) [],
        /// UART enable.
        UARTEN OFFSET(0) NUMBITS(1) [],
    ],
    /// Line control register.
    LCR_H [
        /// Word length: 0b11 = 8 bits.
        WLEN OFFSET(5) NUMBITS(2) [EightBit = 0b11],
        /// FIFO enable.
        FEN OFFSET(4) NUMBITS(1) [],
    ],
}

register_structs! {
    Registers {
        (0x00 => dr: ReadWrite<u32>),
        (0x04 => _reserved0),
        (0x18 => fr: ReadOnly<u32, FR::Register>),
        (0x1c => _reserved1),
        (0x2c => lcr_h: ReadWrite<u32, LCR_H::Register>),
        (0x30 => cr: ReadWrite<u32, CR::Register>),
        (0x34 => @END),
    }
}

/// A PL011 at a mapped MMIO address.
pub struct Pl011 {
    regs: *const Registers,
}

// SAFETY: the registers are MMIO; every access goes through the console lock.
unsafe impl Send for Pl011 {}

impl Pl011 {
    /// # Safety
    ///
    /// `base` must be the virtual address of a PL011 mapped as device memory, used by nothing
    /// else.
    pub const unsafe fn new(base: u64) -> Self {
        Self {
            regs: base as *const Registers,
        }
    }

    fn regs(&self) -> &Registers {
        // SAFETY: `new`'s contract: a mapped PL011 register block.
        unsafe { &*self.regs }
    }

    /// Enables the UART for 8-bit transmission with FIFOs.
    pub fn init(&mut self) {
        let r = self.regs();
        r.cr.set(0);
        r.lcr_h.write(LCR_H::WLEN::EightBit + LCR_H::FEN::SET);
        r.cr.write(CR::UARTEN::SET + CR::TXE::SET + CR::RXE::SET);
    }

    /// Transmits one byte, waiting for FIFO space.
    pub fn put_byte(&mut self, b: u8) {
        let r = self.regs();
        while r.fr.is_set(FR::TXFF) {
            broadside_base::hint::cpu_relax();
        }
        r.dr.set(b as u32);
    }

    /// Waits until every queued byte has left the UART.
    pub fn flush(&mut self) {
        while self.regs().fr.is_set(FR::BUSY) {
            broadside_base::hint::cpu_relax();
        }
    }
}

impl core::fmt::Write for Pl011 {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.put_byte(b'\r');
            }
            self.put_byte(b);
        }
        Ok(())
    }
}
