//! `fail_alloc=P`: fails gather batch allocations with probability P per mille, so the early
//! flush and the table-free fallback run under stress. Per-CPU `rng` streams from `seed=`
//! (kept in atomics, so they need no lock) keep runs reproducible per CPU.

use crate::config::MAX_CPUS;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

static PER_MILLE: AtomicU32 = AtomicU32::new(0);
static STATE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Sets the failure rate and seeds each CPU's stream.
pub fn init(per_mille: u32, seed: u64) {
    PER_MILLE.store(per_mille, Ordering::Relaxed);
    for (i, s) in STATE.iter().enumerate() {
        s.store(
            (seed ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(i as u64 + 1) | 1,
            Ordering::Relaxed,
        );
    }
}

/// Whether the next batch allocation on this CPU should fail.
pub fn should_fail_alloc() -> bool {
    let p = PER_MILLE.load(Ordering::Relaxed);
    if p == 0 {
        return false;
    }
    let s = &STATE[crate::arch::cpu_id()];
    let x = crate::rng::Rng::step(s.load(Ordering::Relaxed));
    s.store(x, Ordering::Relaxed);
    (x % 1000) < p as u64
}
