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
//! upward import does not build. Lower layers reach what only a higher one knows through hooks
//! the kernel installs at boot: how an unexpected exception is reported
//! (`exception::set_fatal_handler`), how a run's summary is printed (`exit::set_reporter`), what a
//! CPU serves while it waits for others (`requests::set_request_server`).
//!
//! | layer (crate) | modules | concern |
//! |---|---|---|
//! | kernel (`broadside`, this crate) | `main.rs`, [`boot`], [`workload`] | entry, bring-up, workloads, the summary |
//! | mm (`broadside-mm`) | lowest first: `asid`, `gather_range`, `fault_inject`, `mm_types`, `sanitizer` (portable core) and `audit` (its kernel glue), `unshare_sync`; `aspace`; `tlb`, `walker`; `table_free`, `mprotect`; `gather`; `shared`; `exit_mmap` (the layers: the crate's doc) | address spaces; shootdown; unhook → invalidate → free; sharing; the lockless walker; teardown |
//! | smp (`broadside-smp`) | `boot`, `work`, `ipi`, `stall`, `watchdog` | secondaries through PSCI, run-on-all, SGIs, the watchdog |
//! | memory (`broadside-memory`) | `frame`, `heap`, `kmap` | frames and their metadata, the heap, the kernel's tables |
//! | sync (`broadside-sync`) | `rcu`, `rcu_kernel`, `gate`, `wait` | grace periods from ticks and idle, the activation gate, waiting |
//! | platform (`broadside-platform`) | `dtb`, `pl011`, `console`, `bootargs`, `boot_info`, `exit` | the machine, the console, the arguments, the ways out |
//! | arch (`broadside-arch`) | `aarch64::*`, `addr`, `pte`, `tlbi` | exceptions, sysregs, TLBI + barriers, PSCI, GICv3, timer; typed addresses (`PhysAddr`, `VirtAddr`); descriptor and TLBI encodings |
//! | base (`broadside-base`) | `percpu`, `irq`, `irqlock`, `stats`, `exit_code`, `rules`, `config`, `rng` | CPU identity and per-CPU records, IRQ masking, counters, exit codes |
//!
//! (`broadside-summary` writes the summary line for this crate, allocation-free, and reads it
//! back, typed, for the host's boot tests in `tests/`.)
//!
//! Portable logic — typed addresses, descriptors, TLBI operand encoding and flush planning, ASID allocation,
//! the gather's bookkeeping, the RCU engine, the activation gate, boot arguments, the JSON
//! writer, counters — compiles on the host and is unit-tested there by `cargo test` (with
//! proptest, and loom for the lock-free protocols). Everything that touches hardware is compiled
//! only for `target_arch = "aarch64"` and tested by booting QEMU.
//!
//! ## Boot flow
//!
//! 1. QEMU enters `_start` (MMU off) at EL1, or at EL2 which drops to EL1. FP/SIMD stays
//!    disabled (CPACR_EL1.FPEN = 0b00: the kernel is built for `aarch64-unknown-none-softfloat`,
//!    so an FP/SIMD instruction is a bug and traps), .bss is zeroed, and 1 GiB-block early
//!    tables map the image's GiB by identity (TTBR0) and in the TTBR1 half.
//! 2. `kernel_main` (`main.rs`, through `broadside_arch::entry_points!`) runs
//!    [`boot::boot_cpu_main`]: it installs the hooks, parses the DTB, seeds the frame
//!    allocator, has `broadside_memory::kmap` build the W^X kernel tables and swap TTBR1 to them
//!    through the identity map, then brings up the console, the heap, GICv3, the timer and RCU,
//!    and starts every other CPU with PSCI CPU_ON.
//! 3. Secondaries enter `secondary_main` on their own guarded stacks and idle until the
//!    workload posts work to them.
//! 4. The workload runs; the kernel prints the `summary:` line and exits through semihosting.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod boot;
pub mod workload;
