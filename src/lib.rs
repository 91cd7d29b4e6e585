//! broadside: a multicore AArch64 kernel for QEMU `virt` (crate docs are filled in below).
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

pub mod arch;
pub mod config;
#[cfg(target_arch = "aarch64")]
pub mod kernel;
pub mod mm;
pub mod platform;
pub mod smp;
pub mod stats;
pub mod sync;
pub mod workload;
