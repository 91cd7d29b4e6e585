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

use crate::pct;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A spin-wait hint that lets other vCPUs run (see the module docs): `YIELD` on AArch64. A CPU
/// that spins waits for other CPUs, so with `weak=on` it first makes its own buffered stores
/// visible ([`crate::weak`]): what it waits for may depend on them.
#[inline(always)]
pub fn cpu_relax() {
    crate::weak::drain();
    yield_now();
}

/// `YIELD` alone: hands the host thread to the next vCPU under deterministic runs without
/// draining this CPU's emulated store buffer. For yield points, and loops that wait for time
/// rather than for other CPUs (a walker holding its walk).
#[inline(always)]
pub fn yield_now() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: `YIELD` is a hint with no architectural effect on registers or memory.
    unsafe {
        core::arch::asm!("yield", options(nomem, nostack, preserves_flags))
    };
    #[cfg(not(target_arch = "aarch64"))]
    core::hint::spin_loop();
}

/// One step of a loop that waits for time (a stall, a walker's hold): a few hundred
/// instructions of spinning, then [`yield_now`]. Under deterministic runs a `YIELD` leaves the
/// translated code for QEMU's main loop, which costs the host far more than the instructions it
/// stands for; a loop of bare `YIELD`s made a virtual second of stress cost four times the host
/// time. Virtual time passes with the spin, so a wait is as long as before.
#[inline(always)]
pub fn pause() {
    for i in 0..PAUSE_SPINS {
        core::hint::black_box(i);
    }
    yield_now();
}

/// Iterations of [`pause`]'s spin.
pub const PAUSE_SPINS: u32 = 128;

/// The relax strategy of the kernel's spin locks ([`crate::IrqSpinlock`], [`Mutex`]): [`cpu_relax`].
pub struct YieldRelax;

impl spin::RelaxStrategy for YieldRelax {
    #[inline(always)]
    fn relax() {
        cpu_relax();
    }
}

/// A spin lock relaxing with `YIELD` (see the module docs): the lock for code that never runs
/// in an interrupt handler. Locks a handler may take are [`crate::IrqSpinlock`]s.
///
/// Its release drains this CPU's emulated store buffer first (`weak=on`, [`crate::weak`]): a
/// release orders every earlier store before it, so the CPU that takes the lock next sees what
/// was stored under it.
pub struct Mutex<T: ?Sized> {
    inner: spin::mutex::Mutex<T, YieldRelax>,
}

/// The guard of [`Mutex`]: releases the lock when dropped.
pub struct MutexGuard<'a, T: ?Sized> {
    inner: spin::mutex::MutexGuard<'a, T, YieldRelax>,
}

/// `spin::Mutex` relaxing with `YIELD` ([`QuietRelax`]), whose release and waits drain
/// nothing: for the observers of the kernel (the flush-coverage sanitizer), whose records are
/// not the kernel's memory and which run inside a drain.
pub type QuietMutex<T> = spin::mutex::Mutex<T, QuietRelax>;
/// The guard of [`QuietMutex`].
pub type QuietMutexGuard<'a, T> = spin::mutex::MutexGuard<'a, T, QuietRelax>;

/// The relax strategy of [`QuietMutex`]: [`yield_now`], which leaves the emulated store buffer
/// alone (a drain there would re-enter the observer that waits).
pub struct QuietRelax;

impl spin::RelaxStrategy for QuietRelax {
    #[inline(always)]
    fn relax() {
        yield_now();
    }
}

impl<T> Mutex<T> {
    /// An unlocked lock holding `value`.
    pub const fn new(value: T) -> Self {
        Self {
            inner: spin::mutex::Mutex::new(value),
        }
    }

    /// The value, consuming the lock.
    pub fn into_inner(self) -> T {
        self.inner.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Takes the lock, spinning (with [`YieldRelax`]) while another CPU holds it.
    #[inline(always)]
    pub fn lock(&self) -> MutexGuard<'_, T> {
        MutexGuard {
            inner: self.inner.lock(),
        }
    }

