//! The portable core of the flush-coverage sanitizer (issue 10): every cleared or weakened
//! page-table entry becomes an [`Obligation`]; every TLBI issued is [`decode`]d into an
//! [`Invalidation`] from its real operand encoding; a [`Sanitizer`] tracks which obligations the
//! *completed* invalidations have discharged, per CPU, and [`Sanitizer::check_free`] /
//! [`Sanitizer::check_return`] report a typed [`Violation`] when a frame would be reused, or an
//! unmap/protect/unshare would return, while some CPU may still hold a stale entry.
//!
//! It trusts the architecture's definition of each TLBI (Arm ARM D8.13, "TLB maintenance") and
//! checks what was *issued* against what was *changed*: a flush that is too narrow, names the
//! wrong ASID, is leaf-only where a table went away, is local where the space ran elsewhere, or
//! is not completed by a `DSB` before the free. QEMU shows none of these (it models no walk
//! caches and completes an IS TLBI by stopping every vCPU), so this is the only check of them.
//!
//! # The rules, each written once
//! - **Obligation** — what a clear leaves in TLBs: its leaves, and for an unhooked table the
//!   walk-cache entry of the cleared descriptor: [`Clear::obligations`].
//! - **ASID** — a by-ASID op hits only that ASID's entries; the all-ASID forms and `VMALLE1`
//!   hit every entry; untagged (global) entries only those: [`asid_matches`].
//! - **Kind/level** — leaf-only forms and TTL-hinted ops never hit a walk-cache entry; a TTL
//!   hint hits only leaves of that level: [`kind_matches`].
//! - **VA** — an op hits every entry translating one of the addresses it names, whatever the
//!   entry's size: [`hit_range`].
//! - **Scope** — an IS op reaches every CPU, a local one only the issuing CPU: [`reach`].
//! - **Completion** — an op counts only once a `DSB` on the issuing CPU completed it (`DSB ISH`
//!   for IS ops), and only for entries that existed when it was issued: [`Sanitizer::dsb`],
//!   [`Sanitizer::dsb_local`], [`Sanitizer::ack_ipi`], all through one private `discharge`.
//! - **Rollover** — an ASID rollover discharges, on each CPU, every entry of an ASID that CPU
//!   is not running: it must flush its whole TLB before it switches again
//!   ([`Sanitizer::rollover`]).
//! - **Checks** — no free, and no return from the operation, with an obligation open:
//!   [`Sanitizer::check_free`], [`Sanitizer::check_return`].
//!
//! [`covers`] combines the first four for one instruction and a whole obligation; the state
//! machine applies them per CPU and per part of the obligation's range, so several ops (a range
//! plan's one op per SCALE, or one `VAE1` per block) or several CPUs' local ops (the IPI
//! baseline) discharge an obligation together.
//!
//! # Complexity and allocation
//! Open obligations live in one `Vec` (a partially discharged obligation is split into at most
//! three pieces), grouped by ASID and counted per frame and per operation; each CPU's
//! issued-but-not-completed ops in another `Vec`. With `n` open pieces, `n_A` of them in the
//! op's ASID, and `p` pending ops on the CPU: [`Sanitizer::record`] O(log n),
//! [`Sanitizer::issue`] O(n) (it notes the op on the obligations whose addresses it names, any
//! ASID, for the violation message), [`Sanitizer::dsb`] O(p·n) to mark ops completed plus
//! O(p·n_A log n) to discharge (O(p·n) for all-ASID ops), a passing check O(log n) and a failing
//! one O(n). Fully discharged pieces are dropped at once, so `n` stays near the number of
//! clears not yet flushed. [`decode`], [`covers`] and the rules
//! allocate nothing. Simple and correct first: the kernel glue serialises calls under one lock.
//!
//! Sits on nothing in this crate: portable, tested on the host (`audit` is its kernel glue).

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, btree_map};
use alloc::vec::Vec;
use core::fmt;

use broadside_arch::pte::{PAGE_SIZE, level_block_size};
use broadside_arch::tlbi::TlbiOp;

/// The most CPUs a [`CpuMask`] can name.
pub const MAX_SANITIZER_CPUS: usize = 512;

const MASK_WORDS: usize = MAX_SANITIZER_CPUS / 64;

/// A set of CPU numbers below [`MAX_SANITIZER_CPUS`]: which CPUs may hold an entry.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CpuMask([u64; MASK_WORDS]);

impl CpuMask {
    /// No CPU.
    pub const EMPTY: Self = Self([0; MASK_WORDS]);

    /// The CPUs whose bits are set in `words`, 64 CPUs a word from CPU 0 (a kernel bitmap).
    pub fn from_words(words: impl IntoIterator<Item = u64>) -> Self {
        Self::from_cpus(words.into_iter().enumerate().flat_map(|(w, mut bits)| {
            core::iter::from_fn(move || {
                (bits != 0).then(|| {
                    let b = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    w * 64 + b
                })
            })
        }))
    }

    /// Only `cpu`.
    ///
    /// # Panics
    /// If `cpu >= MAX_SANITIZER_CPUS`.
    pub const fn single(cpu: usize) -> Self {
        let mut mask = Self::EMPTY;
        mask.0[cpu / 64] = 1 << (cpu % 64);
        mask
    }

    /// The CPUs `cpus` yields.
    pub fn from_cpus(cpus: impl IntoIterator<Item = usize>) -> Self {
        let mut mask = Self::EMPTY;
        for cpu in cpus {
            mask.insert(cpu);
        }
        mask
    }

    /// Adds `cpu`.
    pub fn insert(&mut self, cpu: usize) {
        self.0[cpu / 64] |= 1 << (cpu % 64);
    }

    /// Whether `cpu` is in the set.
    pub fn contains(&self, cpu: usize) -> bool {
        cpu < MAX_SANITIZER_CPUS && self.0[cpu / 64] & (1 << (cpu % 64)) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }

    /// The CPUs in both sets.
    pub fn and(self, other: Self) -> Self {
        Self(core::array::from_fn(|i| self.0[i] & other.0[i]))
    }

    /// The CPUs in `self` but not in `other`.
    pub fn without(self, other: Self) -> Self {
        Self(core::array::from_fn(|i| self.0[i] & !other.0[i]))
    }

    /// Whether every CPU of `self` is in `other`.
    pub fn is_subset(self, other: Self) -> bool {
        self.without(other).is_empty()
    }

    /// The CPUs in ascending order.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..MAX_SANITIZER_CPUS).filter(move |&cpu| self.contains(cpu))
    }
}

impl fmt::Debug for CpuMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for CpuMask {
    /// `{0,3,300}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, cpu) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{cpu}")?;
        }
        f.write_str("}")
    }
}

/// The operation (one unmap, protect or unshare call) an obligation belongs to: it must not
/// return to its caller with one of its obligations open ([`Sanitizer::check_return`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub u64);

/// Which valid entry was cleared or weakened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cleared {
    /// A leaf (page or block) at `level` (1..=3) translating `va` was unmapped, or its
    /// permissions reduced; it pointed at `frame`.
    Leaf {
        /// Any address inside the leaf (aligned down to the leaf).
        va: u64,
        /// 3 for a 4 KiB page, 2 for a 2 MiB block, 1 for a 1 GiB block.
        level: u8,
        /// Physical address the leaf mapped.
        frame: u64,
    },
    /// The table at `level` (1..=3) covering `va` was unhooked (freed, or this space's entry for
    /// a shared table dropped): its parent's entry, at `level - 1`, was cleared.
    Table {
        /// Any address inside the table's span.
        va: u64,
        /// The level of the unhooked table.
        level: u8,
        /// Physical address of the table page.
        table: u64,
        /// The table still held valid leaves (at `level`, one per entry) when it was unhooked
        /// — the last sharer's teardown, an unshare — so their TLB entries must go too. `false`
        /// when every entry in it was cleared (and recorded) first.
        leaves: bool,
    },
}

/// One clear, as the page-table code describes it to the sanitizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clear {
    /// The operation doing it.
    pub op: OpId,
    /// The address space's id, for the report only.
    pub space: u64,
    /// The space's ASID, or `None` when it has none yet or the entry is global (TTBR1).
    pub asid: Option<u16>,
    /// The CPUs the space has ever been active on (for a global entry: every CPU online).
    pub cpus: CpuMask,
    /// The entry.
    pub entry: Cleared,
}

/// What must be invalidated, on which CPUs, before `frame` is reused and before `op` returns:
/// the TLB entries of `asid` at `level` translating each `leaf_size` piece of `[start, end)`
/// (one piece when `walk_cache_required`: the walk-cache entry of the cleared table
/// descriptor).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Obligation {
    /// The operation that made it.
    pub op: OpId,
    /// The address space's id, for the report only.
    pub space: u64,
    /// The entries' ASID; `None`: untagged (see [`Clear::asid`]).
    pub asid: Option<u16>,
    /// First VA (aligned to `leaf_size`).
    pub start: u64,
    /// End VA (exclusive; `start` plus a multiple of `leaf_size`).
    pub end: u64,
    /// The level of the entries: the leaves', or for a walk-cache obligation the level of the
    /// cleared table descriptor (the unhooked table's level minus one).
    pub level: u8,
    /// Size of each entry: `level_block_size(level)`; `end - start` for a walk-cache obligation.
    pub leaf_size: u64,
    /// The entry is a table descriptor a walk cache may hold: leaf-only and TTL-hinted
    /// invalidations do not reach it (rule 5).
    pub walk_cache_required: bool,
    /// The physical frame whose reuse must wait: the leaf's, or the table page.
    pub frame: u64,
    /// The CPUs that may hold the entries.
    pub cpus: CpuMask,
}

impl Obligation {
    /// Whether the obligation concerns no entry at all (nothing to invalidate anywhere).
    pub fn is_empty(&self) -> bool {
        self.cpus.is_empty() || self.start >= self.end
    }
}

impl Clear {
    /// The obligations of this clear, one or two, in [`Obligation`] terms (rule "Obligation"):
    /// - a leaf: its one entry, at its level;
    /// - an unhooked table: the walk-cache entry of its parent's descriptor, which any
    ///   non-leaf, unhinted invalidation of one address in the span hits (Linux's
    ///   `pte_free_tlb` adds one page of it to the gather);
    /// - and if the table still held leaves: every leaf of the span at the table's level,
    ///   leaf-only invalidation allowed (Linux's last sharer "zaps the table's huge entries one
    ///   by one, so every one is tracked for the flush"). Its frame is the table's, so the table
    ///   is not reused while translations read from it survive.
    ///
    /// # Panics
    /// If a level is outside 1..=3.
    pub fn obligations(&self) -> impl Iterator<Item = Obligation> + use<> {
        let base = |start, size: u64, level, walk, frame| Obligation {
            op: self.op,
            space: self.space,
            asid: self.asid,
            start,
            end: start + size,
            level,
            leaf_size: size,
            walk_cache_required: walk,
            frame,
            cpus: self.cpus,
        };
        let (first, second) = match self.entry {
            Cleared::Leaf { va, level, frame } => {
                assert!(matches!(level, 1..=3), "leaf level {level}");
                let size = level_block_size(level);
                (base(va & !(size - 1), size, level, false, frame), None)
            }
            Cleared::Table {
                va,
                level,
                table,
                leaves,
            } => {
                assert!(matches!(level, 1..=3), "table level {level}");
                let span = level_block_size(level - 1);
                let start = va & !(span - 1);
                let walk = base(start, span, level - 1, true, table);
                let leaves = leaves.then(|| {
                    let leaf = level_block_size(level);
                    Obligation {
                        end: start + span,
                        ..base(start, leaf, level, false, table)
                    }
                });
                (walk, leaves)
            }
        };
        [Some(first), second].into_iter().flatten()
    }
}

