//! SGI numbers and their uses. Every SGI handler runs with IRQs masked on the target CPU.

/// Wakes a CPU to look at its work slot (no handler work beyond the wake-up).
pub const SGI_KICK: u32 = 0;
/// TLB shootdown request (the `flush=ipi` baseline).
pub const SGI_TLB_SHOOTDOWN: u32 = 1;
/// Table-free / unshare synchronisation: the handler only acknowledges. Taking the interrupt
/// proves the CPU is outside any IRQs-masked lockless walk.
pub const SGI_SYNC: u32 = 2;
/// Self-test round trip.
pub const SGI_PING: u32 = 3;