    /// Takes the lock if it is free.
    #[inline(always)]
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        self.inner.try_lock().map(|inner| MutexGuard { inner })
    }

    /// Whether some CPU holds the lock (for diagnostics and test-and-test-and-set waits).
    pub fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }

    /// The value, through exclusive access to the lock (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }

    /// Releases the lock whoever holds it.
    ///
    /// # Safety
    /// Only for the fatal path, when the holder will never run again: the data may be
    /// mid-update, and the holder's guard must never be dropped.
    pub unsafe fn force_unlock(&self) {
        // SAFETY: forwarded from the caller.
        unsafe { self.inner.force_unlock() };
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T: ?Sized + core::fmt::Debug> core::fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.inner.fmt(f)
    }
}

impl<T: ?Sized> core::ops::Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T: ?Sized> core::ops::DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        // Before `inner` is dropped (which unlocks): the stores made under the lock become
        // visible no later than the release.
        crate::weak::drain();
    }
}

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
    /// Between an activation's entry through the space's gate and its load of TTBR0.
    Activate = 7,
    /// Between a frame's last reference going and the frame going back to the allocator.
    FreeFrame = 8,
    /// Between a CPU leaving its idle state and its first lockless walk.
    IdleWake = 9,
    /// A thread about to map into its space while another CPU may be destroying it.
    MapRace = 10,
}

/// One in this many yield-point calls yields (when yield points are on).
pub const YIELD_ONE_IN: u64 = 8;
/// The longest burst of `YIELD`s one yield point executes: each hands the host thread to the
/// next vCPU, so a burst of N lets up to N other vCPUs' turns run inside the window.
pub const MAX_BURST: u64 = 4;
/// One in this many yield-point calls also stalls (when yield points are on), except at the
/// sites [`Site::stall_one_in`] names.
pub const STALL_ONE_IN: u64 = 16;

impl Site {
    /// How rarely a yield point here stalls: one in this many. A stall holds the window open
    /// for other CPUs; the windows where one CPU sits between a load and the step that depends
    /// on it (a walk's load and its pin, a pin and its re-check) or between a store and the
    /// barrier that publishes it (an activation) stall more often, since the race there needs
    /// the other CPU to take several steps inside it.
    pub const fn stall_one_in(self) -> u64 {
        match self {
            Site::WalkerLoad | Site::WalkerPin | Site::Activate => 4,
            Site::MapRace => 2,
            _ => STALL_ONE_IN,
        }
    }

    /// The longest stall here, in microseconds: longer at those same sites, where the other
    /// CPU's steps are a whole operation (an unmap's clears, flush and frees; a destroy).
    pub const fn stall_max_us(self) -> u64 {
        match self {
            Site::WalkerLoad | Site::WalkerPin | Site::Activate | Site::MapRace => 4 * STALL_MAX_US,
            _ => STALL_MAX_US,
        }
    }
}
/// The longest stall, in microseconds of the virtual counter.
pub const STALL_MAX_US: u64 = 400;

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

/// A yield point at `site` whose stall (when the draw gives one) ends as soon as `done()` holds:
/// the window stays open until the other CPU has taken the step the race needs (an unmap of
/// the page just loaded, its release), however long that takes up to the stall, rather than
/// for a time that is too short in most runs and wasted in the rest. `done` must not block.
///
/// While it stalls, the CPU *watches* `key` (a frame's address, say; 0: nothing): a CPU that
/// reaches [`yield_point_watched`] with the same key hands it the turn there, so the step the
/// stall waits for is met on the next instruction rather than after the other CPU has gone on
/// (the frame was freed, and reused, before the watcher ran again). A directed schedule, as
/// OZZ and PCT direct theirs: it changes which interleavings are likely, never which are
/// possible.
#[inline(always)]
pub fn yield_point_until(site: Site, key: u64, done: impl Fn() -> bool) {
    if enabled() {
        crate::events::mark(crate::events::Kind::YieldPoint, site as u64, 0);
        let slot = &WATCHED[watch_slot(key)];
        if key != 0 {
            slot.store(key, Ordering::Relaxed);
        }
        yield_slow_until(site, Some(&done));
        if key != 0 {
            let _ = slot.compare_exchange(key, 0, Ordering::Relaxed, Ordering::Relaxed);
        }
    }
}

/// A yield point at `site` that yields a whole burst if another CPU's stall watches `key`
/// (see [`yield_point_until`]), and draws as [`yield_point`] does otherwise.
#[inline(always)]
pub fn yield_point_watched(site: Site, key: u64) {
    if enabled() {
        if key != 0 && WATCHED[watch_slot(key)].load(Ordering::Relaxed) == key {
            crate::events::mark(crate::events::Kind::YieldPoint, site as u64, 1);
            crate::stats::count(crate::stats::Counter::YieldPoints);
            for _ in 0..MAX_BURST {
                yield_now();
            }
        } else {
            yield_point(site);
        }
    }
}

