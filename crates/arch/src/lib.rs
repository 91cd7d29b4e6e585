//! broadside's architecture layer: everything that executes an AArch64 system instruction, and
//! the architecture's encodings.
//!
//! - [`addr`]: the [`PhysAddr`] and [`VirtAddr`] newtypes, portable and host-tested.
//! - [`pte`]: translation-table descriptors (VMSAv8-64, 4 KiB granule), portable and host-tested.
//! - [`tlbi`]: TLBI operand encodings and flush planning (which TLBIs invalidate a range),
//!   portable and host-tested; [`aarch64::tlb`] is the one module that issues TLBI instructions
//!   and their barriers.
//! - [`errata`]: the errata that change how a broadcast TLBI completes, detected from MIDR_EL1;
//!   portable and host-tested.
//! - [`settings`]: the arch layer's kernel arguments (`hz=`).
//! - [`aarch64`] (kernel build only): boot, exceptions (an unexpected one is handed to a handler
//!   the kernel installs), sysregs, MMU, PSCI, GICv3, timer, semihosting.
#![cfg_attr(not(any(test, loom)), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
pub mod addr;
pub mod errata;
pub mod pte;
pub mod settings;
pub mod tlbi;

pub use addr::{PhysAddr, VirtAddr};
