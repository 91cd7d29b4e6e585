//! Translation-table base registers: swapping the kernel's TTBR1 tables at boot, and loading
//! TTBR0 with an address space (or the empty table) and its ASID.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::*;

use crate::addr::{PhysAddr, VirtAddr};

/// A page of zeroes: the TTBR0 table when no address space is active, and the stand-in TTBR1
/// table while the boot CPU swaps kernel tables.
#[repr(C, align(4096))]
struct EmptyTable([u64; 512]);
static EMPTY_TABLE: EmptyTable = EmptyTable([0; 512]);

/// Physical address of the empty table.
pub fn empty_table_pa() -> PhysAddr {
    super::layout::virt_to_phys(VirtAddr::new(&EMPTY_TABLE as *const EmptyTable as u64))
}

/// Installs the final kernel tables in TTBR1 on the boot CPU.
///
/// # Safety
///
/// As for [`super::tlb::replace_ttbr1`]: boot CPU only, no other CPU online, and `ttbr1_pa`
/// must map everything the kernel uses at the same addresses as the early tables.
pub unsafe fn replace_kernel_tables(ttbr1_pa: PhysAddr) {
    let irq = broadside_base::irq::save_and_mask();
    // SAFETY: forwarded from the caller.
    unsafe { super::tlb::replace_ttbr1(ttbr1_pa.as_u64(), empty_table_pa().as_u64()) };
    broadside_base::irq::restore(irq);
}

/// Retires the boot identity map on this CPU: TTBR0 gets the empty table with ASID 0, and the
/// identity map's global TLB entries are invalidated so they cannot shadow address spaces that
/// later use the same low virtual addresses.
pub fn drop_boot_idmap() {
    set_ttbr0(empty_table_pa(), 0);
    super::tlb::local_flush_all();
}

/// Loads TTBR0 with table `pa` and `asid` (TCR_EL1.A1 = 0: TTBR0 carries the ASID). The TLB
/// module's observer is told before the write (`TlbEvent::LoadTtbr0`), with IRQs masked across
/// the report and the write, so the flush-coverage sanitizer knows which CPU may cache which
/// space under which ASID from the loads themselves.
pub fn set_ttbr0(pa: PhysAddr, asid: u16) {
    super::tlb::observed(
        Some(super::tlb::TlbEvent::LoadTtbr0 {
            root: pa.as_u64(),
            asid,
        }),
        || {
            TTBR0_EL1.set(pa.as_u64() | (asid as u64) << 48);
            barrier::isb(barrier::SY);
        },
        None,
    );
}

/// The current TTBR0 value (table address and ASID).
pub fn ttbr0() -> u64 {
    TTBR0_EL1.get()
}

/// The current TTBR1 table address.
pub fn ttbr1() -> u64 {
    TTBR1_EL1.get() & 0x0000_ffff_ffff_fffe
}
