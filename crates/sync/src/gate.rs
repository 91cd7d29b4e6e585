//! A gate that users enter and leave and that an owner closes and then waits to drain: the
//! activate/destroy handshake of an address space (a CPU activating the space may not slip in
//! after the destroyer decided nobody uses it).
//!
//! # The store-buffer pattern
//! Each side writes its own flag and then reads the other side's:
//!
//! | entrant ([`ActiveGate::try_enter`]) | closer ([`ActiveGate::close`], then [`ActiveGate::drained`]) |
//! |---|---|
//! | `users += 1` (W users)              | `closed = true` (W closed)                 |
//! | read `closed` (R closed)            | read `users` (R users)                     |
//!
//! The protocol needs "at least one side sees the other's write": if the entrant reads
//! `closed == false` it stays in, so the closer must then read `users >= 1` and wait. Release
//! stores and Acquire loads do *not* give that. Release orders earlier accesses before the
//! store, Acquire orders later accesses after the load, but nothing orders a store before a
//! *later load of another location*: each side may read the other's old value (`closed ==
//! false` and `users == 0`) and both proceed — the entrant inside, the destroyer freeing. This is
//! the "SB" litmus test; C++/Rust allow the outcome for any orderings short of `SeqCst`, and
//! real CPUs with store buffers (x86-TSO included) produce it. On ARMv8 it happens to be
//! forbidden when the store is an `STLR` and the load an `LDAR` (Arm ARM B2.3, "Barrier-ordered-
//! before": a Load-Acquire is ordered after an earlier Store-Release in program order), which is
//! what the original code relied on, silently, and what a compiler lowering or a different
//! architecture need not preserve.
//!
//! # Why the fences make it correct
//! Each side puts `fence(SeqCst)` between its store and its load. All `SeqCst` fences are in one
//! total order S, and (C++20 [atomics.order], the model Rust's atomics follow): if a store A is sequenced
//! before fence X, fence Y is sequenced before load B, and X precedes Y in S, then B reads A or a
//! later store in A's modification order. The entrant's fence and the closer's fence are ordered
//! one way or the other in S:
//! - entrant's fence first: the closer's read of `users` sees the increment or a later value —
//!   the entrant's own decrement, once it has left (or been refused), or more entries;
//! - closer's fence first: the entrant's read of `closed` sees `true`, and it backs out.
//!
//! So the closer can read `users == 0` while the entrant is inside in neither case. The
//! decrements are `Release` and the closer's read of `users` `Acquire`, and every write to
//! `users` is a read-modify-write (so it continues the release sequence of every earlier
//! decrement): once the closer reads 0, everything every user did inside happens-before what the
//! closer does next (tearing the object down). This is Linux's pattern too: `smp_mb()` on both
//! sides of a store-buffer handshake, e.g. a waker's condition store and `waitqueue_active()`
//! against a sleeper's `prepare_to_wait()` and condition load (`include/linux/wait.h`), and
//! `Documentation/memory-barriers.txt`, "SMP barrier pairing".
//!
//! In the kernel the fences are `DMB ISH`. loom models `SeqCst` fences (and treats `SeqCst`
//! loads and stores as `AcqRel`), so the loom tests below check the fenced protocol and show, on
//! a variant without the fences, that the model does catch the bug.

use core::marker::PhantomData;

use self::shim::{AtomicBool, AtomicU32, Ordering, fence};

/// The real atomics in the kernel and on the host, loom's models under `cfg(loom)` (the same
/// pattern as `rcu.rs`).
mod shim {
    #[cfg(not(loom))]
    pub(super) use core::sync::atomic::{AtomicBool, AtomicU32, Ordering, fence};
    #[cfg(loom)]
    pub(super) use loom::sync::atomic::{AtomicBool, AtomicU32, Ordering, fence};
}

/// Which fences a gate issues. The only implementor outside tests is [`Fenced`]; tests add a
/// broken one to prove that the fences are what makes the protocol correct.
pub trait GateFences {
    /// Between the entrant's increment of `users` and its read of `closed`.
    fn after_enter_store();
    /// Between the closer's store of `closed` and any read of `users` that follows.
    fn after_close_store();
}

