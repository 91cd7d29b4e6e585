//! What the page-table code tells the sanitizer: a valid entry cleared ([`Clear`]) or rewritten
//! in place ([`Change`]), and which entries each leaves in TLBs ([`Cleared::entries`]).

use super::mask::CpuMask;
use super::rules::{Entries, Tag};
use broadside_arch::PhysAddr;
use broadside_arch::pte::{Attributes, Descriptor, DescriptorKind, PAGE_SIZE, level_block_size};

/// The operation (one unmap, protect, migration or unshare call) an obligation belongs to: it
/// must not return to its caller with one of its obligations open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub u64);

/// A space registered with the sanitizer ([`super::Sanitizer::register_space`]): it watches
/// which CPUs load it into TTBR0, under which ASID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpaceSlot(pub(super) u32);

/// What an unhooked table still held when its parent's entry was cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holds {
    /// Nothing valid: every entry in it was cleared (and recorded) first.
    Nothing,
    /// Valid leaves of its level only (the last sharer's level-2 table of blocks, an unshare).
    Leaves,
    /// Valid table descriptors (and maybe leaves): every level below may be cached, walk
    /// caches included, anywhere in its span.
    Tables,
}

/// Which valid entry was cleared.
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
        /// nG was clear: TLBs hold it untagged, whatever ASID they run.
        global: bool,
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
        /// What it still held, read from the table when it was unhooked.
        holds: Holds,
    },
}

impl Cleared {
    /// A cleared leaf, described from the descriptor that was in the entry.
    pub fn leaf(va: u64, level: u8, old: Descriptor) -> Option<Self> {
        let pa = old.leaf_address(level)?;
        Some(Cleared::Leaf {
            va,
            level,
            frame: pa.as_u64(),
            global: !old.not_global(),
        })
    }

    /// The frame whose reuse must wait for this clear's invalidation: the leaf's, or the table
    /// page.
    pub fn frame(&self) -> u64 {
        match *self {
            Cleared::Leaf { frame, .. } => frame,
            Cleared::Table { table, .. } => table,
        }
    }

    /// How many obligations the clear makes: one for a leaf or an empty table, two for a table
    /// that still held entries.
    pub fn obligation_count(&self) -> usize {
        match self {
            Cleared::Table {
                holds: Holds::Leaves | Holds::Tables,
                ..
            } => 2,
            _ => 1,
        }
    }

    /// Whether the entries are global (nG clear).
    pub fn is_global(&self) -> bool {
        matches!(self, Cleared::Leaf { global: true, .. })
    }

    /// The entries this clear may leave in a TLB that cached them under `tag`, one or two:
    /// - a leaf: its one entry, at its level;
    /// - an unhooked table: the walk-cache entry of its parent's descriptor, which any
    ///   non-leaf, unhinted invalidation of one address in the span hits (Linux's
    ///   `pte_free_tlb` adds one page of it to the gather);
    /// - and if the table still held leaves: every leaf of the span at the table's level,
    ///   leaf-only invalidation allowed (Linux's last sharer "zaps the table's huge entries one
    ///   by one, so every one is tracked for the flush");
    /// - or if it still held tables: entries of every level below, walk caches included, at
    ///   every page of the span (no leaf-only or hinted op, no stride, can be trusted to reach
    ///   them).
    ///
    /// # Panics
    /// If a level is outside 1..=3.
    pub fn entries(&self, tag: Tag) -> [Option<Entries>; 2] {
        let e = |start: u64, end: u64, level, leaf_size, walk| Entries {
            tag,
            start,
            end,
            level,
            leaf_size,
            walk_cache_required: walk,
        };
        match *self {
            Cleared::Leaf { va, level, .. } => {
                assert!(matches!(level, 1..=3), "leaf level {level}");
                let size = level_block_size(level);
                let start = va & !(size - 1);
                [Some(e(start, start + size, level, size, false)), None]
            }
            Cleared::Table {
                va, level, holds, ..
            } => {
                assert!(matches!(level, 1..=3), "table level {level}");
                let span = level_block_size(level - 1);
                let start = va & !(span - 1);
                let walk = e(start, start + span, level - 1, span, true);
                let below = match holds {
                    Holds::Nothing => None,
                    Holds::Leaves => Some(e(
                        start,
                        start + span,
                        level,
                        level_block_size(level),
                        false,
                    )),
                    Holds::Tables => Some(e(start, start + span, 3, PAGE_SIZE, true)),
                };
                [Some(walk), below]
            }
        }
    }
}

/// Whose TLBs may hold a space's entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owed {
    /// Derived by the sanitizer from the TTBR0 loads it observed: every CPU that loaded the
    /// space since its last full flush, under the ASID it loaded.
    Observed(SpaceSlot),
    /// The kernel's own record, for a space the sanitizer could not register (its registry was
    /// full: it coarsened, and said so): the space's ASID and the CPUs it ran on.
    Recorded {
        /// The space's ASID, `None` if it never had one.
        asid: Option<u16>,
        /// The CPUs it ran on.
        cpus: CpuMask,
    },
}

/// One clear, as the page-table code describes it to the sanitizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clear {
    /// The operation doing it.
    pub op: OpId,
    /// The address space's id, for the report only.
    pub space: u64,
    /// Who may hold the entries.
    pub owed: Owed,
    /// The entry.
    pub entry: Cleared,
}