/// Where an invalidation takes effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `TLBI ...IS`: every CPU in the inner-shareable domain (all of QEMU virt's), once a
    /// `DSB ISH` on the issuing CPU completed it.
    InnerShareable,
    /// Non-broadcast `TLBI ...`: this CPU only (which must be the issuing one).
    Local(usize),
}

/// Which addresses an invalidation names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// By VA (`VAE1`, `VALE1`, `VAAE1`, `VAALE1`): the 4 KiB page at `va`, so every entry
    /// translating it, whatever the entry's size (Arm ARM D8.13.5).
    Va {
        /// Page address, sign-extended from `VA[55]`.
        va: u64,
    },
    /// By range (`RVAE1`, `RVALE1`, FEAT_TLBIRANGE): `pages` 4 KiB pages from `base`.
    Range {
        /// First address: BADDR, `VA[48:12]`, sign-extended from `VA[48]`.
        base: u64,
        /// `(NUM + 1) << (5 * SCALE + 1)`.
        pages: u64,
    },
    /// Every entry of the ASID (`ASIDE1`), walk caches included, global entries kept.
    Asid,
    /// Every stage-1 EL1&0 entry (`VMALLE1`): the ASID rollover's local flush too.
    All,
    /// An operand with a reserved or other-granule TG or TTL: the architecture requires such
    /// an op to invalidate nothing in particular, so it hits nothing here.
    Malformed,
}

/// A decoded TLBI: what it invalidates, independently of the encoder in `arch::tlbi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Invalidation {
    /// The instruction as issued (for the violation message).
    pub op: TlbiOp,
    /// The addresses it names.
    pub target: Target,
    /// The ASID it is limited to; `None` for the all-ASID forms and `VMALLE1`.
    pub asid: Option<u16>,
    /// Last level only (`VALE1`, `RVALE1`, `VAALE1`): walk caches are kept.
    pub leaf_only: bool,
    /// FEAT_TTL hint: only leaf entries at this level (1..=3) need be hit.
    pub ttl: Option<u8>,
    /// Broadcast or local.
    pub scope: Scope,
}

// The operand layouts (Arm ARM D8.13 / C5.5 "TLBI" operand descriptions), written here
// again rather than imported, so that the cross-check against the encoder means something.
const ASID_FIELD: u32 = 48;
/// By-VA: `VA[55:12]` in `[43:0]`, TTL in `[47:44]`.
const VA_FIELD_BITS: u32 = 44;
const VA_TTL_FIELD: u32 = 44;
/// Range: BADDR = `VA[48:12]` in `[36:0]`, TTL `[38:37]`, NUM `[43:39]`, SCALE `[45:44]`,
/// TG `[47:46]`.
const BADDR_BITS: u32 = 37;
const RANGE_TTL_FIELD: u32 = 37;
const NUM_FIELD: u32 = 39;
const SCALE_FIELD: u32 = 44;
const TG_FIELD: u32 = 46;
/// The TG / `TTL[3:2]` code of the 4 KiB granule.
const TG_4K: u64 = 0b01;

const fn field(value: u64, shift: u32, bits: u32) -> u64 {
    (value >> shift) & ((1 << bits) - 1)
}

/// `page_bits` bits of page number from bit 0 become an address sign-extended from its top bit.
const fn sign_extended_va(page: u64, page_bits: u32) -> u64 {
    let top = 64 - (page_bits + 12);
    (((page << 12) << top) as i64 >> top) as u64
}

/// Decodes one TLBI as issued with `scope`. Pure and allocation-free.
///
/// By-VA TTL (Arm ARM, TLBI VAE1 "TTL"): `0b00xx` no hint; `0b01xx` 4 KiB granule, level
/// `xx` (level 0 only with FEAT_LPA2, reserved here); other granules do not match this
/// kernel's. Range TG `0b01` is 4 KiB; range TTL `0b00` no hint, else the level. Any
/// reserved or mismatched code decodes to [`Target::Malformed`].
pub fn decode(op: TlbiOp, scope: Scope) -> Invalidation {
    let (operand, leaf_only, all_asids, range) = match op {
        TlbiOp::Vae1 { operand } => (operand, false, false, false),
        TlbiOp::Vale1 { operand } => (operand, true, false, false),
        TlbiOp::Vaae1 { operand } => (operand, false, true, false),
        TlbiOp::Vaale1 { operand } => (operand, true, true, false),
        TlbiOp::Rvae1 { operand } => (operand, false, false, true),
        TlbiOp::Rvale1 { operand } => (operand, true, false, true),
        TlbiOp::Aside1 { operand } => {
            let asid = Some(field(operand, ASID_FIELD, 16) as u16);
            return whole(op, Target::Asid, asid, scope);
        }
        TlbiOp::Vmalle1 => return whole(op, Target::All, None, scope),
    };
    let asid = (!all_asids).then_some(field(operand, ASID_FIELD, 16) as u16);
    let (target, ttl) = if range {
        let tg = field(operand, TG_FIELD, 2);
        let scale = field(operand, SCALE_FIELD, 2) as u32;
        let num = field(operand, NUM_FIELD, 5);
        let ttl = field(operand, RANGE_TTL_FIELD, 2) as u8;
        let base = sign_extended_va(field(operand, 0, BADDR_BITS), BADDR_BITS);
        let pages = (num + 1) << (5 * scale + 1);
        let target = if tg == TG_4K {
            Target::Range { base, pages }
        } else {
            Target::Malformed
        };
        (target, (ttl != 0).then_some(ttl))
    } else {
        let ttl = field(operand, VA_TTL_FIELD, 4);
        let va = sign_extended_va(field(operand, 0, VA_FIELD_BITS), VA_FIELD_BITS);
        match (ttl >> 2, (ttl & 0b11) as u8) {
            (0b00, _) => (Target::Va { va }, None),
            (TG_4K, level @ 1..=3) => (Target::Va { va }, Some(level)),
            _ => (Target::Malformed, None),
        }
    };
    Invalidation {
        op,
        target,
        asid,
        leaf_only,
        ttl,
        scope,
    }
}

const fn whole(op: TlbiOp, target: Target, asid: Option<u16>, scope: Scope) -> Invalidation {
    Invalidation {
        op,
        target,
        asid,
        leaf_only: false,
        ttl: None,
        scope,
    }
}

/// Rule "ASID": a by-ASID op hits only entries of its ASID; the all-ASID forms (`VAAE1`,
/// `VAALE1`) and `VMALLE1` hit every entry, global ones included; `ASIDE1` keeps global
/// entries. An untagged obligation (`asid: None`) is therefore hit only by an all-ASID op.
///
/// Conservative: the Arm ARM also lets `VAE1` with any ASID hit a *global* entry for its VA;
/// the sanitizer does not rely on that (Linux flushes kernel ranges with `VAAE1`/`VAALE1`).
pub fn asid_matches(inv: &Invalidation, ob: &Obligation) -> bool {
    inv.asid.is_none() || inv.asid == ob.asid
}

/// Rule "kind/level": a walk-cache obligation needs an op that is neither leaf-only (Linux
/// c2ff4764e03e; rule 5) nor TTL-hinted (a hint promises where the *leaf* is; the Arm ARM
/// then only requires entries of that level to go). A leaf obligation is hit by any form whose
/// TTL hint, if any, names its level.
pub fn kind_matches(inv: &Invalidation, ob: &Obligation) -> bool {
    if ob.walk_cache_required {
        !inv.leaf_only && inv.ttl.is_none()
    } else {
        inv.ttl.is_none_or(|level| level == ob.level)
    }
}

/// Rule "VA": the part of `ob`'s range, in whole `leaf_size` pieces, holding entries that
/// translate an address `inv` names (Arm ARM D8.13.5: a by-VA op invalidates any entry that
/// translates its address, so a 2 MiB entry is hit by any page inside it; a range op by any
/// page of the range). `None` if it names none of them. ASID and kind are not considered.
pub fn hit_range(inv: &Invalidation, ob: &Obligation) -> Option<(u64, u64)> {
    let (first, last) = match inv.target {
        Target::Asid | Target::All => return Some((ob.start, ob.end)),
        Target::Malformed => return None,
        Target::Va { va } => (va, va | (PAGE_SIZE - 1)),
        Target::Range { base, pages } => (base, base.saturating_add(pages * PAGE_SIZE - 1)),
    };
    let lo = first.max(ob.start);
    let hi = last.min(ob.end - 1);
    if lo > hi {
        return None;
    }
    let align = !(ob.leaf_size - 1);
    Some((lo & align, (hi & align) + ob.leaf_size))
}

/// Rule "scope": which of `cpus` an op with `scope` reaches: all of them when broadcast, only
/// the issuing CPU when local.
pub fn reach(scope: Scope, cpus: CpuMask) -> CpuMask {
    match scope {
        Scope::InnerShareable => cpus,
        Scope::Local(cpu) => cpus.and(CpuMask::single(cpu)),
    }
}

/// Whether `inv` alone, once completed, invalidates every entry of `ob` on every CPU that may
/// hold it: ASID, kind and VA rules, the whole range, and a scope reaching all of `ob.cpus`
/// (so a local op covers only an obligation whose CPUs are ⊆ {its CPU}).
pub fn covers(inv: &Invalidation, ob: &Obligation) -> bool {
    asid_matches(inv, ob)
        && kind_matches(inv, ob)
        && hit_range(inv, ob) == Some((ob.start, ob.end))
        && reach(inv.scope, ob.cpus) == ob.cpus
}

/// The last invalidation issued after an obligation was recorded that named some of its
/// addresses (any ASID, any kind): what the violation message reports as "issued".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Issued {
    /// The decoded op.
    pub inv: Invalidation,
    /// The CPU that issued (or, for the IPI baseline, ran) it.
    pub cpu: usize,
    /// Whether a `DSB` completed it.
    pub completed: bool,
    seq: u64,
}

