//! Spin-wait hints and seeded yield points.
//!
//! # Why `YIELD`, not `ISB`
//! `core::hint::spin_loop()` compiles to `ISB` on AArch64. Under QEMU's deterministic mode
//! (`-icount`, every vCPU round-robin on one host thread) an `ISB` does nothing for the other
//! vCPUs: a vCPU that spins on a flag another vCPU must set keeps the host thread until its
//! instruction budget (its share of the time to the next timer deadline) runs out, and then
//! does it again on its next turn. `YIELD` (and `WFE`) make QEMU's round-robin loop switch to the
//! next vCPU at once (`EXCP_YIELD`; under MTTCG, where each vCPU has its own host thread, QEMU
//! translates `YIELD` as a no-op). On hardware `YIELD` is the hint Linux's `cpu_relax()` uses on
//! arm64. So every busy-wait in broadside relaxes with [`cpu_relax`], and the kernel's locks
//! spin with [`YieldRelax`].
//!
//! # Yield points
//! With one host thread, QEMU switches vCPUs only at budget ends, timer deadlines and
//! `WFI`/`WFE`/`YIELD`, so interleavings are coarse: a window of a few instructions between
//! two steps of a protocol (unhook and flush, flush and free, a walker's load and its pin) is
//! almost never split by another CPU. [`yield_point`] is called at such windows. When yield
//! points are on (`yield_points=on`, see `run.sh --deterministic`), each call draws from this
//! CPU's stream, seeded from `seed=`, and with probability 1/[`YIELD_ONE_IN`] executes a burst of
//! `YIELD`s, handing the host thread to the other vCPUs in the middle of the window. Which
//! windows are split, and where, is a function of the seed: different seeds explore different
//! interleavings, and the same seed replays the same one.
//!
//! Off (the default outside deterministic runs), a yield point costs one relaxed load of a
//! static flag and a not-taken branch; the draw and the state live behind the flag.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A spin-wait hint that lets other vCPUs run (see the module docs): `YIELD` on AArch64.
#[inline(always)]
pub fn cpu_relax() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: `YIELD` is a hint with no architectural effect on registers or memory.
    unsafe {
        core::arch::asm!("yield", options(nomem, nostack, preserves_flags))
    };
    #[cfg(not(target_arch = "aarch64"))]
    core::hint::spin_loop();
}

/// The relax strategy of the kernel's spin locks ([`crate::IrqSpinlock`], [`Mutex`]): [`cpu_relax`].
pub struct YieldRelax;

impl spin::RelaxStrategy for YieldRelax {
    #[inline(always)]
    fn relax() {
        cpu_relax();
    }
}

/// `spin::Mutex` relaxing with `YIELD` (see the module docs): the lock for code that never
/// runs in an interrupt handler. Locks a handler may take are [`crate::IrqSpinlock`]s.
pub type Mutex<T> = spin::mutex::Mutex<T, YieldRelax>;
/// The guard of [`Mutex`].
pub type MutexGuard<'a, T> = spin::mutex::MutexGuard<'a, T, YieldRelax>;

/// Where a yield point sits: which protocol window it splits. Its index feeds the draw, so two
/// sites reached in the same order still draw differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Site {
    /// Between unhooking entries (clearing a PTE, a table entry) and the flush that covers them.
    UnhookFlush = 1,
    /// Between a completed flush and freeing (or queueing the free of) what it covered.
    FlushFree = 2,
    /// Inside the lockless walker: between loading an entry and using it (descend or pin).
    WalkerLoad = 3,
    /// Inside the lockless walker: between the pin and the re-check of the entries.
    WalkerPin = 4,
    /// Sharing: between changing a shared table's users and acting on the new count (unshare,
    /// adopt, map_object).
    Sharing = 5,
    /// Between a grace-period or sync request and its wait.
    GracePeriod = 6,
}

