//! Emulated store buffers (`weak=on`): the stores QEMU makes visible at once, held back on
//! their CPU until a barrier orders them, as Arm hardware may.
//!
//! # Why
//! QEMU's TCG runs a vCPU's loads and stores in the host's order and (with one host thread, as
//! in deterministic runs) makes every store visible to every other vCPU, and to every table
//! walk, the moment it executes. Arm hardware does not: a store may sit in its CPU's store
//! buffer while later loads of that CPU read memory (store → load reordering, Arm ARM B2.3,
//! "Ordering requirements"), until a `DMB`/`DSB` orders it, or until the buffer drains on its
//! own. Every protocol broadside keeps across CPUs is a store → load handshake whose two
//! barriers make "at least one side sees the other's store" true:
//!
//! | protocol | one side | the other side |
//! |---|---|---|
//! | flush | clear the entry; `DMB ISH`; read the ASID and `cpus_ever` | publish the CPU in `cpus_ever`; `DSB ISH`; walk |
//! | RCU | unpublish; snapshot the EQS counters | EQS counter odd on waking; fence; read pointers |
//! | gate | `users += 1`; fence; read `closed` | `closed = true`; fence; read `users` |
//!
//! Remove one barrier and QEMU still passes every run: the store the other side needed was
//! already visible. With `weak=on` it is not: the stores of these protocols go into a per-CPU
//! FIFO here and reach memory (and so other CPUs and the MMU) only when this CPU drains it.
//!
//! # The model
//! - **Buffered:** page-table entry stores (every store through `mm::aspace::entry`), the
//!   activating CPU's bit in `cpus_ever`, the gate's `users` increment and `closed` store, the
//!   RCU EQS counter's increment on waking, and the per-frame unmap count. Nothing else: the
//!   other stores of the kernel are ordered by the locks around them, which this model drains
//!   at (below), or are read only by their own CPU.
//! - **Own loads forward:** a CPU's loads of these locations see its own buffered stores (the
//!   value in memory with its pending operations applied in order), as hardware forwards from
//!   the store buffer. Its own table walks do not: an MMU walk reads memory, which is the
//!   architecture's rule too (a walk needs a `DSB` to see the CPU's own earlier stores).
//! - **Drains** (all of the buffer, in order): `DMB ISH`, `DSB ISH`, `DSB ISHST` (the
//!   barriers of the inner-shareable domain, issued through `arch::aarch64::tlb`), a `SeqCst`
//!   fence (the gate's and RCU's, which drain after it), the release of any kernel lock (a release orders every earlier store
//!   before it, so a CPU that takes the lock next sees them), a spin-wait's relax (a CPU that
//!   spins waits for others; its own stores must not wait with it), the timer tick, a full
//!   buffer (its oldest entry), and a yield point, one in [`DRAIN_ONE_IN`] (seeded). `DSB NSH`
//!   and `DSB NSHST` do not drain: they complete accesses for this CPU only (Arm ARM D8.13).
//!   An atomic read-modify-write of a buffered location drains first (atomicity needs the
//!   latest value).
//! - **Loads** are not reordered among themselves: the protocols' load → load orders are
//!   address dependencies (a walk) or `Acquire` loads, which Arm and Rust both keep. What a
//!   load can do is pass older buffered stores, and [`Counter::WeakLoadsReordered`] counts the
//!   loads of buffered locations that did (made while this CPU held older stores to other
//!   locations).
//!
//! Off (the default), every operation is the plain atomic after one relaxed load of a flag.
//!
//! [`Counter::WeakLoadsReordered`]: crate::stats::Counter::WeakLoadsReordered

use crate::config::MAX_CPUS;
use crate::stats::{self, Counter};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Stores one CPU holds at most; a store into a full buffer drains the oldest first.
pub const CAPACITY: usize = 8;
/// At a yield point, one in this many draws drains the buffer.
pub const DRAIN_ONE_IN: u64 = 16;

const STORE64: u64 = 1;
const OR64: u64 = 2;
const ADD32: u64 = 3;
const ADD64: u64 = 4;

struct Slot {
    addr: AtomicUsize,
    kind: AtomicU64,
    value: AtomicU64,
}

