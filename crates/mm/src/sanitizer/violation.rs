//! What the sanitizer reports: the checks it makes ([`Check`]), and each kind of violation
//! ([`Violation`]) with a one-line `Display` for the kernel's report.

use super::clear::OpId;
use super::mask::CpuMask;
use super::rules::{Entries, Invalidation, Scope, Tag};
use core::fmt;

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
    /// Returning from operation `op` over `[start, end)` of space `space`: no obligation of
    /// *any* operation in that range of that space may be open (another CPU's deferred batch
    /// included), since the caller may take the range for invalidated everywhere.
    Range {
        /// The operation returning.
        op: OpId,
        /// The address space's id.
        space: u64,
        /// First VA.
        start: u64,
        /// End VA (exclusive).
        end: u64,
    },
    /// CPU `cpu` loading `asid` into TTBR0, while it still held an entry that an earlier check
    /// let go on the promise of its rollover flush.
    Load {
        /// The CPU.
        cpu: usize,
        /// The ASID it loaded.
        asid: u16,
    },
}

/// An open obligation, as a violation names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Obligation {
    /// The operation that made it.
    pub op: OpId,
    /// The address space's id.
    pub space: u64,
    /// The entries still open: their range is the part not yet invalidated everywhere.
    pub entries: Entries,
    /// The frame whose reuse must wait.
    pub frame: u64,
}

/// The last invalidation issued after an obligation was recorded that named some of its
/// addresses (any ASID, any kind): what the violation message reports as "issued".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Issued {
    /// The decoded op.
    pub inv: Invalidation,
    /// The CPU that issued it.
    pub cpu: usize,
    /// Whether a `DSB` completed it.
    pub completed: bool,
    /// Whether a store barrier had made the clear visible to table walkers before it was issued.
    pub ordered: bool,
    /// Completed, but an erratum's workaround had not run after the completion yet.
    pub awaiting: Option<Workaround>,
}

/// An erratum workaround a completed broadcast TLBI waits for before it counts (see
/// `broadside_arch::errata`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workaround {
    /// Erratum 4118414: `TLBI VALE1IS, XZR` and `DSB ISH` on the issuing CPU after the
    /// completing `DSB ISH`.
    Repeat,
    /// Erratum 4193714: a `DSB ISH` (the IPI's) on each CPU that ran the space at the completion.
    DvmSync,
}

/// Why an obligation is still open, judged against the last op issued for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gap {
    /// No TLBI named any of its addresses.
    NothingIssued,
    /// The op named another ASID (or was `ASIDE1` for a global entry).
    WrongAsid,
    /// Leaf-only or TTL-hinted where a walk-cache entry had to go.
    WalkCacheKept,
    /// The TTL hint named another level.
    WrongLevel,
    /// The ops stopped short of this part of the range.
    RangeMissed,
    /// Covered, but no `DSB` (of the right domain) on the issuing CPU completed it.
    NotCompleted,
    /// Issued before a store barrier (`DSB ISHST` or stronger) on the clearing CPU made the
    /// clear visible to table walkers: a walk after the TLBI may cache the old entry again.
    NotOrdered,
    /// The op did not reach these CPUs (local, or an IPI target did not run it).
    CpusMissed,
    /// Completed, but erratum 4118414 is in force and no `TLBI VALE1IS, XZR; DSB ISH` on the
    /// issuing CPU followed the completing `DSB ISH`: the completion may have come before the
    /// writes through the old entry were observed.
    RepeatMissing,
    /// Completed, but erratum 4193714 is in force and these CPUs, which ran the space at the
    /// completion, executed no `DSB ISH` since (the IPI that makes them never came, or was not
    /// waited for): their accesses through the old entry may still be outstanding.
    DvmSyncMissing,
    /// A CPU that owed a rollover flush loaded an ASID it held the entry under (the flush it
    /// promised never happened).
    FlushSkipped,
}

