// broadside boot: from QEMU's entry (MMU off, physical addresses) to `kernel_main` and
// `secondary_main` (MMU on, TTBR1 half). Assembled through `global_asm!` in `boot.rs`, which
// supplies the constants in braces below.
//
// Register use before Rust runs: x19 = DTB physical address (boot CPU) or boot record
// (secondaries), x20 = the exception level the CPU was entered at, x21 = saved link register.
// Every routine here is a leaf or saves x30 in x21: there is no stack until the MMU is on.

.section .text.boot, "ax"
.global _start
_start:
    // The boot CPU. x0 = DTB address for a Linux-image boot, 0 for an ELF boot.
    mov     x19, x0
    mrs     x20, CurrentEL
    lsr     x20, x20, #2
    bl      el2_to_el1
    bl      el1_setup

    // Zero .bss with the MMU off: adrp is PC-relative, so it yields physical addresses here.
    adrp    x0, __bss_start
    add     x0, x0, :lo12:__bss_start
    adrp    x1, __bss_end
    add     x1, x1, :lo12:__bss_end
1:  cmp     x0, x1
    b.hs    2f
    stp     xzr, xzr, [x0], #16
    b       1b
2:
    bl      build_early_tables
    bl      enable_mmu
    ldr     x2, =boot_cpu_virtual
    br      x2

// Drops from EL2 to EL1 when entered at EL2 (`-M virt,virtualization=on`); returns at EL1 to
// the caller either way. EL2 is left with nothing trapped and stage 2 off: broadside is an EL1
// kernel and uses EL2 only to get out of it.
el2_to_el1:
    mrs     x9, CurrentEL
    cmp     x9, #(2 << 2)
    b.ne    1f
    mov     x9, #(1 << 31)              // HCR_EL2.RW: EL1 is AArch64; no IMO/FMO: IRQs go to EL1
    msr     hcr_el2, x9
    mrs     x9, cnthctl_el2
    orr     x9, x9, #3                  // EL1PCTEN | EL1PCEN: EL1 may use the physical counter/timer
    msr     cnthctl_el2, x9
    msr     cntvoff_el2, xzr            // virtual counter == physical counter
    mov     x9, #0x33ff                 // CPTR_EL2: RES1 bits, TFP = 0: no FP/SIMD trap to EL2
                                        // (CPACR_EL1 traps them to EL1, see el1_setup)
    msr     cptr_el2, x9
    msr     hstr_el2, xzr
    msr     vttbr_el2, xzr
    mrs     x9, s3_4_c12_c9_5           // ICC_SRE_EL2
    orr     x9, x9, #0xf                // SRE | DFB | DIB | Enable: EL1 may use the GICv3 sysregs
    msr     s3_4_c12_c9_5, x9
    isb
    msr     s3_4_c12_c11_0, xzr         // ICH_HCR_EL2: no virtual CPU interface
    ldr     x9, ={SCTLR_MMU_OFF}
    msr     sctlr_el1, x9
    mov     x9, #0x3c5                  // SPSR: EL1h, D, A, I, F masked
    msr     spsr_el2, x9
    msr     elr_el2, x30
    eret
1:  ret

// EL1 state every CPU needs before its MMU is on.
el1_setup:
    // CPACR_EL1 (Arm ARM D19.2): FPEN = 0b00 traps every FP/SIMD instruction at EL1 with
    // ESR_EL1.EC = 0x07. The kernel is built soft-float and never uses those registers, so one
    // that slips in (an asm block, a wrong target) is reported, not silently run with FP state
    // that exception entry does not save. The register's reset value is UNKNOWN: write it.
    msr     cpacr_el1, xzr
    ldr     x9, ={MAIR}
    msr     mair_el1, x9
    // TCR_EL1: 48-bit VAs in both halves, 4 KiB granules, write-back walks, inner shareable.
    ldr     x9, ={TCR_BASE}
    mrs     x10, id_aa64mmfr0_el1
    and     x11, x10, #0x7              // PARange -> TCR.IPS
    orr     x9, x9, x11, lsl #32
    ubfx    x11, x10, #4, #4            // ASIDBits: 2 = 16-bit ASIDs -> TCR.AS
    cmp     x11, #2
    b.ne    1f
    orr     x9, x9, #(1 << 36)
1:  msr     tcr_el1, x9
    ldr     x9, ={SCTLR_MMU_OFF}
    msr     sctlr_el1, x9
    isb
    ret