/// Keys watched by stalls now, by hash: a collision costs a needless burst, never a missed one
/// on the later watcher (it overwrites the slot).
static WATCHED: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];

fn watch_slot(key: u64) -> usize {
    (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize
}

#[cold]
#[inline(never)]
fn yield_slow(site: Site) {
    yield_slow_until(site, None);
}

fn yield_slow_until(site: Site, done: Option<&dyn Fn() -> bool>) {
    crate::weak::maybe_drain();
    let cpu = crate::cpu_id();
    let burst = draw(cpu, site).unwrap_or(0) + pct::yields_at(cpu);
    let mut stall = stall_draw(cpu, site);
    if stall > 0 && done.is_some() {
        // A stall that ends on its event waits as long as the site allows: a drawn length
        // would end most of them before the event.
        stall = 2 * site.stall_max_us() * counter_frequency() / 1_000_000;
    }
    let done = done.unwrap_or(&|| false);
    if burst > 0 || stall > 0 {
        crate::stats::count(crate::stats::Counter::YieldPoints);
        for _ in 0..burst {
            yield_now();
        }
        if stall > 0 {
            stall_for(stall, done);
        }
    }
}

/// A seeded coin for this CPU (when yield points are on; `false` when off): which of two
/// events a [`yield_point_until`] waits for.
pub fn coin() -> bool {
    if !enabled() {
        return false;
    }
    (next_draw(crate::cpu_id(), 0) >> 11) & 1 == 1
}

/// The next value of `cpu`'s seeded stream, stepped with `salt` mixed in (never 0).
fn next_draw(cpu: usize, salt: u64) -> u64 {
    let slot = &STATE[cpu % STATE.len()];
    let mut x = slot.load(Ordering::Relaxed);
    if x == 0 {
        x = initial_state(SEED.load(Ordering::Relaxed), cpu);
    }
    x = crate::rng::Rng::step(x ^ salt);
    if x == 0 {
        x = 1;
    }
    slot.store(x, Ordering::Relaxed);
    x
}

/// This CPU's stall at a yield point of `site`, in counter ticks: one draw in
/// [`Site::stall_one_in`] stalls for up to [`STALL_MAX_US`] microseconds, 0 otherwise.
fn stall_draw(cpu: usize, site: Site) -> u64 {
    let x = next_draw(cpu, 0);
    if !(x >> 3).is_multiple_of(site.stall_one_in()) {
        return 0;
    }
    (x >> 20) % site.stall_max_us() * counter_frequency() / 1_000_000
}

/// Spins, yielding, for `ticks` of the virtual counter: the window this yield point splits
/// stays open while the other CPUs run (a stall, as delay injection widens a race window;
/// virtual time under `-icount`, so the same for every rerun).
fn stall_for(ticks: u64, done: &dyn Fn() -> bool) {
    let until = counter().wrapping_add(ticks);
    while counter() < until && !done() {
        pause();
    }
}

#[cfg(target_arch = "aarch64")]
fn counter() -> u64 {
    let c: u64;
    // SAFETY: reads the virtual counter, which EL1 may always read.
    unsafe { core::arch::asm!("mrs {}, cntvct_el0", out(reg) c, options(nomem, nostack)) };
    c
}

#[cfg(target_arch = "aarch64")]
fn counter_frequency() -> u64 {
    let f: u64;
    // SAFETY: reads the counter's frequency register.
    unsafe { core::arch::asm!("mrs {}, cntfrq_el0", out(reg) f, options(nomem, nostack)) };
    f
}

#[cfg(not(target_arch = "aarch64"))]
fn counter() -> u64 {
    0
}

#[cfg(not(target_arch = "aarch64"))]
fn counter_frequency() -> u64 {
    0
}

/// This CPU's next draw at `site`: `Some(burst)` to yield `burst` times, `None` to go on. Each
/// CPU owns its slot (only that CPU draws from it), so a Relaxed load and store suffice.
fn draw(cpu: usize, site: Site) -> Option<u64> {
    let x = next_draw(cpu, (site as u64) << 56);
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
