//! TLB maintenance: the only module that issues TLBI instructions and the barriers that order
//! and complete them (Arm ARM D8.13, "TLB maintenance"; Linux arch/arm64/include/asm/tlbflush.h).
//!
//! The sequence for a change other CPUs may have cached:
//! `DSB ISHST` (the page-table write reaches the inner-shareable domain before any walker can be
//! told to re-walk) → `TLBI ...IS` (broadcast) → `DSB ISH` (every CPU has completed it) → `ISB`
//! only when this CPU's own kernel mappings changed. A `DSB` completes only the TLBIs issued by
//! the CPU that executes it.

use core::arch::asm;

// Boot-time maintenance, callable with the MMU off or from the identity map: leaf routines that
// touch no stack.
core::arch::global_asm!(
    ".section .text, \"ax\"",
    // Invalidates this CPU's whole EL1&0 TLB. Called by `boot.S` before the MMU is first enabled
    // (TLB contents are UNKNOWN at reset).
    ".global __tlb_boot_local_flush_all",
    "__tlb_boot_local_flush_all:",
    "    tlbi vmalle1",
    "    dsb nsh",
    "    isb",
    "    ret",
    // x0 = new TTBR1_EL1, x1 = an empty table. Executed through the identity map, so the TTBR1
    // half may be unmapped in between. Installing the empty table and invalidating before the new
    // table goes in means no TLB ever holds entries from both (break-before-make for the whole
    // half; Linux's idmap_cpu_replace_ttbr1).
    ".global __tlb_replace_ttbr1",
    "__tlb_replace_ttbr1:",
    "    msr ttbr1_el1, x1",
    "    isb",
    "    tlbi vmalle1",
    "    dsb nsh",
    "    isb",
    "    msr ttbr1_el1, x0",
    "    isb",
    "    ret",
);

unsafe extern "C" {
    fn __tlb_replace_ttbr1(ttbr1: u64, empty_table: u64);
}

/// Swaps TTBR1 to `ttbr1` through an empty table, with a local invalidation in between.
///
/// # Safety
///
/// Only on the boot CPU before any other CPU is online, with IRQs masked, while TTBR0 holds the
/// boot identity map covering the image. `ttbr1` must map the image, the stacks and everything
/// the kernel is about to touch at the same virtual addresses as the current tables.
/// `empty_table_pa` must be a zeroed, page-aligned table.
pub unsafe fn replace_ttbr1(ttbr1: u64, empty_table_pa: u64) {
    let trampoline = __tlb_replace_ttbr1 as *const () as u64 - super::layout::KIMAGE_VBASE;
    // SAFETY: `trampoline` is the physical address of the routine, executable through the
    // identity map; it touches no memory and the caller guarantees the new tables are complete.
    unsafe {
        let f: unsafe extern "C" fn(u64, u64) = core::mem::transmute(trampoline as usize);
        f(ttbr1, empty_table_pa);
    }
}

/// Invalidates this CPU's entire EL1&0 TLB and waits for it (`TLBI VMALLE1; DSB NSH; ISB`).
/// Used when a CPU drops the boot identity map, and by the ASID allocator's rollover flush.
pub fn local_flush_all() {
    // SAFETY: TLB invalidation only loses cached translations; the DSB and ISB complete it
    // before the next instruction fetch or access.
    unsafe { asm!("dsb nshst", "tlbi vmalle1", "dsb nsh", "isb", options(nostack)) };
}

/// Publishes new (previously invalid) kernel entries to this CPU's table walker. New entries
/// need no invalidation — no TLB can hold a translation for an invalid entry — only `DSB ISHST`
/// so the walker sees the store, then `ISB` so this CPU's next access walks again.
pub fn publish_new_kernel_mappings() {
    // SAFETY: barriers only.
    unsafe { asm!("dsb ishst", "isb", options(nostack, preserves_flags)) };
}
