//! The synchronisation layer's planted bugs (negative controls, chosen with `bug=`): each
//! removes one fence of a store-buffer handshake, which only the weak-memory emulation
//! (`weak=on`, `broadside_base::weak`) makes visible under QEMU. Set once at boot, before other
//! CPUs run; read with one relaxed load where the fence is.

use core::sync::atomic::{AtomicBool, Ordering};

static GATE_NO_FENCE: AtomicBool = AtomicBool::new(false);
static RCU_SNAPSHOT_EARLY: AtomicBool = AtomicBool::new(false);

/// Plants `gate_no_fence` (the gate entrant's fence between its increment and its read of
/// `closed` is left out) and `rcu_snapshot_early` (a CPU leaving idle is not ordered before its
/// reads, so a grace period's snapshot may see it idle while it already reads what is being
/// unpublished).
pub fn set(gate_no_fence: bool, rcu_snapshot_early: bool) {
    GATE_NO_FENCE.store(gate_no_fence, Ordering::Relaxed);
    RCU_SNAPSHOT_EARLY.store(rcu_snapshot_early, Ordering::Relaxed);
}

#[inline(always)]
pub(crate) fn gate_no_fence() -> bool {
    GATE_NO_FENCE.load(Ordering::Relaxed)
}

#[inline(always)]
pub(crate) fn rcu_snapshot_early() -> bool {
    RCU_SNAPSHOT_EARLY.load(Ordering::Relaxed)
}
