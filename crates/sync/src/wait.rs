//! Waiting on other CPUs without deadlocking them or RCU.
//!
//! A CPU that spins for other CPUs must keep doing two things while it waits: report quiescent
//! states (it is outside every lockless walk, so grace periods may end) and serve requests other
//! CPUs make of it (the IPI baseline's shootdowns and syncs: two CPUs that wait for each other's
//! acknowledgement would otherwise deadlock). The requests are served by a function a higher
//! layer installs ([`set_request_server`]), since what they are is none of this layer's business.

use broadside_arch::aarch64::cpu;
use spin::Once;

static REQUEST_SERVER: Once<fn()> = Once::new();

/// Installs the function that serves requests aimed at this CPU while it waits (once, at boot).
pub fn set_request_server(serve: fn()) {
    REQUEST_SERVER.call_once(|| serve);
}

/// Serves whatever other CPUs asked of this one (nothing before a server is installed).
pub fn serve_requests() {
    if let Some(serve) = REQUEST_SERVER.get() {
        serve();
    }
}

/// One iteration of a busy-wait on other CPUs: serve their requests, report a quiescent state
/// for RCU, and relax.
pub fn wait_relax() {
    serve_requests();
    crate::rcu_kernel::quiescent();
    cpu::relax();
}

/// Idles this CPU until the next interrupt (a CPU with no work): an extended quiescent state.
pub fn idle_wait() {
    let irq = cpu::irq_save();
    crate::rcu_kernel::idle_enter();
    cpu::wfi();
    crate::rcu_kernel::idle_exit();
    // The pending interrupt is taken here, after the CPU has left its extended quiescent state.
    cpu::irq_restore(irq);
}