/// One CPU's buffer. Only its CPU touches it, with IRQs masked (an interrupt handler on the
/// same CPU may store or drain too).
struct Buffer {
    len: AtomicUsize,
    /// Times the whole buffer drained: a store made when this was `e` is visible once it
    /// exceeds `e` ([`epoch`], [`drained_since`]).
    drains: AtomicU64,
    slots: [Slot; CAPACITY],
    rng: AtomicU64,
}

static BUFFERS: [Buffer; MAX_CPUS] = [const {
    Buffer {
        len: AtomicUsize::new(0),
        drains: AtomicU64::new(0),
        slots: [const {
            Slot {
                addr: AtomicUsize::new(0),
                kind: AtomicU64::new(0),
                value: AtomicU64::new(0),
            }
        }; CAPACITY],
        rng: AtomicU64::new(0),
    }
}; MAX_CPUS];

static ENABLED: AtomicBool = AtomicBool::new(false);
static SEED: AtomicU64 = AtomicU64::new(0);
/// Told, on every drain point of a CPU, that its earlier buffered stores are now visible (the
/// flush-coverage sanitizer's hook: a cleared entry stops being readable by other CPUs' walks
/// only then).
static DRAIN_HOOK: spin::Once<fn(usize)> = spin::Once::new();

/// Turns the emulation on with the run's seed (once, at boot, before other CPUs start).
pub fn enable(seed: u64) {
    SEED.store(seed, Ordering::Relaxed);
    ENABLED.store(true, Ordering::Release);
}

/// Whether stores are buffered.
#[inline(always)]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Registers the function told of each drain point (at most one; later calls are ignored).
pub fn set_drain_hook(hook: fn(usize)) {
    DRAIN_HOOK.call_once(|| hook);
}

/// Runs `f` with this CPU's buffer and IRQs masked.
fn with_buffer<R>(f: impl FnOnce(usize, &Buffer) -> R) -> R {
    let irq = crate::irq::save_and_mask();
    let cpu = crate::cpu_id() % MAX_CPUS;
    let r = f(cpu, &BUFFERS[cpu]);
    crate::irq::restore(irq);
    r
}

/// Applies one buffered operation to memory.
///
/// # Safety
/// `addr` is a location a caller of [`store_u64`], [`or_u64`], [`add_u32`] or [`add_u64`]
/// buffered, with the width `kind` says; it is still valid (those functions' contract).
unsafe fn apply(addr: usize, kind: u64, value: u64) {
    match kind {
        STORE64 => {
            // SAFETY: the caller's contract: a live, aligned AtomicU64.
            unsafe { &*(addr as *const AtomicU64) }.store(value, Ordering::Release)
        }
        OR64 => {
            // SAFETY: as above.
            unsafe { &*(addr as *const AtomicU64) }.fetch_or(value, Ordering::Release);
        }
        ADD32 => {
            // SAFETY: the caller's contract: a live, aligned AtomicU32.
            unsafe { &*(addr as *const AtomicU32) }.fetch_add(value as u32, Ordering::Release);
        }
        ADD64 => {
            // SAFETY: the caller's contract: a live, aligned AtomicU64.
            unsafe { &*(addr as *const AtomicU64) }.fetch_add(value, Ordering::Release);
        }
        _ => unreachable!("weak: no such buffered operation {kind}"),
    }
}

fn drain_buffer(cpu: usize, b: &Buffer, keep: usize) {
    let len = b.len.load(Ordering::Relaxed);
    let n = len.saturating_sub(keep);
    for i in 0..n {
        let s = &b.slots[i];
        let addr = s.addr.load(Ordering::Relaxed);
        crate::events::mark(crate::events::Kind::Drain, addr as u64, 0);
        // SAFETY: every slot below `len` was filled by a buffering function whose caller
        // promised the location stays valid until this CPU's next drain, which this is.
        unsafe {
            apply(
                addr,
                s.kind.load(Ordering::Relaxed),
                s.value.load(Ordering::Relaxed),
            )
        };
    }
    for i in n..len {
        let (from, to) = (&b.slots[i], &b.slots[i - n]);
        to.addr
            .store(from.addr.load(Ordering::Relaxed), Ordering::Relaxed);
        to.kind
            .store(from.kind.load(Ordering::Relaxed), Ordering::Relaxed);
        to.value
            .store(from.value.load(Ordering::Relaxed), Ordering::Relaxed);
    }
    b.len.store(len - n, Ordering::Relaxed);
    if keep == 0 {
        b.drains.fetch_add(1, Ordering::Relaxed);
    }
    if keep == 0
        && let Some(hook) = DRAIN_HOOK.get()
    {
        hook(cpu);
    }
}

