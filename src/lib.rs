//! # broadside
//!
//! A multicore AArch64 kernel for QEMU `virt` that keeps every CPU's TLB, and every lockless
//! software page-table walker, safe while page tables change and are freed underneath them —
//! without interrupting the other CPUs.
//!
//! - TLB shootdown uses broadcast TLBI instructions completed by `DSB ISH`, never IPIs
//!   ([`mm::tlb`], executed by `arch::aarch64::tlb`, the only module with TLBI instructions).
//! - Page-table pages a lockless walker may still read are freed after an RCU grace period
//!   ([`mm::gather`], [`mm::table_free`], [`sync::rcu`]).
//! - A GUP-fast-style lockless walker ([`mm::walker`]) runs on other CPUs and checks that it never
//!   reads a freed table or pins a freed page; touchers check through the MMU that no translation
//!   outlives its flush.
//! - Level-2 tables can be shared between address spaces and unshared through the gather with at
//!   most one synchronisation per batch ([`mm::shared`]).
//! - The x86-style alternatives (IPI shootdown, IPI sync per table or per batch) run in the same
//!   kernel for comparison.
//!
//! The rules all of this keeps are defined in [`rules`] and cited by number ("rule 5").
//!
//! ## Layers
//!
//! Data flows down; each layer uses only those below it.
//!
//! | layer | modules | concern |
//! |---|---|---|
//! | boot | `main.rs`, `arch::aarch64::boot` | entry at EL1/EL2, early tables, first Rust |
//! | arch | `arch::aarch64::*` | exceptions, sysregs, TLBI + barriers, PSCI, GICv3, timer |
//! | platform | [`platform`] | DTB discovery, PL011 console and `log`, boot arguments |
//! | memory | `mm::frame`, `mm::heap`, `mm::kmap`, [`mm::pte`] | frames + metadata, heap, kernel tables |
//! | address spaces | `mm::aspace`, [`mm::asid`] | TTBR0 roots, ASIDs, map/unmap/protect/destroy |
//! | tlb | `mm::tlb`, [`mm::tlbflush`] | which invalidations a change needs, and how they travel |
//! | gather | `mm::gather`, `mm::table_free`, `mm::shared` | unhook → invalidate → free |
//! | rcu | [`sync::rcu`], `sync::rcu_kernel` | grace periods from ticks, idle and busy-waits |
//! | walker | `mm::walker` | the lockless walk and its use-after-free detectors |
//! | workloads | [`workload`] | selftest, demo, stress, unshare-bench; the summary line |
//!
//! Portable logic — descriptors, TLBI operand encoding and flush planning, ASID allocation,
//! the RCU engine, boot arguments, the JSON writer, counters — compiles on the host and is
//! unit-tested there (with proptest, and loom for the lock-free protocols). Everything that
//! touches hardware is compiled only for `target_arch = "aarch64"` and tested by booting QEMU.
//!
//! ## Boot flow
//!
//! 1. QEMU enters `_start` (MMU off) at EL1, or at EL2 which drops to EL1. FP/SIMD stays
//!    disabled (CPACR_EL1.FPEN = 0b00: the kernel is built for `aarch64-unknown-none-softfloat`,
//!    so an FP/SIMD instruction is a bug and traps), .bss is zeroed, and 1 GiB-block early
//!    tables map the image's GiB by identity (TTBR0) and in the TTBR1 half.
//! 2. `kernel_main` parses the DTB, seeds the frame allocator, builds the W^X kernel tables and
//!    swaps TTBR1 to them through the identity map, then brings up the console, the heap, GICv3,
//!    the timer and RCU, and starts every other CPU with PSCI CPU_ON.
//! 3. Secondaries enter `secondary_main` on their own guarded stacks and idle until the
//!    workload posts work to them.
//! 4. The workload runs; the kernel prints the `summary:` line and exits through semihosting.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

pub mod arch;
pub mod config;
#[cfg(target_arch = "aarch64")]
pub mod kernel;
pub mod mm;
pub mod platform;
pub mod rng;
pub mod rules;
pub mod smp;
pub mod stats;
pub mod sync;
pub mod workload;
