//! Sched-RCU for broadside: grace periods without IPIs, so that page-table pages a lockless
//! walker may still be reading are freed only after every such walk has ended ([rule 2](broadside_base::rules#rule-2)).
//!
//! # The read side is "IRQs masked"
//! A lockless walk runs with IRQs masked from its first read of the root to its last re-check
//! ([rule 3](broadside_base::rules#rule-3)). That masked window *is* the read-side critical section, as in Linux's
//! sched-RCU flavour (`rcu_read_lock_sched()` / GUP-fast's `local_irq_save()`), so this module
//! has no reader API. A CPU is in a *quiescent state* (QS) whenever it is outside such a window.
//! The kernel reports one with [`Rcu::note_quiescent_state`] from places that prove it:
//! - the timer tick (an interrupt that was taken means IRQs were unmasked, so no walk was open;
//!   Linux's `rcu_sched_clock_irq` → `rcu_qs`),
//! - explicit points in workload loops, between walks,
//! - idle: a CPU that sleeps in `WFI` is in an *extended* quiescent state (EQS), entered and left
//!   with [`Rcu::idle_enter`] / [`Rcu::idle_exit`]. The engine never waits for an idle CPU.
//!
//! # Grace-period sequence number
//! `gp_seq` works like Linux's `rcu_seq_*` helpers (`kernel/rcu/rcu.h`) with one state bit:
//! bit 0 set means a grace period (GP) is in progress; `gp_seq >> 1` is the number of completed
//! GPs. Starting a GP turns `2n` into `2n + 1` (`rcu_seq_start`), completing it turns that into
//! `2n + 2` (`rcu_seq_end`). A waiter that needs "a full GP that starts after now" takes the
//! snapshot `(gp_seq + 3) & !1` (`rcu_seq_snap`) and is done once `gp_seq >= snap`
//! (`rcu_seq_done`): when no GP runs that is the end of the next one; when one already runs,
//! that one may have started before the caller's unpublish, so it is the end of the one after.
//! A u64 does not wrap in the lifetime of a machine, so comparisons are plain `>=`.
//!
//! # The engine (no IPIs, no kthread)
//! Linux drives GPs from a kthread over a tree of `rcu_node`s. broadside's is flat: one
//! `gp_lock` protects the GP bookkeeping (who still owes a QS, the EQS snapshots, the newest
//! GP anyone asked for). It is taken only to start or end a GP, once per CPU per GP to report
//! a QS, when callbacks need a GP number, and by waiters scanning for idle CPUs; never on the
//! fast path. Progress comes from the CPUs themselves:
//! - **Start** (`rcu_gp_init` + `rcu_watching_snap_save`): whoever asks for a GP while none
//!   runs starts it, snapshotting every CPU's EQS counter; a CPU idle at the snapshot owes
//!   nothing. If every CPU is idle the GP ends on the spot.
//! - **Report** (`rcu_report_qs_rdp`): a CPU that notices a GP it has not reported for takes
//!   the lock once and clears its bit. The last reporter ends the GP (`rcu_gp_cleanup`) and,
//!   if somebody asked for a later GP meanwhile, starts that one.
//! - **Scan** (`force_qs_rnp` + `rcu_watching_snap_recheck`): a CPU that reports its own QS, a
//!   CPU whose callbacks wait for the current GP, and any `synchronize_rcu`/`rcu_barrier`
//!   waiter look at the CPUs still owing a QS. One whose EQS counter is even (idle now) or has
//!   changed since the snapshot (went idle since) is reported on its behalf. So a CPU that went
//!   to sleep without reporting never holds a GP up, and no CPU waits for another to take an
//!   interrupt.
//!
//! # EQS counter
//! Per CPU, like the `rcu_watching` counter of Linux's context tracking (`ct_kernel_exit` /
//! `ct_kernel_enter`): odd = running (RCU is watching), even = idle in an EQS. It starts at 1
//! because [`Rcu::new`] is called after every CPU is online and running. Each idle entry and
//! exit adds 1, so "even now" means "idle now", and "differs from the snapshot" means "passed
//! through idle since the snapshot", which the scanner can tell without waiting for that CPU.
//!
//! # Memory ordering (why a QS after the GP start is enough)
//! An updater unpublishes an object (a store, e.g. clearing a table descriptor), then queues a
//! callback or calls `synchronize_rcu`. Callbacks run, and `synchronize_rcu` returns, only after
//! `gp_seq` reached a value that a GP started *after* the unpublish produced (the snapshot is
//! taken under `gp_lock`, after the unpublish in program order, and GPs start under the same
//! lock, so "started after" is the lock order). For each CPU, one of three things ended it:
//! 1. *It reported a QS under `gp_lock`*. Its read sections before the report happen-before its
//!    lock release, hence the completer's acquisition, hence the completer's `Release` store of
//!    the new `gp_seq`, hence the `Acquire` load that lets a callback run. Read sections after
//!    the report start after an acquisition that follows the start (lock order), which follows
//!    the unpublish: they cannot see the old pointer.
//! 2. *It was idle at the snapshot*. This is the classic store-buffer pattern: the starter does
//!    (unpublish, which happens-before) `fence(SeqCst)`; load EQS counter, while the waking CPU
//!    does store EQS counter (odd); `fence(SeqCst)`; load pointer. With a `SeqCst` fence on both
//!    sides (C++20 [atomics.order]: fences ordered by the coherence of the counter), either the
//!    starter sees the CPU running (and waits for a QS) or the CPU's reads after waking see the
//!    unpublish. Without both fences, each side could read the other's old value. The counter
//!    the starter read was written by `idle_enter` with `Release` and is loaded with `Acquire`,
//!    so the CPU's read sections before it fell asleep happen-before the start too.
//! 3. *It went idle after the snapshot* (found by a scan). Its read sections before sleeping
//!    happen-before the scanner through the `Release` increment in `idle_enter` and the
//!    scanner's `Acquire` load (later increments are RMWs and extend the release sequence);
//!    its read sections after waking follow the fence in `idle_exit`, and the same fence
//!    argument as in 2 (the starter read the counter *before* that idle entry) shows they see
//!    the unpublish.
//!
//! # Callback lists
//! Per CPU, one FIFO cut into segments like Linux's `rcu_segcblist`: DONE (GP over, ready to
//! invoke) | WAIT (needs `gp_seq >= wait_seq`) | NEXT_READY (needs `gp_seq >= ready_seq`) |
//! NEXT (no GP number yet). [`Rcu::call_rcu`] appends to NEXT; [`Rcu::poll`] advances
//! (`rcu_segcblist_advance`), gives NEXT a GP number under `gp_lock` and asks for that GP
//! (`rcu_accelerate_cbs` + `rcu_start_this_gp`), then invokes DONE (`rcu_do_batch`). Segments are
//! contiguous ranges of one `VecDeque`, so moving callbacks between segments moves indices only.
//! Each list is behind a spin lock. Its own CPU is the only one that queues to it and invokes
//! from it; other CPUs lock it only to read counts ([`Rcu::callback_segments`]), which
//! [`Rcu::queued_callbacks`] avoids by reading counters. FIFO order per CPU is what makes
//! [`Rcu::rcu_barrier`] a comparison of two counters rather than a callback on every CPU.
//!
//! # Integration contract
//! - The per-CPU and GP locks do not mask IRQs, and the tick calls into this module. So every
//!   call is made with IRQs masked (the tick handler already is), and callbacks run masked.
//!   No lock of this module is held when a call returns, when a callback runs, or while the
//!   `quiescent` closure of [`Rcu::synchronize_rcu`] / [`Rcu::rcu_barrier`] runs; that
//!   closure may unmask IRQs (a tick then calls in safely), a callback may not (see `poll`).
//! - The tick calls `note_quiescent_state(cpu)` then `poll(cpu)`; workload loops call them
//!   between walks. The idle loop calls `poll(cpu)`, `idle_enter(cpu)`, sleeps, and calls
//!   `idle_exit(cpu)` before anything that may start a walk (IRQ handlers included).
//! - A CPU's callbacks advance only through its own `poll`: a CPU that stops polling keeps its
//!   callbacks (this is also what `rcu_barrier` relies on).
//! - Lock order: a CPU's callback lock, then `gp_lock`. Nothing takes them the other way round.
//! - `cpu` arguments are indices `0..ncpus`; anything else panics (an indexing bug in the
//!   caller, not a state to recover from).

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;

use self::shim::{AtomicU64, Lock, Ordering, fence};

