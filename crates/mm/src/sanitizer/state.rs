//! The sanitizer's state machine: what every CPU's TLB may still hold, derived only from what
//! it observed (clears, TLBIs, barriers, TTBR0 loads, rollovers), and the checks against it.
//!
//! # State
//! - **Stores**, one per recording CPU: the open pieces of obligations that CPU's clears left
//!   (a piece is a set of [`Entries`], the frame whose reuse waits for them, and the CPUs that
//!   may still hold them). A partly discharged piece splits into at most three.
//! - **Contexts**, one per CPU: what it has in TTBR0 (root and ASID, from the observed loads),
//!   whether it owes the local full flush of an ASID rollover, which ASID the rollover let it
//!   keep, and which space it last ran under each recent ASID.
//! - **Ops**, one per CPU: its TLBIs issued and not yet completed, and the last few it issued
//!   (for the violation message).
//! - **Spaces**: for each registered address space, the CPUs that loaded it since their last
//!   full flush, grouped by the ASID they loaded it under. A clear is owed on exactly those
//!   CPUs: the kernel's own record of where a space ran (`cpus_ever`) is never consulted.
//! - **Frame counts**: per 4 KiB frame, how many open pieces name it, so that the check before
//!   a frame is freed (nearly always passing) is one load.
//!
//! # Ordering: what counts as "after"
//! Each barrier and TLBI takes a number from one counter, in the order the sanitizer saw them.
//! A clear is *published* by the first store barrier its CPU executes after it (`DSB ISHST` or
//! `DSB ISH` for every CPU's walkers; `DSB NSHST`/`NSH` for its own). A TLBI discharges a piece
//! only if it was issued after the piece was published to the CPUs it reaches; on the issuing
//! CPU alone it also does when that CPU did not have the piece's space loaded from the TLBI's
//! issue to its completion (nothing could re-cache the entry there). It counts only once a DSB
//! on the issuing CPU completed it (`DSB NSH` completes local ops only).
//!
//! # Rollovers
//! A rollover discharges nothing. It marks every CPU as owing a local full flush, which is
//! discharged when observed (`TLBI VMALLE1` completed on that CPU). Until then, a piece open on
//! a CPU that owes the flush and does not run the piece's ASID is *deferred* at a check rather
//! than a violation: the CPU cannot use the entry before it flushes. The promise is checked:
//! the CPU's next TTBR0 load of any ASID but the one it kept must come after its flush, and a
//! load of an ASID it holds a deferred piece under is a violation too.
//!
//! # Locks
//! Each store, context, ops record and space record has its own spin lock; callers mask IRQs
//! (the kernel glue does). Locks nest only as ops → store, ops → context, ops → space,
//! store → context and store → space, so there is no cycle. The usual
//! flow — a CPU records its clears, publishes, flushes and checks its own frames — touches its
//! own records only; another CPU's store is locked when one of its TLBIs may discharge a piece
//! there (the IPI baseline, a rollover flush) or a frame it frees is still owed.
//!
//! # Memory
//! Every table is sized at construction ([`Config`]); open obligations are bounded by
//! [`Config::obligation_bytes`]. A clear that would exceed it is not recorded (counted in
//! [`Stats::dropped`]: the sanitizer coarsens and says so), and a failed allocation drops too:
//! nothing here panics for want of memory. Consecutive leaves one operation clears in one space
//! (an unmap of a range) are one piece, their frames in a per-store array: a piece per page
//! would cost most of the mutator's own work.

use super::clear::{Change, ChangeKind, Clear, Cleared, LeafRun, OpId, Owed, SpaceSlot};
use super::mask::{CpuMask, MAX_SANITIZER_CPUS};
use super::rules::{
    self, Entries, Invalidation, Scope, Tag, Target, asid_matches, hit_range, is_erratum_repeat,
    kind_matches, names,
};
use super::violation::{Check, Gap, Issued, Obligation, Violation, Workaround};
use alloc::boxed::Box;
use alloc::vec::Vec;
use broadside_arch::errata::Errata;
use broadside_arch::pte::PAGE_SIZE;
use broadside_base::hint::QuietMutex as Mutex;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Sizes fixed when the sanitizer is made (at boot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// CPUs `0..cpus`.
    pub cpus: usize,
    /// The first frame with a counter (4 KiB aligned).
    pub frames_base: u64,
    /// How many 4 KiB frames from `frames_base` have a counter; others are always checked the
    /// slow way.
    pub frames: usize,
    /// Address spaces registered at once.
    pub max_spaces: usize,
    /// Bytes of open obligations at once (pieces and the frames they name), all CPUs together.
    pub obligation_bytes: usize,
}

impl Config {
    /// Bytes the tables take, pieces at their bound included.
    pub fn bytes(&self) -> usize {
        self.frames * size_of::<AtomicU32>()
            + self.max_spaces * (size_of::<Mutex<SpaceRecord>>() + 2 * 16)
            + self.cpus
                * (size_of::<Mutex<Ops>>()
                    + size_of::<Mutex<Context>>()
                    + size_of::<Mutex<Store>>()
                    + MAX_PENDING * size_of::<Pending>()
                    + MAX_AWAITING * size_of::<Awaiting>())
            + self.obligation_bytes
    }
}

/// A table the sanitizer could not allocate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizeError {
    /// Which.
    pub what: &'static str,
    /// Bytes asked for.
    pub bytes: usize,
}

/// A data synchronization barrier, as the TLB module reports it after it executed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Barrier {
    /// `DSB ISHST`: earlier stores visible to every CPU's table walks.
    StoreIs,
    /// `DSB NSHST`: earlier stores visible to this CPU's table walks.
    StoreLocal,
    /// `DSB ISH` (or `SY`): a store barrier for every CPU, and completes every TLBI this CPU
    /// issued, broadcast or local.
    FullIs,
    /// `DSB NSH`: a store barrier for this CPU, and completes this CPU's local TLBIs only.
    FullLocal,
}

/// Counts of what the sanitizer did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Obligations recorded (one or two per clear, whatever the CPUs).
    pub recorded: u64,
    /// Obligations not recorded because the piece budget or memory ran out.
    pub dropped: u64,
    /// Pieces a check let go on the promise of a rollover flush.
    pub deferred: u64,
    /// TTBR0 loads of a user ASID checked.
    pub loads_checked: u64,
    /// Pieces open now.
    pub open: usize,
}

/// `prev` extended by `next` when `next` names the page right after what `prev` names, with
/// everything else the same (instruction, ASID, leaf-only, TTL hint, scope): a by-VA op on each page of a
/// range invalidates what one range op over those pages would (Arm ARM D8.13.5), so the audit
/// models the loop as that range.
fn extend_by_page(prev: &Invalidation, next: &Invalidation) -> Option<Invalidation> {
    let Target::Va { va } = next.target else {
        return None;
    };
    // The same instruction (its operand aside, which the target already decodes).
    let same = core::mem::discriminant(&prev.op) == core::mem::discriminant(&next.op)
        && prev.asid == next.asid
        && prev.leaf_only == next.leaf_only
        && prev.ttl == next.ttl
        && prev.scope == next.scope;
    if !same {
        return None;
    }
    let (base, pages) = match prev.target {
        Target::Va { va } => (va, 1),
        Target::Range { base, pages } => (base, pages),
        _ => return None,
    };
    (base.checked_add(pages * PAGE_SIZE) == Some(va)).then_some(Invalidation {
        target: Target::Range {
            base,
            pages: pages + 1,
        },
        ..*prev
    })
}

/// TLBIs one CPU may have issued and not completed; beyond this the oldest is forgotten (it can
/// then never discharge anything: conservative).
pub const MAX_PENDING: usize = 64;
/// Completed broadcast TLBIs one CPU may have waiting for an erratum's workaround; beyond this
/// the oldest is forgotten (conservative, as above). A kernel that runs the workaround keeps one
/// or two here.
pub const MAX_AWAITING: usize = 64;
/// Issued ops kept per CPU for the violation message.
const HISTORY: usize = 16;
/// Recent (ASID, space) pairs kept per CPU for the reuse check; a collision forgets the older.
const RECENT_ASIDS: usize = 64;
/// ASIDs a space's holders are grouped under before the rest go to [`Tag::AnyAsid`].
const HOLDER_TAGS: usize = 4;
const UNPUBLISHED: u64 = u64::MAX;
/// A removed key in the space index.
const TOMBSTONE: u64 = 1;

/// What a CPU has loaded in TTBR0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Loaded {
    root: u64,
    /// 0: no user ASID (the kernel's empty table).
    asid: u16,
    /// The registered space whose root it is; 0 if none.
    space: u64,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    inv: Invalidation,
    seq: u64,
    /// The number of the last op merged into it (`seq` when none was): the issuer's history
    /// entries from `seq` to here are this op's.
    last: u64,
    /// The issuer's TTBR0 at issue, and its count of loads then: if the count has not moved at
    /// completion, that was its TTBR0 throughout.
    loaded: Loaded,
    loads: u64,
}

#[derive(Clone, Copy, Debug)]
struct HistoryEntry {
    seq: u64,
    inv: Invalidation,
    completed: bool,
    awaiting: Option<Workaround>,
}

