//! CPU-local operations: idling, identity, features, the counter, cache cleaning. (IRQ masking
//! is [`broadside_base::irq`], which every layer uses.)

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::*;
use core::arch::asm;

/// Waits for an interrupt. Returns after any interrupt becomes pending, even a masked one.
#[inline(always)]
pub fn wfi() {
    // A sleeping CPU's stores do not wait for it to wake (`weak=on`: drain the emulated buffer).
    broadside_base::weak::drain();
    aarch64_cpu::asm::wfi();
}

/// A spin-wait hint: `YIELD`, which lets the other vCPUs run under QEMU's deterministic mode
/// (`core::hint::spin_loop` is an `ISB`, which does not; see [`broadside_base::hint`]).
#[inline(always)]
pub fn relax() {
    broadside_base::hint::cpu_relax();
}

/// ELR_EL1: where the exception being handled was taken (read it before anything in the handler
/// can take another exception).
#[inline(always)]
pub fn exception_return_address() -> u64 {
    ELR_EL1.get()
}

/// This CPU's affinity (MPIDR_EL1 without the non-affinity bits).
pub fn mpidr() -> u64 {
    MPIDR_EL1.get() & 0xff_00ff_ffff
}

/// This CPU's MIDR_EL1 (implementer, part number, revision: [`crate::errata::Midr`]).
pub fn midr() -> u64 {
    MIDR_EL1.get()
}

/// The exception level the CPU runs at now.
pub fn current_el() -> u64 {
    CurrentEL.read(CurrentEL::EL)
}

/// The virtual counter (CNTVCT_EL0), ordered after preceding instructions.
#[inline(always)]
pub fn counter() -> u64 {
    barrier::isb(barrier::SY);
    CNTVCT_EL0.get()
}

/// The counter frequency in Hz.
pub fn counter_frequency() -> u64 {
    CNTFRQ_EL0.get()
}

/// TLB- and MMU-relevant features of this CPU, read from the ID registers.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuFeatures {
    /// FEAT_TLBIRANGE (ID_AA64ISAR0_EL1.TLB == 2).
    pub tlbi_range: bool,
    /// FEAT_TLBIOS (ID_AA64ISAR0_EL1.TLB >= 1).
    pub tlbi_os: bool,
    /// FEAT_TTL (ID_AA64MMFR2_EL1.TTL != 0).
    pub ttl: bool,
    /// ASID width in bits (ID_AA64MMFR0_EL1.ASIDBits: 8 or 16).
    pub asid_bits: u32,
    /// Raw ID_AA64ISAR0_EL1, for the TLB planner.
    pub isar0: u64,
    /// Raw ID_AA64MMFR2_EL1, for the TLB planner.
    pub mmfr2: u64,
}

impl CpuFeatures {
    /// Reads this CPU's ID registers.
    pub fn read() -> Self {
        let isar0 = ID_AA64ISAR0_EL1.get();
        let mmfr0 = ID_AA64MMFR0_EL1.get();
        let mmfr2: u64;
        // SAFETY: reading an ID register has no side effects. (aarch64-cpu has no
        // ID_AA64MMFR2_EL1 accessor.)
        unsafe { asm!("mrs {}, id_aa64mmfr2_el1", out(reg) mmfr2, options(nomem, nostack)) };
        let tlb = (isar0 >> 56) & 0xf;
        Self {
            tlbi_range: tlb == 2,
            tlbi_os: tlb >= 1,
            ttl: (mmfr2 >> 48) & 0xf != 0,
            asid_bits: if (mmfr0 >> 4) & 0xf == 2 { 16 } else { 8 },
            isar0,
            mmfr2,
        }
    }
}

/// Cleans the data cache lines covering `[va, va + len)` to the point of coherency, so a CPU
/// that reads them with its MMU off (a secondary booting) sees what was written.
pub fn clean_dcache_to_poc(va: u64, len: u64) {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack)) };
    // CTR_EL0.DminLine [19:16]: log2 of the smallest data cache line in words.
    let line = 4u64 << ((ctr >> 16) & 0xf);
    let mut addr = va & !(line - 1);
    while addr < va + len {
        // SAFETY: cleaning a cache line has no architecturally visible effect on memory
        // contents; `addr` lies in a mapped range the caller owns.
        unsafe { asm!("dc cvac, {}", in(reg) addr, options(nostack, preserves_flags)) };
        addr += line;
    }
    barrier::dsb(barrier::SY);
}