/// Why an obligation is still open, judged against the last op issued for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gap {
    /// No TLBI named any of its addresses.
    NothingIssued,
    /// The op named another ASID (or was by ASID for a global entry).
    WrongAsid,
    /// Leaf-only or TTL-hinted where a walk-cache entry had to go.
    WalkCacheKept,
    /// The TTL hint named another level.
    WrongLevel,
    /// The ops stopped short of this part of the range.
    RangeMissed,
    /// The op did not reach these CPUs (local, or an IPI target did not run it).
    CpusMissed,
    /// Covered, but no `DSB` (of the right domain) on the issuing CPU completed it.
    NotCompleted,
}

/// What was being checked when an obligation was found open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Freeing this frame.
    Free(u64),
    /// Letting this frame be reused while it stays allocated: a shared table another space may
    /// adopt once the object lock is dropped.
    Reuse(u64),
    /// Returning from this operation.
    Return(OpId),
}

impl Check {
    /// Whether `ob` is one of the obligations this check requires discharged.
    fn names(self, ob: &Obligation) -> bool {
        match self {
            Check::Free(frame) | Check::Reuse(frame) => ob.frame == frame,
            Check::Return(op) => ob.op == op,
        }
    }
}

/// An obligation still open at a check: enough for the kernel's one-line report. The checks
/// return it boxed (it is ~300 bytes, two CPU masks): only a failing check allocates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The check that failed.
    pub check: Check,
    /// The open part: its range is the part not yet invalidated everywhere.
    pub obligation: Obligation,
    /// The CPUs that may still hold it.
    pub open_cpus: CpuMask,
    /// The last op issued for it, if any.
    pub issued: Option<Issued>,
    /// Why that op did not discharge it.
    pub gap: Gap,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ob = &self.obligation;
        match self.check {
            Check::Free(frame) => write!(f, "flush gap: free of {frame:#x}")?,
            Check::Reuse(frame) => write!(f, "flush gap: reuse of {frame:#x}")?,
            Check::Return(op) => write!(f, "flush gap: op {} returned", op.0)?,
        }
        write!(f, ": space {}", ob.space)?;
        match ob.asid {
            Some(asid) => write!(f, " asid {asid}")?,
            None => write!(f, " global")?,
        }
        write!(
            f,
            " va {:#x}..{:#x} level {} needs {} on cpus {}; issued: ",
            ob.start,
            ob.end,
            ob.level,
            if ob.walk_cache_required {
                "walk-cache invalidation"
            } else {
                "leaf invalidation"
            },
            self.open_cpus,
        )?;
        match self.issued {
            None => f.write_str("nothing")?,
            Some(i) => {
                let suffix = match i.inv.scope {
                    Scope::InnerShareable => "is",
                    Scope::Local(_) => "",
                };
                write!(f, "{}{suffix} on cpu {}", i.inv.op.name(), i.cpu)?;
                if let Some(asid) = i.inv.asid {
                    write!(f, " asid {asid}")?;
                }
                if let Some(ttl) = i.inv.ttl {
                    write!(f, " ttl {ttl}")?;
                }
                if !i.completed {
                    f.write_str(" (no dsb)")?;
                }
            }
        }
        write!(f, " [{:?}]", self.gap)
    }
}

/// One open piece of an obligation.
#[derive(Clone, Copy, Debug)]
struct Open {
    ob: Obligation,
    /// CPUs that may still hold these entries.
    open: CpuMask,
    /// Event number at recording: only ops issued later discharge it.
    born: u64,
    issued: Option<Issued>,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    inv: Invalidation,
    seq: u64,
}

/// How many open pieces name each frame and each operation: the checks' fast path, so a check
/// that passes (nearly all of them) costs a map lookup, not a scan.
#[derive(Clone, Debug, Default)]
struct OpenIndex {
    frames: BTreeMap<u64, u32>,
    ops: BTreeMap<OpId, u32>,
    pieces: usize,
}

impl OpenIndex {
    fn add(&mut self, ob: &Obligation) {
        *self.frames.entry(ob.frame).or_default() += 1;
        *self.ops.entry(ob.op).or_default() += 1;
        self.pieces += 1;
    }

    fn remove(&mut self, ob: &Obligation) {
        fn dec<K: Ord>(map: &mut BTreeMap<K, u32>, key: K) {
            if let btree_map::Entry::Occupied(mut e) = map.entry(key) {
                *e.get_mut() -= 1;
                if *e.get() == 0 {
                    e.remove();
                }
            }
        }
        dec(&mut self.frames, ob.frame);
        dec(&mut self.ops, ob.op);
        self.pieces -= 1;
    }

    fn names_any(&self, check: Check) -> bool {
        match check {
            Check::Free(frame) | Check::Reuse(frame) => self.frames.contains_key(&frame),
            Check::Return(op) => self.ops.contains_key(&op),
        }
    }
}

/// The per-CPU state machine: open obligations and each CPU's issued, not yet completed TLBIs.
#[derive(Clone, Debug)]
pub struct Sanitizer {
    /// Open pieces grouped by ASID: a by-ASID op (`VAE1`, `ASIDE1`, ...) can only discharge its
    /// own group, so completing it scans one space's obligations, not every space's.
    groups: BTreeMap<Option<u16>, Vec<Open>>,
    index: OpenIndex,
    pending: Vec<Vec<Pending>>,
    /// Event counter: orders clears against TLBI issue.
    now: u64,
    recorded: u64,
}

impl Sanitizer {
    /// A sanitizer for CPUs `0..cpus`.
    ///
    /// # Panics
    /// If `cpus > MAX_SANITIZER_CPUS`.
    pub fn new(cpus: usize) -> Self {
        assert!(cpus <= MAX_SANITIZER_CPUS, "{cpus} CPUs");
        Self {
            groups: BTreeMap::new(),
            index: OpenIndex::default(),
            pending: (0..cpus).map(|_| Vec::new()).collect(),
            now: 0,
            recorded: 0,
        }
    }

    fn tick(&mut self) -> u64 {
        self.now += 1;
        self.now
    }

    /// Records the obligations of one clear (an obligation on no CPU is born discharged: no
    /// TLB can hold it). Returns how many were recorded (the `flush_obligations` counter).
    pub fn record(&mut self, clear: &Clear) -> usize {
        let born = self.tick();
        let mut count = 0;
        for ob in clear.obligations() {
            count += 1;
            if !ob.is_empty() {
                self.index.add(&ob);
                self.groups.entry(ob.asid).or_default().push(Open {
                    ob,
                    open: ob.cpus,
                    born,
                    issued: None,
                });
            }
        }
        self.recorded += count as u64;
        count
    }

    /// Obligations recorded so far.
    pub fn recorded(&self) -> u64 {
        self.recorded
    }

    /// Open obligation pieces (a partly discharged obligation counts once per open piece).
    pub fn open_count(&self) -> usize {
        self.index.pieces
    }

    fn all_open(&self) -> impl Iterator<Item = &Open> {
        self.groups.values().flatten()
    }

    fn all_open_mut(&mut self) -> impl Iterator<Item = &mut Open> {
        self.groups.values_mut().flatten()
    }

    /// TLBIs issued on `cpu` and not yet completed.
    pub fn pending_count(&self, cpu: usize) -> usize {
        self.pending[cpu].len()
    }

    /// `cpu` issued `inv`. It discharges nothing until a `DSB` on `cpu` completes it, and then
    /// only obligations recorded before now: an entry cleared after the TLBI was issued may
    /// have been re-cached after it ran (the `DSB ISHST` before a TLBI orders the clear first).
    ///
    /// # Panics
    /// If `inv` is local to another CPU: a non-broadcast TLBI acts on the issuing CPU.
    pub fn issue(&mut self, cpu: usize, inv: Invalidation) {
        if let Scope::Local(target) = inv.scope {
            assert_eq!(target, cpu, "a local TLBI acts on the issuing CPU");
        }
        let seq = self.tick();
        self.note(inv, cpu, seq, false);
        self.pending[cpu].push(Pending { inv, seq });
    }

    /// `DSB ISH` (or `SY`) on `cpu`: completes every TLBI `cpu` issued (Arm ARM D8.13.8: a DSB
    /// waits for the TLB maintenance the same PE issued, for broadcast ops in every PE of the
    /// domain), discharging what they cover.
    pub fn dsb(&mut self, cpu: usize) {
        self.complete(cpu, |_| true);
    }

    /// `DSB NSH` on `cpu`: completes only the local TLBIs `cpu` issued; broadcast ones stay
    /// pending (a non-shareable DSB does not wait for other PEs).
    pub fn dsb_local(&mut self, cpu: usize) {
        self.complete(cpu, |inv| matches!(inv.scope, Scope::Local(_)));
    }

    /// The IPI baseline in one step: `target` ran `inv` locally, completed it with its own
    /// `DSB`, and acknowledged. Discharges, for `target` only, what it covers among the
    /// obligations recorded before now. `inv`'s scope is taken as `Local(target)` whatever it
    /// says. The kernel glue (`mm::audit`) gets the same effect without it: it sees the
    /// target's own local TLBIs ([`Self::issue`]) and `DSB NSH` ([`Self::dsb_local`]), reported
    /// before the target acknowledges. The model tests use this form.
    pub fn ack_ipi(&mut self, target: usize, inv: Invalidation) {
        let inv = Invalidation {
            scope: Scope::Local(target),
            ..inv
        };
        let seq = self.tick();
        self.note(inv, target, seq, true);
        self.discharge(&inv, seq);
    }

    fn complete(&mut self, cpu: usize, completes: impl Fn(&Invalidation) -> bool) {
        let pending = core::mem::take(&mut self.pending[cpu]);
        let mut kept = Vec::new();
        for p in pending {
            if completes(&p.inv) {
                for o in self.all_open_mut() {
                    if let Some(i) = &mut o.issued
                        && i.seq == p.seq
                    {
                        i.completed = true;
                    }
                }
                self.discharge(&p.inv, p.seq);
            } else {
                kept.push(p);
            }
        }
        self.pending[cpu] = kept;
    }