/// This CPU's drain epoch: take it right after a store; [`drained_since`] then says whether
/// that store has reached memory.
pub fn epoch() -> u64 {
    BUFFERS[crate::cpu_id() % MAX_CPUS]
        .drains
        .load(Ordering::Relaxed)
}

/// Whether this CPU's buffer drained whole since [`epoch`] returned `epoch` (always, with the
/// emulation off: stores are visible at once). A store may have reached memory earlier, when a
/// full buffer pushed it out; this answers for certain only "yes".
pub fn drained_since(epoch: u64) -> bool {
    !enabled()
        || BUFFERS[crate::cpu_id() % MAX_CPUS]
            .drains
            .load(Ordering::Relaxed)
            > epoch
}

/// Makes every store this CPU buffered visible, in order: a barrier that orders earlier stores
/// before later accesses. The sanitizer's hook runs even when the buffer was empty (the
/// barrier still ordered whatever this CPU stored directly).
#[inline(always)]
pub fn drain() {
    if enabled() {
        with_buffer(|cpu, b| drain_buffer(cpu, b, 0));
    }
}

/// A yield point's chance to drain (seeded): with yield points as the places where other CPUs
/// are let in, a store survives a few of them before it becomes visible.
pub fn maybe_drain() {
    if enabled() {
        with_buffer(|cpu, b| {
            if b.len.load(Ordering::Relaxed) > 0 && draw(cpu, b).is_multiple_of(DRAIN_ONE_IN) {
                drain_buffer(cpu, b, 0);
            }
        });
    }
}

fn draw(cpu: usize, b: &Buffer) -> u64 {
    let mut x = b.rng.load(Ordering::Relaxed);
    if x == 0 {
        x = (SEED.load(Ordering::Relaxed) ^ 0xa076_1d64_78bd_642f).wrapping_mul(2 * cpu as u64 + 5)
            | 1;
    }
    x = crate::rng::Rng::step(x);
    b.rng.store(x, Ordering::Relaxed);
    x >> 7
}

fn push(addr: usize, kind: u64, value: u64) {
    with_buffer(|cpu, b| {
        if b.len.load(Ordering::Relaxed) == CAPACITY {
            drain_buffer(cpu, b, CAPACITY - 1);
        }
        let i = b.len.load(Ordering::Relaxed);
        let s = &b.slots[i];
        s.addr.store(addr, Ordering::Relaxed);
        s.kind.store(kind, Ordering::Relaxed);
        s.value.store(value, Ordering::Relaxed);
        b.len.store(i + 1, Ordering::Relaxed);
        stats::count(Counter::WeakStoresBuffered);
    });
}

/// This CPU's pending operations on `addr` applied to `value` (read from memory), and whether
/// older stores to other locations were pending (the load passed them).
fn forward(addr: usize, mut value: u64) -> u64 {
    with_buffer(|_, b| {
        let len = b.len.load(Ordering::Relaxed);
        let mut passed = false;
        for s in &b.slots[..len] {
            if s.addr.load(Ordering::Relaxed) != addr {
                passed = true;
                continue;
            }
            let v = s.value.load(Ordering::Relaxed);
            value = match s.kind.load(Ordering::Relaxed) {
                STORE64 => v,
                OR64 => value | v,
                ADD32 => (value as u32).wrapping_add(v as u32) as u64,
                ADD64 => value.wrapping_add(v),
                _ => value,
            };
        }
        if passed {
            stats::count(Counter::WeakLoadsReordered);
        }
        value
    })
}

fn buffers(addr: usize) -> bool {
    with_buffer(|_, b| {
        let len = b.len.load(Ordering::Relaxed);
        b.slots[..len]
            .iter()
            .any(|s| s.addr.load(Ordering::Relaxed) == addr)
    })
}

/// Stores `value` to `a`: buffered with `weak=on`, else `a.store(value, order)`.
///
/// # Safety
/// `a` must stay valid until this CPU's next drain point (a barrier, a lock release, a relax,
/// a tick or a yield point): a page-table entry of a table this CPU cannot free before one.
#[inline(always)]
pub unsafe fn store_u64(a: &AtomicU64, value: u64, order: Ordering) {
    if enabled() {
        push(a as *const AtomicU64 as usize, STORE64, value);
    } else {
        a.store(value, order);
    }
}

