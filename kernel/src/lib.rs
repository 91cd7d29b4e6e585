//! # broadside
//!
//! A multicore AArch64 kernel for QEMU `virt` that keeps every CPU's TLB, and every lockless
//! software page-table walker, safe while page tables change and are freed underneath them —
//! without interrupting the other CPUs.
//!
//! - TLB shootdown uses broadcast TLBI instructions completed by `DSB ISH`, never IPIs
//!   ([`broadside_mm::tlb`], executed by [`broadside_arch::aarch64::tlb`], the only module with
//!   TLBI instructions).
//! - Page-table pages a lockless walker may still read are freed after an RCU grace period
//!   ([`broadside_mm::gather`], [`broadside_mm::table_free`], [`broadside_sync::rcu`]).
//! - A GUP-fast-style lockless walker ([`broadside_mm::walker`]) runs on other CPUs and checks
//!   that it never reads a freed table or pins a freed page; touchers check through the MMU that
//!   no translation outlives its flush.
//! - Level-2 tables can be shared between address spaces and unshared through the gather with at
//!   most one synchronisation per batch ([`broadside_mm::shared`]).
//! - The x86-style alternatives (IPI shootdown, IPI sync per table or per batch) run in the same
//!   kernel for comparison.
//!
//! The rules all of this keeps are defined in [`broadside_base::rules`] and cited by number
//! ("rule 5").
//!
//! ## Layers
//!
//! Each layer is a crate of the workspace and depends only on the crates below it, so an
//! upward import does not build. The order, what each crate holds, the hooks through which lower
//! layers reach what only this crate knows, and the boot flow are in `docs/architecture.md`,
//! the one place they are written (`tests/tests/layers.rs` checks the crates' dependencies
//! against it).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod boot;
pub mod settings;
pub mod workload;
