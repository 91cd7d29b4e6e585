//! The architecture's rules for what one TLBI invalidates (Arm ARM D8.13, "TLB maintenance"),
//! written once, as pure functions of a decoded instruction and the entries it may hit.
//!
//! - **Decode**: an op and its operand become an [`Invalidation`], independently of the encoder
//!   in `arch::tlbi` (so cross-checking the two means something): [`decode`].
//! - **ASID**: a by-ASID op hits entries of its ASID, and the by-VA forms with an ASID also hit
//!   *global* entries for their addresses; `ASIDE1` keeps global entries; the all-ASID forms and
//!   `VMALLE1` hit everything: [`asid_matches`].
//! - **Kind/level**: leaf-only forms and TTL-hinted ops never hit a walk-cache entry; a TTL hint
//!   hits only leaves of that level: [`kind_matches`].
//! - **VA**: an op hits every entry translating one of the addresses it names, whatever the
//!   entry's size: [`hit_range`].
//! - **Scope**: an IS op reaches every CPU, a local one only the issuing CPU: [`reach`].
//!
//! [`covers`] combines them for one instruction and a whole set of entries.

use super::mask::CpuMask;
use broadside_arch::pte::PAGE_SIZE;
use broadside_arch::tlbi::TlbiOp;

/// How TLB entries for a cleared descriptor are tagged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tag {
    /// Non-global (nG = 1): tagged with the ASID the CPU ran when it cached them.
    Asid(u16),
    /// Global (nG = 0): no ASID; usable whatever ASID a CPU runs.
    Global,
    /// Tagged with an ASID the sanitizer did not keep track of (a space cached by more CPUs under
    /// more ASIDs than it records): only ops that hit every ASID reach them.
    AnyAsid,
}

impl Tag {
    /// The ASID, if the entries carry a known one.
    pub const fn asid(self) -> Option<u16> {
        match self {
            Tag::Asid(a) => Some(a),
            Tag::Global | Tag::AnyAsid => None,
        }
    }
}

/// A set of TLB entries that one clear left behind: those of `tag` at `level` translating each
/// `leaf_size` piece of `[start, end)` (one piece when `walk_cache_required`: the walk-cache
/// entry of a cleared table descriptor).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entries {
    /// How they are tagged.
    pub tag: Tag,
    /// First VA (aligned to `leaf_size`).
    pub start: u64,
    /// End VA (exclusive; `start` plus a multiple of `leaf_size`).
    pub end: u64,
    /// The level of the entries: the leaves', or for a walk-cache entry the level of the cleared
    /// table descriptor.
    pub level: u8,
    /// Size of each entry.
    pub leaf_size: u64,
    /// Walk-cache entries: leaf-only and TTL-hinted invalidations do not reach them (rule 5).
    pub walk_cache_required: bool,
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
    /// Every non-global entry of the ASID (`ASIDE1`), walk caches included.
    Asid,
    /// Every stage-1 EL1&0 entry (`VMALLE1`): the ASID rollover's local flush too.
    All,
    /// An operand with a reserved or other-granule TG or TTL: the architecture requires such
    /// an op to invalidate nothing in particular, so it hits nothing here.
    Malformed,
}