/// Atomics and a lock that are the real ones in the kernel and loom's models under `cfg(loom)`.
mod shim {
    #[cfg(not(loom))]
    pub(super) use core::sync::atomic::{AtomicU64, Ordering, fence};
    #[cfg(loom)]
    pub(super) use loom::sync::atomic::{AtomicU64, Ordering, fence};

    #[cfg(not(loom))]
    pub(super) type LockGuard<'a, T> = broadside_base::hint::MutexGuard<'a, T>;
    #[cfg(loom)]
    pub(super) type LockGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

    /// `spin::Mutex` relaxing with `YIELD` in the kernel (it does not mask IRQs: see the integration contract),
    /// `loom::sync::Mutex` under loom.
    pub(super) struct Lock<T> {
        #[cfg(not(loom))]
        inner: broadside_base::hint::Mutex<T>,
        #[cfg(loom)]
        inner: loom::sync::Mutex<T>,
    }

    impl<T> Lock<T> {
        pub(super) fn new(value: T) -> Self {
            #[cfg(not(loom))]
            let inner = broadside_base::hint::Mutex::new(value);
            #[cfg(loom)]
            let inner = loom::sync::Mutex::new(value);
            Self { inner }
        }

        pub(super) fn lock(&self) -> LockGuard<'_, T> {
            #[cfg(not(loom))]
            let guard = self.inner.lock();
            // A panic while holding the lock ends the loom model anyway; poisoning adds nothing.
            #[cfg(loom)]
            let guard = self
                .inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            guard
        }

        pub(super) fn try_lock(&self) -> Option<LockGuard<'_, T>> {
            #[cfg(not(loom))]
            let guard = self.inner.try_lock();
            #[cfg(loom)]
            let guard = self.inner.try_lock().ok();
            guard
        }
    }
}

/// A deferred action, queued by [`Rcu::call_rcu`]: it runs once, on the CPU that queued it,
/// after a grace period, and owns what it frees (a closure that moved it in). Boxed, so one
/// list holds callbacks of every type; a closure that captures nothing is not allocated, one
/// that captures a batch (a `Vec`) costs one allocation of the batch's three words.
struct RcuCallback(Box<dyn FnOnce() + Send>);

impl RcuCallback {
    fn invoke(self) {
        (self.0)();
    }
}

/// Callback counts per segment of one CPU's list, oldest first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallbackSegments {
    /// Their GP has ended; the next `poll` on that CPU invokes them.
    pub done: usize,
    /// Waiting for the older of the (at most two) GP numbers in use.
    pub waiting: usize,
    /// Waiting for the newer GP number.
    pub next_ready: usize,
    /// Not yet given a GP number (queued since that CPU's last `poll`).
    pub next: usize,
}

/// `rcu_seq_state`: is a GP in progress?
const fn seq_in_progress(seq: u64) -> bool {
    seq & 1 == 1
}

/// `rcu_seq_snap`: the `gp_seq` value at which a GP that starts after `seq` was read has ended.
const fn seq_snap(seq: u64) -> u64 {
    (seq + 3) & !1
}

/// `rcu_seq_done`: has `gp_seq` reached the target `snap`?
const fn seq_done(current: u64, snap: u64) -> bool {
    current >= snap
}

/// `rcu_seq_ctr`: how many GPs have completed when `gp_seq` is `seq`.
const fn seq_completed(seq: u64) -> u64 {
    seq >> 1
}

/// An EQS counter value with bit 0 clear means the CPU is idle.
const fn eqs_idle(counter: u64) -> bool {
    counter & 1 == 0
}

/// One CPU's callbacks in a single FIFO, cut into segments by three indices:
/// `[0, done_end)` DONE, `[done_end, wait_end)` WAIT, `[wait_end, ready_end)` NEXT_READY,
/// `[ready_end, len)` NEXT.
struct SegmentedCallbacks {
    cbs: VecDeque<RcuCallback>,
    done_end: usize,
    wait_end: usize,
    ready_end: usize,
    /// GP target of WAIT (meaningful only when WAIT is not empty).
    wait_seq: u64,
    /// GP target of NEXT_READY (meaningful only when NEXT_READY is not empty).
    ready_seq: u64,
}

impl SegmentedCallbacks {
    const fn new() -> Self {
        Self {
            cbs: VecDeque::new(),
            done_end: 0,
            wait_end: 0,
            ready_end: 0,
            wait_seq: 0,
            ready_seq: 0,
        }
    }

    fn push_next(&mut self, cb: RcuCallback) {
        self.cbs.push_back(cb);
    }

    fn has_next(&self) -> bool {
        self.cbs.len() > self.ready_end
    }

    fn has_waiting(&self) -> bool {
        self.ready_end > self.done_end
    }

    /// `rcu_segcblist_advance`: move every segment whose GP has ended (per `completed`, a
    /// `gp_seq` value) into DONE, and slide NEXT_READY down into an emptied WAIT.
    fn advance(&mut self, completed: u64) {
        if self.wait_end > self.done_end && seq_done(completed, self.wait_seq) {
            self.done_end = self.wait_end;
        }
        if self.wait_end == self.done_end && self.ready_end > self.wait_end {
            if seq_done(completed, self.ready_seq) {
                self.done_end = self.ready_end;
            } else {
                self.wait_seq = self.ready_seq;
            }
            self.wait_end = self.ready_end;
        }
    }

    /// `rcu_segcblist_accelerate`: give NEXT the GP target `snap`, merging it into the
    /// segment that already waits for `snap` if there is one. Returns whether NEXT was
    /// assigned (the caller must then make sure GP `snap` is requested).
    ///
    /// Called right after `advance` with the same, current `gp_seq` under `gp_lock`. Then the
    /// targets still pending are above `gp_seq` and at most `snap`: only `snap` when no GP
    /// runs, `gp_seq + 1` and `snap` when one does, so a segment for `snap` is always free.
    fn accelerate(&mut self, snap: u64) -> bool {
        let len = self.cbs.len();
        if len == self.ready_end {
            return false;
        }
        let wait_empty = self.wait_end == self.done_end;
        let ready_empty = self.ready_end == self.wait_end;
        if !ready_empty {
            // NEXT_READY is in use; it can only be for `snap` (see above): merge into it.
            debug_assert_eq!(self.ready_seq, snap, "no free segment for GP target {snap}");
            if self.ready_seq != snap {
                // Leave them in NEXT (safe: they only wait longer); an advance makes room.
                return false;
            }
        } else if wait_empty {
            // NEXT becomes WAIT.
            self.wait_seq = snap;
            self.wait_end = len;
        } else if self.wait_seq == snap {
            // Merge into WAIT.
            self.wait_end = len;
        } else {
            // NEXT becomes NEXT_READY.
            self.ready_seq = snap;
        }
        self.ready_end = len;
        true
    }

    fn pop_done(&mut self) -> Option<RcuCallback> {
        if self.done_end == 0 {
            return None;
        }
        let cb = self.cbs.pop_front();
        self.done_end -= 1;
        self.wait_end -= 1;
        self.ready_end -= 1;
        cb
    }

    fn segments(&self) -> CallbackSegments {
        CallbackSegments {
            done: self.done_end,
            waiting: self.wait_end - self.done_end,
            next_ready: self.ready_end - self.wait_end,
            next: self.cbs.len() - self.ready_end,
        }
    }
}

/// One CPU's RCU state, alone on its cache line(s): the owner writes it on every tick and
/// other CPUs' scans read its EQS counter, so sharing a line with a neighbour would bounce it.
#[repr(align(64))]
struct PerCpu {
    /// EQS counter: odd = running, even = idle (see the module docs).
    eqs_counter: AtomicU64,
    /// The `gp_seq` (odd) of the last GP this CPU's QS was counted for, by itself or because
    /// it was found idle. Written under `gp_lock`; read lock-free by the owner's fast path.
    qs_reported_for_gp: AtomicU64,
    /// Callbacks ever queued on this CPU. Written by the owner under `callbacks`.
    cbs_queued: AtomicU64,
    /// Callbacks of this CPU that have run to completion.
    cbs_invoked: AtomicU64,
    callbacks: Lock<SegmentedCallbacks>,
}

impl PerCpu {
    fn new() -> Self {
        Self {
            eqs_counter: AtomicU64::new(1),
            qs_reported_for_gp: AtomicU64::new(0),
            cbs_queued: AtomicU64::new(0),
            cbs_invoked: AtomicU64::new(0),
            callbacks: Lock::new(SegmentedCallbacks::new()),
        }
    }
}