/// A broadcast TLBI a `DSB ISH` completed while an erratum is in force: it discharges only once
/// the workaround ran after that completion (see [`Sanitizer::set_errata`]).
#[derive(Clone, Copy, Debug)]
struct Awaiting {
    op: Pending,
    /// The issuer's TTBR0 from issue to completion, if it did not change (as for a discharge).
    steady: Option<Loaded>,
    /// The event number of the `DSB ISH` that completed it.
    completed: u64,
    /// Erratum 4118414: still waits for a broadcast TLBI (the kernel's is `TLBI VALE1IS, XZR`)
    /// issued after `completed` and completed by a `DSB ISH`, both on the issuing CPU.
    repeat: bool,
    /// Erratum 4193714: the CPUs (never the issuer) that ran the space of something it hit when
    /// it took effect (its completion, or its repeat's), and executed no `DSB ISH` since.
    waiting: CpuMask,
    /// When it took effect: a waiting CPU's `DSB ISH` counts only after this event number.
    synced_at: u64,
}

/// A CPU's TLB operations: only that CPU changes them (and a CPU whose `DSB ISH` ends an
/// [`Awaiting::waiting`] of them).
struct Ops {
    pending: Vec<Pending>,
    history: [Option<HistoryEntry>; HISTORY],
    next: usize,
    /// The event number of this CPU's last barrier: a by-VA op after it is not merged into
    /// one before it (the barrier may have published clears the earlier op is not ordered
    /// after).
    last_barrier: u64,
    awaiting: Vec<Awaiting>,
}

impl Ops {
    /// Marks `op` (its history entries: every op merged into it) completed, and what it awaits
    /// now.
    fn mark(&mut self, op: &Pending, awaiting: Option<Workaround>) {
        for h in self.history.iter_mut().flatten() {
            if (op.seq..=op.last).contains(&h.seq) {
                h.completed = true;
                h.awaiting = awaiting;
            }
        }
    }
}

/// A CPU's translation context, as observed.
struct Context {
    loaded: Loaded,
    /// The event number of the last TTBR0 load (for delayed stores: did it come after a clear
    /// that was not visible yet?).
    loaded_at: u64,
    loads: u64,
    owes_flush: bool,
    kept: Option<u16>,
    recent: [(u16, u64); RECENT_ASIDS],
    /// The user space it last switched away from without a `DSB ISH` since: its accesses
    /// through that space may still be outstanding (erratum 4193714). Only the last one is
    /// kept.
    left: Loaded,
}

/// Which frames a piece's entries name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Frames {
    /// Every entry names this frame (a table page: a walk-cache entry, or leaves read from it).
    One(u64),
    /// Leaf `k` of the piece (the `k`-th `leaf_size` step from its start) maps
    /// `Store::frames[at + k]`.
    Run { at: u32 },
}

/// One open piece of an obligation.
#[derive(Clone, Copy, Debug)]
struct Piece {
    entries: Entries,
    /// The range it was recorded with, before any discharge split it (for the violation
    /// message: the op "issued for it" is the last that named any of that range).
    origin: (u64, u64),
    frames: Frames,
    op: OpId,
    space: u64,
    /// The space's root table: a CPU with another root loaded cannot re-cache the entries.
    root: u64,
    /// The event number when it was recorded (for the violation message only).
    born: u64,
    published_all: u64,
    published_local: u64,
    recorder: u16,
    /// CPUs on which a check let it go on the promise of a rollover flush
    /// ([`Sanitizer::check`]): their next load of its ASID must come after that flush.
    deferred_on: CpuMask,
    /// The space's holder version when it was recorded: a later clear with the same version is
    /// owed on the same CPUs, and may extend it.
    version: u64,
    open: CpuMask,
    /// Whether the store that made it reached memory, so that no walk can read the old entry
    /// any more (always, unless stores are delayed: `weak=on`).
    visible: bool,
    /// Recorded while no CPU held the space under any ASID (only while stores are delayed): its
    /// tag becomes the ASID of the first CPU that loads the space before the store is visible.
    placeholder: bool,
}

impl Piece {
    /// Whether a TLBI issued at `seq` on `issuer` is ordered after the clear, for `cpu`.
    fn ordered(&self, seq: u64, issuer: usize, cpu: usize) -> bool {
        self.published_all < seq
            || (cpu == issuer && self.recorder as usize == issuer && self.published_local < seq)
    }

    fn leaves(&self) -> u64 {
        (self.entries.end - self.entries.start) / self.entries.leaf_size
    }

    /// The frames its entries name, in address order (one per leaf of a run).
    fn frames<'a>(&self, store: &'a [u64]) -> impl Iterator<Item = u64> + 'a {
        let (one, run) = match self.frames {
            Frames::One(f) => (Some(f), &store[0..0]),
            Frames::Run { at } => (
                None,
                &store[at as usize..at as usize + self.leaves() as usize],
            ),
        };
        one.into_iter().chain(run.iter().copied())
    }

    /// The part `[start, end)` of this piece (a whole number of its leaves).
    fn part(&self, start: u64, end: u64) -> Piece {
        let frames = match self.frames {
            Frames::One(f) => Frames::One(f),
            Frames::Run { at } => Frames::Run {
                at: at + ((start - self.entries.start) / self.entries.leaf_size) as u32,
            },
        };
        Piece {
            entries: Entries {
                start,
                end,
                ..self.entries
            },
            frames,
            ..*self
        }
    }

    fn obligation(&self, frame: u64) -> Obligation {
        Obligation {
            op: self.op,
            space: self.space,
            entries: self.entries,
            frame,
        }
    }
}

/// One recording CPU's open pieces, in the order recorded (compaction keeps the order, so the
/// pieces not yet published by a barrier are always a suffix).
struct Store {
    pieces: Vec<Piece>,
    /// The frames of the runs (see [`Frames::Run`]).
    frames: Vec<u64>,
    unpublished_all: usize,
    unpublished_local: usize,
    /// Pieces from here on are not visible yet (their stores wait in the recording CPU's
    /// emulated store buffer).
    invisible_from: usize,
    /// Bytes its vectors hold (counted against the budget).
    bytes: usize,
    /// Pieces with a deferral mark on a CPU they are still open on.
    deferred: usize,
    /// Obligations this CPU recorded (counted here, under the lock already held, rather than in
    /// a counter every CPU writes).
    recorded: u64,
}

impl Store {
    fn capacity_bytes(&self) -> usize {
        self.pieces.capacity() * size_of::<Piece>() + self.frames.capacity() * size_of::<u64>()
    }
}

/// A registered space: who may hold its entries, under which ASID.
#[derive(Clone, Copy)]
struct SpaceRecord {
    id: u64,
    root: u64,
    tags: [(u16, CpuMask); HOLDER_TAGS],
    ntags: usize,
    /// Holders under ASIDs beyond the first [`HOLDER_TAGS`].
    other: CpuMask,
    /// Bumped at every change of the holders.
    version: u64,
}

impl SpaceRecord {
    const EMPTY: Self = Self {
        id: 0,
        root: 0,
        tags: [(0, CpuMask::EMPTY); HOLDER_TAGS],
        ntags: 0,
        other: CpuMask::EMPTY,
        version: 0,
    };

    fn holders(&self) -> CpuMask {
        self.tags[..self.ntags]
            .iter()
            .fold(self.other, |m, (_, cpus)| m.or(*cpus))
    }

    fn add(&mut self, cpu: usize, asid: u16) {
        if let Some((_, cpus)) = self.tags[..self.ntags].iter_mut().find(|(a, _)| *a == asid) {
            if !cpus.contains(cpu) {
                cpus.insert(cpu);
                self.version += 1;
            }
            return;
        }
        self.version += 1;
        if self.ntags < HOLDER_TAGS {
            self.tags[self.ntags] = (asid, CpuMask::single(cpu));
            self.ntags += 1;
        } else {
            self.other.insert(cpu);
        }
    }

    /// `cpu` flushed its whole TLB.
    fn remove(&mut self, cpu: usize) {
        if !self.holders().contains(cpu) {
            return;
        }
        self.version += 1;
        self.other.remove(cpu);
        for (_, cpus) in &mut self.tags[..self.ntags] {
            cpus.remove(cpu);
        }
        let mut kept = 0;
        for i in 0..self.ntags {
            if !self.tags[i].1.is_empty() {
                self.tags[kept] = self.tags[i];
                kept += 1;
            }
        }
        self.ntags = kept;
    }
}

/// The registered spaces: records in slots, and an index from root table to slot that TTBR0
/// loads read without a lock (open addressing; keys change only under `free`'s lock).
struct Spaces {
    keys: Box<[AtomicU64]>,
    slots: Box<[AtomicU32]>,
    records: Box<[Mutex<SpaceRecord>]>,
    /// Per slot, its record's `version << 1 | one_group` (one ASID group, nothing untracked),
    /// written by a read-modify-write under the record's lock whenever the holders change, so a
    /// clear can tell without the lock that it is owed exactly where the last one was.
    versions: Box<[AtomicU64]>,
    live: Box<[AtomicU64]>,
    free: Mutex<Vec<u32>>,
}

impl Spaces {
    fn new(max: usize) -> Result<Self, SizeError> {
        let cap = (2 * max.max(1)).next_power_of_two();
        Ok(Self {
            keys: boxed(cap, "space index", |_| AtomicU64::new(0))?,
            slots: boxed(cap, "space index", |_| AtomicU32::new(0))?,
            records: boxed(max, "space records", |_| Mutex::new(SpaceRecord::EMPTY))?,
            versions: boxed(max, "space records", |_| AtomicU64::new(0))?,
            live: boxed(max.div_ceil(64), "space records", |_| AtomicU64::new(0))?,
            free: Mutex::new(
                try_vec(max, "space records")?
                    .into_iter()
                    .chain((0..max as u32).rev())
                    .collect(),
            ),
        })
    }

