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
