"""What the helpers know about the kernel by name: symbol paths, type names, and the fallback
values the debug info does not carry. Pure data, no gdb: the decoders and the host tests share
it."""

# --------------------------------------------------------------------------------------------
# Symbols the helpers read (Rust paths).
# --------------------------------------------------------------------------------------------
SYM_PERCPU = "broadside_base::percpu::PERCPU"
SYM_COUNTS = "broadside_base::stats::COUNTS"
SYM_FRAMES = "broadside_memory::frame::FRAMES"
SYM_PAGE_OFFSET = "broadside_arch::aarch64::layout::PAGE_OFFSET"
TYPE_CPU_STATE = "broadside_base::percpu::CpuState"
TYPE_COUNTER = "broadside_base::stats::Counter"
TYPE_FRAME_KIND = "broadside_memory::frame::FrameKind"
TYPE_FRAMES = "broadside_memory::frame::Frames"
TYPE_RCU = "broadside_sync::rcu::Rcu"
TYPE_RCU_GP_STATE = "broadside_sync::rcu::GpState"
TYPE_RCU_SEGMENTS = "broadside_sync::rcu::SegmentedCallbacks"
TYPE_GATHER = "broadside_mm::gather::MmuGather"
TYPE_ROLE = "broadside_base::percpu::Role"
# Where a global RCU engine is expected first; any other global whose type contains TYPE_RCU is
# found by a type search (see cmd_rcu.find_rcu).
RCU_CANDIDATES = ("broadside_sync::rcu_kernel::RCU",)
# Names a gather goes by in the kernel's frames, tried first (any other local or argument of
# the gather's type is found too).
GATHER_NAMES = ("self", "gather", "g", "tlb")
# How many queued pages / tables bs-gather lists by address.
GATHER_SHOW = 4

# --------------------------------------------------------------------------------------------
# Fallbacks: values the DWARF does not carry.
# --------------------------------------------------------------------------------------------
# Rust `const`s are not emitted as symbols, so PAGE_OFFSET is looked up (in case a future build
# emits it, e.g. as a static) and otherwise taken from crates/arch/src/aarch64/layout.rs.
PAGE_OFFSET_FALLBACK = 0xFFFF_0000_0000_0000
KIMAGE_VBASE_FALLBACK = 0xFFFF_8000_0000_0000  # layout.rs KIMAGE_VBASE (same reason)
# crates/arch/src/pte.rs MAIR_IDX_* names, used only when MAIR_EL1 cannot be read from the target.
MAIR_INDEX_FALLBACK = {0: "Normal-WB", 1: "Device-nGnRE", 2: "Normal-NC"}

# --------------------------------------------------------------------------------------------
# The event log of deterministic runs (crates/base/src/events.rs).
# --------------------------------------------------------------------------------------------
SYM_EVENT_RINGS = "broadside_base::events::RINGS"
SYM_UNHOOK_RINGS = "broadside_base::events::UNHOOK_RINGS"
SYM_EVENT_STOP_AT = "broadside_base::events::STOP_AT"
SYM_EVENT_SEQ = "broadside_base::events::SEQ"
# events::Kind, by number (the enum is #[repr(u8)] with these discriminants).
EVENT_KINDS = {
    1: "yield", 2: "clear", 3: "unhook", 4: "tlbi", 5: "barrier", 6: "ttbr0", 7: "free",
    8: "pin", 9: "detection", 10: "gp-end", 11: "drain", 12: "change-point", 13: "blame",
}
# arch::aarch64::tlb::Barrier, by discriminant (declaration order).
BARRIER_NAMES = {0: "dsb ishst", 1: "dsb nshst", 2: "dsb ish", 3: "dsb nsh", 4: "dmb ish"}
# The TLBI codes of the event log (tlb.rs `op_code`): 1..8, plus 16 when local.
TLBI_NAMES = {1: "vae1", 2: "vale1", 3: "rvae1", 4: "rvale1", 5: "aside1", 6: "vmalle1",
              7: "vaae1", 8: "vaale1"}