/// Consecutive leaves of one level that one operation cleared in one space, in address order:
/// `frames[k]` was mapped at the `k`-th leaf from `va` (an unmap of a range reports its leaves
/// this way, once, before its flush).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafRun<'a> {
    /// The operation doing it.
    pub op: OpId,
    /// The address space's id, for the report only.
    pub space: u64,
    /// Who may hold the entries.
    pub owed: Owed,
    /// Any address inside the first leaf.
    pub va: u64,
    /// The leaves' level.
    pub level: u8,
    /// nG was clear in the leaves (all of them, or none).
    pub global: bool,
    /// The frames the leaves mapped.
    pub frames: &'a [u64],
}

/// A valid leaf rewritten with another valid leaf, in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    /// The operation doing it.
    pub op: OpId,
    /// The address space's id, for the report only.
    pub space: u64,
    /// Who may hold the old entry.
    pub owed: Owed,
    /// The leaf's address.
    pub va: u64,
    /// The leaf's level.
    pub level: u8,
    /// The descriptor before.
    pub old: Descriptor,
    /// The descriptor after.
    pub new: Descriptor,
}

/// What a valid-to-valid change of a leaf needs (Arm ARM D8.16.1, "Using break-before-make
/// when updating translation table entries").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// Nothing a TLB holds can be more permissive than the new entry: a stale copy can only
    /// fault, which the fault handler fixes locally. No invalidation is owed.
    Upgrade,
    /// Some access the old entry allowed is gone: the old entry must be invalidated everywhere
    /// it may be cached, as for a clear.
    Downgrade,
    /// The output address, memory type, shareability, nG or the descriptor's kind changed: the
    /// entry must go through invalid, with a completed invalidation, before the new one is
    /// written. What changed is named.
    NeedsBreakBeforeMake(&'static str),
}

impl Change {
    /// Classifies the change. A rewrite of an invalid entry, or to an invalid one, is not a
    /// change (a map, or a [`Clear`]): it classifies as needing break-before-make, "not a
    /// valid-to-valid change", so a caller that misuses it is told.
    pub fn kind(&self) -> ChangeKind {
        // The common case first, on raw bits: the same leaf with only AP, UXN or PXN changed
        // (a permission change), whose direction is then all that matters.
        const PERMISSION_BITS: u64 = (0b11 << 6) | (1 << 53) | (1 << 54);
        let (old, new) = (self.old.raw(), self.new.raw());
        if self.old.leaf_address(self.level).is_some() && (old ^ new) & !PERMISSION_BITS == 0 {
            return if Access::of(Attributes::from_bits(old))
                .is_subset(Access::of(Attributes::from_bits(new)))
            {
                ChangeKind::Upgrade
            } else {
                ChangeKind::Downgrade
            };
        }
        let leaf = |d: Descriptor| match d.kind(self.level) {
            DescriptorKind::Page { pa, attrs } => Some((pa, attrs, false)),
            DescriptorKind::Block { pa, attrs } => Some((pa, attrs, true)),
            _ => None,
        };
        let (Some((old_pa, old, old_block)), Some((new_pa, new, new_block))) =
            (leaf(self.old), leaf(self.new))
        else {
            return ChangeKind::NeedsBreakBeforeMake("not a valid-to-valid change of a leaf");
        };
        let what = if old_pa != new_pa {
            Some("output address")
        } else if old_block != new_block {
            Some("descriptor kind")
        } else if old.mair_index != new.mair_index {
            Some("memory type")
        } else if old.shareability != new.shareability {
            Some("shareability")
        } else if old.not_global != new.not_global {
            Some("nG")
        } else {
            None
        };
        if let Some(what) = what {
            return ChangeKind::NeedsBreakBeforeMake(what);
        }
        if Access::of(old).is_subset(Access::of(new)) {
            ChangeKind::Upgrade
        } else {
            ChangeKind::Downgrade
        }
    }

    /// The clear this change amounts to for the old entry, when it is a downgrade.
    pub fn as_clear(&self) -> Option<Clear> {
        let entry = Cleared::leaf(self.va, self.level, self.old)?;
        Some(Clear {
            op: self.op,
            space: self.space,
            owed: self.owed,
            entry,
        })
    }

    /// The frame the old entry mapped.
    pub fn old_frame(&self) -> PhysAddr {
        self.old.output_address()
    }
}

/// The accesses a leaf allows, as a bit set; an entry whose Access flag is clear allows none
/// (it faults, and an entry that faults is never cached: Arm ARM, rule IPNQBP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Access(u8);

impl Access {
    const EL1_READ: u8 = 1 << 0;
    const EL1_WRITE: u8 = 1 << 1;
    const EL0_READ: u8 = 1 << 2;
    const EL0_WRITE: u8 = 1 << 3;
    const EL1_EXEC: u8 = 1 << 4;
    const EL0_EXEC: u8 = 1 << 5;

    fn of(a: Attributes) -> Self {
        use broadside_arch::pte::AccessPermission as Ap;
        if !a.accessed {
            return Self(0);
        }
        let mut bits = Self::EL1_READ;
        match a.access {
            Ap::El1ReadWrite => bits |= Self::EL1_WRITE,
            Ap::El1El0ReadWrite => {
                bits |= Self::EL1_WRITE | Self::EL0_READ | Self::EL0_WRITE;
            }
            Ap::El1ReadOnly => {}
            Ap::El1El0ReadOnly => bits |= Self::EL0_READ,
        }
        if !a.privileged_execute_never {
            bits |= Self::EL1_EXEC;
        }
        if !a.user_execute_never {
            bits |= Self::EL0_EXEC;
        }
        Self(bits)
    }

    fn is_subset(self, other: Self) -> bool {
        self.0 & !other.0 == 0
    }
}
