//! Running a closure on every online CPU: the boot CPU posts it to each secondary's per-CPU
//! slot, kicks it with an SGI, runs it itself, and waits for all of them. Secondaries wait for
//! work in [`idle_loop`], in WFI (an RCU extended quiescent state, tickless but for the
//! watchdog's slow tick). The watchdog names a CPU that sleeps through its kick.
//!
//! [`run_on_all`] is scoped, like `std::thread::scope`: the closure may borrow from the
//! caller's stack, because the call returns only once every CPU has finished with it.

use super::percpu::{self, CpuState};
use broadside_arch::aarch64::cpu;
use core::sync::atomic::{AtomicBool, Ordering};

/// What a per-CPU slot holds while work is posted: a monomorphised [`run_posted`] for the
/// closure's type, called with (logical cpu index, the closure's address).
type Trampoline = fn(usize, usize);

/// Set while a [`run_on_all`] is in progress. A second one before the first returned (from
/// inside the work, or from another CPU) would post into slots whose CPUs still run the first,
/// and its wait could be satisfied by the first's completions: the closure would be used after
/// its caller returned. So it panics instead.
static IN_PROGRESS: AtomicBool = AtomicBool::new(false);

/// `bug=idle-lost-wakeup` ([`crate::settings::Bug::IdleLostWakeup`]): set once at boot, before
/// any secondary runs [`idle_loop`].
static IDLE_LOST_WAKEUP: AtomicBool = AtomicBool::new(false);

/// Plants `bug=idle-lost-wakeup` (on the boot CPU, before the secondaries start).
pub fn set_planted(idle_lost_wakeup: bool) {
    IDLE_LOST_WAKEUP.store(idle_lost_wakeup, Ordering::Relaxed);
}

/// Calls the closure of type `F` at `closure` for `cpu`.
fn run_posted<F: Fn(usize) + Sync>(cpu: usize, closure: usize) {
    // SAFETY: `run_on_all::<F>` posted `closure` as the address of its `F` argument together
    // with this very instantiation, and does not return (so `F` stays alive and in place)
    // before this CPU's `work_done` shows the call finished. `F: Sync` lets the CPUs share it.
    let f = unsafe { &*(closure as *const F) };
    f(cpu);
}

/// Runs `f(cpu)` on every online CPU (this one included, `cpu` being each one's logical index)
/// and returns when all are done. `f` may borrow the caller's data: it is not used after this
/// returns.
///
/// # Panics
/// If called while another `run_on_all` is in progress (from the work itself, or from another
/// CPU): it is not reentrant.
pub fn run_on_all<F: Fn(usize) + Sync>(f: F) {
    assert!(
        !IN_PROGRESS.swap(true, Ordering::Acquire),
        "run_on_all called while another is in progress"
    );
    let me = broadside_base::cpu_id();
    let trampoline: Trampoline = run_posted::<F>;
    let closure = &f as *const F as usize;
    let mut expected = [0u64; broadside_base::config::MAX_CPUS];
    for c in percpu::online_cpus() {
        if c.index == me {
            continue;
        }
        expected[c.index] = c.work_done.load(Ordering::Acquire) + 1;
        c.work_arg.store(closure, Ordering::Relaxed);
        c.work_posted_at.store(cpu::counter(), Ordering::Relaxed);
        c.work_fn
            .store(trampoline as *const () as usize, Ordering::Release);
        broadside_arch::aarch64::gic::send_sgi(
            super::ipi::SGI_KICK,
            c.mpidr.load(Ordering::Relaxed),
        );
    }
    let this = percpu::this_cpu();
    let before = this.state();
    this.set_state(CpuState::Working);
    f(me);
    // Back to what the caller was doing (the boot CPU runs its workload as `Working`), also
    // while it waits: it waits with IRQs on, so its ticks go on.
    this.set_state(before);
    for c in percpu::online_cpus() {
        if c.index == me {
            continue;
        }
        // Acquire: pairs with the Release increment after the CPU's call returned, so its
        // use of `f` happens-before `f` is dropped here.
        while c.work_done.load(Ordering::Acquire) < expected[c.index] {
            broadside_sync::wait::wait_relax();
        }
    }
    IN_PROGRESS.store(false, Ordering::Release);
}

/// Wakes CPU `index` from `WFI` with the kick SGI (its handler only counts it): for a CPU that
/// idles until something happens that it wants to see (a stress walker waiting for a mutator's
/// unmap). A CPU that is not idle takes the SGI as soon as it unmasks IRQs.
pub fn kick(index: usize) {
    if let Some(c) = percpu::online_cpus().find(|c| c.index == index) {
        broadside_arch::aarch64::gic::send_sgi(
            super::ipi::SGI_KICK,
            c.mpidr.load(Ordering::Relaxed),
        );
    }
}

/// The kick SGI's handler: counts it. The kick's work is done by [`idle_loop`], which it wakes.
pub fn kick_received() {
    percpu::this_cpu().kicks.fetch_add(1, Ordering::Relaxed);
    broadside_base::stats::count(broadside_base::stats::Counter::SgisReceived);
}

/// A secondary CPU's loop: run posted work, otherwise sleep until the next interrupt.
pub fn idle_loop() -> ! {
    let this = percpu::this_cpu();
    let lost_wakeup = IDLE_LOST_WAKEUP.load(Ordering::Relaxed);
    loop {
        let f = this.work_fn.swap(0, Ordering::Acquire);
        if f != 0 {
            // SAFETY: `run_on_all` stores only `Trampoline` pointers here (as usize: the slot
            // is an atomic word), and 0 is never one.
            let f: Trampoline = unsafe { core::mem::transmute::<usize, Trampoline>(f) };
            this.set_state(CpuState::Working);
            f(this.index, this.work_arg.load(Ordering::Relaxed));
            this.set_state(CpuState::Idle);
            this.work_done.fetch_add(1, Ordering::Release);
            continue;
        }
        let watch_ticks = crate::stall::ms_to_ticks(
            crate::stall::idle_watch_ms(percpu::online_count()),
            cpu::counter_frequency(),
        );
        if lost_wakeup {
            sleep_through_the_next_kick(this, watch_ticks);
        } else {
            broadside_sync::wait::idle_wait(
                || this.work_fn.load(Ordering::Relaxed) != 0,
                watch_ticks,
            );
        }
        cpu::relax();
    }
}

/// `bug=idle-lost-wakeup`: the idle loop's old order, which looked for work with IRQs on and
/// then slept. A kick taken between the look and the `WFI` is lost: the CPU sleeps with its
/// work posted. The plant makes the race certain rather than rare (after the look it waits,
/// IRQs on, for the kick to land) and the loss lasting (it then sleeps until another kick,
/// as the loop did before idle CPUs kept a slow tick, so the tick's wake-ups do not rescue
/// it). Only the watchdog's lost-wakeup check ends such a run.
fn sleep_through_the_next_kick(this: &percpu::PerCpu, watch_ticks: u64) {
    let kicks = this.kicks.load(Ordering::Relaxed);
    while this.kicks.load(Ordering::Relaxed) == kicks {
        cpu::relax();
    }
    let missed = this.kicks.load(Ordering::Relaxed);
    while this.kicks.load(Ordering::Relaxed) == missed {
        broadside_sync::wait::idle_wait(|| false, watch_ticks);
    }
}
