"""What the helpers know about the kernel by name: symbol paths, type names, and the fallback
values the debug info does not carry. Pure data, no gdb: the decoders and the host tests share
it."""

# --------------------------------------------------------------------------------------------
# Symbols the helpers read (Rust paths).
# --------------------------------------------------------------------------------------------
SYM_PERCPU = "broadside::smp::percpu::PERCPU"
SYM_COUNTS = "broadside::stats::COUNTS"
SYM_FRAMES = "broadside::mm::frame::FRAMES"
SYM_PAGE_OFFSET = "broadside::arch::aarch64::layout::PAGE_OFFSET"
TYPE_CPU_STATE = "broadside::smp::percpu::CpuState"
TYPE_COUNTER = "broadside::stats::Counter"
TYPE_FRAME_KIND = "broadside::mm::frame::FrameKind"
TYPE_FRAMES = "broadside::mm::frame::Frames"
TYPE_RCU = "broadside::sync::rcu::Rcu"
TYPE_RCU_GP_STATE = "broadside::sync::rcu::GpState"
TYPE_RCU_SEGMENTS = "broadside::sync::rcu::SegmentedCallbacks"
TYPE_GATHER = "broadside::mm::gather::MmuGather"
ROLE_MODULE = "broadside::workload::role"
# Where a global RCU engine is expected first; any other global whose type contains TYPE_RCU is
# found by a type search (see cmd_rcu.find_rcu).
RCU_CANDIDATES = (
    "broadside::sync::rcu_kernel::RCU",
    "broadside::sync::rcu::RCU",
    "broadside::sync::RCU",
    "broadside::mm::RCU",
    "broadside::kernel::RCU",
)
# Names a gather goes by in the kernel's frames, tried first (any other local or argument of
# the gather's type is found too).
GATHER_NAMES = ("self", "gather", "g", "tlb")
# How many queued pages / tables bs-gather lists by address.
GATHER_SHOW = 4

# --------------------------------------------------------------------------------------------
# Fallbacks: values the DWARF does not carry.
# --------------------------------------------------------------------------------------------
# Rust `const`s are not emitted as symbols, so PAGE_OFFSET is looked up (in case a future build
# emits it, e.g. as a static) and otherwise taken from src/arch/aarch64/layout.rs.
PAGE_OFFSET_FALLBACK = 0xFFFF_0000_0000_0000
KIMAGE_VBASE_FALLBACK = 0xFFFF_8000_0000_0000  # layout.rs KIMAGE_VBASE (same reason)
# `broadside::workload::role` holds `pub const`s, which are not emitted either: its symbols are
# tried first and this copy of src/workload/mod.rs `role_name` is used when they are absent.
ROLE_FALLBACK = {0: "none", 1: "selftest", 2: "toucher", 3: "mutator", 4: "walker", 5: "bench"}
# src/mm/pte.rs MAIR_IDX_* names, used only when MAIR_EL1 cannot be read from the target.
MAIR_INDEX_FALLBACK = {0: "Normal-WB", 1: "Device-nGnRE", 2: "Normal-NC"}