/// `fence(SeqCst)` on both sides: the correct protocol (see the module docs).
#[derive(Debug)]
pub struct Fenced;

impl GateFences for Fenced {
    #[inline(always)]
    fn after_enter_store() {
        #[cfg(not(loom))]
        if crate::planted::gate_no_fence() {
            return;
        }
        seqcst_fence();
    }

    #[inline(always)]
    fn after_close_store() {
        seqcst_fence();
    }
}

/// `fence(SeqCst)`; in the kernel also a drain of the emulated store buffer (`weak=on`,
/// `broadside_base::weak`), which is what the fence does to this CPU's earlier stores.
#[inline(always)]
fn seqcst_fence() {
    fence(Ordering::SeqCst);
    #[cfg(not(loom))]
    broadside_base::weak::drain();
}

/// A count of users that may enter until the gate is closed, and the closed flag.
///
/// Use: users call [`try_enter`](Self::try_enter) and, if it returned true,
/// [`exit`](Self::exit) exactly once later. The owner calls [`close`](Self::close) once and then
/// waits until [`drained`](Self::drained) is true; from then on no user is inside and none can
/// enter, and everything users did inside happens-before the owner's next accesses.
#[derive(Debug)]
pub struct ActiveGate<F: GateFences = Fenced> {
    users: AtomicU32,
    closed: AtomicBool,
    /// Set by the owner once it has seen the gate drained and acts on it ([`Self::seal`]): an
    /// exit after that is a user that was inside when the owner decided nobody was.
    sealed: AtomicBool,
    fences: PhantomData<F>,
}

impl ActiveGate<Fenced> {
    /// An open gate with no users.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self::with_fences()
    }

    /// An open gate with no users (loom atomics have no `const fn new`).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self::with_fences()
    }
}

impl Default for ActiveGate<Fenced> {
    fn default() -> Self {
        Self::new()
    }
}

impl<F: GateFences> ActiveGate<F> {
    #[cfg(not(loom))]
    const fn with_fences() -> Self {
        Self {
            users: AtomicU32::new(0),
            closed: AtomicBool::new(false),
            sealed: AtomicBool::new(false),
            fences: PhantomData,
        }
    }

    #[cfg(loom)]
    fn with_fences() -> Self {
        Self {
            users: AtomicU32::new(0),
            closed: AtomicBool::new(false),
            sealed: AtomicBool::new(false),
            fences: PhantomData,
        }
    }

    /// Enters unless the gate is closed. Returns whether the caller is now inside (and must
    /// call [`exit`](Self::exit) once). Never blocks.
    ///
    /// An entry that races with [`close`](Self::close) either is refused or is counted in the
    /// `users` the closer waits for; never neither.
    ///
    /// # Panics
    /// If `u32::MAX` users are inside at once (a leak of entries, not a state to run on in).
    pub fn try_enter(&self) -> bool {
        // Acquire: a user that gets in also sees what earlier users did before leaving (the
        // same pairing as `users()`); the increment is the store of the store-buffer pattern.
        let before = self.enter_store();
        assert!(before != u32::MAX, "ActiveGate: users overflowed");
        F::after_enter_store();
        if self.closed.load(Ordering::Acquire) {
            // Undo: a refused entrant was never inside, but the closer may have counted it,
            // so the closer waits for this decrement (which is all it waits for).
            #[cfg(not(loom))]
            broadside_base::weak::before_rmw(&self.users);
            self.users.fetch_sub(1, Ordering::Release);
            return false;
        }
        true
    }