    /// Rule "completion": the completed `inv`, issued at event `seq`, discharges the part of
    /// each obligation recorded before `seq` that it hits (ASID, kind and VA rules) on the CPUs
    /// it reaches (scope rule). A partly hit obligation is split into up to three pieces.
    fn discharge(&mut self, inv: &Invalidation, seq: u64) {
        let Self { groups, index, .. } = self;
        let mut visit = |pieces: &mut Vec<Open>| {
            let mut i = 0;
            while i < pieces.len() {
                let o = pieces[i];
                let hit = (o.born < seq && asid_matches(inv, &o.ob) && kind_matches(inv, &o.ob))
                    .then(|| hit_range(inv, &o.ob))
                    .flatten();
                let cpus = reach(inv.scope, o.open);
                let Some((start, end)) = hit.filter(|_| !cpus.is_empty()) else {
                    i += 1;
                    continue;
                };
                let piece = |start, end, open| Open {
                    ob: Obligation { start, end, ..o.ob },
                    open,
                    ..o
                };
                if o.ob.start < start {
                    pieces.push(piece(o.ob.start, start, o.open));
                    index.add(&o.ob);
                }
                if end < o.ob.end {
                    pieces.push(piece(end, o.ob.end, o.open));
                    index.add(&o.ob);
                }
                let rest = o.open.without(cpus);
                if rest.is_empty() {
                    pieces.swap_remove(i);
                    index.remove(&o.ob);
                } else {
                    pieces[i] = piece(start, end, rest);
                    i += 1;
                }
            }
        };
        match inv.asid {
            // Rule "ASID": a by-ASID op hits only its own ASID's entries.
            Some(asid) => {
                if let Some(pieces) = groups.get_mut(&Some(asid)) {
                    visit(pieces);
                }
            }
            None => groups.values_mut().for_each(visit),
        }
        groups.retain(|_, pieces| !pieces.is_empty());
    }

    /// Notes `inv` as the last op issued for the obligations whose addresses it names.
    fn note(&mut self, inv: Invalidation, cpu: usize, seq: u64, completed: bool) {
        let issued = Issued {
            inv,
            cpu,
            completed,
            seq,
        };
        for o in self.all_open_mut() {
            let named = match inv.target {
                Target::Asid => inv.asid == o.ob.asid,
                _ => hit_range(&inv, &o.ob).is_some(),
            };
            if named {
                o.issued = Some(issued);
            }
        }
    }

    /// Rule "checks", for frames: `frame` may be freed, poisoned, reused or adopted only when
    /// every obligation naming it (`Obligation::frame == frame`, the address the entry or table
    /// descriptor held) is discharged on every CPU.
    pub fn check_free(&self, frame: u64) -> Result<(), Box<Violation>> {
        self.check(Check::Free(frame))
    }

    /// Rule "checks", for operations: once an unmap, protect or unshare returns, no CPU may
    /// still translate what it changed, so none of its obligations may be open.
    pub fn check_return(&self, op: OpId) -> Result<(), Box<Violation>> {
        self.check(Check::Return(op))
    }

    /// Runs `check`: [`Check::Free`] and [`Check::Reuse`] as [`Self::check_free`],
    /// [`Check::Return`] as [`Self::check_return`].
    pub fn check(&self, check: Check) -> Result<(), Box<Violation>> {
        self.first_open(check, |ob| check.names(ob))
    }

    /// Drops every open piece a check reported (`check`'s frame or operation), so a
    /// violation is reported once and a run with a planted bug does not accumulate every
    /// obligation it never discharges. Returns how many pieces were dropped.
    pub fn forget(&mut self, check: Check) -> usize {
        if !self.index.names_any(check) {
            return 0;
        }
        let before = self.index.pieces;
        let Self { groups, index, .. } = self;
        for pieces in groups.values_mut() {
            pieces.retain(|o| {
                let named = check.names(&o.ob);
                if named {
                    index.remove(&o.ob);
                }
                !named
            });
        }
        groups.retain(|_, pieces| !pieces.is_empty());
        before - self.index.pieces
    }

    /// An ASID rollover (Linux's `flush_context`): every CPU must invalidate its whole TLB
    /// before it next switches address space, and keeps running, unflushed, the ASID it runs
    /// now (`kept(cpu)`, reserved into the new generation; `None` when it runs none). So on
    /// each CPU an entry of any *other* ASID can never be used again before that CPU's flush:
    /// the rollover discharges it there (rule "rollover"). Entries of the kept ASID stay open:
    /// the space keeps its number and its own flush must still reach them. Untagged (global)
    /// obligations are untouched: no rollover flush is owed for them.
    pub fn rollover(&mut self, kept: impl Fn(usize) -> Option<u16>) {
        self.tick();
        let cpus = self.pending.len();
        let Self { groups, index, .. } = self;
        for (asid, pieces) in groups.iter_mut().filter(|(asid, _)| asid.is_some()) {
            let stale = CpuMask::from_cpus((0..cpus).filter(|&c| kept(c) != *asid));
            pieces.retain_mut(|o| {
                o.open = o.open.without(stale);
                if o.open.is_empty() {
                    index.remove(&o.ob);
                }
                !o.open.is_empty()
            });
        }
        groups.retain(|_, pieces| !pieces.is_empty());
    }

    /// The index counts exactly the open pieces, per frame and per operation.
    #[cfg(test)]
    fn assert_index_consistent(&self) {
        let mut want = OpenIndex::default();
        self.all_open().for_each(|o| want.add(&o.ob));
        assert_eq!(
            (&want.frames, &want.ops, want.pieces),
            (&self.index.frames, &self.index.ops, self.index.pieces)
        );
        assert!(self.groups.values().all(|pieces| !pieces.is_empty()));
    }

    fn first_open(
        &self,
        check: Check,
        names: impl Fn(&Obligation) -> bool,
    ) -> Result<(), Box<Violation>> {
        if !self.index.names_any(check) {
            return Ok(());
        }
        match self.all_open().find(|o| names(&o.ob)) {
            None => Ok(()),
            Some(o) => Err(Box::new(Violation {
                check,
                obligation: o.ob,
                open_cpus: o.open,
                issued: o.issued,
                gap: diagnose(o),
            })),
        }
    }
}

