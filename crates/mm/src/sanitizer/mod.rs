//! The flush-coverage sanitizer's portable core: it is told every cleared or weakened
//! page-table entry, every TLBI and barrier, every TTBR0 load and every ASID rollover, and
//! reports a typed [`Violation`] when a frame would be reused, or an operation would return,
//! while some CPU may still use a stale entry — or when a TTBR0 load, or an entry rewritten in
//! place, breaks the rules that keep ASIDs and translations apart.
//!
//! It trusts the architecture's definition of each TLBI (Arm ARM D8.13, "TLB maintenance") and
//! checks what was *issued* against what was *changed*: a flush that is too narrow, names the
//! wrong ASID, is leaf-only where a table went away, is local where the space ran elsewhere, is
//! not completed by a `DSB`, or was issued before a store barrier made the clear visible to
//! table walkers. QEMU shows none of these (it models no walk caches, completes an IS TLBI by
//! stopping every vCPU, and drops a vCPU's TLB when its ASID changes), so this is the only
//! check of them.
//!
//! Nothing is credited on a promise: which CPUs may hold an entry comes from the TTBR0 loads
//! the sanitizer saw (never the kernel's own record), a rollover discharges nothing until each
//! CPU's local flush is seen, and every check a deferral relied on is made again when that CPU
//! next loads TTBR0.
//!
//! The modules, each one concern:
//! - [`mask`]: [`CpuMask`], a set of CPUs.
//! - [`rules`]: decoding a TLBI and what it hits (ASID, kind and level, VA, scope).
//! - [`clear`]: what the page-table code reports — a [`Clear`] or a [`Change`] — and the
//!   entries each leaves behind.
//! - [`violation`]: the checks and what they report.
//! - [`permissions`]: stale restrictive entries after an upgrade that issued no TLBI, where
//!   hardware may take a spurious permission fault (a model, not an obligation).
//! - [`state`]: the [`Sanitizer`] itself, its state and its rules of ordering and deferral.
//!
//! Sits on nothing in this crate: portable, unit- and property-tested on the host (`audit` is
//! its kernel glue).

pub mod clear;
pub mod mask;
pub mod permissions;
pub mod rules;
pub mod state;
pub mod violation;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;

pub use clear::{Change, ChangeKind, Clear, Cleared, Holds, LeafRun, OpId, Owed, SpaceSlot};
pub use mask::{CpuMask, MAX_SANITIZER_CPUS};
pub use permissions::{OldAccess, StalePermissions};
pub use rules::{Entries, Invalidation, Scope, Tag, Target, decode, is_erratum_repeat};
pub use state::{Barrier, Config, MAX_AWAITING, MAX_PENDING, Sanitizer, SizeError, Stats};
pub use violation::{Check, Gap, Issued, Obligation, Violation, Workaround};