/// GP bookkeeping, all under `gp_lock`.
struct GpState {
    /// `rcu_state.gp_seq_needed`: the highest GP target anybody asked for.
    gp_seq_needed: u64,
    /// Per CPU: still owes a QS for the current GP.
    owes_qs: Vec<bool>,
    /// Per CPU: EQS counter read at the start of the current GP (odd; only for CPUs that owe).
    eqs_snapshot: Vec<u64>,
    /// How many entries of `owes_qs` are set.
    owing: usize,
    /// Time source reading when the current GP started.
    gp_started_at: u64,
    time_source: Option<fn() -> u64>,
}

impl GpState {
    fn now(&self) -> u64 {
        self.time_source.map_or(0, |now| now())
    }
}

/// Hot, mostly-read global words, kept off the line that `gp_lock`'s lock word bounces on.
#[repr(align(64))]
struct GpCounters {
    /// See "Grace-period sequence number". Written only under `gp_lock`.
    gp_seq: AtomicU64,
    /// Completed GPs; equals `gp_seq >> 1` once the completion is visible.
    grace_periods: AtomicU64,
    /// Longest GP seen, in time-source units.
    max_gp_ticks: AtomicU64,
}

#[repr(align(64))]
struct CacheAligned<T>(T);

/// The RCU engine for a fixed set of CPUs. See the module docs.
pub struct Rcu {
    counters: GpCounters,
    gp_lock: CacheAligned<Lock<GpState>>,
    cpus: Vec<PerCpu>,
}

impl Rcu {
    /// An engine for CPUs `0..ncpus`, all running (call it once every CPU is online).
    ///
    /// # Panics
    /// If `ncpus` is 0.
    pub fn new(ncpus: usize) -> Self {
        assert!(ncpus > 0, "RCU needs at least one CPU");
        Self {
            counters: GpCounters {
                gp_seq: AtomicU64::new(0),
                grace_periods: AtomicU64::new(0),
                max_gp_ticks: AtomicU64::new(0),
            },
            gp_lock: CacheAligned(Lock::new(GpState {
                gp_seq_needed: 0,
                owes_qs: alloc::vec![false; ncpus],
                eqs_snapshot: alloc::vec![0; ncpus],
                owing: 0,
                gp_started_at: 0,
                time_source: None,
            })),
            cpus: (0..ncpus).map(|_| PerCpu::new()).collect(),
        }
    }

    /// Tell the engine how to read the time (e.g. the generic timer's count, or ticks) so that
    /// [`Rcu::max_gp_ticks`] can be measured. Without one, GP lengths read as 0.
    pub fn set_time_source(&self, now: fn() -> u64) {
        self.gp_lock.0.lock().time_source = Some(now);
    }

    /// Report that `cpu` is outside any read-side critical section (`rcu_qs` +
    /// `rcu_report_qs_rdp`). Two relaxed loads when no GP needs this CPU.
    pub fn note_quiescent_state(&self, cpu: usize) {
        // Relaxed is enough for the fast path: it only decides whether to take the lock, and
        // the slow path re-checks everything under it. A stale value delays a report to the
        // next QS point; it can never make a wrong one.
        let gp_seq = self.counters.gp_seq.load(Ordering::Relaxed);
        if !seq_in_progress(gp_seq)
            || self.cpus[cpu].qs_reported_for_gp.load(Ordering::Relaxed) == gp_seq
        {
            return;
        }
        let mut gp = self.gp_lock.0.lock();
        self.report_qs_locked(&mut gp, cpu);
        // We hold the lock anyway: let CPUs that went idle off the hook too.
        self.scan_idle_cpus_locked(&mut gp);
    }

    /// `cpu` enters an extended quiescent state (idle in `WFI`); `ct_kernel_exit` in Linux.
    pub fn idle_enter(&self, cpu: usize) {
        // Release: every read section this CPU ran before going idle happens-before any
        // Acquire load (GP start snapshot or scan) that sees this value or a later one (the
        // increments are RMWs, so they extend the release sequence). No fence is needed here:
        // nothing this CPU does after this store reads RCU-protected data.
        #[cfg(not(loom))]
        broadside_base::weak::before_rmw(&self.cpus[cpu].eqs_counter);
        let old = self.cpus[cpu].eqs_counter.fetch_add(1, Ordering::Release);
        debug_assert!(!eqs_idle(old), "cpu {cpu}: idle_enter while already idle");
    }

    /// The waking CPU's store of its EQS counter (odd again), returning the old value. In the
    /// kernel with `weak=on` it waits in the CPU's emulated store buffer until the fence that
    /// follows (`broadside_base::weak`), as the store of a store-buffer handshake may.
    #[cfg(not(loom))]
    fn wake_store(&self, cpu: usize) -> u64 {
        let counter = &self.cpus[cpu].eqs_counter;
        if broadside_base::weak::enabled() {
            let old = broadside_base::weak::load_u64(counter, Ordering::Relaxed);
            // SAFETY: the engine lives for the whole run (the kernel's is a static).
            unsafe { broadside_base::weak::add_u64(counter, 1, Ordering::Relaxed) };
            old
        } else {
            counter.fetch_add(1, Ordering::Relaxed)
        }
    }

    #[cfg(loom)]
    fn wake_store(&self, cpu: usize) -> u64 {
        self.cpus[cpu].eqs_counter.fetch_add(1, Ordering::Relaxed)
    }

    /// `cpu` leaves its extended quiescent state; `ct_kernel_enter` in Linux.
    ///
    /// Must be called before the CPU may start a read-side section (IRQ handlers included).
    pub fn idle_exit(&self, cpu: usize) {
        // The increment itself is Relaxed; ordering comes from the fence. The fence orders
        // this store (and the idle_enter store before it) against every later load of
        // RCU-protected pointers: the store-buffer pattern of the module docs, cases 2 and 3.
        // Without it, a read after waking could see a pointer unpublished before a GP start
        // that read this counter as idle, and the GP could end while that read is in use.
        let old = self.wake_store(cpu);
        #[cfg(not(loom))]
        if crate::planted::rcu_snapshot_early() {
            // bug=rcu-snapshot-early: no fence; the odd value may stay in this CPU's store
            // buffer (weak=on) while its first reads go ahead.
            debug_assert!(eqs_idle(old), "cpu {cpu}: idle_exit while running");
            return;
        }
        fence(Ordering::SeqCst);
        #[cfg(not(loom))]
        broadside_base::weak::drain();
        debug_assert!(eqs_idle(old), "cpu {cpu}: idle_exit while running");
    }

    /// Queue `cb` on `cpu` to run on `cpu` after a grace period that starts after this call.
    /// Takes no global lock: the next `poll(cpu)` gives it a GP number (`call_rcu`).
    ///
    /// `cb` owns what it frees (move it in); it runs with the IRQ state of the `poll` that
    /// invokes it (masked in the kernel: a tick or the idle loop), so it must not unmask IRQs
    /// or wait for other CPUs.
    pub fn call_rcu(&self, cpu: usize, cb: impl FnOnce() + Send + 'static) {
        let cb = RcuCallback(Box::new(cb));
        let this = &self.cpus[cpu];
        let mut cbs = this.callbacks.lock();
        cbs.push_next(cb);
        // Relaxed: rcu_barrier reads this only for calls that happen-before it, which
        // coherence already makes visible; diagnostics tolerate a stale count.
        this.cbs_queued.fetch_add(1, Ordering::Relaxed);
    }