/// Which rule the last op issued for `o` failed, tried in the order the rules apply.
fn diagnose(o: &Open) -> Gap {
    let Some(issued) = o.issued else {
        return Gap::NothingIssued;
    };
    let (inv, ob) = (&issued.inv, &o.ob);
    if !asid_matches(inv, ob) {
        Gap::WrongAsid
    } else if !kind_matches(inv, ob) {
        if ob.walk_cache_required {
            Gap::WalkCacheKept
        } else {
            Gap::WrongLevel
        }
    } else if hit_range(inv, ob) != Some((ob.start, ob.end)) {
        Gap::RangeMissed
    } else if !issued.completed {
        Gap::NotCompleted
    } else {
        Gap::CpusMissed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use broadside_arch::pte::{L1_BLOCK_SIZE, L2_BLOCK_SIZE};
    use broadside_arch::tlbi::{
        FlushPlan, FlushRequest, MAX_TLBI_RANGE_PAGES, TlbFeatures, pages_covered,
        plan_kernel_range_flush, plan_range_flush, tlbi_asid_operand, tlbi_range_operand,
        tlbi_vaddr,
    };
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    const IS: Scope = Scope::InnerShareable;
    const NO_FEATS: TlbFeatures = TlbFeatures {
        range: false,
        ttl: false,
    };
    const ALL_FEATS: TlbFeatures = TlbFeatures {
        range: true,
        ttl: true,
    };
    const FEATS: [TlbFeatures; 2] = [NO_FEATS, ALL_FEATS];
    const FRAME: u64 = 0x8000_0000;
    const OP: OpId = OpId(1);

    fn leaf(asid: Option<u16>, va: u64, level: u8, cpus: &[usize]) -> Clear {
        Clear {
            op: OP,
            space: 7,
            asid,
            cpus: CpuMask::from_cpus(cpus.iter().copied()),
            entry: Cleared::Leaf {
                va,
                level,
                frame: FRAME,
            },
        }
    }

    fn table(asid: Option<u16>, va: u64, level: u8, leaves: bool, cpus: &[usize]) -> Clear {
        Clear {
            op: OP,
            space: 7,
            asid,
            cpus: CpuMask::from_cpus(cpus.iter().copied()),
            entry: Cleared::Table {
                va,
                level,
                table: FRAME,
                leaves,
            },
        }
    }

    fn one(clear: &Clear) -> Obligation {
        clear.obligations().next().unwrap()
    }

    fn vae1(va: u64, asid: u16) -> Invalidation {
        decode(
            TlbiOp::Vae1 {
                operand: tlbi_vaddr(va, asid, None),
            },
            IS,
        )
    }

    fn vale1(va: u64, asid: u16, ttl: Option<u8>) -> Invalidation {
        decode(
            TlbiOp::Vale1 {
                operand: tlbi_vaddr(va, asid, ttl),
            },
            IS,
        )
    }

    /// The request the page-table code makes for `clear` (what `mm::gather` asks for).
    fn request_for(clear: &Clear) -> FlushRequest {
        let asid = clear.asid.unwrap_or(0);
        match clear.entry {
            Cleared::Leaf { va, level, .. } => {
                let size = level_block_size(level);
                FlushRequest {
                    start: va & !(size - 1),
                    end: (va & !(size - 1)) + size,
                    stride: size,
                    asid,
                    last_level_only: true,
                    level_hint: Some(level),
                }
            }
            Cleared::Table {
                va, level, leaves, ..
            } => {
                let span = level_block_size(level - 1);
                let start = va & !(span - 1);
                let (end, stride) = if leaves {
                    (start + span, level_block_size(level))
                } else {
                    (start + PAGE_SIZE, PAGE_SIZE)
                };
                FlushRequest {
                    start,
                    end,
                    stride,
                    asid,
                    last_level_only: false,
                    level_hint: None,
                }
            }
        }
    }

    fn plan(req: &FlushRequest, global: bool, feats: TlbFeatures) -> FlushPlan {
        if global {
            plan_kernel_range_flush(req.start, req.end, req.last_level_only)
        } else {
            plan_range_flush(req, feats)
        }
    }

    fn issue_plan(s: &mut Sanitizer, cpu: usize, plan: &FlushPlan, scope: Scope) {
        for op in plan.ops() {
            s.issue(cpu, decode(op, scope));
        }
    }

    /// Records `clear`, issues the planner's flush for `req` on CPU 0 with `scope`, and
    /// completes it unless `dsb` is false.
    fn scenario(
        clear: &Clear,
        req: &FlushRequest,
        feats: TlbFeatures,
        scope: Scope,
        dsb: bool,
    ) -> Sanitizer {
        let mut s = Sanitizer::new(4);
        s.record(clear);
        issue_plan(&mut s, 0, &plan(req, clear.asid.is_none(), feats), scope);
        if dsb {
            s.dsb(0);
        }
        s
    }

    #[test]
    fn cpu_masks_from_bitmap_words() {
        let m = CpuMask::from_words([0b101, 0, 1 << 63]);
        assert_eq!(m.iter().collect::<Vec<_>>(), [0, 2, 191]);
        assert!(CpuMask::from_words([]).is_empty());
    }

    #[test]
    fn cpu_masks_hold_512_cpus() {
        let mut m = CpuMask::from_cpus([0, 63, 64, 300, 511]);
        assert!(m.contains(511) && m.contains(300) && !m.contains(1) && !m.contains(512));
        assert_eq!(m.iter().collect::<Vec<_>>(), [0, 63, 64, 300, 511]);
        assert_eq!(alloc::format!("{m}"), "{0,63,64,300,511}");
        assert_eq!(m.and(CpuMask::single(300)), CpuMask::single(300));
        assert!(CpuMask::single(64).is_subset(m));
        m = m.without(CpuMask::from_cpus([0, 63, 64, 300, 511]));
        assert!(m.is_empty());
    }

    #[test]
    fn obligations_of_each_clear() {
        let ob = one(&leaf(Some(5), 0x4020_1234, 2, &[1]));
        assert_eq!((ob.start, ob.end, ob.level), (0x4020_0000, 0x4040_0000, 2));
        assert_eq!(
            (ob.leaf_size, ob.walk_cache_required),
            (L2_BLOCK_SIZE, false)
        );
        let obs: Vec<_> = table(Some(5), 0x4020_1234, 2, true, &[1])
            .obligations()
            .collect();
        assert_eq!(obs.len(), 2);
        // The level-1 descriptor's walk-cache entry: one piece, the whole GiB.
        assert_eq!(
            (obs[0].start, obs[0].end),
            (L1_BLOCK_SIZE, 2 * L1_BLOCK_SIZE)
        );
        assert_eq!((obs[0].level, obs[0].leaf_size), (1, L1_BLOCK_SIZE));
        assert!(obs[0].walk_cache_required);
        // Its 512 blocks.
        assert_eq!(
            (obs[1].start, obs[1].end),
            (L1_BLOCK_SIZE, 2 * L1_BLOCK_SIZE)
        );
        assert_eq!((obs[1].level, obs[1].leaf_size), (2, L2_BLOCK_SIZE));
        assert!(!obs[1].walk_cache_required);
        assert_eq!(table(None, 0, 3, false, &[]).obligations().count(), 1);
        // On no CPU: recorded, born discharged.
        let mut s = Sanitizer::new(1);
        assert_eq!(s.record(&leaf(Some(1), 0, 3, &[])), 1);
        assert_eq!((s.recorded(), s.open_count()), (1, 0));
        assert_eq!(s.check_free(FRAME), Ok(()));
    }

    #[test]
    fn decode_by_va_forms() {
        let va = 0x1234_5000;
        let inv = decode(
            TlbiOp::Vale1 {
                operand: tlbi_vaddr(va + 0xfff, 0x42, Some(3)),
            },
            Scope::Local(2),
        );
        assert_eq!(inv.target, Target::Va { va });
        assert_eq!(
            (inv.asid, inv.leaf_only, inv.ttl),
            (Some(0x42), true, Some(3))
        );
        assert_eq!(inv.scope, Scope::Local(2));
        let inv = vae1(va, 7);
        assert_eq!((inv.asid, inv.leaf_only, inv.ttl), (Some(7), false, None));
        for (op, leaf_only) in [
            (TlbiOp::Vaae1 { operand: 0 }, false),
            (TlbiOp::Vaale1 { operand: 0 }, true),
        ] {
            let kernel = 0xffff_0000_4000_0000;
            let op = match op {
                TlbiOp::Vaae1 { .. } => TlbiOp::Vaae1 {
                    operand: tlbi_vaddr(kernel, 0, Some(2)),
                },
                _ => TlbiOp::Vaale1 {
                    operand: tlbi_vaddr(kernel, 0, Some(2)),
                },
            };
            let inv = decode(op, IS);
            // High half: sign-extended from VA[55].
            assert_eq!(inv.target, Target::Va { va: kernel });
            assert_eq!(
                (inv.asid, inv.leaf_only, inv.ttl),
                (None, leaf_only, Some(2))
            );
        }
        // TTL 0b00xx: no hint. 0b0100 (level 0 without LPA2) and other granules: malformed.
        let no_hint = decode(
            TlbiOp::Vae1 {
                operand: 0b0011 << 44,
            },
            IS,
        );
        assert_eq!((no_hint.target, no_hint.ttl), (Target::Va { va: 0 }, None));
        for ttl in [0b0100u64, 0b1001, 0b1111] {
            let op = TlbiOp::Vae1 { operand: ttl << 44 };
            assert_eq!(decode(op, IS).target, Target::Malformed, "ttl {ttl:#b}");
        }
    }

    #[test]
    fn decode_range_and_whole_forms() {
        let inv = decode(
            TlbiOp::Rvae1 {
                operand: tlbi_range_operand(0x40_0000, 7, 1, 7, None),
            },
            IS,
        );
        let target = Target::Range {
            base: 0x40_0000,
            pages: 512,
        };
        assert_eq!(
            (inv.target, inv.asid, inv.leaf_only, inv.ttl),
            (target, Some(7), false, None)
        );
        let inv = decode(
            TlbiOp::Rvale1 {
                operand: tlbi_range_operand(0x1234_5000, 0x42, 3, 31, Some(2)),
            },
            IS,
        );
        let pages = MAX_TLBI_RANGE_PAGES;
        let target = Target::Range {
            base: 0x1234_5000,
            pages,
        };
        assert_eq!(
            (inv.target, inv.leaf_only, inv.ttl),
            (target, true, Some(2))
        );
        // TG other than 4K (here 0b00, reserved, and 0b11, 64K): malformed.
        let operand = tlbi_range_operand(0x40_0000, 7, 1, 7, None);
        for tg in [0b00u64, 0b11] {
            let op = TlbiOp::Rvae1 {
                operand: (operand & !(0b11 << 46)) | (tg << 46),
            };
            assert_eq!(decode(op, IS).target, Target::Malformed);
        }
        let aside = decode(
            TlbiOp::Aside1 {
                operand: tlbi_asid_operand(0xbeef),
            },
            IS,
        );
        assert_eq!((aside.target, aside.asid), (Target::Asid, Some(0xbeef)));
        let all = decode(TlbiOp::Vmalle1, Scope::Local(1));
        assert_eq!(
            (all.target, all.asid, all.leaf_only),
            (Target::All, None, false)
        );
    }

    #[test]
    fn rule_asid() {
        let user = one(&leaf(Some(5), 0x1000, 3, &[0]));
        let global = one(&leaf(None, 0xffff_0000_0000_1000, 3, &[0]));
        assert!(asid_matches(&vae1(0x1000, 5), &user));
        assert!(!asid_matches(&vae1(0x1000, 6), &user));
        let aside = |asid| {
            decode(
                TlbiOp::Aside1 {
                    operand: tlbi_asid_operand(asid),
                },
                IS,
            )
        };
        assert!(asid_matches(&aside(5), &user) && !asid_matches(&aside(5), &global));
        let vaae1 = decode(TlbiOp::Vaae1 { operand: 0 }, IS);
        assert!(asid_matches(&vaae1, &user) && asid_matches(&vaae1, &global));
        let all = decode(TlbiOp::Vmalle1, IS);
        assert!(asid_matches(&all, &user) && asid_matches(&all, &global));
        assert!(!asid_matches(&vae1(0x1000, 0), &global));
    }

    #[test]
    fn rule_kind_and_level() {
        let page = one(&leaf(Some(5), 0x1000, 3, &[0]));
        let walk = one(&table(Some(5), 0x1000, 3, false, &[0]));
        assert!(kind_matches(&vale1(0x1000, 5, None), &page));
        assert!(kind_matches(&vale1(0x1000, 5, Some(3)), &page));
        assert!(!kind_matches(&vale1(0x1000, 5, Some(2)), &page));
        assert!(!kind_matches(&vale1(0x1000, 5, None), &walk));
        assert!(kind_matches(&vae1(0x1000, 5), &walk));
        // A hint on a non-leaf form still promises only where the leaf is.
        let hinted = decode(
            TlbiOp::Vae1 {
                operand: tlbi_vaddr(0x1000, 5, Some(3)),
            },
            IS,
        );
        assert!(!kind_matches(&hinted, &walk) && kind_matches(&hinted, &page));
        let aside = decode(
            TlbiOp::Aside1 {
                operand: tlbi_asid_operand(5),
            },
            IS,
        );
        assert!(kind_matches(&aside, &walk));
    }

    #[test]
    fn rule_va() {
        let block = one(&leaf(Some(1), 0x4020_0000, 2, &[0]));
        // Any page inside a block hits all of it; a page outside does not.
        assert_eq!(
            hit_range(&vae1(0x403f_f000, 1), &block),
            Some((block.start, block.end))
        );
        assert_eq!(hit_range(&vae1(0x4040_0000, 1), &block), None);
        assert_eq!(hit_range(&vae1(0x401f_f000, 1), &block), None);
        // A range hits the whole leaves it touches, and only them.
        let blocks = table(Some(1), L1_BLOCK_SIZE, 2, true, &[0])
            .obligations()
            .nth(1)
            .unwrap();
        let range = |base: u64, num, scale| {
            decode(
                TlbiOp::Rvale1 {
                    operand: tlbi_range_operand(base, 1, scale, num, None),
                },
                IS,
            )
        };
        let g = L1_BLOCK_SIZE;
        assert_eq!(
            hit_range(&range(g + 0x1000, 0, 0), &blocks),
            Some((g, g + L2_BLOCK_SIZE))
        );
        // 64 pages from the last page of block 0: blocks 0 and 1.
        assert_eq!(
            hit_range(&range(g + L2_BLOCK_SIZE - 0x1000, 0, 1), &blocks),
            Some((g, g + 2 * L2_BLOCK_SIZE))
        );
        // Ending exactly where the obligation starts: nothing.
        assert_eq!(hit_range(&range(g - 0x2000, 0, 0), &blocks), None);
        let aside = decode(
            TlbiOp::Aside1 {
                operand: tlbi_asid_operand(1),
            },
            IS,
        );
        assert_eq!(hit_range(&aside, &blocks), Some((blocks.start, blocks.end)));
        let malformed = decode(
            TlbiOp::Vae1 {
                operand: 0b1111 << 44,
            },
            IS,
        );
        assert_eq!(hit_range(&malformed, &block), None);
    }

    #[test]
    fn rule_scope_and_covers() {
        let two = one(&leaf(Some(1), 0x1000, 3, &[0, 1]));
        let mine = one(&leaf(Some(1), 0x1000, 3, &[1]));
        let local = decode(
            TlbiOp::Vae1 {
                operand: tlbi_vaddr(0x1000, 1, None),
            },
            Scope::Local(1),
        );
        assert_eq!(reach(IS, two.cpus), two.cpus);
        assert_eq!(reach(local.scope, two.cpus), CpuMask::single(1));
        assert!(covers(&local, &mine) && !covers(&local, &two));
        assert!(covers(&vae1(0x1000, 1), &two));
        assert!(!covers(&vae1(0x2000, 1), &two));
        let blocks = table(Some(1), 0, 2, true, &[0])
            .obligations()
            .nth(1)
            .unwrap();
        assert!(!covers(&vae1(0, 1), &blocks), "one block of 512");
    }

    #[test]
    fn completion_needs_a_dsb_on_the_issuing_cpu() {
        let clear = leaf(Some(1), 0x1000, 3, &[0, 1, 2]);
        let mut s = Sanitizer::new(4);
        s.record(&clear);
        s.issue(0, vae1(0x1000, 1));
        assert_eq!(s.pending_count(0), 1);
        s.dsb(1);
        s.dsb_local(0); // NSH does not complete a broadcast op
        assert_eq!(s.check_free(FRAME).unwrap_err().gap, Gap::NotCompleted);
        s.dsb(0);
        assert_eq!((s.check_free(FRAME), s.pending_count(0)), (Ok(()), 0));
        // An op issued before the clear discharges nothing, even if completed after it.
        s.issue(0, vae1(0x1000, 1));
        s.record(&clear);
        s.dsb(0);
        assert_eq!(s.check_free(FRAME).unwrap_err().gap, Gap::NothingIssued);
        // A local op and DSB NSH per CPU, each on its own CPU, discharge it together.
        for cpu in 0..3 {
            s.issue(cpu, decode(TlbiOp::Vmalle1, Scope::Local(cpu)));
            s.dsb_local(cpu);
            assert_eq!(s.check_free(FRAME).is_ok(), cpu == 2);
        }
    }

    #[test]
    #[should_panic(expected = "issuing CPU")]
    fn a_local_op_acts_on_its_own_cpu() {
        Sanitizer::new(2).issue(0, decode(TlbiOp::Vmalle1, Scope::Local(1)));
    }

    #[test]
    fn ipi_baseline_discharges_per_acknowledging_target() {
        let clear = leaf(Some(3), 0x5000, 3, &[0, 1, 3]);
        let mut s = Sanitizer::new(4);
        s.record(&clear);
        let op = TlbiOp::Vale1 {
            operand: tlbi_vaddr(0x5000, 3, Some(3)),
        };
        s.ack_ipi(0, decode(op, IS));
        s.ack_ipi(3, decode(op, IS));
        let v = s.check_free(FRAME).unwrap_err();
        assert_eq!((v.gap, v.open_cpus), (Gap::CpusMissed, CpuMask::single(1)));
        s.ack_ipi(2, decode(op, IS)); // not a CPU that held it
        assert!(s.check_free(FRAME).is_err());
        s.ack_ipi(1, decode(op, IS));
        assert_eq!(s.check_return(OP), Ok(()));
    }

    #[test]
    fn checks_name_the_frame_and_the_operation() {
        let mut s = Sanitizer::new(2);
        let mut a = leaf(Some(1), 0x1000, 3, &[0]);
        a.op = OpId(10);
        let mut b = leaf(Some(1), 0x2000, 3, &[0]);
        b.op = OpId(11);
        b.entry = Cleared::Leaf {
            va: 0x2000,
            level: 3,
            frame: FRAME + PAGE_SIZE,
        };
        s.record(&a);
        s.record(&b);
        s.issue(0, vae1(0x1000, 1));
        s.dsb(0);
        assert_eq!(s.check_return(OpId(10)), Ok(()));
        assert_eq!(s.check_free(FRAME), Ok(()));
        let v = s.check_return(OpId(11)).unwrap_err();
        assert_eq!(v.check, Check::Return(OpId(11)));
        assert_eq!(
            s.check_free(FRAME + PAGE_SIZE).unwrap_err().obligation,
            v.obligation
        );
        assert_eq!(s.check_return(OpId(12)), Ok(()));
    }

    #[test]
    fn a_violation_prints_one_line() {
        let clear = table(Some(9), L1_BLOCK_SIZE, 2, false, &[0, 1]);
        let req = FlushRequest {
            last_level_only: true,
            level_hint: Some(2),
            ..request_for(&clear)
        };
        let s = scenario(&clear, &req, ALL_FEATS, IS, true);
        let line = alloc::format!("{}", s.check_free(FRAME).unwrap_err());
        assert_eq!(
            line,
            "flush gap: free of 0x80000000: space 7 asid 9 va 0x40000000..0x80000000 level 1 needs \
             walk-cache invalidation on cpus {0,1}; issued: vale1is on cpu 0 asid 9 ttl 2 \
             [WalkCacheKept]"
        );
        assert!(!line.contains('\n'));
    }

    // ---- The issue's planted bugs: each a deterministic violation, beside its correct form.

    #[test]
    fn bug_skip_tlbi() {
        let clear = leaf(Some(5), 0x7000, 3, &[0, 1]);
        let mut s = Sanitizer::new(2);
        s.record(&clear);
        s.dsb(0);
        let v = s.check_free(FRAME).unwrap_err();
        assert_eq!((v.gap, v.issued), (Gap::NothingIssued, None));
        assert!(s.check_return(OP).is_err());
        for feats in FEATS {
            let s = scenario(&clear, &request_for(&clear), feats, IS, true);
            assert_eq!(s.check_free(FRAME), Ok(()));
        }
    }

    #[test]
    fn bug_local_tlbi() {
        for feats in FEATS {
            let clear = leaf(Some(5), 0x7000, 3, &[0, 1]);
            let s = scenario(&clear, &request_for(&clear), feats, Scope::Local(0), true);
            let v = s.check_free(FRAME).unwrap_err();
            assert_eq!((v.gap, v.open_cpus), (Gap::CpusMissed, CpuMask::single(1)));
            // Local is right for a space that only ever ran here.
            let alone = leaf(Some(5), 0x7000, 3, &[0]);
            let s = scenario(&alone, &request_for(&alone), feats, Scope::Local(0), true);
            assert_eq!(s.check_free(FRAME), Ok(()));
        }
    }

    #[test]
    fn bug_leaf_only_flush() {
        for feats in FEATS {
            let clear = table(Some(5), 0x20_0000, 3, false, &[0, 1]);
            let leaf_only = FlushRequest {
                last_level_only: true,
                level_hint: Some(3),
                ..request_for(&clear)
            };
            let s = scenario(&clear, &leaf_only, feats, IS, true);
            let v = s.check_free(FRAME).unwrap_err();
            assert!(v.obligation.walk_cache_required);
            assert_eq!(v.gap, Gap::WalkCacheKept);
            let s = scenario(&clear, &request_for(&clear), feats, IS, true);
            assert_eq!(s.check_free(FRAME), Ok(()));
        }
    }

    #[test]
    fn bug_last_sharer_narrow_flush() {
        // A level-2 table full of 2 MiB blocks, unhooked by its last sharer.
        let va = 4 * L1_BLOCK_SIZE;
        let clear = table(Some(5), va, 2, true, &[0, 1]);
        let narrow = FlushRequest {
            start: va,
            end: va + PAGE_SIZE,
            stride: PAGE_SIZE,
            asid: 5,
            last_level_only: false,
            level_hint: None,
        };
        for feats in FEATS {
            let s = scenario(&clear, &narrow, feats, IS, true);
            let v = s.check_return(OP).unwrap_err();
            // The walk-cache entry went; blocks 1..=511 did not.
            assert!(!v.obligation.walk_cache_required);
            assert_eq!(
                (v.obligation.start, v.obligation.end),
                (va + L2_BLOCK_SIZE, va + L1_BLOCK_SIZE)
            );
            assert_eq!(v.gap, Gap::RangeMissed);
            assert_eq!(s.open_count(), 1);
            let s = scenario(&clear, &request_for(&clear), feats, IS, true);
            assert_eq!(s.check_return(OP), Ok(()));
        }
    }

    #[test]
    fn bug_wrong_asid() {
        for global in [false, true] {
            let asid = (!global).then_some(5);
            let clear = leaf(asid, 0x7000, 3, &[0, 1]);
            let wrong = FlushRequest {
                asid: 6,
                ..request_for(&clear)
            };
            for feats in FEATS {
                // For a global entry, "another ASID" is any by-ASID op.
                let mut s = Sanitizer::new(2);
                s.record(&clear);
                issue_plan(&mut s, 0, &plan_range_flush(&wrong, feats), IS);
                s.dsb(0);
                assert_eq!(s.check_free(FRAME).unwrap_err().gap, Gap::WrongAsid);
                let s = scenario(&clear, &request_for(&clear), feats, IS, true);
                assert_eq!(s.check_free(FRAME), Ok(()));
            }
        }
    }

    #[test]
    fn bug_no_dsb() {
        for feats in FEATS {
            let clear = leaf(Some(5), 0x20_0000, 2, &[0, 1]);
            let mut s = scenario(&clear, &request_for(&clear), feats, IS, false);
            let v = s.check_free(FRAME).unwrap_err();
            assert_eq!(v.gap, Gap::NotCompleted);
            assert!(!v.issued.unwrap().completed);
            s.dsb(0);
            assert_eq!(s.check_free(FRAME), Ok(()));
        }
    }

    #[test]
    fn bug_narrow_range() {
        // 16 pages unmapped one by one, flushed one page short; and a full table of pages.
        for feats in FEATS {
            let mut s = Sanitizer::new(2);
            for k in 0..16 {
                let mut c = leaf(Some(5), 0x10_0000 + k * PAGE_SIZE, 3, &[0, 1]);
                c.entry = Cleared::Leaf {
                    va: 0x10_0000 + k * PAGE_SIZE,
                    level: 3,
                    frame: FRAME + k * PAGE_SIZE,
                };
                s.record(&c);
            }
            let req = FlushRequest {
                start: 0x10_0000,
                end: 0x10_0000 + 15 * PAGE_SIZE,
                stride: PAGE_SIZE,
                asid: 5,
                last_level_only: true,
                level_hint: Some(3),
            };
            issue_plan(&mut s, 0, &plan_range_flush(&req, feats), IS);
            s.dsb(0);
            for k in 0..15 {
                assert_eq!(s.check_free(FRAME + k * PAGE_SIZE), Ok(()));
            }
            let v = s.check_free(FRAME + 15 * PAGE_SIZE).unwrap_err();
            assert_eq!(v.obligation.start, 0x10_0000 + 15 * PAGE_SIZE);
            assert_eq!(v.gap, Gap::NothingIssued); // no op named that page

            let clear = table(Some(5), 0x20_0000, 3, true, &[0, 1]);
            let short = FlushRequest {
                end: request_for(&clear).end - PAGE_SIZE,
                ..request_for(&clear)
            };
            let s = scenario(&clear, &short, feats, IS, true);
            let v = s.check_free(FRAME).unwrap_err();
            assert_eq!(
                (v.obligation.start, v.obligation.end),
                (0x3f_f000, 0x40_0000)
            );
            assert_eq!(v.gap, Gap::RangeMissed);
        }
    }

    // ---- The planner's encodings, decoded: the same addresses, ASID, kind and hint. --------

    fn stride_level(stride: u64) -> u8 {
        match stride {
            PAGE_SIZE => 3,
            L2_BLOCK_SIZE => 2,
            _ => 1,
        }
    }

    fn any_request() -> impl Strategy<Value = FlushRequest> {
        let pages = prop_oneof![
            0u64..16,
            500u64..530,
            0u64..4096,
            (MAX_TLBI_RANGE_PAGES - 64)..(MAX_TLBI_RANGE_PAGES + 64),
        ];
        let strides = prop::sample::select(vec![PAGE_SIZE, L2_BLOCK_SIZE, L1_BLOCK_SIZE]);
        (
            0u64..(1 << 46),
            pages,
            strides,
            0u64..600,
            any::<u16>(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                |(start, pages, stride, strides, asid, last_level_only, hint)| {
                    let len = if stride == PAGE_SIZE {
                        pages * PAGE_SIZE
                    } else {
                        strides * stride / 2
                    };
                    FlushRequest {
                        start,
                        end: start + len,
                        stride,
                        asid,
                        last_level_only,
                        level_hint: hint.then_some(stride_level(stride)),
                    }
                },
            )
    }

    #[test]
    fn forget_drops_only_the_reported_frame_or_operation() {
        let mut s = Sanitizer::new(2);
        s.record(&leaf(Some(5), 0x1000, 3, &[0, 1]));
        let other = Clear {
            op: OpId(2),
            ..leaf(Some(5), 0x2000, 3, &[0])
        };
        let other = Clear {
            entry: Cleared::Leaf {
                va: 0x2000,
                level: 3,
                frame: FRAME + PAGE_SIZE,
            },
            ..other
        };
        s.record(&other);
        assert!(s.check_free(FRAME).is_err());
        assert_eq!(s.forget(Check::Free(FRAME)), 1);
        assert_eq!(s.check_free(FRAME), Ok(()));
        assert!(s.check_return(OpId(2)).is_err());
        assert_eq!(s.forget(Check::Return(OpId(2))), 1);
        assert_eq!(s.open_count(), 0);
        s.assert_index_consistent();
    }

    #[test]
    fn rollover_discharges_every_cpu_except_where_the_asid_is_kept_running() {
        let mut s = Sanitizer::new(3);
        s.record(&leaf(Some(5), 0x1000, 3, &[0, 1, 2]));
        // CPU 1 keeps running ASID 5 across the rollover; CPU 0 runs ASID 6, CPU 2 nothing.
        s.rollover(|c| [Some(6), Some(5), None][c]);
        s.assert_index_consistent();
        let v = s.check_free(FRAME).unwrap_err();
        assert_eq!(v.open_cpus, CpuMask::single(1));
        // Only a flush reaching CPU 1 is still owed.
        let inv = decode(
            TlbiOp::Vae1 {
                operand: tlbi_vaddr(0x1000, 5, None),
            },
            Scope::Local(1),
        );
        s.issue(1, inv);
        s.dsb_local(1);
        assert_eq!(s.check_free(FRAME), Ok(()));
        // A global obligation is not a rollover's business.
        s.record(&leaf(None, 0x1000, 3, &[0]));
        s.rollover(|_| None);
        assert!(s.check_free(FRAME).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// Encode with the planner, decode here: every op names the request's ASID and kind and
        /// the hint the planner was allowed to give, and the addresses the ops name, each
        /// widened to the leaf (stride) it lies in, are exactly the request's leaves, in order.
        /// Run through the sanitizer, the plan discharges a leaf obligation for exactly those
        /// leaves, and one stride more stays open.
        #[test]
        fn decoding_the_planners_ops_gives_back_the_request(
            req in any_request(),
            range in any::<bool>(),
            ttl in any::<bool>(),
        ) {
            let feats = TlbFeatures { range, ttl };
            let plan = plan_range_flush(&req, feats);
            let first = req.start & !(req.stride - 1);
            let strides = if req.start == req.end {
                0
            } else {
                (req.end - first).div_ceil(req.stride)
            };
            let end = first + strides * req.stride;
            let hint = if req.last_level_only && ttl { req.level_hint } else { None };
            let mut next = first;
            for op in plan.ops() {
                let inv = decode(op, IS);
                prop_assert_eq!(inv.asid, Some(req.asid), "{:?}", op);
                match inv.target {
                    Target::Asid => {
                        prop_assert!(matches!(plan, FlushPlan::WholeAsid(_)));
                        next = end;
                        continue;
                    }
                    Target::Va { va } => {
                        prop_assert_eq!(va & (req.stride - 1), 0, "{:?}", op);
                        prop_assert_eq!(va, next, "{:?}", op);
                        next += req.stride;
                    }
                    Target::Range { base, pages } => {
                        prop_assert_eq!(base, next, "{:?}", op);
                        prop_assert_eq!((pages * PAGE_SIZE) % req.stride, 0);
                        next += pages * PAGE_SIZE;
                    }
                    other => prop_assert!(false, "{:?} decoded to {:?}", op, other),
                }
                prop_assert_eq!(inv.leaf_only, req.last_level_only);
                prop_assert_eq!(inv.ttl, hint);
                // The arch's own accessors agree with the decoder.
                prop_assert_eq!(inv.ttl, op.ttl_level());
                let pages = pages_covered(op).unwrap();
                prop_assert_eq!(pages.start, next_page_of(&inv));
            }
            prop_assert_eq!(next, end);

            // Through the state machine, if the range is small enough to hold as one obligation.
            if end > first {
                let ob = Obligation {
                    op: OP,
                    space: 7,
                    asid: Some(req.asid),
                    start: first,
                    end: end + req.stride,
                    level: stride_level(req.stride),
                    leaf_size: req.stride,
                    walk_cache_required: false,
                    frame: FRAME,
                    cpus: CpuMask::from_cpus([0, 1]),
                };
                let mut s = Sanitizer::new(2);
                s.index.add(&ob);
                s.groups.entry(ob.asid).or_default().push(Open {
                    ob,
                    open: ob.cpus,
                    born: 0,
                    issued: None,
                });
                s.now = 1;
                issue_plan(&mut s, 1, &plan, IS);
                s.dsb(1);
                if matches!(plan, FlushPlan::WholeAsid(_)) {
                    prop_assert_eq!(s.open_count(), 0);
                } else {
                    let v = s.check_free(FRAME).unwrap_err();
                    let open = (v.obligation.start, v.obligation.end);
                    prop_assert_eq!(open, (end, end + req.stride));
                    prop_assert_eq!(s.open_count(), 1);
                }
            }
        }

        /// Kernel (all-ASID) plans, high-half addresses: sign extension from VA[55].
        #[test]
        fn decoding_kernel_plans(
            start in 0xffff_0000_0000_0000u64..0xffff_ff00_0000_0000,
            pages in 0u64..600,
            last_level_only in any::<bool>(),
        ) {
            let plan = plan_kernel_range_flush(start, start + pages * PAGE_SIZE, last_level_only);
            let mut next = start & !(PAGE_SIZE - 1);
            let spanned = if pages == 0 { 0 } else { pages + u64::from(start % PAGE_SIZE != 0) };
            for op in plan.ops() {
                let inv = decode(op, IS);
                prop_assert_eq!(inv.asid, None);
                match inv.target {
                    Target::All => prop_assert!(spanned >= 512),
                    Target::Va { va } => {
                        prop_assert_eq!(va, next);
                        prop_assert_eq!(inv.leaf_only, last_level_only);
                        next += PAGE_SIZE;
                    }
                    other => prop_assert!(false, "{:?}", other),
                }
            }
        }
    }

    /// The first 4 KiB page number an op names, as the arch's `pages_covered` counts them.
    fn next_page_of(inv: &Invalidation) -> u64 {
        match inv.target {
            Target::Va { va } => (va >> 12) & ((1 << 44) - 1),
            Target::Range { base, .. } => (base >> 12) & ((1 << 37) - 1),
            _ => unreachable!(),
        }
    }

    // ---- The reference model ------------------------------------------------------------------

    /// One TLB entry that a CPU may still hold: a concrete leaf or walk-cache entry. The model
    /// knows nothing of obligations, pieces or decoding: it expands each clear into entries, and
    /// tests each TLBI against each entry with the arch module's own accessors.
    #[derive(Clone, Copy, Debug)]
    struct Entry {
        cpu: usize,
        asid: Option<u16>,
        start: u64,
        end: u64,
        level: u8,
        walk: bool,
        frame: u64,
        op: OpId,
        born: u64,
    }

    #[derive(Default)]
    struct Model {
        stale: Vec<Entry>,
        /// (cpu, op, local, issued at)
        pending: Vec<(usize, TlbiOp, bool, u64)>,
        now: u64,
    }

    impl Model {
        fn clear(&mut self, c: &Clear) {
            self.now += 1;
            for cpu in c.cpus.iter() {
                let entry = |start, size, level, walk, frame| Entry {
                    cpu,
                    asid: c.asid,
                    start,
                    end: start + size,
                    level,
                    walk,
                    frame,
                    op: c.op,
                    born: self.now,
                };
                match c.entry {
                    Cleared::Leaf { va, level, frame } => {
                        let size = level_block_size(level);
                        self.stale
                            .push(entry(va - va % size, size, level, false, frame));
                    }
                    Cleared::Table {
                        va,
                        level,
                        table,
                        leaves,
                    } => {
                        let span = level_block_size(level - 1);
                        let start = va - va % span;
                        self.stale.push(entry(start, span, level - 1, true, table));
                        if leaves {
                            let size = level_block_size(level);
                            for k in 0..512 {
                                self.stale
                                    .push(entry(start + k * size, size, level, false, table));
                            }
                        }
                    }
                }
            }
        }

        fn issue(&mut self, cpu: usize, op: TlbiOp, local: bool) {
            self.now += 1;
            self.pending.push((cpu, op, local, self.now));
        }

        fn dsb(&mut self, cpu: usize, nsh: bool) {
            let pending = core::mem::take(&mut self.pending);
            for (c, op, local, at) in pending {
                if c == cpu && (local || !nsh) {
                    self.apply(op, local.then_some(cpu), at);
                } else {
                    self.pending.push((c, op, local, at));
                }
            }
        }

        fn ack(&mut self, target: usize, op: TlbiOp) {
            self.now += 1;
            self.apply(op, Some(target), self.now);
        }

        /// The Arm ARM's TLBI, entry by entry.
        fn apply(&mut self, op: TlbiOp, only_cpu: Option<usize>, at: u64) {
            self.stale.retain(|e| {
                let reached = e.born < at && only_cpu.is_none_or(|c| c == e.cpu);
                !(reached && model_hits(op, e))
            });
        }

        fn free_unsafe(&self, frame: u64) -> bool {
            self.stale.iter().any(|e| e.frame == frame)
        }

        fn return_unsafe(&self, op: OpId) -> bool {
            self.stale.iter().any(|e| e.op == op)
        }
    }

    fn model_hits(op: TlbiOp, e: &Entry) -> bool {
        match op {
            TlbiOp::Vmalle1 => true,
            TlbiOp::Aside1 { .. } => e.asid.is_some() && op.asid() == e.asid,
            _ => {
                let asid = op.asid().is_none() || op.asid() == e.asid;
                let ttl = op.ttl_level();
                let kind = if e.walk {
                    !op.is_leaf_only() && ttl.is_none()
                } else {
                    ttl.is_none_or(|level| level == e.level)
                };
                // Low-half VAs only: page numbers are VA >> 12.
                let pages = pages_covered(op).unwrap();
                let va = pages.start < e.end >> 12 && e.start >> 12 < pages.end;
                asid && kind && va
            }
        }
    }

    // ---- Random sequences ---------------------------------------------------------------------

    /// CPU numbers spread over the mask's words.
    const CPUS: [usize; 4] = [0, 1, 63, 300];
    const FRAMES: u64 = 4;
    const OPS: u64 = 3;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Bug {
        None,
        SkipTlbi,
        LocalTlbi,
        LeafOnly,
        WrongAsid,
        NoDsb,
        NarrowRange,
        LastSharerNarrow,
    }

    #[derive(Clone, Copy, Debug)]
    enum Act {
        Clear(Clear),
        /// Flush the `which`-th clear so far from `cpu`.
        Flush {
            which: usize,
            cpu: usize,
            feats: TlbFeatures,
            local: bool,
            nsh: bool,
            bug: Bug,
        },
        /// The IPI baseline for the `which`-th clear: the targets in `targets` run it.
        Ipi {
            which: usize,
            targets: u8,
            feats: TlbFeatures,
            bug: Bug,
        },
        Dsb {
            cpu: usize,
            nsh: bool,
        },
        Free(u64),
        Return(OpId),
    }

    fn any_clear() -> impl Strategy<Value = Clear> {
        (
            0u8..7,
            0u64..4,
            0u64..4,
            0u64..4,
            0usize..3,
            0u8..16,
            0..FRAMES,
            0..OPS,
        )
            .prop_map(|(kind, gib, block, page, asid, cpus, frame, op)| {
                let va = gib * L1_BLOCK_SIZE + block * L2_BLOCK_SIZE + page * PAGE_SIZE;
                let frame = FRAME + frame * L2_BLOCK_SIZE;
                let entry = match kind {
                    0..=2 => Cleared::Leaf {
                        va,
                        level: 3 - kind,
                        frame,
                    },
                    _ => Cleared::Table {
                        va,
                        level: 3 - (kind & 1),
                        table: frame,
                        leaves: kind >= 5,
                    },
                };
                Clear {
                    op: OpId(op),
                    space: 1,
                    asid: [None, Some(1), Some(2)][asid],
                    cpus: CpuMask::from_cpus(
                        (0..4).filter(|i| cpus & (1 << i) != 0).map(|i| CPUS[i]),
                    ),
                    entry,
                }
            })
    }

    fn any_bug() -> impl Strategy<Value = Bug> {
        prop_oneof![
            8 => Just(Bug::None),
            1 => Just(Bug::SkipTlbi),
            1 => Just(Bug::LocalTlbi),
            1 => Just(Bug::LeafOnly),
            1 => Just(Bug::WrongAsid),
            1 => Just(Bug::NoDsb),
            1 => Just(Bug::NarrowRange),
            1 => Just(Bug::LastSharerNarrow),
        ]
    }

    fn any_feats() -> impl Strategy<Value = TlbFeatures> {
        (any::<bool>(), any::<bool>()).prop_map(|(range, ttl)| TlbFeatures { range, ttl })
    }

    fn any_act() -> impl Strategy<Value = Act> {
        let cpu = prop::sample::select(CPUS.to_vec());
        prop_oneof![
            4 => any_clear().prop_map(Act::Clear),
            4 => (any::<usize>(), cpu.clone(), any_feats(), any::<bool>(), any::<bool>(), any_bug())
                .prop_map(|(which, cpu, feats, local, nsh, bug)| {
                    Act::Flush { which, cpu, feats, local, nsh, bug }
                }),
            1 => (any::<usize>(), any::<u8>(), any_feats(), any_bug())
                .prop_map(|(which, targets, feats, bug)| Act::Ipi { which, targets, feats, bug }),
            1 => (cpu, any::<bool>()).prop_map(|(cpu, nsh)| Act::Dsb { cpu, nsh }),
            2 => (0..FRAMES).prop_map(|f| Act::Free(FRAME + f * L2_BLOCK_SIZE)),
            1 => (0..OPS).prop_map(|op| Act::Return(OpId(op))),
        ]
    }

    /// The plan issued for `clear`: the planner's, for the request the page-table code makes,
    /// mutated by `bug`.
    fn plan_with_bug(clear: &Clear, feats: TlbFeatures, bug: Bug) -> FlushPlan {
        let mut req = request_for(clear);
        let mut global = clear.asid.is_none();
        match bug {
            Bug::LeafOnly => {
                req.last_level_only = true;
                if let Cleared::Table { level, .. } = clear.entry {
                    req.level_hint = Some(level);
                }
            }
            Bug::WrongAsid => {
                req.asid = if global { 1 } else { req.asid ^ 3 };
                global = false;
            }
            Bug::NarrowRange => req.end = (req.end - PAGE_SIZE).max(req.start),
            Bug::LastSharerNarrow => {
                req.end = req.start + PAGE_SIZE;
                req.stride = PAGE_SIZE;
            }
            Bug::SkipTlbi => req.end = req.start,
            Bug::None | Bug::LocalTlbi | Bug::NoDsb => {}
        }
        plan(&req, global, feats)
    }

    /// What a run exercised.
    #[derive(Default, Debug)]
    struct Tally {
        safe: usize,
        gaps: Vec<Gap>,
    }

    /// Runs `acts` through the sanitizer and the model side by side; every check must agree.
    fn run(acts: &[Act]) -> Result<Tally, TestCaseError> {
        let mut san = Sanitizer::new(MAX_SANITIZER_CPUS);
        let mut model = Model::default();
        let mut clears: Vec<Clear> = Vec::new();
        let mut tally = Tally::default();
        let compare = |san: &Sanitizer, model: &Model, check: Check, tally: &mut Tally| {
            let (got, want) = match check {
                Check::Free(frame) | Check::Reuse(frame) => {
                    (san.check(check), model.free_unsafe(frame))
                }
                Check::Return(op) => (san.check_return(op), model.return_unsafe(op)),
            };
            prop_assert_eq!(got.is_err(), want, "{:?}: sanitizer {:?}", check, got);
            match got {
                Ok(()) => tally.safe += 1,
                Err(v) => tally.gaps.push(v.gap),
            }
            Ok(())
        };
        for act in acts {
            san.assert_index_consistent();
            match *act {
                Act::Clear(c) => {
                    san.record(&c);
                    model.clear(&c);
                    clears.push(c);
                }
                Act::Flush {
                    which,
                    cpu,
                    feats,
                    local,
                    nsh,
                    bug,
                } if !clears.is_empty() => {
                    let clear = clears[which % clears.len()];
                    let plan = plan_with_bug(&clear, feats, bug);
                    // Local when the bug says so, or (sometimes) when the space only ran here.
                    let local = bug == Bug::LocalTlbi
                        || (local && clear.cpus.is_subset(CpuMask::single(cpu)));
                    let scope = if local { Scope::Local(cpu) } else { IS };
                    for op in plan.ops() {
                        san.issue(cpu, decode(op, scope));
                        model.issue(cpu, op, local);
                    }
                    if bug != Bug::NoDsb {
                        // A broadcast op needs DSB ISH; NSH is fine only for a local one.
                        let nsh = nsh && (local || bug != Bug::None);
                        if nsh {
                            san.dsb_local(cpu)
                        } else {
                            san.dsb(cpu)
                        }
                        model.dsb(cpu, nsh);
                    }
                }
                Act::Ipi {
                    which,
                    targets,
                    feats,
                    bug,
                } if !clears.is_empty() => {
                    let clear = clears[which % clears.len()];
                    let plan = plan_with_bug(&clear, feats, bug);
                    // The correct baseline IPIs every CPU that may hold the entries.
                    for (i, &cpu) in CPUS.iter().enumerate() {
                        let targeted = if bug == Bug::None {
                            clear.cpus.contains(cpu)
                        } else {
                            targets & (1 << i) != 0
                        };
                        if targeted {
                            for op in plan.ops() {
                                san.ack_ipi(cpu, decode(op, Scope::Local(cpu)));
                                model.ack(cpu, op);
                            }
                        }
                    }
                }
                Act::Flush { .. } | Act::Ipi { .. } => {}
                Act::Dsb { cpu, nsh } => {
                    if nsh {
                        san.dsb_local(cpu)
                    } else {
                        san.dsb(cpu)
                    }
                    model.dsb(cpu, nsh);
                }
                Act::Free(frame) => compare(&san, &model, Check::Free(frame), &mut tally)?,
                Act::Return(op) => compare(&san, &model, Check::Return(op), &mut tally)?,
            }
        }
        for f in 0..FRAMES {
            compare(
                &san,
                &model,
                Check::Free(FRAME + f * L2_BLOCK_SIZE),
                &mut tally,
            )?;
        }
        for op in 0..OPS {
            compare(&san, &model, Check::Return(OpId(op)), &mut tally)?;
        }
        prop_assert_eq!(san.open_count() == 0, model.stale.is_empty());
        Ok(tally)
    }

    fn any_sequence() -> impl Strategy<Value = Vec<Act>> {
        prop::collection::vec(any_act(), 1..32)
    }

    /// Cases of the model property.
    const MODEL_CASES: u32 = 2048;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(MODEL_CASES))]

        /// Random clears, flushes (the planner's, sometimes with one of the planted bugs),
        /// IPI-baseline acknowledgements, DSBs and checks on several CPUs: the sanitizer reports a
        /// violation exactly when the model says a stale entry naming the frame (or made by the
        /// operation) may survive on some CPU.
        #[test]
        fn sanitizer_agrees_with_the_model(acts in any_sequence()) {
            run(&acts)?;
        }
    }

    /// The property above is not vacuous: over a fixed sample, both verdicts occur, and every
    /// kind of gap is produced (so every planted bug is seen and named).
    #[test]
    fn the_model_property_sees_every_outcome() {
        let mut runner = TestRunner::deterministic();
        let strategy = any_sequence();
        let mut total = Tally::default();
        for _ in 0..400 {
            let acts = strategy.new_tree(&mut runner).unwrap().current();
            let tally = run(&acts).unwrap();
            total.safe += tally.safe;
            total.gaps.extend(tally.gaps);
        }
        assert!(total.safe > 100, "{total:?}");
        for gap in [
            Gap::NothingIssued,
            Gap::WrongAsid,
            Gap::WalkCacheKept,
            Gap::WrongLevel,
            Gap::RangeMissed,
            Gap::CpusMissed,
            Gap::NotCompleted,
        ] {
            let n = total.gaps.iter().filter(|&&g| g == gap).count();
            assert!(n > 0, "{gap:?} never seen");
        }
    }
}
