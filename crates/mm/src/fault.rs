//! Writes to user pages and the permission faults they take: the part of Linux's
//! `do_page_fault` that a permission upgrade without a broadcast relies on.
//!
//! `protect` that only adds permissions issues no TLBI (see `mprotect`): another CPU may still
//! hold the old, more restrictive entry, and a write through it takes a permission fault even
//! though the tables allow the write. Such a fault is *spurious*: the handler re-reads the
//! entry, and if it allows the access, drops this CPU's stale copy of that one entry
//! (`tlb::flush_tlb_fix_spurious_fault`: `TLBI VALE1` + `DSB NSH`, sized to the leaf) and
//! retries. Only a fault the entry really forbids is returned to the caller (the fix-up
//! table's recovery). Linux: `flush_tlb_fix_spurious_fault`, and "arm64, tlbflush: don't TLBI
//! broadcast if page reused in write fault".
//!
//! QEMU never takes such a fault (its TLB re-walks the tables on any permission miss), so with
//! the audit on, the sanitizer's model of stale restrictive entries
//! (`sanitizer::permissions`) says where hardware may take one, and the write takes it here
//! instead of executing: the same handler runs, and only its local TLBI makes the model (and
//! hardware) forget the entry. A handler that retries without it (`bug=spurious-no-local-tlbi`)
//! faults again and again on one VA; after [`FAULT_LOOP_LIMIT`] faults with no progress this
//! is reported as a fault loop (`fault_loop_detected`), not left to the watchdog.
//!
//! Sits on `aspace` (the entry), `tlb` (the local invalidation) and `audit` (the model).

use crate::aspace::AddressSpace;
use crate::audit;
use broadside_arch::VirtAddr;
use broadside_arch::aarch64::exception::{Fault, probe_write_user};
use broadside_arch::pte::DescriptorKind;
use broadside_base::stats::{self, Counter};

/// Spurious faults in a row on one VA that make a fault loop.
pub const FAULT_LOOP_LIMIT: u32 = 16;

/// Why a write to a user page did not happen.
#[derive(Clone, Copy, Debug)]
pub enum WriteFault {
    /// A fault the entry really forbids (or a translation fault): recovered, nothing written.
    Fault(Fault),
    /// The write faulted [`FAULT_LOOP_LIMIT`] times on an entry that allows it (reported).
    Loop,
}

/// Writes `val` to the user word at `va` of `space`, which is loaded on this CPU, fixing
/// spurious permission faults on the way (see the module docs).
pub fn write_user(space: &AddressSpace, va: VirtAddr, val: u64) -> Result<(), WriteFault> {
    let mut spurious = 0;
    loop {
        // Where hardware may still hold a restrictive entry, the write faults on it. The
        // entry is read only then, or after a real permission fault: not before every write.
        let modelled = space
            .asid_number()
            .is_some_and(|asid| audit::may_fault_spuriously(asid, va.as_u64(), true));
        let spurious_at = if modelled {
            writable_leaf(space, va)
        } else {
            None
        };
        let level = match spurious_at {
            Some(level) => level,
            None => match probe_write_user(va, val) {
                Ok(()) => return Ok(()),
                Err(f) if f.esr.is_permission_fault() => match writable_leaf(space, va) {
                    Some(level) => level,
                    None => return Err(WriteFault::Fault(f)),
                },
                Err(f) => return Err(WriteFault::Fault(f)),
            },
        };
        spurious += 1;
        if spurious > FAULT_LOOP_LIMIT {
            report_fault_loop(space, va, spurious - 1);
            return Err(WriteFault::Loop);
        }
        if crate::tlb::flush_tlb_fix_spurious_fault(space, va, level) {
            stats::count(Counter::SpuriousFaultsFixed);
        }
    }
}

/// The level of the leaf mapping `va` in `space` if it allows an EL1 write now.
fn writable_leaf(space: &AddressSpace, va: VirtAddr) -> Option<u8> {
    let (d, level) = space.lookup(va)?;
    let attrs = match d.kind(level) {
        DescriptorKind::Page { attrs, .. } | DescriptorKind::Block { attrs, .. } => attrs,
        _ => return None,
    };
    (attrs.accessed && attrs.access.el1_writable()).then_some(level)
}

/// Fault loops printed; later ones are counted only.
const MAX_REPORTED: u64 = 4;

#[inline(never)]
fn report_fault_loop(space: &AddressSpace, va: VirtAddr, faults: u32) {
    stats::detected(Counter::FaultLoopDetected);
    if stats::read(Counter::FaultLoopDetected) > MAX_REPORTED {
        return;
    }
    broadside_platform::kprintln!(
        "fault loop: cpu {} took {faults} permission faults in a row on va {va:#x} of space {}, \
         whose entry allows the write: the stale entry was never invalidated",
        broadside_base::cpu_id(),
        space.id
    );
}
