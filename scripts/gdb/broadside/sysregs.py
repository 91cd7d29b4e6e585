"""System-register fields the helpers decode (Arm ARM D19): pure, no gdb. The registers are read
per vCPU by values.read_regs; these functions take plain integers (None: not readable)."""

PSTATE_I_BIT = 7  # SPSR/CPSR bit 7: IRQs masked
TCR_A1_BIT = 22  # TCR_EL1.A1: the ASID comes from TTBR1_EL1 (set) or TTBR0_EL1 (clear)
TCR_AS_BIT = 36  # TCR_EL1.AS: 16-bit ASIDs (set) or 8-bit
TTBR_ASID_SHIFT = 48  # TTBRn_EL1.ASID is bits [63:48]


def irqs_text(cpsr):
    """bs-cpus' irqs cell from PSTATE (gdb's $cpsr): masked, on, or ? when unreadable."""
    if cpsr is None:
        return "?"
    return "masked" if cpsr >> PSTATE_I_BIT & 1 else "on"


def current_asid(regs):
    """The ASID in use: TCR_EL1.A1 (bit 22) picks TTBR1 or TTBR0, TCR_EL1.AS (bit 36) 16 or 8
    bits. Without TCR_EL1, TTBR0's bits 63:48."""
    tcr = regs.get("TCR_EL1")
    ttbr = regs.get("TTBR0_EL1")
    bits = 16
    if tcr is not None:
        if tcr >> TCR_A1_BIT & 1:
            ttbr = regs.get("TTBR1_EL1")
        bits = 16 if tcr >> TCR_AS_BIT & 1 else 8
    if ttbr is None:
        return None
    return (ttbr >> TTBR_ASID_SHIFT) & ((1 << bits) - 1)
