//! IRQ masking for portable code: the real DAIF operations on the kernel build, no-ops on the
//! host (where "IRQs" are never taken), so locks and RCU built on it test on the host.

/// The IRQ mask state before [`save_and_mask`], to hand back to [`restore`].
#[derive(Clone, Copy, Debug)]
#[must_use]
pub struct IrqState(#[allow(dead_code)] u64);

/// Masks IRQs on this CPU and returns the previous state.
#[inline(always)]
pub fn save_and_mask() -> IrqState {
    #[cfg(target_arch = "aarch64")]
    {
        IrqState(crate::arch::aarch64::cpu::irq_save())
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
    crate::arch::aarch64::cpu::irq_restore(state.0);
    #[cfg(not(target_arch = "aarch64"))]
    let _ = state;
}

/// Whether IRQs are masked on this CPU (always true on the host: code there runs as if it were
/// inside a critical section).
#[inline(always)]
pub fn are_masked() -> bool {
    #[cfg(target_arch = "aarch64")]
    {
        crate::arch::aarch64::cpu::irqs_masked()
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        true
    }
}
