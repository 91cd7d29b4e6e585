//! Fault injection for negative controls and failure paths.
//!
//! - `fail_alloc=P` fails gather batch allocations with probability P per mille, so the early
//!   flush and the table-free fallback run under stress. Per-CPU streams from `seed=` (kept in
//!   atomics, so they need no lock) keep runs reproducible per CPU.
//! - `bug=` plants a mistake: mm code asks [`planted`] at the one place each bug changes.
//! - Self-tests can make the next few table allocations fail ([`fail_table_allocs`]), to drive
//!   the undo paths of operations that run out of memory half-way.
//!
//! Sits on nothing in this crate: every other mm module may ask it.

use crate::settings::{Bug, Bugs};
use broadside_base::config::MAX_CPUS;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

static PER_MILLE: AtomicU32 = AtomicU32::new(0);
static STATE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static BUGS: AtomicU64 = AtomicU64::new(0);
/// Table allocations to let through before failing (`u32::MAX`: none planned).
static TABLE_ALLOCS_BEFORE_FAILING: AtomicU32 = AtomicU32::new(u32::MAX);
/// Table allocations still to fail once the countdown above reaches zero.
static TABLE_ALLOCS_TO_FAIL: AtomicU32 = AtomicU32::new(0);

/// Sets the failure rate, seeds each CPU's stream, and records the planted bugs.
pub fn init(per_mille: u32, seed: u64, bugs: Bugs) {
    PER_MILLE.store(per_mille, Ordering::Relaxed);
    for (i, s) in STATE.iter().enumerate() {
        s.store(
            (seed ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(i as u64 + 1) | 1,
            Ordering::Relaxed,
        );
    }
    BUGS.store(bugs.bits(), Ordering::Relaxed);
}

/// Whether `bug=` planted `bug`.
pub fn planted(bug: Bug) -> bool {
    Bugs::from_bits(BUGS.load(Ordering::Relaxed)).has(bug)
}

/// Changes the batch-allocation failure rate (self-tests, while no other CPU allocates).
/// Returns the previous rate.
pub fn set_fail_alloc(per_mille: u32) -> u32 {
    PER_MILLE.swap(per_mille, Ordering::Relaxed)
}

/// Whether the next batch allocation on this CPU should fail.
pub fn should_fail_alloc() -> bool {
    let p = PER_MILLE.load(Ordering::Relaxed);
    if p == 0 {
        return false;
    }
    let s = &STATE[broadside_base::cpu_id()];
    let x = broadside_base::rng::Rng::step(s.load(Ordering::Relaxed));
    s.store(x, Ordering::Relaxed);
    (x % 1000) < p as u64
}

/// Lets `skip` more page-table allocations succeed, then fails the `count` after them;
/// [`clear_table_alloc_failures`] ends it. The plan is global: the self-tests make one while
/// they run alone on the boot CPU; stress makes one around a `map_object`, and a table another
/// CPU allocates meanwhile may take the failure instead (every caller handles one).
pub fn fail_table_allocs(skip: u32, count: u32) {
    TABLE_ALLOCS_TO_FAIL.store(count, Ordering::Relaxed);
    TABLE_ALLOCS_BEFORE_FAILING.store(skip, Ordering::Relaxed);
}

/// Ends a plan made by [`fail_table_allocs`].
pub fn clear_table_alloc_failures() {
    TABLE_ALLOCS_BEFORE_FAILING.store(u32::MAX, Ordering::Relaxed);
    TABLE_ALLOCS_TO_FAIL.store(0, Ordering::Relaxed);
}

/// Whether this page-table allocation should fail (a planned self-test failure).
pub fn should_fail_table_alloc() -> bool {
    let before = TABLE_ALLOCS_BEFORE_FAILING.load(Ordering::Relaxed);
    if before == u32::MAX {
        return false;
    }
    if before > 0 {
        TABLE_ALLOCS_BEFORE_FAILING.store(before - 1, Ordering::Relaxed);
        return false;
    }
    let left = TABLE_ALLOCS_TO_FAIL.load(Ordering::Relaxed);
    if left == 0 {
        return false;
    }
    TABLE_ALLOCS_TO_FAIL.store(left - 1, Ordering::Relaxed);
    true
}
