//! The architecture layer: everything that executes an AArch64 system instruction.
//!
//! Only `aarch64` exists, and only the kernel build compiles it. Portable layers reach the few
//! things they need (masking IRQs, reading the counter) through [`irq`], which has a host
//! stand-in so their logic tests on the host.

#[cfg(target_arch = "aarch64")]
pub mod aarch64;

pub mod irq;

/// The logical index of the CPU running this code (0 on the host).
#[inline(always)]
pub fn cpu_id() -> usize {
    #[cfg(target_arch = "aarch64")]
    {
        aarch64_cpu::registers::TPIDR_EL1.get() as usize
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        0
    }
}

#[cfg(target_arch = "aarch64")]
use aarch64_cpu::registers::Readable as _;
