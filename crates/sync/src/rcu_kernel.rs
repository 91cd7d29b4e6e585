//! The kernel's one RCU instance and the calls the rest of the kernel makes, each with IRQs
//! masked as `sync::rcu` requires. Quiescent states come from the timer tick, busy-waits and
//! workload loops ([`quiescent`]); idle CPUs are in an extended quiescent state between
//! [`idle_enter`] and [`idle_exit`].

use super::rcu::Rcu;
use broadside_arch::aarch64::{cpu, timer};
use broadside_base::irq;
use broadside_base::stats::{self, Counter};
use spin::Once;

static RCU: Once<Rcu> = Once::new();

fn now_ticks() -> u64 {
    cpu::counter() / timer::period().max(1)
}

/// Creates the RCU instance for `cpus` CPUs (all online before any RCU use).
pub fn init(cpus: usize) {
    RCU.call_once(|| {
        let r = Rcu::new(cpus);
        r.set_time_source(now_ticks);
        r
    });
}

/// The instance, if initialised.
pub fn rcu() -> Option<&'static Rcu> {
    RCU.get()
}

fn with_rcu(f: impl FnOnce(&Rcu, usize)) {
    if let Some(r) = RCU.get() {
        let s = irq::save_and_mask();
        f(r, broadside_base::cpu_id());
        irq::restore(s);
    }
}

/// Reports a quiescent state for this CPU and runs its ready callbacks. Must not be called
/// inside a read-side (IRQs-masked lockless walk) section.
pub fn quiescent() {
    with_rcu(|r, cpu| {
        r.note_quiescent_state(cpu);
        run_callbacks(r, cpu);
    });
}

fn run_callbacks(r: &Rcu, cpu: usize) {
    let n = r.poll(cpu);
    if n > 0 {
        stats::add(Counter::RcuCallbacks, n as u64);
    }
}

/// Queues `cb` to run on this CPU after a grace period, with IRQs masked (from its tick or
/// idle loop). It owns what it frees: move it in.
pub fn call_rcu(cb: impl FnOnce() + Send + 'static) {
    let r = RCU.get().expect("RCU used before init");
    let s = irq::save_and_mask();
    r.call_rcu(broadside_base::cpu_id(), cb);
    irq::restore(s);
}

/// Waits for a full grace period.
///
/// # Panics
/// With IRQs masked: a grace period may then never end on this CPU's account, and the wait
/// starves its own tick and the watchdog (Linux forbids sleeping in `synchronize_rcu` with IRQs
/// off or under a spinlock; broadside's waits spin, so the rule is the same). A wait that
/// cannot allow that must not wait for a grace period: `mm::table_free` synchronises with an
/// IPI instead, as Linux's `tlb_remove_table_one` does.
pub fn synchronize_rcu() {
    let r = RCU.get().expect("RCU used before init");
    assert_irqs_on("synchronize_rcu");
    let cpu = broadside_base::cpu_id();
    let s = irq::save_and_mask();
    r.synchronize_rcu(cpu, while_waiting);
    irq::restore(s);
}

fn assert_irqs_on(what: &str) {
    assert!(
        !irq::are_masked(),
        "{what} with IRQs masked: a grace period would wait on a CPU that cannot take its tick"
    );
}

/// One step of a wait for RCU (the engine calls it with IRQs masked): serve IPI requests aimed
/// at this CPU, then let the tick and IPIs in — this CPU is waiting, not walking — and relax
/// with `YIELD`, so that under deterministic runs the CPUs it waits for get the host thread.
/// The engine reports this CPU's quiescent state and scans the idle ones itself: nothing here
/// depends on another CPU's tick.
fn while_waiting() {
    crate::requests::serve_requests();
    irq::unmask();
    cpu::relax();
    irq::mask();
}

/// Before this CPU sleeps in WFI (IRQs masked by the caller).
pub fn idle_enter() {
    if let Some(r) = RCU.get() {
        let cpu = broadside_base::cpu_id();
        run_callbacks(r, cpu);
        r.idle_enter(cpu);
    }
}

/// Whether this CPU may sleep without its tick: it has no callbacks waiting for a grace
/// period (Linux's `rcu_needs_cpu`). Call with IRQs masked, after [`idle_enter`] (which ran
/// the ready ones).
pub fn may_stop_tick() -> bool {
    RCU.get()
        .is_none_or(|r| r.queued_callbacks(broadside_base::cpu_id()) == 0)
}

/// After WFI, before IRQs are unmasked (so no handler runs in the extended quiescent state).
pub fn idle_exit() {
    if let Some(r) = RCU.get() {
        r.idle_exit(broadside_base::cpu_id());
    }
}

/// Publishes the engine's counters into the summary counters (grace periods, longest GP).
pub fn publish_stats() {
    if let Some(r) = RCU.get() {
        let gp = r.grace_periods();
        let have = stats::read(Counter::GracePeriods);
        if gp > have {
            stats::add(Counter::GracePeriods, gp - have);
        }
        stats::record_max(Counter::RcuMaxGpTicks, r.max_gp_ticks());
    }
}

/// Waits until every callback queued so far has run (`rcu_barrier`).
///
/// # Panics
/// With IRQs masked, as [`synchronize_rcu`].
pub fn barrier() {
    let Some(r) = RCU.get() else { return };
    assert_irqs_on("rcu_barrier");
    let cpu = broadside_base::cpu_id();
    let s = irq::save_and_mask();
    r.rcu_barrier(cpu, while_waiting);
    irq::restore(s);
}
