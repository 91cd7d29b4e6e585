//! broadside's address-space layer and everything that changes address spaces safely: ASIDs,
//! address spaces (map, unmap, protect), TLB shootdown policy (broadcast TLBI or the IPI
//! baseline), the mmu_gather, table freeing through RCU, shared level-2 tables, the lockless
//! walker, fault injection for the negative controls, and the flush-coverage sanitizer: its
//! portable core (`sanitizer`) and its kernel glue (`audit`).
#![cfg_attr(not(any(test, loom)), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

pub mod asid;
#[cfg(target_arch = "aarch64")]
pub mod aspace;
#[cfg(target_arch = "aarch64")]
pub mod audit;
#[cfg(target_arch = "aarch64")]
pub mod exit_mmap;
#[cfg(target_arch = "aarch64")]
pub mod fault_inject;
#[cfg(target_arch = "aarch64")]
pub mod gather;
pub mod gather_range;
#[cfg(target_arch = "aarch64")]
pub mod mm_types;
#[cfg(target_arch = "aarch64")]
pub mod mprotect;
pub mod sanitizer;
#[cfg(target_arch = "aarch64")]
pub mod shared;
#[cfg(target_arch = "aarch64")]
pub mod table_free;
#[cfg(target_arch = "aarch64")]
pub mod tlb;
#[cfg(target_arch = "aarch64")]
pub mod unshare_sync;
#[cfg(target_arch = "aarch64")]
pub mod walker;