    /// Leaves after a successful [`try_enter`](Self::try_enter). `Release`: everything done
    /// inside happens-before the access of whoever then reads the count (the closer).
    ///
    /// # Panics
    /// If nobody is inside (an exit without a matching entry).
    ///
    /// An exit from a gate its owner has [`seal`](Self::seal)ed is a breach of the protocol —
    /// this user was inside when the owner read the gate drained — and is counted
    /// (`gate_breach_detected`; `bug=gate-no-fence` plants it).
    pub fn exit(&self) {
        #[cfg(not(loom))]
        broadside_base::weak::drain(); // a release: what was done inside is visible first
        // Read before the decrement, while this user still counts: a correct owner seals only
        // after it read the count 0, so a seal seen now is a breach. Read after, it was a false
        // alarm: the owner may see this decrement, read 0 and seal before the read.
        #[cfg(not(loom))]
        let breached = self.sealed.load(Ordering::Acquire);
        let before = self.users.fetch_sub(1, Ordering::Release);
        assert!(before != 0, "ActiveGate: exit without a matching try_enter");
        #[cfg(not(loom))]
        if breached {
            broadside_base::stats::detected(broadside_base::stats::Counter::GateBreachDetected);
        }
    }

    /// The owner, having seen [`drained`](Self::drained), acts on it (tears down what the gate
    /// protects): from now on, an [`exit`](Self::exit) is a breach.
    pub fn seal(&self) {
        self.sealed.store(true, Ordering::Release);
    }

    /// The entrant's increment: `users += 1`, returning the old count. In the kernel with
    /// `weak=on` the increment waits in this CPU's emulated store buffer until its next drain,
    /// as the store of a store-buffer handshake may on hardware.
    #[cfg(not(loom))]
    fn enter_store(&self) -> u32 {
        if broadside_base::weak::enabled() {
            let before = broadside_base::weak::load_u32(&self.users, Ordering::Acquire);
            // SAFETY: the gate outlives this CPU's next drain: an entrant holds the object the
            // gate is in until it leaves, and leaving drains (`exit`), as does backing out.
            unsafe { broadside_base::weak::add_u32(&self.users, 1, Ordering::Acquire) };
            before
        } else {
            self.users.fetch_add(1, Ordering::Acquire)
        }
    }

    #[cfg(loom)]
    fn enter_store(&self) -> u32 {
        self.users.fetch_add(1, Ordering::Acquire)
    }