/// One in this many yield-point calls yields (when yield points are on).
pub const YIELD_ONE_IN: u64 = 8;
/// The longest burst of `YIELD`s one yield point executes: each hands the host thread to the
/// next vCPU, so a burst of N lets up to N other vCPUs' turns run inside the window.
pub const MAX_BURST: u64 = 4;

static ENABLED: AtomicBool = AtomicBool::new(false);
/// Per-CPU xorshift states (0: not yet seeded for this CPU; seeded lazily from [`SEED`]).
static STATE: [AtomicU64; crate::config::MAX_CPUS] =
    [const { AtomicU64::new(0) }; crate::config::MAX_CPUS];
static SEED: AtomicU64 = AtomicU64::new(0);

/// Turns yield points on with the run's seed (once, at boot, before other CPUs start).
pub fn enable(seed: u64) {
    SEED.store(seed, Ordering::Relaxed);
    for s in &STATE {
        s.store(0, Ordering::Relaxed);
    }
    ENABLED.store(true, Ordering::Release);
}

/// Whether yield points are on.
#[inline(always)]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// A seeded yield point at `site` (see the module docs). Never blocks; may be called with IRQs
/// masked and inside a lockless walk (a `YIELD` is not a quiescent state).
#[inline(always)]
pub fn yield_point(site: Site) {
    if enabled() {
        crate::events::mark(crate::events::Kind::YieldPoint, site as u64, 0);
        yield_slow(site);
    }
}

#[cold]
#[inline(never)]
fn yield_slow(site: Site) {
    if let Some(n) = draw(crate::cpu_id(), site) {
        crate::stats::count(crate::stats::Counter::YieldPoints);
        for _ in 0..n {
            cpu_relax();
        }
    }
}

/// This CPU's next draw at `site`: `Some(burst)` to yield `burst` times, `None` to go on. Each
/// CPU owns its slot (only that CPU draws from it), so a Relaxed load and store suffice.
fn draw(cpu: usize, site: Site) -> Option<u64> {
    let slot = &STATE[cpu % STATE.len()];
    let mut x = slot.load(Ordering::Relaxed);
    if x == 0 {
        x = initial_state(SEED.load(Ordering::Relaxed), cpu);
    }
    x = crate::rng::Rng::step(x ^ ((site as u64) << 56));
    if x == 0 {
        x = 1;
    }
    slot.store(x, Ordering::Relaxed);
    x.is_multiple_of(YIELD_ONE_IN)
        .then(|| 1 + (x >> 8) % MAX_BURST)
}

/// A CPU's first state: distinct per seed and CPU, never 0.
fn initial_state(seed: u64, cpu: usize) -> u64 {
    (seed ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(2 * cpu as u64 + 3) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(seed: u64, cpu: usize, n: usize) -> alloc::vec::Vec<Option<u64>> {
        SEED.store(seed, Ordering::Relaxed);
        STATE[cpu].store(0, Ordering::Relaxed);
        (0..n).map(|_| draw(cpu, Site::WalkerLoad)).collect()
    }

    // One test, not several: the draws share the static state, and tests run in parallel.
    #[test]
    fn draws_are_a_function_of_seed_and_cpu() {
        let a = stream(7, 1, 400);
        assert_eq!(a, stream(7, 1, 400), "same seed and CPU, same draws");
        assert_ne!(a, stream(8, 1, 400), "another seed, other draws");
        assert_ne!(a, stream(7, 2, 400), "another CPU, other draws");
        let yields = a.iter().flatten().count() as u64;
        // About one in YIELD_ONE_IN, bursts within 1..=MAX_BURST.
        assert!(
            (400 / YIELD_ONE_IN / 3..=400 / YIELD_ONE_IN * 3).contains(&yields),
            "{yields} yields in 400 draws"
        );
        assert!(a.iter().flatten().all(|&b| (1..=MAX_BURST).contains(&b)));
        assert!(!enabled(), "off unless enabled");
        yield_point(Site::FlushFree); // off: does nothing, returns
    }
}
