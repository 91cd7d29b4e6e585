//! The EL1 virtual timer (CNTV), one periodic tick per CPU. Its PPI comes from the DTB's
//! `/timer` node (the third interrupt: the virtual timer).

use aarch64_cpu::registers::*;
use core::sync::atomic::{AtomicU64, Ordering};

/// Counter ticks between timer interrupts.
static PERIOD: AtomicU64 = AtomicU64::new(0);

/// Sets the tick rate; called once before any CPU arms its timer.
pub fn set_rate(hz: u32) {
    PERIOD.store(
        super::cpu::counter_frequency() / hz as u64,
        Ordering::Relaxed,
    );
}

/// Counter ticks per timer tick.
pub fn period() -> u64 {
    PERIOD.load(Ordering::Relaxed)
}

/// Arms this CPU's timer for one period from now and enables it (interrupt unmasked).
pub fn start() {
    CNTV_CVAL_EL0.set(super::cpu::counter() + period());
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR);
}

/// Arms this CPU's timer for `ticks` counter ticks from now and enables it: one slow tick in
/// place of the periodic ones (tickless idle keeps this one for the watchdog).
pub fn start_after(ticks: u64) {
    CNTV_CVAL_EL0.set(super::cpu::counter() + ticks);
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR);
}

/// Whether this CPU's timer condition is met (CNTV_CTL_EL0.ISTATUS): its interrupt is pending,
/// or will be once IRQs are unmasked.
pub fn fired() -> bool {
    CNTV_CTL_EL0.is_set(CNTV_CTL_EL0::ISTATUS)
}

/// Re-arms the timer one period after its last deadline, from the tick handler; skips missed
/// periods rather than firing a burst.
pub fn rearm() {
    let now = super::cpu::counter();
    let mut next = CNTV_CVAL_EL0.get() + period();
    if next <= now {
        next = now + period();
    }
    CNTV_CVAL_EL0.set(next);
}
