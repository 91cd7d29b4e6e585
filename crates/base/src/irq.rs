//! IRQ masking, the kernel's one implementation: every layer masks IRQs (locks, RCU read
//! sides, the architecture's own critical sections), so it sits at the bottom. The real DAIF
//! operations on the kernel build, no-ops on the host (where "IRQs" are never taken), so locks
//! and RCU built on it test on the host.

/// The IRQ mask state before [`save_and_mask`], to hand back to [`restore`].
#[derive(Clone, Copy, Debug)]
#[must_use]
pub struct IrqState(#[allow(dead_code)] u64);

/// Masks IRQs on this CPU and returns the previous state.
#[inline(always)]
pub fn save_and_mask() -> IrqState {
    #[cfg(target_arch = "aarch64")]
    {
        IrqState(daif::save_and_mask())
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        IrqState(0)
    }
}

/// Restores the IRQ mask state saved by [`save_and_mask`].
#[inline(always)]
pub fn restore(state: IrqState) {
    #[cfg(target_arch = "aarch64")]
    daif::restore(state.0);
    #[cfg(not(target_arch = "aarch64"))]
    let _ = state;
}

/// Masks IRQs on this CPU for good, or until [`unmask`] (a CPU that parks, or spins on
/// purpose with its tick stopped).
#[inline(always)]
pub fn mask() {
    let _ = save_and_mask();
}

/// Unmasks IRQs on this CPU (a CPU that comes online, or lets its tick in while it waits).
#[inline(always)]
pub fn unmask() {
    #[cfg(target_arch = "aarch64")]
    daif::unmask();
}

/// Whether IRQs are masked on this CPU (always true on the host: code there runs as if it were
/// inside a critical section).
#[inline(always)]
pub fn are_masked() -> bool {
    #[cfg(target_arch = "aarch64")]
    {
        daif::masked()
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        true
    }
}

/// The DAIF operations.
#[cfg(target_arch = "aarch64")]
mod daif {
    use core::arch::asm;

    /// Masks IRQs; returns DAIF as it was.
    #[inline(always)]
    pub fn save_and_mask() -> u64 {
        let daif: u64;
        // SAFETY: reading DAIF and masking IRQs have no memory effects; the compiler barrier
        // (no `nomem`) keeps the critical section's accesses after it.
        unsafe {
            asm!("mrs {}, daif", "msr daifset, #2", out(reg) daif, options(nostack, preserves_flags))
        };
        daif
    }

    /// Restores a DAIF value saved by [`save_and_mask`].
    #[inline(always)]
    pub fn restore(daif: u64) {
        // SAFETY: restores a mask state this CPU had; the compiler barrier keeps the critical
        // section's accesses before it.
        unsafe { asm!("msr daif, {}", in(reg) daif, options(nostack, preserves_flags)) };
    }

    /// Unmasks IRQs.
    #[inline(always)]
    pub fn unmask() {
        // SAFETY: as for `restore`: the compiler barrier keeps the accesses before it.
        unsafe { asm!("msr daifclr, #2", options(nostack, preserves_flags)) };
    }

    /// Whether IRQs are masked (DAIF.I, bit 7).
    #[inline(always)]
    pub fn masked() -> bool {
        let daif: u64;
        // SAFETY: reads a register.
        unsafe { asm!("mrs {}, daif", out(reg) daif, options(nomem, nostack, preserves_flags)) };
        daif & (1 << 7) != 0
    }
}