/// Whether `inv` is the kernel's repeat for erratum 4118414: `TLBI VALE1IS, XZR` (VA 0, ASID
/// 0, leaf only, broadcast). It invalidates nothing any space uses (ASID 0 is the empty
/// table's, VA 0 is never mapped), so it owes no repeat of its own. Like any broadcast TLBI
/// issued after a completion and completed itself by a `DSB ISH` on the same CPU, it makes
/// that earlier completion count on an affected CPU.
pub fn is_erratum_repeat(inv: &Invalidation) -> bool {
    inv.op == TlbiOp::Vale1 { operand: 0 } && inv.scope == Scope::InnerShareable
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

/// Rule "ASID" (Arm ARM D8.13, the TLBI descriptions): `VMALLE1` and the all-ASID forms
/// (`VAAE1`, `VAALE1`) hit every entry; `ASIDE1` hits the non-global entries of its ASID only;
/// the by-VA and by-range forms with an ASID hit the non-global entries of that ASID *and*
/// every global entry for their addresses. Entries of an untracked ASID ([`Tag::AnyAsid`]) are
/// hit only by the forms that hit every ASID.
pub fn asid_matches(inv: &Invalidation, tag: Tag) -> bool {
    match (inv.target, inv.asid, tag) {
        (Target::All, _, _) | (_, None, _) => true,
        (Target::Asid, Some(a), Tag::Asid(t)) => a == t,
        (Target::Asid, Some(_), _) => false,
        (_, Some(a), Tag::Asid(t)) => a == t,
        (_, Some(_), Tag::Global) => true,
        (_, Some(_), Tag::AnyAsid) => false,
    }
}

/// Rule "kind/level": a walk-cache entry needs an op that is neither leaf-only (Linux
/// c2ff4764e03e; rule 5) nor TTL-hinted (a hint promises where the *leaf* is; the Arm ARM
/// then only requires entries of that level to go). A leaf is hit by any form whose TTL hint,
/// if any, names its level.
pub fn kind_matches(inv: &Invalidation, e: &Entries) -> bool {
    if e.walk_cache_required {
        !inv.leaf_only && inv.ttl.is_none()
    } else {
        inv.ttl.is_none_or(|level| level == e.level)
    }
}

/// Rule "VA": the part of `e`'s range, in whole `leaf_size` pieces, holding entries that
/// translate an address `inv` names (Arm ARM D8.13.5: a by-VA op invalidates any entry that
/// translates its address, so a 2 MiB entry is hit by any page inside it; a range op by any
/// page of the range). `None` if it names none of them. ASID and kind are not considered.
pub fn hit_range(inv: &Invalidation, e: &Entries) -> Option<(u64, u64)> {
    let (first, last) = match inv.target {
        Target::Asid | Target::All => return Some((e.start, e.end)),
        Target::Malformed => return None,
        Target::Va { va } => (va, va | (PAGE_SIZE - 1)),
        Target::Range { base, pages } => (base, base.saturating_add(pages * PAGE_SIZE - 1)),
    };
    let lo = first.max(e.start);
    let hi = last.min(e.end - 1);
    if lo > hi {
        return None;
    }
    let align = !(e.leaf_size - 1);
    Some((lo & align, (hi & align) + e.leaf_size))
}

/// Whether `inv` names any address of `e` (any ASID, any kind): what the violation message
/// reports as the last op "issued" for it.
pub fn names(inv: &Invalidation, e: &Entries) -> bool {
    match inv.target {
        // An ASID flush is "for" the entries of its ASID, and for global ones (which it misses).
        Target::Asid => inv.asid == e.tag.asid() || e.tag == Tag::Global,
        _ => hit_range(inv, e).is_some(),
    }
}

/// Rule "scope": which of `cpus` an op with `scope` reaches: all of them when broadcast, only
/// the issuing CPU when local.
pub fn reach(scope: Scope, cpus: CpuMask) -> CpuMask {
    match scope {
        Scope::InnerShareable => cpus,
        Scope::Local(cpu) => cpus.and(CpuMask::single(cpu)),
    }
}

/// Whether `inv` alone, once completed (and ordered after the clear), invalidates every entry
/// of `e` on every CPU of `cpus`: ASID, kind and VA rules, the whole range, and a scope reaching
/// all of `cpus`.
pub fn covers(inv: &Invalidation, e: &Entries, cpus: CpuMask) -> bool {
    asid_matches(inv, e.tag)
        && kind_matches(inv, e)
        && hit_range(inv, e) == Some((e.start, e.end))
        && reach(inv.scope, cpus) == cpus
}
