//! Memory management: descriptors, frames, the heap, kernel tables, TLB flush planning, ASIDs.
pub mod asid;
#[cfg(target_arch = "aarch64")]
pub mod frame;
#[cfg(target_arch = "aarch64")]
pub mod heap;
#[cfg(target_arch = "aarch64")]
pub mod kmap;
pub mod pte;
pub mod tlbflush;
