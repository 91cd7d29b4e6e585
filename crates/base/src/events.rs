//! The events of a deterministic run, numbered: yield points, clears and unhooks, TLBIs and
//! barriers, TTBR0 loads, frees, pins, detections. In a deterministic run (`run.sh
//! --deterministic`, which turns this on with `yield_points=on`) the numbering is a function of
//! the kernel and its arguments, so event N of one run is event N of every rerun: a debugger
//! can stop at it (`scripts/replay.sh --at N`, or `--back K` to stop K events before the
//! failure), and list what each CPU did up to there (`bs-events`).
//!
//! Each CPU keeps its last [`RING`] events in a ring of its own; the number of every event is
//! taken from one counter. A debugger sets [`STOP_AT`] while the machine is halted (writing
//! memory changes no instruction count, so the run stays the run explore saw) and breaks in
//! [`stop_here`], which [`mark`] calls when it reaches that number.
//!
//! Off (the default outside deterministic runs) an event costs one relaxed load and a branch.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Events kept per CPU.
pub const RING: usize = 64;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A yield point was reached (`a`: its site).
    YieldPoint = 1,
    /// A leaf was cleared (`a`: its VA, `b`: its frame).
    Clear = 2,
    /// A table was unhooked (`a`: the VA it covered, `b`: the table page).
    Unhook = 3,
    /// A TLBI was issued (`a`: its operand, `b`: the op's code).
    Tlbi = 4,
    /// A barrier executed (`a`: which, as the TLB module numbers them).
    Barrier = 5,
    /// TTBR0 was loaded (`a`: the root table, `b`: the ASID).
    Ttbr0 = 6,
    /// A frame was freed (`a`: the frame, `b`: 1 for a table page).
    Free = 7,
    /// The lockless walker pinned a frame (`a`: the VA, `b`: the frame).
    Pin = 8,
    /// A detector fired (`a`: the counter's index).
    Detection = 9,
    /// An RCU grace period ended (`a`: its sequence number).
    GracePeriod = 10,
    /// A store the weak-memory emulation had held became visible (`a`: the address).
    Drain = 11,
    /// A PCT change point lowered this CPU's priority (`a`: the new priority).
    ChangePoint = 12,
    /// A detector named the frame it blames (`a`: the frame, `b`: its level in the walk), so a
    /// replay can look back for what was done to it (`bs-culprit`).
    Blame = 13,
}

/// One event: its number in the run, what it was, and two words of detail.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Event {
    /// Its number in the run, from 1; 0 for an empty slot.
    pub seq: u64,
    /// A [`Kind`] as its number.
    pub kind: u64,
    /// The first word of detail.
    pub a: u64,
    /// The second word of detail.
    pub b: u64,
}

/// A CPU's ring of its last events.
#[repr(C, align(64))]
pub struct Ring {
    /// Where the next event goes (modulo [`RING`]); only the owning CPU writes.
    pub next: AtomicU64,
    /// The events, each four words, written by the owning CPU only.
    pub slots: [[AtomicU64; 4]; RING],
}

/// The event rings, one per CPU (read by `bs-events` in GDB).
pub static RINGS: [Ring; crate::config::MAX_CPUS] = [const {
    Ring {
        next: AtomicU64::new(0),
        slots: [const { [const { AtomicU64::new(0) }; 4] }; RING],
    }
}; crate::config::MAX_CPUS];

/// Each CPU's last unhooks again, in a ring of their own: a walk that holds a table for
/// milliseconds sees it freed long after its unhook, when the unhooking CPU's main ring has
/// moved on (a teardown records hundreds of events); `bs-culprit` looks here too.
pub static UNHOOK_RINGS: [Ring; crate::config::MAX_CPUS] = [const {
    Ring {
        next: AtomicU64::new(0),
        slots: [const { [const { AtomicU64::new(0) }; 4] }; RING],
    }
}; crate::config::MAX_CPUS];

static ENABLED: AtomicBool = AtomicBool::new(false);
/// The number of the last event.
static SEQ: AtomicU64 = AtomicU64::new(0);
/// The event at which [`stop_here`] is called; `u64::MAX` for none. A debugger writes it.
pub static STOP_AT: AtomicU64 = AtomicU64::new(u64::MAX);

/// Turns numbering on (once, at boot, before other CPUs run).
pub fn enable() {
    ENABLED.store(true, Ordering::Release);
}

/// Whether events are numbered.
#[inline(always)]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The number of the last event so far.
pub fn count() -> u64 {
    SEQ.load(Ordering::Relaxed)
}

/// Records an event of `kind` on this CPU (when numbering is on).
#[inline(always)]
pub fn mark(kind: Kind, a: u64, b: u64) {
    if enabled() {
        mark_slow(kind, a, b);
    }
}

#[cold]
#[inline(never)]
fn mark_slow(kind: Kind, a: u64, b: u64) {
    let seq = SEQ.fetch_add(1, Ordering::Relaxed) + 1;
    let cpu = crate::cpu_id() % crate::config::MAX_CPUS;
    push(&RINGS[cpu], [seq, kind as u64, a, b]);
    if kind == Kind::Unhook {
        push(&UNHOOK_RINGS[cpu], [seq, kind as u64, a, b]);
    }
    if seq == STOP_AT.load(Ordering::Relaxed) {
        stop_here(seq);
    }
}

/// Appends one event to `ring` (only its CPU writes it).
fn push(ring: &Ring, event: [u64; 4]) {
    let i = ring.next.load(Ordering::Relaxed);
    let slot = &ring.slots[(i as usize) % RING];
    for (word, value) in slot.iter().zip(event) {
        word.store(value, Ordering::Relaxed);
    }
    ring.next.store(i + 1, Ordering::Relaxed);
}

/// Called at the event a debugger asked for ([`STOP_AT`]): break here
/// (`break broadside_base::events::stop_here`). Never inlined, so one breakpoint catches it.
#[inline(never)]
pub fn stop_here(seq: u64) {
    core::hint::black_box(seq);
}

/// The events of CPU `cpu`'s ring, oldest first (for tests and diagnostics).
pub fn recent(cpu: usize) -> impl Iterator<Item = Event> {
    let ring = &RINGS[cpu];
    let next = ring.next.load(Ordering::Relaxed);
    let first = next.saturating_sub(RING as u64);
    (first..next).map(move |i| {
        let s = &ring.slots[(i as usize) % RING];
        Event {
            seq: s[0].load(Ordering::Relaxed),
            kind: s[1].load(Ordering::Relaxed),
            a: s[2].load(Ordering::Relaxed),
            b: s[3].load(Ordering::Relaxed),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_numbered_and_kept_per_cpu() {
        let before = count();
        mark(Kind::Clear, 1, 2); // off: nothing
        assert_eq!(count(), before);
        enable();
        for i in 0..(RING as u64 + 3) {
            mark(Kind::Tlbi, i, 0);
        }
        let mine: alloc::vec::Vec<Event> = recent(0).collect();
        assert_eq!(mine.len(), RING);
        assert_eq!(mine.last().unwrap().a, RING as u64 + 2);
        assert!(mine.windows(2).all(|w| w[1].seq == w[0].seq + 1));
        assert_eq!(mine.last().unwrap().kind, Kind::Tlbi as u64);
    }
}
