//! Waiting on other CPUs without deadlocking them or RCU.
//!
//! A CPU that spins for other CPUs must keep doing two things while it waits: report quiescent
//! states (it is outside every lockless walk, so grace periods may end) and serve requests other
//! CPUs make of it ([`crate::requests`]: two CPUs that wait for each other's acknowledgement
//! would otherwise deadlock). A CPU with nothing to do idles here too ([`idle_wait`]).

use crate::requests::serve_requests;
use broadside_arch::aarch64::{cpu, timer};
use broadside_base::irq;
use core::sync::atomic::Ordering;

/// One iteration of a busy-wait on other CPUs: serve their requests, report a quiescent state
/// for RCU, and relax.
pub fn wait_relax() {
    serve_requests();
    crate::rcu_kernel::quiescent();
    cpu::relax();
}

/// Idles this CPU until the next interrupt unless `woken()` already says there is something to
/// do: an extended quiescent state.
///
/// `woken` is asked with IRQs masked, and the CPU stays masked into `WFI`: a wake-up (a kick
/// SGI) sent after the look stays pending and ends the `WFI` at once, since a pending IRQ wakes
/// `WFI` whatever PSTATE.I says (Arm ARM, "Wait For Interrupt"). Looking before masking lost
/// wake-ups: a kick taken between the look and the `WFI` left the CPU asleep with its work
/// posted (`bug=idle-lost-wakeup` plants that order again). Linux's idle loop has the same
/// shape: `local_irq_disable()`, then `need_resched()`, then `cpu_idle_poll` or the WFI.
///
/// Tickless while it sleeps (Linux's NO_HZ idle) when it has no RCU callbacks of its own
/// waiting: the tick would only wake it to report a quiescent state that the extended
/// quiescent state already reports. So an idle CPU costs next to nothing until an SGI wakes it,
/// which matters under QEMU TCG, where 511 idle vCPUs ticking at 1000 Hz each take the host's
/// time (and QEMU's global lock for every timer and GIC register access) from the CPUs that
/// work. One slow tick stays, `watch_ticks` counter ticks away: the watchdog runs in ticks, and
/// a CPU stuck with IRQs masked while every other CPU sleeps must still be named. With
/// callbacks queued the periodic tick stays on, so they still advance and run. The stall
/// watchdog watches only working CPUs; the tick clock it reads (`last_tick_at`) restarts on
/// waking.
pub fn idle_wait(woken: impl Fn() -> bool, watch_ticks: u64) {
    idle_then(woken, watch_ticks, || ());
}

/// [`idle_wait`], then `first` on waking, after the extended quiescent state ends and before
/// IRQs are unmasked (so before the interrupt that woke the CPU is taken): a reader CPU's first
/// read-side section after idle, with nothing between leaving idle and the reads. (The stress
/// walker idles this way: `bug=rcu-snapshot-early` leaves that window unordered.)
pub fn idle_then<R>(woken: impl Fn() -> bool, watch_ticks: u64, first: impl FnOnce() -> R) -> R {
    let irq = irq::save_and_mask();
    if woken() {
        irq::restore(irq);
        return first();
    }
    crate::rcu_kernel::idle_enter();
    let tickless = crate::rcu_kernel::may_stop_tick();
    if tickless {
        timer::start_after(watch_ticks);
    }
    cpu::wfi();
    if tickless {
        // Woken by the slow tick: leave it pending, so the tick handler runs (and re-arms the
        // periodic tick). Woken by anything else: the periodic tick starts again from now.
        if !timer::fired() {
            timer::start();
        }
        broadside_base::percpu::this_cpu()
            .last_tick_at
            .store(cpu::counter(), Ordering::Relaxed);
    }
    crate::rcu_kernel::idle_exit();
    let r = first();
    // The pending interrupt is taken here, after the CPU has left its extended quiescent state.
    irq::restore(irq);
    r
}