    fn home(&self, root: u64) -> usize {
        ((root >> 12).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize & (self.keys.len() - 1)
    }

    fn lookup(&self, root: u64) -> Option<SpaceSlot> {
        let mask = self.keys.len() - 1;
        let mut i = self.home(root);
        for _ in 0..self.keys.len() {
            match self.keys[i].load(Ordering::Acquire) {
                0 => return None,
                k if k == root => return Some(SpaceSlot(self.slots[i].load(Ordering::Relaxed))),
                _ => i = (i + 1) & mask,
            }
        }
        None
    }

    fn register(&self, id: u64, root: u64) -> Option<SpaceSlot> {
        let mut free = self.free.lock();
        let slot = free.pop()?;
        let mask = self.keys.len() - 1;
        let mut i = self.home(root);
        for _ in 0..self.keys.len() {
            let k = self.keys[i].load(Ordering::Relaxed);
            if k == 0 || k == TOMBSTONE || k == root {
                let mut r = self.records[slot as usize].lock();
                *r = SpaceRecord {
                    id,
                    root,
                    version: r.version + 1,
                    ..SpaceRecord::EMPTY
                };
                self.publish_version(SpaceSlot(slot), &r);
                drop(r);
                self.slots[i].store(slot, Ordering::Relaxed);
                self.keys[i].store(root, Ordering::Release);
                self.live[slot as usize / 64].fetch_or(1 << (slot % 64), Ordering::Release);
                return Some(SpaceSlot(slot));
            }
            i = (i + 1) & mask;
        }
        free.push(slot);
        None
    }

    fn unregister(&self, slot: SpaceSlot) {
        let mut free = self.free.lock();
        let root = self.records[slot.0 as usize].lock().root;
        let mask = self.keys.len() - 1;
        let mut i = self.home(root);
        for _ in 0..self.keys.len() {
            match self.keys[i].load(Ordering::Relaxed) {
                0 => break,
                k if k == root && self.slots[i].load(Ordering::Relaxed) == slot.0 => {
                    self.keys[i].store(TOMBSTONE, Ordering::Release);
                    break;
                }
                _ => i = (i + 1) & mask,
            }
        }
        self.live[slot.0 as usize / 64].fetch_and(!(1 << (slot.0 % 64)), Ordering::Release);
        *self.records[slot.0 as usize].lock() = SpaceRecord::EMPTY;
        free.push(slot.0);
    }

    /// Publishes `r`'s version (call under its lock after every change).
    fn publish_version(&self, slot: SpaceSlot, r: &SpaceRecord) {
        let one_group = r.ntags == 1 && r.other.is_empty();
        self.versions[slot.0 as usize]
            .swap(r.version << 1 | u64::from(one_group), Ordering::AcqRel);
    }

    /// The version word of `slot` (see `versions`), read with a read-modify-write: either a
    /// TTBR0 load's holder change comes after it (and that CPU's walks then see the clear made
    /// before it), or this reads the changed version.
    fn version(&self, slot: SpaceSlot) -> u64 {
        self.versions[slot.0 as usize].fetch_add(0, Ordering::AcqRel)
    }

    fn live_slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.live.iter().enumerate().flat_map(|(w, word)| {
            let mut bits = word.load(Ordering::Acquire);
            core::iter::from_fn(move || {
                (bits != 0).then(|| {
                    let b = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    w * 64 + b
                })
            })
        })
    }
}

/// The sanitizer: see the module docs.
pub struct Sanitizer {
    ncpus: usize,
    ops: Box<[Mutex<Ops>]>,
    contexts: Box<[Mutex<Context>]>,
    stores: Box<[Mutex<Store>]>,
    /// Stores with open pieces.
    nonempty: [AtomicU64; MAX_SANITIZER_CPUS / 64],
    spaces: Spaces,
    frames_base: u64,
    frame_counts: Box<[AtomicU32]>,
    seq: AtomicU64,
    /// Pieces open now.
    open: AtomicUsize,
    /// Bytes the stores hold, and the budget.
    used: AtomicUsize,
    max_bytes: usize,
    /// Deferred pieces open now: TTBR0 loads look for them only when there are some.
    deferred_open: AtomicUsize,
    disarmed: AtomicBool,
    dropped: AtomicU64,
    deferred: AtomicU64,
    loads_checked: AtomicU64,
    /// Stores reach memory only when their CPU drains (`weak=on`): see [`Sanitizer::stores_visible`].
    delayed: AtomicBool,
    /// The errata in force ([`Sanitizer::set_errata`]).
    repeat_tlbi: AtomicBool,
    dvmsync: AtomicBool,
    /// [`Awaiting`] entries with waiting CPUs, over all CPUs: a `DSB ISH` looks for the ones it
    /// ends only when there are some.
    waiting_open: AtomicUsize,
}

fn try_vec<T>(n: usize, what: &'static str) -> Result<Vec<T>, SizeError> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| SizeError {
        what,
        bytes: n * size_of::<T>(),
    })?;
    Ok(v)
}

fn boxed<T>(
    n: usize,
    what: &'static str,
    f: impl FnMut(usize) -> T,
) -> Result<Box<[T]>, SizeError> {
    let mut v = try_vec(n, what)?;
    v.extend((0..n).map(f));
    Ok(v.into_boxed_slice())
}

impl Sanitizer {
    /// A sanitizer sized by `config`, or which table could not be allocated.
    ///
    /// # Panics
    /// If `config.cpus` is 0 or above [`MAX_SANITIZER_CPUS`].
    pub fn new(config: Config) -> Result<Self, SizeError> {
        assert!(
            (1..=MAX_SANITIZER_CPUS).contains(&config.cpus),
            "{} CPUs",
            config.cpus
        );
        let cpus = config.cpus;
        let ops = (0..cpus)
            .map(|_| {
                Ok(Mutex::new(Ops {
                    pending: try_vec(MAX_PENDING, "pending TLBIs")?,
                    history: [None; HISTORY],
                    next: 0,
                    last_barrier: 0,
                    awaiting: try_vec(MAX_AWAITING, "TLBIs awaiting a workaround")?,
                }))
            })
            .collect::<Result<Vec<_>, SizeError>>()?;
        Ok(Self {
            ncpus: cpus,
            ops: ops.into_boxed_slice(),
            contexts: boxed(cpus, "CPU contexts", |_| {
                Mutex::new(Context {
                    loaded: Loaded::default(),
                    loaded_at: 0,
                    loads: 0,
                    owes_flush: false,
                    kept: None,
                    recent: [(0, 0); RECENT_ASIDS],
                    left: Loaded::default(),
                })
            })?,
            stores: boxed(cpus, "stores", |_| {
                Mutex::new(Store {
                    pieces: Vec::new(),
                    frames: Vec::new(),
                    unpublished_all: 0,
                    unpublished_local: 0,
                    invisible_from: 0,
                    bytes: 0,
                    deferred: 0,
                    recorded: 0,
                })
            })?,
            nonempty: [const { AtomicU64::new(0) }; MAX_SANITIZER_CPUS / 64],
            spaces: Spaces::new(config.max_spaces)?,
            frames_base: config.frames_base,
            frame_counts: boxed(config.frames, "frame counts", |_| AtomicU32::new(0))?,
            seq: AtomicU64::new(1),
            open: AtomicUsize::new(0),
            used: AtomicUsize::new(0),
            max_bytes: config.obligation_bytes,
            deferred_open: AtomicUsize::new(0),
            disarmed: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            deferred: AtomicU64::new(0),
            loads_checked: AtomicU64::new(0),
            delayed: AtomicBool::new(false),
            repeat_tlbi: AtomicBool::new(false),
            dvmsync: AtomicBool::new(false),
            waiting_open: AtomicUsize::new(0),
        })
    }

    /// The CPUs have `errata` (`broadside_arch::errata`): from now on a broadcast TLBI completed
    /// by a `DSB ISH` discharges nothing until the workaround ran after that completion —
    /// for erratum 4118414 (`repeat_tlbi`), a `TLBI VALE1IS, XZR` issued after it and completed
    /// by a `DSB ISH`, both on the issuing CPU; for erratum 4193714 (`dvmsync_ipi`), on each
    /// CPU that ran the space (had its root in TTBR0) when the completion took effect, a
    /// `DSB ISH` of that CPU's own after it (the one the kernel's IPI runs), each CPU discharged
    /// by its own. With both, the repeat first, and the CPUs' barriers after the repeat's. Call
    /// before any TLBI is observed.
    pub fn set_errata(&self, errata: Errata) {
        self.repeat_tlbi
            .store(errata.repeat_tlbi, Ordering::Release);
        self.dvmsync.store(errata.dvmsync_ipi, Ordering::Release);
    }

    /// The errata the model applies.
    pub fn errata(&self) -> Errata {
        Errata {
            repeat_tlbi: self.repeat_tlbi.load(Ordering::Acquire),
            dvmsync_ipi: self.dvmsync.load(Ordering::Acquire),
        }
    }

    /// A sanitizer for tests: `cpus` CPUs, frame counters over 256 MiB from 2 GiB (frames
    /// elsewhere are checked the slow way), 64 spaces, 16 MiB of obligations.
    pub fn for_cpus(cpus: usize) -> Self {
        Self::new(Config {
            cpus,
            frames_base: 0x8000_0000,
            frames: 1 << 16,
            max_spaces: 64,
            obligation_bytes: 16 << 20,
        })
        .expect("a test sanitizer fits")
    }

    /// What it did so far.
    pub fn stats(&self) -> Stats {
        Stats {
            recorded: self.stores.iter().map(|s| s.lock().recorded).sum(),
            dropped: self.dropped.load(Ordering::Relaxed),
            deferred: self.deferred.load(Ordering::Relaxed),
            loads_checked: self.loads_checked.load(Ordering::Relaxed),
            open: self.open.load(Ordering::Relaxed),
        }
    }