    /// Move `cpu`'s callbacks along and invoke the ready ones here, with the caller's IRQ
    /// state (`rcu_core`: `rcu_advance_cbs`, `rcu_accelerate_cbs`, `rcu_do_batch`). Returns
    /// how many callbacks ran.
    ///
    /// Callbacks must not unmask IRQs: a tick's `poll` nested inside one would run later
    /// callbacks before it finishes, and `rcu_barrier` counts on per-CPU FIFO completion.
    pub fn poll(&self, cpu: usize) -> usize {
        let this = &self.cpus[cpu];
        {
            let mut cbs = this.callbacks.lock();
            // Acquire pairs with the completer's Release store of `gp_seq`: the read
            // sections that GP waited for happen-before the callbacks this makes DONE.
            cbs.advance(self.counters.gp_seq.load(Ordering::Acquire));
            if cbs.has_next() {
                let mut gp = self.gp_lock.0.lock();
                // Under the lock the value is current, and this lock section comes after
                // the caller's unpublish, so `snap` names a GP that starts after it.
                let gp_seq = self.counters.gp_seq.load(Ordering::Relaxed);
                cbs.advance(gp_seq);
                let snap = seq_snap(gp_seq);
                if cbs.accelerate(snap) {
                    self.request_gp_locked(&mut gp, snap);
                }
                // This CPU now has a stake in the current GP: help it end.
                self.scan_idle_cpus_locked(&mut gp);
            } else if cbs.has_waiting()
                && let Some(mut gp) = self.gp_lock.0.try_lock()
            {
                self.scan_idle_cpus_locked(&mut gp);
            }
            // A GP may have ended just now (by our scan, or elsewhere).
            cbs.advance(self.counters.gp_seq.load(Ordering::Acquire));
        }
        let mut invoked = 0;
        loop {
            // Pop under the lock, run without it: a callback may call `call_rcu` on this
            // CPU, and the spin lock is not reentrant.
            let Some(cb) = this.callbacks.lock().pop_done() else {
                break;
            };
            cb.invoke();
            invoked += 1;
            // Release: pairs with rcu_barrier's Acquire, so a barrier that sees this count
            // also sees everything the callback did.
            this.cbs_invoked.fetch_add(1, Ordering::Release);
        }
        invoked
    }

    /// Wait for a full grace period that starts after this call (`synchronize_rcu`), calling
    /// `quiescent` between checks (it should relax: `spin_loop`, `WFE`, or the CPU's other
    /// periodic work). The waiting CPU is reported quiescent here on every check, since it is
    /// outside any read section while it waits, and it scans for idle CPUs.
    ///
    /// A GP already in progress cannot be joined (it may have started before the caller's
    /// unpublish); one asked for by others with the same target is. Call it with IRQs masked
    /// and never from inside a read-side section; `quiescent` may unmask IRQs.
    pub fn synchronize_rcu(&self, cpu: usize, mut quiescent: impl FnMut()) {
        let snap = {
            let mut gp = self.gp_lock.0.lock();
            let snap = seq_snap(self.counters.gp_seq.load(Ordering::Relaxed));
            self.request_gp_locked(&mut gp, snap);
            snap
        };
        // Acquire pairs with the completer's Release store: every read section the GP waited
        // for happens-before the caller's next step (freeing).
        while !seq_done(self.counters.gp_seq.load(Ordering::Acquire), snap) {
            self.note_quiescent_state(cpu);
            self.try_scan_idle_cpus();
            quiescent();
        }
    }

    /// Wait until every callback queued (on any CPU) before this call has run (`rcu_barrier`).
    ///
    /// Polls `cpu`'s own list, reports `cpu` quiescent and calls `quiescent` while waiting.
    /// Other CPUs' callbacks run on those CPUs, so this relies on each of them calling `poll`
    /// (from its tick or idle loop); it sends no IPI to make them. Per-CPU FIFO order means
    /// "the callbacks queued before" are done once each CPU's invoked count reaches its queued
    /// count as read at the call. Same IRQ rules as [`Rcu::synchronize_rcu`]; never call it
    /// from a callback (it would wait for itself).
    pub fn rcu_barrier(&self, cpu: usize, mut quiescent: impl FnMut()) {
        let targets: Vec<u64> = self
            .cpus
            .iter()
            .map(|c| c.cbs_queued.load(Ordering::Relaxed))
            .collect();
        loop {
            // Acquire pairs with the Release increment after each callback returns.
            let all_done = self
                .cpus
                .iter()
                .zip(&targets)
                .all(|(c, &target)| c.cbs_invoked.load(Ordering::Acquire) >= target);
            if all_done {
                return;
            }
            self.note_quiescent_state(cpu);
            self.poll(cpu);
            self.try_scan_idle_cpus();
            quiescent();
        }
    }

    /// Ask for the GP that ends at `snap` and start a GP now if none is running
    /// (`rcu_start_this_gp`).
    fn request_gp_locked(&self, gp: &mut GpState, snap: u64) {
        gp.gp_seq_needed = gp.gp_seq_needed.max(snap);
        self.start_gp_if_needed_locked(gp);
    }

    /// Start GPs while one is wanted and none runs (`rcu_gp_init`, snapshotting EQS counters
    /// like `rcu_watching_snap_save`); a GP nobody owes a QS for ends at once.
    fn start_gp_if_needed_locked(&self, gp: &mut GpState) {
        loop {
            let gp_seq = self.counters.gp_seq.load(Ordering::Relaxed);
            if seq_in_progress(gp_seq) || seq_done(gp_seq, gp.gp_seq_needed) {
                return;
            }
            let new_gp = gp_seq + 1;
            // The starter's half of the store-buffer pattern (module docs, case 2): the
            // unpublish that happens-before this point must be ordered before the EQS counter
            // loads below, against the waking CPU's counter store + fence + pointer load.
            fence(Ordering::SeqCst);
            gp.owing = 0;
            for (cpu, this) in self.cpus.iter().enumerate() {
                // Acquire: an idle value was stored with Release by idle_enter, so that CPU's
                // read sections before sleeping happen-before this GP.
                let counter = this.eqs_counter.load(Ordering::Acquire);
                if eqs_idle(counter) {
                    gp.owes_qs[cpu] = false;
                    this.qs_reported_for_gp.store(new_gp, Ordering::Relaxed);
                } else {
                    gp.owes_qs[cpu] = true;
                    gp.eqs_snapshot[cpu] = counter;
                    gp.owing += 1;
                }
            }
            gp.gp_started_at = gp.now();
            // Relaxed: anyone who acts on a GP being in progress takes gp_lock first.
            self.counters.gp_seq.store(new_gp, Ordering::Relaxed);
            if gp.owing > 0 {
                return;
            }
            self.complete_gp_locked(gp);
        }
    }

    /// Count `cpu`'s QS for the current GP if it still owes one; the last one ends the GP and
    /// starts the next if one was asked for (`rcu_report_qs_rnp`).
    fn report_qs_locked(&self, gp: &mut GpState, cpu: usize) {
        let gp_seq = self.counters.gp_seq.load(Ordering::Relaxed);
        if !seq_in_progress(gp_seq) || !gp.owes_qs[cpu] {
            return;
        }
        gp.owes_qs[cpu] = false;
        self.cpus[cpu]
            .qs_reported_for_gp
            .store(gp_seq, Ordering::Relaxed);
        gp.owing -= 1;
        if gp.owing == 0 {
            self.complete_gp_locked(gp);
            self.start_gp_if_needed_locked(gp);
        }
    }

    /// `rcu_gp_cleanup`: end the current GP.
    fn complete_gp_locked(&self, gp: &mut GpState) {
        let gp_seq = self.counters.gp_seq.load(Ordering::Relaxed);
        debug_assert!(seq_in_progress(gp_seq));
        let length = gp.now().saturating_sub(gp.gp_started_at);
        // Counters first, then gp_seq with Release: whoever sees the GP as complete (Acquire)
        // also sees them, so grace_periods == completed_gp() for such an observer.
        if length > self.counters.max_gp_ticks.load(Ordering::Relaxed) {
            self.counters.max_gp_ticks.store(length, Ordering::Relaxed);
        }
        let done = self.counters.grace_periods.load(Ordering::Relaxed);
        self.counters
            .grace_periods
            .store(done + 1, Ordering::Relaxed);
        // Release: the QS reports of this GP (each under gp_lock, which we hold) and so the
        // read sections before them happen-before any Acquire load that sees the new value,
        // after which callbacks run and synchronize_rcu returns.
        self.counters.gp_seq.store(gp_seq + 1, Ordering::Release);
    }

    /// `force_qs_rnp` with `rcu_watching_snap_recheck`: report every CPU that owes a QS but is
    /// idle now or has been idle since the GP started.
    fn scan_idle_cpus_locked(&self, gp: &mut GpState) {
        let gp_seq = self.counters.gp_seq.load(Ordering::Relaxed);
        if !seq_in_progress(gp_seq) {
            return;
        }
        for (cpu, this) in self.cpus.iter().enumerate() {
            if self.counters.gp_seq.load(Ordering::Relaxed) != gp_seq {
                // This GP ended (and maybe another began) during the scan: its CPUs' state is
                // fresh, leave it for the next scan.
                return;
            }
            if !gp.owes_qs[cpu] {
                continue;
            }
            // Acquire: pairs with idle_enter's Release (module docs, case 3).
            let counter = this.eqs_counter.load(Ordering::Acquire);
            if eqs_idle(counter) || counter != gp.eqs_snapshot[cpu] {
                self.report_qs_locked(gp, cpu);
            }
        }
    }

