//! AArch64: boot, exceptions, system registers, TLB maintenance, PSCI, GICv3 and the timer.
//!
//! Boot flow (see `boot.S`): QEMU enters `_start` at the image's physical address with the MMU
//! off, at EL1 or EL2. The CPU drops to EL1, leaves FP/SIMD trapping (CPACR_EL1.FPEN = 0b00: the
//! target is soft-float, so any FP/SIMD instruction is a bug and is reported), zeroes .bss,
//! builds 1 GiB-block early tables (an identity map in TTBR0, the linear map and the image in
//! TTBR1), turns the MMU on and jumps to `kernel_main` (defined by the kernel binary through
//! [`entry_points!`](crate::entry_points)) in the TTBR1 half, running on SP_EL0 with exceptions
//! on SP_EL1. The memory layer then builds the real W^X kernel tables and swaps TTBR1 to them
//! ([`mmu::replace_kernel_tables`]); secondaries enter `_secondary_start` from PSCI CPU_ON and
//! come up directly on the final tables.

pub mod boot;
pub mod cpu;
pub mod exception;
pub mod gic;
pub mod layout;
pub mod mmu;
pub mod psci;
pub mod semihosting;
pub mod timer;
pub mod tlb;