    /// Obligations not recorded so far for want of budget or memory.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Stops recording and checking, and forgets every piece: after a run has failed, later
    /// checks would only repeat what it found, and a planted bug's undischarged obligations
    /// would otherwise pile up until every check is a long scan.
    pub fn disarm(&self) {
        self.disarmed.store(true, Ordering::Release);
        for (cpu, store) in self.stores.iter().enumerate() {
            let mut guard = store.lock();
            let s = &mut *guard;
            for p in &mut s.pieces {
                p.open = CpuMask::EMPTY;
            }
            self.settle(cpu, s, true);
        }
        self.open.store(0, Ordering::Relaxed);
        self.deferred_open.store(0, Ordering::Relaxed);
    }

    /// Whether [`Self::disarm`] was called.
    pub fn disarmed(&self) -> bool {
        self.disarmed.load(Ordering::Acquire)
    }

    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::AcqRel)
    }

    // ---- spaces ----------------------------------------------------------------------------

    /// Registers a space whose level-0 table is at `root`, so that its TTBR0 loads are
    /// recognised. `None` when the registry is full: clears of that space then name their CPUs
    /// with [`Owed::Recorded`].
    pub fn register_space(&self, id: u64, root: u64) -> Option<SpaceSlot> {
        self.spaces.register(id, root)
    }

    /// Forgets a registered space: call once no CPU can load it again and its last clear was
    /// recorded (its teardown). Its open pieces stay open.
    pub fn unregister_space(&self, slot: SpaceSlot) {
        self.spaces.unregister(slot)
    }

    /// The CPUs that may hold `slot`'s entries (loaded it since their last full flush).
    pub fn holders(&self, slot: SpaceSlot) -> CpuMask {
        self.spaces.records[slot.0 as usize].lock().holders()
    }

    // ---- observed events -------------------------------------------------------------------

    /// `cpu` is about to load TTBR0 with the table at `root` and `asid` (0: the kernel's empty
    /// table). Checks the load, then records that `cpu` may cache the space's entries.
    pub fn load_ttbr0(&self, cpu: usize, root: u64, asid: u16) -> Option<Box<Violation>> {
        if self.disarmed() {
            return None;
        }
        let slot = (asid != 0).then(|| self.spaces.lookup(root)).flatten();
        let space = slot.map_or(0, |s| self.spaces.records[s.0 as usize].lock().id);
        let mut violation = None;
        {
            let mut c = self.contexts[cpu].lock();
            if asid != 0 {
                self.loads_checked.fetch_add(1, Ordering::Relaxed);
                if c.owes_flush && c.kept != Some(asid) {
                    violation = Some(Violation::RolloverFlushSkipped {
                        cpu,
                        asid,
                        kept: c.kept,
                    });
                    c.owes_flush = false;
                }
                if space != 0 {
                    let r = &mut c.recent[asid as usize % RECENT_ASIDS];
                    if r.0 == asid && r.1 != 0 && r.1 != space && violation.is_none() {
                        violation = Some(Violation::AsidReused {
                            cpu,
                            asid,
                            space,
                            previous: r.1,
                        });
                    }
                    *r = (asid, space);
                }
            }
            if c.loaded.asid != 0 && c.loaded.root != root {
                c.left = c.loaded;
            }
            c.loaded = Loaded { root, asid, space };
            c.loaded_at = self.next_seq();
            c.loads += 1;
        }
        if let Some(slot) = slot {
            let mut r = self.spaces.records[slot.0 as usize].lock();
            r.add(cpu, asid);
            self.spaces.publish_version(slot, &r);
        }
        if violation.is_none() && asid != 0 && self.deferred_open.load(Ordering::Acquire) > 0 {
            violation = self.stale_entry_loaded(cpu, asid);
        }
        violation.map(Box::new)
    }

    /// From now on a store reaches memory only when its CPU drains its emulated store buffer
    /// (`weak=on`): a clear is readable by other CPUs' walks until then, and is owed on every CPU
    /// that loads its space meanwhile ([`Self::stores_visible`]). Call before any record.
    pub fn set_stores_delayed(&self) {
        self.delayed.store(true, Ordering::Release);
    }

    fn delayed(&self) -> bool {
        self.delayed.load(Ordering::Relaxed)
    }

    /// `cpu` drained its store buffer: its clears recorded so far are in memory. Each one not
    /// visible until now is owed, besides the CPUs that held its space when it was recorded, on
    /// every CPU that loaded that space after it was recorded (its walks could still read the
    /// old entry, and cache it under the ASID it loaded). A placeholder (recorded when nobody
    /// held the space) takes the ASID of the first such CPU; a CPU that loaded the space under
    /// another ASID than a piece's is not added to it (the emulation's one blind spot: a
    /// rollover inside a store's window).
    ///
    /// `at` is the event number of the drain ([`Self::now`], taken when it happened): pieces
    /// recorded before it become visible, and the loads that count are those between a piece's
    /// record and `at` (the glue may tell of a drain a little late, when it happened inside a
    /// call of the sanitizer's own).
    pub fn stores_visible(&self, cpu: usize, at: u64) {
        if self.disarmed() || !self.delayed() {
            return;
        }
        let mut guard = self.stores[cpu].lock();
        let s = &mut *guard;
        let from = s.invisible_from;
        let mut emptied = false;
        let mut upto = from;
        for p in s.pieces[from..].iter_mut().take_while(|p| p.born <= at) {
            if !p.visible {
                self.absorb_loads(p, at);
            }
            p.visible = true;
            emptied |= p.open.is_empty();
            upto += 1;
        }
        if upto == from {
            return;
        }
        s.invisible_from = upto;
        self.settle(cpu, s, emptied);
    }

    /// The event clock now: the number a drain is stamped with ([`Self::stores_visible`]).
    pub fn now(&self) -> u64 {
        self.next_seq()
    }

    /// Adds to the invisible piece `p` every CPU whose last TTBR0 load, of `p`'s space, came
    /// after `p` was recorded and before `until` (see [`Self::stores_visible`]).
    fn absorb_loads(&self, p: &mut Piece, until: u64) {
        for (x, c) in self.contexts.iter().enumerate().take(self.ncpus) {
            let c = c.lock();
            if c.loaded.root != p.root
                || c.loaded.asid == 0
                || c.loaded_at < p.born
                || c.loaded_at >= until
            {
                continue;
            }
            if p.placeholder {
                p.entries.tag = Tag::Asid(c.loaded.asid);
                p.placeholder = false;
            }
            if p.entries.tag == Tag::Global || p.entries.tag == Tag::Asid(c.loaded.asid) {
                p.open.insert(x);
            }
        }
    }

    /// An ASID rollover (Linux's `flush_context`): every CPU owes a local full flush before it
    /// loads any ASID but `kept(cpu)`, the one it keeps running (reserved into the new
    /// generation). Nothing is discharged here.
    pub fn rollover(&self, kept: &dyn Fn(usize) -> Option<u16>) {
        if self.disarmed() {
            return;
        }
        for (cpu, c) in self.contexts.iter().enumerate() {
            let mut c = c.lock();
            c.owes_flush = true;
            c.kept = kept(cpu);
        }
    }

    /// `cpu` is about to issue `inv`. It discharges nothing until a DSB on `cpu` completes it.
    ///
    /// # Panics
    /// If `inv` is local to another CPU: a non-broadcast TLBI acts on the issuing CPU.
    pub fn issue(&self, cpu: usize, inv: Invalidation) {
        if let Scope::Local(target) = inv.scope {
            assert_eq!(target, cpu, "a local TLBI acts on the issuing CPU");
        }
        if self.disarmed() {
            return;
        }
        let (loaded, loads) = {
            let c = self.contexts[cpu].lock();
            (c.loaded, c.loads)
        };
        let seq = self.next_seq();
        let mut ops = self.ops[cpu].lock();
        // A by-VA loop (a range flush without FEAT_TLBIRANGE: up to 511 TLBIs before one DSB)
        // is kept as one range, so that it never overflows the pending list. The merged op
        // keeps the earlier sequence number: a clear made visible between the two is then
        // credited to neither (conservative), never to the earlier one.
        let since_barrier = ops.last_barrier;
        if let Some(last) = ops.pending.last_mut()
            && last.loaded == loaded
            && last.loads == loads
            && last.seq > since_barrier
            && let Some(merged) = extend_by_page(&last.inv, &inv)
        {
            last.inv = merged;
            last.last = seq;
        } else {
            if ops.pending.len() == MAX_PENDING {
                ops.pending.remove(0);
            }
            ops.pending.push(Pending {
                inv,
                seq,
                last: seq,
                loaded,
                loads,
            });
        }
        let next = ops.next;
        ops.history[next] = Some(HistoryEntry {
            seq,
            inv,
            completed: false,
            awaiting: None,
        });
        ops.next = (next + 1) % HISTORY;
    }

    /// `cpu` executed `barrier`: it publishes the clears `cpu` recorded before it, and a full
    /// barrier completes `cpu`'s TLBIs of its domain. A `DSB ISH` also completes `cpu`'s own
    /// accesses, which erratum 4193714's model waits for ([`Self::set_errata`]).
    pub fn barrier(&self, cpu: usize, barrier: Barrier) {
        if self.disarmed() {
            return;
        }
        let seq = self.next_seq();
        self.ops[cpu].lock().last_barrier = seq;
        let all = matches!(barrier, Barrier::StoreIs | Barrier::FullIs);
        {
            let mut guard = self.stores[cpu].lock();
            let s = &mut *guard;
            let from = s.unpublished_local;
            for p in &mut s.pieces[from..] {
                if p.published_local == UNPUBLISHED {
                    p.published_local = seq;
                }
            }
            s.unpublished_local = s.pieces.len();
            if all {
                let from = s.unpublished_all;
                for p in &mut s.pieces[from..] {
                    if p.published_all == UNPUBLISHED {
                        p.published_all = seq;
                    }
                }
                s.unpublished_all = s.pieces.len();
            }
        }
        match barrier {
            Barrier::FullIs => {
                self.complete(cpu, seq, |_| true);
                // Numbered under the context's lock, after the space it left is forgotten: a
                // completion that read this CPU's context before saw it still owing the sync,
                // and is numbered before this; one that reads it after sees nothing to wait for.
                let synced_at = {
                    let mut c = self.contexts[cpu].lock();
                    c.left = Loaded::default();
                    self.next_seq()
                };
                self.synced(cpu, synced_at);
            }
            Barrier::FullLocal => {
                self.complete(cpu, seq, |inv| matches!(inv.scope, Scope::Local(_)))
            }
            Barrier::StoreIs | Barrier::StoreLocal => {}
        }
    }

    /// Completes `cpu`'s pending TLBIs that `completes` accepts, oldest first, at the barrier
    /// numbered `at`. With an erratum in force, a broadcast one waits for the workaround
    /// ([`Self::set_errata`]); a completed broadcast TLBI ends the wait of those completed before
    /// it was issued (it is their repeat).
    fn complete(&self, cpu: usize, at: u64, completes: impl Fn(&Invalidation) -> bool) {
        let loads_now = self.contexts[cpu].lock().loads;
        let Errata {
            repeat_tlbi: repeat,
            dvmsync_ipi: dvmsync,
        } = self.errata();
        let mut ops = self.ops[cpu].lock();
        // The issue number of the latest repeat this barrier completed.
        let mut repeated: Option<u64> = None;
        let mut i = 0;
        while i < ops.pending.len() {
            let p = ops.pending[i];
            if !completes(&p.inv) {
                i += 1;
                continue;
            }
            ops.pending.remove(i);
            // The issuer's TTBR0 through the op's life, when no load happened in between.
            let steady = (p.loads == loads_now).then_some(p.loaded);
            let broadcast = p.inv.scope == Scope::InnerShareable;
            // Erratum 4118414's workaround is a broadcast TLBI issued after the completion and
            // completed in turn; which TLBI does not matter. The kernel's is the dummy
            // `VALE1IS, XZR` once per completion; the per-TLBI form before Linux a8f78680ee6b
            // repeats each TLBI after a `DSB ISH` (`RepeatForm::PerTlbi`, the flush bench's old
            // path). Each is credited the same way.
            if repeat && broadcast {
                repeated = repeated.max(Some(p.seq));
            }
            // The dummy invalidates nothing in use, so owes no repeat of its own.
            let dummy = repeat && is_erratum_repeat(&p.inv);
            if dummy || !broadcast || !(repeat || dvmsync) {
                ops.mark(&p, None);
                self.discharge(cpu, &p, steady, CpuMask::ALL, false);
                continue;
            }
            if ops.awaiting.len() == MAX_AWAITING {
                let oldest = ops.awaiting.remove(0);
                if !oldest.waiting.is_empty() {
                    self.waiting_open.fetch_sub(1, Ordering::Relaxed);
                }
            }
            ops.awaiting.push(Awaiting {
                op: p,
                steady,
                completed: at,
                repeat,
                waiting: CpuMask::EMPTY,
                synced_at: at,
            });
            if repeat {
                ops.mark(&p, Some(Workaround::Repeat));
            } else {
                let last = ops.awaiting.len() - 1;
                self.take_effect(cpu, &mut ops, last, at);
            }
        }
        let Some(repeated) = repeated else { return };
        let mut k = 0;
        while k < ops.awaiting.len() {
            let a = &mut ops.awaiting[k];
            if !(a.repeat && a.completed < repeated) {
                k += 1;
                continue;
            }
            a.repeat = false;
            if !self.take_effect(cpu, &mut ops, k, at) {
                k += 1;
            }
        }
    }

    /// The completion of `ops.awaiting[k]` (issued on `cpu`) takes effect at event `at`: its
    /// repeat (if any) is done, so it discharges everywhere but on the CPUs that run a space it
    /// hit, which erratum 4193714 makes wait for their own `DSB ISH` ([`Self::synced`]).
    /// Returns whether the entry was removed (nothing left to wait for).
    fn take_effect(&self, cpu: usize, ops: &mut Ops, k: usize, at: u64) -> bool {
        let a = ops.awaiting[k];
        let dvmsync = self.dvmsync.load(Ordering::Acquire);
        // Counted before the running CPUs' contexts are read (under their locks): a CPU whose
        // `DSB ISH` follows a read that held it then finds the count, and waits on this CPU's
        // ops lock until the entry is there ([`Self::synced`]).
        if dvmsync {
            self.waiting_open.fetch_add(1, Ordering::AcqRel);
        }
        let waiting = self.discharge(cpu, &a.op, a.steady, CpuMask::ALL, dvmsync);
        if waiting.is_empty() {
            if dvmsync {
                self.waiting_open.fetch_sub(1, Ordering::AcqRel);
            }
            ops.awaiting.remove(k);
            ops.mark(&a.op, None);
            return true;
        }
        ops.awaiting[k].waiting = waiting;
        ops.awaiting[k].synced_at = at;
        ops.mark(&a.op, Some(Workaround::DvmSync));
        false
    }

    /// `cpu` executed a `DSB ISH` at event `at`: its own accesses have completed, so every
    /// completion that took effect before it and waited for `cpu` (erratum 4193714) now counts
    /// there.
    fn synced(&self, cpu: usize, at: u64) {
        if self.waiting_open.load(Ordering::Acquire) == 0 {
            return;
        }
        for issuer in 0..self.ncpus {
            let mut ops = self.ops[issuer].lock();
            let mut k = 0;
            while k < ops.awaiting.len() {
                let a = ops.awaiting[k];
                if !a.waiting.contains(cpu) || a.synced_at >= at {
                    k += 1;
                    continue;
                }
                self.discharge(issuer, &a.op, a.steady, CpuMask::single(cpu), false);
                ops.awaiting[k].waiting.remove(cpu);
                if ops.awaiting[k].waiting.is_empty() {
                    ops.awaiting.remove(k);
                    ops.mark(&a.op, None);
                    self.waiting_open.fetch_sub(1, Ordering::Relaxed);
                    continue;
                }
                k += 1;
            }
        }
    }

    /// Whether `cpu` runs the space of `piece` (its root, or for a space the sanitizer does not
    /// know, an ASID the piece is held under), or left it with no `DSB ISH` since.
    fn runs(&self, cpu: usize, piece: &Piece) -> bool {
        let c = self.contexts[cpu].lock();
        let of = |l: &Loaded| {
            l.asid != 0
                && if piece.root != 0 {
                    l.root == piece.root
                } else {
                    match piece.entries.tag {
                        Tag::Asid(a) => l.asid == a,
                        Tag::Global | Tag::AnyAsid => true,
                    }
                }
        };
        of(&c.loaded) || of(&c.left)
    }

    /// Applies one completed TLBI: every piece it hits, on every CPU of `only` it reaches and is
    /// ordered for, is discharged there. `steady` is the issuer's TTBR0 from issue to
    /// completion, if it did not change. With `hold_running` (erratum 4193714), the CPUs other
    /// than the issuer that run a piece's space keep it: they are returned, to wait for their own
    /// `DSB ISH`.
    fn discharge(
        &self,
        issuer: usize,
        p: &Pending,
        steady: Option<Loaded>,
        only: CpuMask,
        hold_running: bool,
    ) -> CpuMask {
        let inv = &p.inv;
        let reach = match inv.scope {
            Scope::InnerShareable => CpuMask::first(self.ncpus),
            Scope::Local(c) => CpuMask::single(c),
        }
        .and(only);
        let mut held = CpuMask::EMPTY;
        // A full flush reaching a CPU that runs any space waits for it as a piece would.
        let mut flushed = reach;
        if inv.target == Target::All {
            for cpu in reach.iter() {
                if hold_running && cpu != issuer && self.contexts[cpu].lock().loaded.asid != 0 {
                    held.insert(cpu);
                    flushed.remove(cpu);
                    continue;
                }
                self.full_flush_holders(cpu);
            }
        }
        for store in self.nonempty_stores() {
            let mut guard = self.stores[store].lock();
            let s = &mut *guard;
            let mut emptied = false;
            let mut i = 0;
            while i < s.pieces.len() {
                let piece = &s.pieces[i];
                let e = &piece.entries;
                let hit = (asid_matches(inv, e.tag) && kind_matches(inv, e))
                    .then(|| hit_range(inv, e))
                    .flatten();
                let Some((lo, hi)) = hit else {
                    i += 1;
                    continue;
                };
                let mut cpus = piece.open.and(reach);
                if !cpus.is_empty() && piece.published_all >= p.seq {
                    // Not ordered for every CPU: the issuer alone, if its own barrier ordered
                    // the clear, or if it did not have the space loaded while the op ran.
                    let own = piece.ordered(p.seq, issuer, issuer)
                        || steady.is_some_and(|l| piece.root != 0 && l.root != piece.root);
                    cpus = if own {
                        cpus.and(CpuMask::single(issuer))
                    } else {
                        CpuMask::EMPTY
                    };
                }
                if hold_running {
                    let running = CpuMask::from_cpus(
                        cpus.iter().filter(|&c| c != issuer && self.runs(c, piece)),
                    );
                    held = held.or(running);
                    cpus = cpus.without(running);
                }
                if cpus.is_empty() {
                    i += 1;
                    continue;
                }
                let (start, end) = (e.start, e.end);
                let splits = usize::from(start < lo) + usize::from(hi < end);
                if splits > 0 && !self.reserve(s, splits, 0) {
                    // No room to split: this op discharges nothing of the piece (conservative;
                    // the budget is said to be full).
                    i += 1;
                    continue;
                }
                let whole = s.pieces[i];
                for (a, b) in [(start, lo), (hi, end)] {
                    if a < b {
                        let rest = whole.part(a, b);
                        if let Frames::One(f) = rest.frames {
                            self.frame_inc(f);
                        }
                        self.open.fetch_add(1, Ordering::Relaxed);
                        s.pieces.push(rest);
                    }
                }
                s.pieces[i] = whole.part(lo, hi);
                let hit = &mut s.pieces[i];
                hit.open = hit.open.without(cpus);
                emptied |= hit.open.is_empty();
                i += 1;
            }
            if emptied || s.deferred > 0 {
                self.settle(store, s, emptied);
            }
        }
        if inv.target == Target::All {
            for cpu in flushed.iter() {
                self.full_flush_debt(cpu);
            }
        }
        held
    }

    /// A full flush (`VMALLE1`) completed on `cpu`, first half: it holds no space but the one
    /// it has loaded (it goes on caching that one's entries), and its recent ASIDs are
    /// forgotten. Before the pieces are discharged, so that a clear recorded meanwhile is not
    /// owed there (the flush has already run; `cpu` can re-cache only what it runs).
    fn full_flush_holders(&self, cpu: usize) {
        let loaded = {
            let mut c = self.contexts[cpu].lock();
            c.recent = [(0, 0); RECENT_ASIDS];
            if c.loaded.asid != 0 {
                let asid = c.loaded.asid;
                c.recent[asid as usize % RECENT_ASIDS] = (asid, c.loaded.space);
            }
            c.loaded
        };
        for slot in self.spaces.live_slots() {
            let mut r = self.spaces.records[slot].lock();
            if r.id != 0 && !(loaded.asid != 0 && r.root == loaded.root) {
                r.remove(cpu);
                self.spaces.publish_version(SpaceSlot(slot as u32), &r);
            }
        }
    }

    /// A full flush completed on `cpu`, second half: it owes no rollover flush any more. After
    /// the pieces are discharged, so that a check on another CPU meanwhile, which finds a piece
    /// still open there, finds the debt too and defers it, rather than reporting a gap the flush
    /// is about to close.
    fn full_flush_debt(&self, cpu: usize) {
        let mut c = self.contexts[cpu].lock();
        c.owes_flush = false;
        c.kept = None;
    }

    // ---- clears ----------------------------------------------------------------------------

    /// Records the obligations of one clear on the CPU that made it: for every CPU that may
    /// hold the entry, under the ASID it holds it. Returns how many obligations the clear makes
    /// (the `flush_obligations` counter: one or two, whatever the CPUs).
    pub fn record(&self, cpu: usize, clear: &Clear) -> usize {
        match clear.entry {
            Cleared::Leaf {
                va,
                level,
                frame,
                global,
            } => self.record_run(
                cpu,
                &LeafRun {
                    op: clear.op,
                    space: clear.space,
                    owed: clear.owed,
                    va,
                    level,
                    global,
                    frames: &[frame],
                },
            ),
            Cleared::Table { .. } => self.record_table(cpu, clear),
        }
    }

    /// Records a run of leaves (see [`LeafRun`]) on the CPU that cleared them: one obligation
    /// per leaf, kept as one piece per ASID they are held under, or added to the store's last
    /// piece when the run continues it. Returns the number of leaves.
    pub fn record_run(&self, cpu: usize, run: &LeafRun<'_>) -> usize {
        self.record_run_buffered(cpu, run, self.delayed())
    }

    /// [`Self::record_run`], saying whether the run's stores may still wait in `cpu`'s store
    /// buffer (with stores delayed, a run told after a drain that followed its stores is visible
    /// from the start).
    pub fn record_run_buffered(&self, cpu: usize, run: &LeafRun<'_>, buffered: bool) -> usize {
        let n = run.frames.len();
        if n == 0 || self.disarmed() {
            return 0;
        }
        let born = self.seq.load(Ordering::Relaxed);
        let version = match run.owed {
            Owed::Observed(slot) => Some(self.spaces.version(slot)),
            Owed::Recorded { .. } => None,
        };
        let mut guard = self.stores[cpu].lock();
        let s = &mut *guard;
        s.recorded += n as u64;
        if let Some(v) = version
            && self.extend(s, run, v >> 1, v & 1 != 0, !buffered)
        {
            return n;
        }
        let before = s.pieces.len();
        let size = broadside_arch::pte::level_block_size(run.level);
        let start = run.va & !(size - 1);
        let entries = |tag| Entries {
            tag,
            start,
            end: start + n as u64 * size,
            level: run.level,
            leaf_size: size,
            walk_cache_required: false,
        };
        let piece = |tag, root, version| Piece {
            entries: entries(tag),
            origin: (start, start + n as u64 * size),
            frames: Frames::Run { at: 0 },
            op: run.op,
            space: run.space,
            root,
            born,
            published_all: UNPUBLISHED,
            published_local: UNPUBLISHED,
            recorder: cpu as u16,
            deferred_on: CpuMask::EMPTY,
            version,
            open: CpuMask::EMPTY,
            visible: !buffered,
            placeholder: false,
        };
        match run.owed {
            Owed::Observed(slot) => {
                // The store's lock, then the space record's: the one place they nest.
                let r = self.spaces.records[slot.0 as usize].lock();
                let template = |tag| piece(tag, r.root, r.version);
                if run.global {
                    self.push(s, template(Tag::Global), r.holders(), run.frames);
                } else {
                    for (asid, cpus) in &r.tags[..r.ntags] {
                        self.push(s, template(Tag::Asid(*asid)), *cpus, run.frames);
                    }
                    if !r.other.is_empty() {
                        self.push(s, template(Tag::AnyAsid), r.other, run.frames);
                    }
                    if r.ntags == 0 && r.other.is_empty() && buffered {
                        let placeholder = Piece {
                            placeholder: true,
                            ..template(Tag::AnyAsid)
                        };
                        self.push(s, placeholder, CpuMask::EMPTY, run.frames);
                    }
                }
            }
            Owed::Recorded {
                asid: Some(asid),
                cpus,
            } => {
                let tag = if run.global {
                    Tag::Global
                } else {
                    Tag::Asid(asid)
                };
                self.push(s, piece(tag, 0, 0), cpus, run.frames);
            }
            Owed::Recorded { asid: None, .. } => {}
        }
        if s.pieces.len() > before {
            self.nonempty[cpu / 64].fetch_or(1 << (cpu % 64), Ordering::Release);
        }
        n
    }

    /// Records an unhooked table: its walk-cache entry, and what it still held.
    fn record_table(&self, cpu: usize, clear: &Clear) -> usize {
        let count = clear.entry.obligation_count();
        if self.disarmed() {
            return 0;
        }
        let born = self.seq.load(Ordering::Relaxed);
        let mut guard = self.stores[cpu].lock();
        let s = &mut *guard;
        s.recorded += count as u64;
        let before = s.pieces.len();
        let table = clear.entry.frame();
        let piece = |entries: Entries, root, version| Piece {
            entries,
            origin: (entries.start, entries.end),
            frames: Frames::One(table),
            op: clear.op,
            space: clear.space,
            root,
            born,
            published_all: UNPUBLISHED,
            published_local: UNPUBLISHED,
            recorder: cpu as u16,
            deferred_on: CpuMask::EMPTY,
            version,
            open: CpuMask::EMPTY,
            visible: !self.delayed(),
            placeholder: false,
        };
        let push = |s: &mut Store, tag, cpus: CpuMask, root, version| {
            for entries in clear.entry.entries(tag).into_iter().flatten() {
                self.push(s, piece(entries, root, version), cpus, &[]);
            }
        };
        match clear.owed {
            Owed::Observed(slot) => {
                let r = self.spaces.records[slot.0 as usize].lock();
                for (asid, cpus) in &r.tags[..r.ntags] {
                    push(s, Tag::Asid(*asid), *cpus, r.root, r.version);
                }
                if !r.other.is_empty() {
                    push(s, Tag::AnyAsid, r.other, r.root, r.version);
                }
                if r.ntags == 0 && r.other.is_empty() && self.delayed() {
                    for entries in clear.entry.entries(Tag::AnyAsid).into_iter().flatten() {
                        let p = Piece {
                            placeholder: true,
                            ..piece(entries, r.root, r.version)
                        };
                        self.push(s, p, CpuMask::EMPTY, &[]);
                    }
                }
            }
            Owed::Recorded {
                asid: Some(asid),
                cpus,
            } => push(s, Tag::Asid(asid), cpus, 0, 0),
            Owed::Recorded { asid: None, .. } => {}
        }
        if s.pieces.len() > before {
            self.nonempty[cpu / 64].fetch_or(1 << (cpu % 64), Ordering::Release);
        }
        count
    }

    /// Extends the store's last piece with `run` when it continues it: the next leaves of the
    /// same operation in the same space, owed on the same CPUs under one ASID, with nothing
    /// published yet. Returns whether it did.
    fn extend(
        &self,
        s: &mut Store,
        run: &LeafRun<'_>,
        version: u64,
        one_group: bool,
        visible: bool,
    ) -> bool {
        let frames_len = s.frames.len();
        let Some(last) = s.pieces.last_mut() else {
            return false;
        };
        let size = broadside_arch::pte::level_block_size(run.level);
        let fits = (one_group || run.global)
            && last.op == run.op
            && last.entries.end == run.va & !(size - 1)
            && last.version == version
            && last.space == run.space
            && last.entries.level == run.level
            && !last.entries.walk_cache_required
            && (last.entries.tag == Tag::Global) == run.global
            && last.published_local == UNPUBLISHED
            && last.published_all == UNPUBLISHED
            && last.deferred_on.is_empty()
            && last.visible == visible
            && matches!(last.frames, Frames::Run { at } if at as usize + last.leaves() as usize == frames_len);
        if !fits || !self.reserve(s, 0, run.frames.len()) {
            return false;
        }
        let last = s.pieces.last_mut().expect("checked above");
        last.entries.end += run.frames.len() as u64 * size;
        last.origin.1 = last.entries.end;
        s.frames.extend_from_slice(run.frames);
        run.frames.iter().for_each(|&f| self.frame_inc(f));
        true
    }

    /// Makes room for `pieces` more pieces and `frames` more frames in `s` within the budget.
    fn reserve(&self, s: &mut Store, pieces: usize, frames: usize) -> bool {
        if s.pieces.len() + pieces <= s.pieces.capacity()
            && s.frames.len() + frames <= s.frames.capacity()
        {
            return true;
        }
        let grow = |len: usize, n: usize| (len + n).max(2 * len).max(16) - len;
        let (gp, gf) = (grow(s.pieces.len(), pieces), grow(s.frames.len(), frames));
        let more = gp * size_of::<Piece>() + gf * size_of::<u64>();
        if self.used.load(Ordering::Relaxed) + more > self.max_bytes
            || s.pieces.try_reserve(gp).is_err()
            || s.frames.try_reserve(gf).is_err()
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.account(s);
        true
    }

    /// Brings the budget up to date with `s`'s capacity.
    fn account(&self, s: &mut Store) {
        let now = s.capacity_bytes();
        if now >= s.bytes {
            self.used.fetch_add(now - s.bytes, Ordering::Relaxed);
        } else {
            self.used.fetch_sub(s.bytes - now, Ordering::Relaxed);
        }
        s.bytes = now;
    }

    /// Adds `piece`, open on `cpus`, to the store `s`, with `frames` for a run (`piece.frames`
    /// is then set to them) or none for a table's piece.
    fn push(&self, s: &mut Store, mut piece: Piece, cpus: CpuMask, frames: &[u64]) {
        if (cpus.is_empty() && piece.visible) || !self.reserve(s, 1, frames.len()) {
            return;
        }
        if matches!(piece.frames, Frames::Run { .. }) {
            piece.frames = Frames::Run {
                at: s.frames.len() as u32,
            };
            s.frames.extend_from_slice(frames);
            frames.iter().for_each(|&f| self.frame_inc(f));
        } else if let Frames::One(f) = piece.frames {
            self.frame_inc(f);
        }
        piece.open = cpus;
        s.pieces.push(piece);
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    /// A valid leaf rewritten in place: an upgrade owes nothing, a downgrade is recorded as the
    /// clear of the old entry, and a change that needed break-before-make is a violation.
    /// Returns the obligations recorded.
    pub fn change(&self, cpu: usize, change: &Change) -> Result<usize, Box<Violation>> {
        if self.disarmed() {
            return Ok(0);
        }
        match change.kind() {
            ChangeKind::Upgrade => Ok(0),
            ChangeKind::Downgrade => Ok(change
                .as_clear()
                .map_or(0, |clear| self.record(cpu, &clear))),
            ChangeKind::NeedsBreakBeforeMake(what) => Err(Box::new(Violation::BreakBeforeMake {
                space: change.space,
                va: change.va,
                level: change.level,
                what,
                old: change.old.raw(),
                new: change.new.raw(),
            })),
        }
    }

    // ---- checks ----------------------------------------------------------------------------

    /// Runs `check` on `cpu`: a frame may be freed or reused, or an operation may return, only
    /// when no CPU can still use an entry its obligations name. An entry open only on CPUs that
    /// owe a rollover flush and do not run its ASID is deferred to that flush (marked, so that
    /// their next load of the ASID is checked). On a violation, the entries it names are
    /// forgotten on the CPUs that could use them, so it is reported once.
    pub fn check(&self, cpu: usize, check: Check) -> Result<(), Box<Violation>> {
        if self.disarmed() {
            return Ok(());
        }
        let stores = match check {
            Check::Free(frame) | Check::Reuse(frame) => {
                if self.frame_count(frame) == Some(0) {
                    return Ok(());
                }
                self.nonempty_mask()
            }
            // An operation records its clears on the CPU it runs on, and is checked there.
            Check::Return(_) => self.nonempty_mask().and(CpuMask::single(cpu)),
            // Any CPU may have recorded a clear in the range (a deferred batch's owner).
            Check::Range { .. } => self.nonempty_mask(),
            Check::Load { .. } => return Ok(()),
        };
        let mut found = None;
        for store in stores.iter() {
            let mut guard = self.stores[store].lock();
            let s = &mut *guard;
            if let Check::Free(frame) | Check::Reuse(frame) = check {
                self.isolate(s, frame);
            }
            let mut emptied = false;
            for i in 0..s.pieces.len() {
                let named = match check {
                    Check::Free(frame) | Check::Reuse(frame) => {
                        s.pieces[i].frames(&s.frames).next() == Some(frame)
                    }
                    Check::Return(op) => s.pieces[i].op == op,
                    Check::Range {
                        space, start, end, ..
                    } => {
                        let e = &s.pieces[i].entries;
                        s.pieces[i].space == space && e.start < end && start < e.end
                    }
                    Check::Load { .. } => false,
                };
                if !named {
                    continue;
                }
                if !s.pieces[i].visible {
                    // Its store is still buffered: whoever loaded the space since may hold the
                    // old entry, and a free or a return now must have flushed them too.
                    self.absorb_loads(&mut s.pieces[i], u64::MAX);
                }
                let usable = self.usable(&s.pieces[i]);
                let p = &mut s.pieces[i];
                let deferred = p.open.without(usable);
                if !deferred.is_subset(p.deferred_on) {
                    self.deferred.fetch_add(1, Ordering::Relaxed);
                }
                p.deferred_on = p.deferred_on.or(deferred);
                if usable.is_empty() {
                    continue;
                }
                if found.is_none() {
                    let frame = match check {
                        Check::Free(f) | Check::Reuse(f) => f,
                        _ => p.frames(&s.frames).next().unwrap_or(0),
                    };
                    found = Some((*p, frame, usable));
                }
                p.open = p.open.without(usable);
                emptied |= p.open.is_empty();
            }
            self.settle(store, s, emptied);
        }
        match found {
            None => Ok(()),
            Some((piece, frame, usable)) => {
                Err(Box::new(self.flush_gap(check, &piece, frame, usable)))
            }
        }
    }

    /// Splits the store's runs so that every leaf naming `frame` is in a piece whose leaves all
    /// name it (a check then judges exactly those entries). Out of budget, a run is left whole
    /// and goes unjudged (conservative: no false report; the budget is said to be full).
    fn isolate(&self, s: &mut Store, frame: u64) {
        let mut i = 0;
        while i < s.pieces.len() {
            let p = s.pieces[i];
            i += 1;
            let Frames::Run { at } = p.frames else {
                continue;
            };
            let n = p.leaves() as usize;
            let run = &s.frames[at as usize..at as usize + n];
            let hits = run.iter().filter(|&&f| f == frame).count();
            if hits == 0 || hits == n {
                continue;
            }
            let changes = run
                .windows(2)
                .filter(|w| (w[0] == frame) != (w[1] == frame))
                .count();
            if !self.reserve(s, changes, 0) {
                continue;
            }
            let run = &s.frames[at as usize..at as usize + n];
            // Cut at every change between naming the frame and not.
            let size = p.entries.leaf_size;
            let mut first = 0;
            let mut parts = 0;
            for k in 1..=n {
                if k == n || (run[k] == frame) != (run[first] == frame) {
                    let part = p.part(
                        p.entries.start + first as u64 * size,
                        p.entries.start + k as u64 * size,
                    );
                    if parts == 0 {
                        s.pieces[i - 1] = part;
                    } else {
                        s.pieces.push(part);
                        self.open.fetch_add(1, Ordering::Relaxed);
                    }
                    parts += 1;
                    first = k;
                }
            }
        }
    }

    /// The CPUs of `p.open` that can use its entries now or may load their ASID again without
    /// first flushing.
    fn usable(&self, p: &Piece) -> CpuMask {
        let mut usable = CpuMask::EMPTY;
        for cpu in p.open.iter() {
            let c = self.contexts[cpu].lock();
            let can = match p.entries.tag {
                Tag::Global => true,
                Tag::Asid(asid) => !c.owes_flush || c.loaded.asid == asid,
                Tag::AnyAsid => !c.owes_flush || (c.loaded.asid != 0 && c.loaded.root == p.root),
            };
            if can {
                usable.insert(cpu);
            }
        }
        usable
    }

    /// `cpu` loads `asid` while deferred pieces are open: one it holds under that ASID was let
    /// go on the promise of a flush that did not happen.
    fn stale_entry_loaded(&self, cpu: usize, asid: u16) -> Option<Violation> {
        let mut found = None;
        for store in self.nonempty_stores() {
            let mut guard = self.stores[store].lock();
            let s = &mut *guard;
            if s.deferred == 0 {
                continue;
            }
            let mut emptied = false;
            for i in 0..s.pieces.len() {
                let p = &s.pieces[i];
                let held = matches!(p.entries.tag, Tag::Asid(a) if a == asid)
                    || p.entries.tag == Tag::AnyAsid;
                if held && p.deferred_on.contains(cpu) && p.open.contains(cpu) {
                    if found.is_none() {
                        found = Some((*p, p.frames(&s.frames).next().unwrap_or(0)));
                    }
                    let p = &mut s.pieces[i];
                    p.open.remove(cpu);
                    emptied |= p.open.is_empty();
                }
            }
            self.settle(store, s, emptied);
        }
        let (piece, frame) = found?;
        let mut v = self.flush_gap(
            Check::Load { cpu, asid },
            &piece,
            frame,
            CpuMask::single(cpu),
        );
        if let Violation::FlushGap { gap, .. } = &mut v {
            *gap = Gap::FlushSkipped;
        }
        Some(v)
    }

    /// The report for an open piece: the last op issued for it, and why it did not discharge.
    fn flush_gap(&self, check: Check, piece: &Piece, frame: u64, open_cpus: CpuMask) -> Violation {
        // Among the ops issued since the clear (the last few per CPU): the last that hit what
        // is still open (its ASID, kind and addresses), and failing that the last that named
        // any of what was recorded.
        let origin = Entries {
            start: piece.origin.0,
            end: piece.origin.1,
            ..piece.entries
        };
        let open = &piece.entries;
        let (mut hit, mut named): (LastIssued, LastIssued) = (None, None);
        for (cpu, ops) in self.ops.iter().enumerate() {
            let ops = ops.lock();
            for h in ops.history.iter().flatten().filter(|h| h.seq >= piece.born) {
                let reached = rules::reach(h.inv.scope, open_cpus);
                let issued = Issued {
                    inv: h.inv,
                    cpu,
                    completed: h.completed,
                    ordered: reached.iter().all(|c| piece.ordered(h.seq, cpu, c)),
                    awaiting: h.awaiting,
                };
                let later = |last: &LastIssued| last.is_none_or(|(seq, _)| h.seq > seq);
                if asid_matches(&h.inv, open.tag)
                    && kind_matches(&h.inv, open)
                    && hit_range(&h.inv, open).is_some()
                    && later(&hit)
                {
                    hit = Some((h.seq, issued));
                }
                if names(&h.inv, &origin) && later(&named) {
                    named = Some((h.seq, issued));
                }
            }
        }
        let (issued, gap) = match (hit, named) {
            (Some((_, i)), _) => (Some(i), why_not_discharged(&i)),
            (None, Some((_, i))) => (Some(i), why_missed(open, &i)),
            (None, None) => (None, Gap::NothingIssued),
        };
        Violation::FlushGap {
            check,
            obligation: piece.obligation(frame),
            open_cpus,
            issued,
            gap,
        }
    }

    // ---- bookkeeping -----------------------------------------------------------------------

    /// Drops the store's discharged pieces (keeping order), settles the counts, and packs the
    /// frames array when it has grown sparse.
    fn compact(&self, cpu: usize, s: &mut Store) {
        let mut removed = 0;
        let (mut all, mut local) = (None, None);
        let mut kept = 0;
        let mut live_frames = 0;
        let frames = &s.frames;
        let mut invisible = None;
        s.pieces.retain(|p| {
            if p.open.is_empty() && p.visible {
                removed += 1;
                p.frames(frames).for_each(|f| self.frame_dec(f));
                return false;
            }
            if matches!(p.frames, Frames::Run { .. }) {
                live_frames += p.leaves() as usize;
            }
            if all.is_none() && p.published_all == UNPUBLISHED {
                all = Some(kept);
            }
            if local.is_none() && p.published_local == UNPUBLISHED {
                local = Some(kept);
            }
            if invisible.is_none() && !p.visible {
                invisible = Some(kept);
            }
            kept += 1;
            true
        });
        s.unpublished_all = all.unwrap_or(kept);
        s.unpublished_local = local.unwrap_or(kept);
        s.invisible_from = invisible.unwrap_or(kept);
        self.open.fetch_sub(removed, Ordering::Relaxed);
        if live_frames == 0 {
            s.frames.clear();
        } else if s.frames.len() > 2 * live_frames + 64 {
            // Pack: the runs move to the front in the order they lie, so each one's new start
            // is at or before its old one and `copy_within` never overwrites a run not yet
            // moved.
            let mut order: Vec<usize> = (0..s.pieces.len())
                .filter(|&i| matches!(s.pieces[i].frames, Frames::Run { .. }))
                .collect();
            order.sort_unstable_by_key(|&i| match s.pieces[i].frames {
                Frames::Run { at } => at,
                Frames::One(_) => 0,
            });
            let mut to = 0usize;
            for i in order {
                let n = s.pieces[i].leaves() as usize;
                if let Frames::Run { at } = s.pieces[i].frames {
                    s.frames.copy_within(at as usize..at as usize + n, to);
                    s.pieces[i].frames = Frames::Run { at: to as u32 };
                }
                to += n;
            }
            s.frames.truncate(to);
        }
        if s.pieces.is_empty() {
            self.mark_empty(cpu);
        }
    }

    /// After the store's pieces changed: compacts it if some were emptied, and recounts its
    /// deferral marks (the count TTBR0 loads consult before they scan).
    fn settle(&self, cpu: usize, s: &mut Store, emptied: bool) {
        if emptied {
            self.compact(cpu, s);
        }
        let marked = s
            .pieces
            .iter()
            .filter(|p| !p.deferred_on.and(p.open).is_empty())
            .count();
        if marked != s.deferred {
            if marked > s.deferred {
                self.deferred_open
                    .fetch_add(marked - s.deferred, Ordering::Release);
            } else {
                self.deferred_open
                    .fetch_sub(s.deferred - marked, Ordering::Release);
            }
            s.deferred = marked;
        }
    }

    fn mark_empty(&self, cpu: usize) {
        self.nonempty[cpu / 64].fetch_and(!(1 << (cpu % 64)), Ordering::Release);
    }

    fn nonempty_mask(&self) -> CpuMask {
        CpuMask::from_words(self.nonempty.iter().map(|w| w.load(Ordering::Acquire)))
    }

    fn nonempty_stores(&self) -> impl Iterator<Item = usize> {
        self.nonempty_mask().iter()
    }

    fn frame_index(&self, frame: u64) -> Option<usize> {
        let i = frame.checked_sub(self.frames_base)? >> 12;
        (i < self.frame_counts.len() as u64).then_some(i as usize)
    }

    /// Open pieces naming `frame`, or `None` if it has no counter.
    fn frame_count(&self, frame: u64) -> Option<u32> {
        self.frame_index(frame)
            .map(|i| self.frame_counts[i].load(Ordering::Acquire))
    }

    fn frame_inc(&self, frame: u64) {
        if let Some(i) = self.frame_index(frame) {
            self.frame_counts[i].fetch_add(1, Ordering::AcqRel);
        }
    }

    fn frame_dec(&self, frame: u64) {
        if let Some(i) = self.frame_index(frame) {
            self.frame_counts[i].fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Open pieces (for tests).
    pub fn open_count(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// TLBIs issued on `cpu` and not yet completed (for tests).
    pub fn pending_count(&self, cpu: usize) -> usize {
        self.ops[cpu].lock().pending.len()
    }

    /// Broadcast TLBIs `cpu` completed that still wait for an erratum's workaround (for tests).
    pub fn awaiting_count(&self, cpu: usize) -> usize {
        self.ops[cpu].lock().awaiting.len()
    }

    /// Whether a check of `frame` may find an open obligation (lock-free: the fast path of the
    /// frees, which nearly always pass).
    pub fn may_owe_frame(&self, frame: u64) -> bool {
        !self.disarmed() && self.frame_count(frame) != Some(0)
    }

    /// Whether `cpu`'s store holds open obligations (lock-free: the fast path of the returns).
    pub fn may_owe_op(&self, cpu: usize) -> bool {
        !self.disarmed() && self.nonempty_mask().contains(cpu)
    }

    /// Whether any CPU may have an obligation open (for a range check's fast path).
    pub fn may_owe_any(&self) -> bool {
        !self.disarmed() && !self.nonempty_mask().is_empty()
    }

    /// Whether `cpu` owes a rollover flush (for tests and diagnostics).
    pub fn owes_flush(&self, cpu: usize) -> bool {
        self.contexts[cpu].lock().owes_flush
    }
}

/// An op from the history, with its event number.
type LastIssued = Option<(u64, Issued)>;

/// Why `issued`, which named some of what was recorded but hit none of what is still open
/// (`e`), missed it: the rules tried in the order they apply.
fn why_missed(e: &Entries, issued: &Issued) -> Gap {
    let inv = &issued.inv;
    if !asid_matches(inv, e.tag) {
        Gap::WrongAsid
    } else if !kind_matches(inv, e) {
        if e.walk_cache_required {
            Gap::WalkCacheKept
        } else {
            Gap::WrongLevel
        }
    } else {
        Gap::RangeMissed
    }
}

/// Why `issued`, which hit what is still open, did not discharge it on the open CPUs.
fn why_not_discharged(issued: &Issued) -> Gap {
    if !issued.completed {
        Gap::NotCompleted
    } else if !issued.ordered {
        Gap::NotOrdered
    } else {
        match issued.awaiting {
            Some(Workaround::Repeat) => Gap::RepeatMissing,
            Some(Workaround::DvmSync) => Gap::DvmSyncMissing,
            None => Gap::CpusMissed,
        }
    }
}