/// `a |= bits`, from the one CPU that sets these bits: buffered with `weak=on`.
///
/// # Safety
/// As [`store_u64`].
#[inline(always)]
pub unsafe fn or_u64(a: &AtomicU64, bits: u64, order: Ordering) {
    if enabled() {
        push(a as *const AtomicU64 as usize, OR64, bits);
    } else {
        a.fetch_or(bits, order);
    }
}

/// `a += delta` (wrapping), whose old value the caller does not need: buffered with `weak=on`.
///
/// # Safety
/// As [`store_u64`].
#[inline(always)]
pub unsafe fn add_u32(a: &AtomicU32, delta: u32, order: Ordering) {
    if enabled() {
        push(a as *const AtomicU32 as usize, ADD32, delta as u64);
    } else {
        a.fetch_add(delta, order);
    }
}

/// `a += delta` (wrapping), whose old value the caller does not need: buffered with `weak=on`.
///
/// # Safety
/// As [`store_u64`].
#[inline(always)]
pub unsafe fn add_u64(a: &AtomicU64, delta: u64, order: Ordering) {
    if enabled() {
        push(a as *const AtomicU64 as usize, ADD64, delta);
    } else {
        a.fetch_add(delta, order);
    }
}

/// Loads `a`, seeing this CPU's own buffered stores to it.
#[inline(always)]
pub fn load_u64(a: &AtomicU64, order: Ordering) -> u64 {
    let v = a.load(order);
    if enabled() {
        forward(a as *const AtomicU64 as usize, v)
    } else {
        v
    }
}

/// Loads `a`, seeing this CPU's own buffered stores to it.
#[inline(always)]
pub fn load_u32(a: &AtomicU32, order: Ordering) -> u32 {
    let v = a.load(order);
    if enabled() {
        forward(a as *const AtomicU32 as usize, v as u64) as u32
    } else {
        v
    }
}

/// Before an atomic read-modify-write of `addr` (an `AtomicU64` or `AtomicU32` this CPU may
/// have buffered stores to): drains them, so the RMW acts on the latest value.
#[inline(always)]
pub fn before_rmw<T>(a: &T) {
    if enabled() && buffers(a as *const T as usize) {
        drain();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static A: AtomicU64 = AtomicU64::new(0);
    static B: AtomicU64 = AtomicU64::new(0);
    static C: AtomicU32 = AtomicU32::new(5);

    // One test: the emulation is global state.
    #[test]
    fn stores_wait_in_order_and_own_loads_see_them() {
        // SAFETY: statics live forever.
        unsafe { store_u64(&A, 1, Ordering::Release) };
        assert_eq!(A.load(Ordering::Relaxed), 1, "off: a plain store");
        enable(3);
        // SAFETY: as above.
        unsafe {
            store_u64(&A, 7, Ordering::Release);
            or_u64(&B, 0b100, Ordering::Release);
            add_u32(&C, 2, Ordering::Release);
        }
        assert_eq!(A.load(Ordering::Relaxed), 1, "not visible before a drain");
        assert_eq!(
            load_u64(&A, Ordering::Relaxed),
            7,
            "but forwarded to its own CPU"
        );
        assert_eq!(load_u64(&B, Ordering::Relaxed), 0b100);
        assert_eq!(load_u32(&C, Ordering::Relaxed), 7);
        before_rmw(&B);
        assert_eq!(
            A.load(Ordering::Relaxed),
            7,
            "an RMW of a buffered location drains"
        );
        assert_eq!(C.load(Ordering::Relaxed), 7);
        // A full buffer drains its oldest entry.
        for i in 0..CAPACITY as u64 + 1 {
            // SAFETY: as above.
            unsafe { store_u64(&A, 100 + i, Ordering::Release) };
        }
        assert_eq!(A.load(Ordering::Relaxed), 100, "the oldest went to memory");
        assert_eq!(load_u64(&A, Ordering::Relaxed), 100 + CAPACITY as u64);
        drain();
        assert_eq!(A.load(Ordering::Relaxed), 100 + CAPACITY as u64);
        ENABLED.store(false, Ordering::Relaxed);
    }
}