// Builds the boot CPU's early tables in .bss (physical addresses; the MMU is off):
//   TTBR0: identity map of the 1 GiB holding the image (and the DTB QEMU put below it), so the
//          instructions that turn the MMU on keep executing;
//   TTBR1: the same 1 GiB at PAGE_OFFSET + PA (linear map) and at KIMAGE_VBASE + PA (image).
// All three are RWX 1 GiB blocks; `kernel_main` replaces TTBR1 with the real, W^X tables.
// Returns x0 = TTBR0 table, x1 = TTBR1 table.
build_early_tables:
    adrp    x0, __early_tables
    add     x0, x0, :lo12:__early_tables
    adr     x1, _start
    lsr     x2, x1, #30
    lsl     x2, x2, #30                 // the image's 1 GiB
    mov     x3, #0x701                  // block: valid | AttrIdx 0 (normal) | SH inner | AF
    orr     x3, x2, x3
    // TTBR0 identity: L0 at +0, L1 at +4K
    add     x4, x0, #0x1000
    orr     x5, x4, #3
    ubfx    x6, x1, #39, #9
    str     x5, [x0, x6, lsl #3]
    ubfx    x6, x1, #30, #9
    str     x3, [x4, x6, lsl #3]
    // TTBR1: L0 at +8K; linear-map L1 at +12K; image L1 at +16K
    add     x7, x0, #0x2000
    ldr     x8, ={PAGE_OFFSET}
    add     x8, x8, x1
    add     x4, x0, #0x3000
    orr     x5, x4, #3
    ubfx    x6, x8, #39, #9
    str     x5, [x7, x6, lsl #3]
    ubfx    x6, x8, #30, #9
    str     x3, [x4, x6, lsl #3]
    ldr     x8, ={KIMAGE_VBASE}
    add     x8, x8, x1
    add     x4, x0, #0x4000
    orr     x5, x4, #3
    ubfx    x6, x8, #39, #9
    str     x5, [x7, x6, lsl #3]
    ubfx    x6, x8, #30, #9
    str     x3, [x4, x6, lsl #3]
    // The table walker reads these with cacheable accesses once the MMU is on: clean and
    // invalidate the lines so no stale cache contents shadow what was just written.
    mov     x4, x0
    add     x5, x0, #0x5000
1:  dc      civac, x4
    add     x4, x4, #64
    cmp     x4, x5
    b.lo    1b
    dsb     sy
    mov     x1, x7
    ret

// x0 = TTBR0, x1 = TTBR1. Turns the MMU and caches on; returns with the MMU on (the caller is
// identity-mapped by TTBR0).
enable_mmu:
    mov     x21, x30
    msr     ttbr0_el1, x0
    msr     ttbr1_el1, x1
    isb
    bl      __tlb_boot_local_flush_all  // TLB contents are UNKNOWN at reset
    ldr     x9, ={SCTLR_MMU_ON}
    msr     sctlr_el1, x9
    isb
    mov     x30, x21
    ret

// A secondary CPU, started by PSCI CPU_ON with x0 = the physical address of its
// `SecondaryBootRecord` (in .bss, so TTBR0's identity map covers it).
.global _secondary_start
_secondary_start:
    mov     x19, x0
    mrs     x20, CurrentEL
    lsr     x20, x20, #2
    bl      el2_to_el1
    bl      el1_setup
    ldr     x0, [x19, #0]               // TTBR0: the boot identity map
    ldr     x1, [x19, #8]               // TTBR1: the final kernel tables
    bl      enable_mmu
    ldr     x2, =secondary_cpu_virtual
    br      x2

.section .text, "ax"
boot_cpu_virtual:
    // Exceptions run on SP_EL1 (a per-CPU exception stack); kernel code runs on SP_EL0, so a
    // fault on a kernel stack's guard page is still taken on a good stack.
    adrp    x0, __boot_exc_stack_top
    add     x0, x0, :lo12:__boot_exc_stack_top
    mov     sp, x0
    msr     spsel, #0
    adrp    x0, __boot_stack_top
    add     x0, x0, :lo12:__boot_stack_top
    mov     sp, x0
    adrp    x0, exception_vectors
    add     x0, x0, :lo12:exception_vectors
    msr     vbar_el1, x0
    isb
    mov     x29, xzr
    mov     x30, xzr
    msr     tpidr_el1, xzr              // this CPU's logical index (`cpu_id`): 0
    mov     x0, x19
    mov     x1, x20
    bl      kernel_main
    b       park

secondary_cpu_virtual:
    ldr     x0, [x19, #16]              // exception stack top (virtual)
    mov     sp, x0
    msr     spsel, #0
    ldr     x0, [x19, #24]              // kernel stack top (virtual)
    mov     sp, x0
    adrp    x0, exception_vectors
    add     x0, x0, :lo12:exception_vectors
    msr     vbar_el1, x0
    isb
    mov     x29, xzr
    mov     x30, xzr
    ldr     x0, [x19, #32]              // logical CPU index
    msr     tpidr_el1, x0               // ... which `cpu_id` reads
    mov     x1, x20
    bl      secondary_main
park:
    wfe
    b       park

.section .bss.early_tables, "aw", %nobits
.balign 4096
.global __early_tables
__early_tables:
    .space 0x5000
