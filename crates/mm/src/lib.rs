//! broadside's address-space layer and everything that changes address spaces safely: ASIDs,
//! address spaces (map, unmap, protect, destroy), TLB shootdown policy (broadcast TLBI or the
//! IPI baseline), the mmu_gather, table freeing through RCU, shared level-2 tables, the lockless
//! walker, fault injection for the negative controls, and the flush-coverage sanitizer: its
//! portable core (`sanitizer`) and its kernel glue (`audit`).
//!
//! The modules are layered: each imports only modules of the layers below it. From the bottom:
//!
//! 0. `settings`: mm's kernel arguments (`flush=`, `errata=`, `tablefree=`, `unshare=`,
//!    `audit=`, `asid_bits=`, `fail_alloc=`) and the bugs mm plants (`bug=`).
//! 1. On nothing in this crate but `settings`: `asid` (ASID allocation), `gather_range` (what a gather must
//!    invalidate), `sanitizer` (the sanitizer's portable core), `fault_inject` (`bug=`,
//!    `fail_alloc=`), `mm_types` (the shared object's data, which an address space lists).
//! 2. `audit` (the sanitizer's kernel glue) and `unshare_sync` (the `unshare=` mode: whether
//!    walkers are synchronised with after an unshare).
//! 3. `aspace`: the address-space core — the `AddressSpace` struct, activation, its tables,
//!    map and walk helpers, freeing data frames and table pages. No shootdown here.
//! 4. `tlb` (flushing a space: broadcast TLBI or IPIs; another CPU's pending batch) and
//!    `walker` (the lockless walker,
//!    which reads the tables `aspace` builds).
//! 5. `table_free` (table pages freed once walkers are gone), `mprotect`
//!    (`AddressSpace::protect`: downgrades flushed, upgrades not), `fault` (writes to user
//!    pages and their spurious permission faults, fixed locally), `tlbbatch` (reclaim's
//!    deferred TLB batches: one `DSB ISH` per batch) and `migrate`
//!    (`AddressSpace::migrate_page`: break, invalidate, copy, make).
//! 6. `gather`: the mmu_gather — unmap, and unhook, invalidate, then free.
//! 7. `shared`: shared objects and shared level-2 tables — sharing, unsharing, fork.
//! 8. `exit_mmap`: the teardown (`AddressSpace::destroy`), which unshares the space's objects
//!    and frees the rest through a full-mm gather.
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
pub mod fault;
#[cfg(target_arch = "aarch64")]
pub mod fault_inject;
#[cfg(target_arch = "aarch64")]
pub mod gather;
pub mod gather_range;
#[cfg(target_arch = "aarch64")]
pub mod migrate;
#[cfg(target_arch = "aarch64")]
pub mod mm_types;
#[cfg(target_arch = "aarch64")]
pub mod mprotect;
pub mod sanitizer;
pub mod settings;
#[cfg(target_arch = "aarch64")]
pub mod shared;
#[cfg(target_arch = "aarch64")]
pub mod table_free;
#[cfg(target_arch = "aarch64")]
pub mod tlb;
#[cfg(target_arch = "aarch64")]
pub mod tlbbatch;
#[cfg(target_arch = "aarch64")]
pub mod unshare_sync;
#[cfg(target_arch = "aarch64")]
pub mod walker;
