//! Schedules chosen to find bugs: probabilistic concurrency testing (PCT; Burckhardt, Kothari,
//! Musuvathi and Nagarakatte, "A Randomized Scheduler with Probabilistic Guarantees of Finding
//! Bugs", ASPLOS 2010) at the yield points of deterministic runs.
//!
//! PCT gives every thread a distinct random priority and always runs the highest-priority
//! runnable one; at `d - 1` random steps of the run (the change points) the running thread's
//! priority drops below every other. A bug that needs `d` events in one order (its *depth*) is
//! then found in one run with probability at least `1 / (n k^(d-1))` for `n` threads and `k`
//! steps, whatever the bug — where a timer-sliced schedule gives no bound at all.
//!
//! broadside cannot pick which vCPU QEMU runs. What it can do is give the host thread away:
//! under deterministic runs every vCPU shares one host thread round-robin, and a `YIELD` passes
//! it to the next vCPU at once (see [`crate::hint`]). So at each yield point a CPU yields once
//! for each CPU of higher priority (at most [`MAX_YIELDS`]): the highest-priority CPU runs on,
//! the lowest gives its turn away most, and a change point reorders them. The steps are the
//! yield points every CPU reaches, numbered by one counter; the change points are drawn
//! uniformly from `1..=`[`STEPS`]. This approximates PCT's scheduler (a vCPU that yields still
//! runs until its next yield point once its turn comes back), so the bound above is a guide,
//! not a guarantee: the catch rates that matter are measured (README, explore table).
//!
//! Off unless [`enable`]d with a depth above 0 (`pct_depth=`, default 3 with `yield_points=on`).

use crate::config::MAX_CPUS;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The deepest bug PCT is asked to find (change points + 1).
pub const MAX_DEPTH: usize = 8;
/// The range the change points are drawn from: about the yield points all CPUs reach in a
/// two-second four-CPU stress run.
pub const STEPS: u64 = 40_000;
/// The most `YIELD`s one yield point executes for priority.
pub const MAX_YIELDS: u64 = 3;

static DEPTH: AtomicUsize = AtomicUsize::new(0);
static CPUS: AtomicUsize = AtomicUsize::new(0);
static STEP: AtomicU64 = AtomicU64::new(0);
/// Bumped at every change point: a CPU's cached rank is good while this is unchanged.
static EPOCH: AtomicU64 = AtomicU64::new(1);
static PRIORITY: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Per CPU: `epoch << 16 | rank` (how many CPUs have a higher priority).
static RANK: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static CHANGE_AT: [AtomicU64; MAX_DEPTH] = [const { AtomicU64::new(0) }; MAX_DEPTH];

/// Gives CPUs `0..cpus` distinct priorities and draws `depth - 1` change points, from `seed`
/// (once, at boot, before other CPUs run). `depth` 0 turns PCT off.
pub fn enable(seed: u64, cpus: usize, depth: usize) {
    let depth = depth.min(MAX_DEPTH);
    let cpus = cpus.min(MAX_CPUS);
    let mut rng = crate::rng::Rng::from_state(seed ^ 0x5043_5400_0000_0001);
    // A seeded permutation (Fisher-Yates), offset by `depth` so that every initial priority is
    // above every priority a change point gives (`depth - 1 - i`).
    let mut order: alloc::vec::Vec<u64> = (0..cpus as u64).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    for (cpu, p) in order.iter().enumerate() {
        PRIORITY[cpu].store(depth as u64 + p, Ordering::Relaxed);
        RANK[cpu].store(0, Ordering::Relaxed);
    }
    for c in CHANGE_AT.iter().take(depth.saturating_sub(1)) {
        c.store(1 + rng.below(STEPS), Ordering::Relaxed);
    }
    STEP.store(0, Ordering::Relaxed);
    CPUS.store(cpus, Ordering::Relaxed);
    DEPTH.store(depth, Ordering::Release);
}

/// This CPU's priority-driven yields at a yield point: takes a step, applies a change point
/// that falls on it, and returns how many `YIELD`s to execute.
pub fn yields_at(cpu: usize) -> u64 {
    let depth = DEPTH.load(Ordering::Relaxed);
    if depth == 0 || cpu >= MAX_CPUS {
        return 0;
    }
    let step = STEP.fetch_add(1, Ordering::Relaxed) + 1;
    for (i, c) in CHANGE_AT.iter().take(depth - 1).enumerate() {
        if c.load(Ordering::Relaxed) == step {
            let low = (depth - 1 - i) as u64;
            PRIORITY[cpu].store(low, Ordering::Relaxed);
            EPOCH.fetch_add(1, Ordering::Relaxed);
            crate::events::mark(crate::events::Kind::ChangePoint, low, step);
        }
    }
    // At one yield point in four: a CPU that reaches many (a mutator, per page it frees) would
    // otherwise yield itself to a standstill rather than to the CPUs above it.
    if !step.is_multiple_of(4) {
        return 0;
    }
    rank(cpu).min(MAX_YIELDS)
}

/// How many CPUs have a higher priority than `cpu` (cached until the next change point).
fn rank(cpu: usize) -> u64 {
    let epoch = EPOCH.load(Ordering::Relaxed);
    let cached = RANK[cpu].load(Ordering::Relaxed);
    if cached >> 16 == epoch {
        return cached & 0xffff;
    }
    let mine = PRIORITY[cpu].load(Ordering::Relaxed);
    let above = PRIORITY[..CPUS.load(Ordering::Relaxed)]
        .iter()
        .filter(|p| p.load(Ordering::Relaxed) > mine)
        .count() as u64;
    RANK[cpu].store(epoch << 16 | above, Ordering::Relaxed);
    above
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: the schedule is global state.
    #[test]
    fn priorities_are_a_permutation_and_change_points_lower_them() {
        enable(9, 4, 3);
        let mut ranks: alloc::vec::Vec<u64> = (0..4).map(rank).collect();
        ranks.sort_unstable();
        assert_eq!(ranks, [0, 1, 2, 3], "distinct priorities");
        let first = CHANGE_AT[0].load(Ordering::Relaxed);
        assert!((1..=STEPS).contains(&first));
        // Walk CPU 0 to the first change point: it then ranks below every other CPU.
        STEP.store(first - 1, Ordering::Relaxed);
        yields_at(0);
        assert_eq!(rank(0), 3, "after a change point, the lowest priority");
        assert!(yields_at(0) <= MAX_YIELDS);
        enable(9, 4, 0);
        assert_eq!(yields_at(1), 0, "off with depth 0");
    }
}