    /// Closes the gate: once this returns, every later [`try_enter`](Self::try_enter) fails,
    /// and every entry that raced with it either failed or is counted by
    /// [`users`](Self::users) / [`drained`](Self::drained) read by this caller afterwards.
    /// Closing twice is harmless.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        F::after_close_store();
    }

    /// Whether [`close`](Self::close) has been called (as far as this CPU can see yet).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Users inside now, plus refused entrants that have not undone their increment yet.
    /// A snapshot: after the caller's own [`close`](Self::close), a 0 means nobody is inside
    /// and nobody can get in any more, but a later read may briefly see a refused entrant's
    /// increment (so wait for 0 once; do not expect it to stay 0).
    pub fn users(&self) -> u32 {
        self.users.load(Ordering::Acquire)
    }

    /// Closed and nobody inside: the owner may tear down what the gate protects.
    ///
    /// Meaningful for the caller that called [`close`](Self::close) (or one whose accesses
    /// happen after that `close` returned): the guarantee comes from the fence `close` issues
    /// after its store. A CPU that merely observes `is_closed()` has not passed that fence, and
    /// its `users() == 0` proves nothing about entrants that raced with the close.
    pub fn drained(&self) -> bool {
        self.is_closed() && self.users() == 0
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool as StdBool, AtomicU64 as StdU64};
    use std::thread;

    #[test]
    fn new_gate_is_open_and_empty() {
        let g = ActiveGate::new();
        assert!(!g.is_closed());
        assert_eq!(g.users(), 0);
        assert!(!g.drained(), "an open gate is never drained");
    }

    #[test]
    fn const_new_works_in_a_static() {
        static G: ActiveGate = ActiveGate::new();
        assert!(G.try_enter());
        assert_eq!(G.users(), 1);
        G.exit();
        assert_eq!(G.users(), 0);
    }

    #[test]
    fn entries_are_counted_until_they_exit() {
        let g = ActiveGate::new();
        assert!(g.try_enter());
        assert!(g.try_enter());
        assert_eq!(g.users(), 2);
        g.exit();
        assert_eq!(g.users(), 1);
        g.close();
        assert!(!g.drained(), "one user is still inside");
        g.exit();
        assert!(g.drained());
    }

    #[test]
    fn closed_gate_refuses_and_leaves_no_count_behind() {
        let g = ActiveGate::new();
        g.close();
        assert!(g.is_closed());
        for _ in 0..3 {
            assert!(!g.try_enter());
        }
        assert_eq!(g.users(), 0, "a refused entry must undo its increment");
        assert!(g.drained());
        g.close();
        assert!(g.drained(), "closing twice is harmless");
    }

    #[test]
    #[should_panic(expected = "exit without a matching try_enter")]
    fn exit_without_entry_panics() {
        ActiveGate::new().exit();
    }

    /// Threads enter and leave in a loop while the main thread closes the gate and waits for
    /// it to drain. Whatever the interleaving: after `drained()`, nobody is inside (each
    /// thread marks itself inside around its stay) and no entry succeeds any more. The
    /// property is checked on every interleaving that happens; no timing is assumed.
    #[test]
    fn threads_racing_with_close_never_remain_inside_after_drain() {
        let gate = Arc::new(ActiveGate::new());
        let inside = Arc::new(StdU64::new(0));
        let drained = Arc::new(StdBool::new(false));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let (gate, inside, drained) = (gate.clone(), inside.clone(), drained.clone());
                thread::spawn(move || {
                    let mut late_entries = 0u64;
                    for _ in 0..20_000 {
                        if gate.try_enter() {
                            if drained.load(Ordering::SeqCst) {
                                late_entries += 1;
                            }
                            inside.fetch_add(1, Ordering::SeqCst);
                            inside.fetch_sub(1, Ordering::SeqCst);
                            gate.exit();
                        }
                    }
                    late_entries
                })
            })
            .collect();
        for _ in 0..1000 {
            thread::yield_now();
        }
        gate.close();
        while !gate.drained() {
            thread::yield_now();
        }
        assert_eq!(
            inside.load(Ordering::SeqCst),
            0,
            "a user inside after drain"
        );
        drained.store(true, Ordering::SeqCst);
        let late: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(late, 0, "an entry succeeded after the gate drained");
        assert!(!gate.try_enter());
        assert_eq!(gate.users(), 0);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! Exhaustive models of the handshake. The object the gate protects is a loom `UnsafeCell`:
    //! the entrant reads it while inside, the closer "frees" it (writes poison) once it saw the
    //! gate drained. If the two are not ordered by happens-before, loom reports the race, so a
    //! closer that saw "drained" while the entrant was still inside cannot go unnoticed. The
    //! entrant also records that it is inside in an atomic, and the closer asserts it is not.
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;
    use loom::thread;

    const LIVE: u32 = 1;
    const FREED: u32 = 0xdead;

    /// The handshake's orderings without the fences: `activate`/`destroy` as they were
    /// (Acquire/Release on every access, which ARMv8 happens to make safe and the language
    /// model does not). The negative control.
    struct NoFences;

    impl GateFences for NoFences {
        fn after_enter_store() {}
        fn after_close_store() {}
    }

    /// Half the fix: only the entrant fences. Also broken: the closer's store can still be
    /// passed by its load.
    struct EntrantFenceOnly;

    impl GateFences for EntrantFenceOnly {
        fn after_enter_store() {
            fence(Ordering::SeqCst);
        }
        fn after_close_store() {}
    }

    /// The other half: only the closer fences.
    struct CloserFenceOnly;

    impl GateFences for CloserFenceOnly {
        fn after_enter_store() {}
        fn after_close_store() {
            fence(Ordering::SeqCst);
        }
    }

    struct Shared<F: GateFences> {
        gate: ActiveGate<F>,
        object: UnsafeCell<u32>,
        inside: loom::sync::atomic::AtomicBool,
    }

    impl<F: GateFences> Shared<F> {
        fn new() -> Self {
            Self {
                gate: ActiveGate::with_fences(),
                object: UnsafeCell::new(LIVE),
                inside: loom::sync::atomic::AtomicBool::new(false),
            }
        }

        /// An activation: enter, use the object, leave.
        fn user(&self) {
            if self.gate.try_enter() {
                self.inside.store(true, Ordering::Relaxed);
                // SAFETY: the property under test: loom reports a race if the closer's write
                // is not ordered after this read.
                let v = self.object.with(|p| unsafe { *p });
                assert_eq!(v, LIVE, "a user read a freed object");
                self.inside.store(false, Ordering::Relaxed);
                self.gate.exit();
            }
        }

        /// The destroyer: close; if drained, free the object. Returns whether it freed.
        fn close_and_free_if_drained(&self) -> bool {
            self.gate.close();
            if self.gate.users() == 0 {
                // The destroyer saw it drained: no user may be inside.
                assert!(
                    !self.inside.load(Ordering::Relaxed),
                    "destroyer saw the gate drained while a user was inside"
                );
                // SAFETY: the property under test (see `user`).
                self.object.with_mut(|p| unsafe { *p = FREED });
                return true;
            }
            false
        }

        /// The destroyer as `AddressSpace::destroy` runs it: close, wait for drain, free.
        fn close_wait_and_free(&self) {
            self.gate.close();
            while !self.gate.drained() {
                thread::yield_now();
            }
            assert!(!self.inside.load(Ordering::Relaxed));
            // SAFETY: the property under test (see `user`).
            self.object.with_mut(|p| unsafe { *p = FREED });
            assert!(!self.gate.try_enter(), "entered a drained gate");
        }
    }

    fn one_user_vs_one_check<F: GateFences + 'static>() {
        loom::model(|| {
            let shared = Arc::new(Shared::<F>::new());
            let user = {
                let shared = shared.clone();
                thread::spawn(move || shared.user())
            };
            shared.close_and_free_if_drained();
            user.join().unwrap();
        });
    }

    /// (a) The positive model: a user entering while the destroyer closes and checks once.
    #[test]
    fn loom_gate_user_and_destroyer_never_overlap() {
        one_user_vs_one_check::<Fenced>();
    }

    /// (b) The negative control: without the fences the same model fails (loom finds the
    /// interleaving where both sides read the other's old value), so (a) passes because of the
    /// fences, and the model has teeth.
    #[test]
    #[should_panic(expected = "Causality violation")]
    fn loom_gate_without_fences_lets_the_destroyer_free_under_a_user() {
        one_user_vs_one_check::<NoFences>();
    }

    /// One fence is not enough: both sides need theirs.
    #[test]
    #[should_panic(expected = "Causality violation")]
    fn loom_gate_with_only_the_entrant_fence_fails() {
        one_user_vs_one_check::<EntrantFenceOnly>();
    }

    #[test]
    #[should_panic(expected = "Causality violation")]
    fn loom_gate_with_only_the_closer_fence_fails() {
        one_user_vs_one_check::<CloserFenceOnly>();
    }

    /// A user racing with a destroyer that waits for the drain, as `destroy` does: the user
    /// is refused, or it leaves before the destroyer frees. Exhaustive.
    #[test]
    fn loom_gate_user_and_waiting_destroyer() {
        loom::model(|| {
            let shared = Arc::new(Shared::<Fenced>::new());
            let user = {
                let shared = shared.clone();
                thread::spawn(move || shared.user())
            };
            shared.close_wait_and_free();
            user.join().unwrap();
        });
    }

    /// Two users and a waiting destroyer. Exhaustive search takes minutes, so this one is
    /// bounded to three preemptions (loom's recommended way to cover larger models).
    #[test]
    fn loom_gate_two_users_and_a_waiting_destroyer() {
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(3);
        }
        builder.check(|| {
            let shared = Arc::new(Shared::<Fenced>::new());
            let users: Vec<_> = (0..2)
                .map(|_| {
                    let shared = shared.clone();
                    thread::spawn(move || shared.user())
                })
                .collect();
            shared.close_wait_and_free();
            for u in users {
                u.join().unwrap();
            }
        });
    }
}