/// A violation the sanitizer found. Only a failing check allocates (they are returned boxed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Violation {
    /// An obligation still open at a check.
    FlushGap {
        /// The check that failed.
        check: Check,
        /// The open part.
        obligation: Obligation,
        /// The CPUs that may still hold and use it.
        open_cpus: CpuMask,
        /// The last op issued for it, if any.
        issued: Option<Issued>,
        /// Why that op did not discharge it.
        gap: Gap,
    },
    /// A CPU loaded an ASID other than the one it kept across a rollover without completing the
    /// local full flush the rollover owed (Linux's `flush_context` marks every CPU; its next
    /// switch must flush): entries of the old generation's ASIDs are still in its TLB.
    RolloverFlushSkipped {
        /// The CPU.
        cpu: usize,
        /// The ASID it loaded.
        asid: u16,
        /// The ASID the rollover let it keep, if any.
        kept: Option<u16>,
    },
    /// A CPU loaded an ASID for one space while, with no full flush or ASID flush in between,
    /// it had run another space under the same ASID: that space's entries are now usable as
    /// this one's.
    AsidReused {
        /// The CPU.
        cpu: usize,
        /// The ASID.
        asid: u16,
        /// The space loaded now.
        space: u64,
        /// The space loaded under the same ASID before.
        previous: u64,
    },
    /// A valid leaf was rewritten in place where the architecture requires break-before-make.
    BreakBeforeMake {
        /// The address space's id.
        space: u64,
        /// The leaf's address.
        va: u64,
        /// The leaf's level.
        level: u8,
        /// What changed.
        what: &'static str,
        /// The descriptor before.
        old: u64,
        /// The descriptor after.
        new: u64,
    },
}

impl Violation {
    /// The open obligation of a flush gap.
    pub fn obligation(&self) -> Option<&Obligation> {
        match self {
            Violation::FlushGap { obligation, .. } => Some(obligation),
            _ => None,
        }
    }

    /// The gap of a flush gap.
    pub fn gap(&self) -> Option<Gap> {
        match self {
            Violation::FlushGap { gap, .. } => Some(*gap),
            _ => None,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Violation::FlushGap {
                check,
                obligation: ob,
                open_cpus,
                issued,
                gap,
            } => {
                match check {
                    Check::Free(frame) => write!(f, "flush gap: free of {frame:#x}")?,
                    Check::Reuse(frame) => write!(f, "flush gap: reuse of {frame:#x}")?,
                    Check::Return(op) | Check::Range { op, .. } => {
                        write!(f, "flush gap: op {} returned", op.0)?
                    }
                    Check::Load { cpu, asid } => {
                        write!(f, "flush gap: cpu {cpu} loaded asid {asid}")?
                    }
                }
                write!(f, ": space {}", ob.space)?;
                match ob.entries.tag {
                    Tag::Asid(asid) => write!(f, " asid {asid}")?,
                    Tag::Global => write!(f, " global")?,
                    Tag::AnyAsid => write!(f, " untracked-asid")?,
                }
                let e = &ob.entries;
                write!(
                    f,
                    " va {:#x}..{:#x} level {} needs {} on cpus {open_cpus}; issued: ",
                    e.start,
                    e.end,
                    e.level,
                    if e.walk_cache_required {
                        "walk-cache invalidation"
                    } else {
                        "leaf invalidation"
                    },
                )?;
                match issued {
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
                        if !i.ordered {
                            f.write_str(" (before the store barrier)")?;
                        }
                        if !i.completed {
                            f.write_str(" (no dsb)")?;
                        }
                        match i.awaiting {
                            Some(Workaround::Repeat) => {
                                f.write_str(" (erratum 4118414: no repeat after its dsb)")?
                            }
                            Some(Workaround::DvmSync) => {
                                f.write_str(" (erratum 4193714: cpus not synced after its dsb)")?
                            }
                            None => {}
                        }
                    }
                }
                write!(f, " [{gap:?}]")
            }
            Violation::RolloverFlushSkipped { cpu, asid, kept } => {
                write!(
                    f,
                    "asid rollover: cpu {cpu} loaded asid {asid} without the local flush the \
                     rollover owed"
                )?;
                match kept {
                    Some(k) => write!(f, " (it kept asid {k} only)"),
                    None => f.write_str(" (it kept none)"),
                }
            }
            Violation::AsidReused {
                cpu,
                asid,
                space,
                previous,
            } => write!(
                f,
                "asid reuse: cpu {cpu} loaded asid {asid} for space {space} while still holding \
                 space {previous}'s entries under it"
            ),
            Violation::BreakBeforeMake {
                space,
                va,
                level,
                what,
                old,
                new,
            } => write!(
                f,
                "break-before-make: space {space} va {va:#x} level {level}: {what} changed in \
                 place ({old:#x} -> {new:#x}) with no invalid entry and invalidation between"
            ),
        }
    }
}