    /// A scan, unless someone else holds `gp_lock` (then they are making progress already).
    fn try_scan_idle_cpus(&self) {
        if let Some(mut gp) = self.gp_lock.0.try_lock() {
            self.scan_idle_cpus_locked(&mut gp);
        }
    }

    /// Number of CPUs taking part.
    pub fn ncpus(&self) -> usize {
        self.cpus.len()
    }

    /// Raw grace-period sequence number (bit 0 = GP in progress).
    pub fn gp_seq(&self) -> u64 {
        self.counters.gp_seq.load(Ordering::Relaxed)
    }

    /// Whether a GP is in progress.
    pub fn gp_in_progress(&self) -> bool {
        seq_in_progress(self.gp_seq())
    }

    /// Number of the last completed GP (GPs are numbered from 1; 0 = none yet).
    pub fn completed_gp(&self) -> u64 {
        seq_completed(self.counters.gp_seq.load(Ordering::Acquire))
    }

    /// Counter `grace_periods`: GPs completed, including ones that ended at their start
    /// because every CPU was idle.
    pub fn grace_periods(&self) -> u64 {
        self.counters.grace_periods.load(Ordering::Relaxed)
    }

    /// Counter `callbacks_invoked`: callbacks run so far, summed over CPUs.
    pub fn callbacks_invoked(&self) -> u64 {
        self.cpus
            .iter()
            .map(|c| c.cbs_invoked.load(Ordering::Relaxed))
            .sum()
    }

    /// Counter `max_gp_ticks`: the longest GP, start to end, in time-source units.
    pub fn max_gp_ticks(&self) -> u64 {
        self.counters.max_gp_ticks.load(Ordering::Relaxed)
    }

    /// The `gp_seq` (odd) of the last GP whose QS `cpu` has been counted for (0 = none).
    pub fn qs_reported_for_gp(&self, cpu: usize) -> u64 {
        self.cpus[cpu].qs_reported_for_gp.load(Ordering::Relaxed)
    }

    /// Whether `cpu` is idle in an extended quiescent state.
    pub fn in_eqs(&self, cpu: usize) -> bool {
        eqs_idle(self.eqs_counter(cpu))
    }

    /// `cpu`'s EQS counter (odd = running, even = idle; +1 per transition).
    pub fn eqs_counter(&self, cpu: usize) -> u64 {
        self.cpus[cpu].eqs_counter.load(Ordering::Relaxed)
    }

    /// Whether the GP in progress is still waiting for `cpu` (for watchdog reports). A CPU
    /// that is idle now is reported by the next scan, so this may say `true` for a moment.
    pub fn holds_up_gp(&self, cpu: usize) -> bool {
        let gp_seq = self.gp_seq();
        seq_in_progress(gp_seq) && self.qs_reported_for_gp(cpu) != gp_seq
    }

    /// Callbacks queued on `cpu` that have not run yet. Lock-free (a debugger can compute it
    /// from the two per-CPU counters too).
    pub fn queued_callbacks(&self, cpu: usize) -> u64 {
        let this = &self.cpus[cpu];
        let invoked = this.cbs_invoked.load(Ordering::Relaxed);
        this.cbs_queued
            .load(Ordering::Relaxed)
            .saturating_sub(invoked)
    }

    /// `cpu`'s callbacks per segment (briefly takes that CPU's callback lock).
    pub fn callback_segments(&self, cpu: usize) -> CallbackSegments {
        self.cpus[cpu].callbacks.lock().segments()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use core::cell::{Cell, RefCell};
    use proptest::prelude::*;
    use std::boxed::Box;
    use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64 as StdAtomicU64};
    use std::sync::{Arc, Mutex, mpsc};
    use std::thread;
    use std::time::{Duration, Instant};

    std::thread_local! {
        /// Arguments of the callbacks run on this test thread, in order.
        static RAN: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
        static FAKE_NOW: Cell<u64> = const { Cell::new(0) };
    }

    fn record(arg: usize) {
        RAN.with(|r| r.borrow_mut().push(arg));
    }

    fn take_ran() -> Vec<usize> {
        RAN.with(|r| core::mem::take(&mut *r.borrow_mut()))
    }

