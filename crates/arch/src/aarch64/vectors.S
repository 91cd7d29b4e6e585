// The EL1 exception vector table and the common save/restore path. Assembled through
// `global_asm!` in `exception.rs`, which supplies the frame size.
//
// Kernel code runs on SP_EL0 and exceptions on SP_EL1, so an exception from normal kernel code
// arrives at the "current EL with SP0" entries and one nested inside a handler at "current EL
// with SPx". Both save a full `TrapFrame` (general registers, interrupted SP, ELR, SPSR, ESR,
// FAR) and call `handle_exception(kind, frame)`. There is no FP/SIMD state to save: the kernel
// is built for aarch64-unknown-none-softfloat, so no code uses the FP/SIMD registers, and boot.S
// leaves CPACR_EL1.FPEN = 0b00, so an FP/SIMD instruction that slips in traps (ESR EC 0x07, a
// fatal report) instead of using registers that this path does not preserve.

.macro VENTRY kind
.balign 0x80
    sub     sp, sp, #{FRAME_SIZE}
    stp     x0, x1, [sp, #(0 * 16)]
    mov     x0, #\kind
    b       exception_entry
.endm

.section .text.vectors, "ax"
.balign 0x800
.global exception_vectors
exception_vectors:
    VENTRY 0        // current EL, SP0: synchronous
    VENTRY 1        // current EL, SP0: IRQ
    VENTRY 2        // current EL, SP0: FIQ
    VENTRY 3        // current EL, SP0: SError
    VENTRY 4        // current EL, SPx: synchronous
    VENTRY 5        // current EL, SPx: IRQ
    VENTRY 6        // current EL, SPx: FIQ
    VENTRY 7        // current EL, SPx: SError
    VENTRY 8        // lower EL, AArch64
    VENTRY 9
    VENTRY 10
    VENTRY 11
    VENTRY 12       // lower EL, AArch32
    VENTRY 13
    VENTRY 14
    VENTRY 15

exception_entry:
    stp     x2, x3, [sp, #(1 * 16)]
    stp     x4, x5, [sp, #(2 * 16)]
    stp     x6, x7, [sp, #(3 * 16)]
    stp     x8, x9, [sp, #(4 * 16)]
    stp     x10, x11, [sp, #(5 * 16)]
    stp     x12, x13, [sp, #(6 * 16)]
    stp     x14, x15, [sp, #(7 * 16)]
    stp     x16, x17, [sp, #(8 * 16)]
    stp     x18, x19, [sp, #(9 * 16)]
    stp     x20, x21, [sp, #(10 * 16)]
    stp     x22, x23, [sp, #(11 * 16)]
    stp     x24, x25, [sp, #(12 * 16)]
    stp     x26, x27, [sp, #(13 * 16)]
    stp     x28, x29, [sp, #(14 * 16)]
    // The interrupted SP: SP_EL0 for kinds 0-3, this stack above the frame for nested ones.
    mrs     x2, sp_el0
    add     x3, sp, #{FRAME_SIZE}
    cmp     x0, #4
    csel    x2, x2, x3, lo
    stp     x30, x2, [sp, #(15 * 16)]
    mrs     x2, elr_el1
    mrs     x3, spsr_el1
    stp     x2, x3, [sp, #(16 * 16)]
    mrs     x2, esr_el1
    mrs     x3, far_el1
    stp     x2, x3, [sp, #(17 * 16)]
    // A frame record linking the handler's backtrace to the interrupted code.
    ldr     x29, [sp, #(14 * 16 + 8)]
    mov     x1, sp
    bl      handle_exception
    // Restore. ELR and SPSR may have been changed (fix-ups resume elsewhere).
    ldp     x2, x3, [sp, #(16 * 16)]
    msr     elr_el1, x2
    msr     spsr_el1, x3
    ldp     x2, x3, [sp, #(1 * 16)]
    ldp     x4, x5, [sp, #(2 * 16)]
    ldp     x6, x7, [sp, #(3 * 16)]
    ldp     x8, x9, [sp, #(4 * 16)]
    ldp     x10, x11, [sp, #(5 * 16)]
    ldp     x12, x13, [sp, #(6 * 16)]
    ldp     x14, x15, [sp, #(7 * 16)]
    ldp     x16, x17, [sp, #(8 * 16)]
    ldp     x18, x19, [sp, #(9 * 16)]
    ldp     x20, x21, [sp, #(10 * 16)]
    ldp     x22, x23, [sp, #(11 * 16)]
    ldp     x24, x25, [sp, #(12 * 16)]
    ldp     x26, x27, [sp, #(13 * 16)]
    ldp     x28, x29, [sp, #(14 * 16)]
    ldr     x30, [sp, #(15 * 16)]
    ldp     x0, x1, [sp, #(0 * 16)]
    add     sp, sp, #{FRAME_SIZE}
    eret
