//! The boot assembly (`boot.S`) and the record a secondary CPU boots from.

use super::layout::{KIMAGE_VBASE, PAGE_OFFSET};
use crate::pte::MAIR_VALUE;

/// SCTLR_EL1 RES1 bits of Armv8.0 (EOS, TSCXT, EIS, SPAN, nTLSMD, LSMAOE).
const SCTLR_RES1: u64 = (1 << 11) | (1 << 20) | (1 << 22) | (1 << 23) | (1 << 28) | (1 << 29);
/// MMU and caches off, little-endian, no alignment checks: the state before `enable_mmu`.
const SCTLR_MMU_OFF: u64 = SCTLR_RES1;
/// M (MMU), C (data cache), SA/SA0 (SP alignment checks), I (instruction cache). Alignment
/// checking (A) stays off: Rust code on this target may make unaligned normal-memory accesses.
const SCTLR_MMU_ON: u64 = SCTLR_RES1 | 1 | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 12);
/// TCR_EL1 without IPS and AS (filled in from ID_AA64MMFR0_EL1 at boot): T0SZ = T1SZ = 16
/// (48-bit VAs), 4 KiB granules (TG0 = 0b00, TG1 = 0b10), inner/outer write-back
/// write-allocate walks, inner shareable.
const TCR_BASE: u64 = 16
    | (1 << 8)
    | (1 << 10)
    | (3 << 12)
    | (16 << 16)
    | (1 << 24)
    | (1 << 26)
    | (3 << 28)
    | (2 << 30);

core::arch::global_asm!(
    include_str!("boot.S"),
    SCTLR_MMU_OFF = const SCTLR_MMU_OFF,
    SCTLR_MMU_ON = const SCTLR_MMU_ON,
    TCR_BASE = const TCR_BASE,
    MAIR = const MAIR_VALUE,
    PAGE_OFFSET = const PAGE_OFFSET,
    KIMAGE_VBASE = const KIMAGE_VBASE,
);

/// Defines the two functions `boot.S` calls once the MMU is on, with this CPU's logical index
/// already in TPIDR_EL1 (`broadside_base::cpu_id`): `kernel_main(dtb_pa, boot_el)` on the boot
/// CPU, which calls `$boot(dtb_pa, boot_el)`, and `secondary_main(cpu, boot_el)` on each other
/// CPU, which calls `$secondary(cpu)`. `dtb_pa` is x0 at entry (0 for an ELF boot), `boot_el`
/// the EL QEMU entered the kernel at; neither function returns.
///
/// Invoked once, by the kernel binary: the layer that knows what to run names it, and the
/// symbols (exported, so unsafe to define) are written here, where `boot.S` is.
///
/// ```ignore
/// broadside_arch::entry_points!(boot: my_kernel::boot_main, secondary: my_kernel::secondary_main);
/// ```
#[macro_export]
macro_rules! entry_points {
    (boot: $boot:path, secondary: $secondary:path $(,)?) => {
        /// The boot CPU's first Rust function: MMU on, running in the TTBR1 half on its boot
        /// stack.
        // SAFETY: `boot.S` calls this symbol with this signature, and nothing else in the image
        // defines it (a second invocation of the macro would not link).
        #[unsafe(no_mangle)]
        pub extern "C" fn kernel_main(dtb_pa: u64, boot_el: u64) -> ! {
            $boot(dtb_pa, boot_el)
        }

        /// A secondary CPU's first Rust function, on its own stacks, with the final kernel
        /// tables.
        // SAFETY: as for `kernel_main`.
        #[unsafe(no_mangle)]
        pub extern "C" fn secondary_main(cpu: u64, _boot_el: u64) -> ! {
            $secondary(cpu as usize)
        }
    };
}

unsafe extern "C" {
    /// The secondary CPU entry point in `boot.S` (a physical address is passed to CPU_ON).
    pub fn _secondary_start() -> !;
    /// The early tables `boot.S` builds: TTBR0's identity map is the first page.
    static __early_tables: u8;
}

/// What a secondary CPU needs before it can run Rust: read by `_secondary_start` with the MMU
/// off, so it must be in the image (covered by the identity map) and cleaned to the point of
/// coherency before CPU_ON. Field offsets are fixed by `boot.S`.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug)]
pub struct SecondaryBootRecord {
    /// Physical address of the boot identity map (TTBR0).
    pub ttbr0: u64,
    /// Physical address of the kernel tables (TTBR1).
    pub ttbr1: u64,
    /// Virtual top of the CPU's exception stack (SP_EL1).
    pub exception_stack_top: u64,
    /// Virtual top of the CPU's kernel stack (SP_EL0).
    pub kernel_stack_top: u64,
    /// Logical CPU index passed to `secondary_main`.
    pub cpu: u64,
}

/// Physical address of the boot identity map, for secondaries' first instructions with the MMU
/// on.
pub fn boot_idmap_pa() -> u64 {
    // SAFETY: only the address of the linker-placed table is taken.
    let va = unsafe { &__early_tables as *const u8 as u64 };
    va - KIMAGE_VBASE
}

/// Physical address of the secondary entry point.
pub fn secondary_entry_pa() -> u64 {
    _secondary_start as *const () as u64 - KIMAGE_VBASE
}