    fn cb(arg: usize) -> impl FnOnce() + Send + 'static {
        move || record(arg)
    }

    fn fake_now() -> u64 {
        FAKE_NOW.with(Cell::get)
    }

    #[test]
    fn seq_helpers_follow_linux_encoding() {
        assert_eq!(seq_snap(0), 2); // idle: the next GP (1 -> 2) is enough
        assert_eq!(seq_snap(1), 4); // GP 1 running: it may predate us; wait for GP 2
        assert_eq!(seq_snap(2), 4);
        assert!(seq_done(4, 4) && seq_done(5, 4) && !seq_done(3, 4));
        assert_eq!(seq_completed(5), 2);
    }

    #[test]
    fn gp_completes_only_after_every_cpu_reported() {
        let rcu = Rcu::new(3);
        rcu.call_rcu(0, cb(7));
        assert_eq!(rcu.poll(0), 0);
        assert_eq!(rcu.gp_seq(), 1);
        for cpu in [2, 0] {
            rcu.note_quiescent_state(cpu);
            assert_eq!(rcu.completed_gp(), 0);
            assert_eq!(rcu.poll(0), 0);
        }
        assert!(rcu.holds_up_gp(1) && !rcu.holds_up_gp(0) && !rcu.holds_up_gp(2));
        rcu.note_quiescent_state(2); // a second report from the same CPU counts for nothing
        assert_eq!(rcu.completed_gp(), 0);
        rcu.note_quiescent_state(1);
        assert_eq!(rcu.gp_seq(), 2);
        assert_eq!(rcu.grace_periods(), 1);
        assert_eq!(
            rcu.callbacks_invoked(),
            0,
            "callbacks run only from their CPU's poll"
        );
        assert_eq!(rcu.poll(0), 1);
        assert_eq!(take_ran(), vec![7]);
        assert_eq!(rcu.poll(0), 0, "exactly once");
        assert_eq!(rcu.callbacks_invoked(), 1);
        assert_eq!(rcu.queued_callbacks(0), 0);
        assert_eq!(
            (0..3)
                .map(|c| rcu.qs_reported_for_gp(c))
                .collect::<Vec<_>>(),
            [1, 1, 1]
        );
    }

    #[test]
    fn no_gp_and_no_lock_work_without_callbacks() {
        let rcu = Rcu::new(2);
        for _ in 0..3 {
            rcu.note_quiescent_state(0);
            rcu.note_quiescent_state(1);
            assert_eq!(rcu.poll(1), 0);
        }
        assert_eq!((rcu.gp_seq(), rcu.grace_periods()), (0, 0));
    }

    #[test]
    fn cpus_idle_at_gp_start_do_not_hold_it_up() {
        let rcu = Rcu::new(4);
        rcu.idle_enter(2);
        rcu.idle_enter(3);
        assert!(rcu.in_eqs(2) && !rcu.in_eqs(0));
        rcu.call_rcu(0, cb(1));
        rcu.poll(0);
        assert_eq!(
            rcu.qs_reported_for_gp(2),
            1,
            "idle at the snapshot: nothing owed"
        );
        assert_eq!(rcu.qs_reported_for_gp(3), 1);
        rcu.note_quiescent_state(0);
        assert!(rcu.gp_in_progress());
        rcu.note_quiescent_state(1);
        assert_eq!(rcu.completed_gp(), 1);
        assert_eq!(rcu.poll(0), 1);
        assert_eq!(take_ran(), vec![1]);
    }

    #[test]
    fn all_cpus_idle_means_the_gp_ends_at_its_start() {
        let rcu = Rcu::new(2);
        rcu.idle_enter(1);
        rcu.call_rcu(0, cb(5));
        rcu.idle_enter(0);
        assert_eq!(
            rcu.poll(0),
            1,
            "poll from the idle loop: GP started and ended at once"
        );
        assert_eq!(take_ran(), vec![5]);
        assert_eq!((rcu.grace_periods(), rcu.completed_gp()), (1, 1));
    }

    #[test]
    fn cpu_that_idles_and_wakes_during_the_gp_counts() {
        let rcu = Rcu::new(3);
        rcu.call_rcu(0, cb(9));
        rcu.poll(0);
        assert_eq!(rcu.eqs_counter(2), 1);
        rcu.idle_enter(2);
        rcu.idle_exit(2);
        assert_eq!(rcu.eqs_counter(2), 3);
        assert!(rcu.holds_up_gp(2), "nobody has looked yet");
        rcu.note_quiescent_state(0);
        rcu.note_quiescent_state(1); // reporter scans: cpu 2's counter moved since the start
        assert_eq!(rcu.completed_gp(), 1);
        assert_eq!(rcu.qs_reported_for_gp(2), 1);
        assert_eq!(rcu.poll(0), 1);
        assert_eq!(take_ran(), vec![9]);
    }

    #[test]
    fn cpu_that_went_idle_after_others_reported_is_found_by_the_waiting_poll() {
        let rcu = Rcu::new(2);
        rcu.call_rcu(0, cb(3));
        rcu.poll(0);
        rcu.note_quiescent_state(0);
        rcu.idle_enter(1); // never reports; nobody else will report again
        assert_eq!(rcu.completed_gp(), 0);
        assert_eq!(
            rcu.poll(0),
            1,
            "cpu 0 has callbacks waiting, so its poll scans"
        );
        assert_eq!(take_ran(), vec![3]);
    }

    #[test]
    fn callback_queued_during_a_gp_waits_for_the_next_one() {
        let rcu = Rcu::new(2);
        rcu.call_rcu(0, cb(1));
        rcu.poll(0); // GP 1 starts for cb 1
        rcu.call_rcu(0, cb(2));
        rcu.poll(0); // cb 2 needs GP 2: GP 1 may have started before its unpublish
        assert_eq!(
            rcu.callback_segments(0),
            CallbackSegments {
                done: 0,
                waiting: 1,
                next_ready: 1,
                next: 0
            }
        );
        rcu.note_quiescent_state(0);
        rcu.note_quiescent_state(1);
        assert_eq!(
            rcu.gp_seq(),
            3,
            "GP 1 ended and GP 2 started at once (it was asked for)"
        );
        assert_eq!(rcu.poll(0), 1);
        assert_eq!(take_ran(), vec![1]);
        rcu.note_quiescent_state(1);
        rcu.note_quiescent_state(0);
        assert_eq!(rcu.poll(0), 1);
        assert_eq!(take_ran(), vec![2]);
        assert_eq!((rcu.grace_periods(), rcu.completed_gp()), (2, 2));
        assert_eq!(rcu.callbacks_invoked(), 2);
        assert_eq!(rcu.callback_segments(0), CallbackSegments::default());
    }

    #[test]
    fn callbacks_queued_between_polls_share_one_gp_and_keep_fifo_order() {
        let rcu = Rcu::new(2);
        for arg in 10..15 {
            rcu.call_rcu(1, cb(arg));
        }
        rcu.poll(1);
        rcu.note_quiescent_state(0);
        rcu.note_quiescent_state(1);
        assert_eq!(rcu.poll(1), 5);
        assert_eq!(take_ran(), vec![10, 11, 12, 13, 14]);
        assert_eq!(rcu.grace_periods(), 1);
    }

    #[test]
    fn synchronize_rcu_waits_for_other_cpus() {
        let rcu = Rcu::new(3);
        let mut rounds = 0;
        rcu.synchronize_rcu(0, || {
            rounds += 1;
            // The other CPUs report one per round; cpu 0 is quiescent while it waits.
            if rounds == 2 {
                rcu.note_quiescent_state(1);
            }
            if rounds == 4 {
                rcu.note_quiescent_state(2);
            }
        });
        assert_eq!(rounds, 4);
        assert_eq!((rcu.completed_gp(), rcu.grace_periods()), (1, 1));
    }

    #[test]
    fn synchronize_rcu_does_not_join_a_gp_already_running() {
        let rcu = Rcu::new(2);
        rcu.call_rcu(1, cb(4));
        rcu.poll(1);
        assert_eq!(rcu.gp_seq(), 1);
        rcu.synchronize_rcu(0, || rcu.note_quiescent_state(1));
        assert_eq!(rcu.completed_gp(), 2);
        assert_eq!(rcu.poll(1), 1);
        assert_eq!(take_ran(), vec![4]);
    }

    #[test]
    fn rcu_barrier_waits_for_every_cpus_earlier_callbacks() {
        let rcu = Rcu::new(2);
        rcu.call_rcu(0, cb(1));
        rcu.call_rcu(1, cb(2));
        rcu.call_rcu(1, cb(3));
        rcu.rcu_barrier(0, || {
            // cpu 1's tick: its QS and its own poll.
            rcu.note_quiescent_state(1);
            rcu.poll(1);
        });
        let mut ran = take_ran();
        ran.sort_unstable();
        assert_eq!(ran, vec![1, 2, 3]);
        assert_eq!(rcu.callbacks_invoked(), 3);
        assert_eq!((rcu.queued_callbacks(0), rcu.queued_callbacks(1)), (0, 0));
    }

    #[test]
    fn callbacks_may_queue_callbacks() {
        fn requeue(arg: usize) {
            record(arg);
            if arg < 3 {
                REQUEUE_RCU.with(|r| {
                    let rcu: &Rcu = r.get().expect("set by the test");
                    rcu.call_rcu(0, move || requeue(arg + 1));
                });
            }
        }
        std::thread_local! {
            static REQUEUE_RCU: Cell<Option<&'static Rcu>> = const { Cell::new(None) };
        }
        let rcu: &'static Rcu = Box::leak(Box::new(Rcu::new(1)));
        REQUEUE_RCU.with(|r| r.set(Some(rcu)));
        rcu.call_rcu(0, || requeue(1));
        let mut polls = 0;
        while rcu.callbacks_invoked() < 3 {
            rcu.poll(0);
            rcu.note_quiescent_state(0);
            polls += 1;
            assert!(polls < 10);
        }
        assert_eq!(take_ran(), vec![1, 2, 3]);
        assert_eq!(
            rcu.grace_periods(),
            3,
            "each requeued callback needs its own GP"
        );
    }

    #[test]
    fn max_gp_ticks_measures_the_longest_gp() {
        let rcu = Rcu::new(2);
        rcu.set_time_source(fake_now);
        FAKE_NOW.with(|n| n.set(100));
        rcu.call_rcu(0, cb(0));
        rcu.poll(0);
        FAKE_NOW.with(|n| n.set(130));
        rcu.note_quiescent_state(0);
        rcu.note_quiescent_state(1);
        assert_eq!(rcu.max_gp_ticks(), 30);
        rcu.call_rcu(0, cb(0));
        rcu.poll(0);
        FAKE_NOW.with(|n| n.set(140));
        rcu.note_quiescent_state(0);
        rcu.note_quiescent_state(1);
        assert_eq!(
            rcu.max_gp_ticks(),
            30,
            "a shorter GP does not lower the maximum"
        );
        assert_eq!(rcu.grace_periods(), 2);
    }

    #[derive(Clone, Copy, Debug)]
    enum Op {
        CallRcu(usize),
        Poll(usize),
        Quiescent(usize),
        ToggleIdle(usize),
    }

    const MODEL_CPUS: usize = 3;

    fn op() -> impl Strategy<Value = Op> {
        let cpu = 0..MODEL_CPUS;
        prop_oneof![
            cpu.clone().prop_map(Op::CallRcu),
            cpu.clone().prop_map(Op::Poll),
            cpu.clone().prop_map(Op::Quiescent),
            cpu.prop_map(Op::ToggleIdle),
        ]
    }

    proptest! {
        /// The RCU guarantee against a model that needs no GP machinery: a callback may run
        /// only once every CPU has, since it was queued, reported a QS or been idle; it runs
        /// on its own CPU, exactly once; and with everybody cooperating, all of them run.
        #[test]
        fn engine_never_runs_a_callback_early_and_runs_each_once(
            ops in proptest::collection::vec(op(), 0..120)
        ) {
            take_ran(); // a failed, shrunk case may have left entries behind
            let rcu = Rcu::new(MODEL_CPUS);
            let mut running = [true; MODEL_CPUS];
            // Per callback: its CPU, the CPUs that have not yet shown a QS since it was
            // queued (bit mask), and whether it ran.
            let mut model: Vec<(usize, u32, bool)> = Vec::new();
            let all_cpus = (1u32 << MODEL_CPUS) - 1;
            let quiesce = |model: &mut Vec<(usize, u32, bool)>, cpu: usize| {
                for entry in model.iter_mut() {
                    entry.1 &= !(1 << cpu);
                }
            };
            let check_ran = |model: &mut Vec<(usize, u32, bool)>, cpu: usize| {
                for arg in take_ran() {
                    let entry = &mut model[arg];
                    assert_eq!(entry.0, cpu, "callback {arg} ran on the wrong CPU");
                    assert_eq!(entry.1, 0, "callback {arg} ran before a full GP");
                    assert!(!entry.2, "callback {arg} ran twice");
                    entry.2 = true;
                }
            };
            for op in ops {
                match op {
                    Op::CallRcu(cpu) if running[cpu] => {
                        let idle_now = (0..MODEL_CPUS)
                            .filter(|&c| !running[c])
                            .fold(0, |mask, c| mask | 1 << c);
                        rcu.call_rcu(cpu, cb(model.len()));
                        model.push((cpu, all_cpus & !idle_now, false));
                    }
                    Op::Quiescent(cpu) if running[cpu] => {
                        rcu.note_quiescent_state(cpu);
                        quiesce(&mut model, cpu);
                    }
                    Op::ToggleIdle(cpu) => {
                        if running[cpu] {
                            rcu.idle_enter(cpu);
                            quiesce(&mut model, cpu);
                        } else {
                            rcu.idle_exit(cpu);
                        }
                        running[cpu] = !running[cpu];
                    }
                    Op::Poll(cpu) => {
                        rcu.poll(cpu);
                        check_ran(&mut model, cpu);
                    }
                    // A CPU in WFI neither queues callbacks nor passes QS points.
                    Op::CallRcu(_) | Op::Quiescent(_) => {}
                }
            }
            // Drain: every CPU keeps ticking (idle ones only poll).
            for _ in 0..4 {
                for (cpu, &is_running) in running.iter().enumerate() {
                    if is_running {
                        rcu.note_quiescent_state(cpu);
                        quiesce(&mut model, cpu);
                    }
                    rcu.poll(cpu);
                    check_ran(&mut model, cpu);
                }
            }
            prop_assert!(model.iter().all(|e| e.2), "a callback never ran: {model:?}");
            prop_assert_eq!(rcu.callbacks_invoked(), model.len() as u64);
            prop_assert_eq!(rcu.grace_periods(), rcu.completed_gp());
            prop_assert!(!rcu.gp_in_progress());
        }
    }

    // --- Threads: readers inside "IRQs-masked" sections vs. an updater freeing. ---
    //
    // The checker is `read_section`: it checks the object it found twice, before and after
    // dwelling inside the section. The stress test runs it against `call_rcu` under whatever
    // interleavings the host produces; the scripted tests pin the one interleaving that matters
    // (the free lands while a reader is inside) so the negative control cannot be missed.

    /// The RCU-protected object. "Freeing" poisons it and moves it to a quarantine that is
    /// released only after every thread has stopped, so a reader that is still inside shows
    /// up as a poison sighting rather than as undefined behaviour.
    struct Obj {
        poisoned: AtomicBool,
        quarantine: Arc<Mutex<Vec<usize>>>,
    }

    fn poison_and_free(arg: usize) {
        // SAFETY: `arg` is the `Box::into_raw` of an `Obj` that the updater unpublished and
        // handed to exactly one free; the quarantine keeps the allocation alive.
        let obj = unsafe { &*(arg as *const Obj) };
        obj.poisoned.store(true, Ordering::Relaxed);
        obj.quarantine.lock().unwrap().push(arg);
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum FreeMode {
        /// `call_rcu`: the code under test.
        AfterGracePeriod,
        /// Negative control: free right after unpublishing, no GP.
        Immediately,
    }

    /// Where the published object lives, and the objects freed so far (kept until the end).
    struct Published {
        current: AtomicPtr<Obj>,
        quarantine: Arc<Mutex<Vec<usize>>>,
    }

    impl Published {
        fn new() -> Self {
            let quarantine = Arc::new(Mutex::new(Vec::new()));
            let first = Self::new_obj(&quarantine);
            Self {
                current: AtomicPtr::new(first),
                quarantine,
            }
        }

        fn new_obj(quarantine: &Arc<Mutex<Vec<usize>>>) -> *mut Obj {
            Box::into_raw(Box::new(Obj {
                poisoned: AtomicBool::new(false),
                quarantine: quarantine.clone(),
            }))
        }

        /// The checker: one read-side section on a reader CPU ("IRQs masked": no QS report
        /// until it returns). It checks the object it found when it enters, runs `dwell`
        /// inside the section, and checks again. Returns how many checks saw poison (0..=2).
        fn read_section(&self, dwell: impl FnOnce()) -> u64 {
            let p = self.current.load(Ordering::Acquire);
            // SAFETY: objects are never deallocated while threads run (see `Obj`).
            let obj = unsafe { &*p };
            let mut seen = u64::from(obj.poisoned.load(Ordering::Relaxed));
            dwell();
            seen += u64::from(obj.poisoned.load(Ordering::Relaxed));
            seen
        }

        /// One update on CPU 0: publish a new object, free the old one per `mode`, then the
        /// updater's own QS and poll (what its tick would do).
        fn update(&self, rcu: &Rcu, mode: FreeMode) {
            let old = self
                .current
                .swap(Self::new_obj(&self.quarantine), Ordering::AcqRel)
                as usize;
            match mode {
                FreeMode::AfterGracePeriod => rcu.call_rcu(0, move || poison_and_free(old)),
                FreeMode::Immediately => poison_and_free(old),
            }
            rcu.note_quiescent_state(0);
            rcu.poll(0);
        }

        /// Deallocates every object. Only once every thread that read them has stopped.
        fn release_all(&self) {
            let last = self.current.load(Ordering::Relaxed) as usize;
            let freed: Vec<usize> = self.quarantine.lock().unwrap().drain(..).collect();
            for addr in freed.into_iter().chain([last]) {
                // SAFETY: every thread has stopped; each address is a distinct Box::into_raw.
                drop(unsafe { Box::from_raw(addr as *mut Obj) });
            }
        }
    }

    struct StressOutcome {
        reads: u64,
        poison_seen: u64,
        updates: u64,
        rcu: Arc<Rcu>,
    }

    /// Readers on CPUs `1..=readers` against an updater on CPU 0, for at least `run_for` and
    /// at least `min_reads` reads and `min_updates` updates: the run ends on coverage, not on
    /// the clock alone, so a slow or loaded host makes it longer, never weaker.
    fn run_stress(
        readers: usize,
        run_for: Duration,
        min_reads: u64,
        min_updates: u64,
    ) -> StressOutcome {
        let rcu = Arc::new(Rcu::new(readers + 1));
        let published = Arc::new(Published::new());
        let stop = Arc::new(AtomicBool::new(false));
        let reads = Arc::new(StdAtomicU64::new(0));
        let poison_seen = Arc::new(StdAtomicU64::new(0));

        let reader_threads: Vec<_> = (1..=readers)
            .map(|cpu| {
                let (rcu, published, stop) = (rcu.clone(), published.clone(), stop.clone());
                let (reads, poison_seen) = (reads.clone(), poison_seen.clone());
                thread::spawn(move || {
                    let mut iteration = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let seen = published.read_section(|| {
                            for _ in 0..64 {
                                core::hint::spin_loop();
                            }
                        });
                        poison_seen.fetch_add(seen, Ordering::Relaxed);
                        reads.fetch_add(1, Ordering::Relaxed);
                        // Section over.
                        rcu.note_quiescent_state(cpu);
                        iteration += 1;
                        if iteration.is_multiple_of(128) {
                            rcu.idle_enter(cpu);
                            thread::yield_now();
                            rcu.idle_exit(cpu);
                        }
                    }
                    // This CPU goes idle for good, so the final rcu_barrier needs nothing of it.
                    rcu.idle_enter(cpu);
                })
            })
            .collect();

        let deadline = Instant::now() + run_for;
        let mut updates = 0;
        while Instant::now() < deadline
            || updates < min_updates
            || reads.load(Ordering::Relaxed) < min_reads
        {
            published.update(&rcu, FreeMode::AfterGracePeriod);
            updates += 1;
            // Keep the backlog bounded, as the kernel's gather would.
            while rcu.queued_callbacks(0) > 10_000 {
                rcu.note_quiescent_state(0);
                rcu.poll(0);
                thread::yield_now();
            }
        }
        stop.store(true, Ordering::Relaxed);
        for t in reader_threads {
            t.join().unwrap();
        }
        rcu.rcu_barrier(0, thread::yield_now);
        published.release_all();
        StressOutcome {
            reads: reads.load(Ordering::Relaxed),
            poison_seen: poison_seen.load(Ordering::Relaxed),
            updates,
            rcu,
        }
    }

    #[test]
    fn stress_readers_never_see_an_object_freed_through_call_rcu() {
        let out = run_stress(3, Duration::from_secs(1), 1000, 100);
        assert_eq!(out.poison_seen, 0, "a reader saw a freed object");
        assert!(out.reads >= 1000 && out.updates >= 100);
        assert!(out.rcu.grace_periods() > 0);
        assert_eq!(out.rcu.grace_periods(), out.rcu.completed_gp());
        assert_eq!(
            out.rcu.callbacks_invoked(),
            out.updates,
            "every free ran exactly once"
        );
        assert_eq!(out.rcu.queued_callbacks(0), 0);
    }

    struct ScriptOutcome {
        /// Poison sightings of the reader's one section.
        poison_seen: u64,
        /// Frees (callbacks) that had run when the reader left its section.
        freed_while_inside: u64,
        rcu: Rcu,
    }

    /// The interleaving that decides the negative control, forced with channels rather than
    /// left to the scheduler: the reader (CPU 1) enters its section and checks the object;
    /// only then does the updater (CPU 0) unpublish and free it per `mode` (and poll a few
    /// times, as its ticks would); only then does the reader check again and leave. The
    /// channels order the updater's store before the reader's second load (happens-before),
    /// so a free without a grace period is seen on every run, on any host.
    fn run_script(mode: FreeMode) -> ScriptOutcome {
        let rcu = Arc::new(Rcu::new(2));
        let published = Arc::new(Published::new());
        let (inside_tx, inside_rx) = mpsc::channel::<()>();
        let (updated_tx, updated_rx) = mpsc::channel::<u64>();
        let reader = {
            let (rcu, published) = (rcu.clone(), published.clone());
            thread::spawn(move || {
                let mut freed_while_inside = 0;
                let seen = published.read_section(|| {
                    inside_tx.send(()).unwrap();
                    freed_while_inside = updated_rx.recv().unwrap();
                });
                rcu.note_quiescent_state(1);
                rcu.idle_enter(1);
                (seen, freed_while_inside)
            })
        };
        inside_rx.recv().unwrap();
        published.update(&rcu, mode);
        for _ in 0..3 {
            rcu.note_quiescent_state(0);
            rcu.poll(0);
        }
        let freed = match mode {
            FreeMode::AfterGracePeriod => rcu.callbacks_invoked(),
            FreeMode::Immediately => published.quarantine.lock().unwrap().len() as u64,
        };
        updated_tx.send(freed).unwrap();
        let (poison_seen, freed_while_inside) = reader.join().unwrap();
        // The reader reported its QS and is idle: the callback (if any) can run now.
        rcu.rcu_barrier(0, thread::yield_now);
        published.release_all();
        ScriptOutcome {
            poison_seen,
            freed_while_inside,
            rcu: Arc::into_inner(rcu).expect("the reader has exited"),
        }
    }

    #[test]
    fn checker_catches_freeing_without_a_grace_period() {
        // Negative control: the reader's checker must notice a free with no GP. Scripted, so
        // it does on every run (it used to be a timed stress run that missed it 2 runs in 5).
        let out = run_script(FreeMode::Immediately);
        assert_eq!(out.freed_while_inside, 1);
        assert_eq!(
            out.poison_seen, 1,
            "the checker missed a free made while the reader was inside"
        );
        assert_eq!(out.rcu.callbacks_invoked(), 0);
    }

    #[test]
    fn checker_passes_the_same_script_with_call_rcu() {
        // The same interleaving with `call_rcu`: the free waits for the reader's QS.
        let out = run_script(FreeMode::AfterGracePeriod);
        assert_eq!(out.freed_while_inside, 0, "call_rcu freed under a reader");
        assert_eq!(
            out.poison_seen, 0,
            "a reader saw an object freed by call_rcu"
        );
        assert_eq!(out.rcu.callbacks_invoked(), 1, "the free ran after the GP");
        assert_eq!(out.rcu.queued_callbacks(0), 0);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! Exhaustive (no preemption bound): each model explores a few thousand interleavings and
    //! takes well under a second in release mode. They have teeth: deleting either
    //! `fence(SeqCst)` of the store-buffer pattern fails the idle test, weakening
    //! `idle_enter`'s `Release` fails all three, and advancing callbacks one GP early fails
    //! the `call_rcu` one.
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicUsize;
    use loom::thread;

    const LIVE: u32 = 1;
    const POISON: u32 = 0xdead;

    /// Two object slots; `current` names the published one. The updater (CPU 0) unpublishes
    /// slot 0 and "frees" (poisons) it after a grace period; the reader is CPU 1.
    struct Shared {
        rcu: Rcu,
        current: AtomicUsize,
        slots: [UnsafeCell<u32>; 2],
    }

    impl Shared {
        fn new() -> Self {
            Self {
                rcu: Rcu::new(2),
                current: AtomicUsize::new(0),
                slots: [UnsafeCell::new(LIVE), UnsafeCell::new(LIVE)],
            }
        }

        /// One read-side section on the reader CPU.
        fn read_section(&self) {
            let slot = self.current.load(Ordering::Acquire);
            // SAFETY: this is the property under test: loom reports a data race if the
            // updater's poisoning write is not ordered after this read.
            let value = self.slots[slot].with(|p| unsafe { *p });
            assert_eq!(value, LIVE, "reader saw a freed object");
        }

        fn free_slot0(&self) {
            // SAFETY: as in `read_section`; loom checks this write races with no read.
            self.slots[0].with_mut(|p| unsafe { *p = POISON });
        }

        fn update_with_synchronize_rcu(&self) {
            self.current.store(1, Ordering::Release);
            self.rcu.synchronize_rcu(0, thread::yield_now);
            self.free_slot0();
        }

        /// The kernel's table-freeing path: call_rcu, then the updater's ticks.
        fn update_with_call_rcu(shared: &Arc<Self>) {
            /// The callback's hold on `Shared`. `call_rcu` asks for a `Send` callback, and
            /// loom's `UnsafeCell` is not `Sync`, so `Arc<Shared>` is not `Send`.
            struct Freer(Arc<Shared>);
            // SAFETY: loom runs every thread of a model on one OS thread (its `spawn` asks for
            // no `Send` either), and it checks each access to the slots itself: that is the
            // property under test.
            unsafe impl Send for Freer {}
            impl Freer {
                fn free(&self) {
                    self.0.free_slot0();
                }
            }
            shared.current.store(1, Ordering::Release);
            let freer = Freer(shared.clone());
            shared.rcu.call_rcu(0, move || freer.free());
            loop {
                shared.rcu.note_quiescent_state(0);
                if shared.rcu.poll(0) == 1 {
                    break;
                }
                thread::yield_now();
            }
        }
    }

    /// The reader: a section, a QS, a section, then idle for good (its EQS lets the last GP
    /// end without it).
    fn spawn_reader_reporting_qs(shared: &Arc<Shared>) -> thread::JoinHandle<()> {
        let shared = shared.clone();
        thread::spawn(move || {
            shared.read_section();
            shared.rcu.note_quiescent_state(1);
            shared.read_section();
            shared.rcu.idle_enter(1);
        })
    }

    #[test]
    fn loom_synchronize_rcu_protects_a_reader_reporting_qs() {
        loom::model(|| {
            let shared = Arc::new(Shared::new());
            let reader = spawn_reader_reporting_qs(&shared);
            shared.update_with_synchronize_rcu();
            reader.join().unwrap();
        });
    }

    #[test]
    fn loom_call_rcu_protects_a_reader_reporting_qs() {
        loom::model(|| {
            let shared = Arc::new(Shared::new());
            let reader = spawn_reader_reporting_qs(&shared);
            Shared::update_with_call_rcu(&shared);
            reader.join().unwrap();
        });
    }

    #[test]
    fn loom_synchronize_rcu_protects_a_reader_waking_from_idle() {
        loom::model(|| {
            let shared = Arc::new(Shared::new());
            shared.rcu.idle_enter(1);
            let reader = {
                let shared = shared.clone();
                thread::spawn(move || {
                    // Wakes (maybe after the GP's snapshot saw it idle), reads, sleeps, wakes
                    // again (maybe between the snapshot and a scan), reads, sleeps. It never
                    // reports a QS: only the EQS counter speaks for it.
                    shared.rcu.idle_exit(1);
                    shared.read_section();
                    shared.rcu.idle_enter(1);
                    shared.rcu.idle_exit(1);
                    shared.read_section();
                    shared.rcu.idle_enter(1);
                })
            };
            shared.update_with_synchronize_rcu();
            reader.join().unwrap();
        });
    }
}
